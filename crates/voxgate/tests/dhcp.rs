//! The DHCP server through the daemon (`voxgate run` in the lab's box), with simulated clients
//! in the phone namespace: two hundred perfdhcp clients get distinct addresses; a declined
//! address stays out of use for its quarantine (across a restart too) and nothing answers a
//! DISCOVER on the WAN side; no acknowledged lease is lost when the daemon is stopped with
//! SIGTERM or killed with SIGKILL in the middle of a perfdhcp run.
//!
//! The clients that must know exactly what they were acknowledged speak DHCP themselves (a
//! few lines of hand-made packets below, independent of the server's codec), from 0.0.0.0:68
//! bound to the phone's eth0, asking for broadcast replies. perfdhcp, by contrast, acts as a
//! relay agent from the phone's own address (giaddr 10.100.0.50, port 67), which the server
//! serves from the same subnet.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lab::{Lab, LabProcess, Node};
use serde_json::Value;

mod common;
use common::*;

const BOX_LAN: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);
/// The pool of these tests: 231 addresses, room for 200 clients and some.
const POOL: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(10, 100, 0, 20),
    Ipv4Addr::new(10, 100, 0, 250),
);

fn in_pool(a: Ipv4Addr) -> bool {
    (POOL.0..=POOL.1).contains(&a)
}

/// The lab configuration with the pool `start`-`end` and `extra` (lines of the `dhcp:` section).
fn config_with_pool(start: Ipv4Addr, end: Ipv4Addr, extra: &str) -> String {
    let old = "    - start: 10.100.0.100\n      end: 10.100.0.199\n";
    assert!(
        config::LAB_CONFIG.contains(old),
        "the lab config's pool moved"
    );
    config::LAB_CONFIG.replace(
        old,
        &format!("    - start: {start}\n      end: {end}\n{extra}"),
    )
}

/// `voxgate run` in the box, with its state directory kept across restarts.
struct Daemon<'a> {
    lab: &'a Lab,
    b: Box_,
    process: Option<LabProcess>,
}

