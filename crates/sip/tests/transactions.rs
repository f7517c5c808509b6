//! The transaction layer on a fake clock: retransmission schedules, absorption of
//! retransmissions, ACK rules and every timer, without sockets or sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip::message::{parse, response, Message};
use sip::transaction::{Output, Peer, Side, Transactions};

fn msg(text: &str) -> Message {
    parse(text.replace('\n', "\r\n").as_bytes(), false)
        .unwrap()
        .0
}

fn req(method: &str, branch: &str) -> Message {
    msg(&format!(
        "{method} sip:bob@198.51.100.10 SIP/2.0\nVia: SIP/2.0/UDP 10.200.0.2:5060;branch={branch};rport\nFrom: <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>\nCall-ID: c1@box\nCSeq: 7 {method}\nMax-Forwards: 70\nContent-Length: 0\n\n"
    ))
}

fn peer() -> Peer {
    Peer {
        side: Side::Wan,
        addr: "198.51.100.10:5060".parse::<SocketAddr>().unwrap(),
        reliable: false,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn drain(t: &mut Transactions) -> Vec<Output> {
    std::iter::from_fn(|| t.poll_output()).collect()
}

fn transmits(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Transmit { bytes, .. } => Some(
                String::from_utf8_lossy(bytes)
                    .lines()
                    .next()
                    .unwrap()
                    .to_string(),
            ),
            _ => None,
        })
        .collect()
}

/// Advances the clock through every wake-up until `until`, returning when each transmit
/// happened (relative to t0) and everything else that came out.
fn run(t: &mut Transactions, t0: Instant, until: Duration) -> (Vec<Duration>, Vec<Output>) {
    let mut sent = Vec::new();
    let mut other = Vec::new();
    while let Some(at) = t.poll_timeout() {
        if at > t0 + until {
            break;
        }
        t.handle_timeout(at);
        for o in drain(t) {
            match o {
                Output::Transmit { .. } => sent.push(at - t0),
                o => other.push(o),
            }
        }
    }
    (sent, other)
}

#[test]
fn non_invite_client_retransmits_then_times_out() {
    let t0 = Instant::now();
    let mut t = Transactions::new();
    let tx = t.request(t0, req("OPTIONS", "z9hG4bK1"), peer());
    assert_eq!(
        transmits(&drain(&mut t)),
        vec!["OPTIONS sip:bob@198.51.100.10 SIP/2.0"]
    );
    let (sent, other) = run(&mut t, t0, Duration::from_secs(40));
    // Timer E: 0.5, 1.5, 3.5, 7.5 s, then every T2 = 4 s; Timer F at 32 s.
    let want: Vec<Duration> = [
        500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
    ]
    .map(ms)
    .to_vec();
    assert_eq!(sent, want);
    assert!(matches!(other.as_slice(), [Output::Timeout { tx: x }] if *x == tx));
    assert!(t.is_empty());
}

#[test]
fn retransmissions_repeat_the_request_byte_for_byte() {
    let t0 = Instant::now();
    let mut t = Transactions::new();
    for (method, branch) in [("OPTIONS", "z9hG4bK7"), ("INVITE", "z9hG4bK8")] {
        t.request(t0, req(method, branch), peer());
        let first = drain(&mut t);
        let [Output::Transmit { bytes: first, .. }] = first.as_slice() else {
            panic!("one transmit: {first:?}");
        };
        t.handle_timeout(t0 + ms(500));
        let again = drain(&mut t);
        let [Output::Transmit { bytes: again, .. }] = again.as_slice() else {
            panic!("one retransmission: {again:?}");
        };
        assert_eq!(
            String::from_utf8_lossy(again),
            String::from_utf8_lossy(first)
        );
        assert!(String::from_utf8_lossy(first).starts_with(method));
    }
}

#[test]
fn non_invite_client_final_response_stops_retransmission() {
    let t0 = Instant::now();
    let mut t = Transactions::new();
    let r = req("REGISTER", "z9hG4bK2");
    let tx = t.request(t0, r.clone(), peer());
    drain(&mut t);
    let (sent, _) = run(&mut t, t0, ms(600));
    assert_eq!(sent, vec![ms(500)], "Timer E before the response");
    t.receive(t0 + ms(700), response(&r, 200, "OK", Some("b1")), peer());
    let out = drain(&mut t);
    assert!(matches!(out.as_slice(), [Output::Response { tx: x, .. }] if *x == tx));
    // A retransmitted 200 is absorbed.
    t.receive(t0 + ms(800), response(&r, 200, "OK", Some("b1")), peer());
    assert!(drain(&mut t).is_empty());
    let (sent, _) = run(&mut t, t0, Duration::from_secs(10));
    assert!(
        sent.is_empty(),
        "no retransmission after the final response"
    );
    assert!(t.is_empty(), "Timer K ends the transaction");
}

