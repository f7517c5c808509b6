//! Out-of-dialog requests through the B2BUA core on a fake clock: SUBSCRIBE dialogs (busy-lamp
//! field), unsolicited NOTIFY (message waiting) and MESSAGE with a digest challenge.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn tag_of(h: &str) -> &str {
    h.split(";tag=").nth(1).unwrap().split(';').next().unwrap()
}

fn subscribe(cseq: u32, to_tag: Option<&str>) -> Vec<u8> {
    let to = match to_tag {
        Some(t) => format!("<sip:1002@198.51.100.10>;tag={t}"),
        None => "<sip:1002@198.51.100.10>".into(),
    };
    format!(
        "SUBSCRIBE sip:1002@198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch=z9hG4bKs{cseq};rport\r\nFrom: <sip:1001@198.51.100.10>;tag=s1\r\nTo: {to}\r\nCall-ID: blf-1@10.100.0.50\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:1001@10.100.0.50:5070>\r\nEvent: dialog\r\nAccept: application/dialog-info+xml\r\nExpires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A NOTIFY from the provider on the subscription dialog of `sub` (the SUBSCRIBE it received).
fn notify(sub: &str, notifier_tag: &str, cseq: u32, state: &str) -> Vec<u8> {
    let body = "<dialog-info/>";
    format!(
        "NOTIFY {} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKn{cseq}\r\nFrom: <sip:1002@198.51.100.10>;tag={notifier_tag}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} NOTIFY\r\nContact: <sip:pres@198.51.100.10:5060>\r\nEvent: dialog\r\nSubscription-State: {state}\r\nContent-Type: application/dialog-info+xml\r\nMax-Forwards: 70\r\nContent-Length: {}\r\n\r\n{body}",
        header(sub, "Contact").trim_matches(|c| c == '<' || c == '>'),
        header(sub, "From"),
        header(sub, "Call-ID"),
        body.len()
    )
    .into_bytes()
}

#[test]
fn busy_lamp_subscription_with_notify_before_the_answer_refresh_and_end() {
    let t0 = Instant::now();
    let (mut b, rec) = b2bua();
    b.receive(t0, &subscribe(1, None), phone());
    let up = to(&sent(&mut b), provider()).remove(0);
    assert!(
        up.starts_with("SUBSCRIBE sip:1002@198.51.100.10 SIP/2.0"),
        "{up}"
    );
    assert!(!up.contains("10.100.0."), "topology hidden upstream:\n{up}");
    assert_ne!(header(&up, "Call-ID"), "blf-1@10.100.0.50");
    assert_eq!(header(&up, "Event"), "dialog");
    assert_eq!(header(&up, "Expires"), "600");
    assert!(header(&up, "Contact").contains("10.200.0.2"));

    // The first NOTIFY overtakes the 200 (RFC 6665 4.1.2.4): it reaches the phone on the
    // phone's dialog, and the phone's 200 goes back upstream.
    b.receive(t0, &notify(&up, "pv7", 1, "active;expires=600"), provider());
    let down = to(&sent(&mut b), phone()).remove(0);
    assert!(
        down.starts_with("NOTIFY sip:1001@10.100.0.50:5070 SIP/2.0"),
        "{down}"
    );
    assert_eq!(header(&down, "Call-ID"), "blf-1@10.100.0.50");
    assert_eq!(tag_of(header(&down, "To")), "s1");
    assert_eq!(header(&down, "Subscription-State"), "active;expires=600");
    assert!(down.ends_with("<dialog-info/>"));
    assert!(header(&down, "Contact").contains("10.100.0.1"));
    let box_tag = tag_of(header(&down, "From")).to_string();
    b.receive(t0, &answer(&down, "200 OK", "x", "", ""), phone());
    let ok_up = to(&sent(&mut b), provider()).remove(0);
    assert!(ok_up.starts_with("SIP/2.0 200"), "{ok_up}");
    assert_eq!(header(&ok_up, "CSeq"), "1 NOTIFY");

    // The 200 to the SUBSCRIBE carries the same tag the NOTIFY came with.
    b.receive(
        t0,
        &answer(
            &up,
            "200 OK",
            "pv7",
            "Expires: 600\r\nContact: <sip:pres@198.51.100.10:5060>\r\n",
            "",
        ),
        provider(),
    );
    let ok = to(&sent(&mut b), phone()).remove(0);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(tag_of(header(&ok, "To")), box_tag);
    assert_eq!(header(&ok, "Expires"), "600");
    assert!(header(&ok, "Contact").contains("10.100.0.1"));
    assert_eq!(b.subscriptions(), 1);
    assert!(b.calls(t0).is_empty(), "subscriptions are not calls");

    // A refresh from the phone goes out in the upstream dialog.
    let t1 = t0 + Duration::from_secs(500);
    b.receive(t1, &subscribe(2, Some(&box_tag)), phone());
    let refresh = to(&sent(&mut b), provider()).remove(0);
    assert!(
        refresh.starts_with("SUBSCRIBE sip:pres@198.51.100.10:5060 SIP/2.0"),
        "{refresh}"
    );
    assert_eq!(header(&refresh, "Call-ID"), header(&up, "Call-ID"));
    assert_eq!(tag_of(header(&refresh, "To")), "pv7");
    b.receive(
        t1,
        &answer(&refresh, "200 OK", "pv7", "Expires: 600\r\n", ""),
        provider(),
    );
    assert!(to(&sent(&mut b), phone())[0].starts_with("SIP/2.0 200"));
    // Still held past the first expiry: the refresh extended it.
    b.handle_timeout(t0 + Duration::from_secs(700));
    assert_eq!(b.subscriptions(), 1);

    // The notifier ends it.
    b.receive(
        t1,
        &notify(&up, "pv7", 2, "terminated;reason=timeout"),
        provider(),
    );
    let last = to(&sent(&mut b), phone()).remove(0);
    b.receive(t1, &answer(&last, "200 OK", "x", "", ""), phone());
    sent(&mut b);
    assert_eq!(b.subscriptions(), 0);
    assert!(
        rec.lock().unwrap().ops.is_empty(),
        "no media for subscriptions"
    );
}

#[test]
fn an_unrefreshed_subscription_lapses() {
    let t0 = Instant::now();
    let (mut b, _) = b2bua();
    b.receive(t0, &subscribe(1, None), phone());
    let up = to(&sent(&mut b), provider()).remove(0);
    b.receive(
        t0,
        &answer(&up, "202 Accepted", "pv", "Expires: 60\r\n", ""),
        provider(),
    );
    sent(&mut b);
    assert_eq!(b.subscriptions(), 1);
    b.handle_timeout(t0 + Duration::from_secs(80));
    assert_eq!(b.subscriptions(), 1, "kept for a late refresh");
    b.handle_timeout(t0 + Duration::from_secs(93));
    assert_eq!(b.subscriptions(), 0);
}

#[test]
fn unsolicited_message_waiting_notify_reaches_the_registered_phone() {
    let t0 = Instant::now();
    let (mut b, _) = b2bua();
    let target = register_phone(&mut b, t0);
    let body = "Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/2)\r\n";
    let mwi = |uri: &str, cid: &str| {
        format!("NOTIFY {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK{cid}\r\nFrom: <sip:voicemail@198.51.100.10>;tag=vm\r\nTo: <sip:1001@198.51.100.10>\r\nCall-ID: {cid}\r\nCSeq: 1 NOTIFY\r\nEvent: message-summary\r\nSubscription-State: terminated\r\nContent-Type: application/simple-message-summary\r\nMax-Forwards: 70\r\nContent-Length: {}\r\n\r\n{body}", body.len())
    };
    b.receive(t0, mwi(&target, "mwi1").as_bytes(), provider());
    let down = to(&sent(&mut b), phone()).remove(0);
    assert!(
        down.starts_with("NOTIFY sip:1001@10.100.0.50:5070 SIP/2.0"),
        "{down}"
    );
    assert_eq!(header(&down, "Event"), "message-summary");
    assert_eq!(
        header(&down, "Content-Type"),
        "application/simple-message-summary"
    );
    assert!(down.ends_with(body));
    b.receive(t0, &answer(&down, "200 OK", "ph", "", ""), phone());
    let ok = to(&sent(&mut b), provider()).remove(0);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(header(&ok, "Call-ID"), "mwi1");
    assert_eq!(b.subscriptions(), 0);
    assert!(b.calls(t0).is_empty());

    // Nobody registered under that token: 404, nothing reaches the LAN.
    b.receive(
        t0,
        mwi("sip:nobody@10.200.0.2:5060", "mwi2").as_bytes(),
        provider(),
    );
    let out = sent(&mut b);
    assert!(to(&out, phone()).is_empty());
    assert!(to(&out, provider())[0].starts_with("SIP/2.0 404"));
}

#[test]
fn message_challenged_then_sent_with_credentials_on_the_same_leg() {
    let t0 = Instant::now();
    let (mut b, _) = b2bua();
    let message = |cseq: u32, auth: &str| {
        let body = "hello reception";
        format!("MESSAGE sip:1002@10.100.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch=z9hG4bKm{cseq};rport\r\nFrom: <sip:1001@10.100.0.1>;tag=m1\r\nTo: <sip:1002@10.100.0.1>\r\nCall-ID: msg-1@10.100.0.50\r\nCSeq: {cseq} MESSAGE\r\n{auth}Content-Type: text/plain\r\nMax-Forwards: 70\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    };
    b.receive(t0, &message(1, ""), phone());
    let up = to(&sent(&mut b), provider()).remove(0);
    assert!(
        up.starts_with("MESSAGE sip:1002@198.51.100.10 SIP/2.0"),
        "the box's own address is replaced by the provider's domain:\n{up}"
    );
    assert!(!up.contains("10.100.0."), "{up}");
    assert!(up.ends_with("hello reception"));
    b.receive(
        t0,
        &answer(
            &up,
            "407 Proxy Authentication Required",
            "pa",
            "Proxy-Authenticate: Digest realm=\"lab\", nonce=\"n1\"\r\n",
            "",
        ),
        provider(),
    );
    let ch = to(&sent(&mut b), phone()).remove(0);
    assert!(ch.starts_with("SIP/2.0 407"), "{ch}");
    assert!(header(&ch, "Proxy-Authenticate").contains("nonce=\"n1\""));

    let creds = "Proxy-Authorization: Digest username=\"1001\", realm=\"lab\", nonce=\"n1\", uri=\"sip:1002@10.100.0.1\", response=\"0123456789abcdef0123456789abcdef\"\r\n";
    b.receive(t0, &message(2, creds), phone());
    let again = to(&sent(&mut b), provider()).remove(0);
    assert_eq!(header(&again, "Call-ID"), header(&up, "Call-ID"));
    assert!(header(&again, "CSeq").starts_with("2 MESSAGE"));
    assert_eq!(
        header(&again, "Proxy-Authorization"),
        creds.trim_end().trim_start_matches("Proxy-Authorization: ")
    );
    b.receive(
        t0,
        &answer(&again, "202 Accepted", "pa", "", ""),
        provider(),
    );
    let ok = to(&sent(&mut b), phone()).remove(0);
    assert!(ok.starts_with("SIP/2.0 202"), "{ok}");
    // Nothing is left behind once the transaction is over.
    b.handle_timeout(t0 + Duration::from_secs(40));
    assert_eq!(b.subscriptions(), 0);
    assert!(b.calls(t0).is_empty());
}
