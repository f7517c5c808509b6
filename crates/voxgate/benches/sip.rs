//! SIP benchmark (issue 7): registrations and calls per second through the box, and memory
//! per active call, for voxgate (`voxgate run`, the whole daemon, B2BUA + media relay) and for
//! Kamailio (a transaction-stateful proxy with nathelper, tests/bench/kamailio/kamailio.cfg),
//! each in its own fresh lab, one after the other in one run, with the same sipp scenarios:
//!
//! - the phone namespace runs the sipp UAC (10.100.0.50:5070) and sends everything to the box
//!   (10.100.0.1:5060, its outbound proxy), addressed to the provider's domain 198.51.100.10;
//! - the box namespace runs voxgate or Kamailio on lan0 10.100.0.1:5060 and wan0 10.200.0.2:5060;
//! - the provider namespace (198.51.100.10:5060) runs the sipp registrar or UAS, reached
//!   through the lab's isp NAT (the same for both).
//!
//! Phases, per server, on a fresh lab:
//!
//! 1. memory: `--mem-calls` concurrent calls (held until all are up and measured), PSS of the
//!    server (summed over all its processes, from /proc/PID/smaps_rollup) before and during,
//!    divided by the calls; then every call must end and be freed;
//! 2. registrations per second: fixed-rate runs of tests/sipp/bench_register.xml at rising
//!    `--reg-rates`, each registering `rate × --secs` distinct users (`-inf`) to the bench
//!    registrar (tests/sipp/bench_registrar.xml, no digest authentication); PSS per
//!    registration is taken 40 s before and after the ramp, when the servers hold the
//!    registrations but no longer their finished transactions;
//! 3. calls per second: fixed-rate runs of tests/sipp/bench_uac.xml against bench_uas.xml at
//!    rising `--cps-rates`, `rate × --secs` calls each, held `--hold-ms`.
//!
//! A rate is sustained when at most 0.1 % of its calls failed (or never completed), the
//! retransmissions of both sipps stay at most 1 % of the calls, and sipp reached at least 90 %
//! of the rate; a ramp stops at the first rate that is not sustained. The same rule for all.
//!
//! Not a test: run as root with sipp (Debian sip-tester) and kamailio installed:
//!
//! ```text
//! cargo bench -p voxgate --bench sip -- [--servers voxgate,kamailio,kamailio-dlg,kamailio-rtpengine]
//!     [--cps-rates 100,200,...] [--reg-rates 200,400,...] [--secs 10] [--hold-ms 1000]
//!     [--mem-calls 2000] [--mem-rate 200] [--kamailio-children 8]
//! ```
//!
//! `kamailio-dlg` is the same Kamailio with the dialog module tracking every call (closer to
//! the per-call state a B2BUA keeps); `kamailio-rtpengine` is Kamailio with rtpengine (Debian's,
//! userspace) anchoring every call's media, as voxgate does — the pairing DESIGN.md names as
//! the SIP peer; its CPU and memory are counted with Kamailio's. The ratios are taken against
//! plain `kamailio` and, when it ran, against `kamailio-rtpengine`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use lab::{Lab, LabProcess, Node};
use serde_json::Value;

const VOXGATE: &str = env!("CARGO_BIN_EXE_voxgate");
const KAMAILIO_CFG: &str = include_str!("../../../tests/bench/kamailio/kamailio.cfg");
const BOX_LAN: &str = "10.100.0.1:5060";
const PHONE: &str = "10.100.0.50";
const PROVIDER: &str = "198.51.100.10";

