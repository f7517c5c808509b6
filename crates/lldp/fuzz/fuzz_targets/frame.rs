//! The receive path: neighbours' frames through `Agent::receive` (parse, then the neighbour
//! table and fast-start logic), with polls in between.
//!
//! An input is a sequence of frames, each `[milliseconds to advance / 10: u8][length: u16 BE]
//! [bytes]`, fed to one fresh agent, so the fuzzer explores sequences (new neighbour, refresh,
//! shutdown, expiry) while every input stays reproducible on its own.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use lldp::{Advert, Agent};

fuzz_target!(|data: &[u8]| {
    let advert = Advert {
        mac: [2, 0, 0, 0, 0, 1],
        port: "lan0".into(),
        port_description: String::new(),
        system_name: "fuzz".into(),
        system_description: String::new(),
        management: None,
        policies: Vec::new(),
    };
    let mut agent = Agent::new(advert, Duration::from_secs(30), 0);
    let mut now = 0u64;
    let mut rest = data;
    while let [step, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        now += u64::from(*step) * 10;
        let _ = agent.receive(now, &tail[..len]);
        let p = agent.poll(now);
        assert!(p.next > now);
        assert!(agent.neighbours(now).len() <= lldp::agent::MAX_NEIGHBOURS);
        rest = &tail[len..];
    }
});
