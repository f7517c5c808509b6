//! Which provider server the box talks to, sans-IO. The servers (primary first, then the
//! fallbacks in order) are health-checked with OPTIONS every interval; a server that misses two
//! checks in a row (or times out a registration, or answers 503) is down. New registrations
//! and calls go to the first server that is up, so the box fails over to a fallback and back
//! to the primary as soon as it answers again. Dialogs already set up stay where they are.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Misses in a row after which a server counts as down.
const DOWN_AFTER: u32 = 2;

/// One provider server's health.
#[derive(Debug, Clone)]
struct Server {
    addr: SocketAddr,
    up: bool,
    /// Checks sent and not answered, in a row.
    misses: u32,
    /// A check is out and not answered yet.
    outstanding: bool,
    last_ok: Option<Instant>,
    last_error: Option<String>,
}

/// A server as `voxgate status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerState {
    /// Address and port.
    pub address: String,
    /// `active` (in use), `standby` (up, not in use) or `down`.
    pub state: String,
    /// Seconds since it last answered a check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ok_secs: Option<u64>,
    /// Why it is down (or last was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A change of the active server, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// Server in use before.
    pub from: SocketAddr,
    /// Server in use now.
    pub to: SocketAddr,
    /// True when moving back to a more preferred server.
    pub back: bool,
}

/// The provider's servers and their health.
#[derive(Debug, Clone)]
pub struct Upstreams {
    servers: Vec<Server>,
    active: usize,
    interval: Duration,
    next_check: Option<Instant>,
}

impl Upstreams {
    /// `servers` in order of preference (at least one); checked every `interval`.
    pub fn new(servers: &[SocketAddr], interval: Duration) -> Upstreams {
        assert!(!servers.is_empty(), "at least one provider server");
        Upstreams {
            servers: servers
                .iter()
                .map(|a| Server {
                    addr: *a,
                    up: true,
                    misses: 0,
                    outstanding: false,
                    last_ok: None,
                    last_error: None,
                })
                .collect(),
            active: 0,
            interval,
            next_check: None,
        }
    }

    /// The server new requests go to.
    pub fn active(&self) -> SocketAddr {
        self.servers[self.active].addr
    }

