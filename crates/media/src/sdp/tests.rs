use super::*;

/// SDP written with CRLF line ends from `lines` joined.
pub(crate) fn crlf(lines: &str) -> Vec<u8> {
    lines
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .flat_map(|l| [l, "\r\n"])
        .collect::<String>()
        .into_bytes()
}

/// A Yealink T4x offer (G.711, G.729, G.722, telephone-event).
pub(crate) const YEALINK: &str = "
    v=0
    o=- 20003 20003 IN IP4 10.100.0.50
    s=SDP data
    c=IN IP4 10.100.0.50
    t=0 0
    m=audio 11800 RTP/AVP 0 8 18 9 101
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:18 G729/8000
    a=fmtp:18 annexb=no
    a=rtpmap:9 G722/8000
    a=fmtp:101 0-15
    a=rtpmap:101 telephone-event/8000
    a=ptime:20
    a=sendrecv
";

/// A Poly VVX offer: session-level direction, G.722.1 at 16 kHz, event on PT 127.
const POLYCOM: &str = "
    v=0
    o=- 1624457461 1624457461 IN IP4 10.100.0.51
    s=Polycom IP Phone
    c=IN IP4 10.100.0.51
    t=0 0
    a=sendrecv
    m=audio 2222 RTP/AVP 9 102 0 8 18 127
    a=rtpmap:9 G722/8000
    a=rtpmap:102 G7221/16000
    a=fmtp:102 bitrate=32000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:18 G729/8000
    a=fmtp:18 annexb=no
    a=rtpmap:127 telephone-event/8000
";

/// A Snom D7xx offer with SRTP (SDES) over RTP/SAVP and RTCP-XR.
const SNOM: &str = "
    v=0
    o=root 1006614093 1006614093 IN IP4 10.100.0.52
    s=call
    c=IN IP4 10.100.0.52
    t=0 0
    m=audio 51520 RTP/SAVP 9 0 8 101
    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4
    a=rtpmap:9 g722/8000
    a=rtpmap:0 pcmu/8000
    a=rtpmap:8 pcma/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=ptime:20
    a=rtcp-xr:rcvr-rtt=all voip-metrics
    a=sendrecv
";

/// A softphone offer with ICE, rtcp-mux, explicit a=rtcp, BUNDLE and a video line.
const SOFTPHONE: &str = "
    v=0
    o=- 3941239842 2 IN IP4 10.100.0.60
    s=-
    t=0 0
    a=group:BUNDLE 0 1
    a=ice-options:trickle
    m=audio 50000 RTP/AVPF 111 0 101
    c=IN IP4 10.100.0.60
    a=rtcp:50001 IN IP4 10.100.0.60
    a=candidate:1 1 udp 2122260223 10.100.0.60 50000 typ host
    a=candidate:2 1 udp 1686052607 192.0.2.99 61000 typ srflx raddr 10.100.0.60 rport 50000
    a=ice-ufrag:F7gI
    a=ice-pwd:x9cml/YzichV2+XlhiMu8g
    a=mid:0
    a=rtcp-mux
    a=rtpmap:111 opus/48000/2
    a=fmtp:111 minptime=10;useinbandfec=1
    a=rtpmap:0 PCMU/8000
    a=rtpmap:101 telephone-event/8000
    a=end-of-candidates
    m=video 50002 RTP/AVPF 96
    c=IN IP4 10.100.0.60
    a=mid:1
    a=rtcp-mux
    a=rtpmap:96 VP8/90000
    a=rtcp-fb:96 nack pli
";

/// The provider's answer (FreeSWITCH-like), with an explicit RTCP address.
pub(crate) const PROVIDER_ANSWER: &str = "
    v=0
    o=FreeSWITCH 1700000000 1700000001 IN IP4 198.51.100.10
    s=FreeSWITCH
    c=IN IP4 198.51.100.10
    t=0 0
    m=audio 16384 RTP/AVP 0 101
    a=rtpmap:0 PCMU/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=ptime:20
    a=rtcp:16385 IN IP4 198.51.100.10
";

const WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

fn out(sdp: &str, ports: &[Option<u16>], origin: &mut Option<Origin>) -> String {
    let s = parse(&crlf(sdp)).unwrap();
    text(&rewrite(&s, &describe(&s), WAN, ports, origin))
}

#[test]
fn yealink_offer_is_rewritten_line_for_line() {
    let got = out(YEALINK, &[Some(30000)], &mut None);
    let want = crlf(
        "
        v=0
        o=- 20003 20003 IN IP4 203.0.113.2
        s=SDP data
        c=IN IP4 203.0.113.2
        t=0 0
        m=audio 30000 RTP/AVP 0 8 18 9 101
        a=rtpmap:0 PCMU/8000
        a=rtpmap:8 PCMA/8000
        a=rtpmap:18 G729/8000
        a=fmtp:18 annexb=no
        a=rtpmap:9 G722/8000
        a=fmtp:101 0-15
        a=rtpmap:101 telephone-event/8000
        a=ptime:20
        a=sendrecv
    ",
    );
    assert_eq!(got, text(&want));
}

