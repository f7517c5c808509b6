//! The tokio shell: an AF_PACKET socket for EtherType 0x88cc bound to the untagged voice port,
//! member of the LLDP group address so real NICs pass neighbours' frames up.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use config::Loaded;
use supervisor::Context;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::agent::{Agent, Received};
use crate::frame::{ETHERTYPE, LLDP_MULTICAST};

/// A raw socket on one interface.
struct Port {
    fd: AsyncFd<OwnedFd>,
    ifindex: u32,
    mac: [u8; 6],
}

fn last_error<T>(what: &str) -> io::Result<T> {
    let e = io::Error::last_os_error();
    Err(io::Error::new(e.kind(), format!("{what}: {e}")))
}

impl Port {
    /// Opens the socket on `device` (needs CAP_NET_RAW).
    fn open(device: &str) -> io::Result<Port> {
        let name = std::ffi::CString::new(device)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"))?;
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("interface {device} does not exist"),
            ));
        }
        let proto = ETHERTYPE.to_be();
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return last_error("opening an AF_PACKET socket (needs CAP_NET_RAW)");
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: bind reads one sockaddr_ll of the size given.
        if unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        } < 0
        {
            return last_error(&format!("binding to {device}"));
        }
        // SAFETY: packet_mreq is plain old data.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = ifindex as i32;
        mreq.mr_type = libc::PACKET_MR_MULTICAST as u16;
        mreq.mr_alen = 6;
        mreq.mr_address[..6].copy_from_slice(&LLDP_MULTICAST);
        // SAFETY: setsockopt reads one packet_mreq.
        if unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as u32,
            )
        } < 0
        {
            return last_error("joining the LLDP multicast group");
        }
        let mac = hardware_address(&fd, device)?;
        // SAFETY: the OwnedFd is open and moves into the AsyncFd, which alone owns it from here.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Port { fd, ifindex, mac })
    }

    async fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            // SAFETY: send reads `frame` for its length.
            let r = guard.try_io(|fd| {
                let n =
                    unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match r {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// The next frame that arrived from the wire (frames the box itself sent are skipped).
    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let r = guard.try_io(|fd| {
                // SAFETY: sockaddr_ll is plain old data; recvfrom writes at most `len` bytes
                // into each buffer.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                let n = unsafe {
                    libc::recvfrom(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut len,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok((n as usize, from.sll_pkttype))
                }
            });
            match r {
                Ok(Ok((_, t))) if t == libc::PACKET_OUTGOING => continue,
                Ok(Ok((n, _))) => return Ok(n),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// The interface's MAC address (SIOCGIFHWADDR).
fn hardware_address(fd: &OwnedFd, device: &str) -> io::Result<[u8; 6]> {
    // SAFETY: ifreq is plain old data.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(device.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills the ifreq it is given.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } < 0 {
        return last_error(&format!("reading the MAC address of {device}"));
    }
    // SAFETY: the ioctl filled ifru_hwaddr.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

fn interval(l: &Loaded) -> Duration {
    l.config.lldp.interval.0
}

/// Runs until `ctx.stop`, sending the shutdown frame on the way out.
pub(crate) async fn run(mut ctx: Context<Loaded>) -> anyhow::Result<()> {
    let start = Instant::now();
    let now = move || start.elapsed().as_millis() as u64;
    let mut loaded: Arc<Loaded> = ctx.config.borrow_and_update().clone();
    loop {
        let device = loaded.config.interfaces.lan.device.clone();
        let port =
            Port::open(&device).with_context(|| format!("opening the LLDP socket on {device}"))?;
        let mut agent = Agent::new(
            crate::advert(&loaded.config, port.mac, port.ifindex),
            interval(&loaded),
            now(),
        );
        let p = &crate::policies(&loaded.config)[0];
        info!(%device, vlan = p.vlan, tagged = p.tagged, priority = p.priority, dscp = p.dscp,
            interval = %loaded.config.lldp.interval, "LLDP-MED advertising the voice policy");
        let mut buf = vec![0u8; 2048];
        let next_device = loop {
            let poll = agent.poll(now());
            if let Some(f) = poll.frame {
                port.send(&f)
                    .await
                    .with_context(|| format!("sending an LLDP frame on {device}"))?;
            }
            let wake = start + Duration::from_millis(poll.next);
            tokio::select! {
                _ = ctx.stop.cancelled() => {
                    if let Err(e) = port.send(&agent.shutdown_frame()).await {
                        warn!(%device, error = %e, "sending the LLDP shutdown frame failed");
                    }
                    info!(%device, sent = agent.sent(), "LLDP stopped; neighbours told to forget the box");
                    return Ok(());
                }
                changed = ctx.config.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    loaded = ctx.config.borrow_and_update().clone();
                    let new_device = loaded.config.interfaces.lan.device.clone();
                    if new_device != device {
                        let _ = port.send(&agent.shutdown_frame()).await;
                        info!(from = %device, to = %new_device, "the voice port changed: LLDP moves");
                        break new_device;
                    }
                    agent.set_advert(
                        crate::advert(&loaded.config, port.mac, port.ifindex),
                        interval(&loaded),
                        now(),
                    );
                }
                received = port.recv(&mut buf) => {
                    let n = received.with_context(|| format!("receiving on the LLDP socket of {device}"))?;
                    match agent.receive(now(), &buf[..n]) {
                        Ok(Received::New(nb)) => info!(%device, chassis = %nb.chassis, port = %nb.port,
                            name = nb.system_name.as_deref().unwrap_or("-"),
                            description = nb.system_description.as_deref().unwrap_or("-"),
                            med_device_type = ?nb.med_device_type, policies = ?nb.policies,
                            "LLDP neighbour appeared"),
                        Ok(Received::Gone(nb)) => info!(%device, chassis = %nb.chassis, port = %nb.port,
                            "LLDP neighbour left"),
                        Ok(Received::Full) => debug!(%device, "LLDP neighbour table full; frame not remembered"),
                        Ok(Received::Refreshed) => {}
                        Err(e) => debug!(%device, error = %e, bytes = n, "dropping a malformed LLDP frame"),
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        };
        debug!(device = %next_device, "reopening the LLDP socket");
    }
}
