//! The `sip` service: a thin tokio shell around [`crate::b2bua::B2bua`]: two UDP sockets (voice
//! LAN and WAN), the clock, and reloads.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context as _};
use config::model::WanMode;
use config::Loaded;
use ipnet::IpNet;
use supervisor::{Context, Service, ServiceFuture};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::b2bua::{B2bua, MediaProvider, Registration, Settings, Transport};
use crate::call::CallInfo;
use crate::stream::{Accepted, LanEvent, Upstream};
use crate::transaction::{Peer, Side};

/// One SIP message seen by the shell, for `voxgate sip trace`.
#[derive(Debug, Clone)]
pub struct Traced {
    /// When.
    pub at: std::time::SystemTime,
    /// Received by the box (true) or sent (false).
    pub inbound: bool,
    /// Which socket.
    pub side: Side,
    /// The other party.
    pub peer: SocketAddr,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Shared view of the B2BUA for operator commands.
#[derive(Clone)]
pub struct SipHandle(
    Arc<Mutex<Option<B2bua>>>,
    tokio::sync::broadcast::Sender<Traced>,
);

impl Default for SipHandle {
    fn default() -> Self {
        SipHandle(Default::default(), tokio::sync::broadcast::channel(1024).0)
    }
}

impl SipHandle {
    /// A live feed of every SIP message the box receives and sends (empty keepalives left
    /// out); nothing is copied while nobody listens.
    pub fn trace(&self) -> tokio::sync::broadcast::Receiver<Traced> {
        self.1.subscribe()
    }

    fn publish(&self, inbound: bool, side: Side, peer: SocketAddr, bytes: &[u8]) {
        if self.1.receiver_count() > 0
            && bytes.iter().any(|b| !b"\r\n".contains(b))
            && !crate::stun::is_stun(bytes)
        {
            let _ = self.1.send(Traced {
                at: std::time::SystemTime::now(),
                inbound,
                side,
                peer,
                bytes: bytes.to_vec(),
            });
        }
    }

    /// Calls in progress.
    pub fn calls(&self) -> Vec<CallInfo> {
        let now = Instant::now().into_std();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|b| b.calls(now))
            .unwrap_or_default()
    }

    /// The provider's servers, the public address and the counters, for `voxgate status`.
    pub fn state(&self) -> Option<SipState> {
        let now = Instant::now().into_std();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|b| SipState {
                upstreams: b.upstreams(now),
                public_address: b.public_address().map(|a| a.to_string()),
                registrations: b
                    .registrations(now)
                    .iter()
                    .filter(|r| r.state == "registered")
                    .count(),
                calls: b.calls(now).len(),
                subscriptions: b.subscriptions(),
                dropped: b.dropped,
            })
    }

    /// Every relayed registration.
    pub fn registrations(&self) -> Vec<Registration> {
        let now = Instant::now().into_std();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|b| b.registrations(now))
            .unwrap_or_default()
    }
}

/// The SIP side at a glance, for `voxgate status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SipState {
    /// The provider's servers in order of preference, with their health.
    pub upstreams: Vec<crate::upstream::ServerState>,
    /// The box's public SIP address as the provider reports it.
    pub public_address: Option<String>,
    /// Phones registered upstream.
    pub registrations: usize,
    /// Calls in progress.
    pub calls: usize,
    /// Subscriptions held (busy-lamp field, message summary).
    pub subscriptions: usize,
    /// Messages dropped by access control or parsing.
    pub dropped: u64,
}

/// The service: its handle for operator commands, and the media relay it anchors calls at.
pub struct SipService {
    /// Shared with the control socket.
    pub handle: SipHandle,
    /// The media relay.
    pub media: Arc<dyn MediaProvider>,
}

fn udp_socket(addr: SocketAddr, device: Option<&str>) -> anyhow::Result<UdpSocket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    s.set_reuse_address(true)?;
    if let Some(dev) = device {
        s.bind_device(Some(dev.as_bytes()))
            .with_context(|| format!("binding to interface {dev}"))?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("binding SIP to {addr}"))?;
    // DSCP CS3 on signalling (the firewall marks it too; this covers a box without it).
    let _ = s.set_tos_v4(0x60);
    set_receive_buffer(&s, addr);
    Ok(UdpSocket::from_std(s.into())?)
}

/// Receive buffer of the SIP UDP sockets. The kernel's default (rmem_default, 208 KiB here)
/// holds a couple of hundred datagrams: measured with the SIP benchmark at 6000
/// registrations/s, the box dropped 1159 of 120 000 datagrams for lack of room
/// (RcvbufErrors in /proc/net/snmp) whenever the thread paused for a few milliseconds, and
/// every drop is a retransmission half a second later. Phones re-registering all at once
/// after a power cut make the same bursts.
const RECEIVE_BUFFER: usize = 4 << 20;