impl<'a> Daemon<'a> {
    fn start(lab: &'a Lab, config: &str) -> Daemon<'a> {
        let b = Box_::new();
        std::fs::write(b.config(), config).unwrap();
        let mut d = Daemon {
            lab,
            b,
            process: None,
        };
        d.restart();
        d
    }

    /// Starts the daemon (again) and waits until the DHCP server has loaded its leases.
    fn restart(&mut self) {
        assert!(self.process.is_none(), "the daemon is running");
        let _ = std::fs::remove_file(self.b.socket());
        self.process = Some(self.b.start(self.lab));
        let sock = self.b.socket();
        wait_status(&sock, Duration::from_secs(15), "dhcp running", |s| {
            service(s, "dhcp")["state"] == "running"
        });
        // "running" comes as the service starts; the lease list answers once the store is
        // loaded and the socket bound.
        let t0 = Instant::now();
        while !cli(&sock, &["leases", "--json"]).status.success() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the DHCP server did not come up; log:\n{}",
                self.b.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM: a clean exit within 5 s.
    fn terminate(&mut self) {
        let mut p = self.process.take().expect("the daemon is not running");
        p.signal(libc::SIGTERM).unwrap();
        let st = p.wait_timeout(Duration::from_secs(5)).unwrap();
        let st = st.unwrap_or_else(|| panic!("no exit within 5 s; log:\n{}", self.b.log()));
        assert!(st.success(), "exit status {st:?}; log:\n{}", self.b.log());
    }

    /// SIGKILL, and reaped: nothing it did not finish survives but what is on disk.
    fn kill(&mut self) {
        let mut p = self.process.take().expect("the daemon is not running");
        p.kill();
        assert!(
            p.wait_timeout(Duration::from_secs(5)).unwrap().is_some(),
            "the daemon survived SIGKILL"
        );
    }

    /// `voxgate leases --json`.
    fn leases(&self) -> Vec<Value> {
        let out = cli(&self.b.socket(), &["leases", "--json"]);
        assert!(
            out.status.success(),
            "voxgate leases: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Bound leases: MAC → address.
    fn bound(&self) -> BTreeMap<String, Ipv4Addr> {
        self.leases()
            .iter()
            .filter(|l| l["state"] == "bound")
            .map(|l| {
                (
                    l["mac"].as_str().unwrap().to_string(),
                    l["address"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// A DHCP client made by hand (RFC 2131 §2, §3): enough to DISCOVER, REQUEST, DECLINE and read
// the server's replies.

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const DECLINE: u8 = 4;
const ACK: u8 = 5;
const NAK: u8 = 6;
const COOKIE: [u8; 4] = [99, 130, 83, 99];

type Mac = [u8; 6];

fn mac_text(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A BOOTREQUEST from `mac` asking for broadcast replies, with option 53 = `kind` and `opts`.
fn message(kind: u8, mac: &Mac, xid: u32, opts: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // Ethernet
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[10] = 0x80; // broadcast: the phone has no address yet
    b[28..34].copy_from_slice(mac);
    b[236..240].copy_from_slice(&COOKIE);
    b.extend([53, 1, kind]);
    for (code, value) in opts {
        b.push(*code);
        b.push(value.len() as u8);
        b.extend_from_slice(value);
    }
    b.push(255);
    b.resize(b.len().max(300), 0); // the BOOTP minimum
    b
}

/// Option 50 (requested address) and, if given, 54 (server identifier).
fn asking(addr: Ipv4Addr, server: Option<Ipv4Addr>) -> Vec<(u8, Vec<u8>)> {
    let mut o = vec![(50, addr.octets().to_vec())];
    if let Some(s) = server {
        o.push((54, s.octets().to_vec()));
    }
    o
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reply {
    kind: u8,
    xid: u32,
    mac: Mac,
    yiaddr: Ipv4Addr,
}

fn parse(b: &[u8]) -> Option<Reply> {
    if b.len() < 240 || b[0] != 2 || b[236..240] != COOKIE {
        return None;
    }
    let mut kind = None;
    let mut i = 240;
    while i < b.len() {
        match b[i] {
            0 => i += 1,
            255 => break,
            code => {
                let len = usize::from(*b.get(i + 1)?);
                let value = b.get(i + 2..i + 2 + len)?;
                if code == 53 && len == 1 {
                    kind = Some(value[0]);
                }
                i += 2 + len;
            }
        }
    }
    Some(Reply {
        kind: kind?,
        xid: u32::from_be_bytes(b[4..8].try_into().ok()?),
        mac: b[28..34].try_into().ok()?,
        yiaddr: Ipv4Addr::from(<[u8; 4]>::try_from(&b[16..20]).ok()?),
    })
}

/// 0.0.0.0:68 on `device`, broadcasting; reads time out after 20 ms. Call it in the namespace.
fn client_socket(device: &str) -> UdpSocket {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68)).unwrap();
    s.set_broadcast(true).unwrap();
    // SAFETY: the option value is the device name, which outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            device.as_ptr().cast(),
            device.len() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "SO_BINDTODEVICE {device}: {}",
        std::io::Error::last_os_error()
    );
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

fn broadcast(s: &UdpSocket, packet: &[u8]) {
    s.send_to(packet, (Ipv4Addr::BROADCAST, 67)).unwrap();
}

fn receive(s: &UdpSocket) -> Option<Reply> {
    let mut buf = [0u8; 1500];
    match s.recv(&mut buf) {
        Ok(n) => parse(&buf[..n]),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("receiving: {e}"),
    }
}

/// Sends each `(xid, packet)` (paced), resends those unanswered every 500 ms, and returns the
/// first reply to each xid that came within `limit`.
fn ask_all(s: &UdpSocket, packets: &[(u32, Vec<u8>)], limit: Duration) -> HashMap<u32, Reply> {
    let mut replies = HashMap::new();
    let deadline = Instant::now() + limit;
    let mut next_round = Instant::now();
    while replies.len() < packets.len() && Instant::now() < deadline {
        if Instant::now() >= next_round {
            for (_, p) in packets.iter().filter(|(x, _)| !replies.contains_key(x)) {
                broadcast(s, p);
                // A little spacing, so a burst does not overflow the server's socket buffer.
                std::thread::sleep(Duration::from_micros(500));
            }
            next_round = Instant::now() + Duration::from_millis(500);
        }
        while let Some(r) = receive(s) {
            if packets.iter().any(|(x, _)| *x == r.xid) {
                replies.entry(r.xid).or_insert(r);
            }
        }
    }
    replies
}

/// One DISCOVER → OFFER → REQUEST → ACK for `mac`; the address, or `None` if no offer came.
fn obtain(s: &UdpSocket, mac: &Mac, xid: u32) -> Option<Ipv4Addr> {
    let offer = *ask_all(
        s,
        &[(xid, message(DISCOVER, mac, xid, &[]))],
        Duration::from_millis(1500),
    )
    .get(&xid)?;
    assert_eq!(offer.kind, OFFER, "{offer:?}");
    let xid2 = xid ^ 0x8000_0000;
    let req = message(REQUEST, mac, xid2, &asking(offer.yiaddr, Some(BOX_LAN)));
    let ack = ask_all(s, &[(xid2, req)], Duration::from_secs(3))[&xid2];
    assert_eq!((ack.kind, ack.yiaddr), (ACK, offer.yiaddr), "{ack:?}");
    Some(ack.yiaddr)
}

/// What an offer to `mac` would be now (no REQUEST follows; the offer lapses on its own).
fn offered(s: &UdpSocket, mac: &Mac, xid: u32) -> Option<Ipv4Addr> {
    let replies = ask_all(
        s,
        &[(xid, message(DISCOVER, mac, xid, &[]))],
        Duration::from_millis(1200),
    );
    replies.get(&xid).map(|r| {
        assert_eq!(r.kind, OFFER, "{r:?}");
        r.yiaddr
    })
}

/// Many clients at once, each going DISCOVER → REQUEST → bound, started `pace` apart and
/// resending after 400 ms of silence, until all are bound or `stop` is set (then the replies
/// already received are read). Every ACK is recorded in `acked` (MAC → address) as it arrives.
fn swarm(
    s: &UdpSocket,
    macs: &[Mac],
    xid_base: u32,
    pace: Duration,
    stop: &AtomicBool,
    acked: &Mutex<BTreeMap<Mac, Ipv4Addr>>,
) {
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        Idle,
        Discovering,
        Requesting(Ipv4Addr),
        Bound,
    }
    let mut state = vec![(St::Idle, Instant::now()); macs.len()];
    let t0 = Instant::now();
    let send = |i: usize, st: St| {
        let xid = xid_base + i as u32;
        let p = match st {
            St::Requesting(a) => message(REQUEST, &macs[i], xid, &asking(a, Some(BOX_LAN))),
            _ => message(DISCOVER, &macs[i], xid, &[]),
        };
        broadcast(s, &p);
    };
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if !stopping && state.iter().all(|(st, _)| *st == St::Bound) {
            return;
        }
        let now = Instant::now();
        for (i, (st, at)) in state.iter_mut().enumerate() {
            let due = match *st {
                St::Idle => now >= t0 + pace * i as u32,
                St::Discovering | St::Requesting(_) => now >= *at + Duration::from_millis(400),
                St::Bound => false,
            };
            if due && !stopping {
                if *st == St::Idle {
                    *st = St::Discovering;
                }
                send(i, *st);
                *at = now;
            }
        }
        while let Some(r) = receive(s) {
            let Some(i) = r.xid.checked_sub(xid_base).map(|i| i as usize) else {
                continue;
            };
            if i >= macs.len() || r.mac != macs[i] {
                continue;
            }
            match (state[i].0, r.kind) {
                (St::Discovering, OFFER) => {
                    state[i] = (St::Requesting(r.yiaddr), Instant::now());
                    if !stopping {
                        send(i, state[i].0);
                    }
                }
                (St::Requesting(a), ACK) if r.yiaddr == a => {
                    state[i].0 = St::Bound;
                    acked.lock().unwrap().insert(macs[i], a);
                }
                (St::Requesting(_), NAK) => {
                    state[i] = (St::Discovering, Instant::now());
                    if !stopping {
                        send(i, St::Discovering);
                    }
                }
                _ => {}
            }
        }
        if stopping {
            // What was in the socket is read; nothing more is sent.
            return;
        }
    }
}

/// INIT-REBOOT (RFC 2131 §4.3.2): each client asks for its address with option 50, no server
/// identifier and no ciaddr, as a phone does after a reboot. Returns MAC → the reply.
fn reboot_all(
    s: &UdpSocket,
    held: &BTreeMap<Mac, Ipv4Addr>,
    xid_base: u32,
) -> BTreeMap<Mac, Reply> {
    let packets: Vec<(u32, Vec<u8>)> = held
        .iter()
        .enumerate()
        .map(|(i, (mac, addr))| {
            let xid = xid_base + i as u32;
            (xid, message(REQUEST, mac, xid, &asking(*addr, None)))
        })
        .collect();
    let replies = ask_all(s, &packets, Duration::from_secs(6));
    held.keys()
        .enumerate()
        .filter_map(|(i, mac)| Some((*mac, *replies.get(&(xid_base + i as u32))?)))
        .collect()
}

/// Every client got an ACK for the address it held.
fn assert_all_kept(held: &BTreeMap<Mac, Ipv4Addr>, replies: &BTreeMap<Mac, Reply>, when: &str) {
    let mut lost = Vec::new();
    for (mac, addr) in held {
        match replies.get(mac) {
            Some(r) if r.kind == ACK && r.yiaddr == *addr => {}
            other => lost.push(format!("{} held {addr}, got {other:?}", mac_text(mac))),
        }
    }
    assert!(
        lost.is_empty(),
        "{when}: {} of {} acknowledged leases lost:\n{}",
        lost.len(),
        held.len(),
        lost.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// perfdhcp (Kea's load generator; Debian package kea-admin).

fn require_perfdhcp() {
    let found = Command::new("perfdhcp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "perfdhcp is missing: install Debian's kea-admin (scripts/install-deps)"
    );
}

/// perfdhcp's final report, per exchange.
#[derive(Debug, Default, Clone, Copy)]
struct Exchange {
    sent: u64,
    received: u64,
    drops: u64,
    non_unique: u64,
    orphans: u64,
    rejected: u64,
}

#[derive(Debug, Default)]
struct Report {
    discover_offer: Exchange,
    request_ack: Exchange,
}

fn parse_perfdhcp(text: &str) -> Report {
    let mut r = Report::default();
    let mut current: Option<&mut Exchange> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("***Statistics for: DISCOVER-OFFER") {
            current = Some(&mut r.discover_offer);
            continue;
        }
        if line.starts_with("***Statistics for: REQUEST-ACK") {
            current = Some(&mut r.request_ack);
            continue;
        }
        let Some(ex) = current.as_deref_mut() else {
            continue;
        };
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let Ok(n) = value.trim().parse::<u64>() else {
            continue;
        };
        match key.trim() {
            "sent packets" => ex.sent = n,
            "received packets" => ex.received = n,
            "drops" => ex.drops = n,
            "non unique addresses" => ex.non_unique = n,
            "orphans" => ex.orphans = n,
            "rejected leases" => ex.rejected = n,
            _ => {}
        }
    }
    r
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------------

#[test]
fn two_hundred_perfdhcp_clients_get_distinct_addresses() {
    lab::require_root().unwrap();
    require_perfdhcp();
    let lab = Lab::new().unwrap();
    let d = Daemon::start(&lab, &config_with_pool(POOL.0, POOL.1, ""));

    // 200 clients (perfdhcp steps through 200 MACs), one DORA each at 200/s, checking
    // that no two are given the same address; a reply may take 2 s (a busy CI machine), and
    // perfdhcp waits 2 s for the last ones.
    let t0 = Instant::now();
    let out = lab
        .command(Node::Phone, "perfdhcp")
        .args([
            "-4", "-l", "eth0", "-R", "200", "-n", "200", "-r", "200", "-u", "-d", "2", "-W",
            "2000000",
        ])
        .arg(BOX_LAN.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let output = text(&out);
    let r = parse_perfdhcp(&output);
    eprintln!("perfdhcp ({:.1?}): {r:?}", t0.elapsed());
    assert!(
        out.status.success(),
        "perfdhcp failed ({}):\n{output}",
        out.status
    );
    assert_eq!(
        (
            r.discover_offer.sent,
            r.discover_offer.received,
            r.discover_offer.drops
        ),
        (200, 200, 0),
        "{output}"
    );
    assert_eq!(
        (
            r.request_ack.sent,
            r.request_ack.received,
            r.request_ack.drops
        ),
        (200, 200, 0),
        "{output}"
    );
    for ex in [r.discover_offer, r.request_ack] {
        assert_eq!(
            (ex.non_unique, ex.orphans, ex.rejected),
            (0, 0, 0),
            "{output}"
        );
    }

    // The daemon's own view: 200 bound leases, 200 MACs, 200 addresses, all in the pool.
    let bound = d.bound();
    let addresses: BTreeSet<Ipv4Addr> = bound.values().copied().collect();
    assert_eq!(bound.len(), 200, "{bound:#?}");
    assert_eq!(
        addresses.len(),
        200,
        "two clients share an address: {bound:#?}"
    );
    assert!(addresses.iter().all(|a| in_pool(*a)), "{addresses:?}");
}

#[test]
fn a_declined_address_is_not_offered_during_its_quarantine_and_wan_gets_nothing() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    // Two addresses, so that a quarantined one is the only one left to offer.
    // Long enough for the checks and a restart on a busy machine.
    let quarantine = Duration::from_secs(12);
    let (x0, x1) = (Ipv4Addr::new(10, 100, 0, 20), Ipv4Addr::new(10, 100, 0, 21));
    let mut d = Daemon::start(
        &lab,
        &config_with_pool(
            x0,
            x1,
            &format!("  decline_quarantine: {}s\n", quarantine.as_secs()),
        ),
    );
    let (a, b, wan) = (
        [0x02, 0xdc, 0, 0, 0, 0xa],
        [0x02, 0xdc, 0, 0, 0, 0xb],
        [0x02, 0xdc, 0, 0, 0, 0xe],
    );

    // A DISCOVER from the broadband router's side of wan0, with the pool free: no answer,
    // and no lease for it.
    let reply = lab
        .in_netns(Node::Isp, || {
            let s = client_socket("lan0");
            ask_all(
                &s,
                &[(0x0e0e, message(DISCOVER, &wan, 0x0e0e, &[]))],
                Duration::from_millis(1500),
            )
        })
        .unwrap();
    assert!(reply.is_empty(), "the WAN side got {reply:?}");
    assert!(d.leases().is_empty(), "{:#?}", d.leases());

    // A takes an address and declines it (another device answers ARP on it).
    let declined = lab
        .in_netns(Node::Phone, || {
            let s = client_socket("eth0");
            let x = obtain(&s, &a, 0xdc01).expect("no offer to A");
            broadcast(&s, &message(DECLINE, &a, 0xdc02, &asking(x, Some(BOX_LAN))));
            x
        })
        .unwrap();
    let t_decline = Instant::now();
    let t0 = Instant::now();
    loop {
        let leases = d.leases();
        if leases
            .iter()
            .any(|l| l["address"] == declined.to_string() && l["state"] == "declined")
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "no declined lease: {leases:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let other = if declined == x0 { x1 } else { x0 };
    // The server counts whole seconds: its quarantine may end up to 1 s early; a check for
    // no offer takes up to 1.5 s. Slower than that and the test cannot tell.
    let still_quarantined = || {
        assert!(
            t_decline.elapsed() + Duration::from_millis(2500) < quarantine,
            "the test was too slow to check within the quarantine ({:?})",
            t_decline.elapsed()
        )
    };

    // A starts over and gets the other address; B then gets nothing at all: the quarantined
    // address is the only one left and is not offered.
    lab.in_netns(Node::Phone, || {
        let s = client_socket("eth0");
        assert_eq!(obtain(&s, &a, 0xdc03), Some(other));
        still_quarantined();
        assert_eq!(
            offered(&s, &b, 0xdc04),
            None,
            "offered during the quarantine"
        );
    })
    .unwrap();

    // The quarantine is stored: after a restart it still holds.
    d.terminate();
    d.restart();
    let leases = d.leases();
    assert!(
        leases
            .iter()
            .any(|l| l["address"] == declined.to_string() && l["state"] == "declined"),
        "{leases:#?}"
    );
    still_quarantined();
    lab.in_netns(Node::Phone, || {
        let s = client_socket("eth0");
        assert_eq!(
            offered(&s, &b, 0xdc05),
            None,
            "offered during the quarantine"
        );
    })
    .unwrap();

    // Once the quarantine is over, the address is offered again.
    std::thread::sleep((t_decline + quarantine + Duration::from_millis(500)) - Instant::now());
    lab.in_netns(Node::Phone, || {
        let s = client_socket("eth0");
        assert_eq!(offered(&s, &b, 0xdc06), Some(declined));
    })
    .unwrap();
    d.terminate();
}

#[test]
fn no_acknowledged_lease_is_lost_to_sigterm_or_sigkill_during_a_perfdhcp_run() {
    lab::require_root().unwrap();
    require_perfdhcp();
    let lab = Lab::new().unwrap();
    let mut d = Daemon::start(&lab, &config_with_pool(POOL.0, POOL.1, ""));

    // Background load: perfdhcp's 50 clients (relayed) doing DORA again and again, 100 a
    // second for 8 s, every ACK a stored lease renewal.
    let mut perf_cmd = lab.command(Node::Phone, "perfdhcp");
    perf_cmd
        .args(["-4", "-l", "eth0", "-R", "50", "-r", "100", "-p", "8"])
        .arg(BOX_LAN.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut perf = lab.spawn(Node::Phone, perf_cmd).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // Our own 150 clients, one started every 10 ms, each ACK recorded as it arrives. The
    // daemon is killed (SIGKILL) and restarted three times while they and perfdhcp run;
    // the clients caught mid-exchange retry against the restarted daemon.
    let macs: Vec<Mac> = (0..150u8).map(|i| [0x02, 0xd0, 0, 0, 1, i]).collect();
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(BTreeMap::new());
    let mut kills = Vec::new();
    std::thread::scope(|scope| {
        let clients = scope.spawn(|| {
            lab.in_netns(Node::Phone, || {
                swarm(
                    &client_socket("eth0"),
                    &macs,
                    0x0d00_0000,
                    Duration::from_millis(10),
                    &stop,
                    &acked,
                )
            })
            .unwrap()
        });
        for (round, threshold) in [40, 90, 140].into_iter().enumerate() {
            let t0 = Instant::now();
            while acked.lock().unwrap().len() < threshold {
                assert!(
                    t0.elapsed() < Duration::from_secs(10) && !clients.is_finished(),
                    "only {} clients bound; log:\n{}",
                    acked.lock().unwrap().len(),
                    d.b.log()
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(
                perf.wait_timeout(Duration::ZERO).unwrap().is_none(),
                "perfdhcp ended before kill {round}"
            );
            d.kill();
            kills.push(acked.lock().unwrap().len());
            if round < 2 {
                d.restart();
            }
        }
        // The clients stop; ACKs still in their socket (sent before the last kill) count.
        stop.store(true, Ordering::SeqCst);
        clients.join().unwrap();
    });
    let held = acked.into_inner().unwrap();
    eprintln!(
        "clients acknowledged at each SIGKILL: {kills:?}; {} of {} in all",
        held.len(),
        macs.len()
    );
    assert!(held.len() < macs.len(), "the last kill came after the run");
    let distinct: BTreeSet<Ipv4Addr> = held.values().copied().collect();
    assert_eq!(distinct.len(), held.len(), "{held:#?}");
    assert!(distinct.iter().all(|a| in_pool(*a)), "{held:#?}");

    // Restarted on the same state: every acknowledged lease is listed, and every client
    // re-requesting its address (INIT-REBOOT) gets it.
    d.restart();
    let bound = d.bound();
    for (mac, addr) in &held {
        assert_eq!(
            bound.get(&mac_text(mac)),
            Some(addr),
            "{} is not bound after the restart",
            mac_text(mac)
        );
    }
    let replies = lab
        .in_netns(Node::Phone, || {
            reboot_all(&client_socket("eth0"), &held, 0x0e00_0000)
        })
        .unwrap();
    assert_all_kept(&held, &replies, "after SIGKILL");

    // The rest of the clients finish (those holding a lease are offered it again), and
    // perfdhcp its run.
    let stop = AtomicBool::new(false);
    let all = Mutex::new(BTreeMap::new());
    lab.in_netns(Node::Phone, || {
        swarm(
            &client_socket("eth0"),
            &macs,
            0x0f00_0000,
            Duration::from_millis(2),
            &stop,
            &all,
        )
    })
    .unwrap();
    let all = all.into_inner().unwrap();
    assert_eq!(all.len(), macs.len());
    for (mac, addr) in &held {
        assert_eq!(all.get(mac), Some(addr), "{} moved", mac_text(mac));
    }
    let distinct: BTreeSet<Ipv4Addr> = all.values().copied().collect();
    assert_eq!(distinct.len(), all.len(), "{all:#?}");
    let st = perf.wait_timeout(Duration::from_secs(10)).unwrap();
    let mut perf_out = String::new();
    if let Some(o) = perf.child_mut().stdout.as_mut() {
        use std::io::Read;
        o.read_to_string(&mut perf_out).unwrap();
    }
    let r = parse_perfdhcp(&perf_out);
    // Its drops are the exchanges that met a dead daemon.
    eprintln!("perfdhcp across the kills ({st:?}): {r:?}");
    assert!(
        r.request_ack.received > 0,
        "perfdhcp got no ACK ({st:?}):\n{perf_out}"
    );

    // SIGTERM and a restart: still all there.
    d.terminate();
    d.restart();
    let replies = lab
        .in_netns(Node::Phone, || {
            reboot_all(&client_socket("eth0"), &all, 0x0c00_0000)
        })
        .unwrap();
    assert_all_kept(&all, &replies, "after SIGTERM");
    d.terminate();
}
