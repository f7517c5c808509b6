//! Helpers shared by the B2BUA tests: a fake clock is just `Instant` arithmetic; the media
//! relay is replaced by a recorder that rewrites the connection address the way the real relay
//! does (the relay itself is tested in crates/media and with real packets in the lab).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sip::b2bua::{B2bua, MediaControl, Settings};
use sip::transaction::{Peer, Side};

#[derive(Default)]
pub struct Recorded {
    pub ops: Vec<String>,
}

pub struct Recorder(pub Arc<Mutex<Recorded>>);

impl Recorder {
    pub fn rewrite(from: Side, sdp: &[u8]) -> Vec<u8> {
        let to = if from == Side::Lan {
            "10.200.0.2"
        } else {
            "10.100.0.1"
        };
        let text = String::from_utf8_lossy(sdp);
        text.lines()
            .map(|l| {
                if l.starts_with("c=IN IP4 ") {
                    format!("c=IN IP4 {to}")
                } else if l.starts_with("o=") {
                    // o=<user> <id> <version> IN IP4 <address>: the relay names itself here too.
                    let mut f: Vec<&str> = l.split(' ').collect();
                    if let Some(last) = f.last_mut() {
                        *last = to;
                    }
                    f.join(" ")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n")
            .into_bytes()
    }
}

impl MediaControl for Recorder {
    fn offer(&mut self, call: &str, from: Side, sdp: &[u8]) -> Result<Vec<u8>, String> {
        self.0
            .lock()
            .unwrap()
            .ops
            .push(format!("offer {call} {from:?}"));
        Ok(Self::rewrite(from, sdp))
    }
    fn answer(&mut self, call: &str, from: Side, sdp: &[u8]) -> Result<Vec<u8>, String> {
        self.0
            .lock()
            .unwrap()
            .ops
            .push(format!("answer {call} {from:?}"));
        Ok(Self::rewrite(from, sdp))
    }
    fn release(&mut self, call: &str) {
        self.0.lock().unwrap().ops.push(format!("release {call}"));
    }
    fn public_address(&mut self, ip: std::net::Ipv4Addr) {
        self.0.lock().unwrap().ops.push(format!("public {ip}"));
    }
}

pub fn b2bua() -> (B2bua, Arc<Mutex<Recorded>>) {
    let rec = Arc::new(Mutex::new(Recorded::default()));
    let s = Settings {
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
    };
    (B2bua::new(s, Box::new(Recorder(rec.clone()))), rec)
}

pub fn phone() -> Peer {
    Peer {
        side: Side::Lan,
        addr: "10.100.0.50:5070".parse().unwrap(),
        reliable: false,
    }
}

pub fn provider() -> Peer {
    Peer {
        side: Side::Wan,
        addr: "198.51.100.10:5060".parse().unwrap(),
        reliable: false,
    }
}

pub const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.100.0.50\r\ns=-\r\nc=IN IP4 10.100.0.50\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
pub const PSDP: &str = "v=0\r\no=- 7 7 IN IP4 198.51.100.10\r\ns=-\r\nc=IN IP4 198.51.100.10\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

pub fn invite(branch: &str, cseq: u32) -> Vec<u8> {
    format!(
        "INVITE sip:01632960123@198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch={branch};rport\r\nFrom: \"Reception\" <sip:1001@10.100.0.50>;tag=ph1\r\nTo: <sip:01632960123@198.51.100.10>\r\nCall-ID: phone-call@10.100.0.50\r\nCSeq: {cseq} INVITE\r\nContact: <sip:1001@10.100.0.50:5070>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
    .into_bytes()
}

/// What the B2BUA sent; every message (keepalives aside) must pass the checks a received
/// one does: requests are built without being parsed back.
pub fn sent(b: &mut B2bua) -> Vec<(Peer, String)> {
    std::iter::from_fn(|| b.poll_transmit())
        .inspect(|(_, m)| {
            if m.iter().any(|c| !b"\r\n".contains(c)) && !sip::stun::is_stun(m) {
                if let Err(e) = sip::message::parse(m, false) {
                    panic!(
                        "sent a message that does not parse ({e}):\n{}",
                        String::from_utf8_lossy(m)
                    );
                }
            }
        })
        .map(|(p, m)| (p, String::from_utf8(m).unwrap()))
        .collect()
}

pub fn to(out: &[(Peer, String)], p: Peer) -> Vec<String> {
    out.iter()
        .filter(|(x, _)| *x == p)
        .map(|(_, m)| m.clone())
        .collect()
}

pub fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no {name} in\n{msg}"))
}

/// A response to `req` from its receiver, with the given To tag, extra headers and body.
pub fn answer(req: &str, status: &str, tag: &str, extra: &str, body: &str) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        out += &format!("{name}: {}\r\n", header(req, name));
    }
    let to = header(req, "To");
    let to = if to.contains(";tag=") {
        to.to_string()
    } else {
        format!("{to};tag={tag}")
    };
    out += &format!("To: {to}\r\n{extra}");
    if !body.is_empty() {
        out += "Content-Type: application/sdp\r\n";
    }
    out += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    out.into_bytes()
}

/// An in-dialog request from the provider on the dialog of `ok` (its 200 to our INVITE).
pub fn provider_request(method: &str, ok_from_provider: &str, cseq: u32) -> Vec<u8> {
    format!(
        "{method} sip:voxgate@10.200.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKpv{cseq}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        header(ok_from_provider, "To"),
        header(ok_from_provider, "From"),
        header(ok_from_provider, "Call-ID"),
    )
    .into_bytes()
}

/// Registers phone 1001 through `b`; returns the contact URI the box registered upstream (the
/// provider sends requests for the phone there).
pub fn register_phone(b: &mut B2bua, t0: Instant) -> String {
    let reg = "REGISTER sip:198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.100.0.50:5070;branch=z9hG4bKr1\r\nFrom: <sip:1001@198.51.100.10>;tag=r1\r\nTo: <sip:1001@198.51.100.10>\r\nCall-ID: reg1\r\nCSeq: 1 REGISTER\r\nContact: <sip:1001@10.100.0.50:5070>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n";
    b.receive(t0, reg.as_bytes(), phone());
    let up = to(&sent(b), provider()).remove(0);
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
    sent(b);
    contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string()
}
