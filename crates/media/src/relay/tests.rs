use super::*;
use crate::packet::tests::rtp_packet;
use crate::sdp::tests::{crlf, PROVIDER_ANSWER, YEALINK};
use config::types::PortRange;

fn settings() -> MediaSettings {
    let mut s = MediaSettings::defaults();
    s.lan_address = "10.100.0.1".parse().unwrap();
    s.lan_network = "10.100.0.0/24".parse().unwrap();
    s.wan_address = Some("10.200.0.2".parse().unwrap());
    s.provider_networks = vec!["198.51.100.0/24".parse().unwrap()];
    s.lan_ports = PortRange {
        first: 20000,
        last: 20009,
    };
    s.wan_ports = PortRange {
        first: 30000,
        last: 30009,
    };
    s.timeout = Duration::from_secs(60);
    s
}

fn ok(_: Side, _: u16) -> io::Result<()> {
    Ok(())
}

fn offer(r: &mut Relay, t: Instant, id: &str, from: Side, sdp: &str) -> String {
    let out = r.offer(t, id, from, &crlf(sdp), &mut ok).unwrap();
    String::from_utf8(out.sdp).unwrap()
}

fn answer(r: &mut Relay, t: Instant, id: &str, from: Side, sdp: &str) -> String {
    let out = r.answer(t, id, from, &crlf(sdp)).unwrap();
    String::from_utf8(out.sdp).unwrap()
}

fn pcmu(seq: u16) -> Vec<u8> {
    rtp_packet(0, seq, u32::from(seq) * 160, 0x1234, 160)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A phone's call to the provider, offered and answered at `t`.
fn call(r: &mut Relay, t: Instant, id: &str) -> (String, String) {
    let to_wan = offer(r, t, id, Side::Lan, YEALINK);
    let to_lan = answer(r, t, id, Side::Wan, PROVIDER_ANSWER);
    (to_wan, to_lan)
}

#[test]
fn offer_answer_and_media_both_ways() {
    let t = Instant::now();
    let mut r = Relay::new(settings()).unwrap();
    r.set_public_address(Some("203.0.113.2".parse().unwrap()));
    let (to_wan, to_lan) = call(&mut r, t, "c1");
    assert!(to_wan.contains("c=IN IP4 203.0.113.2\r\n"));
    assert!(to_wan.contains("m=audio 30000 RTP/AVP 0 8 18 9 101\r\n"));
    assert!(to_lan.contains("o=FreeSWITCH 1700000000 1700000001 IN IP4 10.100.0.1\r\n"));
    assert!(to_lan.contains("m=audio 20000 RTP/AVP 0 101\r\n"));
    assert_eq!(
        (r.ports_in_use(Side::Lan), r.ports_in_use(Side::Wan)),
        (1, 1)
    );

    let fwd = r.on_packet(t, Side::Lan, 20000, sa("10.100.0.50:11800"), &pcmu(1));
    assert_eq!(
        fwd,
        Some(Forward {
            side: Side::Wan,
            socket: Socket::Rtp,
            to: sa("198.51.100.10:16384")
        })
    );
    let back = r.on_packet(t, Side::Wan, 30000, sa("198.51.100.10:16384"), &pcmu(1));
    assert_eq!(back.unwrap().to, sa("10.100.0.50:11800"));
    // RTCP port of the pair.
    let rr = crate::packet::tests::rtcp_rr(9);
    let f = r.on_packet(t, Side::Wan, 30001, sa("198.51.100.10:16385"), &rr);
    assert_eq!(
        f,
        Some(Forward {
            side: Side::Lan,
            socket: Socket::Rtcp,
            to: sa("10.100.0.50:11801")
        })
    );
    assert_eq!(
        r.on_packet(t, Side::Wan, 30002, sa("198.51.100.10:1"), &pcmu(1)),
        None
    );

    let snap = r.snapshot(t);
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].state, CallState::Active);
    assert_eq!(snap[0].streams[0].lan.received.packets, 1);
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json[0]["streams"][0]["wan"]["port"], 30000);
    assert_eq!(json[0]["streams"][0]["lan"]["direction"], "sendrecv");
    // The log's one-line form: both peers, what came from each (RTP and RTCP went to the
    // phone), drops only when there were.
    assert_eq!(
        snap[0].to_string(),
        "audio#0: lan 10.100.0.50:11800 rx 1 lost 0 (0.0%) jitter 0.0 ms mos 4.4 tx 2 \
         | wan 198.51.100.10:16384 rx 1 lost 0 (0.0%) jitter 0.0 ms mos 4.4 tx 1"
    );
}

