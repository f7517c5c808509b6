//! Calls through the B2BUA core on a fake clock. The media relay is replaced by a recorder
//! that rewrites the connection address the way the real relay does (the relay itself is
//! tested in crates/media and with real packets in the lab).

mod common;

use std::time::{Duration, Instant};

use common::*;
use sip::b2bua::B2bua;
use sip::transaction::Peer;

#[test]
fn outbound_call_answered_and_hung_up_by_the_phone() {
    let t0 = Instant::now();
    let (mut b, rec) = b2bua();
    b.receive(t0, &invite("z9hG4bKi1", 1), phone());
    let out = sent(&mut b);
    assert!(to(&out, phone())[0].starts_with("SIP/2.0 100 Trying"));
    let up = to(&out, provider()).remove(0);
    assert!(
        up.starts_with("INVITE sip:01632960123@198.51.100.10 SIP/2.0"),
        "{up}"
    );
    assert!(!up.contains("10.100.0."), "topology hidden upstream:\n{up}");
    assert!(
        up.contains("c=IN IP4 10.200.0.2"),
        "SDP names the box's WAN side"
    );
    assert!(header(&up, "From").starts_with("\"Reception\" <sip:1001@198.51.100.10>;tag="));

    b.receive(
        t0,
        &answer(
            &up,
            "180 Ringing",
            "pv",
            "Contact: <sip:bob@198.51.100.10:5060>\r\n",
            "",
        ),
        provider(),
    );
    let ringing = to(&sent(&mut b), phone()).remove(0);
    assert!(ringing.starts_with("SIP/2.0 180 Ringing"));
    let phone_tag = header(&ringing, "To")
        .split("tag=")
        .nth(1)
        .unwrap()
        .to_string();

    b.receive(
        t0,
        &answer(
            &up,
            "200 OK",
            "pv",
            "Contact: <sip:bob@198.51.100.10:5060>\r\n",
            PSDP,
        ),
        provider(),
    );
    let out = sent(&mut b);
    let ack = to(&out, provider()).remove(0);
    assert!(
        ack.starts_with("ACK sip:bob@198.51.100.10:5060 SIP/2.0"),
        "{ack}"
    );
    let ok = to(&out, phone()).remove(0);
    assert!(ok.starts_with("SIP/2.0 200 OK"));
    assert!(
        ok.contains("c=IN IP4 10.100.0.1"),
        "answer names the box's LAN side:\n{ok}"
    );
    assert_eq!(header(&ok, "Contact"), "<sip:voxgate@10.100.0.1:5060>");
    assert!(
        header(&ok, "To").ends_with(&format!("tag={phone_tag}")),
        "same tag as the 180"
    );
    assert_eq!(b.calls(t0)[0].state, "confirmed");

    // The phone's ACK is absorbed; its BYE is answered and relayed.
    let ack = format!("ACK sip:voxgate@10.100.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch=z9hG4bKa1\r\nFrom: \"Reception\" <sip:1001@10.100.0.50>;tag=ph1\r\nTo: {}\r\nCall-ID: phone-call@10.100.0.50\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", header(&ok, "To"));
    b.receive(t0, ack.as_bytes(), phone());
    assert!(sent(&mut b).is_empty());
    let bye = ack
        .replace("ACK sip", "BYE sip")
        .replace("1 ACK", "2 BYE")
        .replace("z9hG4bKa1", "z9hG4bKb1");
    b.receive(t0 + Duration::from_secs(30), bye.as_bytes(), phone());
    let out = sent(&mut b);
    assert!(to(&out, phone())[0].starts_with("SIP/2.0 200 OK"));
    let up_bye = to(&out, provider()).remove(0);
    assert!(
        up_bye.starts_with("BYE sip:bob@198.51.100.10:5060 SIP/2.0"),
        "{up_bye}"
    );
    assert_eq!(header(&up_bye, "Call-ID"), header(&up, "Call-ID"));
    b.receive(
        t0 + Duration::from_secs(30),
        &answer(&up_bye, "200 OK", "pv", "", ""),
        provider(),
    );
    assert!(
        b.calls(t0).is_empty(),
        "call removed after the BYE's answer"
    );
    let ops = rec.lock().unwrap().ops.clone();
    assert_eq!(
        ops,
        vec!["offer call-1 Lan", "answer call-1 Wan", "release call-1"]
    );
}