#[test]
fn invite_client_acks_failures_and_hands_2xx_retransmissions_up() {
    let t0 = Instant::now();
    let mut t = Transactions::new();
    let inv = req("INVITE", "z9hG4bK3");
    t.request(t0, inv.clone(), peer());
    drain(&mut t);
    t.receive(
        t0 + ms(100),
        response(&inv, 180, "Ringing", Some("b2")),
        peer(),
    );
    assert!(matches!(
        drain(&mut t).as_slice(),
        [Output::Response { .. }]
    ));
    let (sent, _) = run(&mut t, t0, Duration::from_secs(2));
    assert!(sent.is_empty(), "a provisional response stops Timer A");
    t.receive(
        t0 + ms(3000),
        response(&inv, 486, "Busy Here", Some("b2")),
        peer(),
    );
    let out = drain(&mut t);
    let tx = transmits(&out);
    assert_eq!(tx, vec!["ACK sip:bob@198.51.100.10 SIP/2.0"]);
    let ack = out
        .iter()
        .find_map(|o| match o {
            Output::Transmit { bytes, .. } => Some(String::from_utf8_lossy(bytes).to_string()),
            _ => None,
        })
        .unwrap();
    assert!(
        ack.contains("branch=z9hG4bK3") && ack.contains("tag=b2") && ack.contains("CSeq: 7 ACK"),
        "{ack}"
    );
    // A retransmitted 486 gets the ACK again, and nothing goes up.
    t.receive(
        t0 + ms(3500),
        response(&inv, 486, "Busy Here", Some("b2")),
        peer(),
    );
    assert_eq!(
        transmits(&drain(&mut t)),
        vec!["ACK sip:bob@198.51.100.10 SIP/2.0"]
    );
    run(&mut t, t0, Duration::from_secs(40));
    assert!(t.is_empty(), "Timer D ends it");

    // 2xx: the transaction ends at once; retransmitted 2xx go up for the dialog to ACK.
    let inv = req("INVITE", "z9hG4bK4");
    t.request(t0, inv.clone(), peer());
    drain(&mut t);
    t.receive(t0 + ms(200), response(&inv, 200, "OK", Some("b3")), peer());
    assert!(matches!(
        drain(&mut t).as_slice(),
        [Output::Response { .. }]
    ));
    assert!(t.is_empty());
    t.receive(t0 + ms(700), response(&inv, 200, "OK", Some("b3")), peer());
    assert!(matches!(
        drain(&mut t).as_slice(),
        [Output::Stray2xx { .. }]
    ));
}

#[test]
fn invite_server_sends_trying_absorbs_retransmissions_and_retransmits_finals() {
    let t0 = Instant::now();
    let mut t = Transactions::new();
    let inv = req("INVITE", "z9hG4bK5");
    t.receive(t0, inv.clone(), peer());
    let out = drain(&mut t);
    assert_eq!(transmits(&out), vec!["SIP/2.0 100 Trying"]);
    let tx = out
        .iter()
        .find_map(|o| match o {
            Output::Request { tx, .. } => Some(*tx),
            _ => None,
        })
        .unwrap();
    // The phone retransmits: it gets the 100 again, the B2BUA sees nothing new.
    t.receive(t0 + ms(500), inv.clone(), peer());
    assert_eq!(transmits(&drain(&mut t)), vec!["SIP/2.0 100 Trying"]);
    t.respond(
        t0 + ms(1000),
        tx,
        response(&inv, 486, "Busy Here", Some("x")),
    );
    assert_eq!(transmits(&drain(&mut t)), vec!["SIP/2.0 486 Busy Here"]);
    // Timer G: 1.5, 2.5, 4.5 s ... until the ACK.
    let (sent, _) = run(&mut t, t0, Duration::from_millis(4600));
    assert_eq!(sent, vec![ms(1500), ms(2500), ms(4500)]);
    let mut ack = req("ACK", "z9hG4bK5");
    ack.headers.remove(&ezk_sip_types::Name::CSEQ);
    ack.headers.insert(ezk_sip_types::Name::CSEQ, "7 ACK");
    t.receive(t0 + ms(4700), ack, peer());
    assert!(
        drain(&mut t).is_empty(),
        "the ACK of a failure belongs to the transaction"
    );
    let (sent, _) = run(&mut t, t0, Duration::from_secs(20));
    assert!(sent.is_empty());
    assert!(t.is_empty(), "Timer I ends it");
}

