use std::time::Duration;

use super::*;
use crate::packet::tests::{rtcp_rr, rtp_packet};
use crate::sdp::{describe, parse, tests as sdps};
use crate::MediaSettings;

const PHONE: &str = "10.100.0.50:11800";
const PROVIDER: &str = "198.51.100.10:16384";
const PROVIDER_NAT: &str = "198.51.100.10:40000";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn policy() -> Arc<Policy> {
    let mut s = MediaSettings::defaults();
    s.lan_network = "10.100.0.0/24".parse().unwrap();
    s.provider_networks = vec!["198.51.100.0/24".parse().unwrap()];
    Arc::new(Policy::new(&s))
}

fn desc(sdp: &str) -> MediaDesc {
    describe(&parse(&sdps::crlf(sdp)).unwrap()).remove(0)
}

/// A stream with the phone's offer and the provider's answer applied.
fn answered(t: Instant) -> Stream {
    let offer = desc(sdps::YEALINK);
    let mut s = Stream::new(1, 0, &offer, [20000, 30000], policy(), t);
    s.describe(Side::Lan, &offer, t);
    s.describe(Side::Wan, &desc(sdps::PROVIDER_ANSWER), t);
    s
}

fn pcmu(seq: u16) -> Vec<u8> {
    rtp_packet(0, seq, u32::from(seq) * 160, 0x1234, 160)
}

fn fwd(side: Side, socket: Socket, to: &str) -> Option<Forward> {
    Some(Forward {
        side,
        socket,
        to: sa(to),
    })
}

#[test]
fn before_latching_media_goes_to_the_sdp_address() {
    let t = Instant::now();
    let mut s = answered(t);
    assert_eq!(
        s.on_packet(t, Side::Lan, Socket::Rtp, sa(PHONE), &pcmu(1)),
        fwd(Side::Wan, Socket::Rtp, PROVIDER)
    );
    assert_eq!(
        s.on_packet(
            t,
            Side::Lan,
            Socket::Rtcp,
            sa("10.100.0.50:11801"),
            &rtcp_rr(1)
        ),
        fwd(Side::Wan, Socket::Rtcp, "198.51.100.10:16385")
    );
    // The provider answers from behind its own NAT: latched, and the phone's media follows.
    assert_eq!(
        s.on_packet(t, Side::Wan, Socket::Rtp, sa(PROVIDER_NAT), &pcmu(1)),
        fwd(Side::Lan, Socket::Rtp, PHONE)
    );
    assert_eq!(
        s.on_packet(t, Side::Lan, Socket::Rtp, sa(PHONE), &pcmu(2)),
        fwd(Side::Wan, Socket::Rtp, PROVIDER_NAT)
    );
    let r = s.report();
    assert_eq!(r.wan.peer, Some(sa(PROVIDER_NAT)));
    assert!(r.wan.latched && r.lan.latched);
    assert_eq!(
        (r.lan.received.packets, r.lan.received.rtcp_packets),
        (2, 1)
    );
    assert_eq!((r.wan.forwarded, r.lan.forwarded), (3, 1));
}

#[test]
fn strangers_are_counted_and_dropped() {
    let t = Instant::now();
    let mut s = answered(t);
    // Not in the provider's networks: never latched, even first.
    assert_eq!(
        s.on_packet(t, Side::Wan, Socket::Rtp, sa("10.200.0.1:5000"), &pcmu(1)),
        None
    );
    assert_eq!(
        s.on_packet(t, Side::Lan, Socket::Rtp, sa("192.0.2.66:5000"), &pcmu(1)),
        None
    );
    s.on_packet(t, Side::Wan, Socket::Rtp, sa(PROVIDER), &pcmu(1))
        .unwrap();
    // Inside the provider's networks but not the latched peer, while it talks: dropped.
    let later = t + Duration::from_millis(1900);
    s.on_packet(later, Side::Wan, Socket::Rtp, sa(PROVIDER), &pcmu(2))
        .unwrap();
    assert_eq!(
        s.on_packet(
            later,
            Side::Wan,
            Socket::Rtp,
            sa("198.51.100.99:16384"),
            &pcmu(9)
        ),
        None
    );
    let r = s.report();
    assert_eq!((r.wan.dropped_foreign, r.lan.dropped_foreign), (2, 1));
    assert_eq!(
        r.wan.received.packets, 2,
        "dropped packets are not counted as media"
    );
    assert_eq!(r.wan.peer, Some(sa(PROVIDER)));
}

