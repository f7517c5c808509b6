//! The tokio shell: one UDP socket bound to the voice interface, the engine and the lease store
//! behind one lock, and replies sent only once the leases they grant are on disk.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use config::Loaded;
use socket2::{Domain, Protocol, Socket, Type};
use supervisor::Context;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use crate::engine::{Destination, Engine, Lease, Reply};
use crate::settings::{Settings, ZONEINFO};
use crate::store::Store;
use crate::wire::{CLIENT_PORT, MAX_REQUEST, SERVER_PORT};

/// Datagrams handled per lock, store flush and send round: one `fdatasync` covers them all.
const BATCH: usize = 64;

/// The engine and its store: one lock, so the journal's order is the engine's order.
pub(crate) struct Core {
    pub(crate) engine: Engine,
    store: Store,
}

impl Core {
    /// Stores `records` durably, compacting the journal when it has grown.
    pub(crate) fn persist(&mut self, records: &[Lease]) -> io::Result<()> {
        self.store.append(records)?;
        if self.store.should_compact(self.engine.lease_count()) {
            self.store.compact(&self.engine.records())?;
        }
        Ok(())
    }
}

/// The running server's core, absent while the service is stopped (or after a store failure,
/// until the service restarts from what is on disk).
pub(crate) type Shared = Arc<Mutex<Option<Core>>>;

pub(crate) fn lock(s: &Shared) -> MutexGuard<'_, Option<Core>> {
    // A panic under the lock leaves a usable engine; the service restarts anyway.
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The server socket: 0.0.0.0:67 bound to `device` (SO_BINDTODEVICE), so it receives only what
/// arrives on the voice interface and sends only out of it; SO_BROADCAST for replies to
/// clients without an address; SO_REUSEADDR so a restart need not wait.
pub fn bind(device: &str) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(device.as_bytes()))?;
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT).into())?;
    s.set_nonblocking(true)?;
    grow_receive_buffer(&s);
    UdpSocket::from_std(s.into())
}

/// Requests that arrive while a batch of leases is on its way to disk wait in the socket's
/// receive buffer; the kernel's default (about 200 KiB, some 500 requests) overflows when a
/// whole site of phones boots at once after a power cut. Ask for 4 MiB, past
/// net.core.rmem_max with CAP_NET_ADMIN (SO_RCVBUFFORCE), else as much as the limit allows.
fn grow_receive_buffer(s: &Socket) {
    const WANT: libc::c_int = 4 << 20;
    let fd = std::os::fd::AsRawFd::as_raw_fd(s);
    // SAFETY: a valid socket, an int option value of the right size.
    let forced = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&WANT as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = s.set_recv_buffer_size(WANT as usize);
    }
    debug!(
        bytes = s.recv_buffer_size().unwrap_or(0),
        forced, "DHCP receive buffer"
    );
}

/// Clears the shared core when the server stops, so the handle reports "not running".
struct Clear(Shared);

impl Drop for Clear {
    fn drop(&mut self) {
        *lock(&self.0) = None;
    }
}

enum Exit {
    Stop,
    /// The interface or state directory changed: start over with the new ones.
    Restart,
}

/// Which scope a server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The voice network, on `interfaces.lan.voice_device()`.
    Voice,
    /// The bootstrap scope (`dhcp.bootstrap`) on the untagged port.
    Bootstrap,
}

impl Scope {
    /// The interface served, if the configuration has this scope.
    pub(crate) fn device(self, l: &Loaded) -> Option<String> {
        let c = &l.config;
        match self {
            Scope::Voice => Some(c.interfaces.lan.voice_device()),
            Scope::Bootstrap => c
                .dhcp
                .bootstrap_scope(&c.interfaces.lan)
                .map(|(_, device, _)| device),
        }
    }

    fn state_dir(self, l: &Loaded) -> std::path::PathBuf {
        let d = &l.config.management.state_dir;
        match self {
            Scope::Voice => d.join("dhcp"),
            Scope::Bootstrap => d.join("dhcp-bootstrap"),
        }
    }

    fn settings(self, c: &config::Config) -> anyhow::Result<Settings> {
        match self {
            Scope::Voice => Ok(Settings::from_config(c, Path::new(ZONEINFO))),
            Scope::Bootstrap => Settings::bootstrap_from_config(c)
                .context("dhcp.bootstrap is not configured (or names no VLAN)"),
        }
    }
}

/// Runs the server until `ctx.stop`; fails (and is restarted by the supervisor) when the
/// socket or the lease store fails.
pub(crate) async fn serve(
    shared: Shared,
    scope: Scope,
    mut ctx: Context<Loaded>,
) -> anyhow::Result<()> {
    loop {
        let loaded = ctx.config.borrow_and_update().clone();
        if let Exit::Stop = serve_with(&shared, scope, &mut ctx, &loaded).await? {
            return Ok(());
        }
    }
}

