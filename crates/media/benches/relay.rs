//! Benchmark (not a test): N concurrent G.711 calls (50 packets/s each way, 172-byte packets)
//! from the lab's phone namespace through a relay in the box, through the broadband router's
//! NAT, to the provider namespace, which answers comedia-style. Relays, same lab, same run:
//!
//! - `direct`: no relay, the box only routes (the baseline for added latency);
//! - `voxgate`: this crate's shell in its own process (this binary with `--relay-child`),
//!   every packet in user space (`media.kernel_path: off`);
//! - `voxgate-kernel`: the same with the kernel path (nftables forwards latched RTP);
//! - `rtpengine`: Debian's rtpengine in userspace mode (`--table=-1`), driven over ng.
//!
//! Reports loss per direction, the relay process's CPU (summed over its threads from
//! `/proc/PID/task/*/schedstat`) per stream and per packet, and one-way latency (p50/p99,
//! and p99 added over `direct`). The kernel path's work happens in softirq context, charged to
//! whichever task the packet arrives in (here mostly the generator's sender, as veth delivers
//! in the sender's context; this kernel has no IRQ time accounting), so the relay process's
//! CPU alone says little about it: `sys_us/pkt` is the CPU of the whole machine's share —
//! generator + relay (with its `nft` children) + ksoftirqd — per packet, and `added/strm`
//! is that minus the `direct` run's, per stream: the comparable cost of relaying.
//! Needs root (network namespaces):
//!
//! ```sh
//! cargo bench -p voxgate-media --bench relay -- --streams 100,400 --seconds 10
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lab::{addr, Lab, LabProcess, Node};
use media::{MediaHandle, MediaSettings, Side};

const PHONE_BASE: u16 = 5000;
const PROVIDER_BASE: u16 = 10000;
const NG_PORT: u16 = 22222;
const PACKET: Duration = Duration::from_millis(20);
const WARMUP: Duration = Duration::from_secs(2);
const DRAIN: Duration = Duration::from_millis(500);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let threads: usize = arg("--threads", "1").parse()?;
    if args.iter().any(|a| a == "--relay-child") {
        let kernel = args.iter().any(|a| a == "--kernel");
        return relay_child(arg("--relay-child", "1").parse()?, threads, kernel);
    }
    let streams: Vec<usize> = arg("--streams", "100,400")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let measure = Duration::from_secs(arg("--seconds", "10").parse()?);
    let relays = arg("--relays", "direct,voxgate,voxgate-kernel,rtpengine");

    lab::require_root()?;
    let lab = Lab::new()?;
    // For the direct baseline the router must masquerade the phones' subnet as well (and
    // route the replies back to it).
    lab.run_ok(
        Node::Isp,
        &["ip", "route", "add", "10.100.0.0/24", "via", "10.200.0.2"],
    )?;
    lab.run_ok(
        Node::Isp,
        &[
            "nft",
            "add",
            "rule",
            "ip",
            "nat",
            "postrouting",
            "oifname",
            "wan0",
            "ip",
            "saddr",
            "10.100.0.0/24",
            "masquerade",
        ],
    )?;
    println!(
        "{:<14} {:>7} {:>9} {:>9} {:>8} {:>10} {:>11} {:>11} {:>9} {:>9} {:>10} {:>11} {:>11}",
        "relay",
        "streams",
        "loss_up%",
        "loss_dn%",
        "cpu%",
        "us/packet",
        "cpu%/strm",
        "strm/core",
        "p50_us",
        "p99_us",
        "added_p99",
        "sys_us/pkt",
        "added/strm%"
    );
    for &n in &streams {
        let mut direct_p99 = None;
        let mut direct_sys = None;
        let mut per_stream = Vec::new();
        let mut added = Vec::new();
        for relay in relays.split(',') {
            let r = run(&lab, relay, n, measure, threads)
                .with_context(|| format!("{relay} with {n} streams"))?;
            if relay == "direct" {
                direct_p99 = Some(r.p99);
                direct_sys = Some(r.sys_ns);
            }
            let added_share = direct_sys
                .map(|d| (r.sys_ns as f64 - d as f64) / measure.as_nanos() as f64 / n as f64);
            if let Some(a) = added_share.filter(|_| relay != "direct") {
                added.push((relay.to_string(), a));
            }
            let cpu = r.cpu_ns.map(|ns| ns as f64 / measure.as_nanos() as f64);
            let packets = r.window_packets as f64;
            let show =
                |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| format!("{v:.prec$}"));
            let stream_share = cpu.map(|c| c / n as f64);
            if let Some(s) = stream_share {
                per_stream.push((relay.to_string(), s));
            }
            println!(
                "{:<14} {:>7} {:>9.3} {:>9.3} {:>8} {:>10} {:>11} {:>11} {:>9} {:>9} {:>10} {:>11.2} {:>11}",
                relay,
                n,
                loss(r.up),
                loss(r.dn),
                show(cpu.map(|c| c * 100.0), 1),
                show(r.cpu_ns.map(|ns| ns as f64 / 1000.0 / packets), 2),
                show(stream_share.map(|s| s * 100.0), 4),
                show(stream_share.map(|s| 1.0 / s), 0),
                r.p50,
                r.p99,
                direct_p99.map_or("-".into(), |d| (r.p99 as i64 - d as i64).to_string()),
                r.sys_ns as f64 / 1000.0 / packets,
                show(added_share.filter(|_| relay != "direct").map(|a| a * 100.0), 4),
            );
        }
        let share = |name: &str| per_stream.iter().find(|(r, _)| r == name).map(|x| x.1);
        if let (Some(v), Some(e)) = (share("voxgate"), share("rtpengine")) {
            println!(
                "{n} streams: voxgate carries {:.2}x rtpengine's streams per core (relay process CPU)",
                e / v
            );
        }
        let cost = |name: &str| added.iter().find(|(r, _)| r == name).map(|x| x.1);
        for v in ["voxgate", "voxgate-kernel"] {
            if let (Some(v_cost), Some(e)) = (cost(v), cost("rtpengine")) {
                println!(
                    "{n} streams: {v} carries {:.2}x rtpengine's streams per core (added machine CPU over direct)",
                    e / v_cost
                );
            }
        }
    }
    Ok(())
}