#[test]
fn relatch_only_after_the_peer_fell_silent() {
    let t = Instant::now();
    let mut s = answered(t);
    s.on_packet(t, Side::Lan, Socket::Rtp, sa(PHONE), &pcmu(1))
        .unwrap();
    let moved = "10.100.0.50:11900";
    let t1 = t + Duration::from_millis(1999);
    assert_eq!(
        s.on_packet(t1, Side::Lan, Socket::Rtp, sa(moved), &pcmu(2)),
        None
    );
    let t2 = t + Duration::from_secs(2);
    assert_eq!(
        s.on_packet(t2, Side::Lan, Socket::Rtp, sa(moved), &pcmu(3)),
        fwd(Side::Wan, Socket::Rtp, PROVIDER)
    );
    // The old port is now the stranger.
    assert_eq!(
        s.on_packet(t2, Side::Lan, Socket::Rtp, sa(PHONE), &pcmu(4)),
        None
    );
    // Media towards the phone follows the new port.
    assert_eq!(
        s.on_packet(t2, Side::Wan, Socket::Rtp, sa(PROVIDER), &pcmu(1)),
        fwd(Side::Lan, Socket::Rtp, moved)
    );
    let r = s.report();
    assert_eq!((r.lan.relatches, r.lan.dropped_foreign), (1, 2));

    // RTCP re-latches only to the host that sends the RTP.
    s.on_packet(
        t2,
        Side::Lan,
        Socket::Rtcp,
        sa("10.100.0.50:11901"),
        &rtcp_rr(1),
    )
    .unwrap();
    let t3 = t2 + Duration::from_secs(5);
    assert_eq!(
        s.on_packet(
            t3,
            Side::Lan,
            Socket::Rtcp,
            sa("10.100.0.77:11901"),
            &rtcp_rr(1)
        ),
        None
    );
    assert!(s
        .on_packet(
            t3,
            Side::Lan,
            Socket::Rtcp,
            sa("10.100.0.50:11903"),
            &rtcp_rr(1)
        )
        .is_some());
}

#[test]
fn a_new_sdp_address_unlatches() {
    let t = Instant::now();
    let mut s = answered(t);
    s.on_packet(t, Side::Wan, Socket::Rtp, sa(PROVIDER_NAT), &pcmu(1))
        .unwrap();
    // The provider re-offers from another media server.
    let moved = desc(&sdps::PROVIDER_ANSWER.replace("198.51.100.10", "198.51.100.20"));
    s.describe(Side::Wan, &moved, t);
    assert_eq!(
        s.on_packet(t, Side::Lan, Socket::Rtp, sa(PHONE), &pcmu(1)),
        fwd(Side::Wan, Socket::Rtp, "198.51.100.20:16384")
    );
    // The same address again (a session refresh) keeps the latch.
    s.on_packet(
        t,
        Side::Wan,
        Socket::Rtp,
        sa("198.51.100.20:40000"),
        &pcmu(2),
    )
    .unwrap();
    s.describe(Side::Wan, &moved, t);
    assert_eq!(
        s.on_packet(t, Side::Lan, Socket::Rtp, sa(PHONE), &pcmu(2)),
        fwd(Side::Wan, Socket::Rtp, "198.51.100.20:40000")
    );
}

#[test]
fn invalid_packets_never_latch() {
    let t = Instant::now();
    let mut s = answered(t);
    let mut v1 = pcmu(1);
    v1[0] = 0x40;
    let stun = [0u8, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0];
    for bad in [&v1[..], &stun[..], &pcmu(1)[..8], b"\x80"] {
        assert_eq!(s.on_packet(t, Side::Lan, Socket::Rtp, sa(PHONE), bad), None);
    }
    // RTP on the RTCP port is not RTCP.
    assert_eq!(
        s.on_packet(t, Side::Lan, Socket::Rtcp, sa(PHONE), &pcmu(1)),
        None
    );
    let r = s.report();
    assert_eq!(r.lan.dropped_invalid, 5);
    assert!(!r.lan.latched);
    assert_eq!(r.lan.received.packets, 0);
}