#[test]
fn busy_and_cancel() {
    let t0 = Instant::now();
    let (mut b, rec) = b2bua();
    b.receive(t0, &invite("z9hG4bKi2", 1), phone());
    let up = to(&sent(&mut b), provider()).remove(0);
    b.receive(t0, &answer(&up, "486 Busy Here", "pv", "", ""), provider());
    let out = sent(&mut b);
    assert!(
        to(&out, provider())[0].starts_with("ACK "),
        "hop-by-hop ACK upstream"
    );
    assert!(to(&out, phone())[0].starts_with("SIP/2.0 486 Busy Here"));
    assert!(b.calls(t0).is_empty());
    assert_eq!(rec.lock().unwrap().ops.last().unwrap(), "release call-1");

    // CANCEL before the answer: 200 to the CANCEL, 487 to the INVITE, CANCEL upstream.
    let inv = String::from_utf8(invite("z9hG4bKi3", 1))
        .unwrap()
        .replace("phone-call@", "second@");
    b.receive(t0, inv.as_bytes(), phone());
    let up = to(&sent(&mut b), provider()).remove(0);
    let cancel = inv
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL")
        .replace("Content-Type: application/sdp\r\n", "")
        .replace(
            &format!("Content-Length: {}", SDP.len()),
            "Content-Length: 0",
        )
        + "\r\n\r\n";
    b.receive(t0, cancel.as_bytes(), phone());
    let out = to(&sent(&mut b), phone());
    assert!(out
        .iter()
        .any(|m| m.starts_with("SIP/2.0 200 OK") && m.contains("CANCEL")));
    assert!(out.iter().any(|m| m.starts_with("SIP/2.0 487")));
    // The provider answers 200 anyway (the race): the box ACKs and hangs up that leg.
    b.receive(
        t0,
        &answer(
            &up,
            "200 OK",
            "pv",
            "Contact: <sip:bob@198.51.100.10>\r\n",
            PSDP,
        ),
        provider(),
    );
    let out = to(&sent(&mut b), provider());
    assert!(
        out.iter()
            .any(|m| m.starts_with("ACK sip:bob@198.51.100.10")),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|m| m.starts_with("BYE sip:bob@198.51.100.10")),
        "{out:?}"
    );
}

#[test]
fn inbound_call_reaches_the_registered_phone_and_the_provider_hangs_up() {
    let t0 = Instant::now();
    let (mut b, _) = b2bua();
    let token_uri = register_phone(&mut b, t0);

    let inv = format!("INVITE {token_uri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKin1\r\nFrom: \"01632 960999\" <sip:01632960999@198.51.100.10>;tag=pf\r\nTo: <sip:1001@198.51.100.10>\r\nCall-ID: prov-call-1\r\nCSeq: 10 INVITE\r\nContact: <sip:gw@198.51.100.10:5060>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{PSDP}", PSDP.len());
    b.receive(t0, inv.as_bytes(), provider());
    let out = sent(&mut b);
    let down = to(&out, phone()).remove(0);
    assert!(
        down.starts_with("INVITE sip:1001@10.100.0.50:5070 SIP/2.0"),
        "{down}"
    );
    assert!(down.contains("c=IN IP4 10.100.0.1"));
    assert!(header(&down, "From").starts_with("\"01632 960999\" <sip:01632960999@198.51.100.10>"));
    b.receive(
        t0,
        &answer(
            &down,
            "200 OK",
            "ph",
            "Contact: <sip:1001@10.100.0.50:5070>\r\n",
            SDP,
        ),
        phone(),
    );
    let out = sent(&mut b);
    assert!(to(&out, phone())[0].starts_with("ACK sip:1001@10.100.0.50:5070"));
    let ok = to(&out, provider()).remove(0);
    assert!(
        ok.starts_with("SIP/2.0 200 OK") && ok.contains("c=IN IP4 10.200.0.2"),
        "{ok}"
    );
    assert!(!ok.contains("10.100.0."), "{ok}");

    // BYE from the provider reaches the phone.
    let bye = provider_request(
        "BYE",
        &String::from_utf8_lossy(&answer(
            &inv,
            "200 OK",
            header(&ok, "To").split("tag=").nth(1).unwrap(),
            "",
            "",
        )),
        11,
    );
    b.receive(t0 + Duration::from_secs(5), &bye, provider());
    let out = sent(&mut b);
    assert!(to(&out, provider())[0].starts_with("SIP/2.0 200 OK"));
    assert!(to(&out, phone())[0].starts_with("BYE sip:1001@10.100.0.50:5070"));

    // A call for an unknown contact is refused.
    let stray = inv
        .replace(&token_uri, "sip:nobody@10.200.0.2:5060")
        .replace("prov-call-1", "prov-call-2")
        .replace("z9hG4bKin1", "z9hG4bKin2");
    b.receive(t0, stray.as_bytes(), provider());
    let out = to(&sent(&mut b), provider());
    assert!(out.iter().any(|m| m.starts_with("SIP/2.0 404")), "{out:?}");
}