fn loss((sent, received): (u64, u64)) -> f64 {
    if sent == 0 {
        return 100.0;
    }
    100.0 * sent.saturating_sub(received) as f64 / sent as f64
}

/// The figures of one run.
struct Outcome {
    /// (sent, received) phone → provider and back.
    up: (u64, u64),
    dn: (u64, u64),
    cpu_ns: Option<u64>,
    /// CPU over the window of generator + relay (+ its reaped children) + ksoftirqd.
    sys_ns: u64,
    /// Packets (both directions) sent during the measured window and received.
    window_packets: u64,
    p50: u64,
    p99: u64,
}

/// A relay under test: where each phone sends, and the process to measure.
struct Target {
    to: Vec<SocketAddr>,
    process: Option<LabProcess>,
}

fn run(lab: &Lab, relay: &str, n: usize, measure: Duration, threads: usize) -> Result<Outcome> {
    let mut target = match relay {
        "direct" => Target {
            to: (0..n)
                .map(|i| SocketAddr::from((addr::PROVIDER, provider_port(i))))
                .collect(),
            process: None,
        },
        "voxgate" => voxgate(lab, n, threads, false)?,
        "voxgate-kernel" => voxgate(lab, n, threads, true)?,
        "rtpengine" => rtpengine(lab, n)?,
        other => bail!("unknown relay {other}"),
    };
    let pid = target.process.as_ref().map(LabProcess::pid);
    let phones = sockets(lab, Node::Phone, PHONE_BASE, n)?;
    let providers = sockets(lab, Node::Provider, PROVIDER_BASE, n)?;
    let out = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(generate(phones, providers, target.to.clone(), pid, measure))?;
    if let Some(p) = target.process.as_mut() {
        // voxgate's child stops when its stdin closes; rtpengine on SIGTERM.
        drop(p.child_mut().stdin.take());
        let _ = p.signal(libc::SIGTERM);
        p.wait_timeout(Duration::from_secs(3))?;
    }
    Ok(out)
}

fn phone_port(i: usize) -> u16 {
    PHONE_BASE + 2 * i as u16
}

fn provider_port(i: usize) -> u16 {
    PROVIDER_BASE + 2 * i as u16
}

