//! The daemon in the lab's `box` namespace: status over the socket, SIGHUP reloads (good and
//! broken), a failing service restarted while status shows it, clean SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab::{Lab, Node};
use serde_json::Value;

mod common;
use common::*;

#[test]
fn daemon_lifecycle_in_the_lab() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let b = Box_::new();
    std::fs::write(b.config(), lab_config("surgery-a")).unwrap();
    let mut daemon = b.start(&lab);
    let sock = b.socket();

    // Starts, answers status over the socket, every service running.
    let s = wait_status(&sock, Duration::from_secs(10), "services running", |s| {
        service(s, "links")["state"] == "running" && s["firewall"]["last_event"] == "applied"
    });
    assert_eq!(service(&s, "firewall")["state"], "running");
    let rules = lab
        .run_ok(Node::Box, &["nft", "list", "table", "inet", "voxgate"])
        .unwrap();
    assert!(
        rules.contains("chain input"),
        "the daemon applied its firewall:\n{rules}"
    );
    assert_eq!(s["site"], "surgery-a");
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["config"]["path"], b.config().display().to_string());
    let digest0 = s["config"]["digest"].as_str().unwrap().to_string();
    assert_eq!(digest0.len(), 64);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660, "control socket mode");
    let text = cli(&sock, &["status"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("site surgery-a") && text.contains("links"),
        "{text}"
    );

    // SIGHUP with a good new file: the new config is in force.
    std::fs::write(b.config(), lab_config("surgery-b")).unwrap();
    daemon.signal(libc::SIGHUP).unwrap();
    let s = wait_status(&sock, Duration::from_secs(5), "site surgery-b", |s| {
        s["site"] == "surgery-b"
    });
    assert_ne!(s["config"]["digest"], digest0.as_str());
    assert!(s["config"]["rejected"].is_null(), "{s:#}");

    // SIGHUP with a broken file: rejected with its errors, the running config stays.
    std::fs::write(
        b.config(),
        lab_config("surgery-c").replace("lease_time: 1h", "lease_time: 1h\n  colour: blue"),
    )
    .unwrap();
    daemon.signal(libc::SIGHUP).unwrap();
    let s = wait_status(&sock, Duration::from_secs(5), "rejected reload", |s| {
        s["config"]["rejected"].is_array()
    });
    assert_eq!(s["site"], "surgery-b", "the old config stays in force");
    let rejected = s["config"]["rejected"][0].as_str().unwrap();
    let want = format!(
        "{}:22:3: dhcp.colour: unknown key `colour`",
        b.config().display()
    );
    assert!(rejected.starts_with(&want), "{rejected}");
    // The same through `voxgate reload`: exit 1, errors on stderr.
    let out = cli(&sock, &["reload"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("the running one stays in force") && err.contains(&want),
        "{err}"
    );
    // Fixed again: accepted, and the rejection is cleared.
    std::fs::write(b.config(), lab_config("surgery-d")).unwrap();
    let out = cli(&sock, &["reload", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(o["changed"], true);
    let s = status(&sock);
    assert_eq!(s["site"], "surgery-d");
    assert!(s["config"]["rejected"].is_null());

    // `rules apply --confirm`: applied, pending; not confirmed, so it rolls back by itself.
    let out = cli(&sock, &["rules", "confirm"]);
    assert!(!out.status.success(), "nothing to confirm yet");
    let out = cli(&sock, &["rules", "apply", "--confirm", "1", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["pending_confirm"], true, "{st}");
    wait_status(&sock, Duration::from_secs(5), "rollback", |s| {
        s["firewall"]["last_event"]
            .as_str()
            .unwrap_or("")
            .starts_with("rolled back")
    });
    let out = cli(&sock, &["rules", "apply", "--confirm", "30"]);
    assert!(out.status.success());
    let out = cli(&sock, &["rules", "confirm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        status(&sock)["firewall"]["last_event"],
        "applied and confirmed"
    );

    // A failing service is restarted with back-off while status shows why; the daemon and the
    // other parts keep answering.
    lab.run_ok(Node::Box, &["ip", "link", "set", "lan0", "down"])
        .unwrap();
    let s = wait_status(&sock, Duration::from_secs(10), "links restarting", |s| {
        let l = service(s, "links");
        l["state"] == "restarting" && l["restarts"].as_u64() >= Some(1)
    });
    assert_eq!(service(&s, "links")["last_error"], "interface lan0 is down");
    lab.run_ok(Node::Box, &["ip", "link", "set", "lan0", "up"])
        .unwrap();
    wait_status(&sock, Duration::from_secs(20), "links running again", |s| {
        service(s, "links")["state"] == "running"
    });

    // SIGTERM: clean exit within 5 s, socket removed.
    let t0 = Instant::now();
    daemon.signal(libc::SIGTERM).unwrap();
    let st = daemon.wait_timeout(Duration::from_secs(5)).unwrap();
    let st = st.unwrap_or_else(|| panic!("no exit within 5 s; log:\n{}", b.log()));
    assert!(st.success(), "exit status {st:?}; log:\n{}", b.log());
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(!sock.exists(), "socket left behind");
    // Logs are JSON lines an engineer can follow.
    let log = b.log();
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(log.contains("reload rejected"), "{log}");
    assert!(log.contains("\"stopped\""), "{log}");
}

#[test]
fn bad_config_at_start_is_refused_with_errors() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("voxgate.yaml");
    std::fs::write(&f, lab_config("x").replace("lan0", "lan 0")).unwrap();
    // A config error stops start-up before anything is bound, so no namespace is needed.
    let out = Command::new(VOXGATE)
        .args(["run", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("interfaces.lan.device: \"lan 0\" is not a valid interface name"),
        "{err}"
    );
    assert!(err.contains("not starting"), "{err}");
}

#[test]
fn show_commands_without_a_daemon_say_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("control.sock");
    for args in [&["status"][..], &["status", "--json"], &["reload"]] {
        let out = cli(&sock, args);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            err,
            format!(
                "voxgate: voxgate is not running (no daemon answers on {})\n",
                sock.display()
            )
        );
    }
}

#[test]
fn config_commands() {
    let out = Command::new(VOXGATE)
        .args(["config", "check", "@lab"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new(VOXGATE)
        .args(["config", "show", "@lab"])
        .output()
        .unwrap();
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(
        shown.contains("lan_port: 5060"),
        "defaults are filled in:\n{shown}"
    );
    let out = Command::new(VOXGATE)
        .args(["config", "schema"])
        .output()
        .unwrap();
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(schema["properties"]["interfaces"].is_object());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(
        &f,
        "interfaces: 5\nprovider: {profile: lab}\nsite: {nme: x}\n",
    )
    .unwrap();
    let out = Command::new(VOXGATE)
        .args(["config", "check", "--json"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errs = v["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 2, "{v:#}");
    assert_eq!(
        (errs[0]["line"].as_u64(), errs[0]["path"].as_str()),
        (Some(1), Some("interfaces"))
    );
    assert_eq!(
        (errs[1]["line"].as_u64(), errs[1]["path"].as_str()),
        (Some(3), Some("site.nme"))
    );
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../systemd/voxgate.service"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // systemd-analyze checks that ExecStart's binary exists: point it at the one just built.
    let path = dir.path().join("voxgate.service");
    std::fs::write(&path, unit.replace("/usr/bin/voxgate", VOXGATE)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify:\n{err}"
    );
}

#[test]
fn allowlist_import_shows_the_diff_and_installs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("voxgate.yaml");
    std::fs::write(&cfg, lab_config("x")).unwrap();
    let updated = dir.path().join("lab-update.yaml");
    let profile = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/providers/lab.yaml"
    ))
    .unwrap();
    std::fs::write(
        &updated,
        profile
            .replace("revision: \"lab-1\"", "revision: \"lab-2\"")
            .replace(
                "networks:\n",
                "networks:\n  - cidr: 203.0.113.128/28\n    note: announced in lab-2\n",
            ),
    )
    .unwrap();
    let providers = dir.path().join("providers");
    let run = |extra: &[&str], stdin: &str| {
        let mut child = Command::new(VOXGATE)
            .arg("--socket")
            .arg(dir.path().join("none.sock"))
            .args(["allowlist", "import"])
            .arg(&updated)
            .arg("--config")
            .arg(&cfg)
            .arg("--providers-dir")
            .arg(&providers)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    // Declined: shows the diff, installs nothing.
    let out = run(&[], "no\n");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!out.status.success());
    assert!(text.contains("revision lab-1 -> lab-2"), "{text}");
    assert!(
        text.contains("+ network 203.0.113.128/28 (set provider)"),
        "{text}"
    );
    assert!(!providers.join("lab.yaml").exists());
    // Accepted: installed where the configuration finds it first.
    let out = run(&[], "yes\n");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("no daemon running"), "{text}");
    let l = config::load_ref_in(&cfg.to_string_lossy(), std::slice::from_ref(&providers)).unwrap();
    assert_eq!(l.profile.revision, "lab-2");
    // A profile for another provider is refused.
    std::fs::write(&updated, profile.replace("name: lab", "name: other")).unwrap();
    let out = run(&["--yes"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("but the configuration uses \"lab\""));
}

#[test]
fn a_phone_gets_a_lease_from_the_daemon_and_support_can_release_it() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let b = Box_::new();
    std::fs::write(b.config(), config::LAB_CONFIG).unwrap();
    let _daemon = b.start(&lab);
    let sock = b.socket();
    wait_status(&sock, Duration::from_secs(10), "dhcp running", |s| {
        service(s, "dhcp")["state"] == "running"
    });
    // udhcpc with a script that changes nothing: the lease is what we look at.
    let out = lab
        .exec(
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
        )
        .unwrap();
    assert!(
        out.status.success(),
        "udhcpc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let phone_mac = lab
        .run_ok(Node::Phone, &["cat", "/sys/class/net/eth0/address"])
        .unwrap()
        .trim()
        .to_string();
    let leases: Value = serde_json::from_slice(&cli(&sock, &["leases", "--json"]).stdout).unwrap();
    let lease = leases
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mac"] == phone_mac.as_str())
        .unwrap_or_else(|| panic!("no lease for {phone_mac}: {leases:#}"));
    assert_eq!(lease["state"], "bound");
    let addr: std::net::Ipv4Addr = lease["address"].as_str().unwrap().parse().unwrap();
    assert!(
        (100..=199).contains(&addr.octets()[3]),
        "from the lab pool: {addr}"
    );
    let text = String::from_utf8(cli(&sock, &["leases"]).stdout).unwrap();
    assert!(
        text.contains(&phone_mac) && text.contains("bound"),
        "{text}"
    );
    // Support frees it.
    let out = cli(&sock, &["leases", "release", &phone_mac]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&addr.to_string()));
    let leases: Value = serde_json::from_slice(&cli(&sock, &["leases", "--json"]).stdout).unwrap();
    let lease = leases
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mac"] == phone_mac.as_str())
        .unwrap();
    assert_eq!(lease["state"], "released");
    let out = cli(&sock, &["leases", "release", "not-a-mac"]);
    assert!(!out.status.success());
}