/// Asks for [`RECEIVE_BUFFER`] bytes: beyond rmem_max with CAP_NET_ADMIN (the daemon has it
/// for the firewall), else as much as rmem_max allows.
fn set_receive_buffer(s: &socket2::Socket, addr: SocketAddr) {
    use std::os::fd::AsRawFd as _;
    let size = RECEIVE_BUFFER as libc::c_int;
    // SAFETY: setsockopt reads an int of the given length from a valid pointer.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = s.set_recv_buffer_size(RECEIVE_BUFFER);
    }
    tracing::debug!(%addr, bytes = ?s.recv_buffer_size().ok(), "SIP receive buffer");
}

/// The phones' SIP-over-TCP listener on the voice address, bound to the voice interface.
fn tcp_listener(addr: SocketAddr, device: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(device.as_bytes()))
        .with_context(|| format!("binding to interface {device}"))?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("binding SIP over TCP to {addr}"))?;
    s.listen(128)?;
    let _ = s.set_tos_v4(0x60);
    Ok(tokio::net::TcpListener::from_std(s.into())?)
}

/// Datagrams taken per socket in one pass of the loop after the one it woke for.
const BATCH: usize = 32;

/// What the shell needs besides the core's settings.
struct Shell {
    /// The WAN device to bind to when the WAN address comes from DHCP.
    wan_device: Option<String>,
    /// The name each provider server's TLS certificate must carry (the configured host).
    tls_names: HashMap<SocketAddr, String>,
}

async fn settings(l: &Loaded) -> anyhow::Result<(Settings, Shell)> {
    let c = &l.config;
    let port = c.sip.lan_port.0;
    let lan = SocketAddr::new(IpAddr::V4(c.interfaces.lan.address.addr()), port);
    let server = c
        .provider
        .overrides
        .sip_server
        .clone()
        .or_else(|| l.profile.sip.server.clone())
        .ok_or_else(|| anyhow!("no SIP server: set provider.overrides.sip_server"))?;
    let transport = match c.sip.transport {
        config::model::SipTransport::Udp => Transport::Udp,
        config::model::SipTransport::Tcp => Transport::Tcp,
        config::model::SipTransport::Tls => Transport::Tls,
    };
    let default_port = match transport {
        Transport::Tls => l.profile.sip.tls_port.map_or(5061, |p| p.0),
        _ => l.profile.sip.port.0,
    };
    let sport = c.provider.overrides.sip_port.map_or(default_port, |p| p.0);
    let fallbacks = c
        .provider
        .overrides
        .sip_fallbacks
        .clone()
        .unwrap_or_else(|| l.profile.sip.fallbacks.clone());
    // The primary must be found unless a fallback is; what is not found is logged and left
    // out until the next reload or restart.
    let hosts: Vec<String> = std::iter::once(server.clone()).chain(fallbacks).collect();
    let (located, unresolved) =
        crate::locate::locate(&c.dns.upstreams, &hosts, sport, transport).await;
    for e in &unresolved {
        tracing::warn!(error = %e, "SIP server not found");
    }
    for l in &located {
        tracing::info!(server = %l.addr, name = %l.name, how = %l.how, "SIP server");
    }
    let upstreams: Vec<SocketAddr> = located.iter().map(|l| l.addr).collect();
    let tls_names: HashMap<SocketAddr, String> =
        located.into_iter().map(|l| (l.addr, l.name)).collect();
    // The STUN server: an address or a name (A only), port 3478 unless given.
    let stun_server = match c
        .sip
        .stun_server
        .clone()
        .or_else(|| l.profile.sip.stun_server.clone())
    {
        Some(host) => {
            let host = if host.contains(':') {
                host
            } else {
                format!("{host}:3478")
            };
            let (found, failed) =
                crate::locate::locate(&c.dns.upstreams, &[host], 3478, Transport::Udp).await;
            for e in failed {
                tracing::warn!(error = %e, "STUN server not found");
            }
            found.first().map(|l| l.addr)
        }
        None => None,
    };
    let upstream = *upstreams
        .first()
        .ok_or_else(|| anyhow!("no SIP server found: {}", unresolved.join("; ")))?;
    let (wan, device) = match (c.interfaces.wan.mode, c.interfaces.wan.address) {
        (WanMode::Static, Some(a)) => (SocketAddr::new(IpAddr::V4(a.addr()), port), None),
        _ => {
            // The WAN address comes from DHCP: ask the kernel which source address reaches
            // the provider, and bind to the WAN device itself.
            let probe = std::net::UdpSocket::bind("0.0.0.0:0")?;
            probe.connect(upstream)?;
            let ip = probe.local_addr()?.ip();
            (
                SocketAddr::new(ip, port),
                Some(c.interfaces.wan.device.clone()),
            )
        }
    };
    let provider_nets: Vec<IpNet> = l
        .profile
        .networks
        .iter()
        .map(|n| n.cidr.0)
        .chain(c.provider.overrides.extra_networks.iter().map(|n| n.0))
        .collect();
    Ok((
        Settings {
            lan,
            wan,
            upstreams,
            health_interval: c.sip.health_interval.0,
            domain: server.clone(),
            upstream_transport: transport,
            voice_net: c.interfaces.lan.address.network().into(),
            provider_nets,
            keepalive: c.sip.keepalive_interval.0,
            lan_rate_limit: c.sip.rate_limit,
            stun_server,
        },
        Shell {
            wan_device: device,
            tls_names,
        },
    ))
}

