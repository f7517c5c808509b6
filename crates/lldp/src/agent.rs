//! The sans-IO LLDP agent: when to send which frame, and what the neighbours said.
//!
//! Time is an input (milliseconds on any monotonic clock). [`Agent::poll`] returns the frame
//! due now, if any, and when to call again. Transmission follows IEEE 802.1AB-2016 §9.2 with
//! its defaults: one frame every `interval` (msgTxInterval), TTL = interval × 4 (msgTxHold),
//! a fast start of four frames one second apart (txFastInit, msgFastTx) when the agent starts
//! and when a new LLDP-MED neighbour appears (TIA-1057 §11.2.1 fast start, so a phone that
//! just booted gets the voice policy at once), a frame at once when the advertisement
//! changes, and a frame with TTL 0 when the agent stops (§9.2.5.1, "shutdown LLDPDU").

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::frame::{self, Advert, Neighbour, ParseError};

/// Frames sent in a fast start.
pub const FAST_COUNT: u32 = 4;
/// Milliseconds between fast-start frames.
pub const FAST_INTERVAL_MS: u64 = 1000;
/// TTL as a multiple of the interval.
pub const TX_HOLD: u64 = 4;
/// Neighbours remembered at most (a port rarely has more than a phone and a PC behind it).
pub const MAX_NEIGHBOURS: usize = 64;

/// What [`Agent::poll`] asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    /// A frame to send now.
    pub frame: Option<Vec<u8>>,
    /// Call `poll` again at this time (ms).
    pub next: u64,
}

/// What a received frame did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A neighbour not seen before (or seen again after it expired).
    New(Neighbour),
    /// A known neighbour refreshed its advertisement.
    Refreshed,
    /// A neighbour said goodbye (TTL 0).
    Gone(Neighbour),
    /// The table is full: the frame was not remembered.
    Full,
}

/// A neighbour with the time its advertisement runs out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeighbourInfo {
    /// What it advertised.
    #[serde(flatten)]
    pub neighbour: Neighbour,
    /// Seconds until it is forgotten unless it advertises again.
    pub expires_in: u64,
}

#[derive(Debug)]
struct Entry {
    neighbour: Neighbour,
    expires: u64,
}

/// The agent of one port.
#[derive(Debug)]
pub struct Agent {
    advert: Advert,
    interval_ms: u64,
    next_tx: u64,
    fast_left: u32,
    neighbours: BTreeMap<(String, String), Entry>,
    sent: u64,
}

impl Agent {
    /// An agent that starts with a fast start at `now`.
    pub fn new(advert: Advert, interval: Duration, now: u64) -> Agent {
        Agent {
            advert,
            interval_ms: (interval.as_millis() as u64).max(1000),
            next_tx: now,
            fast_left: FAST_COUNT,
            neighbours: BTreeMap::new(),
            sent: 0,
        }
    }

    /// The TTL the frames carry: four intervals, at most 65535 s.
    pub fn ttl(&self) -> u16 {
        (self.interval_ms / 1000 * TX_HOLD).min(u64::from(u16::MAX)) as u16
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The frame due at `now`, if any, and when to poll again. Also forgets neighbours whose
    /// advertisement ran out.
    pub fn poll(&mut self, now: u64) -> Poll {
        self.neighbours.retain(|_, e| e.expires > now);
        let mut out = None;
        if now >= self.next_tx {
            out = Some(frame::encode(&self.advert, self.ttl()));
            self.sent += 1;
            if self.fast_left > 0 {
                self.fast_left -= 1;
            }
            self.next_tx = now
                + if self.fast_left > 0 {
                    FAST_INTERVAL_MS
                } else {
                    self.interval_ms
                };
        }
        let expiry = self.neighbours.values().map(|e| e.expires).min();
        Poll {
            frame: out,
            next: expiry.map_or(self.next_tx, |e| e.min(self.next_tx)),
        }
    }

    /// Replaces the advertisement (a reload); a changed one goes out at once.
    pub fn set_advert(&mut self, advert: Advert, interval: Duration, now: u64) {
        let interval_ms = (interval.as_millis() as u64).max(1000);
        if advert != self.advert || interval_ms != self.interval_ms {
            self.advert = advert;
            self.interval_ms = interval_ms;
            self.next_tx = now;
        }
    }

    /// The frame that tells neighbours to forget the box (TTL 0).
    pub fn shutdown_frame(&self) -> Vec<u8> {
        frame::encode(&self.advert, 0)
    }

    /// Takes a frame received on the port. A new LLDP-MED neighbour (a phone that just came
    /// up) starts a fast start.
    pub fn receive(&mut self, now: u64, bytes: &[u8]) -> Result<Received, ParseError> {
        let n = frame::parse(bytes)?;
        let key = (n.chassis.clone(), n.port.clone());
        if n.ttl == 0 {
            return Ok(match self.neighbours.remove(&key) {
                Some(e) => Received::Gone(e.neighbour),
                None => Received::Refreshed,
            });
        }
        let expires = now + u64::from(n.ttl) * 1000;
        if let Some(e) = self.neighbours.get_mut(&key) {
            e.neighbour = n;
            e.expires = expires;
            return Ok(Received::Refreshed);
        }
        if self.neighbours.len() >= MAX_NEIGHBOURS {
            return Ok(Received::Full);
        }
        if n.med_device_type.is_some() {
            self.fast_left = FAST_COUNT;
            self.next_tx = now;
        }
        self.neighbours.insert(
            key,
            Entry {
                neighbour: n.clone(),
                expires,
            },
        );
        Ok(Received::New(n))
    }

    /// The neighbours known at `now`.
    pub fn neighbours(&self, now: u64) -> Vec<NeighbourInfo> {
        self.neighbours
            .values()
            .filter(|e| e.expires > now)
            .map(|e| NeighbourInfo {
                neighbour: e.neighbour.clone(),
                expires_in: (e.expires - now) / 1000,
            })
            .collect()
    }
}