#[test]
fn dtmf_and_rtcp_pass_through_untouched() {
    let t = Instant::now();
    let mut s = answered(t);
    let event = rtp_packet(101 | 0x80, 2, 320, 0x1234, 4);
    assert!(s
        .on_packet(t, Side::Lan, Socket::Rtp, sa(PHONE), &event)
        .is_some());
    let r = s.report();
    assert_eq!(r.lan.received.payload_types, vec![101]);
}

#[test]
fn mux_sends_rtcp_on_the_rtp_port() {
    let t = Instant::now();
    let mut s = answered(t);
    s.set_mux(true);
    // RTCP arriving on the RTP port goes out of the RTP socket to the peer's RTP address.
    assert_eq!(
        s.on_packet(t, Side::Lan, Socket::Rtp, sa(PHONE), &rtcp_rr(1)),
        fwd(Side::Wan, Socket::Rtp, PROVIDER)
    );
    assert_eq!(s.report().lan.received.rtcp_packets, 1);
}

#[test]
fn zero_hold_stops_media_towards_the_holder() {
    let t = Instant::now();
    let mut s = answered(t);
    s.on_packet(t, Side::Lan, Socket::Rtp, sa(PHONE), &pcmu(1))
        .unwrap();
    let hold = desc(&sdps::YEALINK.replace("c=IN IP4 10.100.0.50", "c=IN IP4 0.0.0.0"));
    s.describe(Side::Lan, &hold, t);
    assert!(s.on_hold());
    assert_eq!(
        s.on_packet(t, Side::Wan, Socket::Rtp, sa(PROVIDER), &pcmu(1)),
        None
    );
    assert_eq!(s.report().lan.undeliverable, 1);
    // Resume: media flows to the (still latched) phone again.
    s.describe(Side::Lan, &desc(sdps::YEALINK), t);
    assert!(!s.on_hold());
    assert_eq!(
        s.on_packet(t, Side::Wan, Socket::Rtp, sa(PROVIDER), &pcmu(2)),
        fwd(Side::Lan, Socket::Rtp, PHONE)
    );
}

#[test]
fn t38_is_relayed_without_rtp_checks() {
    let t = Instant::now();
    let fax = desc(
        "v=0
        o=- 1 1 IN IP4 10.100.0.70
        s=-
        c=IN IP4 10.100.0.70
        t=0 0
        m=image 4004 udptl t38",
    );
    let mut s = Stream::new(2, 0, &fax, [20002, 30002], policy(), t);
    s.describe(Side::Lan, &fax, t);
    s.describe(
        Side::Wan,
        &desc(
            &sdps::PROVIDER_ANSWER
                .replace("m=audio 16384 RTP/AVP 0 101", "m=image 16384 udptl t38"),
        ),
        t,
    );
    assert_eq!(
        s.on_packet(
            t,
            Side::Lan,
            Socket::Rtp,
            sa("10.100.0.70:4004"),
            b"\x00\x01udptl"
        ),
        fwd(Side::Wan, Socket::Rtp, PROVIDER)
    );
    assert_eq!(s.report().lan.received.packets, 1);
}