impl Service<Loaded> for SipService {
    fn name(&self) -> &'static str {
        "sip"
    }

    fn enabled(&self, l: &Loaded) -> bool {
        l.config.sip.enabled
    }

    fn run(&self, ctx: Context<Loaded>) -> ServiceFuture {
        // Its own thread: see `supervisor::on_own_thread`.
        supervisor::on_own_thread(
            "sip",
            Box::pin(serve(self.handle.clone(), self.media.clone(), ctx)),
        )
    }
}

/// The service's loop: sockets set up from the configuration, then datagrams, connections,
/// timers and reloads fed to the core until told to stop.
async fn serve(
    handle: SipHandle,
    media: Arc<dyn MediaProvider>,
    mut ctx: Context<Loaded>,
) -> anyhow::Result<()> {
    let loaded = ctx.config.borrow_and_update().clone();
    let (s, shell) = settings(&loaded).await?;
    let wan_device = shell.wan_device;
    let tls = match s.upstream_transport {
        Transport::Tls => Some(
            crate::stream::tls_config(loaded.config.sip.tls_ca_file.as_deref())
                .context("setting up TLS towards the provider")?,
        ),
        _ => None,
    };
    let voice_device = loaded.config.interfaces.lan.voice_device();
    let lan_sock = udp_socket(s.lan, Some(&voice_device))?;
    let lan_listener = tcp_listener(s.lan, &voice_device)?;
    let mut phones = Accepted::default();
    let wan_bind = match wan_device {
        Some(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), s.wan.port()),
        None => s.wan,
    };
    let wan_sock = udp_socket(wan_bind, wan_device.as_deref())?;
    let servers: Vec<String> = s.upstreams.iter().map(|a| a.to_string()).collect();
    tracing::info!(lan = %s.lan, wan = %s.wan, upstream = %servers.join(", "), "SIP listening");
    let mut b = B2bua::new(s, media.control());
    b.start(Instant::now().into_std());
    *handle.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(b);
    let mut timeouts = media.timeouts();
    let mut lan_buf = vec![0u8; 65536];
    let mut wan_buf = vec![0u8; 65536];
    let mut tcp = Upstream::new(tls, shell.tls_names);
    let sleep = tokio::time::sleep_until(Instant::now());
    tokio::pin!(sleep);
    loop {
        // Send what the core produced, then wait for a datagram, a timer or a stop.
        let (outgoing, wake) = {
            let mut guard = handle.0.lock().unwrap_or_else(|e| e.into_inner());
            let b = guard.as_mut().expect("set above");
            let out: Vec<(Peer, Vec<u8>)> = std::iter::from_fn(|| b.poll_transmit()).collect();
            (out, b.poll_timeout())
        };
        for (peer, bytes) in outgoing {
            handle.publish(false, peer.side, peer.addr, &bytes);
            if peer.reliable && peer.side == Side::Lan {
                if !phones.send(peer.addr, &bytes).await {
                    tracing::warn!(phone = %peer.addr, "no TCP connection to the phone any more; message dropped");
                }
                continue;
            }
            if peer.reliable {
                tcp.send(peer.addr, &bytes).await;
                continue;
            }
            let sock = if peer.side == Side::Lan {
                &lan_sock
            } else {
                &wan_sock
            };
            if let Err(e) = sock.try_send_to(&bytes, peer.addr) {
                tracing::warn!(to = %peer.addr, error = %e, "SIP send failed");
            }
        }
        // One timer for the whole loop, moved only when the core's deadline moves (a
        // new timer per datagram was a timer-wheel insert and removal each time).
        if let Some(t) = wake {
            let t = Instant::from_std(t);
            if sleep.deadline() != t {
                sleep.as_mut().reset(t);
            }
        }
        let event = tokio::select! {
            _ = ctx.stop.cancelled() => return Ok(()),
            r = lan_sock.recv_from(&mut lan_buf) => Some((Side::Lan, r)),
            r = wan_sock.recv_from(&mut wan_buf) => Some((Side::Wan, r)),
            accepted = lan_listener.accept() => {
                match accepted {
                    Ok((stream, from)) => phones.add(from, stream),
                    Err(e) => tracing::warn!(error = %e, "accepting a SIP TCP connection failed"),
                }
                continue;
            }
            event = phones.receive() => {
                let now = Instant::now().into_std();
                if let Some(b) = handle.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    match event {
                        LanEvent::Frame(from, frame) => {
                            handle.publish(true, Side::Lan, from, &frame);
                            b.receive(now, &frame, Peer { side: Side::Lan, addr: from, reliable: true });
                        }
                        LanEvent::Closed(from) => b.lan_connection_closed(from),
                    }
                }
                continue;
            }
            frames = tcp.receive() => {
                let now = Instant::now().into_std();
                if let Some(b) = handle.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    for (from, frame) in frames {
                        handle.publish(true, Side::Wan, from, &frame);
                        b.receive(now, &frame, Peer { side: Side::Wan, addr: from, reliable: true });
                    }
                }
                continue;
            }
            _ = &mut sleep, if wake.is_some() => None,
            Some(key) = timeouts.recv() => {
                let now = Instant::now().into_std();
                if let Some(b) = handle.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    b.media_timeout(now, &key);
                }
                continue;
            }
            changed = ctx.config.changed() => {
                if changed.is_ok() {
                    let l = ctx.config.borrow_and_update().clone();
                    match settings(&l).await {
                        Ok((new, shell)) => {
                            tcp.set_names(shell.tls_names);
                            if let Some(b) = handle.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                                b.set_settings(new);
                            }
                        }
                        Err(e) => tracing::error!(error = %format!("{e:#}"), "SIP settings not updated"),
                    }
                }
                continue;
            }
        };
        let now = Instant::now().into_std();
        let mut guard = handle.0.lock().unwrap_or_else(|e| e.into_inner());
        let b = guard.as_mut().expect("set above");
        match event {
            None => b.handle_timeout(now),
            Some((side, r)) => {
                let buf = if side == Side::Lan {
                    &lan_buf
                } else {
                    &wan_buf
                };
                deliver(&handle, b, now, side, r, buf);
            }
        }
        // Then whatever else has arrived on either socket, without waiting, before
        // sending: under load one pass of the loop takes a batch, not one datagram.
        for _ in 0..BATCH {
            let mut got = false;
            for (side, sock, buf) in [
                (Side::Lan, &lan_sock, &mut lan_buf),
                (Side::Wan, &wan_sock, &mut wan_buf),
            ] {
                match sock.try_recv_from(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    r => {
                        got = true;
                        deliver(&handle, b, now, side, r, buf);
                    }
                }
            }
            if !got {
                break;
            }
        }
    }
}

