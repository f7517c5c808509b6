//! The few socket and interface calls std does not offer.

use std::ffi::CStr;
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};

/// Binds a non-blocking UDP socket to `ip:port` with the IPv4 TOS byte `tos` on everything it
/// sends. Created non-blocking and close-on-exec in one call (std's bind and then
/// `set_nonblocking` take a syscall more; four sockets are bound per call).
pub(crate) fn bind_udp(ip: Ipv4Addr, port: u16, tos: u8) -> io::Result<UdpSocket> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned at once below.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns; it is closed when `s` drops.
    let s = unsafe { UdpSocket::from_raw_fd(fd) };
    let v = libc::c_int::from(tos);
    // SAFETY: setsockopt on a socket we own, with a pointer to a c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_TOS,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: bind with a sockaddr_in we own and its size.
    let rc = unsafe {
        libc::bind(
            s.as_raw_fd(),
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(s)
}

/// The IPv4 TOS byte set on a socket.
#[cfg(test)]
pub(crate) fn tos(s: &impl AsRawFd) -> io::Result<u8> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a c_int we own, with its size.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_TOS,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v as u8)
}

/// The process's limit on open files: `(soft, hard)`.
pub(crate) fn open_files_limit() -> io::Result<(u64, u64)> {
    prlimit_nofile(None)
}

/// Raises the soft limit on open files to `wanted`, capped by the hard limit (which only a
/// privileged process may raise); never lowers it. Returns the soft limit now in force.
///
/// Uses prlimit64(2), not setrlimit(2): voxgate.service filters `@resources`, which holds
/// setrlimit, while prlimit64 is in systemd's `@default` set.
pub(crate) fn raise_open_files(wanted: u64) -> io::Result<u64> {
    let (soft, hard) = open_files_limit()?;
    let target = wanted.min(hard);
    if target <= soft {
        return Ok(soft);
    }
    prlimit_nofile(Some((target, hard)))?;
    Ok(target)
}

/// Reads, or sets and reads back, RLIMIT_NOFILE of this process.
fn prlimit_nofile(set: Option<(u64, u64)>) -> io::Result<(u64, u64)> {
    let new = set.map(|(soft, hard)| libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    });
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let new_ptr = new
        .as_ref()
        .map_or(std::ptr::null(), |n| n as *const libc::rlimit64);
    // SAFETY: prlimit64 on this process (pid 0) with pointers to rlimit64 values we own.
    let rc = unsafe { libc::prlimit64(0, libc::RLIMIT_NOFILE, new_ptr, &mut old) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(match set {
        Some(limits) => limits,
        None => (old.rlim_cur, old.rlim_max),
    })
}

/// The first IPv4 address of interface `device` in this network namespace, if any (e.g. the
/// address a DHCP client gave the WAN).
pub fn interface_ipv4(device: &str) -> Option<Ipv4Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string; ifa_addr points to a sockaddr whose
        // family says it is a sockaddr_in when AF_INET.
        let (name, family) = unsafe { (CStr::from_ptr(ifa.ifa_name), (*ifa.ifa_addr).sa_family) };
        if name.to_bytes() == device.as_bytes() && i32::from(family) == libc::AF_INET {
            // SAFETY: see above.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            break;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_socket_carries_ef() {
        let s = bind_udp(Ipv4Addr::LOCALHOST, 0, crate::TOS_EF).unwrap();
        assert_eq!(tos(&s).unwrap(), 0xB8);
        let at = s.local_addr().unwrap();
        assert_eq!(at.ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(at.port(), 0);
        // Non-blocking: nothing queued is an error at once, not a wait.
        let mut buf = [0u8; 8];
        let e = s.recv_from(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        // The port is taken: binding it again fails with the kernel's reason.
        let e = bind_udp(Ipv4Addr::LOCALHOST, at.port(), 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(interface_ipv4("lo"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(interface_ipv4("nosuch0"), None);
    }

    #[test]
    fn open_files_limit_is_raised_up_to_the_hard_limit_and_never_lowered() {
        let (soft, hard) = open_files_limit().unwrap();
        assert!(soft <= hard);
        // Asking for less than the soft limit leaves it alone.
        assert_eq!(raise_open_files(soft.saturating_sub(1)).unwrap(), soft);
        assert_eq!(open_files_limit().unwrap(), (soft, hard));
        // Asking for more than the hard limit gets the hard limit and no more.
        assert_eq!(raise_open_files(hard.saturating_add(1)).unwrap(), hard);
        assert_eq!(open_files_limit().unwrap(), (hard, hard));
    }
}
