use std::net::Ipv4Addr;
use std::time::Duration;

use crate::agent::{Agent, Received, FAST_COUNT};
use crate::frame::{self, Advert, Application, NetworkPolicy, ParseError};

fn voice(tagged: bool, vlan: u16) -> NetworkPolicy {
    NetworkPolicy {
        application: Application::Voice,
        unknown: false,
        tagged,
        vlan,
        priority: 5,
        dscp: 46,
    }
}

fn advert() -> Advert {
    Advert {
        mac: [0x02, 0x00, 0x00, 0x00, 0x00, 0x01],
        port: "lan0".into(),
        port_description: String::new(),
        system_name: "gp".into(),
        system_description: String::new(),
        management: Some((Ipv4Addr::new(10, 100, 0, 1), 7)),
        policies: vec![
            voice(true, 100),
            NetworkPolicy {
                application: Application::VoiceSignaling,
                priority: 3,
                dscp: 24,
                ..voice(true, 100)
            },
        ],
    }
}

fn hex(s: &str) -> Vec<u8> {
    let d: String = s
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .flat_map(|l| l.chars().filter(|c| c.is_ascii_hexdigit()))
        .collect();
    (0..d.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&d[i..i + 2], 16).unwrap())
        .collect()
}

/// Worked out by hand from IEEE 802.1AB-2016 clause 8 and TIA-1057 clause 10.
#[test]
fn the_frame_is_byte_exact() {
    let expected = hex(
        "0180c200000e 020000000001 88cc
         0207 04 020000000001            # Chassis ID: type 1 len 7, subtype MAC
         0405 05 6c616e30                # Port ID: type 2 len 5, subtype ifname, lan0
         0602 0078                       # TTL: type 3 len 2, 120 s
         0a02 6770                       # System Name: type 5 len 2, gp
         0e04 0010 0010                  # System Capabilities: router, enabled router
         100c 05 01 0a640001 02 00000007 00   # Management Address: IPv4 10.100.0.1, ifIndex 7
         fe07 0012bb 01 0003 04          # LLDP-MED Capabilities: caps+policy, network connectivity
         fe08 0012bb 02 01 40c96e        # Network Policy: Voice, T=1, VLAN 100, prio 5, DSCP 46
         fe08 0012bb 02 02 40c8d8        # Network Policy: Voice Signaling, T=1, VLAN 100, prio 3, DSCP 24
         0000                            # End",
    );
    assert_eq!(frame::encode(&advert(), 120), expected);
}

#[test]
fn untagged_policy_says_vlan_0_and_keeps_dscp() {
    let mut a = advert();
    a.policies = vec![voice(false, 0)];
    let f = frame::encode(&a, 120);
    // Voice, T=0, VLAN 0, priority 5, DSCP 46: 0x00016e.
    let tail = hex("fe08 0012bb 02 01 00016e 0000");
    assert!(f.ends_with(&tail), "{f:02x?}");
}

#[test]
fn encoded_frames_parse_back() {
    let n = frame::parse(&frame::encode(&advert(), 120)).unwrap();
    assert_eq!(n.chassis, "02:00:00:00:00:01");
    assert_eq!(n.port, "lan0");
    assert_eq!(n.ttl, 120);
    assert_eq!(n.system_name.as_deref(), Some("gp"));
    assert_eq!(n.capabilities, Some(frame::CAP_ROUTER));
    assert_eq!(n.med_device_type, Some(4));
    assert_eq!(n.policies, advert().policies);
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let good = frame::encode(&advert(), 120);
    assert_eq!(frame::parse(&good[..10]), Err(ParseError::NotLldp));
    let mut other = good.clone();
    other[12] = 0x08;
    assert_eq!(frame::parse(&other), Err(ParseError::NotLldp));
    // Cut inside the Port ID TLV.
    assert!(matches!(
        frame::parse(&good[..27]),
        Err(ParseError::Truncated { kind: 2, .. })
    ));
    // TTL first.
    let mut swapped = good[..14].to_vec();
    swapped.extend_from_slice(&hex("0602 0078 0207 04020000000001"));
    assert!(matches!(
        frame::parse(&swapped),
        Err(ParseError::Mandatory(_))
    ));
    // Every prefix and every single-byte corruption: no panic.
    for n in 0..good.len() {
        let _ = frame::parse(&good[..n]);
        for x in [0x00, 0xff, 0x7f] {
            let mut bad = good.clone();
            bad[n] = x;
            let _ = frame::parse(&bad);
        }
    }
}