#[test]
fn invite_server_2xx_is_retransmitted_until_the_end_to_end_ack() {
    let t0 = Instant::now();
    let mut t = Transactions::new();
    let inv = req("INVITE", "z9hG4bK6");
    t.receive(t0, inv.clone(), peer());
    let tx = drain(&mut t)
        .into_iter()
        .find_map(|o| match o {
            Output::Request { tx, .. } => Some(tx),
            _ => None,
        })
        .unwrap();
    t.respond(t0, tx, response(&inv, 200, "OK", Some("y")));
    drain(&mut t);
    let (sent, _) = run(&mut t, t0, Duration::from_millis(1600));
    assert_eq!(sent, vec![ms(500), ms(1500)]);
    // The ACK for a 2xx has its own branch: it goes up, and stops the retransmissions.
    let mut ack = req("ACK", "z9hG4bKother");
    ack.headers.remove(&ezk_sip_types::Name::CSEQ);
    ack.headers.insert(ezk_sip_types::Name::CSEQ, "7 ACK");
    t.receive(t0 + ms(1700), ack, peer());
    assert!(matches!(drain(&mut t).as_slice(), [Output::Ack { .. }]));
    let (sent, _) = run(&mut t, t0, Duration::from_secs(40));
    assert!(sent.is_empty());
    assert!(t.is_empty(), "Timer L ends it");
}

#[test]
fn non_invite_server_repeats_its_final_response_then_ends() {
    let t0 = Instant::now();
    let mut t = Transactions::new();
    let r = req("REGISTER", "z9hG4bK7");
    t.receive(t0, r.clone(), peer());
    let tx = drain(&mut t)
        .into_iter()
        .find_map(|o| match o {
            Output::Request { tx, .. } => Some(tx),
            _ => None,
        })
        .unwrap();
    t.respond(
        t0 + ms(10),
        tx,
        response(&r, 401, "Unauthorized", Some("z")),
    );
    assert_eq!(transmits(&drain(&mut t)), vec!["SIP/2.0 401 Unauthorized"]);
    t.receive(t0 + ms(500), r, peer());
    assert_eq!(transmits(&drain(&mut t)), vec!["SIP/2.0 401 Unauthorized"]);
    let (sent, _) = run(&mut t, t0, Duration::from_secs(40));
    assert!(
        sent.is_empty(),
        "no retransmission of non-INVITE responses on its own"
    );
    assert!(t.is_empty(), "Timer J ends it");
}

#[test]
fn unanswered_invite_failure_ends_by_timer_h() {
    let t0 = Instant::now();
    let mut t = Transactions::new();
    let inv = req("INVITE", "z9hG4bK8");
    t.receive(t0, inv.clone(), peer());
    let tx = drain(&mut t)
        .into_iter()
        .find_map(|o| match o {
            Output::Request { tx, .. } => Some(tx),
            _ => None,
        })
        .unwrap();
    t.respond(t0, tx, response(&inv, 404, "Not Found", Some("q")));
    drain(&mut t);
    let (sent, _) = run(&mut t, t0, Duration::from_secs(40));
    // G doubles to T2: 0.5, 1.5, 3.5, 7.5, then every 4 s until H at 32 s.
    assert_eq!(sent.first(), Some(&ms(500)));
    assert!(sent.iter().all(|s| *s < Duration::from_secs(32)));
    assert!(t.is_empty());
}

/// An RFC 2543 phone (no branch): its INVITE's retransmission and the ACK of the error it
/// got are matched to the transaction by RFC 3261 17.2.3's rule, not passed up again.
#[test]
fn requests_without_a_branch_are_matched_the_rfc_2543_way() {
    let t0 = Instant::now();
    let mut t = Transactions::new();
    let invite = "INVITE sip:bob@198.51.100.10 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.2:5060\nFrom: <sip:alice@example.com>;tag=old1\nTo: <sip:bob@example.com>\nCall-ID: old-call@192.0.2.2\nCSeq: 1 INVITE\nContent-Length: 0\n\n";
    t.receive(t0, msg(invite), peer());
    let out = drain(&mut t);
    let tx = out
        .iter()
        .find_map(|o| match o {
            Output::Request { tx, .. } => Some(*tx),
            _ => None,
        })
        .expect("the INVITE goes up once");
    let busy = response(&msg(invite), 486, "Busy Here", Some("bx"));
    t.respond(t0, tx, busy);
    drain(&mut t);
    // The retransmitted INVITE gets the 486 again and does not go up.
    t.receive(t0 + ms(500), msg(invite), peer());
    let out = drain(&mut t);
    assert!(out.iter().all(|o| !matches!(o, Output::Request { .. })));
    assert!(transmits(&out).iter().any(|m| m.starts_with("SIP/2.0 486")));
    // Its ACK (same Via, From tag, Call-ID, CSeq number) ends the transaction's
    // retransmissions and is not handed up as an end-to-end ACK.
    let ack = invite
        .replace("INVITE sip", "ACK sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            "To: <sip:bob@example.com>",
            "To: <sip:bob@example.com>;tag=bx",
        );
    t.receive(t0 + ms(600), msg(&ack), peer());
    let out = drain(&mut t);
    assert!(
        out.iter().all(|o| !matches!(o, Output::Ack { .. })),
        "{out:?}"
    );
    t.handle_timeout(t0 + ms(2000));
    assert!(
        transmits(&drain(&mut t)).is_empty(),
        "no 486 retransmission after the ACK"
    );
}

