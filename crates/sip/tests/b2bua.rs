//! The registration relay on a fake clock: what goes upstream, what comes back to the phone,
//! access control, the public address learned from the provider, timeouts and keepalives.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip::b2bua::{B2bua, MediaControl, Settings};
use sip::transaction::{Peer, Side};

fn settings() -> Settings {
    Settings {
        lan: "10.100.0.1:5060".parse().unwrap(),
        wan: "10.200.0.2:5060".parse().unwrap(),
        upstreams: vec!["198.51.100.10:5060".parse().unwrap()],
        health_interval: Duration::from_secs(30),
        domain: "198.51.100.10".into(),
        upstream_transport: sip::b2bua::Transport::Udp,
        voice_net: "10.100.0.0/24".parse().unwrap(),
        provider_nets: vec!["198.51.100.0/24".parse().unwrap()],
        keepalive: Duration::from_secs(20),
        lan_rate_limit: 100,
        stun_server: None,
    }
}

/// Registrations never touch media: any call into it fails the test.
struct NoMediaExpected;

impl MediaControl for NoMediaExpected {
    fn offer(&mut self, _: &str, _: Side, _: &[u8]) -> Result<Vec<u8>, String> {
        panic!("registration must not use media")
    }
    fn answer(&mut self, _: &str, _: Side, _: &[u8]) -> Result<Vec<u8>, String> {
        panic!("registration must not use media")
    }
    fn release(&mut self, _: &str) {
        panic!("registration must not use media")
    }
    fn public_address(&mut self, _: std::net::Ipv4Addr) {}
}

fn new() -> B2bua {
    B2bua::new(settings(), Box::new(NoMediaExpected))
}

fn phone() -> Peer {
    Peer {
        side: Side::Lan,
        addr: "10.100.0.50:5070".parse().unwrap(),
        reliable: false,
    }
}

fn provider() -> Peer {
    Peer {
        side: Side::Wan,
        addr: "198.51.100.10:5060".parse().unwrap(),
        reliable: false,
    }
}

fn register(branch: &str, cseq: u32, auth: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch={branch};rport\r\nFrom: <sip:1001@198.51.100.10>;tag=p1\r\nTo: <sip:1001@198.51.100.10>\r\nCall-ID: phone-call-id@10.100.0.50\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:1001@10.100.0.50:5070>;expires=300\r\nX-Secret-Lan: 10.100.0.50\r\n{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn sent(b: &mut B2bua) -> Vec<(Peer, String)> {
    std::iter::from_fn(|| b.poll_transmit())
        .map(|(p, m)| (p, String::from_utf8(m).unwrap()))
        .collect()
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no {name} in\n{msg}"))
}

/// The provider's answer to `req` with a status line and extra header lines.
fn answer(req: &str, status: &str, extra: &str) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        out += &format!("{name}: {}\r\n", header(req, name));
    }
    out += &format!(
        "To: {};tag=prov\r\n{extra}Content-Length: 0\r\n\r\n",
        header(req, "To")
    );
    out.into_bytes()
}

#[test]
fn register_is_reoriginated_and_challenges_pass_through() {
    let t0 = Instant::now();
    let mut b = new();
    b.receive(t0, &register("z9hG4bKp1", 1, ""), phone());
    let out = sent(&mut b);
    assert_eq!(out.len(), 1);
    let (to, up) = &out[0];
    assert_eq!(*to, provider());
    assert!(
        up.starts_with("REGISTER sip:198.51.100.10 SIP/2.0"),
        "the Request-URI the digest covers is kept"
    );
    assert!(
        !up.contains("10.100.0."),
        "no voice-LAN address upstream:\n{up}"
    );
    assert_ne!(header(up, "Call-ID"), "phone-call-id@10.100.0.50");
    assert!(header(up, "Via").starts_with("SIP/2.0/UDP 10.200.0.2:5060;branch=z9hG4bK"));
    assert!(header(up, "Contact").contains("@10.200.0.2:5060>;expires=300"));
    assert_eq!(header(up, "Max-Forwards"), "69");

    // 401 with its challenge goes back to the phone's own transaction.
    b.receive(
        t0,
        &answer(
            up,
            "401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\n",
        ),
        provider(),
    );
    let out = sent(&mut b);
    let (to, down) = &out[0];
    assert_eq!(*to, phone());
    assert!(down.starts_with("SIP/2.0 401 Unauthorized"));
    assert_eq!(header(down, "Call-ID"), "phone-call-id@10.100.0.50");
    assert_eq!(
        header(down, "WWW-Authenticate"),
        "Digest realm=\"r\", nonce=\"n\""
    );

    // Credentials go up untouched, on the same upstream Call-ID with a higher CSeq.
    let auth = "Authorization: Digest username=\"1001\", realm=\"r\", nonce=\"n\", uri=\"sip:198.51.100.10\", response=\"abc\"\r\n";
    b.receive(
        t0 + Duration::from_millis(50),
        &register("z9hG4bKp2", 2, auth),
        phone(),
    );
    let up2 = sent(&mut b).remove(0).1;
    assert_eq!(header(&up2, "Call-ID"), header(up, "Call-ID"));
    assert_eq!(header(&up2, "CSeq"), "2 REGISTER");
    assert_eq!(header(&up2, "Authorization"), "Digest username=\"1001\", realm=\"r\", nonce=\"n\", uri=\"sip:198.51.100.10\", response=\"abc\"");

    // 200: the phone gets its own contact back with the granted expiry; the Via tells the box
    // its public address, used from now on.
    let contact = header(&up2, "Contact")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut ok = String::from_utf8(answer(
        &up2,
        "200 OK",
        &format!("Contact: {contact};expires=120\r\n"),
    ))
    .unwrap();
    ok = ok.replacen(";rport", ";rport=40123;received=203.0.113.2", 1);
    b.receive(t0 + Duration::from_millis(60), ok.as_bytes(), provider());
    let down = sent(&mut b).remove(0).1;
    assert!(down.starts_with("SIP/2.0 200 OK"));
    assert_eq!(
        header(&down, "Contact"),
        "<sip:1001@10.100.0.50:5070>;expires=120"
    );
    let regs = b.registrations(t0 + Duration::from_secs(20));
    assert_eq!(regs.len(), 1);
    assert_eq!(
        (regs[0].state.as_str(), regs[0].expires_in),
        ("registered", 100)
    );
    assert_eq!(
        b.wan_advertised(),
        "203.0.113.2:40123".parse::<SocketAddr>().unwrap()
    );
    b.receive(
        t0 + Duration::from_secs(60),
        &register("z9hG4bKp3", 3, auth),
        phone(),
    );
    let up3 = sent(&mut b).remove(0).1;
    assert!(
        header(&up3, "Contact").contains("@203.0.113.2:40123>"),
        "{up3}"
    );
}

