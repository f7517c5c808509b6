//! LLDP-MED through the daemon (`voxgate run` in the lab's box) with a real peer: lldpd in the
//! phone namespace, acting as an LLDP-MED communication device (a phone, class III), sees the
//! box as its neighbour on eth0 with the site's name and the voice network policy (Voice on
//! the VLAN, priority 5, DSCP 46 EF; Voice Signaling), as `lldpcli show neighbors` reports it.
//! The box sees the phone too and logs it. A reload that drops the VLAN sends the untagged
//! policy at once; SIGTERM sends the shutdown frame, and the phone forgets the box at once.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use lab::{Lab, LabProcess, Node};
use serde_json::Value;

mod common;
use common::*;

/// lldpd in the phone namespace with its own control socket, speaking LLDP-MED class III on
/// eth0. `-d` keeps it in the foreground (killed with the lab); it still drops privileges to
/// `_lldpd` for its frame handling, which works in a namespace.
fn lldpd(lab: &Lab, dir: &Path) -> LabProcess {
    let mut cmd = lab.command(Node::Phone, "lldpd");
    cmd.arg("-d")
        .arg("-u")
        .arg(dir.join("lldpd.socket"))
        .args(["-I", "eth0", "-M", "3", "-S", "test phone"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("lldpd.log")).unwrap());
    lab.spawn(Node::Phone, cmd).unwrap()
}

/// `lldpcli show neighbors details -f json` in the phone: the neighbours seen on eth0.
fn neighbours(lab: &Lab, dir: &Path) -> Option<Value> {
    let sock = dir.join("lldpd.socket");
    let out = lab
        .exec(
            Node::Phone,
            &[
                "lldpcli",
                "-u",
                sock.to_str().unwrap(),
                "-f",
                "json",
                "show",
                "neighbors",
                "details",
            ],
        )
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let iface = v["lldp"]["interface"].clone();
    (!iface.is_null()).then_some(iface)
}

fn wait_neighbour(lab: &Lab, dir: &Path, b: &Box_, pred: impl Fn(&str) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        if let Some(n) = neighbours(lab, dir) {
            if pred(&n.to_string()) {
                return n;
            }
            if t0.elapsed() > Duration::from_secs(15) {
                panic!("the phone's lldpd never saw what was expected; it saw:\n{n:#}\ndaemon log:\n{}", b.log());
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "lldpd saw no neighbour; lldpd log:\n{}\ndaemon log:\n{}",
            std::fs::read_to_string(dir.join("lldpd.log")).unwrap_or_default(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn lldpd_in_the_phone_sees_the_box_and_the_voice_policy() {
    let lab = Lab::new().unwrap();
    let b = Box_::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        b.config(),
        lab_config("surgery-lldp") + "lldp:\n  vlan: 100\n",
    )
    .unwrap();
    let _phone = lldpd(&lab, dir.path());
    let mut daemon = b.start(&lab);
    wait_status(&b.socket(), Duration::from_secs(15), "lldp running", |s| {
        service(s, "lldp")["state"] == "running"
    });
    let n = wait_neighbour(&lab, dir.path(), &b, |t| t.contains("surgery-lldp"));
    let eth0 = &n["eth0"];
    let chassis = &eth0["chassis"]["surgery-lldp"];
    assert_eq!(chassis["id"]["type"], "mac", "{n:#}");
    assert_eq!(chassis["capability"]["type"], "Router", "{n:#}");
    assert_eq!(chassis["mgmt-ip"], "10.100.0.1", "{n:#}");
    assert_eq!(eth0["port"]["id"]["value"], "lan0", "{n:#}");
    assert_eq!(eth0["port"]["ttl"], "120", "{n:#}");
    let med = &eth0["lldp-med"];
    assert_eq!(med["device-type"], "Network Connectivity Device", "{n:#}");
    let policy = |app: &str| -> Value {
        med["policy"]
            .as_array()
            .unwrap_or_else(|| panic!("no policies in {n:#}"))
            .iter()
            .find(|p| p["apptype"] == app)
            .unwrap_or_else(|| panic!("no {app} policy in {n:#}"))
            .clone()
    };
    let voice = policy("Voice");
    assert_eq!(
        (
            &voice["vlan"]["vid"],
            &voice["pcp"],
            &voice["dscp"],
            &voice["defined"]
        ),
        (&"100".into(), &"5".into(), &"46".into(), &true.into()),
        "{n:#}"
    );
    let sig = policy("Voice Signaling");
    assert_eq!(
        (&sig["vlan"]["vid"], &sig["pcp"], &sig["dscp"]),
        (&"100".into(), &"3".into(), &"24".into()),
        "{n:#}"
    );

    // The box saw the phone (an LLDP-MED class III endpoint) and logged it.
    let t0 = Instant::now();
    while !b.log().contains("LLDP neighbour appeared") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the box never logged the phone; log:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        b.log().contains(r#""med_device_type":"Some(3)""#) && b.log().contains("test phone"),
        "the phone's class or description is missing:\n{}",
        b.log()
    );

    // A reload without the VLAN: the new (untagged) policy goes out at once, not after 30 s.
    std::fs::write(b.config(), lab_config("surgery-lldp")).unwrap();
    let out = cli(&b.socket(), &["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = wait_neighbour(&lab, dir.path(), &b, |t| !t.contains("\"100\""));
    let voice = n["eth0"]["lldp-med"]["policy"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["apptype"] == "Voice"))
        .unwrap_or_else(|| panic!("no Voice policy after the reload: {n:#}"))
        .clone();
    // lldpcli shows no VLAN for an untagged policy; priority and DSCP stay.
    assert!(voice.get("vlan").is_none(), "{n:#}");
    assert_eq!(
        (&voice["pcp"], &voice["dscp"]),
        (&"5".into(), &"46".into()),
        "{n:#}"
    );

    // SIGTERM: the shutdown frame (TTL 0) makes the phone forget the box at once.
    daemon.signal(libc::SIGTERM).unwrap();
    assert!(daemon
        .wait_timeout(Duration::from_secs(5))
        .unwrap()
        .is_some_and(|s| s.success()));
    let t0 = Instant::now();
    while neighbours(&lab, dir.path()).is_some() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the phone still lists the box after its shutdown frame"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