    /// Whether `addr` is one of the provider's servers.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.servers.iter().any(|s| s.addr == addr)
    }

    /// The same servers with a new interval keep their health; otherwise start afresh.
    pub fn reconfigure(&mut self, servers: &[SocketAddr], interval: Duration) {
        let same = servers.len() == self.servers.len()
            && servers.iter().zip(&self.servers).all(|(a, s)| *a == s.addr);
        if same {
            self.interval = interval;
        } else {
            *self = Upstreams::new(servers, interval);
        }
    }

    /// When checks are next due (`None` until [`Upstreams::start`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_check
    }

    /// Starts the checks: the first round goes out now.
    pub fn start(&mut self, now: Instant) {
        if self.next_check.is_none() {
            self.next_check = Some(now);
        }
    }

    /// The servers to check now (one round every interval). A check still unanswered from the
    /// last round is a miss. Returns the switch this caused, if any.
    pub fn due(&mut self, now: Instant) -> (Vec<SocketAddr>, Option<Switch>) {
        if self.next_check.is_none_or(|t| now < t) {
            return (Vec::new(), None);
        }
        self.next_check = Some(now + self.interval);
        for s in &mut self.servers {
            if s.outstanding {
                s.misses += 1;
                if s.misses >= DOWN_AFTER && s.up {
                    s.up = false;
                    s.last_error = Some(format!("no answer to {} health checks", s.misses));
                    tracing::warn!(server = %s.addr, "provider server down: no answer to health checks");
                }
            }
            s.outstanding = true;
        }
        let to = self.servers.iter().map(|s| s.addr).collect();
        (to, self.choose())
    }

    /// `addr` answered a check (or any request) with `code`.
    pub fn answered(&mut self, now: Instant, addr: SocketAddr, code: u16) -> Option<Switch> {
        let s = self.servers.iter_mut().find(|s| s.addr == addr)?;
        if code == 503 {
            s.outstanding = false;
            return self.failed(addr, "503 Service Unavailable");
        }
        s.outstanding = false;
        s.misses = 0;
        s.last_ok = Some(now);
        if !s.up {
            s.up = true;
            tracing::info!(server = %s.addr, "provider server up again");
        }
        self.choose()
    }

    /// `addr` failed a request outright (a registration timed out, or 503): down at once.
    pub fn failed(&mut self, addr: SocketAddr, why: &str) -> Option<Switch> {
        let s = self.servers.iter_mut().find(|s| s.addr == addr)?;
        if s.up {
            tracing::warn!(server = %s.addr, reason = why, "provider server down");
        }
        s.up = false;
        s.misses = s.misses.max(DOWN_AFTER);
        s.last_error = Some(why.to_string());
        self.choose()
    }

    /// Moves to the most preferred server that is up (none up: stay).
    fn choose(&mut self) -> Option<Switch> {
        let best = self.servers.iter().position(|s| s.up)?;
        if best == self.active {
            return None;
        }
        let sw = Switch {
            from: self.servers[self.active].addr,
            to: self.servers[best].addr,
            back: best < self.active,
        };
        self.active = best;
        Some(sw)
    }

    /// Every server's state, in order of preference.
    pub fn states(&self, now: Instant) -> Vec<ServerState> {
        self.servers
            .iter()
            .enumerate()
            .map(|(i, s)| ServerState {
                address: s.addr.to_string(),
                state: if !s.up {
                    "down"
                } else if i == self.active {
                    "active"
                } else {
                    "standby"
                }
                .into(),
                last_ok_secs: s
                    .last_ok
                    .map(|t| now.saturating_duration_since(t).as_secs()),
                last_error: s.last_error.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> [SocketAddr; 2] {
        [
            "198.51.100.10:5060".parse().unwrap(),
            "198.51.100.11:5060".parse().unwrap(),
        ]
    }

    #[test]
    fn fails_over_after_two_missed_checks_and_back_when_the_primary_answers() {
        let [a, b] = addrs();
        let t0 = Instant::now();
        let mut u = Upstreams::new(&[a, b], Duration::from_secs(30));
        assert_eq!(u.poll_timeout(), None);
        u.start(t0);
        let (to, sw) = u.due(t0);
        assert_eq!((to, sw), (vec![a, b], None));
        assert_eq!(u.answered(t0, b, 200), None);
        // The primary misses one round: still in use.
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(
            u.due(t1 - Duration::from_secs(1)).0,
            Vec::<SocketAddr>::new()
        );
        let (_, sw) = u.due(t1);
        assert_eq!(sw, None);
        assert_eq!(u.active(), a);
        u.answered(t1, b, 404); // any answer but 503 means alive
                                // A second miss: down, over to the fallback.
        let (_, sw) = u.due(t1 + Duration::from_secs(30));
        assert_eq!(
            sw,
            Some(Switch {
                from: a,
                to: b,
                back: false
            })
        );
        assert_eq!(u.active(), b);
        let st = u.states(t1 + Duration::from_secs(30));
        assert_eq!(st[0].state, "down");
        assert_eq!(st[1].state, "active");
        assert_eq!(st[1].last_ok_secs, Some(30));
        // The primary answers again: back to it.
        let sw = u.answered(t1 + Duration::from_secs(31), a, 200);
        assert_eq!(
            sw,
            Some(Switch {
                from: b,
                to: a,
                back: true
            })
        );
        assert_eq!(u.states(t1)[1].state, "standby");
    }

    #[test]
    fn a_timed_out_registration_or_503_fails_over_at_once_and_all_down_stays() {
        let [a, b] = addrs();
        let t0 = Instant::now();
        let mut u = Upstreams::new(&[a, b], Duration::from_secs(30));
        assert!(u.failed(a, "registration timed out").is_some());
        assert_eq!(u.active(), b);
        assert!(u.answered(t0, b, 503).is_none(), "nothing better to go to");
        assert_eq!(u.active(), b);
        assert_eq!(
            u.states(t0)[1].last_error.as_deref(),
            Some("503 Service Unavailable")
        );
        assert!(u.answered(t0, a, 200).is_some());
        assert_eq!(u.active(), a);
        // Unknown addresses change nothing.
        assert!(u
            .answered(t0, "192.0.2.66:5060".parse().unwrap(), 200)
            .is_none());
    }

    #[test]
    fn reconfiguring_the_same_servers_keeps_their_health() {
        let [a, b] = addrs();
        let mut u = Upstreams::new(&[a, b], Duration::from_secs(30));
        u.failed(a, "x");
        u.reconfigure(&[a, b], Duration::from_secs(10));
        assert_eq!(u.active(), b);
        u.reconfigure(&[b], Duration::from_secs(10));
        assert_eq!(u.active(), b);
        assert_eq!(u.states(Instant::now()).len(), 1);
    }
}