fn scenario(name: &str) -> String {
    format!("{}/../../tests/sipp/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[derive(Debug, Clone)]
struct Args {
    servers: Vec<String>,
    cps_rates: Vec<u32>,
    reg_rates: Vec<u32>,
    secs: u32,
    hold_ms: u32,
    mem_calls: u32,
    mem_rate: u32,
    kamailio_children: u32,
    phases: Vec<String>,
    long_secs: u32,
}

/// The servers the bench knows.
const SERVERS: [&str; 4] = ["voxgate", "kamailio", "kamailio-dlg", "kamailio-rtpengine"];

fn list<T: std::str::FromStr>(v: &str) -> Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(v.split(',').map(str::parse).collect::<Result<_, _>>()?)
}

fn parse_args(args: &[String]) -> Result<Args> {
    let mut a = Args {
        servers: SERVERS.iter().map(|s| s.to_string()).collect(),
        cps_rates: vec![
            100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000, 2500, 3000,
        ],
        reg_rates: vec![500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000],
        secs: 10,
        hold_ms: 1000,
        mem_calls: 2000,
        mem_rate: 200,
        kamailio_children: 8,
        phases: vec!["mem".into(), "cps".into(), "reg".into()],
        long_secs: 60,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--bench" => {}
            "--servers" => a.servers = list(value()?)?,
            "--cps-rates" => a.cps_rates = list(value()?)?,
            "--reg-rates" => a.reg_rates = list(value()?)?,
            "--secs" => a.secs = value()?.parse()?,
            "--hold-ms" => a.hold_ms = value()?.parse()?,
            "--mem-calls" => a.mem_calls = value()?.parse()?,
            "--mem-rate" => a.mem_rate = value()?.parse()?,
            "--kamailio-children" => a.kamailio_children = value()?.parse()?,
            "--phases" => a.phases = list(value()?)?,
            "--long-secs" => a.long_secs = value()?.parse()?,
            other => bail!("unknown argument {other:?}"),
        }
    }
    for s in &a.servers {
        if !SERVERS.contains(&s.as_str()) {
            bail!("unknown server {s:?}: one of {}", SERVERS.join(", "));
        }
    }
    for p in &a.phases {
        if !["mem", "reg", "cps"].contains(&p.as_str()) {
            bail!("unknown phase {p:?}: mem, reg or cps");
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs this without --bench: nothing to check, and no root.
    if !args.iter().any(|a| a == "--bench") {
        println!("SIP benchmark: run it with `cargo bench -p voxgate --bench sip`");
        return ExitCode::SUCCESS;
    }
    match parse_args(&args).and_then(|a| bench(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("SIP benchmark: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The servers.

/// A server running in the box namespace.
struct Server {
    name: String,
    process: LabProcess,
    dir: PathBuf,
    /// voxgate's control socket.
    socket: Option<PathBuf>,
    log: PathBuf,
    /// rtpengine, for `kamailio-rtpengine`: counted with the server (CPU, memory).
    media: Option<LabProcess>,
}

fn voxgate_cli(socket: &Path, args: &[&str]) -> Result<Value> {
    let out = Command::new(VOXGATE)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "voxgate {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// How many entries `voxgate WHAT --json` lists, or why it failed.
fn count_cli(socket: &Path, what: &str) -> String {
    match voxgate_cli(socket, &[what, "--json"]) {
        Ok(v) => v
            .as_array()
            .map_or("not a list".into(), |a| a.len().to_string()),
        Err(e) => format!("(failed: {e:#})"),
    }
}

/// The lab configuration plus what a load generator needs: one sipp "phone" sends every call,
/// so the per-phone rate limit (sip.rate_limit, 100 messages/s) is off, and the media port
/// pool is wider with a shorter quarantine, so that the pool (not the SIP work) does not cap
/// short calls at thousands per second. Both are configuration a site can set.
const VOXGATE_BENCH_CONFIG: &str = "sip:\n  rate_limit: 0\nmedia:\n  lan_ports: \"6000-35999\"\n  wan_ports: \"36000-65533\"\n  port_quarantine: 2s\n";

fn start_voxgate(lab: &Lab, dir: &Path) -> Result<Server> {
    let cfg = dir.join("voxgate.yaml");
    std::fs::write(
        &cfg,
        format!("{}{VOXGATE_BENCH_CONFIG}", config::LAB_CONFIG),
    )?;
    let socket = dir.join("run/control.sock");
    let log = dir.join("daemon.log");
    let mut cmd = server_command(lab, VOXGATE);
    cmd.arg("run")
        .arg("--config")
        .arg(&cfg)
        .arg("--control-socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let mut process = lab.spawn(Node::Box, cmd)?;
    let t0 = Instant::now();
    loop {
        if socket.exists() {
            if let Ok(st) = voxgate_cli(&socket, &["status", "--json"]) {
                let running = |n: &str| {
                    st["services"].as_array().is_some_and(|a| {
                        a.iter().any(|s| s["name"] == n && s["state"] == "running")
                    })
                };
                if running("sip") && running("media") {
                    break;
                }
            }
        }
        if let Some(st) = process.wait_timeout(Duration::ZERO)? {
            bail!(
                "voxgate exited at start ({st}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("voxgate's sip and media services not running within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Server {
        name: "voxgate".into(),
        process,
        dir: dir.to_path_buf(),
        socket: Some(socket),
        log,
        media: None,
    })
}

/// Longer than either server keeps a finished transaction (voxgate: Timer J, 32 s over UDP as
/// RFC 3261 says; Kamailio: its 5 s wait timer) and than voxgate's memory trim period (30 s).
const SETTLE: Duration = Duration::from_secs(40);

/// How long voxgate's media relay and rtpengine keep a call without media (both defaults).
const MEDIA_TIMEOUT: Duration = Duration::from_secs(60);

/// rtpengine's ng control address in the box (tests/bench/kamailio/kamailio.cfg's
/// `rtpengine_sock`).
const RTPENGINE_NG: &str = "127.0.0.1:2223";

/// Starts rtpengine in the box for `kamailio-rtpengine`, like the media bench's: userspace
/// forwarding, interfaces `lan` and `wan` on voxgate's addresses, each with as many ports as
/// voxgate's bench ranges give a side, and a deleted call's ports kept as long as voxgate's
/// quarantine (`--delete-delay`, 30 s by default). Returns once it answers an ng ping.
fn start_rtpengine(lab: &Lab, dir: &Path) -> Result<LabProcess> {
    let (quarantine, _) = voxgate_port_pool();
    let log = dir.join("rtpengine.log");
    let mut cmd = server_command(lab, "rtpengine");
    cmd.args([
        "--config-file=none",
        "--foreground",
        "--table=-1",
        "--interface=lan/10.100.0.1",
        "--interface=wan/10.200.0.2",
        &format!("--listen-ng={RTPENGINE_NG}"),
        "--port-min=6000",
        "--port-max=35999",
        &format!("--delete-delay={}", quarantine.as_secs()),
        &format!("--timeout={}", MEDIA_TIMEOUT.as_secs()),
        "--tos=184",
        "--log-stderr",
        "--log-level=4",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log)?);
    let mut process = lab.spawn(Node::Box, cmd)?;
    let ng = lab.in_netns(Node::Box, || std::net::UdpSocket::bind("127.0.0.1:0"))??;
    ng.set_read_timeout(Some(Duration::from_millis(200)))?;
    let t0 = Instant::now();
    loop {
        // bencode: a cookie, then {"command": "ping"}.
        ng.send_to(b"bench d7:command4:pinge", RTPENGINE_NG)?;
        let mut buf = [0u8; 256];
        if let Ok(n) = ng.recv(&mut buf) {
            if buf[..n].windows(4).any(|w| w == b"pong") {
                return Ok(process);
            }
        }
        if let Some(st) = process.wait_timeout(Duration::ZERO)? {
            bail!(
                "rtpengine exited at start ({st}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("rtpengine did not answer ng pings within 10 s");
        }
    }
}

fn start_kamailio(lab: &Lab, dir: &Path, name: &str, children: u32) -> Result<Server> {
    let cfg = dir.join("kamailio.cfg");
    let dialog = if name == "kamailio-dlg" {
        "#!define WITH_DIALOG"
    } else {
        "# without the dialog module"
    };
    let media = if name == "kamailio-rtpengine" {
        Some(start_rtpengine(lab, dir)?)
    } else {
        None
    };
    let rtpengine = if media.is_some() {
        "#!define WITH_RTPENGINE"
    } else {
        "# without rtpengine"
    };
    std::fs::write(
        &cfg,
        KAMAILIO_CFG
            .replace("@CHILDREN@", &children.to_string())
            .replace("@DIALOG@", dialog)
            .replace("@RTPENGINE@", rtpengine),
    )?;
    let run = dir.join("run");
    std::fs::create_dir_all(&run)?;
    let log = dir.join("kamailio.log");
    let check = lab.exec(Node::Box, &["kamailio", "-c", "-f", &cfg.to_string_lossy()])?;
    if !check.status.success() {
        bail!(
            "kamailio -c rejects {}:\n{}",
            cfg.display(),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let mut cmd = server_command(lab, "kamailio");
    cmd.arg("-f")
        .arg(&cfg)
        .args(["-DD", "-E", "-m", "1024", "-M", "8"])
        .arg("-P")
        .arg(dir.join("kamailio.pid"))
        .arg("-Y")
        .arg(&run)
        .arg("-w")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let mut process = lab.spawn(Node::Box, cmd)?;
    let t0 = Instant::now();
    loop {
        let ss = lab.run_ok(Node::Box, &["ss", "-Hlun", "sport = :5060"])?;
        if ss.contains("10.100.0.1:5060") && ss.contains("10.200.0.2:5060") {
            // The workers fork after the sockets are bound.
            std::thread::sleep(Duration::from_secs(1));
            break;
        }
        if let Some(st) = process.wait_timeout(Duration::ZERO)? {
            bail!(
                "kamailio exited at start ({st}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("kamailio not listening within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Server {
        name: name.into(),
        process,
        dir: dir.to_path_buf(),
        socket: None,
        log,
        media,
    })
}

/// `pid` and all its descendants.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                all.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    all
}

/// A "Key:   N kB" field of /proc/PID/smaps_rollup, in bytes.
fn smaps_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        * 1024
}

/// CPU seconds (user + system) of `pid`.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

impl Server {
    /// The server's processes (`ip netns exec` execs the server, so the spawned pid is it),
    /// rtpengine's included.
    fn pids(&self) -> Vec<u32> {
        let mut pids = process_tree(self.process.pid());
        if let Some(m) = &self.media {
            pids.extend(process_tree(m.pid()));
        }
        pids
    }
    /// Proportional set size summed over the server's processes (shared memory counted once).
    fn pss(&self) -> u64 {
        self.pids().iter().map(|&p| smaps_field(p, "Pss")).sum()
    }
    fn rss(&self) -> u64 {
        self.pids().iter().map(|&p| smaps_field(p, "Rss")).sum()
    }
    fn cpu(&self) -> f64 {
        self.pids().iter().map(|&p| cpu_secs(p)).sum()
    }
    fn alive(&mut self) -> bool {
        matches!(self.process.wait_timeout(Duration::ZERO), Ok(None))
    }
    /// Calls the server still holds (voxgate only).
    fn calls(&self) -> Option<String> {
        let s = self.socket.as_ref()?;
        Some(count_cli(s, "calls"))
    }
    fn registrations(&self) -> Option<String> {
        let s = self.socket.as_ref()?;
        Some(count_cli(s, "regs"))
    }
    /// Waits up to `limit` for the server to hold no call; returns what it still holds.
    fn wait_calls_freed(&self, limit: Duration) -> Option<usize> {
        let t0 = Instant::now();
        loop {
            let n = self.calls()?.parse().unwrap_or(usize::MAX);
            if n == 0 || t0.elapsed() > limit {
                return Some(n);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sipp.

/// The rows of a sipp statistics file (`-trace_stat`), by column name.
fn stat_rows(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let names: Vec<&str> = header.split(';').collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            names
                .iter()
                .zip(l.split(';'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn num(row: &HashMap<String, String>, key: &str) -> u64 {
    row.get(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// sipp's "HH:MM:SS:uuuuuu" durations, in seconds.
fn duration(row: &HashMap<String, String>, key: &str) -> f64 {
    let Some(v) = row.get(key) else {
        return f64::NAN;
    };
    let p: Vec<f64> = v.split(':').filter_map(|x| x.trim().parse().ok()).collect();
    if p.len() != 4 {
        return f64::NAN;
    }
    p[0] * 3600.0 + p[1] * 60.0 + p[2] + p[3] / 1e6
}

/// What one fixed-rate run of the phone's sipp did.
#[derive(Debug, Default, Clone)]
struct Step {
    rate: u32,
    calls: u64,
    ok: u64,
    failed: u64,
    retrans: u64,
    achieved: f64,
    /// Mean time from the first request to the final 200, milliseconds.
    rtt_ms: f64,
    /// Server CPU time per call, milliseconds.
    cpu_ms: f64,
    errors: String,
}

impl Step {
    fn lost(&self) -> u64 {
        self.calls - self.ok.min(self.calls)
    }
    fn passes(&self) -> bool {
        self.calls > 0
            && self.lost() as f64 <= 0.001 * self.calls as f64
            && self.retrans as f64 <= 0.01 * self.calls as f64
            && self.achieved >= 0.9 * self.rate as f64
    }
}

const SIPP_COMMON: [&str; 4] = ["-nostdin", "-trace_stat", "-fd", "1"];

/// Starts sipp in the provider namespace as registrar or UAS (until stopped).
fn provider_sipp(lab: &Lab, dir: &Path, name: &str, xml: &str) -> Result<(LabProcess, PathBuf)> {
    let stat = dir.join(format!("{name}-stat.csv"));
    let mut cmd = lab.command(Node::Provider, "sipp");
    cmd.args(["-sf", &scenario(xml), "-i", PROVIDER, "-p", "5060"])
        .args(SIPP_COMMON)
        .arg("-stf")
        .arg(&stat)
        .args(["-recv_timeout", "120000", "-trace_err", "-error_file"])
        .arg(dir.join(format!("{name}-errors.log")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(
            dir.join(format!("{name}-stderr.log")),
        )?);
    let mut p = lab.spawn(Node::Provider, cmd)?;
    let t0 = Instant::now();
    loop {
        let ss = lab.run_ok(Node::Provider, &["ss", "-Hlun", "sport = :5060"])?;
        if !ss.trim().is_empty() {
            return Ok((p, stat));
        }
        if let Some(st) = p.wait_timeout(Duration::ZERO)? {
            bail!("provider sipp {name} exited at start ({st})");
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("provider sipp {name} not listening within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The provider sipp's cumulative retransmissions so far (its stat file is written each
/// second).
fn provider_retrans(stat: &Path) -> u64 {
    stat_rows(stat)
        .last()
        .map_or(0, |r| num(r, "Retransmissions(C)"))
}

/// The phone's sipp with `args`, in the foreground (at most `limit`); returns its stat rows.
fn phone_sipp(
    lab: &Lab,
    dir: &Path,
    name: &str,
    args: &[String],
    limit: Duration,
) -> Result<(Vec<HashMap<String, String>>, String)> {
    let stat = dir.join(format!("{name}-stat.csv"));
    let errors = dir.join(format!("{name}-errors.log"));
    let mut cmd = lab.command(Node::Phone, "sipp");
    cmd.args(args)
        .args([BOX_LAN, "-i", PHONE, "-p", "5070"])
        .args(SIPP_COMMON)
        .arg("-stf")
        .arg(&stat)
        .args(["-recv_timeout", "10000", "-trace_err", "-error_file"])
        .arg(&errors)
        .args(["-timeout", &format!("{}s", limit.as_secs())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(
            dir.join(format!("{name}-stderr.log")),
        )?);
    let mut p = lab.spawn(Node::Phone, cmd)?;
    if p.wait_timeout(limit + Duration::from_secs(10))?.is_none() {
        p.kill();
    }
    let err = std::fs::read_to_string(&errors).unwrap_or_default();
    // A short digest of what went wrong: the distinct first lines sipp logged.
    let mut seen: Vec<String> = Vec::new();
    for l in err.lines().filter(|l| !l.trim().is_empty()) {
        let l: String = l
            .chars()
            .skip_while(|c| c.is_ascii_digit() || *c == '.' || *c == ' ' || *c == ':')
            .take(100)
            .collect();
        if !seen.contains(&l) && seen.len() < 3 {
            seen.push(l);
        }
    }
    Ok((stat_rows(&stat), seen.join(" | ")))
}

/// A stat row's time field ("date<TAB>time<TAB>epoch"), as epoch seconds.
fn epoch(row: &HashMap<String, String>, key: &str) -> f64 {
    row.get(key)
        .and_then(|v| v.split('\t').nth(2)?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// When the run created its `n`-th call (seconds from its start), interpolated between the
/// once-a-second stat rows; the rate sipp reached is `n / that`.
fn creation_time(rows: &[HashMap<String, String>], n: u64) -> f64 {
    let Some(start) = rows.first().map(|r| epoch(r, "StartTime")) else {
        return f64::NAN;
    };
    let (mut t0, mut c0) = (0.0, 0u64);
    for r in rows {
        let (t, c) = (epoch(r, "CurrentTime") - start, num(r, "OutgoingCall(C)"));
        if c >= n {
            if c == c0 {
                return t;
            }
            return t0 + (n - c0) as f64 / (c - c0) as f64 * (t - t0);
        }
        (t0, c0) = (t, c);
    }
    f64::NAN
}

/// One fixed-rate run: `rate × secs` calls of `xml` (extra sipp `args`) from the phone.
#[allow(clippy::too_many_arguments)]
fn step(
    lab: &Lab,
    server: &Server,
    dir: &Path,
    name: &str,
    rate: u32,
    secs: u32,
    hold_ms: u32,
    extra: &[String],
    provider_stat: &Path,
) -> Result<Step> {
    let n = rate as u64 * secs as u64;
    let mut args: Vec<String> = extra.to_vec();
    args.extend([
        "-r".to_string(),
        rate.to_string(),
        "-m".into(),
        n.to_string(),
        "-l".into(),
        (rate as u64 * (hold_ms as u64 / 1000 + 10)).to_string(),
        "-d".into(),
        hold_ms.to_string(),
    ]);
    let cpu0 = server.cpu();
    let prov0 = provider_retrans(provider_stat);
    let log = dir.join("daemon.log");
    let log_at = std::fs::metadata(&log).map_or(0, |m| m.len());
    let limit = Duration::from_secs(secs as u64 + hold_ms as u64 / 1000 + 30);
    let (rows, mut errors) = phone_sipp(lab, dir, name, &args, limit)?;
    let refused = refused_for_open_files(&log, log_at);
    if refused > 0 {
        errors = format!("{refused} media offers refused at the open files limit | {errors}");
    }
    let cpu = server.cpu() - cpu0;
    // The provider's stat file is written every second.
    std::thread::sleep(Duration::from_millis(1500));
    let prov = provider_retrans(provider_stat) - prov0;
    let last = rows.last().cloned().unwrap_or_default();
    let ok = num(&last, "SuccessfulCall(C)");
    Ok(Step {
        rate,
        calls: n,
        ok,
        failed: num(&last, "FailedCall(C)"),
        retrans: num(&last, "Retransmissions(C)") + prov,
        achieved: n as f64 / creation_time(&rows, n),
        rtt_ms: duration(&last, "ResponseTime1(C)") * 1e3,
        cpu_ms: cpu * 1e3 / ok.max(1) as f64,
        errors,
    })
}

/// How many offers voxgate refused because its open files limit was reached, in what its
/// log (`log`; absent for other servers) gained after byte `from`: the reason its failed
/// calls failed, when it is not CPU. Only the step's part is read (the log grows by
/// hundreds of MB over a run).
fn refused_for_open_files(log: &Path, from: u64) -> usize {
    use std::io::{Read as _, Seek as _};
    let mut added = Vec::new();
    let read = std::fs::File::open(log).and_then(|mut f| {
        f.seek(std::io::SeekFrom::Start(from))?;
        f.read_to_end(&mut added)
    });
    if read.is_err() {
        return 0;
    }
    let needle = b"Too many open files";
    added
        .split(|&b| b == b'\n')
        .filter(|l| l.windows(needle.len()).any(|w| w == needle))
        .count()
}

fn print_step(server: &str, what: &str, s: &Step) {
    println!(
        "  {server:<12} {what} {:>5}/s: {:>7} calls, ok {:>7}, failed {:>5}, unfinished {:>5}, retrans {:>5}, reached {:>7.0}/s, mean {:>7.1} ms, CPU {:.3} ms/call  {}{}",
        s.rate,
        s.calls,
        s.ok,
        s.failed,
        s.calls.saturating_sub(s.ok + s.failed),
        s.retrans,
        s.achieved,
        s.rtt_ms,
        s.cpu_ms,
        if s.passes() { "sustained" } else { "NOT sustained" },
        if s.errors.is_empty() {
            String::new()
        } else {
            format!("  [{}]", s.errors)
        }
    );
}

// ---------------------------------------------------------------------------------------------
// The phases.

#[derive(Debug, Default, Clone)]
struct Outcome {
    /// Highest sustained rates.
    cps: Option<Step>,
    rps: Option<Step>,
    /// The lowest-rate sustained step common to all servers is compared for latency and CPU:
    /// all steps kept.
    cps_steps: Vec<Step>,
    /// The highest rate held for `--long-secs`, and every long run.
    long: Option<Step>,
    long_steps: Vec<Step>,
    reg_steps: Vec<Step>,
    idle_pss: u64,
    mem_active: u64,
    mem_per_call: f64,
    mem_after_calls: u64,
    mem_per_reg: f64,
    registrations: u64,
    notes: Vec<String>,
}

fn memory_phase(lab: &Lab, s: &mut Server, a: &Args, out: &mut Outcome) -> Result<()> {
    let (mut uas, stat) = provider_sipp(lab, &s.dir, "mem-uas", "bench_uas.xml")?;
    // A short warm-up (allocator arenas, first-call paths), then the baseline once every
    // transaction of it is gone (Kamailio keeps a finished one for its 5 s wait timer).
    let warm = step(
        lab,
        s,
        &s.dir,
        "mem-warmup",
        50,
        2,
        500,
        &[
            "-sf".into(),
            scenario("bench_uac.xml"),
            "-s".into(),
            "01632960123".into(),
        ],
        &stat,
    )?;
    if !warm.passes() {
        print_step(&s.name, "warm-up", &warm);
        bail!("{}: warm-up calls failed", s.name);
    }
    std::thread::sleep(Duration::from_secs(6));
    let before = s.pss();
    out.idle_pss = before;
    let n = a.mem_calls;
    let ramp = n.div_ceil(a.mem_rate);
    let hold_ms = (ramp + 20) * 1000;
    let dir = s.dir.clone();
    let name = s.name.clone();
    let stat_file = dir.join("mem-uac-stat.csv");
    // In the background: measured while every call is up.
    let mut cmd = lab.command(Node::Phone, "sipp");
    cmd.args(["-sf", &scenario("bench_uac.xml"), "-s", "01632960123"])
        .args(["-r", &a.mem_rate.to_string(), "-m", &n.to_string()])
        .args(["-l", &(n + 10).to_string(), "-d", &hold_ms.to_string()])
        .args([BOX_LAN, "-i", PHONE, "-p", "5070"])
        .args(SIPP_COMMON)
        .arg("-stf")
        .arg(&stat_file)
        .args(["-recv_timeout", "10000", "-timeout"])
        .arg(format!("{}s", ramp + hold_ms / 1000 + 40))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("mem-uac-stderr.log"))?);
    let mut uac = lab.spawn(Node::Phone, cmd)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(ramp as u64 + 8));
    let rows = stat_rows(&stat_file);
    let last = rows.last().cloned().unwrap_or_default();
    let active = num(&last, "CurrentCall");
    let during = s.pss();
    let rss_during = s.rss();
    let held = s.calls();
    out.mem_active = active;
    out.mem_per_call = (during as f64 - before as f64) / active.max(1) as f64;
    println!(
        "  {name:<12} memory: PSS {:.1} MiB idle (after warm-up), {:.1} MiB with {active} calls up (RSS {:.1} MiB{}) -> {:.0} bytes per call",
        before as f64 / 1048576.0,
        during as f64 / 1048576.0,
        rss_during as f64 / 1048576.0,
        held.map(|h| format!(", `voxgate calls` lists {h}")).unwrap_or_default(),
        out.mem_per_call
    );
    if active < n as u64 {
        out.notes.push(format!(
            "memory phase: only {active} of {n} calls were up at the measurement"
        ));
    }
    let limit = Duration::from_secs(ramp as u64 + hold_ms as u64 / 1000 + 50);
    if uac
        .wait_timeout(limit.saturating_sub(t0.elapsed()))?
        .is_none()
    {
        uac.kill();
    }
    let last = stat_rows(&stat_file).last().cloned().unwrap_or_default();
    let (ok, failed) = (num(&last, "SuccessfulCall(C)"), num(&last, "FailedCall(C)"));
    println!("  {name:<12} memory: the {n} calls ended: {ok} ok, {failed} failed");
    if ok < n as u64 {
        out.notes.push(format!(
            "memory phase: {} of {n} long calls did not complete",
            n as u64 - ok
        ));
    }
    std::thread::sleep(Duration::from_secs(6));
    out.mem_after_calls = s.pss();
    if let Some(left) = s.wait_calls_freed(Duration::from_secs(10)) {
        println!(
            "  {name:<12} memory: PSS {:.1} MiB after the calls ended; `voxgate calls` lists {left}",
            out.mem_after_calls as f64 / 1048576.0
        );
        if left > 0 {
            out.notes.push(format!(
                "memory phase: {left} calls not freed after they ended"
            ));
        }
    } else {
        println!(
            "  {name:<12} memory: PSS {:.1} MiB after the calls ended",
            out.mem_after_calls as f64 / 1048576.0
        );
    }
    // Transactions outlive their calls by up to 32 s (timers D, J, K): what is still held
    // after that is kept heap, not state.
    std::thread::sleep(Duration::from_secs(35));
    println!(
        "  {name:<12} memory: PSS {:.1} MiB 40 s after the calls ended",
        s.pss() as f64 / 1048576.0
    );
    uas.signal(libc::SIGTERM)?;
    uas.wait_timeout(Duration::from_secs(5))?;
    Ok(())
}

fn registration_phase(lab: &Lab, s: &mut Server, a: &Args, out: &mut Outcome) -> Result<()> {
    let (mut registrar, stat) = provider_sipp(lab, &s.dir, "registrar", "bench_registrar.xml")?;
    // What the earlier phases left (finished transactions) is gone before and after, so
    // that the difference is the registrations held.
    std::thread::sleep(SETTLE);
    let before = s.pss();
    let mut users = 0u64;
    for (i, &rate) in a.reg_rates.iter().enumerate() {
        // Distinct users in every run: each REGISTER is a new registration.
        let n = rate as u64 * a.secs as u64;
        let inf = s.dir.join(format!("users-{i}.csv"));
        let mut csv = String::from("SEQUENTIAL\n");
        for u in 0..n {
            writeln!(csv, "{}{:07};", 1 + i, u)?;
        }
        std::fs::write(&inf, csv)?;
        let r = step(
            lab,
            s,
            &s.dir,
            &format!("reg-{rate}"),
            rate,
            a.secs,
            0,
            &[
                "-sf".into(),
                scenario("bench_register.xml"),
                "-inf".into(),
                inf.display().to_string(),
            ],
            &stat,
        )?;
        users += r.ok;
        print_step(&s.name, "REGISTER", &r);
        let pass = r.passes();
        out.reg_steps.push(r.clone());
        if !pass {
            break;
        }
        out.rps = Some(r);
        if !s.alive() {
            bail!("{} died", s.name);
        }
    }
    let busy = s.pss();
    std::thread::sleep(SETTLE);
    let after = s.pss();
    out.registrations = users;
    out.mem_per_reg = (after as f64 - before as f64) / users.max(1) as f64;
    let held = s.registrations();
    println!(
        "  {:<12} registrations: {users} accepted, PSS {:.1} -> {:.1} MiB right after ({:.0} bytes per registration with their \
         transactions) -> {:.1} MiB {} s later ({:.0} bytes per registration held){}",
        s.name,
        before as f64 / 1048576.0,
        busy as f64 / 1048576.0,
        (busy as f64 - before as f64) / users.max(1) as f64,
        after as f64 / 1048576.0,
        SETTLE.as_secs(),
        out.mem_per_reg,
        held.map(|h| format!(", `voxgate regs` lists {h}")).unwrap_or_default()
    );
    registrar.signal(libc::SIGTERM)?;
    registrar.wait_timeout(Duration::from_secs(5))?;
    Ok(())
}

/// A server's command in the box, with the open files limit voxgate.service gives the
/// daemon (`LimitNOFILE`), whichever server it is, or the machine's hard limit if that is
/// lower (20000 on the build machines, whose containers lack CAP_SYS_RESOURCE to raise it):
/// a media relay holds four sockets a stream.
fn server_command(lab: &Lab, program: &str) -> Command {
    use std::os::unix::process::CommandExt as _;
    let limit = server_open_files();
    let mut cmd = lab.command(Node::Box, program);
    // SAFETY: only setrlimit(2) runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// The open files limit the servers run with: `LimitNOFILE` of systemd/voxgate.service, or
/// this process's hard limit if lower.
fn server_open_files() -> u64 {
    let unit = include_str!("../../../systemd/voxgate.service");
    let wanted: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .and_then(|v| v.trim().parse().ok())
        .expect("systemd/voxgate.service sets LimitNOFILE to a number");
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return wanted;
    }
    wanted.min(l.rlim_max)
}

/// How long voxgate's media relay keeps a released port pair from reuse, and how many pairs
/// its default port ranges hold (the smaller side): together they bound the calls per second
/// it can keep up for longer than the quarantine.
fn voxgate_port_pool() -> (Duration, u64) {
    let loaded = config::load_str(
        Path::new("bench.yaml"),
        &format!("{}{VOXGATE_BENCH_CONFIG}", config::LAB_CONFIG),
        &[],
    )
    .expect("the bench configuration is valid");
    let m = &loaded.config.media;
    let q = m.port_quarantine.0;
    let pairs = |r| media::PortAllocator::new(r, q).capacity() as u64;
    (q, pairs(m.lan_ports).min(pairs(m.wan_ports)))
}

fn call_phase(lab: &Lab, s: &mut Server, a: &Args, out: &mut Outcome) -> Result<()> {
    let (mut uas, stat) = provider_sipp(lab, &s.dir, "uas", "bench_uas.xml")?;
    let uac = [
        "-sf".to_string(),
        scenario("bench_uac.xml"),
        "-s".into(),
        "01632960123".into(),
    ];
    // voxgate starts every step with its whole media port pool (the previous steps' pairs out
    // of quarantine), so that a step measures the SIP and media work, not the pool left over;
    // the long run below shows what the pool allows over time. Kamailio holds nothing between
    // steps (its transactions end 5 s after the call's last message).
    let gap = if s.socket.is_some() {
        voxgate_port_pool().0 + Duration::from_secs(3)
    } else {
        Duration::from_secs(6)
    };
    for &rate in &a.cps_rates {
        std::thread::sleep(gap);
        let r = step(
            lab,
            s,
            &s.dir,
            &format!("cps-{rate}"),
            rate,
            a.secs,
            a.hold_ms,
            &uac,
            &stat,
        )?;
        print_step(&s.name, "call", &r);
        let pass = r.passes();
        out.cps_steps.push(r.clone());
        if !s.alive() {
            bail!("{} died", s.name);
        }
        if !pass {
            break;
        }
        out.cps = Some(r);
    }
    // The best rate held for longer, then the ramp's next lower ones (three at most).
    if a.long_secs > 0 {
        let mut rates: Vec<u32> = out
            .cps_steps
            .iter()
            .filter(|s| s.passes())
            .map(|s| s.rate)
            .collect();
        rates.sort_unstable_by(|x, y| y.cmp(x));
        for rate in rates.into_iter().take(3) {
            // After an overloaded run, calls whose BYE (or rtpengine's delete) was lost keep
            // media ports until the relay's no-media timeout (60 s in voxgate's and
            // rtpengine's defaults), and Kamailio stops using an rtpengine that timed out for
            // 60 s (rtpengine_disable_tout): the next run starts once both are over.
            let last = out.cps_steps.iter().chain(&out.long_steps).last();
            if last.is_some_and(|s| !s.passes()) {
                std::thread::sleep(MEDIA_TIMEOUT + Duration::from_secs(5));
            } else {
                std::thread::sleep(gap);
            }
            let r = step(
                lab,
                s,
                &s.dir,
                &format!("long-{rate}"),
                rate,
                a.long_secs,
                a.hold_ms,
                &uac,
                &stat,
            )?;
            print_step(&s.name, &format!("{:>3} s call", a.long_secs), &r);
            let pass = r.passes();
            out.long_steps.push(r.clone());
            if pass {
                out.long = Some(r);
                break;
            }
        }
    }
    if let Some(left) = s.wait_calls_freed(Duration::from_secs(45)) {
        println!(
            "  {:<12} calls: `voxgate calls` lists {left} after the ramp",
            s.name
        );
        if left > 0 {
            out.notes
                .push(format!("call phase: {left} calls left in `voxgate calls`"));
        }
    }
    uas.signal(libc::SIGTERM)?;
    uas.wait_timeout(Duration::from_secs(5))?;
    Ok(())
}

/// Warnings and errors in the server's log: (count, up to 3 distinct messages).
fn log_problems(s: &Server) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(&s.log).unwrap_or_default();
    let mut n = 0;
    let mut distinct: Vec<String> = Vec::new();
    for l in text.lines() {
        let msg = if s.socket.is_some() {
            let Ok(v) = serde_json::from_str::<Value>(l) else {
                continue;
            };
            if !matches!(v["level"].as_str(), Some("WARN" | "ERROR")) {
                continue;
            }
            format!(
                "{} {}",
                v["level"].as_str().unwrap_or(""),
                v["message"].as_str().unwrap_or("")
            )
        } else {
            if !(l.contains("WARNING") || l.contains("ERROR") || l.contains("CRITICAL")) {
                continue;
            }
            // Drop the pid prefix so equal messages compare equal.
            l.split_once(':')
                .map_or(l, |x| x.1)
                .chars()
                .take(140)
                .collect()
        };
        n += 1;
        if !distinct.contains(&msg) && distinct.len() < 3 {
            distinct.push(msg);
        }
    }
    (n, distinct)
}

fn run_server(name: &str, a: &Args, root: &Path) -> Result<Outcome> {
    let lab = Lab::new()?;
    let dir = root.join(name);
    std::fs::create_dir_all(&dir)?;
    let mut s = if name == "voxgate" {
        start_voxgate(&lab, &dir)?
    } else {
        start_kamailio(&lab, &dir, name, a.kamailio_children)?
    };
    println!(
        "{name}: {} process(es), PSS {:.1} MiB at start; logs in {}",
        s.pids().len(),
        s.pss() as f64 / 1048576.0,
        dir.display()
    );
    let mut out = Outcome::default();
    if a.phases.iter().any(|p| p == "mem") {
        memory_phase(&lab, &mut s, a, &mut out)?;
    }
    if a.phases.iter().any(|p| p == "cps") {
        call_phase(&lab, &mut s, a, &mut out)?;
    }
    if a.phases.iter().any(|p| p == "reg") {
        registration_phase(&lab, &mut s, a, &mut out)?;
    }
    let (n, distinct) = log_problems(&s);
    if n > 0 {
        out.notes
            .push(format!("{n} warning/error log lines, e.g. {distinct:?}"));
    }
    if !s.alive() {
        out.notes.push("the server died".into());
    }
    s.process.signal(libc::SIGTERM).ok();
    if s.process.wait_timeout(Duration::from_secs(10))?.is_none() {
        s.process.kill();
    }
    Ok(out)
}

fn require_tool(tool: &str, arg: &str, package: &str) -> Result<()> {
    let found = Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        bail!("{tool} is missing: apt-get install {package}");
    }
    Ok(())
}

fn bench(a: &Args) -> Result<()> {
    lab::require_root()?;
    require_tool("sipp", "-v", "sip-tester")?;
    if a.servers.iter().any(|s| s.starts_with("kamailio")) {
        require_tool("kamailio", "-v", "kamailio")?;
    }
    if a.servers.iter().any(|s| s == "kamailio-rtpengine") {
        require_tool("rtpengine", "--version", "rtpengine-daemon")?;
    }
    let root = tempfile::Builder::new()
        .prefix("sip-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?
        .keep();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kam = String::from_utf8_lossy(
        &Command::new("kamailio")
            .arg("-v")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default(),
    )
    .lines()
    .next()
    .unwrap_or("")
    .to_string();
    let sipp = String::from_utf8_lossy(
        &Command::new("sipp")
            .arg("-v")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default(),
    )
    .lines()
    .find(|l| l.contains("SIPp"))
    .unwrap_or("")
    .trim()
    .to_string();
    println!("SIP benchmark: phone sipp (10.100.0.50) -> box {BOX_LAN} / 10.200.0.2:5060 -> isp NAT -> provider sipp ({PROVIDER}:5060)");
    println!("machine: {cores} cores, shared by the server and both sipps (nothing pinned); {sipp}; {kam}");
    println!(
        "voxgate: the whole daemon (`voxgate run`, lab config, firewall applied in the box), B2BUA with its media relay anchoring every call \
         (SDP rewritten, relay ports allocated; no RTP is sent). Media anchoring cannot be switched off for SDP calls: with media.enabled: false \
         the B2BUA answers offers with 488."
    );
    println!(
        "kamailio: transaction-stateful proxy (tm, rr, nathelper, registrar+usrloc in memory, {} children per socket, -m 1024 -M 8), \
         without rtpengine/rtpproxy (SDP passes untouched), no firewall in the box; kamailio-dlg adds the dialog module; \
         kamailio-rtpengine adds rtpengine (userspace, ng over UDP, the same port pool and quarantine as voxgate's) anchoring every call's media, \
         its CPU and memory counted with Kamailio's",
        a.kamailio_children
    );
    println!(
        "rule: a rate is sustained with <= 0.1% calls failed or unfinished, retransmissions (both sipps) <= 1% of calls, and >= 90% of the rate reached; \
         {} s per rate; calls held {} ms; ramps stop at the first rate not sustained",
        a.secs, a.hold_ms
    );
    println!(
        "every server runs with {} open files at most (voxgate.service's LimitNOFILE, or this machine's hard limit if lower)",
        server_open_files()
    );
    let (quarantine, pairs) = voxgate_port_pool();
    println!(
        "voxgate's media ports: {pairs} RTP/RTCP pairs per side (the bench configuration's ranges), each kept {} s in quarantine after its call: \
         over time at most {pairs} / ({} s + call length) = {:.0} calls/s with {} ms calls; its steps start {} s apart so each has the whole pool, \
         and the best rate is then held for {} s",
        quarantine.as_secs(),
        quarantine.as_secs(),
        pairs as f64 / (quarantine.as_secs_f64() + a.hold_ms as f64 / 1000.0),
        a.hold_ms,
        quarantine.as_secs() + 3,
        a.long_secs
    );
    println!("logs and sipp statistics in {}", root.display());

    let mut results: Vec<(String, Outcome)> = Vec::new();
    for name in &a.servers {
        println!("\n== {name}");
        let out = run_server(name, a, &root)?;
        for n in &out.notes {
            println!("  {name:<12} NOTE: {n}");
        }
        results.push((name.clone(), out));
    }
    print_table(a, &results);
    Ok(())
}

fn print_table(a: &Args, results: &[(String, Outcome)]) {
    let get = |n: &str| results.iter().find(|r| r.0 == n).map(|r| &r.1);
    let v = get("voxgate");
    // Ratios against plain Kamailio and, when it ran, Kamailio with rtpengine.
    let peers: Vec<(&str, &Outcome)> = ["kamailio", "kamailio-rtpengine"]
        .into_iter()
        .filter_map(|n| Some((n, get(n)?)))
        .collect();
    let names: Vec<&str> = results.iter().map(|r| r.0.as_str()).collect();
    // Latency and CPU compared at the highest rate every server sustained.
    let common_rate = a
        .cps_rates
        .iter()
        .copied()
        .filter(|&r| {
            results
                .iter()
                .all(|(_, o)| o.cps_steps.iter().any(|s| s.rate == r && s.passes()))
        })
        .max();
    let at = |o: &Outcome, r: Option<u32>| -> Option<Step> {
        o.cps_steps.iter().find(|s| Some(s.rate) == r).cloned()
    };
    type Metric<'a> = (String, Box<dyn Fn(&Outcome) -> Option<f64> + 'a>, &'a str);
    let metrics: Vec<Metric> = vec![
        (
            format!("calls/s sustained ({} s steps)", a.secs),
            Box::new(|o: &Outcome| o.cps.as_ref().map(|s| s.rate as f64)),
            "higher is better",
        ),
        (
            format!("calls/s held for {} s", a.long_secs),
            Box::new(|o: &Outcome| o.long.as_ref().map(|s| s.rate as f64)),
            "higher is better",
        ),
        (
            "registrations/s sustained".into(),
            Box::new(|o: &Outcome| o.rps.as_ref().map(|s| s.rate as f64)),
            "higher is better",
        ),
        (
            format!(
                "INVITE->200 mean ms at {} cps (sipp, 1 ms res.)",
                common_rate.map_or("-".into(), |r| r.to_string())
            ),
            Box::new(move |o: &Outcome| at(o, common_rate).map(|s| s.rtt_ms)),
            "lower is better",
        ),
        (
            format!(
                "server CPU ms per call at {} cps",
                common_rate.map_or("-".into(), |r| r.to_string())
            ),
            Box::new(move |o: &Outcome| at(o, common_rate).map(|s| s.cpu_ms)),
            "lower is better",
        ),
        (
            format!("PSS bytes per active call ({} up)", a.mem_calls),
            Box::new(|o: &Outcome| (o.mem_active > 0).then_some(o.mem_per_call)),
            "lower is better",
        ),
        (
            format!(
                "PSS bytes per registration held ({} s after)",
                SETTLE.as_secs()
            ),
            Box::new(|o: &Outcome| (o.registrations > 0).then_some(o.mem_per_reg)),
            "lower is better",
        ),
        (
            "PSS MiB idle (after warm-up)".into(),
            Box::new(|o: &Outcome| (o.idle_pss > 0).then_some(o.idle_pss as f64 / 1048576.0)),
            "lower is better",
        ),
    ];
    let mut t = String::new();
    let _ = write!(t, "\n{:<46}", "metric");
    let width = |n: &str| n.len().max(13);
    for n in &names {
        let _ = write!(t, " {n:>w$}", w = width(n));
    }
    for (p, _) in &peers {
        let _ = write!(t, " {:>w$}", format!("voxgate/{p}"), w = p.len() + 8);
    }
    let _ = writeln!(t);
    for (label, f, better) in &metrics {
        let _ = write!(t, "{label:<46}");
        for (n, o) in results {
            let w = width(n);
            let _ = match f(o) {
                Some(x) if x.abs() >= 100.0 => write!(t, " {x:>w$.0}"),
                Some(x) => write!(t, " {x:>w$.2}"),
                None => write!(t, " {:>w$}", "-"),
            };
        }
        for (p, k) in &peers {
            let ratio = match (v.and_then(f), f(k)) {
                (Some(x), Some(y)) if y != 0.0 => format!("{:.2}", x / y),
                _ => "-".into(),
            };
            let _ = write!(t, " {ratio:>w$}", w = p.len() + 8);
        }
        let _ = writeln!(t, "  ({better})");
    }
    let _ = writeln!(
        t,
        "({} cores shared by server and sipps; kamailio without media anchoring, kamailio-rtpengine and voxgate anchoring each call's media)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print!("{t}");
}