#[test]
fn hold_and_reoffers_keep_ports() {
    let t = Instant::now();
    let mut r = Relay::new(settings()).unwrap();
    call(&mut r, t, "c1");
    // The phone holds: same ports both ways, the provider sees a=sendonly.
    let hold = YEALINK
        .replace("20003 20003", "20003 20004")
        .replace("a=sendrecv", "a=sendonly");
    let to_wan = offer(&mut r, t, "c1", Side::Lan, &hold);
    assert!(to_wan.contains("m=audio 30000 ") && to_wan.contains("a=sendonly"));
    let to_lan = answer(
        &mut r,
        t,
        "c1",
        Side::Wan,
        &PROVIDER_ANSWER.replace("a=ptime:20", "a=ptime:20\n a=recvonly"),
    );
    assert!(to_lan.contains("m=audio 20000 ") && to_lan.contains("a=recvonly"));
    assert_eq!(r.snapshot(t)[0].state, CallState::Held);
    // The provider re-offers (its re-INVITE): still the same ports, now rewritten towards LAN.
    let to_lan = offer(&mut r, t, "c1", Side::Wan, PROVIDER_ANSWER);
    assert!(to_lan.contains("m=audio 20000 RTP/AVP 0 101\r\n"));
    let to_wan = answer(&mut r, t, "c1", Side::Lan, YEALINK);
    assert!(to_wan.contains("m=audio 30000 "));
    assert_eq!(r.snapshot(t)[0].state, CallState::Active);
    assert_eq!(
        (r.ports_in_use(Side::Lan), r.ports_in_use(Side::Wan)),
        (1, 1)
    );
}

#[test]
fn added_and_rejected_media_lines() {
    let t = Instant::now();
    let mut r = Relay::new(settings()).unwrap();
    call(&mut r, t, "c1");
    // Re-offer adding video: audio keeps its pair, video gets a new one.
    let with_video = format!(
        "{}\n m=video 11802 RTP/AVP 96\n a=rtpmap:96 H264/90000",
        YEALINK.replace("20003 20003", "20003 20004")
    );
    let out = r
        .offer(t, "c1", Side::Lan, &crlf(&with_video), &mut ok)
        .unwrap();
    assert_eq!(out.opened.len(), 1);
    let sdp = String::from_utf8(out.sdp).unwrap();
    assert!(sdp.contains("m=audio 30000 ") && sdp.contains("m=video 30002 "));
    // The provider rejects video: its pair is closed and goes into quarantine.
    let reject = format!("{PROVIDER_ANSWER}\n m=video 0 RTP/AVP 96");
    let out = r.answer(t, "c1", Side::Wan, &crlf(&reject)).unwrap();
    assert_eq!(out.closed.len(), 1);
    let sdp = String::from_utf8(out.sdp).unwrap();
    assert!(sdp.contains("m=audio 20000 ") && sdp.contains("m=video 0 "));
    assert_eq!(r.ports_in_use(Side::Lan), 1);
    assert_eq!(r.snapshot(t)[0].streams.len(), 1);
    // The wrong number of lines in an answer is refused.
    assert!(matches!(
        r.answer(t, "c1", Side::Wan, &crlf(PROVIDER_ANSWER)),
        Err(MediaError::MediaCount {
            offered: 2,
            answered: 1
        })
    ));
}

#[test]
fn answers_need_an_offer_from_the_other_side() {
    let t = Instant::now();
    let mut r = Relay::new(settings()).unwrap();
    assert!(matches!(
        r.answer(t, "nope", Side::Wan, &crlf(PROVIDER_ANSWER)),
        Err(MediaError::UnknownCall(_))
    ));
    offer(&mut r, t, "c1", Side::Lan, YEALINK);
    assert!(matches!(
        r.answer(t, "c1", Side::Lan, &crlf(YEALINK)),
        Err(MediaError::NoOffer(_))
    ));
    assert!(matches!(
        r.offer(t, "c2", Side::Lan, b"garbage", &mut ok),
        Err(MediaError::Sdp(_))
    ));
    assert_eq!(r.calls(), 1, "a failed offer creates no call");
}

#[test]
fn release_quarantines_and_exhaustion_is_clean() {
    let t = Instant::now();
    let mut r = Relay::new(settings()).unwrap();
    // Five pairs per side.
    for i in 0..5 {
        offer(&mut r, t, &format!("c{i}"), Side::Lan, YEALINK);
    }
    assert!(matches!(
        r.offer(t, "c5", Side::Lan, &crlf(YEALINK), &mut ok),
        Err(MediaError::PortsExhausted(Side::Lan))
    ));
    let (report, closed) = r.release(t, "c0").unwrap();
    assert_eq!(report.call_id, "c0");
    assert_eq!(closed.len(), 1);
    assert!(r.release(t, "c0").is_none());
    assert_eq!(r.ports_in_use(Side::Lan), 4);
    // The freed pair is in quarantine for 30 s.
    assert!(r
        .offer(
            t + Duration::from_secs(29),
            "c5",
            Side::Lan,
            &crlf(YEALINK),
            &mut ok
        )
        .is_err());
    let to_wan = offer(
        &mut r,
        t + Duration::from_secs(30),
        "c5",
        Side::Lan,
        YEALINK,
    );
    assert!(to_wan.contains("m=audio 30000 "));
    // Packets to a released port go nowhere.
    r.release(t, "c1").unwrap();
    assert_eq!(
        r.on_packet(t, Side::Lan, 20002, sa("10.100.0.50:11800"), &pcmu(1)),
        None
    );
}

