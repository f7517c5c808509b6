//! The generated firewall in the lab's box, tested with real packets: what the profile names
//! passes, everything else gets nothing; conntrack carries the profile's timeouts and no
//! helper; a failed apply changes nothing; an unconfirmed apply rolls back by itself.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use lab::{addr, Lab, Node};

const WAIT: Duration = Duration::from_millis(700);

/// The lab configuration with forwarding to the provider on, SSH allowed from the WAN-side
/// network (standing in for a management network), plus `extra` sections.
fn loaded(extra: &str) -> config::Loaded {
    let text = config::LAB_CONFIG.replace(
        "management:\n",
        "management:\n  ssh_from: [10.200.0.0/24]\n",
    ) + "firewall: {forward_to_provider: true}\n"
        + extra;
    config::load_str(std::path::Path::new("lab.yaml"), &text, &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn apply_in_box(lab: &Lab, text: &str) -> anyhow::Result<()> {
    let t = text.to_string();
    lab.in_netns(Node::Box, move || firewall::apply::apply(&t))
        .unwrap()
}

fn current(lab: &Lab) -> Option<String> {
    lab.in_netns(Node::Box, firewall::apply::current)
        .unwrap()
        .unwrap()
}

/// Binds a UDP socket inside `node` (it stays in that namespace).
fn udp_in(lab: &Lab, node: Node, port: u16) -> UdpSocket {
    let s = lab
        .in_netns(node, move || UdpSocket::bind(("0.0.0.0", port)))
        .unwrap()
        .unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Sends one datagram from `from` to `to`; true when `rx` receives it.
fn udp_passes(lab: &Lab, from: Node, to: SocketAddr, rx: &UdpSocket) -> bool {
    let tx = udp_in(lab, from, 0);
    tx.send_to(b"voxgate-probe", to).unwrap();
    let mut buf = [0u8; 64];
    match rx.recv_from(&mut buf) {
        Ok((n, _)) => &buf[..n] == b"voxgate-probe",
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(e) => panic!("{e}"),
    }
}

fn tcp_connects(lab: &Lab, from: Node, to: SocketAddr) -> bool {
    lab.in_netns(from, move || TcpStream::connect_timeout(&to, WAIT).is_ok())
        .unwrap()
}

fn sa(ip: std::net::Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

#[test]
fn real_packets_through_the_generated_rules() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let policy = firewall::generate(&loaded(""));
    apply_in_box(&lab, &policy.table.to_nft()).unwrap();
    assert!(current(&lab).unwrap().contains("chain forward"));

    // Phone -> provider on the profile's services: allowed (forwarded, masqueraded).
    for port in [5060, 10000, 3478] {
        let rx = udp_in(&lab, Node::Provider, port);
        assert!(
            udp_passes(&lab, Node::Phone, sa(addr::PROVIDER, port), &rx),
            "udp {port} to the provider"
        );
    }
    let stun_tcp = lab
        .in_netns(Node::Provider, || TcpListener::bind("0.0.0.0:3478"))
        .unwrap()
        .unwrap();
    assert!(
        tcp_connects(&lab, Node::Phone, sa(addr::PROVIDER, 3478)),
        "STUN over TCP to the provider"
    );
    drop(stun_tcp);
    // ... but not on a port the profile does not name, and not to anyone else.
    let rx = udp_in(&lab, Node::Provider, 9999);
    assert!(
        !udp_passes(&lab, Node::Phone, sa(addr::PROVIDER, 9999), &rx),
        "unlisted port to the provider"
    );
    let rx = udp_in(&lab, Node::Stranger, 5060);
    assert!(
        !udp_passes(&lab, Node::Phone, sa(addr::STRANGER, 5060), &rx),
        "SIP to a stranger"
    );

    // The phone reaches the box's own services only: SIP yes, SSH no.
    let sip = udp_in(&lab, Node::Box, 5060);
    assert!(udp_passes(&lab, Node::Phone, sa(addr::BOX_LAN, 5060), &sip));
    let ssh = lab
        .in_netns(Node::Box, || TcpListener::bind("0.0.0.0:22"))
        .unwrap()
        .unwrap();
    assert!(
        !tcp_connects(&lab, Node::Phone, sa(addr::BOX_LAN, 22)),
        "SSH from the voice LAN"
    );
    // SSH from the management network (here the WAN side, config management.ssh_from).
    assert!(
        tcp_connects(&lab, Node::Isp, sa(addr::BOX_WAN, 22)),
        "SSH from ssh_from"
    );
    drop(ssh);

    // Unsolicited traffic from the WAN side that is not the provider gets nothing: to the
    // box's SIP port, and (with a route the router would not have) to the phone.
    assert!(
        !udp_passes(&lab, Node::Isp, sa(addr::BOX_WAN, 5060), &sip),
        "SIP from a WAN stranger"
    );
    lab.run_ok(
        Node::Isp,
        &["ip", "route", "add", "10.100.0.0/24", "via", "10.200.0.2"],
    )
    .unwrap();
    let phone_rx = udp_in(&lab, Node::Phone, 4000);
    assert!(
        !udp_passes(&lab, Node::Isp, sa(addr::PHONE, 4000), &phone_rx),
        "WAN to the voice LAN"
    );
    // And from the internet stranger: nothing reaches the box (router NAT and box rules).
    assert!(!udp_passes(
        &lab,
        Node::Stranger,
        sa(addr::ISP_WAN, 5060),
        &sip
    ));

    // The box's own UDP flow to the provider carries the profile's 300 s timeout, no helper.
    let prov = udp_in(&lab, Node::Provider, 5060);
    assert!(udp_passes(&lab, Node::Box, sa(addr::PROVIDER, 5060), &prov));
    let ct = lab
        .run_ok(
            Node::Box,
            &[
                "conntrack",
                "-L",
                "-p",
                "udp",
                "--dport",
                "5060",
                "-d",
                "198.51.100.10",
            ],
        )
        .unwrap();
    let line = ct
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no conntrack entry: {ct}"));
    let secs: u64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!((290..=300).contains(&secs), "timeout {secs} in {line}");
    assert!(
        !ct.contains("helper="),
        "a conntrack helper is attached: {ct}"
    );

    // An established flow survives a re-apply: reply traffic still reaches the phone.
    let phone = udp_in(&lab, Node::Phone, 4001);
    let prov = udp_in(&lab, Node::Provider, 10000);
    phone.send_to(b"hello", sa(addr::PROVIDER, 10000)).unwrap();
    let mut buf = [0u8; 16];
    let (_, from) = prov.recv_from(&mut buf).unwrap();
    let newer = firewall::generate(&loaded("turn: {enabled: true}\n"))
        .table
        .to_nft();
    apply_in_box(&lab, &newer).unwrap();
    prov.send_to(b"reply", from).unwrap();
    let (n, _) = phone.recv_from(&mut buf).expect("reply after re-apply");
    assert_eq!(&buf[..n], b"reply");
}

#[test]
fn failed_apply_leaves_the_old_rules_and_unconfirmed_apply_rolls_back() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let good = firewall::generate(&loaded("")).table.to_nft();
    apply_in_box(&lab, &good).unwrap();
    let before = current(&lab).unwrap();

    // An invalid element: nft -c rejects it, nothing changes.
    let bad = good.replace("198.51.100.0/24", "198.51.100.0/33");
    let err = apply_in_box(&lab, &bad).unwrap_err();
    assert!(
        format!("{err:#}").contains("running one is untouched"),
        "{err:#}"
    );
    assert_eq!(current(&lab).unwrap(), before);

    // Apply with a confirmation deadline and do not confirm: the old rules come back.
    let newer = firewall::generate(&loaded("turn: {enabled: true}\n"))
        .table
        .to_nft();
    let (g, n) = (good.clone(), newer.clone());
    let (during, after) = lab
        .in_netns(Node::Box, move || {
            // A runtime on this thread, so the rollback task also runs inside the box.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let h = firewall::FirewallHandle::default();
                h.apply(&g, None).unwrap();
                h.apply(&n, Some(Duration::from_millis(500))).unwrap();
                let during = firewall::apply::current().unwrap().unwrap();
                assert!(h.state().0, "pending confirmation");
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let after = firewall::apply::current().unwrap().unwrap();
                assert!(!h.state().0);
                assert!(h.state().1.contains("rolled back"), "{}", h.state().1);
                // Confirmed in time: it stays.
                h.apply(&n, Some(Duration::from_millis(500))).unwrap();
                assert!(h.confirm());
                tokio::time::sleep(Duration::from_millis(1000)).await;
                assert!(firewall::apply::current()
                    .unwrap()
                    .unwrap()
                    .contains("TURN relayed media"));
                (during, after)
            })
        })
        .unwrap();
    assert!(during.contains("TURN relayed media"));
    assert!(
        !after.contains("TURN relayed media"),
        "rolled back to the first ruleset"
    );
    assert_eq!(
        after
            .lines()
            .filter(|l| !l.contains("counter packets"))
            .collect::<Vec<_>>(),
        before
            .lines()
            .filter(|l| !l.contains("counter packets"))
            .collect::<Vec<_>>()
    );
}