/// The stable stand-in for `cargo fuzz run message` (fuzz/): mutated INVITEs, responses and
/// in-dialog requests from both sides through the whole core. Nothing may panic.
#[test]
fn mutated_dialogs_never_panic() {
    let t0 = Instant::now();
    let (mut b, _) = b2bua();
    let seeds: Vec<Vec<u8>> = vec![
        invite("z9hG4bKf1", 1),
        answer(
            &String::from_utf8(invite("z9hG4bKf1", 1)).unwrap(),
            "200 OK",
            "x",
            "Contact: <sip:a@198.51.100.10>\r\n",
            PSDP,
        ),
        provider_request(
            "BYE",
            &String::from_utf8_lossy(&answer(
                &String::from_utf8(invite("z9hG4bKf1", 1)).unwrap(),
                "200 OK",
                "x",
                "",
                "",
            )),
            3,
        ),
    ];
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..4000u64 {
        let mut m = seeds[(next() % seeds.len() as u64) as usize].clone();
        for _ in 0..(next() % 6 + 1) {
            let i = (next() as usize) % m.len().max(1);
            match next() % 3 {
                0 if !m.is_empty() => m[i] = next() as u8,
                1 => m.truncate(i.max(1)),
                _ => m.insert(i.min(m.len()), b";:<>\"\r\n @="[(next() % 10) as usize]),
            }
        }
        let peer = if next() % 2 == 0 { phone() } else { provider() };
        b.receive(t0 + Duration::from_millis(round), &m, peer);
        while b.poll_transmit().is_some() {}
    }
    b.handle_timeout(t0 + Duration::from_secs(120));
    while b.poll_transmit().is_some() {}
}

