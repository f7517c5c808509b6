//! Namespace plumbing: entering, listing the processes inside, deleting, and a tiny ping.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// Where `ip netns` keeps its named namespaces.
pub(crate) const RUN_DIR: &str = "/run/netns";

/// Runs `f` on a fresh thread that has joined the named namespace. Only that thread moves,
/// so the rest of the process stays in its own namespace.
pub(crate) fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = format!("{RUN_DIR}/{name}");
    let ns = File::open(&path).with_context(|| format!("opening {path}"))?;
    let target = ns.metadata()?.ino();
    let joined = std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            // SAFETY: plain syscall on a valid fd; it affects only this thread.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {path}: {}", std::io::Error::last_os_error());
            }
            // Guard: whatever `f` writes (e.g. /proc/sys/net) must land in the lab, never here.
            let now = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
            if now != target {
                bail!("setns {path} did not take effect");
            }
            Ok(f())
        })
        .join()
    });
    joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Sets sysctls in the named namespace, e.g. `("net/ipv4/ip_forward", "1")`.
pub(crate) fn sysctls(name: &str, settings: &[(&str, String)]) -> Result<()> {
    run_in(name, || {
        settings.iter().try_for_each(|(key, value)| {
            std::fs::write(format!("/proc/sys/{key}"), value)
                .with_context(|| format!("sysctl {key}={value} in {name}"))
        })
    })?
}

/// Pids of the processes whose network namespace is the named one.
fn pids_in(name: &str) -> Vec<u32> {
    let Ok(target) = std::fs::metadata(format!("{RUN_DIR}/{name}")) else {
        return Vec::new();
    };
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.dev() == target.dev() && m.ino() == target.ino())
        })
        .collect()
}

fn signal_all(pids: &[u32], sig: i32) {
    for &pid in pids {
        // SAFETY: kill(2) with a pid we own or found in the lab's namespaces.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}

/// Kills everything in the named namespaces (plus `tracked` pids: SIGTERM, then SIGKILL after
/// a short grace) and deletes them. Never fails: problems go to stderr. Returns how many
/// namespaces were deleted.
pub(crate) fn teardown(names: &[String], tracked: &[u32]) -> usize {
    let running = |names: &[String]| names.iter().flat_map(|n| pids_in(n)).collect::<Vec<_>>();
    let first = running(names);
    signal_all(&first, libc::SIGTERM);
    signal_all(tracked, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut left = first;
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left = running(names);
    }
    signal_all(&left, libc::SIGKILL);
    // Tracked pids are our unreaped children: still valid to signal even as zombies.
    signal_all(tracked, libc::SIGKILL);

    let mut deleted = 0;
    for name in names {
        match Command::new("ip").args(["netns", "del", name]).output() {
            Ok(out) if out.status.success() => deleted += 1,
            // Another process's cleanup_stale may have raced us to it.
            Ok(_) if !std::path::Path::new(&format!("{RUN_DIR}/{name}")).exists() => {}
            Ok(out) => eprintln!(
                "voxgate-lab: ip netns del {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("voxgate-lab: ip netns del {name}: {e}"),
        }
    }
    deleted
}

/// One ICMP echo request over a raw socket in the calling thread's namespace.
pub(crate) fn ping(to: Ipv4Addr, timeout: Duration) -> Result<bool> {
    static NEXT_ID: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed) ^ std::process::id() as u16;
    // SAFETY: socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    if fd < 0 {
        bail!("raw ICMP socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(to).to_be(),
        },
        sin_zero: [0; 8],
    };
    // Connecting a raw socket makes the kernel deliver only packets from `to`.
    // SAFETY: sa is a valid sockaddr_in of the given length.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &sa as *const _ as *const libc::sockaddr,
            size_of_val(&sa) as u32,
        )
    };
    if rc != 0 {
        bail!(
            "connect raw socket to {to}: {}",
            std::io::Error::last_os_error()
        );
    }
    let mut req = [
        8u8,
        0,
        0,
        0,
        (id >> 8) as u8,
        id as u8,
        0,
        1,
        b'v',
        b'o',
        b'x',
        b'g',
        b'a',
        b't',
        b'e',
        0,
    ];
    let sum = checksum(&req);
    req[2..4].copy_from_slice(&sum.to_be_bytes());
    // SAFETY: sending from a valid buffer on a valid socket.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        // No route or unreachable neighbour: simply not reachable.
        return Ok(false);
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) } <= 0 {
            continue;
        }
        // SAFETY: receiving into a valid buffer.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => continue,
                // An ICMP error came back (e.g. host unreachable): not reachable.
                _ => return Ok(false),
            }
        }
        // Raw IPv4 sockets hand us the IP header too.
        let pkt = &buf[..n as usize];
        let icmp = &pkt[usize::from(pkt[0] & 0x0f) * 4..];
        if icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == req[4..6] {
            return Ok(true);
        }
    }
    Ok(false)
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
