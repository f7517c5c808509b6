//! Real labs, as root: each test builds its own and relies on it tearing itself down.

use lab::{addr, Lab, LabOptions, Node};
use std::io::Read;
use std::net::UdpSocket;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn namespaces() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// True once the pid is gone or a zombie nobody reaped yet: either way nothing runs.
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('Z'),
    }
}

#[test]
fn phone_reaches_box_and_box_reaches_provider_through_nat() {
    let lab = Lab::new().unwrap();
    let t = Duration::from_secs(2);
    assert!(lab.ping(Node::Phone, addr::BOX_LAN, t).unwrap());
    assert!(lab.ping(Node::Box, addr::PROVIDER, t).unwrap());

    // The provider answers each datagram with the source address it saw.
    let mut cmd = lab.command(Node::Provider, "socat");
    cmd.args([
        "-T3",
        "UDP4-RECVFROM:4000,fork",
        "SYSTEM:read line; echo $SOCAT_PEERADDR",
    ])
    .stdout(Stdio::null());
    let _echo = lab.spawn(Node::Provider, cmd).unwrap();

    let sock = lab
        .in_netns(Node::Box, || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 100];
    // Retry until socat has bound its port.
    let n = loop {
        assert!(Instant::now() < deadline, "no answer from the provider");
        let _ = sock.send_to(b"who am i\n", (addr::PROVIDER, 4000));
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            break n;
        }
    };
    assert_eq!(
        std::str::from_utf8(&buf[..n]).unwrap().trim(),
        addr::ISP_WAN.to_string()
    );
}

#[test]
fn stranger_gets_nothing_through_the_router() {
    let lab = Lab::new().unwrap();
    let listener = lab
        .in_netns(Node::Box, || UdpSocket::bind("0.0.0.0:5060"))
        .unwrap()
        .unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let stranger = lab
        .in_netns(Node::Stranger, || UdpSocket::bind("0.0.0.0:5060"))
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        stranger
            .send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", (addr::ISP_WAN, 5060))
            .unwrap();
    }
    let mut buf = [0u8; 100];
    assert!(
        listener.recv_from(&mut buf).is_err(),
        "the stranger reached the box"
    );
    assert!(!lab
        .ping(Node::Stranger, addr::BOX_WAN, Duration::from_millis(500))
        .unwrap());
}

/// Sends a REGISTER from the box's WAN side and returns it as it reached the provider.
fn register_as_provider_sees_it(lab: &Lab) -> String {
    let bind = |node, at: &'static str| {
        lab.in_netns(node, move || UdpSocket::bind(at))
            .unwrap()
            .unwrap()
    };
    let provider = bind(Node::Provider, "0.0.0.0:5060");
    provider
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let register = "REGISTER sip:198.51.100.10 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.200.0.2:5060;branch=z9hG4bK1\r\n\
        From: <sip:100@198.51.100.10>;tag=1\r\nTo: <sip:100@198.51.100.10>\r\n\
        Call-ID: 1@10.200.0.2\r\nCSeq: 1 REGISTER\r\n\
        Contact: <sip:100@10.200.0.2:5060>\r\nContent-Length: 0\r\n\r\n";
    let sent =
        bind(Node::Box, "10.200.0.2:5060").send_to(register.as_bytes(), (addr::PROVIDER, 5060));
    sent.unwrap();
    let mut buf = [0u8; 2000];
    let (n, from) = provider.recv_from(&mut buf).unwrap();
    assert_eq!(from.ip(), addr::ISP_WAN);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn router_options_show_in_its_ruleset_and_sysctls() {
    let root_timeout =
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_udp_timeout").ok();
    let plain = Lab::new().unwrap();
    let ruleset = plain
        .run_ok(Node::Isp, &["nft", "list", "ruleset"])
        .unwrap();
    assert!(
        ruleset.contains("masquerade") && !ruleset.contains("fully-random"),
        "{ruleset}"
    );
    assert!(!ruleset.contains("ct helper"), "{ruleset}");

    let opts = LabOptions {
        nat_fully_random: true,
        sip_alg: true,
        udp_timeout_secs: 45,
    };
    let lab = Lab::with(opts).unwrap();
    let ruleset = lab.run_ok(Node::Isp, &["nft", "list", "ruleset"]).unwrap();
    assert!(ruleset.contains("fully-random"), "{ruleset}");
    assert!(ruleset.contains("ct helper sip"), "{ruleset}");
    for key in [
        "nf_conntrack_udp_timeout",
        "nf_conntrack_udp_timeout_stream",
    ] {
        let path = format!("/proc/sys/net/netfilter/{key}");
        assert_eq!(lab.run_ok(Node::Isp, &["cat", &path]).unwrap().trim(), "45");
        assert_eq!(
            plain.run_ok(Node::Isp, &["cat", &path]).unwrap().trim(),
            "30"
        );
    }
    // The machine's own namespace is never touched.
    let after = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_udp_timeout").ok();
    assert_eq!(root_timeout, after);
    // The ALG is real: it rewrites the box's private address inside the SIP message.
    assert!(register_as_provider_sees_it(&plain).contains("Contact: <sip:100@10.200.0.2:5060>"));
    assert!(register_as_provider_sees_it(&lab).contains("Contact: <sip:100@203.0.113.2:"));
}