fn sockets(lab: &Lab, node: Node, base: u16, n: usize) -> Result<Vec<UdpSocket>> {
    lab.in_netns(node, || {
        (0..n)
            .map(|i| {
                let s = UdpSocket::bind(("0.0.0.0", base + 2 * i as u16))?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .collect::<Result<Vec<_>>>()
    })?
}

fn sdp(ip: Ipv4Addr, port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
    .into_bytes()
}

fn m_port(sdp: &[u8]) -> Result<u16> {
    let s = String::from_utf8_lossy(sdp);
    let line = s
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .with_context(|| format!("no m=audio line in {s:?}"))?;
    Ok(line.split(' ').nth(1).context("no port")?.parse()?)
}

/// Runs this binary in the box as the voxgate relay with `n` calls set up.
fn voxgate(lab: &Lab, n: usize, threads: usize, kernel: bool) -> Result<Target> {
    let mut cmd = lab.command(Node::Box, std::env::current_exe()?);
    if kernel {
        cmd.arg("--kernel");
    }
    cmd.args(["--relay-child", &n.to_string()])
        .args(["--threads", &threads.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut p = lab.spawn(Node::Box, cmd)?;
    let out = BufReader::new(p.child_mut().stdout.take().context("stdout")?);
    let mut to = Vec::with_capacity(n);
    for line in out.lines() {
        let line = line?;
        if line == "ready" {
            break;
        }
        to.push(SocketAddr::from((
            addr::BOX_LAN,
            line.trim().parse::<u16>()?,
        )));
    }
    if to.len() != n {
        bail!("the relay child set up {} of {n} calls", to.len());
    }
    Ok(Target {
        to,
        process: Some(p),
    })
}

/// The `--relay-child` mode: voxgate's shell with `n` calls, until stdin closes.
fn relay_child(n: usize, threads: usize, kernel: bool) -> Result<()> {
    let loaded = config::load_str(std::path::Path::new("lab.yaml"), config::LAB_CONFIG, &[])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let media = MediaHandle::new();
    let mut settings = MediaSettings::from_loaded(&loaded);
    settings.threads = threads;
    settings.kernel_path = if kernel {
        config::model::KernelPath::Auto
    } else {
        config::model::KernelPath::Off
    };
    media.start(settings)?;
    let started = Instant::now();
    media.set_public_address(Some(addr::ISP_WAN));
    let mut out = std::io::stdout().lock();
    for i in 0..n {
        let id = format!("bench-{i}");
        media.offer(&id, Side::Lan, &sdp(addr::PHONE, phone_port(i)))?;
        let to_lan = media.answer(&id, Side::Wan, &sdp(addr::PROVIDER, provider_port(i)))?;
        writeln!(out, "{}", m_port(&to_lan)?)?;
    }
    eprintln!(
        "relay child: {n} calls set up in {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    writeln!(out, "ready")?;
    out.flush()?;
    std::io::stdin().read_to_end(&mut Vec::new())?;
    if kernel {
        let snap = media.snapshot();
        let inside = snap
            .iter()
            .filter(|c| c.streams.iter().any(|s| s.kernel))
            .count();
        eprintln!(
            "relay child: {inside} of {} calls in the kernel at the end",
            snap.len()
        );
    }
    media.stop();
    Ok(())
}

/// Starts rtpengine (userspace forwarding) in the box and sets up `n` calls over ng.
fn rtpengine(lab: &Lab, n: usize) -> Result<Target> {
    let mut cmd = lab.command(Node::Box, "rtpengine");
    cmd.args([
        "--config-file=none",
        "--foreground",
        "--table=-1",
        "--interface=lan/10.100.0.1",
        "--interface=wan/10.200.0.2!203.0.113.2",
        &format!("--listen-ng=127.0.0.1:{NG_PORT}"),
        "--port-min=40000",
        "--port-max=49999",
        "--tos=184",
        "--log-stderr",
        "--log-level=3",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let process = lab.spawn(Node::Box, cmd)?;
    let ng = lab.in_netns(Node::Box, || UdpSocket::bind("127.0.0.1:0"))??;
    ng.set_read_timeout(Some(Duration::from_millis(200)))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while ng_call(&ng, &[("command", B::S(b"ping"))]).is_err() {
        if Instant::now() > deadline {
            bail!("rtpengine did not answer ng pings");
        }
    }
    let mut to = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("bench-{i}");
        let offer = sdp(addr::PHONE, phone_port(i));
        let reply = ng_call(
            &ng,
            &[
                ("command", B::S(b"offer")),
                ("call-id", B::S(id.as_bytes())),
                ("from-tag", B::S(b"phone")),
                ("sdp", B::S(&offer)),
                ("direction", B::L(vec![B::S(b"lan"), B::S(b"wan")])),
            ],
        )?;
        m_port(&reply)?;
        let answer = sdp(addr::PROVIDER, provider_port(i));
        let reply = ng_call(
            &ng,
            &[
                ("command", B::S(b"answer")),
                ("call-id", B::S(id.as_bytes())),
                ("from-tag", B::S(b"phone")),
                ("to-tag", B::S(b"provider")),
                ("sdp", B::S(&answer)),
            ],
        )?;
        to.push(SocketAddr::from((addr::BOX_LAN, m_port(&reply)?)));
    }
    Ok(Target {
        to,
        process: Some(process),
    })
}

/// A bencode value, as the ng protocol speaks it.
enum B<'a> {
    S(&'a [u8]),
    L(Vec<B<'a>>),
}

fn bencode(b: &B, out: &mut Vec<u8>) {
    match b {
        B::S(s) => {
            out.extend_from_slice(format!("{}:", s.len()).as_bytes());
            out.extend_from_slice(s);
        }
        B::L(l) => {
            out.push(b'l');
            l.iter().for_each(|x| bencode(x, out));
            out.push(b'e');
        }
    }
}

/// Sends one ng command; returns the reply's `sdp` (empty for a pong), failing unless the
/// result is `ok` or `pong`. Replies to earlier commands (late pongs) are skipped by cookie.
fn ng_call(ng: &UdpSocket, dict: &[(&str, B)]) -> Result<Vec<u8>> {
    static COOKIE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let cookie = format!(
        "c{} ",
        COOKIE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut msg = format!("{cookie}d").into_bytes();
    let mut keys: Vec<&(&str, B)> = dict.iter().collect();
    keys.sort_by_key(|(k, _)| *k);
    for (k, v) in keys {
        bencode(&B::S(k.as_bytes()), &mut msg);
        bencode(v, &mut msg);
    }
    msg.push(b'e');
    ng.send_to(&msg, ("127.0.0.1", NG_PORT))?;
    let mut buf = vec![0u8; 65536];
    let reply = loop {
        let n = ng.recv(&mut buf)?;
        if buf[..n].starts_with(cookie.as_bytes()) {
            break &buf[..n];
        }
    };
    let find = |key: &[u8]| reply.windows(key.len()).position(|w| w == key);
    if find(b"6:result4:pong").is_some() {
        return Ok(Vec::new());
    }
    if find(b"6:result2:ok").is_none() {
        bail!("ng error: {}", String::from_utf8_lossy(reply));
    }
    let at = find(b"3:sdp").context("no sdp in the reply")? + 5;
    let colon = reply[at..]
        .iter()
        .position(|&c| c == b':')
        .context("bad sdp length")?;
    let len: usize = std::str::from_utf8(&reply[at..at + colon])?.parse()?;
    Ok(reply[at + colon + 1..at + colon + 1 + len].to_vec())
}

/// CPU time of every thread of `pid`, in nanoseconds.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// CPU of `pid`'s reaped children (utime + stime in /proc/PID/stat), in nanoseconds.
fn children_ns(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(rest) = stat.rsplit_once(')').map(|x| x.1) else {
        return 0;
    };
    // Fields after the name: state is #3; cutime #16, cstime #17.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [13, 14]
        .iter()
        .filter_map(|&i| f.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1_000_000_000 / hz
}

/// CPU of the ksoftirqd threads, in nanoseconds.
fn ksoftirqd_ns() -> u64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .flatten()
        .filter(|p| {
            std::fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.starts_with("ksoftirqd"))
        })
        .filter_map(|p| std::fs::read_to_string(p.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The machine's CPU spent on the traffic: this process (generator), the relay with its
/// reaped children, ksoftirqd.
fn sys_ns(pid: Option<u32>) -> u64 {
    cpu_ns(std::process::id()) + pid.map_or(0, |p| cpu_ns(p) + children_ns(p)) + ksoftirqd_ns()
}

#[derive(Default)]
struct Tally {
    sent: u64,
    received: u64,
    latency_us: Vec<u32>,
}

/// Stamps a packet with its send time (ns since `epoch`) after the RTP header.
fn packet(seq: u16, ssrc: u32, epoch: Instant) -> [u8; 172] {
    let mut p = [0xd5u8; 172];
    p[0] = 0x80;
    p[1] = 0;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p[12..20].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
    p
}

/// Runs every stream both ways for WARMUP + `measure`, measures `pid`'s CPU over `measure`.
async fn generate(
    phones: Vec<UdpSocket>,
    providers: Vec<UdpSocket>,
    to: Vec<SocketAddr>,
    pid: Option<u32>,
    measure: Duration,
) -> Result<Outcome> {
    let epoch = Instant::now();
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let measured_from = (start + WARMUP).into_std().duration_since(epoch).as_nanos() as u64;
    let end = start + WARMUP + measure;
    let n = phones.len();
    let up = Arc::new(Mutex::new(Tally::default()));
    let dn = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, ((phone, provider), to)) in phones.into_iter().zip(providers).zip(to).enumerate() {
        let phone = Arc::new(tokio::net::UdpSocket::from_std(phone)?);
        let provider = Arc::new(tokio::net::UdpSocket::from_std(provider)?);
        let offset = PACKET * i as u32 / n as u32;
        let (learnt_tx, learnt) = tokio::sync::oneshot::channel();
        tasks.spawn(send(
            phone.clone(),
            async move { Some(to) },
            start + offset,
            end,
            epoch,
            up.clone(),
        ));
        tasks.spawn(receive(phone, None, epoch, measured_from, dn.clone()));
        tasks.spawn(receive(
            provider.clone(),
            Some(learnt_tx),
            epoch,
            measured_from,
            up.clone(),
        ));
        let from = async move { learnt.await.ok() };
        tasks.spawn(send(provider, from, start + offset, end, epoch, dn.clone()));
    }
    tokio::time::sleep_until(start + WARMUP).await;
    let cpu0 = pid.map(cpu_ns);
    let sys0 = sys_ns(pid);
    tokio::time::sleep_until(end).await;
    let cpu1 = pid.map(cpu_ns);
    let sys1 = sys_ns(pid);
    tokio::time::sleep(DRAIN).await;
    tasks.abort_all();
    let take = |t: &Arc<Mutex<Tally>>| {
        let mut t = t.lock().unwrap();
        t.latency_us.sort_unstable();
        (t.sent, t.received, std::mem::take(&mut t.latency_us))
    };
    let (up, dn) = (take(&up), take(&dn));
    let mut all: Vec<u32> = up.2.into_iter().chain(dn.2).collect();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as u64
    };
    Ok(Outcome {
        up: (up.0, up.1),
        dn: (dn.0, dn.1),
        cpu_ns: cpu0.zip(cpu1).map(|(a, b)| b - a),
        sys_ns: sys1.saturating_sub(sys0),
        window_packets: all.len() as u64,
        p50: pct(0.50),
        p99: pct(0.99),
    })
}

/// Sends one stream at 50 packets/s from `first` until `end`, once `to` is known.
async fn send(
    sock: Arc<tokio::net::UdpSocket>,
    to: impl std::future::Future<Output = Option<SocketAddr>>,
    first: tokio::time::Instant,
    end: tokio::time::Instant,
    epoch: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let Some(to) = to.await else { return };
    let mut every = tokio::time::interval_at(first.max(tokio::time::Instant::now()), PACKET);
    let ssrc = u32::from(sock.local_addr().map(|a| a.port()).unwrap_or(0));
    for seq in 0u16.. {
        if every.tick().await >= end {
            return;
        }
        if sock.send_to(&packet(seq, ssrc, epoch), to).await.is_ok() {
            tally.lock().unwrap().sent += 1;
        }
    }
}

/// Counts one stream's arrivals and their latency; reports the first sender's address.
async fn receive(
    sock: Arc<tokio::net::UdpSocket>,
    mut learnt: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    epoch: Instant,
    measured_from: u64,
    tally: Arc<Mutex<Tally>>,
) {
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = sock.recv_from(&mut buf).await {
        if let Some(tx) = learnt.take() {
            let _ = tx.send(from);
        }
        if n != 172 {
            continue;
        }
        let now = epoch.elapsed().as_nanos() as u64;
        let sent = u64::from_be_bytes(buf[12..20].try_into().unwrap());
        let mut t = tally.lock().unwrap();
        t.received += 1;
        if sent >= measured_from {
            t.latency_us.push((now.saturating_sub(sent) / 1000) as u32);
        }
    }
}