#[test]
fn strangers_are_ignored_and_silence_upstream_is_a_408() {
    let t0 = Instant::now();
    let mut b = new();
    let stranger = Peer {
        side: Side::Lan,
        addr: "192.0.2.66:5060".parse().unwrap(),
        reliable: false,
    };
    b.receive(t0, &register("z9hG4bKs", 1, ""), stranger);
    let wan_stranger = Peer {
        side: Side::Wan,
        addr: "203.0.113.99:5060".parse().unwrap(),
        reliable: false,
    };
    b.receive(t0, &register("z9hG4bKs2", 1, ""), wan_stranger);
    assert!(sent(&mut b).is_empty());
    assert_eq!(b.dropped, 2);

    b.receive(t0, &register("z9hG4bKp1", 1, ""), phone());
    sent(&mut b);
    // Nothing comes back: retransmissions, keepalives, then 408 to the phone after 32 s.
    let mut now = t0;
    let mut keepalives = 0;
    let mut timeout = None;
    while let Some(at) = b.poll_timeout() {
        if at > t0 + Duration::from_secs(40) {
            break;
        }
        now = at;
        b.handle_timeout(now);
        for (p, m) in sent(&mut b) {
            if m == "\r\n\r\n" {
                keepalives += 1;
            } else if p == phone() {
                timeout = Some((now - t0, m));
            }
        }
    }
    let (at, msg) = timeout.expect("a response to the phone");
    assert!(msg.starts_with("SIP/2.0 408"), "{msg}");
    assert!(at >= Duration::from_secs(32) && at < Duration::from_secs(33));
    assert_eq!(
        keepalives, 2,
        "CRLF keepalives every 20 s towards the provider"
    );
    assert_eq!(b.registrations(now)[0].state, "failed");
}

#[test]
fn options_is_answered_locally_and_other_methods_refused_cleanly() {
    let t0 = Instant::now();
    let mut b = new();
    let opt = b"OPTIONS sip:10.200.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10;branch=z9hG4bKo\r\nFrom: <sip:p@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    b.receive(t0, opt, provider());
    let out = sent(&mut b);
    assert!(
        out[0].1.starts_with("SIP/2.0 200 OK") && out[0].1.contains("Allow: "),
        "{}",
        out[0].1
    );
    let sub = String::from_utf8_lossy(opt).replace("OPTIONS", "DO");
    b.receive(t0, sub.as_bytes(), phone());
    let out = sent(&mut b);
    assert!(out[0].1.starts_with("SIP/2.0 501"), "{}", out[0].1);
}

/// A 200 to an OPTIONS health check, from the server it went to.
fn options_ok(req: &str) -> Vec<u8> {
    let mut out = "SIP/2.0 200 OK\r\n".to_string();
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        out += &format!("{name}: {}\r\n", header(req, name));
    }
    out += &format!(
        "To: {};tag=hc\r\nContent-Length: 0\r\n\r\n",
        header(req, "To")
    );
    out.into_bytes()
}

