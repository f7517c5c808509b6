//! Admission of SIP datagrams before they are parsed, sans-IO: a token bucket per source
//! address (a phone stuck in a loop, or a flood, cannot starve the others or the box), and
//! rejection of the well-known SIP scanners by their User-Agent. Access by network (voice
//! subnet, provider networks) is checked before this, in the B2BUA.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// User-Agent substrings of SIP scanners and toll-fraud tools (lower case). The same list
/// that Kamailio's and Asterisk's hardening guides block.
const SCANNERS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipsak-scan",
    "iwar",
    "sundayddr",
    "vaxsipuseragent",
    "pplsip",
    "smap",
];

/// Messages per second a source may send on average, and the burst it may send at once.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Sustained rate.
    pub per_sec: f64,
    /// Bucket size.
    pub burst: f64,
}

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the source's rate.
    RateLimited,
    /// A known scanner.
    Scanner,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-source buckets and the scanner check.
#[derive(Debug)]
pub struct Guard {
    limit: Option<Limit>,
    buckets: HashMap<IpAddr, Bucket>,
    /// Datagrams refused, by reason.
    pub rate_limited: u64,
    /// Datagrams from scanners.
    pub scanners: u64,
    last_warned: Option<Instant>,
}

/// Sources remembered at most; beyond this, idle ones are forgotten.
const MAX_SOURCES: usize = 4096;

impl Guard {
    /// A guard allowing each source `limit` (`None`: no rate limit, scanners still refused).
    pub fn new(limit: Option<Limit>) -> Guard {
        Guard {
            limit,
            buckets: HashMap::new(),
            rate_limited: 0,
            scanners: 0,
            last_warned: None,
        }
    }

    /// Changes the limit (after a reload); buckets start afresh.
    pub fn set_limit(&mut self, limit: Option<Limit>) {
        self.limit = limit;
        self.buckets.clear();
    }

    /// Whether a datagram of `bytes` from `ip` at `now` goes on to the parser.
    pub fn admit(&mut self, now: Instant, ip: IpAddr, bytes: &[u8]) -> Result<(), Refusal> {
        if is_scanner(bytes) {
            self.scanners += 1;
            return Err(Refusal::Scanner);
        }
        let Some(limit) = self.limit else {
            return Ok(());
        };
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&ip) {
            let idle = Duration::from_secs(60);
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.at) < idle);
        }
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: limit.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * limit.per_sec).min(limit.burst);
        b.at = now;
        if b.tokens < 1.0 {
            self.rate_limited += 1;
            if self
                .last_warned
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(10))
            {
                self.last_warned = Some(now);
                tracing::warn!(source = %ip, limit = limit.per_sec, dropped = self.rate_limited, "SIP source over its rate limit: messages dropped");
            }
            return Err(Refusal::RateLimited);
        }
        b.tokens -= 1.0;
        Ok(())
    }
}

/// Whether the message names a known scanner in its User-Agent (or compact form absent: SIP
/// has none for User-Agent). Only the header section is looked at.
fn is_scanner(bytes: &[u8]) -> bool {
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let head = &bytes[..head_end];
    const NAME: &[u8] = b"user-agent";
    head.split(|b| *b == b'\n').any(|line| {
        // Only the User-Agent line is copied and lowercased (every message passes here).
        if line.len() < NAME.len() || !line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            return false;
        }
        let line = String::from_utf8_lossy(&line[NAME.len()..]).to_ascii_lowercase();
        line.trim_start()
            .strip_prefix(':')
            .is_some_and(|ua| SCANNERS.iter().any(|s| ua.contains(s)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"OPTIONS sip:100@10.100.0.1 SIP/2.0\r\nUser-Agent: Yealink T46U\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let t0 = Instant::now();
        let mut g = Guard::new(Some(Limit {
            per_sec: 10.0,
            burst: 20.0,
        }));
        let ip: IpAddr = "10.100.0.50".parse().unwrap();
        let other: IpAddr = "10.100.0.51".parse().unwrap();
        for _ in 0..20 {
            assert_eq!(g.admit(t0, ip, MSG), Ok(()));
        }
        assert_eq!(g.admit(t0, ip, MSG), Err(Refusal::RateLimited));
        assert_eq!(g.admit(t0, other, MSG), Ok(()), "others are not affected");
        // 0.5 s later: five more.
        let t1 = t0 + Duration::from_millis(500);
        for _ in 0..5 {
            assert_eq!(g.admit(t1, ip, MSG), Ok(()));
        }
        assert_eq!(g.admit(t1, ip, MSG), Err(Refusal::RateLimited));
        assert_eq!(g.rate_limited, 2);
    }

    #[test]
    fn scanners_are_refused_by_user_agent_in_any_case() {
        let mut g = Guard::new(Some(Limit {
            per_sec: 10.0,
            burst: 20.0,
        }));
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        let scan = b"OPTIONS sip:100@1.2.3.4 SIP/2.0\r\nuser-agent :  Friendly-Scanner\r\n\r\n";
        assert_eq!(g.admit(Instant::now(), ip, scan), Err(Refusal::Scanner));
        let body_only = b"MESSAGE sip:a@b SIP/2.0\r\nUser-Agent: x\r\n\r\nUser-Agent: sipvicious";
        assert_eq!(g.admit(Instant::now(), ip, body_only), Ok(()));
        assert_eq!(g.scanners, 1);
    }

    #[test]
    fn many_sources_do_not_grow_without_bound() {
        let t0 = Instant::now();
        let mut g = Guard::new(Some(Limit {
            per_sec: 1.0,
            burst: 1.0,
        }));
        for i in 0..(MAX_SOURCES as u32 + 10) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = g.admit(t0 + Duration::from_secs(61 * u64::from(i / 4096)), ip, MSG);
        }
        assert!(g.buckets.len() <= MAX_SOURCES);
    }
}