#[test]
fn ports_taken_by_others_are_skipped_and_failures_roll_back() {
    let t = Instant::now();
    let mut r = Relay::new(settings()).unwrap();
    let mut taken = |side: Side, port: u16| -> io::Result<()> {
        if side == Side::Wan && port == 30000 {
            Err(io::ErrorKind::AddrInUse.into())
        } else {
            Ok(())
        }
    };
    let out = r
        .offer(t, "c1", Side::Lan, &crlf(YEALINK), &mut taken)
        .unwrap();
    assert!(String::from_utf8(out.sdp)
        .unwrap()
        .contains("m=audio 30002 "));
    // Any other bind error fails the offer and gives the LAN pair back.
    let mut broken = |side: Side, _: u16| -> io::Result<()> {
        if side == Side::Wan {
            Err(io::ErrorKind::PermissionDenied.into())
        } else {
            Ok(())
        }
    };
    let lan_before = r.ports_in_use(Side::Lan);
    assert!(matches!(
        r.offer(t, "c2", Side::Lan, &crlf(YEALINK), &mut broken),
        Err(MediaError::Bind {
            side: Side::Wan,
            ..
        })
    ));
    assert_eq!(r.ports_in_use(Side::Lan), lan_before);
    assert_eq!(r.calls(), 1);
}

#[test]
fn silence_times_out_but_hold_does_not() {
    let t = Instant::now();
    let mut r = Relay::new(settings()).unwrap();
    call(&mut r, t, "active");
    call(&mut r, t, "held");
    offer(&mut r, t, "ringing", Side::Lan, YEALINK);
    let hold = YEALINK
        .replace("20003 20003", "20003 20004")
        .replace("a=sendrecv", "a=inactive");
    offer(&mut r, t, "held", Side::Lan, &hold);
    answer(&mut r, t, "held", Side::Wan, PROVIDER_ANSWER);

    // Media on "active" keeps it alive past the first minute.
    let port = r.snapshot(t)[0].streams[0].lan.port;
    let t50 = t + Duration::from_secs(50);
    r.on_packet(t50, Side::Lan, port, sa("10.100.0.50:11800"), &pcmu(1))
        .unwrap();
    assert!(r.poll(t + Duration::from_secs(60)).is_empty());

    let ended = r.poll(t50 + Duration::from_secs(60));
    assert_eq!(ended.len(), 1);
    let (
        MediaEvent::Ended {
            call_id,
            reason,
            report,
        },
        closed,
    ) = &ended[0]
    else {
        panic!("{:?}", ended[0].0)
    };
    assert_eq!(call_id, "active");
    assert_eq!(*reason, EndReason::Timeout { idle_secs: 60 });
    assert_eq!(report.streams[0].lan.received.packets, 1);
    assert_eq!(closed.len(), 1);
    assert_eq!(r.calls(), 2);

    // The held and the unanswered call last until the hold timeout.
    assert!(r.poll(t + Duration::from_secs(3599)).is_empty());
    let ended = r.poll(t + Duration::from_secs(3600));
    let mut ids: Vec<_> = ended
        .iter()
        .map(|(e, _)| match e {
            MediaEvent::Ended { call_id, .. } => call_id.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["held", "ringing"]);
    assert_eq!(r.calls(), 0);
    assert_eq!(r.ports_in_use(Side::Lan), 0);
}

#[test]
fn reconfigure_keeps_running_calls() {
    let t = Instant::now();
    let mut r = Relay::new(settings()).unwrap();
    call(&mut r, t, "c1");
    let mut s = settings();
    s.lan_ports = PortRange {
        first: 20000,
        last: 20003,
    };
    s.provider_networks = vec!["198.51.101.0/24".parse().unwrap()];
    r.reconfigure(s);
    // The running call's pair stays claimed: the one other pair is all that is left.
    assert!(offer(&mut r, t, "c2", Side::Lan, YEALINK).contains("m=audio 30002"));
    assert!(matches!(
        r.offer(t, "c3", Side::Lan, &crlf(YEALINK), &mut ok),
        Err(MediaError::PortsExhausted(Side::Lan))
    ));
    // The new provider networks apply to running streams.
    assert_eq!(
        r.on_packet(t, Side::Wan, 30000, sa("198.51.100.10:16384"), &pcmu(1)),
        None
    );
    assert!(r
        .on_packet(t, Side::Wan, 30000, sa("198.51.101.10:16384"), &pcmu(1))
        .is_some());
}

#[test]
fn offers_from_the_provider_side() {
    // An incoming call: the provider offers, the phone answers.
    let t = Instant::now();
    let mut r = Relay::new(settings()).unwrap();
    let to_lan = offer(&mut r, t, "in1", Side::Wan, PROVIDER_ANSWER);
    assert!(to_lan.contains("c=IN IP4 10.100.0.1\r\n") && to_lan.contains("m=audio 20000 "));
    let to_wan = answer(&mut r, t, "in1", Side::Lan, YEALINK);
    // No public address set: the WAN interface's own.
    assert!(to_wan.contains("c=IN IP4 10.200.0.2\r\n") && to_wan.contains("m=audio 30000 "));
    assert!(
        Relay::new(MediaSettings::defaults()).is_err(),
        "WAN address required"
    );
}