#[test]
fn rtcp_reports_give_each_leg_its_round_trip_and_lower_the_mos() {
    use crate::rtcp::build::{rr, sr};
    let t = Instant::now();
    let mut s = answered(t);
    for seq in 1..=50 {
        let at = t + Duration::from_millis(20 * u64::from(seq));
        s.on_packet(at, Side::Lan, Socket::Rtp, sa(PHONE), &pcmu(seq));
    }
    let before = s.report().lan.received.r_factor.unwrap();
    assert_eq!(s.report().wan.rtt_ms, None);
    // The phone's SR goes out to the provider at t1; the provider's RR naming it comes back
    // 180 ms later, after holding it 100 ms (6553.6 units of 1/65536 s): 80 ms round trip.
    let t1 = t + Duration::from_secs(1);
    let phone_rtcp = sa("10.100.0.50:11801");
    assert!(s
        .on_packet(
            t1,
            Side::Lan,
            Socket::Rtcp,
            phone_rtcp,
            &sr(0x1234, 0x0001_0002, 0x0003_0000)
        )
        .is_some());
    let back = rr(0x9999, 0x0002_0003, 6554);
    let t2 = t1 + Duration::from_millis(180);
    assert!(s
        .on_packet(
            t2,
            Side::Wan,
            Socket::Rtcp,
            sa("198.51.100.10:16385"),
            &back
        )
        .is_some());
    let r = s.report();
    let rtt = r.wan.rtt_ms.unwrap();
    assert!((rtt - 80.0).abs() < 0.1, "{rtt}");
    assert_eq!(r.lan.rtt_ms, None, "no SR went to the phone");
    assert!(
        r.lan.received.r_factor.unwrap() < before,
        "delay counts in the R-factor"
    );
}

fn rules() -> KernelRules {
    KernelRules {
        after_packets: 3,
        idle: Duration::from_secs(5),
    }
}

/// `answered` with the box's addresses and `n` RTP packets each way from the SDP's peers.
fn flowing(t: Instant, n: u16) -> Stream {
    let mut s = answered(t);
    s.set_addresses(["10.100.0.1".parse().unwrap(), "10.200.0.2".parse().unwrap()]);
    for seq in 0..n {
        s.on_packet(t, Side::Lan, Socket::Rtp, sa(PHONE), &pcmu(seq));
        s.on_packet(t, Side::Wan, Socket::Rtp, sa(PROVIDER), &pcmu(seq));
    }
    s
}

#[test]
fn a_stream_goes_to_the_kernel_once_both_sides_are_latched_and_flowing() {
    let t = Instant::now();
    assert_eq!(answered(t).kernel_flow(t, rules()), None, "nothing latched");
    assert_eq!(
        flowing(t, 2).kernel_flow(t, rules()),
        None,
        "too few packets yet"
    );
    let mut s = answered(t);
    s.set_addresses(["10.100.0.1".parse().unwrap(), "10.200.0.2".parse().unwrap()]);
    for seq in 0..5 {
        s.on_packet(t, Side::Lan, Socket::Rtp, sa(PHONE), &pcmu(seq));
    }
    assert_eq!(s.kernel_flow(t, rules()), None, "one side only");

    let s = flowing(t, 3);
    let f = s.kernel_flow(t, rules()).expect("both sides latched");
    assert_eq!(f.ports, [20000, 30000]);
    assert_eq!(f.peers[0].to_string(), PHONE);
    assert_eq!(f.peers[1].to_string(), PROVIDER);
    assert_eq!(f.addresses[1].to_string(), "10.200.0.2");
    assert!(!f.mux);
    // A peer silent for `idle` brings it back.
    assert_eq!(s.kernel_flow(t + Duration::from_secs(5), rules()), None);
}

#[test]
fn hold_and_a_new_address_take_a_stream_out_of_the_kernel() {
    let t = Instant::now();
    let mut s = flowing(t, 3);
    assert!(s.kernel_flow(t, rules()).is_some());
    let hold = sdps::YEALINK.replace("a=sendrecv", "a=sendonly");
    s.describe(Side::Lan, &desc(&hold), t);
    assert!(s.on_hold());
    assert_eq!(s.kernel_flow(t, rules()), None, "on hold");

    let mut s = flowing(t, 3);
    let moved = sdps::PROVIDER_ANSWER.replace("16384", "16500");
    s.describe(Side::Wan, &desc(&moved), t);
    assert_eq!(
        s.kernel_flow(t, rules()),
        None,
        "the provider's leg unlatched"
    );
}