#[test]
fn what_the_phones_say() {
    let s = parse(&crlf(YEALINK)).unwrap();
    let d = &describe(&s)[0];
    assert_eq!(d.rtp, Some("10.100.0.50:11800".parse().unwrap()));
    assert_eq!(d.rtcp, Some("10.100.0.50:11801".parse().unwrap()));
    assert_eq!(d.transport, Some(Transport::Rtp));
    assert_eq!(
        (d.mux, d.zero_hold, d.direction),
        (false, false, Direction::SendRecv)
    );
    let pts: Vec<(u8, u32, Codec)> = d
        .payloads
        .iter()
        .map(|(pt, i)| (*pt, i.clock, i.codec))
        .collect();
    assert_eq!(
        pts,
        vec![
            (0, 8000, Codec::G711),
            (8, 8000, Codec::G711),
            (18, 8000, Codec::G729),
            (9, 8000, Codec::G711),
            (101, 8000, Codec::Event)
        ]
    );

    let s = parse(&crlf(POLYCOM)).unwrap();
    let d = &describe(&s)[0];
    assert!(d.payloads.contains(&(
        102,
        PayloadInfo {
            clock: 16000,
            codec: Codec::G711
        }
    )));
    let got = out(POLYCOM, &[Some(30002)], &mut None);
    assert!(got.contains("\r\na=sendrecv\r\nm=audio 30002 RTP/AVP 9 102 0 8 18 127\r\n"));
    assert!(got.contains("a=fmtp:102 bitrate=32000\r\n"));
    assert!(!got.contains("10.100.0.51"));
}

#[test]
fn srtp_keys_and_xr_pass_through() {
    let got = out(SNOM, &[Some(30004)], &mut None);
    assert!(got.contains("m=audio 30004 RTP/SAVP 9 0 8 101\r\n"));
    assert!(got.contains(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n"
    ));
    assert!(got.contains("a=rtcp-xr:rcvr-rtt=all voip-metrics\r\n"));
    assert!(got.contains("o=root 1006614093 1006614093 IN IP4 203.0.113.2\r\n"));
}

#[test]
fn ice_and_bundle_are_dropped_mux_kept_rtcp_moved() {
    let s = parse(&crlf(SOFTPHONE)).unwrap();
    let d = describe(&s);
    assert_eq!(d.len(), 2);
    assert!(d[0].mux && d[1].mux);
    assert_eq!(d[0].rtcp, Some("10.100.0.60:50001".parse().unwrap()));
    assert_eq!(d[1].media, "video");
    assert!(d[1].payloads.contains(&(
        96,
        PayloadInfo {
            clock: 90000,
            codec: Codec::G711
        }
    )));
    let got = out(SOFTPHONE, &[Some(30010), Some(30012)], &mut None);
    for gone in [
        "candidate",
        "ice-",
        "end-of-candidates",
        "BUNDLE",
        "10.100.0.60",
    ] {
        assert!(!got.contains(gone), "{gone} left in:\n{got}");
    }
    assert!(got.contains("c=IN IP4 203.0.113.2\r\n"));
    assert!(got
        .contains("m=audio 30010 RTP/AVPF 111 0 101\r\na=rtcp:30011\r\na=mid:0\r\na=rtcp-mux\r\n"));
    assert!(got.contains("a=fmtp:111 minptime=10;useinbandfec=1\r\n"));
    assert!(got.contains("m=video 30012 RTP/AVPF 96\r\na=mid:1\r\na=rtcp-mux\r\n"));
    assert!(got.contains("a=rtcp-fb:96 nack pli\r\n"));
}

#[test]
fn provider_answer_rtcp_address_and_mux_answers() {
    let s = parse(&crlf(PROVIDER_ANSWER)).unwrap();
    let d = &describe(&s)[0];
    assert_eq!(d.rtcp, Some("198.51.100.10:16385".parse().unwrap()));
    let got = out(PROVIDER_ANSWER, &[Some(20000)], &mut None);
    assert!(got.contains("m=audio 20000 RTP/AVP 0 101\r\n"));
    assert!(got.contains("a=rtcp:20001\r\n"));
    // An answer accepting mux may give the RTP port in a=rtcp: it stays the RTP port.
    let mux = PROVIDER_ANSWER.replace("a=rtcp:16385", "a=rtcp-mux\n    a=rtcp:16384");
    let got = out(&mux, &[Some(20000)], &mut None);
    assert!(got.contains("a=rtcp:20000\r\n"), "{got}");
}

