//! Arbitrary datagrams through the SIP parser and the whole B2BUA core, from both sides:
//! nothing may panic, whatever arrives. `cargo fuzz run message` (nightly).
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip::b2bua::{B2bua, MediaControl, Settings};
use sip::transaction::{Peer, Side};

/// Media that accepts every offer unchanged: the fuzzer is after the SIP paths.
struct Echo;

impl MediaControl for Echo {
    fn offer(&mut self, _: &str, _: Side, sdp: &[u8]) -> Result<Vec<u8>, String> {
        Ok(sdp.to_vec())
    }
    fn answer(&mut self, _: &str, _: Side, sdp: &[u8]) -> Result<Vec<u8>, String> {
        Ok(sdp.to_vec())
    }
    fn release(&mut self, _: &str) {}
    fn public_address(&mut self, _: std::net::Ipv4Addr) {}
}

fuzz_target!(|data: &[u8]| {
    let _ = sip::message::parse(data, false);
    let _ = sip::message::parse(data, true);
    let mut b = B2bua::new(
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
            lan_rate_limit: 0,
            stun_server: None,
        },
        Box::new(Echo),
    );
    let now = Instant::now();
    // Split the input into datagrams at NUL bytes, alternating sides.
    for (i, chunk) in data.split(|b| *b == 0).enumerate() {
        let peer = if i % 2 == 0 {
            Peer { side: Side::Lan, addr: "10.100.0.50:5060".parse().unwrap(), reliable: false }
        } else {
            Peer { side: Side::Wan, addr: "198.51.100.10:5060".parse().unwrap(), reliable: false }
        };
        b.receive(now + Duration::from_millis(i as u64), chunk, peer);
        while b.poll_transmit().is_some() {}
    }
    b.handle_timeout(now + Duration::from_secs(60));
});
