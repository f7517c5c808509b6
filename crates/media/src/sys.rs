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
}
