use super::*;

fn flow(provider_port: u16) -> Flow {
    Flow {
        addresses: ["10.100.0.1".parse().unwrap(), "10.200.0.2".parse().unwrap()],
        ports: [20000, 30000],
        peers: [
            "10.100.0.50:4000".parse().unwrap(),
            SocketAddrV4::new("198.51.100.10".parse().unwrap(), provider_port),
        ],
        mux: false,
        events: 1 << 101,
    }
}

#[test]
fn installs_wanted_streams_once_and_withdraws_the_rest() {
    let t = Instant::now();
    let mut o = Offloader::default();
    let changes = o.plan(t, &[(1, Some(flow(16384))), (2, None)]);
    assert_eq!(
        changes,
        vec![Change::Install {
            id: 1,
            slot: 0,
            flow: flow(16384)
        }]
    );
    assert!(o.is_installed(1) && !o.is_installed(2));
    assert!(o.plan(t, &[(1, Some(flow(16384))), (2, None)]).is_empty());

    // The provider's NAT moved (a re-latch): withdrawn first, installed again only once the
    // kernel let go of it, under a slot that cannot clash.
    let changes = o.plan(t, &[(1, Some(flow(40000))), (2, Some(flow(16500)))]);
    assert_eq!(
        changes,
        vec![
            Change::Withdraw {
                id: 1,
                slot: 0,
                flow: flow(16384)
            },
            Change::Install {
                id: 2,
                slot: 1,
                flow: flow(16500)
            }
        ]
    );
    assert!(o.is_withdrawing(1));
    assert!(o
        .plan(t, &[(1, Some(flow(40000))), (2, Some(flow(16500)))])
        .is_empty());
    o.withdrawn(1);
    assert_eq!(
        o.plan(t, &[(1, Some(flow(40000))), (2, Some(flow(16500)))]),
        vec![Change::Install {
            id: 1,
            slot: 0,
            flow: flow(40000)
        }]
    );

    // Stream 2 is gone (its call ended or timed out): withdrawn.
    assert_eq!(
        o.plan(t, &[(1, Some(flow(40000)))]),
        vec![Change::Withdraw {
            id: 2,
            slot: 1,
            flow: flow(16500)
        }]
    );
    assert_eq!(o.installed(), 1);
}

#[test]
fn a_refused_stream_waits_before_it_is_tried_again() {
    let t = Instant::now();
    let mut o = Offloader::default();
    assert_eq!(o.plan(t, &[(7, Some(flow(16384)))]).len(), 1);
    o.failed(t, 7);
    assert!(!o.is_installed(7));
    assert!(o
        .plan(t + Duration::from_secs(29), &[(7, Some(flow(16384)))])
        .is_empty());
    assert_eq!(
        o.plan(t + RETRY_AFTER, &[(7, Some(flow(16384)))]),
        vec![Change::Install {
            id: 7,
            slot: 0,
            flow: flow(16384)
        }]
    );
}

#[test]
fn commands_name_the_peers_ports_and_marks() {
    let f = flow(16384);
    let b = render(&[Change::Install {
        id: 3,
        slot: 5,
        flow: f,
    }]);
    assert!(b.read.is_empty() && b.last.is_empty());
    // Phone -> provider: keyed by the phone's address and port and the box's LAN port,
    // rewritten to the provider, marked, then sourced from the box's WAN address and port.
    assert!(b.first.contains("add rule ip voxgate_media s3_lan_in notrack counter name \"s3_lan\" ip daddr set 198.51.100.10 udp dport set 16384 meta mark set 0x7660000a accept\n"), "{}", b.first);
    assert!(b.first.contains(
        "add rule ip voxgate_media s3_lan_out ip saddr set 10.200.0.2 udp sport set 30000 ip dscp set ef accept\n"
    ));
    assert!(b.first.contains(
        "add element ip voxgate_media streams { 10.100.0.50 . 4000 . 20000 : jump s3_lan_in }\n"
    ));
    assert!(b.first.contains(
        "add element ip voxgate_media streams { 198.51.100.10 . 16384 . 30000 : jump s3_wan_in }\n"
    ));
    assert!(b
        .first
        .contains("add element ip voxgate_media out { 0x7660000b : jump s3_wan_out }\n"));
    assert!(!b.first.contains("200-206"), "RTCP has its own port");
    assert!(b
        .first
        .contains("add rule ip voxgate_media s3_lan_in @th,73,7 { 101 } return\n"));
    // Chains before the elements that jump to them.
    assert!(
        b.first.find("add chain ip voxgate_media s3_wan_out") < b.first.find("out { 0x7660000b")
    );

    let mux = install_one(3, 5, &Flow { mux: true, ..f });
    assert!(mux.contains("add rule ip voxgate_media s3_wan_in @th,72,8 200-206 return\n"));

    let b = render(&[Change::Withdraw {
        id: 3,
        slot: 5,
        flow: f,
    }]);
    assert_eq!(
        b.first,
        "delete element ip voxgate_media streams { 10.100.0.50 . 4000 . 20000 }\n\
         delete element ip voxgate_media streams { 198.51.100.10 . 16384 . 30000 }\n"
    );
    assert_eq!(b.read, vec![(3, Side::Lan), (3, Side::Wan)]);
    assert!(b.last.contains("delete counter ip voxgate_media s3_wan\n"));
    assert!(b.last.contains("delete chain ip voxgate_media s3_lan_in\n"));
}

#[test]
fn counters_parse_from_nft_json() {
    let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"counter": {"family": "ip", "name": "s3_lan", "table": "voxgate_media", "handle": 4, "packets": 250, "bytes": 43000}},
        {"counter": {"family": "ip", "name": "s3_wan", "table": "voxgate_media", "handle": 5, "packets": 0, "bytes": 0}}]}"#;
    let c = parse_counters(json).unwrap();
    assert_eq!(c["s3_lan"], (250, 43000));
    assert_eq!(c["s3_wan"], (0, 0));
    assert!(parse_counters("not json").is_err());
}

#[test]
fn the_table_guards_forwarding_only_when_asked() {
    assert!(table(true).contains("chain forward"));
    assert!(!table(false).contains("chain forward"));
    assert!(table(false).starts_with("table ip voxgate_media\ndelete table ip voxgate_media\n"));
}