#[test]
fn hold_and_reoffer_versions() {
    let mut origin = None;
    let first = out(YEALINK, &[Some(30000)], &mut origin);
    assert!(first.contains("o=- 20003 20003 IN IP4"));
    // The same offer again (a session refresh): same version.
    let again = out(YEALINK, &[Some(30000)], &mut origin);
    assert_eq!(first, again);
    // Hold (a=sendonly, the phone bumps its version): same port, our version + 1.
    let hold = YEALINK
        .replace("20003 20003", "20003 20004")
        .replace("a=sendrecv", "a=sendonly");
    let s = parse(&crlf(&hold)).unwrap();
    assert_eq!(describe(&s)[0].direction, Direction::SendOnly);
    assert!(describe(&s)[0].on_hold());
    let held = out(&hold, &[Some(30000)], &mut origin);
    assert!(held.contains("o=- 20003 20004 IN IP4"));
    assert!(held.contains("m=audio 30000 RTP/AVP") && held.contains("a=sendonly\r\n"));
    // Resume: back to sendrecv, version 20005 although the phone's o= jumped to 20010.
    let resume = YEALINK.replace("20003 20003", "20003 20010");
    let resumed = out(&resume, &[Some(30000)], &mut origin);
    assert!(resumed.contains("o=- 20003 20005 IN IP4"), "{resumed}");
    // A different phone's description later in the call (a transfer): our o= stays ours.
    let other = out(POLYCOM, &[Some(30000)], &mut origin);
    assert!(
        other.contains("o=- 20003 20006 IN IP4 203.0.113.2\r\n"),
        "{other}"
    );
}

#[test]
fn old_style_hold_keeps_zero_address_and_port() {
    let hold = YEALINK.replace("c=IN IP4 10.100.0.50", "c=IN IP4 0.0.0.0");
    let s = parse(&crlf(&hold)).unwrap();
    let d = &describe(&s)[0];
    assert!(d.zero_hold && d.on_hold());
    assert_eq!((d.rtp, d.rtcp), (None, None));
    let got = out(&hold, &[Some(30000)], &mut None);
    assert!(got.contains("c=IN IP4 0.0.0.0\r\n"));
    assert!(got.contains("m=audio 30000 "));
    assert!(got.contains("o=- 20003 20003 IN IP4 203.0.113.2\r\n"));

    // One of two streams held at media level: only that one says 0.0.0.0.
    let two = crlf(
        "
        v=0
        o=- 1 1 IN IP4 10.100.0.60
        s=-
        c=IN IP4 10.100.0.60
        t=0 0
        m=audio 4000 RTP/AVP 0
        m=video 4002 RTP/AVP 96
        c=IN IP4 0.0.0.0
        a=rtpmap:96 H264/90000
    ",
    );
    let s = parse(&two).unwrap();
    let d = describe(&s);
    assert!(!d[0].zero_hold && d[1].zero_hold);
    let got = text(&rewrite(
        &s,
        &d,
        WAN,
        &[Some(30000), Some(30002)],
        &mut None,
    ));
    assert!(got.contains("c=IN IP4 203.0.113.2\r\n"));
    assert!(got.contains("m=video 30002 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\n"));
}

#[test]
fn rejected_and_unsupported_lines() {
    let sdp = crlf(
        "
        v=0
        o=- 5 5 IN IP4 10.100.0.53
        s=-
        c=IN IP4 10.100.0.53
        t=0 0
        m=audio 4000 RTP/AVP 0
        m=video 0 RTP/AVP 96
        m=image 4004 udptl t38
        a=T38FaxVersion:0
        m=application 9 TCP/BFCP *
        a=setup:actpass
    ",
    );
    let s = parse(&sdp).unwrap();
    let d = describe(&s);
    assert_eq!(
        d.iter().map(MediaDesc::relayable).collect::<Vec<_>>(),
        vec![true, false, true, false]
    );
    assert_eq!(d[2].transport, Some(Transport::Datagram));
    assert_eq!(d[3].transport, None);
    assert_eq!(d[1].rtp, None, "port 0 has no destination");
    let got = text(&rewrite(
        &s,
        &d,
        WAN,
        &[Some(30000), None, Some(30002), None],
        &mut None,
    ));
    assert!(got.contains("m=audio 30000 RTP/AVP 0\r\n"));
    assert!(got.contains("m=video 0 RTP/AVP 96\r\n"));
    assert!(got.contains("m=image 30002 udptl t38\r\na=T38FaxVersion:0\r\n"));
    assert!(got.contains("m=application 0 TCP/BFCP *\r\n"));
}

#[test]
fn lf_only_input_and_errors() {
    let lf = YEALINK.replace("\n    ", "\n");
    let s = parse(lf.trim().as_bytes()).unwrap();
    assert_eq!(s.medias.len(), 1);
    assert!(matches!(parse(b"not sdp"), Err(MediaError::Sdp(_))));
    assert!(matches!(
        parse(b"v=0\r\nm=audio notaport RTP/AVP 0\r\n"),
        Err(MediaError::Sdp(_))
    ));
    // A host name in c= is kept out of the destination (latching finds the peer).
    let named = YEALINK.replace("c=IN IP4 10.100.0.50", "c=IN IP4 phone.example");
    let s = parse(&crlf(&named)).unwrap();
    assert_eq!(describe(&s)[0].rtp, None);
}