#[test]
fn responses_tell_the_client_its_source_address_and_port() {
    use sip::message::stamp_via;
    let via = |text: &str, src: &str| {
        let mut m = msg(&format!(
            "OPTIONS sip:box SIP/2.0\nVia: {text}\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@x>\nCall-ID: c\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n"
        ));
        stamp_via(&mut m.headers, src.parse().unwrap());
        sip::message::values(&m.headers, &ezk_sip_types::Name::VIA)
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    // rport asked for: its value and `received`, even when the address is the sent-by's.
    assert_eq!(
        via(
            "SIP/2.0/UDP 10.100.0.195:5060;branch=z9hG4bK-x;rport",
            "10.100.0.195:36696"
        ),
        "SIP/2.0/UDP 10.100.0.195:5060;branch=z9hG4bK-x;rport=36696;received=10.100.0.195"
    );
    // Without rport: `received` only when the source is not the sent-by host (a NAT, a name).
    assert_eq!(
        via(
            "SIP/2.0/UDP 10.100.0.195:5060;branch=z9hG4bK-x",
            "10.100.0.195:5060"
        ),
        "SIP/2.0/UDP 10.100.0.195:5060;branch=z9hG4bK-x"
    );
    assert_eq!(
        via(
            "SIP/2.0/TCP phone.example;branch=z9hG4bK-x",
            "192.0.2.7:40000"
        ),
        "SIP/2.0/TCP phone.example;branch=z9hG4bK-x;received=192.0.2.7"
    );
    // A `received` the client wrote is replaced; only the top Via of a combined line changes.
    assert_eq!(
        via(
            "SIP/2.0/UDP 10.0.0.1:5060;received=1.1.1.1;rport;branch=z9hG4bKa, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKb",
            "192.0.2.7:1024"
        ),
        "SIP/2.0/UDP 10.0.0.1:5060;rport=1024;branch=z9hG4bKa;received=192.0.2.7, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKb"
    );
    // A parameter's quoted value may hold `,` and `;` (RFC 3261 25.1): it is not a new value.
    assert_eq!(
        via(
            "SIP/2.0/UDP 10.0.0.1:5060;x=\"a,b;c\\\"\";branch=z9hG4bKa;rport, SIP/2.0/UDP 10.0.0.9",
            "192.0.2.7:1024"
        ),
        "SIP/2.0/UDP 10.0.0.1:5060;x=\"a,b;c\\\"\";branch=z9hG4bKa;rport=1024;received=192.0.2.7, SIP/2.0/UDP 10.0.0.9"
    );
    // ... nor does it hide the branch from transaction matching.
    let quoted = msg(
        "OPTIONS sip:box SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1:5060;x=\"a,b;c\";branch=z9hG4bKq\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@x>\nCall-ID: c\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n",
    );
    assert_eq!(
        quoted.via_key(),
        Some(("10.0.0.1:5060".to_string(), Some("z9hG4bKq".to_string())))
    );
    // IPv6 sent-by in brackets compares as an address.
    assert_eq!(
        via(
            "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKa",
            "[2001:db8::1]:5060"
        ),
        "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKa"
    );

    // The server transaction does it: its 100 Trying carries them.
    let mut t = Transactions::new();
    let now = Instant::now();
    let from = Peer {
        side: Side::Lan,
        addr: "10.200.0.2:40001".parse().unwrap(),
        reliable: false,
    };
    t.receive(now, req("INVITE", "z9hG4bK-stamp"), from);
    let trying = drain(&mut t)
        .into_iter()
        .find_map(|o| match o {
            Output::Transmit { bytes, .. } => Some(String::from_utf8(bytes).unwrap()),
            _ => None,
        })
        .expect("100 Trying");
    assert!(
        trying.contains("Via: SIP/2.0/UDP 10.200.0.2:5060;branch=z9hG4bK-stamp;rport=40001;received=10.200.0.2\r\n"),
        "{trying}"
    );
}
