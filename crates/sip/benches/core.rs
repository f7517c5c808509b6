//! Benchmark (not a test) of the B2BUA core alone: no sockets, no media relay, a fake clock.
//! Each call is a phone's INVITE, the provider's 180 and 200, the phone's ACK and BYE, the
//! provider's 200 to the BYE: 6 datagrams in, 7 out (100 Trying to the phone included), the
//! work the daemon's SIP thread does per call apart from system calls and the relay.
//!
//! ```sh
//! cargo bench -p voxgate-sip --bench core -- [calls]
//! # instructions per call, repeatable on a busy machine:
//! valgrind --tool=callgrind target/release/deps/core-* 2000
//! ```
//!
//! Prints wall time per call and calls per second of one core, then heap bytes per call and
//! per registration held (a counting allocator: live bytes, not what the allocator keeps from
//! the system).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use sip::b2bua::{B2bua, MediaControl, Settings, Transport};
use sip::transaction::Side;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{header, phone, provider};

/// The system allocator, counting the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The provider's answer to `req` (a sipp UAS's shape: its tag, its Contact).
fn answer(req: &str, status: &str, body: &str) -> Vec<u8> {
    common::answer(
        req,
        status,
        "pv8812",
        "Contact: <sip:bob@198.51.100.10:5060>\r\n",
        body,
    )
}

/// The relay's SDP rewriting is measured in crates/media; here offers pass unchanged.
struct PassThrough;

