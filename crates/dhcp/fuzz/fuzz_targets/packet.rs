//! The packet path: bytes through `Engine::handle_bytes` (parse, then the lease engine).
//!
//! An input is a sequence of datagrams, each `[seconds to advance: u8][length: u16 BE][bytes]`,
//! fed to one fresh engine, so the fuzzer explores sequences (offer, request, decline, ...)
//! while every input stays reproducible on its own.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use dhcp::engine::Engine;
use dhcp::settings::{Settings, ZONEINFO};
use libfuzzer_sys::fuzz_target;

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let loaded = config::load_str(Path::new("lab.yaml"), config::LAB_CONFIG, &[])
            .expect("the lab configuration is valid");
        Settings::from_config(&loaded.config, Path::new(ZONEINFO))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut engine = Engine::new(settings().clone(), []);
    let mut now = 1_700_000_000u64;
    let mut rest = data;
    while let [step, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        now += u64::from(*step);
        let out = engine.handle_bytes(now, &tail[..len]);
        if let Some(reply) = out.reply {
            assert!(reply.bytes.len() <= dhcp::wire::MAX_MESSAGE);
        }
        rest = &tail[len..];
    }
});