/// Hands a datagram received on `side`'s UDP socket to the core (and to `sip trace`); a
/// receive error is only logged: ICMP errors surface as receive errors on Linux, not fatal.
fn deliver(
    handle: &SipHandle,
    b: &mut B2bua,
    now: std::time::Instant,
    side: Side,
    received: std::io::Result<(usize, SocketAddr)>,
    buf: &[u8],
) {
    match received {
        Ok((n, from)) => {
            handle.publish(true, side, from, &buf[..n]);
            let peer = Peer {
                side,
                addr: from,
                reliable: false,
            };
            b.receive(now, &buf[..n], peer);
        }
        Err(e) => tracing::debug!(?side, error = %e, "SIP receive error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sip_udp_sockets_get_a_large_receive_buffer() {
        let s = udp_socket("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let got = socket2::SockRef::from(&s).recv_buffer_size().unwrap();
        // With CAP_NET_ADMIN (root, as the daemon) the size asked for, which the kernel
        // doubles for its bookkeeping; without it, as much as rmem_max allows.
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: geteuid has no preconditions.
        let want = if unsafe { libc::geteuid() } == 0 {
            RECEIVE_BUFFER
        } else {
            RECEIVE_BUFFER.min(rmem_max)
        };
        assert!(got >= want, "receive buffer {got} < {want}");
    }
}