impl MediaControl for PassThrough {
    fn offer(&mut self, _: &str, _: Side, sdp: &[u8]) -> Result<Vec<u8>, String> {
        Ok(sdp.to_vec())
    }
    fn answer(&mut self, _: &str, _: Side, sdp: &[u8]) -> Result<Vec<u8>, String> {
        Ok(sdp.to_vec())
    }
    fn release(&mut self, _: &str) {}
    fn public_address(&mut self, _: std::net::Ipv4Addr) {}
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.100.0.50\r\ns=-\r\nc=IN IP4 10.100.0.50\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";

/// Everything the box has to send: (to the phone, to the provider).
fn drain(b: &mut B2bua) -> (Vec<String>, Vec<String>) {
    let mut out = (Vec::new(), Vec::new());
    while let Some((p, m)) = b.poll_transmit() {
        let m = String::from_utf8(m).unwrap();
        if p == phone() {
            out.0.push(m)
        } else {
            out.1.push(m)
        }
    }
    out
}

/// A call set up: the phone's in-dialog request builder's parts.
struct Up {
    n: u64,
    call_id: String,
    box_to: String,
    contact: String,
}

impl Up {
    /// The phone's in-dialog request.
    fn request(&self, method: &str, cseq: u32, branch: &str) -> String {
        let Up {
            n,
            call_id,
            box_to,
            contact,
        } = self;
        format!("{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch=z9hG4bK-{n}-{branch};rport\r\nFrom: \"Reception\" <sip:1001@10.100.0.50:5070>;tag={n}\r\nTo: {box_to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    }
}

/// One call; returns the number of datagrams the box sent.
fn call(b: &mut B2bua, now: Instant, n: u64) -> usize {
    let (up, sent) = set_up(b, now, n);
    sent + hang_up(b, now, &up)
}

/// A call up to the phone's ACK; returns it and the number of datagrams the box sent.
fn set_up(b: &mut B2bua, now: Instant, n: u64) -> (Up, usize) {
    let call_id = format!("{n}-4242@10.100.0.50");
    let invite = format!(
        "INVITE sip:01632960123@198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch=z9hG4bK-{n}-1;rport\r\nFrom: \"Reception\" <sip:1001@10.100.0.50:5070>;tag={n}\r\nTo: <sip:01632960123@198.51.100.10>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@10.100.0.50:5070>\r\nMax-Forwards: 70\r\nUser-Agent: Yealink SIP-T46U 108.86.0.45\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, INFO, UPDATE, PRACK\r\nSupported: replaces, timer\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    b.receive(now, invite.as_bytes(), phone());
    let (down, mut up) = drain(b);
    let mut out = down.len() + up.len();
    let up = up.remove(0);
    b.receive(now, &answer(&up, "180 Ringing", ""), provider());
    let sdp = SDP.replace("10.100.0.50", "198.51.100.10");
    b.receive(now, &answer(&up, "200 OK", &sdp), provider());
    let (down, ack) = drain(b);
    out += down.len() + ack.len();
    let ok = down.last().expect("200 to the phone");
    let up = Up {
        n,
        call_id,
        box_to: header(ok, "To").to_string(),
        contact: header(ok, "Contact")
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string(),
    };
    b.receive(now, up.request("ACK", 1, "2").as_bytes(), phone());
    let (down, ack) = drain(b);
    (up, out + down.len() + ack.len())
}

/// The phone's BYE and the provider's 200; returns the number of datagrams the box sent.
fn hang_up(b: &mut B2bua, now: Instant, call: &Up) -> usize {
    b.receive(now, call.request("BYE", 2, "3").as_bytes(), phone());
    let (down, mut up) = drain(b);
    let out = down.len() + up.len();
    let bye = up.pop().expect("BYE upstream");
    b.receive(now, &answer(&bye, "200 OK", ""), provider());
    let (down, up) = drain(b);
    out + down.len() + up.len()
}

fn main() {
    let calls: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let settings = Settings {
        lan: "10.100.0.1:5060".parse().unwrap(),
        wan: "10.200.0.2:5060".parse().unwrap(),
        upstreams: vec!["198.51.100.10:5060".parse().unwrap()],
        health_interval: Duration::from_secs(30),
        domain: "198.51.100.10".into(),
        upstream_transport: Transport::Udp,
        voice_net: "10.100.0.0/24".parse().unwrap(),
        provider_nets: vec!["198.51.100.0/24".parse().unwrap()],
        keepalive: Duration::from_secs(20),
        lan_rate_limit: 0,
        stun_server: None,
    };
    let mut b = B2bua::new(settings, Box::new(PassThrough));
    let t0 = Instant::now();
    b.start(t0);
    let mut now = t0;
    let mut datagrams = 0;
    let start = Instant::now();
    for n in 0..calls {
        // 1000 calls a second of fake time: the transaction timers run as they would.
        now += Duration::from_millis(1);
        datagrams += call(&mut b, now, n);
        if n % 1000 == 999 {
            tick(&mut b, now);
        }
    }
    let took = start.elapsed();
    assert_eq!(datagrams as u64, calls * 7, "datagrams sent per call");
    let per_call = took / calls as u32;
    println!(
        "{calls} calls through the B2BUA core: {per_call:?} per call, {:.0} calls/s on one core (13 datagrams each)",
        calls as f64 / took.as_secs_f64()
    );
    // The first time the B2BUA's maps grow to 2000 calls (capacity they keep, as a high
    // water mark); the second time they have the room.
    held(&mut b, now, "first 2000 calls held");
    held(
        &mut b,
        now + Duration::from_secs(200),
        "2000 calls held again",
    );
    registrations(&mut b, now + Duration::from_secs(400));
}

/// Runs the core's timers at `now`, dropping what they send.
fn tick(b: &mut B2bua, now: Instant) {
    b.handle_timeout(now);
    while b.poll_transmit().is_some() {}
}

/// One phone's registration relayed and answered (the SIP benchmark's REGISTER, user `n`).
fn register(b: &mut B2bua, now: Instant, n: u64) {
    let reg = format!(
        "REGISTER sip:198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch=z9hG4bK-r{n};rport\r\nFrom: <sip:{n}@198.51.100.10>;tag=r{n}\r\nTo: <sip:{n}@198.51.100.10>\r\nCall-ID: reg-{n}@10.100.0.50\r\nCSeq: 1 REGISTER\r\nContact: <sip:{n}@10.100.0.50:5070>\r\nExpires: 3600\r\nMax-Forwards: 70\r\nUser-Agent: voxgate-bench-phone\r\nContent-Length: 0\r\n\r\n"
    );
    b.receive(now, reg.as_bytes(), phone());
    let (_, mut up) = drain(b);
    let up = up.pop().expect("REGISTER upstream");
    let contact = header(&up, "Contact").to_string();
    b.receive(
        now,
        &common::answer(
            &up,
            "200 OK",
            "rg",
            &format!("Contact: {contact};expires=3600\r\n"),
            "",
        ),
        provider(),
    );
    let (down, _) = drain(b);
    assert!(
        down.iter().any(|m| m.starts_with("SIP/2.0 200")),
        "200 to the phone"
    );
}

/// Heap bytes per registration held (20 000 phones): right after, with their transactions,
/// and once those are over.
fn registrations(b: &mut B2bua, mut now: Instant) {
    const HELD: u64 = 20_000;
    let idle = live();
    for n in 0..HELD {
        register(b, now, 5_000_000 + n);
    }
    let per = || (live() - idle) as f64 / HELD as f64;
    let with_tx = per();
    // The upstream REGISTERs' client transactions end after Timer K (5 s), the phones'
    // server transactions after Timer J (32 s).
    now += Duration::from_secs(6);
    tick(b, now);
    let server_tx = per();
    now += Duration::from_secs(27);
    tick(b, now);
    println!(
        "{HELD} registrations held: heap per registration {with_tx:.0} B with their transactions, \
         {server_tx:.0} B with the phones' only (6 s later), {:.0} B once all are over",
        per()
    );
}

/// Heap bytes per call held: 2000 calls set up (with their transactions, as right after the
/// ACK), then once the transactions are over (33 s later), then after the hang-ups and their
/// transactions.
fn held(b: &mut B2bua, mut now: Instant, what: &str) {
    const HELD: u64 = 2000;
    let per = |from: isize| (live() - from) as f64 / HELD as f64;
    now += Duration::from_secs(40);
    tick(b, now);
    let idle = live();
    let calls: Vec<Up> = (0..HELD).map(|i| set_up(b, now, 1_000_000 + i).0).collect();
    // The bench's own record of the calls is not the box's.
    let ours = (calls.capacity() * std::mem::size_of::<Up>()
        + calls
            .iter()
            .map(|c| c.call_id.capacity() + c.box_to.capacity() + c.contact.capacity())
            .sum::<usize>()) as isize;
    let setting_up = per(idle + ours);
    now += Duration::from_secs(33);
    tick(b, now);
    let up = per(idle + ours);
    for c in &calls {
        hang_up(b, now, c);
    }
    drop(calls);
    now += Duration::from_secs(33);
    tick(b, now);
    println!(
        "{what}: heap per call {setting_up:.0} B with their transactions, {up:.0} B once the \
         transactions are over; {:.0} B per call left after the hang-ups",
        per(idle)
    );
}