/// An in-dialog request from the phone on the dialog its INVITE opened; `to` is the To header
/// of the box's answer (with the box's tag).
fn phone_request(method: &str, to: &str, cseq: u32, extra: &str) -> Vec<u8> {
    format!("{method} sip:voxgate@10.100.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch=z9hG4bKp{cseq}\r\nFrom: \"Reception\" <sip:1001@10.100.0.50>;tag=ph1\r\nTo: {to}\r\nCall-ID: phone-call@10.100.0.50\r\nCSeq: {cseq} {method}\r\n{extra}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

/// Reliable provisional responses (RFC 3262) pass through with RSeq/RAck, session timers
/// (RFC 4028) with Session-Expires, and a transfer (REFER) reaches the provider with the LAN
/// addresses in Refer-To and Referred-By hidden.
#[test]
fn prack_session_timers_and_refer_pass_through_with_topology_hidden() {
    let t0 = Instant::now();
    let (mut b, _) = b2bua();
    let inv = String::from_utf8(invite("z9hG4bKi9", 1))
        .unwrap()
        .replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nSupported: 100rel, timer\r\nSession-Expires: 1800;refresher=uac\r\nMin-SE: 90\r\n",
        );
    b.receive(t0, inv.as_bytes(), phone());
    let up = to(&sent(&mut b), provider()).remove(0);
    assert_eq!(header(&up, "Session-Expires"), "1800;refresher=uac");
    assert_eq!(header(&up, "Min-SE"), "90");
    assert_eq!(header(&up, "Supported"), "100rel, timer");

    b.receive(
        t0,
        &answer(
            &up,
            "183 Session Progress",
            "pv",
            "Contact: <sip:bob@198.51.100.10:5060>\r\nRequire: 100rel\r\nRSeq: 1\r\n",
            PSDP,
        ),
        provider(),
    );
    let early = to(&sent(&mut b), phone()).remove(0);
    assert!(early.starts_with("SIP/2.0 183"), "{early}");
    assert_eq!(header(&early, "RSeq"), "1");
    assert_eq!(header(&early, "Require"), "100rel");
    let box_to = header(&early, "To").to_string();

    b.receive(
        t0,
        &phone_request("PRACK", &box_to, 2, "RAck: 1 1 INVITE\r\n"),
        phone(),
    );
    let prack = to(&sent(&mut b), provider()).remove(0);
    assert!(
        prack.starts_with("PRACK sip:bob@198.51.100.10:5060 SIP/2.0"),
        "{prack}"
    );
    assert_eq!(header(&prack, "RAck"), "1 1 INVITE");
    assert_eq!(header(&prack, "Call-ID"), header(&up, "Call-ID"));
    b.receive(t0, &answer(&prack, "200 OK", "pv", "", ""), provider());
    assert!(to(&sent(&mut b), phone())[0].starts_with("SIP/2.0 200"));

    b.receive(
        t0,
        &answer(
            &up,
            "200 OK",
            "pv",
            "Contact: <sip:bob@198.51.100.10:5060>\r\nSession-Expires: 1800;refresher=uac\r\nRequire: timer\r\n",
            PSDP,
        ),
        provider(),
    );
    let ok = to(&sent(&mut b), phone()).remove(0);
    assert_eq!(header(&ok, "Session-Expires"), "1800;refresher=uac");
    assert_eq!(header(&ok, "Require"), "timer");

    // Blind transfer to another phone, named by the box's LAN address.
    b.receive(
        t0,
        &phone_request(
            "REFER",
            &box_to,
            3,
            "Refer-To: <sip:1002@10.100.0.1>\r\nReferred-By: <sip:1001@10.100.0.50>\r\nContact: <sip:1001@10.100.0.50:5070>\r\n",
        ),
        phone(),
    );
    let refer = to(&sent(&mut b), provider()).remove(0);
    assert!(
        refer.starts_with("REFER sip:bob@198.51.100.10:5060 SIP/2.0"),
        "{refer}"
    );
    assert_eq!(header(&refer, "Refer-To"), "<sip:1002@198.51.100.10>");
    assert_eq!(header(&refer, "Referred-By"), "<sip:1001@198.51.100.10>");
    assert!(!refer.contains("10.100.0."), "{refer}");
    b.receive(
        t0,
        &answer(&refer, "202 Accepted", "pv", "", ""),
        provider(),
    );
    assert!(to(&sent(&mut b), phone())[0].starts_with("SIP/2.0 202"));
}

/// Whatever a phone writes into a response's headers, the provider sees no LAN address.
#[test]
fn responses_to_the_provider_hide_lan_addresses() {
    let t0 = Instant::now();
    let (mut b, _) = b2bua();
    let target = register_phone(&mut b, t0);
    let inv = format!("INVITE {target} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKin7\r\nFrom: <sip:01632960999@198.51.100.10>;tag=pf\r\nTo: <sip:1001@198.51.100.10>\r\nCall-ID: prov-call-7\r\nCSeq: 10 INVITE\r\nContact: <sip:gw@198.51.100.10:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    b.receive(t0, inv.as_bytes(), provider());
    let down = to(&sent(&mut b), phone()).remove(0);
    b.receive(
        t0,
        &answer(
            &down,
            "486 Busy Here",
            "ph",
            "Warning: 399 10.100.0.50 \"DND on\"\r\n",
            "",
        ),
        phone(),
    );
    let busy = to(&sent(&mut b), provider()).remove(0);
    assert!(busy.starts_with("SIP/2.0 486"), "{busy}");
    assert_eq!(header(&busy, "Warning"), "399 198.51.100.10 \"DND on\"");
    assert!(!busy.contains("10.100.0."), "{busy}");
}

/// A phone registered over TCP is called over its connection: the INVITE goes to the same
/// transport address, marked reliable, with a TCP Via and a `transport=tcp` Contact; once the
/// connection is gone, calls for it are answered 480.
#[test]
fn a_phone_on_tcp_is_called_over_its_connection_and_unreachable_when_it_closes() {
    let t0 = Instant::now();
    let (mut b, _) = b2bua();
    let tcp_phone = Peer {
        reliable: true,
        ..phone()
    };
    let reg = "REGISTER sip:198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/TCP 10.100.0.50:5070;branch=z9hG4bKt1\r\nFrom: <sip:1001@198.51.100.10>;tag=r1\r\nTo: <sip:1001@198.51.100.10>\r\nCall-ID: reg-tcp\r\nCSeq: 1 REGISTER\r\nContact: <sip:1001@10.100.0.50:5070;transport=tcp>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n";
    b.receive(t0, reg.as_bytes(), tcp_phone);
    let up = to(&sent(&mut b), provider()).remove(0);
    let contact = header(&up, "Contact").to_string();
    b.receive(
        t0,
        &answer(
            &up,
            "200 OK",
            "rg",
            &format!("Contact: {contact};expires=300\r\n"),
            "",
        ),
        provider(),
    );
    let ok = to(&sent(&mut b), tcp_phone).remove(0);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(b.registrations(t0)[0].phone_transport, "tcp");
    let target = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let inv = |cid: &str| {
        format!("INVITE {target} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK{cid}\r\nFrom: <sip:01632960999@198.51.100.10>;tag=pf\r\nTo: <sip:1001@198.51.100.10>\r\nCall-ID: {cid}\r\nCSeq: 10 INVITE\r\nContact: <sip:gw@198.51.100.10:5060>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{PSDP}", PSDP.len())
    };
    b.receive(t0, inv("tcp-in-1").as_bytes(), provider());
    let out = sent(&mut b);
    let down = to(&out, tcp_phone).remove(0);
    assert!(
        down.starts_with("INVITE sip:1001@10.100.0.50:5070;transport=tcp SIP/2.0"),
        "{down}"
    );
    assert!(
        header(&down, "Via").starts_with("SIP/2.0/TCP 10.100.0.1:5060;"),
        "{down}"
    );
    assert_eq!(
        header(&down, "Contact"),
        "<sip:voxgate@10.100.0.1:5060;transport=tcp>"
    );
    assert!(to(&out, phone()).is_empty(), "nothing over UDP");

    b.lan_connection_closed(tcp_phone.addr);
    assert_eq!(b.registrations(t0)[0].state, "disconnected");
    b.receive(t0, inv("tcp-in-2").as_bytes(), provider());
    let out = sent(&mut b);
    assert!(
        to(&out, provider())
            .iter()
            .any(|m| m.starts_with("SIP/2.0 480")),
        "{out:?}"
    );
}

/// Requests the B2BUA must refuse itself, with the answer RFC 3261 (and RFC 4475) ask for;
/// and what it relays carries the phone's own headers and one hop less.
#[test]
fn refusals_and_pass_through_of_unknown_headers() {
    let t0 = Instant::now();
    let (mut b, _) = b2bua();
    let first = |b: &mut B2bua, bytes: Vec<u8>| -> String {
        b.receive(t0, &bytes, phone());
        to(&sent(b), phone())
            .into_iter()
            .find(|m| !m.starts_with("SIP/2.0 100 "))
            .expect("an answer")
    };
    let inv = String::from_utf8(invite("z9hG4bKr1", 1)).unwrap();

    let r = first(
        &mut b,
        inv.replace("Max-Forwards: 70", "Max-Forwards: 0")
            .into_bytes(),
    );
    assert!(r.starts_with("SIP/2.0 483"), "{r}");
    let r = first(
        &mut b,
        inv.replace("z9hG4bKr1", "z9hG4bKr2")
            .replace(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nProxy-Require: foo, bar\r\n",
            )
            .into_bytes(),
    );
    assert!(r.starts_with("SIP/2.0 420"), "{r}");
    assert_eq!(header(&r, "Unsupported"), "foo, bar");
    let opt = "OPTIONS sip:10.100.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch=z9hG4bKo9\r\nFrom: <sip:1001@10.100.0.1>;tag=o\r\nTo: <sip:10.100.0.1>\r\nCall-ID: opt9\r\nCSeq: 1 OPTIONS\r\nRequire: nothingSupportedHere\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let r = first(&mut b, opt.as_bytes().to_vec());
    assert!(r.starts_with("SIP/2.0 420"), "{r}");
    assert_eq!(header(&r, "Unsupported"), "nothingSupportedHere");
    let text = "hello";
    let r = first(
        &mut b,
        (inv.replace("z9hG4bKr1", "z9hG4bKr3")
            .replace("Call-ID: phone-call@", "Call-ID: text-call@")
            .split("Content-Type:")
            .next()
            .unwrap()
            .to_string()
            + &format!(
                "Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            ))
            .into_bytes(),
    );
    assert!(r.starts_with("SIP/2.0 415"), "{r}");
    assert_eq!(header(&r, "Accept"), "application/sdp");
    // RFC 4475 sdp01: an offer from one that accepts no SDP answer.
    let with_accept = |branch: &str, call: &str, accept: &str| {
        inv.replace("z9hG4bKr1", branch)
            .replace("Call-ID: phone-call@", &format!("Call-ID: {call}@"))
            .replacen("\r\n", &format!("\r\nAccept: {accept}\r\n"), 1)
            .into_bytes()
    };
    let r = first(
        &mut b,
        with_accept("z9hG4bKa1", "acc1", "text/nobodyKnowsThis"),
    );
    assert!(r.starts_with("SIP/2.0 406"), "{r}");
    assert_eq!(header(&r, "Accept"), "application/sdp");
    assert!(header(&r, "Warning").starts_with("399 "), "{r}");
    let r = first(
        &mut b,
        b"OPTIONS sip:10.100.0.1 SIP/7.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch=z9hG4bKv7\r\nFrom: <sip:1001@10.100.0.1>;tag=v\r\nTo: <sip:10.100.0.1>\r\nCall-ID: v7\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n".to_vec(),
    );
    assert!(
        r.starts_with("SIP/2.0 505"),
        "malformed requests are answered: {r}"
    );
    let reg = "REGISTER sip:198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch=z9hG4bKu2\r\nFrom: <isbn:2983792873>;tag=u\r\nTo: <isbn:2983792873>\r\nCall-ID: u2\r\nCSeq: 1 REGISTER\r\nContact: <sip:1001@10.100.0.50:5070>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let r = first(&mut b, reg.as_bytes().to_vec());
    assert!(r.starts_with("SIP/2.0 400"), "{r}");
    assert!(b.calls(t0).is_empty());

    // A good INVITE: unknown headers pass, Max-Forwards counts down.
    let good = inv.replace("z9hG4bKr1", "z9hG4bKr9").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 12\r\nX-Practice-Ref: surgery 7 (10.100.0.50)\r\n",
    );
    b.receive(t0, good.as_bytes(), phone());
    let up = to(&sent(&mut b), provider()).remove(0);
    assert_eq!(header(&up, "Max-Forwards"), "11");
    assert_eq!(
        header(&up, "X-Practice-Ref"),
        "surgery 7 (198.51.100.10)",
        "passed through, LAN address hidden"
    );
    b.receive(
        t0,
        &answer(&up, "486 Busy Here", "pv", "X-Queue-Position: 3\r\n", ""),
        provider(),
    );
    let busy = to(&sent(&mut b), phone()).remove(0);
    assert_eq!(header(&busy, "X-Queue-Position"), "3");
    // Offers from senders that accept SDP one way or another are relayed.
    for (i, accept) in ["text/html, Application/SDP;level=1", "application/*", "*/*"]
        .into_iter()
        .enumerate()
    {
        let bytes = with_accept(
            &format!("z9hG4bKa{}", i + 2),
            &format!("acc{}", i + 2),
            accept,
        );
        b.receive(t0, &bytes, phone());
        let out = sent(&mut b);
        assert!(
            to(&out, phone())
                .iter()
                .all(|m| m.starts_with("SIP/2.0 100 ")),
            "{accept}: {out:?}"
        );
        assert!(
            to(&out, provider())
                .iter()
                .any(|m| m.starts_with("INVITE ")),
            "{accept}: {out:?}"
        );
    }
}

/// Sets up an answered outbound call with Call-ID `call@10.100.0.50` (phone tag `ph1`, the
/// provider's tag `pv-call`); returns the INVITE the provider got and the box's To (with its
/// LAN tag) as the phone saw it.
fn answered_call(b: &mut B2bua, t0: Instant, call: &str) -> (String, String) {
    let inv = String::from_utf8(invite(&format!("z9hG4bK{call}"), 1))
        .unwrap()
        .replace("phone-call@", &format!("{call}@"));
    b.receive(t0, inv.as_bytes(), phone());
    let up = to(&sent(b), provider()).remove(0);
    b.receive(
        t0,
        &answer(
            &up,
            "200 OK",
            &format!("pv-{call}"),
            "Contact: <sip:bob@198.51.100.10:5060>\r\n",
            PSDP,
        ),
        provider(),
    );
    let ok = to(&sent(b), phone()).remove(0);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    (up, header(&ok, "To").to_string())
}

/// Attended transfer: the phone's REFER names its second call's LAN dialog in
/// `Refer-To: ...?Replaces=`; the provider gets the same call's WAN dialog (its own Call-ID and
/// tags), and an INVITE with Replaces from the provider reaches the phone with the LAN one.
#[test]
fn replaces_names_the_far_legs_dialog_in_both_directions() {
    let t0 = Instant::now();
    let (mut b, _) = b2bua();
    let (_, to1) = answered_call(&mut b, t0, "first");
    let (up2, to2) = answered_call(&mut b, t0, "second");
    let box_lan_tag2 = to2.split("tag=").nth(1).unwrap();
    let wan_call_id2 = header(&up2, "Call-ID");
    let box_wan_tag2 = header(&up2, "From").split("tag=").nth(1).unwrap();

    let refer_to = format!(
        "<sip:1003@198.51.100.10?Replaces=second%4010.100.0.50%3Bto-tag%3D{box_lan_tag2}%3Bfrom-tag%3Dph1>"
    );
    let refer = String::from_utf8(phone_request(
        "REFER",
        &to1,
        3,
        &format!("Refer-To: {refer_to}\r\nContact: <sip:1001@10.100.0.50:5070>\r\n"),
    ))
    .unwrap()
    .replace("phone-call@", "first@");
    b.receive(t0, refer.as_bytes(), phone());
    let up = to(&sent(&mut b), provider()).remove(0);
    assert!(up.starts_with("REFER "), "{up}");
    let expected = format!(
        "<sip:1003@198.51.100.10?Replaces={}%3Bto-tag%3Dpv-second%3Bfrom-tag%3D{box_wan_tag2}>",
        wan_call_id2.replace('@', "%40")
    );
    assert_eq!(header(&up, "Refer-To"), expected);
    assert!(!up.contains("10.100.0."), "{up}");

    // A dialog the box does not hold passes as written (apart from hiding).
    let unknown = refer
        .replace("branch=z9hG4bKp3", "branch=z9hG4bKp4")
        .replace("CSeq: 3 REFER", "CSeq: 4 REFER")
        .replace(box_lan_tag2, "not-ours");
    b.receive(t0, unknown.as_bytes(), phone());
    let up = to(&sent(&mut b), provider()).remove(0);
    assert!(
        header(&up, "Refer-To").contains("to-tag%3Dnot-ours"),
        "{up}"
    );

    // The provider replaces the second call with a new one: the phone hears of its own dialog.
    let contact = register_phone(&mut b, t0);
    let from_provider = format!(
        "INVITE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKrep\r\nFrom: <sip:1003@198.51.100.10>;tag=pv-new\r\nTo: <sip:1001@198.51.100.10>\r\nCall-ID: replacing@198.51.100.10\r\nCSeq: 1 INVITE\r\nContact: <sip:1003@198.51.100.10:5060>\r\nReplaces: {wan_call_id2};to-tag={box_wan_tag2};from-tag=pv-second;early-only\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{PSDP}",
        PSDP.len()
    );
    b.receive(t0, from_provider.as_bytes(), provider());
    let down = to(&sent(&mut b), phone())
        .into_iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("INVITE to the phone");
    assert_eq!(
        header(&down, "Replaces"),
        format!("second@10.100.0.50;to-tag=ph1;from-tag={box_lan_tag2};early-only")
    );
}

fn phone_b() -> Peer {
    Peer {
        side: sip::transaction::Side::Lan,
        addr: "10.100.0.51:5070".parse().unwrap(),
        reliable: false,
    }
}

/// Registers `ip`'s phone for 1001 (a line it shares); returns the upstream REGISTER.
fn register_line(b: &mut B2bua, t0: Instant, from: Peer, branch: &str, expires: u32) -> String {
    let ip = from.addr.ip();
    let reg = format!("REGISTER sip:198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP {ip}:5070;branch={branch}\r\nFrom: <sip:1001@198.51.100.10>;tag=r{ip}\r\nTo: <sip:1001@198.51.100.10>\r\nCall-ID: reg@{ip}\r\nCSeq: {expires}1 REGISTER\r\nContact: <sip:1001@{ip}:5070>\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n");
    b.receive(t0, reg.as_bytes(), from);
    let up = to(&sent(b), provider()).remove(0);
    let contact = header(&up, "Contact").to_string();
    let granted = if expires == 0 {
        String::new()
    } else {
        format!("Contact: {contact};expires={expires}\r\n")
    };
    b.receive(t0, &answer(&up, "200 OK", "rg", &granted, ""), provider());
    let ok = to(&sent(b), from).remove(0);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    up
}

/// Two phones sharing a line: each is registered upstream on its own (Call-ID, Contact), the
/// provider's INVITE forked to both rings both (same Call-ID), the one that answers gets the
/// call, the other is cancelled; unregistering one leaves the other.
#[test]
fn a_shared_line_rings_every_phone_and_the_provider_picks_the_answer() {
    let t0 = Instant::now();
    let (mut b, _) = b2bua();
    let up_a = register_line(&mut b, t0, phone(), "z9hG4bKra", 300);
    let up_b = register_line(&mut b, t0, phone_b(), "z9hG4bKrb", 300);
    assert_ne!(header(&up_a, "Call-ID"), header(&up_b, "Call-ID"));
    assert_ne!(header(&up_a, "Contact"), header(&up_b, "Contact"));
    let regs = b.registrations(t0);
    assert_eq!(regs.len(), 2, "{regs:?}");
    assert!(regs
        .iter()
        .all(|r| r.state == "registered" && r.aor == "sip:1001@198.51.100.10"));

    // The provider forks one INVITE to both contacts.
    let uri = |up: &str| header(up, "Contact").trim_matches(['<', '>']).to_string();
    let fork = |ruri: &str, branch: &str| {
        format!("INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch={branch}\r\nFrom: <sip:01632960123@198.51.100.10>;tag=pvf\r\nTo: <sip:1001@198.51.100.10>\r\nCall-ID: fork@198.51.100.10\r\nCSeq: 7 INVITE\r\nContact: <sip:01632960123@198.51.100.10:5060>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{PSDP}", PSDP.len())
    };
    let (inv_a, inv_b) = (
        fork(&uri(&up_a), "z9hG4bKfa"),
        fork(&uri(&up_b), "z9hG4bKfb"),
    );
    b.receive(t0, inv_a.as_bytes(), provider());
    b.receive(t0, inv_b.as_bytes(), provider());
    let out = sent(&mut b);
    let at_a = to(&out, phone())
        .into_iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("phone A rings");
    let at_b = to(&out, phone_b())
        .into_iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("phone B rings");
    assert_eq!(b.calls(t0).len(), 2);

    // Phone B answers: the provider hears it on fork B's transaction.
    b.receive(
        t0,
        &answer(
            &at_b,
            "200 OK",
            "phb",
            "Contact: <sip:1001@10.100.0.51:5070>\r\n",
            SDP,
        ),
        phone_b(),
    );
    let ok = to(&sent(&mut b), provider())
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 200"))
        .expect("200 upstream");
    assert!(header(&ok, "Via").contains("z9hG4bKfb"), "{ok}");
    let box_tag_b = header(&ok, "To").split("tag=").nth(1).unwrap().to_string();

    // The provider cancels fork A: phone A stops ringing, fork A ends with 487.
    let cancel = format!("CANCEL {} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKfa\r\nFrom: <sip:01632960123@198.51.100.10>;tag=pvf\r\nTo: <sip:1001@198.51.100.10>\r\nCall-ID: fork@198.51.100.10\r\nCSeq: 7 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", uri(&up_a));
    b.receive(t0, cancel.as_bytes(), provider());
    let out = sent(&mut b);
    assert!(
        to(&out, phone()).iter().any(|m| m.starts_with("CANCEL ")),
        "{out:?}"
    );
    assert!(
        to(&out, phone_b()).is_empty(),
        "phone B's call is untouched: {out:?}"
    );
    let up: Vec<String> = to(&out, provider());
    assert!(
        up.iter()
            .any(|m| m.starts_with("SIP/2.0 487") && header(m, "Via").contains("z9hG4bKfa")),
        "{up:?}"
    );
    b.receive(
        t0,
        &answer(&at_a, "487 Request Terminated", "pha", "", ""),
        phone(),
    );
    sent(&mut b);

    // The provider hangs up the answered fork: phone B gets the BYE, not phone A.
    let bye = format!("BYE sip:voxgate@10.200.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKbye\r\nFrom: <sip:01632960123@198.51.100.10>;tag=pvf\r\nTo: <sip:1001@198.51.100.10>;tag={box_tag_b}\r\nCall-ID: fork@198.51.100.10\r\nCSeq: 8 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    b.receive(t0, bye.as_bytes(), provider());
    let out = sent(&mut b);
    assert!(
        to(&out, phone_b()).iter().any(|m| m.starts_with("BYE ")),
        "{out:?}"
    );
    assert!(to(&out, phone()).is_empty(), "{out:?}");

    // Phone A leaves the line: only its own binding is removed upstream.
    let un = register_line(&mut b, t0, phone(), "z9hG4bKrc", 0);
    assert_eq!(header(&un, "Call-ID"), header(&up_a, "Call-ID"));
    assert!(
        header(&un, "Contact").starts_with(&format!("<{}>", uri(&up_a))),
        "{un}"
    );
    let regs = b.registrations(t0);
    let live: Vec<_> = regs.iter().filter(|r| r.state == "registered").collect();
    assert_eq!(live.len(), 1, "{regs:?}");
    assert_eq!(live[0].phone_addr, phone_b().addr);
}

/// Record-routing proxies at the provider (RFC 3261 12.1): on an inbound call the box's
/// answers echo the INVITE's Record-Route and its own requests on that leg carry the route
/// set in order; on an outbound call its ACK and BYE carry the 2xx's Record-Route reversed.
#[test]
fn dialogs_through_record_routing_proxies_keep_their_route_sets() {
    let t0 = Instant::now();
    let (mut b, _) = b2bua();
    // Outbound: the provider's 200 names two proxies.
    b.receive(t0, &invite("z9hG4bKrr1", 1), phone());
    let up = to(&sent(&mut b), provider()).remove(0);
    b.receive(
        t0,
        &answer(
            &up,
            "200 OK",
            "pv",
            "Record-Route: <sip:edge2.provider.example;lr>, <sip:edge1.provider.example;lr;ftag=x>\r\nContact: <sip:bob@198.51.100.10:5060>\r\n",
            PSDP,
        ),
        provider(),
    );
    let out = sent(&mut b);
    let ack = to(&out, provider())
        .into_iter()
        .find(|m| m.starts_with("ACK "))
        .expect("ACK");
    let routes = |m: &str| -> Vec<String> {
        m.lines()
            .filter_map(|l| l.strip_prefix("Route: "))
            .map(str::to_string)
            .collect()
    };
    let expected = [
        "<sip:edge1.provider.example;lr;ftag=x>",
        "<sip:edge2.provider.example;lr>",
    ];
    assert_eq!(routes(&ack), expected, "{ack}");
    assert!(ack.starts_with("ACK sip:bob@198.51.100.10:5060 "), "{ack}");
    let ok = to(&out, phone())
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 200"))
        .unwrap();
    assert!(
        !ok.contains("Record-Route"),
        "the phone's leg has no proxies: {ok}"
    );
    let box_to = header(&ok, "To").to_string();
    b.receive(t0, &phone_request("BYE", &box_to, 2, ""), phone());
    let bye = to(&sent(&mut b), provider())
        .into_iter()
        .find(|m| m.starts_with("BYE "))
        .unwrap();
    assert_eq!(routes(&bye), expected, "{bye}");

    // Inbound: the INVITE arrives through two proxies.
    let contact = register_phone(&mut b, t0);
    let inv = format!(
        "INVITE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKin7\r\nRecord-Route: <sip:edge1.provider.example;lr>\r\nRecord-Route: <sip:core.provider.example;lr>\r\nFrom: <sip:01632960123@198.51.100.10>;tag=pvin\r\nTo: <sip:1001@198.51.100.10>\r\nCall-ID: rr-in@198.51.100.10\r\nCSeq: 1 INVITE\r\nContact: <sip:01632960123@198.51.100.10:5060>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{PSDP}",
        PSDP.len()
    );
    b.receive(t0, inv.as_bytes(), provider());
    let down = to(&sent(&mut b), phone())
        .into_iter()
        .find(|m| m.starts_with("INVITE "))
        .unwrap();
    assert!(!down.contains("Route"), "{down}");
    b.receive(
        t0,
        &answer(
            &down,
            "200 OK",
            "ph",
            "Contact: <sip:1001@10.100.0.50:5070>\r\n",
            SDP,
        ),
        phone(),
    );
    let ok = to(&sent(&mut b), provider())
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 200"))
        .unwrap();
    let rr: Vec<&str> = ok
        .lines()
        .filter_map(|l| l.strip_prefix("Record-Route: "))
        .collect();
    assert_eq!(
        rr,
        [
            "<sip:edge1.provider.example;lr>",
            "<sip:core.provider.example;lr>"
        ],
        "{ok}"
    );
    // The phone hangs up: the box's BYE to the provider follows the route set in order.
    let phone_bye = format!(
        "BYE sip:voxgate@10.100.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch=z9hG4bKpb\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        header(&down, "To").to_string() + ";tag=ph",
        header(&down, "From"),
        header(&down, "Call-ID"),
    );
    b.receive(t0, phone_bye.as_bytes(), phone());
    let bye = to(&sent(&mut b), provider())
        .into_iter()
        .find(|m| m.starts_with("BYE "))
        .expect("BYE upstream");
    assert_eq!(
        routes(&bye),
        [
            "<sip:edge1.provider.example;lr>",
            "<sip:core.provider.example;lr>"
        ],
        "{bye}"
    );
    assert!(
        bye.starts_with("BYE sip:01632960123@198.51.100.10:5060 "),
        "{bye}"
    );
}
