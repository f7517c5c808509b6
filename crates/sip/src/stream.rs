//! Connections to the provider's servers over TCP and TLS (sip.transport: tcp or tls), one per
//! server: opened when there is something to send, re-opened after a failure. Requests from the
//! provider (inbound calls) arrive on them too, because the registration was made over them.
//! Each connection's reader is a task that frames messages by Content-Length and hands them to
//! the service loop; the tasks end with the connection or when the [`Upstream`] is dropped.
//! TLS is rustls: the provider's certificate is verified against the system's authorities plus
//! any the configuration adds, for the host name the configuration gives for that server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_rustls::rustls;

type Frame = (SocketAddr, u64, Option<Vec<u8>>);

/// How long connecting (and the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client side of TLS towards the provider: the system's trusted authorities (from the
/// platform's store) plus those in `extra_ca_file` (PEM).
pub fn tls_config(extra_ca_file: Option<&str>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 && extra_ca_file.is_none() {
        return Err(anyhow!(
            "no trusted certificate authorities: install the system's CA certificates or set sip.tls_ca_file"
        ));
    }
    if let Some(path) = extra_ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading {path}"))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("parsing the PEM certificates in {path}"))?;
        if certs.is_empty() {
            return Err(anyhow!("{path} holds no PEM certificate"));
        }
        for c in certs {
            roots
                .add(c)
                .with_context(|| format!("a certificate in {path} is not a usable authority"))?;
        }
    }
    tracing::debug!(system = added, extra = ?extra_ca_file, "TLS trust anchors loaded");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

struct Conn {
    id: u64,
    writer: Box<dyn AsyncWrite + Send + Sync + Unpin>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The connections to the provider's servers.
pub struct Upstream {
    conns: HashMap<SocketAddr, Conn>,
    next_id: u64,
    tls: Option<Arc<rustls::ClientConfig>>,
    names: HashMap<SocketAddr, String>,
    frames_tx: mpsc::UnboundedSender<Frame>,
    frames_rx: mpsc::UnboundedReceiver<Frame>,
}

impl Upstream {
    /// Plain TCP (`tls` = None) or TLS, each server's certificate checked for its name in
    /// `names` (its address when absent).
    pub fn new(
        tls: Option<Arc<rustls::ClientConfig>>,
        names: HashMap<SocketAddr, String>,
    ) -> Upstream {
        let (frames_tx, frames_rx) = mpsc::unbounded_channel();
        Upstream {
            conns: HashMap::new(),
            next_id: 0,
            tls,
            names,
            frames_tx,
            frames_rx,
        }
    }

    /// New names after a reload (open connections stay).
    pub fn set_names(&mut self, names: HashMap<SocketAddr, String>) {
        self.names = names;
    }

    async fn connect(
        &self,
        to: SocketAddr,
    ) -> anyhow::Result<(
        Box<dyn AsyncRead + Send + Sync + Unpin>,
        Box<dyn AsyncWrite + Send + Sync + Unpin>,
    )> {
        let stream = tokio::net::TcpStream::connect(to).await?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            let (r, w) = stream.into_split();
            return Ok((Box::new(r), Box::new(w)));
        };
        let host = self
            .names
            .get(&to)
            .cloned()
            .unwrap_or_else(|| to.ip().to_string());
        let name = ServerName::try_from(host.clone())
            .map_err(|_| anyhow!("{host} is not a valid TLS server name"))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, stream)
            .await
            .with_context(|| format!("TLS handshake with {host}"))?;
        let (r, w) = tokio::io::split(stream);
        Ok((Box::new(r), Box::new(w)))
    }

    /// Sends `bytes` to `to`, connecting first if needed.
    pub async fn send(&mut self, to: SocketAddr, bytes: &[u8]) {
        if !self.conns.contains_key(&to) {
            let kind = if self.tls.is_some() { "TLS" } else { "TCP" };
            match tokio::time::timeout(CONNECT_TIMEOUT, self.connect(to)).await {
                Ok(Ok((r, writer))) => {
                    tracing::info!(upstream = %to, "SIP {kind} connection to the provider open");
                    self.next_id += 1;
                    let id = self.next_id;
                    let reader = tokio::spawn(read_frames(to, id, r, self.frames_tx.clone()));
                    self.conns.insert(to, Conn { id, writer, reader });
                }
                Ok(Err(e)) => {
                    return tracing::warn!(upstream = %to, error = %format!("{e:#}"), "SIP {kind} connect failed")
                }
                Err(_) => return tracing::warn!(upstream = %to, "SIP {kind} connect timed out"),
            }
        }
        if let Some(c) = self.conns.get_mut(&to) {
            let sent = async {
                c.writer.write_all(bytes).await?;
                c.writer.flush().await
            };
            if let Err(e) = sent.await {
                tracing::warn!(upstream = %to, error = %e, "SIP send on the connection failed; reconnecting next time");
                self.conns.remove(&to);
            }
        }
    }

    /// The next complete message from any connection (empty when a connection closed).
    pub async fn receive(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        match self.frames_rx.recv().await {
            Some((from, _, Some(frame))) => vec![(from, frame)],
            Some((from, id, None)) => {
                if self.conns.get(&from).is_some_and(|c| c.id == id) {
                    self.conns.remove(&from);
                }
                Vec::new()
            }
            None => std::future::pending().await,
        }
    }
}