#[test]
fn fails_over_to_the_fallback_server_and_back() {
    let t0 = Instant::now();
    let primary: SocketAddr = "198.51.100.10:5060".parse().unwrap();
    let fallback: SocketAddr = "198.51.100.11:5060".parse().unwrap();
    let mut s = settings();
    s.upstreams = vec![primary, fallback];
    s.health_interval = Duration::from_secs(2);
    let mut b = B2bua::new(s, Box::new(NoMediaExpected));
    b.start(t0);
    let from = |addr| Peer {
        side: Side::Wan,
        addr,
        reliable: false,
    };
    // Each round checks both (unanswered checks are retransmitted meanwhile); only the
    // fallback answers.
    let mut seen = std::collections::HashSet::new();
    for round in 0..3u64 {
        let now = t0 + Duration::from_secs(2 * round);
        b.handle_timeout(now);
        let out = sent(&mut b);
        let checks: Vec<_> = out
            .iter()
            .filter(|(_, m)| m.starts_with("OPTIONS "))
            .filter(|(_, m)| seen.insert(header(m, "Call-ID").to_string()))
            .collect();
        assert_eq!(checks.len(), 2, "round {round}: {out:?}");
        for (p, m) in checks {
            if p.addr == fallback {
                b.receive(now, &options_ok(m), from(fallback));
            }
        }
        let active = b.upstreams(now);
        let expect = if round < 2 { "active" } else { "down" };
        assert_eq!(active[0].state, expect, "round {round}");
    }
    let now = t0 + Duration::from_secs(4);
    assert_eq!(b.upstreams(now)[1].state, "active");
    // A phone's refresh now goes to the fallback, and says so in `voxgate regs`.
    b.receive(now, &register("z9hG4bKf1", 1, ""), phone());
    let up: Vec<_> = sent(&mut b)
        .into_iter()
        .filter(|(_, m)| m.starts_with("REGISTER"))
        .collect();
    assert_eq!(up[0].0.addr, fallback);
    assert_eq!(b.registrations(now)[0].upstream, fallback.to_string());

    // The primary answers again: back to it.
    let later = t0 + Duration::from_secs(6);
    b.handle_timeout(later);
    let out = sent(&mut b);
    let check = out
        .iter()
        .find(|(p, m)| p.addr == primary && m.starts_with("OPTIONS "))
        .expect("the primary is still checked");
    b.receive(later, &options_ok(&check.1), from(primary));
    assert_eq!(b.upstreams(later)[0].state, "active");
    assert_eq!(b.upstreams(later)[1].state, "standby");
    b.receive(later, &register("z9hG4bKf2", 2, ""), phone());
    let up: Vec<_> = sent(&mut b)
        .into_iter()
        .filter(|(_, m)| m.starts_with("REGISTER"))
        .collect();
    assert_eq!(up[0].0.addr, primary);
}

#[test]
fn a_lone_server_is_not_health_checked() {
    let t0 = Instant::now();
    let mut b = new();
    b.start(t0);
    b.handle_timeout(t0 + Duration::from_secs(60));
    assert!(sent(&mut b).iter().all(|(_, m)| !m.starts_with("OPTIONS")));
}

/// The box asks the provider's STUN server how the router maps its SIP socket, from start and
/// every minute: the public address is known before any phone registers.
#[test]
fn the_public_address_comes_from_stun_before_any_registration() {
    use stun_rs::attributes::stun::XorMappedAddress;
    use stun_rs::methods::BINDING;
    use stun_rs::{MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunMessageBuilder};
    let t0 = Instant::now();
    let stun: SocketAddr = "198.51.100.10:3478".parse().unwrap();
    let mut s = settings();
    s.stun_server = Some(stun);
    let mut b = B2bua::new(s, Box::new(NoMediaExpected));
    assert_eq!(b.public_address(), None);
    b.start(t0);
    b.handle_timeout(t0);
    let raw = |b: &mut B2bua| std::iter::from_fn(|| b.poll_transmit()).collect::<Vec<_>>();
    let out = raw(&mut b);
    let (peer, req) = out
        .iter()
        .find(|(p, _)| p.addr == stun)
        .expect("a Binding request")
        .clone();
    assert_eq!(peer.side, Side::Wan);
    let (msg, _) = MessageDecoderBuilder::default()
        .build()
        .decode(&req)
        .unwrap();
    let mapped: SocketAddr = "203.0.113.2:5060".parse().unwrap();
    let answer = StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
        .with_transaction_id(*msg.transaction_id())
        .with_attribute(XorMappedAddress::from(mapped))
        .build();
    let mut buf = [0u8; 64];
    let n = MessageEncoderBuilder::default()
        .build()
        .encode(&mut buf, &answer)
        .unwrap();
    b.receive(
        t0,
        &buf[..n],
        Peer {
            side: Side::Wan,
            addr: stun,
            reliable: false,
        },
    );
    assert_eq!(b.public_address(), Some(mapped));
    assert!(raw(&mut b).is_empty(), "nothing answers a STUN response");
    // The next probe a minute later.
    b.handle_timeout(t0 + Duration::from_secs(60));
    assert!(raw(&mut b).iter().any(|(p, _)| p.addr == stun));
}
