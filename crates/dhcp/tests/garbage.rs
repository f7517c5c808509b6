//! Thousands of random and mutated datagrams through the packet path the fuzz target drives
//! (`Engine::handle_bytes`: parse, then the engine), on stable Rust: nothing panics, malformed
//! input is counted, and every reply is a well-formed DHCP message within the size limit.

use std::net::Ipv4Addr;
use std::path::Path;

use dhcp::engine::{Engine, LeaseStatus};
use dhcp::settings::{Settings, ZONEINFO};
use dhcproto::v4::{self, DhcpOption, OptionCode};
use dhcproto::{Decodable, Encodable};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A valid client message of a random kind from one of 40 clients.
fn valid(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(40) as u8;
    let addr = Ipv4Addr::new(10, 100, 0, 100 + rng.below(110) as u8);
    let kinds = [
        v4::MessageType::Discover,
        v4::MessageType::Request,
        v4::MessageType::Request,
        v4::MessageType::Decline,
        v4::MessageType::Release,
        v4::MessageType::Inform,
    ];
    let kind = kinds[rng.below(kinds.len())];
    let ciaddr = if rng.below(2) == 0 {
        addr
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let mut m = v4::Message::new(
        ciaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &[2, 0, 0, 0, 0, n],
    );
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    if rng.below(2) == 0 {
        o.insert(DhcpOption::RequestedIpAddress(addr));
    }
    if rng.below(2) == 0 {
        o.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 100, 0, 1)));
    }
    if rng.below(2) == 0 {
        o.insert(DhcpOption::ParameterRequestList(
            (0..rng.below(40))
                .map(|_| OptionCode::from(rng.below(256) as u8))
                .collect(),
        ));
    }
    if rng.below(3) == 0 {
        o.insert(DhcpOption::MaxMessageSize(rng.below(2000) as u16));
    }
    if rng.below(3) == 0 {
        o.insert(DhcpOption::ClassIdentifier(b"Yealink SIP-T46S".to_vec()));
    }
    m.to_vec().unwrap()
}

fn mutate(rng: &mut Rng, mut p: Vec<u8>) -> Vec<u8> {
    match rng.below(7) {
        // Flip a few bytes anywhere.
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(p.len());
                p[i] ^= 1 << rng.below(8);
            }
        }
        // Truncate.
        1 => p.truncate(rng.below(p.len())),
        // Lie about an option's length.
        2 => {
            let i = 240 + rng.below(p.len() - 240);
            p[i] = rng.below(256) as u8;
        }
        // Giant options: the same code repeated (RFC 3396 concatenation), maybe unterminated.
        3 => {
            p.pop();
            let code = rng.below(255) as u8 + 1;
            for _ in 0..rng.below(20) {
                p.push(code);
                p.push(255);
                p.extend((0..255).map(|_| rng.below(256) as u8));
            }
        }
        // Wrong op, absurd hardware length, no magic cookie.
        4 => {
            let (i, v) = [(0, 2), (2, 200), (236, 0)][rng.below(3)];
            p[i] = v;
        }
        // Pure noise.
        5 => p = (0..rng.below(700)).map(|_| rng.below(256) as u8).collect(),
        _ => {}
    }
    p
}

#[test]
fn random_and_mutated_packets_never_break_the_engine() {
    let loaded = config::load_str(Path::new("lab.yaml"), config::LAB_CONFIG, &[]).unwrap();
    let mut e = Engine::new(
        Settings::from_config(&loaded.config, Path::new(ZONEINFO)),
        [],
    );
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut now = 1_700_000_000;
    for _ in 0..5000 {
        let packet = valid(&mut rng);
        let packet = mutate(&mut rng, packet);
        let out = e.handle_bytes(now, &packet);
        if let Some(r) = out.reply {
            assert!(r.bytes.len() <= dhcp::wire::MAX_MESSAGE);
            let m = v4::Message::from_bytes(&r.bytes).expect("replies decode");
            assert_eq!(m.opcode(), v4::Opcode::BootReply);
            assert_eq!(&m.xid().to_be_bytes()[..], &packet[4..8]);
        }
        now += rng.below(120) as u64;
    }
    let s = e.stats();
    assert_eq!(s.received, 5000);
    assert!(s.malformed > 1000, "{s:?}");
    assert!(s.offers + s.acks + s.naks > 500, "{s:?}");
    // Whatever happened, every address in use is one of the lab's pool.
    let pool = Ipv4Addr::new(10, 100, 0, 100)..=Ipv4Addr::new(10, 100, 0, 199);
    for l in e.leases(now) {
        if matches!(l.state, LeaseStatus::Bound | LeaseStatus::Offered) {
            assert!(pool.contains(&l.address), "{l:?}");
        }
    }
}
