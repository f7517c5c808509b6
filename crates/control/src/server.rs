//! The daemon's side: bind the socket safely and answer requests.

use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::proto::{Envelope, Request, Response, MAX_LINE, PROTOCOL_VERSION};

/// Answers requests; implemented by the daemon.
pub trait Handler: Send + Sync + 'static {
    /// Produces the response to one request.
    fn handle(&self, request: Request) -> Pin<Box<dyn Future<Output = Response> + Send + '_>>;

    /// For requests answered by a stream (a live trace): the responses to write, one per
    /// line, until the channel closes or the client leaves. `None` for ordinary requests.
    fn stream(&self, _request: &Request) -> Option<tokio::sync::mpsc::Receiver<Response>> {
        None
    }
}

/// Binds the control socket at `path` with mode 0660, creating its directory (0755) if needed.
///
/// A socket file left by a daemon that died is replaced; one that a live daemon still answers
/// on is an error, so two daemons never fight over one socket.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    if path.exists() {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another voxgate answers on {}", path.display()),
                ))
            }
            Err(_) => std::fs::remove_file(path)?,
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Accepts connections for ever; each connection may send many requests. Accept errors (such
/// as running out of file descriptors) are logged and retried, never fatal.
pub async fn serve(listener: UnixListener, handler: Arc<dyn Handler>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, handler).await {
                tracing::debug!(error = %e, "control connection ended");
            }
        });
    }
}

async fn connection(stream: UnixStream, handler: Arc<dyn Handler>) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut rd)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let response = if line.len() > MAX_LINE {
            Response::err("request too long", vec![])
        } else {
            match serde_json::from_slice::<serde_json::Value>(&line) {
                Err(e) => Response::err(format!("malformed request: {e}"), vec![]),
                Ok(v) => match v.get("v").and_then(|v| v.as_u64()) {
                    Some(n) if n == u64::from(PROTOCOL_VERSION) => {
                        match serde_json::from_value::<Envelope>(v) {
                            Ok(env) => match handler.stream(&env.request) {
                                Some(mut rx) => {
                                    while let Some(r) = rx.recv().await {
                                        let mut out = serde_json::to_vec(&r).map_err(io::Error::other)?;
                                        out.push(b'\n');
                                        // A client that left ends the stream (and drops `rx`).
                                        wr.write_all(&out).await?;
                                    }
                                    return Ok(());
                                }
                                None => handler.handle(env.request).await,
                            },
                            Err(e) => Response::err(format!("unknown request: {e}"), vec![]),
                        }
                    }
                    other => Response::err(
                        format!(
                            "protocol version {} not supported (daemon speaks {PROTOCOL_VERSION}): use the voxgate CLI of the same version",
                            other.map_or("missing".into(), |n| n.to_string())
                        ),
                        vec![],
                    ),
                },
            }
        };
        let mut out = serde_json::to_vec(&response).map_err(io::Error::other)?;
        out.push(b'\n');
        wr.write_all(&out).await?;
        if line.len() > MAX_LINE {
            return Ok(());
        }
    }
}