#[test]
fn teardown_removes_namespaces_and_processes_even_on_panic() {
    let lab = Lab::new().unwrap();
    let names: Vec<String> = Node::ALL
        .iter()
        .map(|&n| lab.netns(n).to_string())
        .collect();
    let mut tracked = lab
        .spawn(Node::Phone, {
            let mut c = lab.command(Node::Phone, "sleep");
            c.arg("100");
            c
        })
        .unwrap();
    // Started behind the lab's back: only the namespace sweep can find it.
    let mut untracked = lab
        .command(Node::Provider, "sleep")
        .arg("100")
        .spawn()
        .unwrap();
    // `ip netns exec` enters the namespace a moment after it starts; wait for that.
    let ns_ino = std::fs::metadata(format!("/run/netns/{}", lab.netns(Node::Provider)))
        .unwrap()
        .ino();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(format!("/proc/{}/ns/net", untracked.id()))
        .unwrap()
        .ino()
        != ns_ino
    {
        assert!(
            Instant::now() < deadline,
            "sleep never entered the provider namespace"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!dead(tracked.pid()) && !dead(untracked.id()));
    drop(lab);
    let listed = namespaces();
    assert!(
        names.iter().all(|n| !listed.contains(n.as_str())),
        "{listed}"
    );
    assert!(tracked
        .wait_timeout(Duration::from_secs(1))
        .unwrap()
        .is_some());
    assert!(untracked.wait().is_ok() && dead(untracked.id()));

    let mut names = Vec::new();
    let mut pid = 0;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new().unwrap();
        names = Node::ALL
            .iter()
            .map(|&n| lab.netns(n).to_string())
            .collect();
        let mut c = lab.command(Node::Box, "sh");
        c.args(["-c", "sleep 100 & echo $!"]).stdout(Stdio::piped());
        let mut p = lab.spawn(Node::Box, c).unwrap();
        let mut out = String::new();
        // `sh` keeps stdout open via the background sleep, so read just the first line.
        let mut byte = [0u8];
        let stdout = p.child_mut().stdout.as_mut().unwrap();
        while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            out.push(byte[0] as char);
        }
        pid = out.trim().parse().unwrap();
        std::mem::forget(p); // leave everything to the lab's own teardown
        panic!("test body fails");
    }));
    assert!(result.is_err());
    let listed = namespaces();
    assert!(
        !names.is_empty() && names.iter().all(|n| !listed.contains(n.as_str())),
        "{listed}"
    );
    assert!(pid != 0 && dead(pid), "background process {pid} survived");
}

#[test]
fn parallel_labs_are_distinct_and_both_work() {
    let labs: Vec<Lab> = std::thread::scope(|s| {
        let a = s.spawn(Lab::new);
        let b = s.spawn(Lab::new);
        vec![a.join().unwrap().unwrap(), b.join().unwrap().unwrap()]
    });
    for node in Node::ALL {
        assert_ne!(labs[0].netns(node), labs[1].netns(node));
    }
    for lab in &labs {
        assert!(lab
            .ping(Node::Phone, addr::BOX_LAN, Duration::from_secs(2))
            .unwrap());
        assert!(lab
            .ping(Node::Box, addr::PROVIDER, Duration::from_secs(2))
            .unwrap());
    }
}
