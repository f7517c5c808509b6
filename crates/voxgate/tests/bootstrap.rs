//! The bootstrap scope (`dhcp.bootstrap`) through the daemon: phones that are not LLDP-capable
//! take a short lease on the untagged port and read the voice VLAN from their vendor's option.
//!
//! The lab kernel has no 802.1Q devices, so the untagged port is a second veth (box `lan1` ↔
//! phone `eth1`, 10.99.0.0/24) that the test adds, and the VLAN comes from
//! `dhcp.bootstrap.vlan`. busybox udhcpc in the phone, with each vendor's class identifier,
//! shows the options it was given (unknown ones as `optNNN` in hex).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use lab::{Lab, Node};

mod common;
use common::*;

const BOOTSTRAP: &str = "  bootstrap:
    device: lan1
    address: 10.99.0.1/24
    vlan: 100
    vendor_classes:
      - name: avaya
        match: {vendor_class: ccp.avaya.com}
        options: {extra: [{code: 242, text: \"L2Q=1,L2QVLAN=100,L2QAUD=6\"}]}
";

/// The untagged port: box lan1 (10.99.0.1/24) ↔ phone eth1 (no address, as a booting phone).
fn add_untagged_port(lab: &Lab) {
    let phone = lab.netns(Node::Phone).to_string();
    for (node, argv) in [
        (
            Node::Box,
            vec![
                "ip", "link", "add", "lan1", "type", "veth", "peer", "name", "eth1", "netns",
                &phone,
            ],
        ),
        (
            Node::Box,
            vec!["ip", "addr", "add", "10.99.0.1/24", "dev", "lan1"],
        ),
        (Node::Box, vec!["ip", "link", "set", "lan1", "up"]),
        (Node::Phone, vec!["ip", "link", "set", "eth1", "up"]),
    ] {
        lab.run_ok(node, &argv).unwrap();
    }
}

fn script(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("script");
    let text = format!(
        "#!/bin/sh\nenv | sort > '{d}'/\"$1\"\ncase \"$1\" in\n  bound) ip addr flush dev \"$interface\"; ip addr add \"$ip/$mask\" dev \"$interface\" ;;\n  deconfig) ip addr flush dev \"$interface\" ;;\nesac\nexit 0\n",
        d = dir.display()
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// One udhcpc run on eth1 with `vendor` as option 60, asking for the VLAN options; the
/// environment its script saw at `bound`.
fn lease(lab: &Lab, vendor: &str) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path());
    let mut cmd = lab.command(Node::Phone, "udhcpc");
    cmd.args([
        "-i", "eth1", "-f", "-n", "-q", "-t", "5", "-T", "1", "-V", vendor, "-s",
    ])
    .arg(&s);
    for o in ["43", "128", "vlanid", "242"] {
        cmd.args(["-O", o]);
    }
    let st = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "udhcpc ({vendor}) got no lease: {st}");
    let inherited: BTreeMap<String, String> = std::env::vars().collect();
    std::fs::read_to_string(dir.path().join("bound"))
        .expect("no bound event")
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, v)| inherited.get(*k).map(String::as_str) != Some(*v))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn get<'a>(env: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    env.get(key)
        .unwrap_or_else(|| panic!("{key} missing from the client's environment: {env:#?}"))
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn bootstrap_leases_tell_each_vendor_the_voice_vlan() {
    let lab = Lab::new().unwrap();
    add_untagged_port(&lab);
    let b = Box_::new();
    let cfg = lab_config("surgery-bootstrap").replace(
        "  lease_time: 1h\n",
        &format!("  lease_time: 1h\n{BOOTSTRAP}"),
    );
    assert!(
        cfg.contains("device: lan1"),
        "the lab config's dhcp section moved"
    );
    std::fs::write(b.config(), cfg).unwrap();
    let _daemon = b.start(&lab);
    wait_status(
        &b.socket(),
        Duration::from_secs(15),
        "dhcp-bootstrap running",
        |s| service(s, "dhcp-bootstrap")["state"] == "running",
    );

    // A Yealink (no class of its own): a short lease in the bootstrap subnet, the box as
    // router, and only the generic hint: option 132, which busybox reads as `vlanid`.
    let env = lease(&lab, "yealink SIP-T46U");
    let ip: std::net::Ipv4Addr = get(&env, "ip").parse().unwrap();
    assert!(
        ip.octets()[..3] == [10, 99, 0] && ip.octets()[3] >= 128,
        "{ip} is not in the default pool (upper half of 10.99.0.0/24)"
    );
    assert_eq!(get(&env, "serverid"), "10.99.0.1", "{env:#?}");
    assert_eq!(get(&env, "router"), "10.99.0.1", "{env:#?}");
    assert_eq!(get(&env, "lease"), "300", "{env:#?}");
    assert_eq!(get(&env, "vlanid"), "100", "{env:#?}");
    for absent in ["opt242", "opt128", "dns", "sipsrv"] {
        assert!(!env.contains_key(absent), "{absent} in {env:#?}");
    }

    // Avaya: the configured class replaces the built-in one (L2QAUD added).
    let env = lease(&lab, "ccp.avaya.com");
    assert_eq!(
        get(&env, "opt242"),
        hex("L2Q=1,L2QVLAN=100,L2QAUD=6"),
        "{env:#?}"
    );
    assert_eq!(get(&env, "vlanid"), "100", "{env:#?}");

    // Mitel: the built-in option 43 string.
    let env = lease(&lab, "ipphone.mitel.com");
    assert_eq!(
        get(&env, "opt43"),
        hex("id:ipphone.mitel.com;vlan=100;l2p=6;dscp=46"),
        "{env:#?}"
    );

    // Polycom: option 128, the first its fixed VLAN discovery reads.
    let env = lease(&lab, "Polycom-VVX411");
    assert_eq!(get(&env, "opt128"), hex("VLAN-A=100;"), "{env:#?}");
    assert!(!env.contains_key("opt242"), "{env:#?}");

    // `voxgate leases` shows the bootstrap leases, marked as such.
    let leases: serde_json::Value =
        serde_json::from_slice(&cli(&b.socket(), &["leases", "--json"]).stdout).unwrap();
    let bootstrap: Vec<_> = leases
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["scope"] == "bootstrap")
        .collect();
    // One client (one MAC) asked four times as four vendors: one lease, the last vendor's.
    assert_eq!(bootstrap.len(), 1, "{leases:#}");
    assert!(
        bootstrap[0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.99.0."),
        "{leases:#}"
    );
    assert_eq!(bootstrap[0]["vendor"], "Polycom-VVX411", "{leases:#}");

    // Its own server, logged as such for the engineer reading the journal.
    assert!(
        b.log().contains("\"scope\":\"Bootstrap\""),
        "the bootstrap server did not log its start:\n{}",
        b.log()
    );
}