#[test]
fn kernel_counters_add_to_the_figures_and_keep_the_latch_alive() {
    let t = Instant::now();
    let mut s = flowing(t, 10);
    s.set_offloaded(t);
    // The kernel forwards 100 phone packets and 90 provider ones over 3 s.
    let t3 = t + Duration::from_secs(3);
    s.kernel_counts(t3, Side::Lan, 100, 100 * 172);
    s.kernel_counts(t3, Side::Wan, 90, 90 * 172);
    assert_eq!(s.last_activity(), t3);
    let r = s.report();
    assert!(r.kernel);
    assert_eq!(r.lan.received.packets, 110);
    assert_eq!(r.wan.received.packets, 100);
    assert_eq!(
        r.wan.forwarded, 110,
        "phone packets forwarded to the provider"
    );
    assert_eq!(r.lan.received.lost, 0);
    // A stranger within the provider's networks while the provider's RTP is in the kernel:
    // its latch counts as alive from the counters, so no hijack.
    let t4 = t3 + Duration::from_millis(2500);
    assert_eq!(
        s.on_packet(t4, Side::Wan, Socket::Rtp, sa(PROVIDER_NAT), &pcmu(500)),
        None
    );
    // Withdrawn: the final counts stay, and the relay sees the sequence continue (one lost
    // while in the kernel: sequence 10..=109 came through the kernel, 111 next).
    let t5 = t4 + Duration::from_millis(100);
    s.kernel_withdrawn(t5, [Some((100, 100 * 172)), None]);
    assert!(!s.offloaded());
    s.on_packet(t5, Side::Lan, Socket::Rtp, sa(PHONE), &pcmu(111));
    let r = s.report();
    assert!(!r.kernel);
    assert_eq!(r.lan.received.packets, 111);
    assert_eq!(r.lan.received.lost, 1, "sequence 110 never arrived");
    assert_eq!(r.wan.received.packets, 100);
}

#[test]
fn in_the_kernel_each_party_s_reports_keep_the_other_direction_current() {
    use crate::rtcp::build::rr_loss;
    use crate::stats::Source;
    let t = Instant::now();
    let mut s = flowing(t, 10);
    s.set_offloaded(t);
    let t3 = t + Duration::from_secs(3);
    s.kernel_counts(t3, Side::Lan, 150, 150 * 172);
    s.kernel_counts(t3, Side::Wan, 150, 150 * 172);
    // The provider reports on the phone's RTP (SSRC 0x1234): 4 lost, 40 units of jitter;
    // a block about another source changes nothing.
    let provider_rtcp = sa("198.51.100.10:16385");
    let mut rr = rr_loss(0x9999, 0x1234, 26, 4, 40);
    rr.extend(&rr_loss(0x9999, 0x4321, 0, 1000, 8000)[8..]);
    rr[0] = 0x82;
    rr[3] = 13;
    assert!(s
        .on_packet(t3, Side::Wan, Socket::Rtcp, provider_rtcp, &rr)
        .is_some());
    let r = s.report();
    assert!(r.kernel);
    let lan = &r.lan.received;
    assert_eq!((lan.lost, lan.loss_source), (4, Source::Rtcp));
    assert_eq!((lan.jitter_ms, lan.jitter_source), (5.0, Source::Rtcp));
    assert_eq!(lan.far_end.as_ref().unwrap().fraction_lost_percent, 10.16);
    assert_eq!(lan.packets, 160, "packet counts stay the kernel's");
    let wan = &r.wan.received;
    assert_eq!(
        (wan.lost, wan.loss_source, wan.far_end.clone()),
        (0, Source::Relay, None)
    );
    assert_eq!(r.wan.rtt_ms, None);

    // With rtcp-mux the same report arrives on the RTP port and counts the same way.
    let mut s = flowing(t, 10);
    s.set_mux(true);
    s.set_offloaded(t);
    assert!(s
        .on_packet(
            t3,
            Side::Lan,
            Socket::Rtp,
            sa(PHONE),
            &rr_loss(0x1234, 0x1234, 0, 2, 16)
        )
        .is_some());
    let wan = s.report().wan.received;
    assert_eq!(
        (wan.lost, wan.jitter_ms, wan.jitter_source),
        (2, 2.0, Source::Rtcp)
    );
}
