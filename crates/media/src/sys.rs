//! The few socket and interface calls std does not offer.

use std::ffi::CStr;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

/// Binds a non-blocking UDP socket to `ip:port` with the IPv4 TOS byte `tos` on everything it
/// sends.
pub(crate) fn bind_udp(ip: Ipv4Addr, port: u16, tos: u8) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(SocketAddrV4::new(ip, port))?;
    s.set_nonblocking(true)?;
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
        assert_eq!(interface_ipv4("lo"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(interface_ipv4("nosuch0"), None);
    }
}