async fn serve_with(
    shared: &Shared,
    scope: Scope,
    ctx: &mut Context<Loaded>,
    loaded: &Loaded,
) -> anyhow::Result<Exit> {
    let device = scope
        .device(loaded)
        .context("dhcp.bootstrap is not configured (or names no VLAN)")?;
    let dir = scope.state_dir(loaded);
    let config = loaded.config.clone();
    let opened = dir.clone();
    let core = tokio::task::spawn_blocking(move || -> anyhow::Result<Core> {
        let settings = scope.settings(&config)?;
        let (store, leases, _) = Store::open(&opened)
            .with_context(|| format!("opening the lease store in {}", opened.display()))?;
        Ok(Core {
            engine: Engine::new(settings, leases),
            store,
        })
    })
    .await??;
    let socket = bind(&device).with_context(|| format!("binding the DHCP server to {device}"))?;
    let leases = core.engine.lease_count();
    *lock(shared) = Some(core);
    let _clear = Clear(shared.clone());
    info!(%device, ?scope, leases, journal = %dir.display(), "DHCP server listening");

    let mut buf = vec![0u8; MAX_REQUEST + 1];
    loop {
        tokio::select! {
            _ = ctx.stop.cancelled() => return Ok(Exit::Stop),
            changed = ctx.config.changed() => {
                if changed.is_err() {
                    return Ok(Exit::Stop);
                }
                let new = ctx.config.borrow_and_update().clone();
                if scope.device(&new).as_deref() != Some(device.as_str()) || scope.state_dir(&new) != dir {
                    info!(?scope, "the interface or state directory changed: restarting the DHCP server");
                    return Ok(Exit::Restart);
                }
                let settings = tokio::task::spawn_blocking(move || scope.settings(&new.config))
                    .await??;
                if let Some(core) = lock(shared).as_mut() {
                    core.engine.set_settings(settings);
                }
                info!(?scope, "DHCP settings reloaded; leases kept");
            }
            received = socket.recv_from(&mut buf) => {
                let (n, _) = received.context("receiving on the DHCP socket")?;
                let mut batch = vec![buf[..n].to_vec()];
                while batch.len() < BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, _)) => batch.push(buf[..n].to_vec()),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e).context("receiving on the DHCP socket"),
                    }
                }
                for reply in exchange(shared, batch).await? {
                    send(&socket, &device, reply).await;
                }
            }
        }
    }
}

/// Handles a batch under the lock and stores its leases; the replies may go out once this
/// returns. A store failure fails the service, which restarts from what is on disk.
async fn exchange(shared: &Shared, batch: Vec<Vec<u8>>) -> anyhow::Result<Vec<Reply>> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = lock(&shared);
        let core = guard
            .as_mut()
            .context("the lease store failed; restarting from the stored leases")?;
        let now = unix_now();
        let (mut persist, mut replies) = (Vec::new(), Vec::new());
        for datagram in &batch {
            if datagram.len() > MAX_REQUEST {
                core.engine.note_malformed();
                debug!(bytes = datagram.len(), "dropping an oversized datagram");
                continue;
            }
            let outcome = core.engine.handle_bytes(now, datagram);
            persist.extend(outcome.persist);
            replies.extend(outcome.reply);
        }
        core.persist(&persist).context("storing leases")?;
        Ok(replies)
    })
    .await?
}

async fn send(socket: &UdpSocket, device: &str, reply: Reply) {
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);
    let to = match reply.to {
        Destination::Relay(ip) => SocketAddrV4::new(ip, SERVER_PORT),
        Destination::Unicast(ip) => SocketAddrV4::new(ip, CLIENT_PORT),
        Destination::Broadcast => broadcast,
        // The client cannot answer ARP for an address it does not have yet: tell the kernel
        // its MAC (as dnsmasq does), or fall back to broadcast, which every client accepts.
        Destination::Link { ip, mac } => match set_neighbour(socket, device, ip, mac) {
            Ok(()) => SocketAddrV4::new(ip, CLIENT_PORT),
            Err(e) => {
                debug!(%ip, error = %e, "cannot add a neighbour entry; broadcasting the reply");
                broadcast
            }
        },
    };
    if let Err(e) = socket.send_to(&reply.bytes, to).await {
        warn!(%to, kind = %reply.kind, error = %e, "sending a DHCP reply failed");
    }
}

/// `ATF_COM` of linux/if_arp.h: the entry is complete (has a hardware address).
const ATF_COM: libc::c_int = 0x02;

/// Adds (or refreshes) the ARP entry `ip` → `mac` on `device` with SIOCSARP (CAP_NET_ADMIN).
/// The entry is an ordinary dynamic one that the kernel ages out.
fn set_neighbour(socket: &UdpSocket, device: &str, ip: Ipv4Addr, mac: [u8; 6]) -> io::Result<()> {
    if device.len() >= 16 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    // SAFETY: arpreq is plain old data; all-zero is a valid value.
    let mut req: libc::arpreq = unsafe { std::mem::zeroed() };
    let pa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) on Linux.
    req.arp_pa = unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(pa) };
    req.arp_ha.sa_family = libc::ARPHRD_ETHER;
    for (d, s) in req.arp_ha.sa_data.iter_mut().zip(mac) {
        *d = s as libc::c_char;
    }
    req.arp_flags = ATF_COM;
    for (d, s) in req.arp_dev.iter_mut().zip(device.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCSARP reads one arpreq, which lives for the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSARP, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
