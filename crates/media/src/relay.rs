//! The relay's sans-IO core: calls and their streams, offer/answer, port allocation,
//! timeouts and reports. The shell ([`crate::MediaHandle`]) adds sockets, tasks and a clock.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ports::PortAllocator;
use crate::sdp::{self, MediaDesc, Origin};
use crate::settings::{MediaSettings, Policy};
use crate::stream::{Forward, SharedStream, Socket, Stream, StreamReport};
use crate::{MediaError, Side};

/// How many taken ports an allocation skips before giving up: each is set aside, so a few
/// foreign sockets inside the range cost a few tries, not a failed call.
const BIND_TRIES: usize = 8;

/// Locks a stream; a panic in another holder cannot leave it half-updated in a way that
/// matters more than losing the call, so the data is used as is.
pub(crate) fn lock(s: &SharedStream) -> MutexGuard<'_, Stream> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A stream the relay has just opened, with what the offer's binder made for each side's
/// port pair (`sockets[Side::Lan as usize]`, ...): the driver starts relaying with them.
pub struct Opened<S> {
    /// The stream.
    pub stream: SharedStream,
    /// What the binder returned for each side's port pair.
    pub sockets: [S; 2],
}

/// The result of an offer or answer.
pub struct Outcome<S> {
    /// The rewritten description to send on to the other side.
    pub sdp: Vec<u8>,
    /// Streams opened by this offer.
    pub opened: Vec<Opened<S>>,
    /// Ids of streams closed (rejected or disabled); their sockets can go.
    pub closed: Vec<u64>,
}

/// Something the SIP side must act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MediaEvent {
    /// The relay has released the call by itself: end both of its SIP legs.
    Ended {
        /// The call.
        call_id: String,
        /// Why.
        reason: EndReason,
        /// Its final figures.
        report: CallReport,
    },
    /// The final figures of a call the SIP side released while the kernel forwarded some of
    /// its streams ([`crate::Release::Pending`]): sent once the kernel let go of them and
    /// their counters were read; the call's ports are free (in quarantine) by then.
    Released {
        /// The call.
        call_id: String,
        /// Its final figures.
        report: CallReport,
    },
}

/// Why the relay ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum EndReason {
    /// No media in either direction for the configured time.
    Timeout {
        /// How long it was silent, in seconds.
        idle_secs: u64,
    },
    /// The media service stopped (disabled, restarting or shutting down).
    Stopped,
}

/// A call's state and per-stream figures, for `voxgate calls --json` and the end-of-call log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallReport {
    /// The SIP side's id for the call.
    pub call_id: String,
    /// `offered` (no answer yet), `active` or `held`.
    pub state: CallState,
    /// Seconds since the first offer.
    pub age_secs: u64,
    /// Milliseconds since media (or an offer/answer) last passed.
    pub idle_ms: u64,
    /// The anchored streams, in media-line order (rejected ones left out).
    pub streams: Vec<StreamReport>,
}

/// The streams for the log, `; ` between them.
impl std::fmt::Display for CallReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.streams.is_empty() {
            return f.write_str("none anchored");
        }
        for (i, s) in self.streams.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallState {
    /// Offered, not yet answered.
    Offered,
    /// Answered, media in both directions.
    Active,
    /// Answered, a stream on hold.
    Held,
}

/// A call out of the relay whose ports and final figures wait (see [`Relay::end`]).
pub(crate) struct Ending {
    call_id: String,
    call: Call,
}

impl Ending {
    /// The call's id.
    pub(crate) fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Its open streams.
    pub(crate) fn streams(&self) -> Vec<SharedStream> {
        self.call.slots.iter().flatten().cloned().collect()
    }
}

struct Pending {
    from: Side,
    descs: Vec<MediaDesc>,
}

struct Call {
    created: Instant,
    /// Last offer or answer.
    touched: Instant,
    /// One slot per media line; `None` for rejected, disabled or unsupported lines.
    slots: Vec<Option<SharedStream>>,
    offer: Option<Pending>,
    answered: bool,
    origins: [Option<Origin>; 2],
}

