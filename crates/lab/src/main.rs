//! `voxgate-lab demo --voxgate PATH [--hold SECONDS]`: runs the daemon in the lab's box and
//! shows its status; `voxgate-lab cleanup`: removes namespaces left by killed lab users.

use anyhow::{bail, Context, Result};
use lab::{Lab, Node};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: voxgate-lab demo --voxgate PATH [--hold SECONDS]\n       voxgate-lab cleanup";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => parse_demo(&args[1..]).and_then(|(path, hold)| demo(&path, hold)),
        Some("cleanup") if args.len() == 1 => lab::cleanup_stale().map(|n| {
            println!("removed {n} stale lab namespace(s)");
            true
        }),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(true)
        }
        _ => Err(anyhow::anyhow!("{USAGE}")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("voxgate-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_demo(args: &[String]) -> Result<(PathBuf, Option<u64>)> {
    let (mut path, mut hold) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--voxgate" => path = Some(PathBuf::from(value()?)),
            "--hold" => hold = Some(value()?.parse().context("--hold takes whole seconds")?),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok((
        path.with_context(|| format!("--voxgate PATH is required\n{USAGE}"))?,
        hold,
    ))
}

fn step(what: &str) {
    println!("==> {what}");
}

/// Returns Ok(false) when a step failed after the lab was up (the failure is already printed).
fn demo(voxgate: &Path, hold: Option<u64>) -> Result<bool> {
    step("checking for root");
    lab::require_root()?;
    step("building the lab");
    let lab = Lab::new()?;
    let tmp = tempfile::tempdir()?;
    let ok = run_daemon(&lab, voxgate, tmp.path(), hold);
    step("tearing down the lab");
    drop(lab);
    ok
}

/// Runs `voxgate ARGS --socket S` in the box and prints what it says.
fn show(lab: &Lab, vg: &str, socket: &str, args: &[&str]) -> Result<bool> {
    step(&format!("voxgate {}", args.join(" ")));
    let mut argv = vec![vg, "--socket", socket];
    argv.extend_from_slice(args);
    let out = lab.exec(Node::Box, &argv)?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(out.status.success())
}

/// What a phone does on the voice LAN: take an address from the box's DHCP server, then place
/// a call with audio through the box to the lab provider (sipp on both ends, the provider
/// echoing the audio), while `voxgate` shows leases, calls and the firewall's flows.
fn phone_activity(lab: &Lab, vg: &str, socket: &str) -> Result<bool> {
    let mut ok = true;
    step("the phone asks for an address (udhcpc in the phone namespace)");
    let out = lab.exec(
        Node::Phone,
        &[
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-f",
            "-s",
            "/bin/true",
            "-t",
            "5",
            "-T",
            "1",
        ],
    )?;
    print!("{}", String::from_utf8_lossy(&out.stderr));
    ok &= out.status.success();
    ok &= show(lab, vg, socket, &["leases"])?;

    let scenario = Path::new("tests/sipp/uac_rtp.xml");
    if !scenario.exists() {
        println!(
            "(no {} here: run the demo from the repository root to see a call)",
            scenario.display()
        );
        return Ok(ok);
    }
    step("a call with audio: phone (sipp) -> box -> provider (sipp, echoing the audio)");
    let mut uas = lab.command(Node::Provider, "sipp");
    uas.args([
        "-sn",
        "uas",
        "-rtp_echo",
        "-mp",
        "10000",
        "-i",
        "198.51.100.10",
        "-p",
        "5060",
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "20s",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let mut uas = lab.spawn(Node::Provider, uas)?;
    std::thread::sleep(Duration::from_millis(300));
    let mut uac = lab.command(Node::Phone, "sipp");
    uac.arg("-sf")
        .arg(scenario)
        .args([
            "10.100.0.1:5060",
            "-i",
            "10.100.0.50",
            "-p",
            "5070",
            "-s",
            "01632960123",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "20s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut uac = lab.spawn(Node::Phone, uac)?;
    std::thread::sleep(Duration::from_secs(2));
    ok &= show(lab, vg, socket, &["calls"])?;
    ok &= show(lab, vg, socket, &["calls", "--json"])?;
    let phone = uac.wait_timeout(Duration::from_secs(15))?;
    let provider = uas.wait_timeout(Duration::from_secs(5))?;
    let call_ok = phone.is_some_and(|s| s.success()) && provider.is_some_and(|s| s.success());
    println!(
        "call {}",
        if call_ok {
            "completed: answered, audio both ways, hung up by the phone"
        } else {
            "FAILED"
        }
    );
    ok &= call_ok;
    ok &= show(lab, vg, socket, &["rules", "explain", "--config", "@lab"])?;
    Ok(ok)
}

fn run_daemon(lab: &Lab, voxgate: &Path, tmp: &Path, hold: Option<u64>) -> Result<bool> {
    let socket = tmp.join("control.sock");
    let socket_arg = socket.to_string_lossy().into_owned();
    let vg = voxgate.to_string_lossy().into_owned();

    step(&format!("starting {vg} run in the box namespace"));
    let mut cmd = lab.command(Node::Box, voxgate);
    cmd.args(["run", "--config", "@lab", "--control-socket"])
        .arg(&socket)
        .arg("--state-dir")
        .arg(tmp.join("state"))
        .args(["--log-format", "text"]);
    let mut daemon = lab.spawn(Node::Box, cmd)?;

    step("waiting up to 10 s for the control socket");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if let Some(status) = daemon.wait_timeout(Duration::from_millis(100))? {
            println!("voxgate exited early: {status}");
            return Ok(false);
        }
        if Instant::now() > deadline {
            println!("no control socket at {} after 10 s", socket.display());
            return Ok(false);
        }
    }

    let mut ok = true;
    for extra in [&[][..], &["--json"][..]] {
        let mut argv = vec![vg.as_str(), "status", "--socket", &socket_arg];
        argv.extend_from_slice(extra);
        step(&format!("voxgate status {}", extra.join(" ")));
        let out = lab.exec(Node::Box, &argv)?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            println!("status command failed: {}", out.status);
            ok = false;
        }
    }

    ok &= phone_activity(lab, &vg, &socket_arg)?;

    step("the lab");
    print!("{lab}");
    if let Some(secs) = hold {
        step(&format!("holding for {secs} s"));
        std::thread::sleep(Duration::from_secs(secs));
    }

    step("stopping voxgate (SIGTERM)");
    if let Err(e) = daemon.signal(libc::SIGTERM) {
        println!("cannot signal voxgate: {e:#}");
        ok = false;
    }
    match daemon.wait_timeout(Duration::from_secs(5))? {
        Some(status) => {
            println!("voxgate exited: {status}");
            ok &= status.success();
        }
        None => {
            println!("voxgate did not exit within 5 s; killing it");
            daemon.kill();
            ok = false;
        }
    }
    Ok(ok)
}