#[test]
fn fast_start_then_the_interval() {
    let mut a = Agent::new(advert(), Duration::from_secs(30), 0);
    assert_eq!(a.ttl(), 120);
    let mut times = Vec::new();
    let mut t = 0;
    while t < 100_000 {
        let p = a.poll(t);
        if p.frame.is_some() {
            times.push(t);
        }
        assert!(p.next > t);
        t = p.next;
    }
    assert_eq!(times, vec![0, 1000, 2000, 3000, 33_000, 63_000, 93_000]);
    // Nothing is due between wake-ups.
    assert_eq!(a.poll(93_500).frame, None);
}

#[test]
fn a_new_med_neighbour_restarts_fast_start_and_expires() {
    let mut a = Agent::new(advert(), Duration::from_secs(30), 0);
    for t in [0, 1000, 2000, 3000] {
        assert!(a.poll(t).frame.is_some());
    }
    assert_eq!(a.poll(10_000).next, 33_000);
    // A phone: chassis/port of its own, LLDP-MED class 3, TTL 20 s.
    let mut phone = advert();
    phone.mac = [0x80, 0x5e, 0xc0, 1, 2, 3];
    phone.port = "eth0".into();
    let f = frame::encode(&phone, 20);
    assert!(matches!(a.receive(10_000, &f), Ok(Received::New(_))));
    let sent: Vec<u64> = (10_000..14_500)
        .step_by(500)
        .filter(|t| a.poll(*t).frame.is_some())
        .collect();
    assert_eq!(sent.len(), FAST_COUNT as usize, "{sent:?}");
    // The same phone again: no second fast start.
    assert_eq!(a.receive(15_000, &f), Ok(Received::Refreshed));
    assert_eq!(a.neighbours(15_000).len(), 1);
    assert_eq!(a.neighbours(15_000)[0].expires_in, 20);
    // Its advertisement runs out 20 s after the last frame, and poll wakes for it.
    assert_eq!(a.poll(20_000).next, 35_000);
    assert!(a.neighbours(35_000).is_empty());
    // A shutdown frame removes it at once.
    a.receive(40_000, &f).unwrap();
    assert!(matches!(
        a.receive(41_000, &frame::encode(&phone, 0)),
        Ok(Received::Gone(_))
    ));
    assert!(a.neighbours(41_000).is_empty());
}

#[test]
fn a_changed_advert_goes_out_at_once_and_shutdown_has_ttl_0() {
    let mut a = Agent::new(advert(), Duration::from_secs(30), 0);
    for t in [0, 1000, 2000, 3000] {
        a.poll(t);
    }
    a.set_advert(advert(), Duration::from_secs(30), 5000);
    assert_eq!(a.poll(5000).frame, None, "an unchanged advert waits");
    let mut b = advert();
    b.policies[0].vlan = 200;
    a.set_advert(b, Duration::from_secs(30), 6000);
    let f = a.poll(6000).frame.expect("sent at once");
    assert_eq!(frame::parse(&f).unwrap().policies[0].vlan, 200);
    assert_eq!(frame::parse(&a.shutdown_frame()).unwrap().ttl, 0);
}

#[test]
fn policies_follow_the_configuration() {
    let base = "interfaces:\n  wan: {device: wan0}\n  lan: {device: lan0, address: 10.100.0.1/24}\nprovider: {profile: lab}\n";
    let load = |t: &str| {
        config::load_str(std::path::Path::new("x.yaml"), t, &[])
            .unwrap()
            .config
    };
    let c = load(base);
    assert_eq!(
        crate::policies(&c),
        vec![
            voice(false, 0),
            NetworkPolicy {
                application: Application::VoiceSignaling,
                priority: 3,
                dscp: 24,
                ..voice(false, 0)
            }
        ]
    );
    let c = load(
        &(base.replace("device: lan0,", "device: lan0, vlan: 100,")
            + "lldp: {signaling: false, voice_dscp: 40}\n"),
    );
    assert_eq!(
        crate::policies(&c),
        vec![NetworkPolicy {
            dscp: 40,
            ..voice(true, 100)
        }]
    );
    let a = crate::advert(&c, [2, 0, 0, 0, 0, 9], 3);
    assert_eq!(
        (a.port.as_str(), a.system_name.as_str()),
        ("lan0", "voxgate")
    );
}