/// The relay's core: every call with its streams, and the port pools of both sides.
pub struct Relay {
    settings: MediaSettings,
    policy: Arc<Policy>,
    addresses: [Ipv4Addr; 2],
    public_address: Option<Ipv4Addr>,
    ports: [PortAllocator; 2],
    calls: HashMap<String, Call>,
    by_port: HashMap<(Side, u16), SharedStream>,
    next_id: u64,
}

impl Relay {
    /// A relay with no calls. `settings.wan_address` must be known by now.
    pub fn new(settings: MediaSettings) -> Result<Relay, MediaError> {
        let wan = settings
            .wan_address
            .ok_or_else(|| MediaError::NoWanAddress(settings.wan_device.clone()))?;
        Ok(Relay {
            policy: Arc::new(Policy::new(&settings)),
            addresses: [settings.lan_address, wan],
            public_address: None,
            ports: [
                PortAllocator::new(settings.lan_ports, settings.quarantine),
                PortAllocator::new(settings.wan_ports, settings.quarantine),
            ],
            settings,
            calls: HashMap::new(),
            by_port: HashMap::new(),
            next_id: 1,
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &MediaSettings {
        &self.settings
    }

    /// The address the box's sockets bind to on `side`.
    pub fn bind_address(&self, side: Side) -> Ipv4Addr {
        self.addresses[side as usize]
    }

    /// The address SDP names for the box on `side`: on the WAN, the public address once
    /// known (e.g. from the provider's view of the SIP flow), else the interface's.
    pub fn advertised_address(&self, side: Side) -> Ipv4Addr {
        match side {
            Side::Wan => self.public_address.unwrap_or(self.addresses[1]),
            Side::Lan => self.addresses[0],
        }
    }

    /// Sets (or clears) the public address advertised towards the provider. Descriptions
    /// sent from now on name it; the SIP side re-offers if running calls must learn it.
    pub fn set_public_address(&mut self, address: Option<Ipv4Addr>) {
        self.public_address = address;
    }

    /// Takes new settings without disturbing running calls: their ports stay theirs (and
    /// bound to the old addresses); new calls get the new ranges, addresses and timers.
    pub fn reconfigure(&mut self, settings: MediaSettings) {
        if settings == self.settings {
            return;
        }
        self.policy = Arc::new(Policy::new(&settings));
        for s in self.by_port.values() {
            lock(s).set_policy(self.policy.clone());
        }
        if (settings.lan_ports, settings.wan_ports, settings.quarantine)
            != (
                self.settings.lan_ports,
                self.settings.wan_ports,
                self.settings.quarantine,
            )
        {
            self.ports = [
                PortAllocator::new(settings.lan_ports, settings.quarantine),
                PortAllocator::new(settings.wan_ports, settings.quarantine),
            ];
            for &(side, port) in self.by_port.keys() {
                self.ports[side as usize].claim(port);
            }
        }
        self.addresses[0] = settings.lan_address;
        if let Some(wan) = settings.wan_address {
            self.addresses[1] = wan;
        }
        self.settings = settings;
    }

    /// The WAN interface's address changed (a new DHCP lease): new calls bind to `ip`; calls
    /// in progress keep their sockets. Returns whether it changed.
    pub fn set_wan_address(&mut self, ip: Ipv4Addr) -> bool {
        if self.addresses[1] == ip {
            return false;
        }
        tracing::warn!(from = %self.addresses[1], to = %ip, calls = self.calls.len(), "WAN address changed: new calls use the new one");
        self.addresses[1] = ip;
        true
    }

    /// Number of calls.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// How many streams the port ranges hold at once: one pair on each side per stream.
    pub fn stream_capacity(&self) -> usize {
        self.ports[0].capacity().min(self.ports[1].capacity())
    }

    /// Port pairs allocated on `side`.
    pub fn ports_in_use(&self, side: Side) -> usize {
        self.ports[side as usize].allocated()
    }

    /// Takes an SDP offer from `from` (new call or re-offer) and returns it rewritten for the
    /// other side. New media lines get a port pair on each side, opened with `bind` (which
    /// returns `AddrInUse` for a port another program holds: the next pair is tried); lines
    /// already anchored keep their ports (hold, resume, re-offers); lines offered with port
    /// 0 or a transport the relay cannot anchor go on with port 0.
    pub fn offer<S>(
        &mut self,
        now: Instant,
        call_id: &str,
        from: Side,
        sdp: &[u8],
        bind: &mut dyn FnMut(Side, u16) -> io::Result<S>,
    ) -> Result<Outcome<S>, MediaError> {
        let session = sdp::parse(sdp)?;
        let descs = sdp::describe(&session);
        let old: Vec<Option<SharedStream>> = self
            .calls
            .get(call_id)
            .map(|c| c.slots.clone())
            .unwrap_or_default();

        // Decide, and allocate what is new, before changing anything: a failure leaves the
        // call as it was.
        let mut slots: Vec<Option<SharedStream>> = Vec::with_capacity(descs.len());
        let mut opened = Vec::new();
        let mut closed = Vec::new();
        for (i, d) in descs.iter().enumerate() {
            let existing = old.get(i).cloned().flatten().filter(|s| {
                let s = lock(s);
                d.relayable() && s.media() == d.media && Some(s.transport()) == d.transport
            });
            if let Some(s) = existing {
                slots.push(Some(s));
                continue;
            }
            if let Some(s) = old.get(i).cloned().flatten() {
                closed.push(s);
            }
            if !d.relayable() {
                slots.push(None);
                continue;
            }
            match self.open(now, i, d, bind) {
                Ok(o) => {
                    slots.push(Some(o.stream.clone()));
                    opened.push(o);
                }
                Err(e) => {
                    for o in &opened {
                        self.free_ports(&o.stream, now);
                    }
                    return Err(e);
                }
            }
        }
        closed.extend(old.into_iter().skip(descs.len()).flatten());

        let closed_ids = closed.iter().map(|s| self.close(s, now)).collect();
        for (slot, d) in slots.iter().zip(&descs) {
            if let Some(s) = slot {
                lock(s).describe(from, d, now);
            }
        }
        let to = from.other();
        let ports: Vec<Option<u16>> = slots
            .iter()
            .map(|s| s.as_ref().map(|s| lock(s).port(to)))
            .collect();
        let address = self.advertised_address(to);
        let call = self.calls.entry(call_id.to_string()).or_insert(Call {
            created: now,
            touched: now,
            slots: Vec::new(),
            offer: None,
            answered: false,
            origins: [None, None],
        });
        call.touched = now;
        call.slots = slots;
        let out = sdp::rewrite(
            &session,
            &descs,
            address,
            &ports,
            &mut call.origins[to as usize],
        );
        call.offer = Some(Pending { from, descs });
        Ok(Outcome {
            sdp: out,
            opened,
            closed: closed_ids,
        })
    }

    /// Takes the SDP answer from `from` to the offer pending from the other side and returns
    /// it rewritten for the offerer. May be called again for the same offer (an early answer
    /// in a 183, then the final one). Lines answered with port 0 are closed.
    pub fn answer(
        &mut self,
        now: Instant,
        call_id: &str,
        from: Side,
        sdp: &[u8],
    ) -> Result<Outcome<()>, MediaError> {
        let session = sdp::parse(sdp)?;
        let descs = sdp::describe(&session);
        let call = self
            .calls
            .get_mut(call_id)
            .ok_or_else(|| MediaError::UnknownCall(call_id.to_string()))?;
        let offer = match &call.offer {
            Some(p) if p.from == from.other() => p,
            _ => return Err(MediaError::NoOffer(call_id.to_string())),
        };
        if offer.descs.len() != descs.len() {
            return Err(MediaError::MediaCount {
                offered: offer.descs.len(),
                answered: descs.len(),
            });
        }
        let mut closed = Vec::new();
        for (i, d) in descs.iter().enumerate() {
            let Some(s) = call.slots[i].clone() else {
                continue;
            };
            if d.port == 0 {
                closed.push(s);
                call.slots[i] = None;
                continue;
            }
            let mut st = lock(&s);
            st.describe(from, d, now);
            st.set_mux(offer.descs[i].mux && d.mux);
        }
        call.touched = now;
        call.answered = true;
        let to = from.other();
        let ports: Vec<Option<u16>> = call
            .slots
            .iter()
            .map(|s| s.as_ref().map(|s| lock(s).port(to)))
            .collect();
        let address = self.advertised_address(to);
        let call = self.calls.get_mut(call_id).expect("looked up above");
        let out = sdp::rewrite(
            &session,
            &descs,
            address,
            &ports,
            &mut call.origins[to as usize],
        );
        let closed = closed.iter().map(|s| self.close(s, now)).collect();
        Ok(Outcome {
            sdp: out,
            opened: Vec::new(),
            closed,
        })
    }

    /// Ends a call: its ports go into quarantine and its figures are logged and returned,
    /// with the ids of the streams whose sockets can go. `None` for an unknown call.
    pub fn release(&mut self, now: Instant, call_id: &str) -> Option<(CallReport, Vec<u64>)> {
        let ending = self.end(call_id)?;
        Some(self.finish(now, ending))
    }

    /// Takes a call out of the relay (no longer shown, timed out or offered to) but keeps its
    /// ports allocated until [`Relay::finish`]: the kernel may still forward its streams.
    pub(crate) fn end(&mut self, call_id: &str) -> Option<Ending> {
        let call = self.calls.remove(call_id)?;
        Some(Ending {
            call_id: call_id.to_string(),
            call,
        })
    }

    /// Ends a call taken out by [`Relay::end`]: its figures are logged and returned with the
    /// ids of the streams whose sockets can go, its ports go into quarantine.
    pub(crate) fn finish(&mut self, now: Instant, ending: Ending) -> (CallReport, Vec<u64>) {
        let Ending { call_id, call } = ending;
        let report = report(&call_id, &call, now);
        let closed = call
            .slots
            .iter()
            .flatten()
            .map(|s| self.close(s, now))
            .collect();
        // One line per stream in plain words (it was the report as JSON, ~1.5 KB escaped
        // inside the JSON log line; `voxgate calls --json` still gives it whole while up).
        tracing::info!(call_id, age_secs = report.age_secs, streams = %report, "call media ended");
        (report, closed)
    }

    /// Ends the calls that have been silent too long (`timeout`, or `hold_timeout` while not
    /// yet answered or on hold): each is released and reported with the ids of its streams.
    pub fn poll(&mut self, now: Instant) -> Vec<(MediaEvent, Vec<u64>)> {
        let expired: Vec<(String, Duration)> = self
            .calls
            .iter()
            .filter_map(|(id, c)| {
                let idle = idle(c, now);
                // Unanswered, on hold, or with nothing anchored (every line rejected): silence
                // is expected, so only the long bound applies.
                let mut streams = c.slots.iter().flatten().peekable();
                let held =
                    !c.answered || streams.peek().is_none() || streams.any(|s| lock(s).on_hold());
                let limit = if held {
                    self.settings.hold_timeout
                } else {
                    self.settings.timeout
                };
                (idle >= limit).then(|| (id.clone(), idle))
            })
            .collect();
        expired
            .into_iter()
            .filter_map(|(call_id, idle)| {
                tracing::warn!(call_id, idle_secs = idle.as_secs(), "media timeout");
                let (report, closed) = self.release(now, &call_id)?;
                let event = MediaEvent::Ended {
                    call_id,
                    reason: EndReason::Timeout {
                        idle_secs: idle.as_secs(),
                    },
                    report,
                };
                Some((event, closed))
            })
            .collect()
    }

    /// Releases every call (the service is stopping), reporting each as ended.
    pub fn release_all(&mut self, now: Instant) -> Vec<(MediaEvent, Vec<u64>)> {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        ids.into_iter()
            .filter_map(|call_id| {
                let (report, closed) = self.release(now, &call_id)?;
                let reason = EndReason::Stopped;
                Some((
                    MediaEvent::Ended {
                        call_id,
                        reason,
                        report,
                    },
                    closed,
                ))
            })
            .collect()
    }

    /// Every call's figures, oldest first.
    pub fn snapshot(&self, now: Instant) -> Vec<CallReport> {
        let mut calls: Vec<(&String, &Call)> = self.calls.iter().collect();
        calls.sort_by_key(|(id, c)| (c.created, id.as_str()));
        calls
            .into_iter()
            .map(|(id, c)| report(id, c, now))
            .collect()
    }

    /// Every open stream, by id.
    pub(crate) fn streams(&self) -> HashMap<u64, SharedStream> {
        self.calls
            .values()
            .flat_map(|c| c.slots.iter().flatten())
            .map(|s| (lock(s).id(), s.clone()))
            .collect()
    }

    /// The open streams of a call.
    pub(crate) fn call_streams(&self, call_id: &str) -> Vec<SharedStream> {
        self.calls
            .get(call_id)
            .map(|c| c.slots.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// Handles a datagram that reached the box's `port` (RTP or RTCP) on `side`: the sans-IO
    /// entry point for drivers that do not keep a stream per socket.
    pub fn on_packet(
        &self,
        now: Instant,
        side: Side,
        port: u16,
        src: SocketAddr,
        bytes: &[u8],
    ) -> Option<Forward> {
        let (rtp, socket) = if port & 1 == 0 {
            (port, Socket::Rtp)
        } else {
            (port - 1, Socket::Rtcp)
        };
        let s = self.by_port.get(&(side, rtp))?;
        lock(s).on_packet(now, side, socket, src, bytes)
    }

    fn open<S>(
        &mut self,
        now: Instant,
        index: usize,
        d: &MediaDesc,
        bind: &mut dyn FnMut(Side, u16) -> io::Result<S>,
    ) -> Result<Opened<S>, MediaError> {
        let (lan_port, lan) = self.allocate(now, Side::Lan, bind)?;
        let (wan_port, wan) = match self.allocate(now, Side::Wan, bind) {
            Ok(x) => x,
            Err(e) => {
                self.ports[0].release(lan_port, now);
                return Err(e);
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let stream = Arc::new(Mutex::new(Stream::new(
            id,
            index,
            d,
            [lan_port, wan_port],
            self.policy.clone(),
            now,
        )));
        lock(&stream).set_addresses(self.addresses);
        self.by_port.insert((Side::Lan, lan_port), stream.clone());
        self.by_port.insert((Side::Wan, wan_port), stream.clone());
        Ok(Opened {
            stream,
            sockets: [lan, wan],
        })
    }

    fn allocate<S>(
        &mut self,
        now: Instant,
        side: Side,
        bind: &mut dyn FnMut(Side, u16) -> io::Result<S>,
    ) -> Result<(u16, S), MediaError> {
        for _ in 0..BIND_TRIES {
            let port = self.ports[side as usize]
                .allocate(now)
                .ok_or(MediaError::PortsExhausted(side))?;
            match bind(side, port) {
                Ok(s) => return Ok((port, s)),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    tracing::warn!(?side, port, "media port taken by another program; skipped");
                    self.ports[side as usize].set_aside(port, now);
                }
                Err(e) => {
                    self.ports[side as usize].release(port, now);
                    return Err(MediaError::Bind {
                        side,
                        port,
                        source: e,
                    });
                }
            }
        }
        Err(MediaError::PortsExhausted(side))
    }

    /// Frees a stream's ports (into quarantine) and forgets it; returns its id.
    fn close(&mut self, s: &SharedStream, now: Instant) -> u64 {
        self.free_ports(s, now);
        lock(s).id()
    }

    fn free_ports(&mut self, s: &SharedStream, now: Instant) {
        let st = lock(s);
        for side in [Side::Lan, Side::Wan] {
            let port = st.port(side);
            self.ports[side as usize].release(port, now);
            self.by_port.remove(&(side, port));
        }
    }
}

fn idle(c: &Call, now: Instant) -> Duration {
    let last = c
        .slots
        .iter()
        .flatten()
        .map(|s| lock(s).last_activity())
        .fold(c.touched, Instant::max);
    now.saturating_duration_since(last)
}

fn report(call_id: &str, c: &Call, now: Instant) -> CallReport {
    let streams: Vec<StreamReport> = c.slots.iter().flatten().map(|s| lock(s).report()).collect();
    let state = if !c.answered {
        CallState::Offered
    } else if streams.iter().any(|s| s.on_hold) {
        CallState::Held
    } else {
        CallState::Active
    };
    CallReport {
        call_id: call_id.to_string(),
        state,
        age_secs: now.saturating_duration_since(c.created).as_secs(),
        idle_ms: idle(c, now).as_millis() as u64,
        streams,
    }
}

#[cfg(test)]
mod tests;