/// Connections phones opened to the box (SIP over TCP on the voice LAN), by the phone's
/// address: requests to a phone go over the connection it registered on.
pub struct Accepted {
    conns: HashMap<SocketAddr, Conn>,
    next_id: u64,
    frames_tx: mpsc::UnboundedSender<Frame>,
    frames_rx: mpsc::UnboundedReceiver<Frame>,
}

/// What happened on the phones' connections.
pub enum LanEvent {
    /// A complete message (or a keepalive ping) from the phone at the address.
    Frame(SocketAddr, Vec<u8>),
    /// The phone's connection closed.
    Closed(SocketAddr),
}

/// Connections from phones at most; more are refused.
pub const MAX_LAN_CONNECTIONS: usize = 1024;

impl Default for Accepted {
    fn default() -> Self {
        let (frames_tx, frames_rx) = mpsc::unbounded_channel();
        Accepted {
            conns: HashMap::new(),
            next_id: 0,
            frames_tx,
            frames_rx,
        }
    }
}

impl Accepted {
    /// Takes a connection the listener accepted.
    pub fn add(&mut self, from: SocketAddr, stream: tokio::net::TcpStream) {
        if self.conns.len() >= MAX_LAN_CONNECTIONS {
            tracing::warn!(phone = %from, "too many SIP connections from the voice LAN; refused");
            return;
        }
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        self.next_id += 1;
        let id = self.next_id;
        let reader = tokio::spawn(read_frames(from, id, Box::new(r), self.frames_tx.clone()));
        tracing::debug!(phone = %from, "SIP TCP connection from a phone");
        self.conns.insert(
            from,
            Conn {
                id,
                writer: Box::new(w),
                reader,
            },
        );
    }

    /// Sends `bytes` over the phone's connection; false when it has none.
    pub async fn send(&mut self, to: SocketAddr, bytes: &[u8]) -> bool {
        let Some(c) = self.conns.get_mut(&to) else {
            return false;
        };
        if let Err(e) = c.writer.write_all(bytes).await {
            tracing::warn!(phone = %to, error = %e, "SIP send to the phone's connection failed");
            self.conns.remove(&to);
            return false;
        }
        true
    }

    /// The next message or closed connection.
    pub async fn receive(&mut self) -> LanEvent {
        loop {
            match self.frames_rx.recv().await {
                Some((from, _, Some(frame))) => return LanEvent::Frame(from, frame),
                Some((from, id, None)) => {
                    if self.conns.get(&from).is_some_and(|c| c.id == id) {
                        self.conns.remove(&from);
                        return LanEvent::Closed(from);
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
    }
}

/// Reads one connection, handing each complete message (CRLF keepalives dropped) to `out`,
/// then `None` when the connection ends.
async fn read_frames(
    from: SocketAddr,
    id: u64,
    mut r: Box<dyn AsyncRead + Send + Sync + Unpin>,
    out: mpsc::UnboundedSender<Frame>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                tracing::info!(peer = %from, "SIP connection closed");
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        loop {
            // A double CRLF is a keepalive ping (RFC 5626 4.4.1): handed on, so that the core
            // answers it; lone CRLFs are skipped.
            if buf.starts_with(b"\r\n\r\n") {
                let _ = out.send((from, id, Some(b"\r\n\r\n".to_vec())));
                buf.drain(..4);
                continue;
            }
            let skip = buf
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            if skip == buf.len() {
                // Maybe the first half of a ping: wait for more.
                if skip >= 4 {
                    buf.clear();
                }
                break;
            }
            buf.drain(..skip);
            if buf.is_empty() {
                break;
            }
            match crate::message::parse(&buf, true) {
                Ok((_, used)) => {
                    let _ = out.send((from, id, Some(buf.drain(..used).collect())));
                }
                Err(crate::message::ParseError::Incomplete)
                    if buf.len() < crate::message::MAX_MESSAGE =>
                {
                    break
                }
                Err(e) => {
                    // A stream that lost its framing cannot be resynchronised: start afresh.
                    tracing::warn!(peer = %from, error = %e, "bad SIP on the connection; closing it");
                    let _ = out.send((from, id, None));
                    return;
                }
            }
        }
    }
    let _ = out.send((from, id, None));
}
