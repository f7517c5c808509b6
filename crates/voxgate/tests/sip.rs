//! SIP through the daemon in the lab, with sipp on both ends: a phone in `phone` registers
//! through the box to a registrar with digest authentication in `provider`, across the `isp`
//! NAT. The registrar fails the exchange if a voice-LAN address reaches it.

use std::process::Stdio;
use std::time::Duration;

use lab::{Lab, LabOptions, Node};
use serde_json::Value;

mod common;
use common::*;

fn scenario(name: &str) -> String {
    format!("{}/../../tests/sipp/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs sipp in `node` to completion (at most `limit`), returning (success, log).
fn sipp(lab: &Lab, node: Node, args: &[&str], limit: Duration) -> (bool, String) {
    let mut cmd = lab.command(node, "sipp");
    cmd.args(args)
        .args([
            "-nostdin",
            "-timeout_error",
            "-timeout",
            &format!("{}s", limit.as_secs()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

fn start_registrar(lab: &Lab, dir: &std::path::Path) -> lab::LabProcess {
    let mut cmd = lab.command(Node::Provider, "sipp");
    cmd.args([
        "-sf",
        &scenario("registrar.xml"),
        "-i",
        "198.51.100.10",
        "-p",
        "5060",
        "-m",
        "1",
    ])
    .args([
        "-nostdin",
        "-timeout_error",
        "-timeout",
        "20s",
        "-trace_msg",
        "-message_file",
    ])
    .arg(dir.join("provider-messages.log"))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    lab.spawn(Node::Provider, cmd).unwrap()
}

#[test]
fn phone_registers_through_the_box_with_digest_auth() {
    lab::require_root().unwrap();
    let lab = Lab::with(LabOptions::default()).unwrap();
    let b = Box_::new();
    std::fs::write(b.config(), config::LAB_CONFIG).unwrap();
    let _daemon = b.start(&lab);
    let sock = b.socket();
    wait_status(&sock, Duration::from_secs(10), "sip running", |s| {
        s["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "sip" && x["state"] == "running")
    });
    let mut registrar = start_registrar(&lab, b.dir.path());
    std::thread::sleep(Duration::from_millis(300)); // sipp binds its port

    let (ok, log) = sipp(
        &lab,
        Node::Phone,
        &[
            "-sf",
            &scenario("register.xml"),
            "10.100.0.1:5060",
            "-i",
            "10.100.0.50",
            "-p",
            "5070",
            "-s",
            "1001",
            "-m",
            "1",
            "-auth_uri",
            "sip:198.51.100.10",
        ],
        Duration::from_secs(15),
    );
    if !ok {
        let provider_log =
            std::fs::read_to_string(b.dir.path().join("provider-messages.log")).unwrap_or_default();
        panic!(
            "phone registration failed:\n{log}\ndaemon log:\n{}\nprovider:\n{provider_log}",
            b.log()
        );
    }
    let st = registrar.wait_timeout(Duration::from_secs(5)).unwrap();
    let provider_log =
        std::fs::read_to_string(b.dir.path().join("provider-messages.log")).unwrap_or_default();
    assert!(
        st.is_some_and(|s| s.success()),
        "registrar failed ({st:?}):\n{provider_log}"
    );
    // Topology hiding: nothing the provider received names the voice LAN.
    assert!(
        !provider_log.contains("10.100.0."),
        "LAN address leaked:\n{provider_log}"
    );
    // The box registered its own contact in the phone's place.
    assert!(
        provider_log.contains("Contact: <sip:") && provider_log.contains("@10.200.0.2:5060>"),
        "{provider_log}"
    );

    let out = cli(&sock, &["regs", "--json"]);
    let regs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &regs[0];
    assert_eq!(r["aor"], "sip:1001@198.51.100.10");
    assert_eq!(r["state"], "registered", "{regs:#}");
    assert!(
        (100..=120).contains(&r["expires_in"].as_u64().unwrap()),
        "{regs:#}"
    );
    assert_eq!(r["phone_addr"], "10.100.0.50:5070");
    let text = String::from_utf8(cli(&sock, &["regs"]).stdout).unwrap();
    assert!(
        text.contains("sip:1001@198.51.100.10") && text.contains("registered"),
        "{text}"
    );
}
