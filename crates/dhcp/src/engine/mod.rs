//! The lease engine: DHCP's state machine with no sockets and no clock.
//!
//! [`Engine::handle`] takes the time (unix seconds, since leases outlive restarts) and a client
//! message, and returns an [`Outcome`]: the lease records to store durably *before* the reply
//! is sent, and the reply with where it goes (RFC 2131 §4.1). The engine is authoritative for
//! its subnets: it NAKs requests for addresses that are not in its pools or not this client's.
//!
//! Allocation is stable: a client gets its reserved address, else the address it holds or
//! last held, else the one it asks for, else a never-used address searched from a point derived
//! from its identity (so even with a lost lease table it tends to get the same one), else the
//! address that has been free longest. Offers hold their address for [`OFFER_HOLD`] seconds so
//! two clients discovering at once never get the same address; offers are not stored, since a
//! client that saw one still has to REQUEST it.

mod table;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;
use tracing::{debug, info, warn};

use crate::settings::{Fixed, Settings, Subnet};
use crate::wire::{self, code, MessageType, ReplyHeader, Request};
use table::Table;

/// Seconds an offered address is held for the client it was offered to.
pub const OFFER_HOLD: u64 = 60;
/// Seconds between repeats of a rate-limited warning.
const WARN_EVERY: u64 = 60;

/// What the engine knows about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub address: Ipv4Addr,
    /// Who holds (or last held) it: option 61, or hardware type + address. Empty once declined.
    pub client_id: Vec<u8>,
    /// The client's hardware address.
    pub hardware: Vec<u8>,
    /// The host name the client sent (option 12).
    pub hostname: Option<String>,
    /// The vendor class identifier the client sent (option 60).
    pub vendor_class: Option<String>,
    /// The state.
    pub state: LeaseState,
    /// Unix time the state ends: lease expiry, end of the offer or of the quarantine; for a
    /// released lease, when it was released.
    pub expires: u64,
}

/// The state of a lease record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Offered, not yet requested (never stored).
    Offered,
    /// Acknowledged to the client.
    Bound,
    /// Given back by the client or the operator.
    Released,
    /// Declined by the client: another device uses it; quarantined until `expires`.
    Declined,
}

/// Who an address belongs to at a given time.
#[derive(Debug, PartialEq, Eq)]
enum Holder<'a> {
    Free,
    Client(&'a [u8]),
    Quarantine,
}

impl Lease {
    fn holder(&self, now: u64) -> Holder<'_> {
        match self.state {
            LeaseState::Offered | LeaseState::Bound if self.expires > now => {
                Holder::Client(&self.client_id)
            }
            LeaseState::Declined if self.expires > now => Holder::Quarantine,
            _ => Holder::Free,
        }
    }
}

/// A reply and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// OFFER, ACK or NAK.
    pub kind: MessageType,
    /// Where to send it.
    pub to: Destination,
    /// The encoded datagram.
    pub bytes: Vec<u8>,
}

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To the relay agent, server port 67.
    Relay(Ipv4Addr),
    /// To the client's own address (it has one: renewing, informing), port 68.
    Unicast(Ipv4Addr),
    /// To 255.255.255.255:68 on the client's link.
    Broadcast,
    /// To `ip`:68 on the client's link, for a client that has no address yet and did not ask
    /// for broadcast: the IP layer cannot resolve `ip` by ARP, so the sender must use `mac`.
    Link {
        /// The address handed out.
        ip: Ipv4Addr,
        /// The client's MAC address.
        mac: [u8; 6],
    },
}

/// What to do after a message: store `persist` durably, then send `reply`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Lease records to store before the reply leaves.
    pub persist: Vec<Lease>,
    /// The reply, if any.
    pub reply: Option<Reply>,
}

/// Counters since the engine started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Datagrams handed to the engine.
    pub received: u64,
    /// Of those, not DHCP client messages (dropped).
    pub malformed: u64,
    /// Well-formed but not for us (another server, unknown relay, ...).
    pub ignored: u64,
    /// DISCOVERs answered with no offer because no address was free.
    pub exhausted: u64,
    /// Offers sent.
    pub offers: u64,
    /// ACKs sent (leases granted or renewed, and INFORM answers).
    pub acks: u64,
    /// NAKs sent.
    pub naks: u64,
    /// Addresses declined by clients.
    pub declines: u64,
    /// Leases released by clients.
    pub releases: u64,
    /// Options left out of replies for lack of room.
    pub options_dropped: u64,
}

/// A lease as `voxgate leases` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseInfo {
    /// The address.
    pub address: Ipv4Addr,
    /// The client's hardware (MAC) address, e.g. `00:04:f2:12:34:56`.
    pub mac: String,
    /// The client identifier in hex.
    pub client_id: String,
    /// The host name the client sent.
    pub hostname: Option<String>,
    /// The vendor class identifier the client sent (option 60).
    pub vendor_class: Option<String>,
    /// The configured vendor class that matches the client, if any.
    pub class: Option<String>,
    /// The lease's state now.
    pub state: LeaseStatus,
    /// Unix time the lease (or quarantine) ends; for a released lease, when it was released.
    pub expires: u64,
}

/// A lease's state as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseStatus {
    /// Offered, waiting for the client's request.
    Offered,
    /// In use by the client.
    Bound,
    /// Ran out without renewal; free, remembered for the same client.
    Expired,
    /// Given back; free, remembered for the same client.
    Released,
    /// Quarantined after a client found another device on it.
    Declined,
}

/// Logs a warning at most once a minute, counting what it held back.
#[derive(Debug, Default)]
struct Throttle {
    next: u64,
    held: u64,
}

impl Throttle {
    /// `Some(number held back since the last one)` when a warning may go out now.
    fn allow(&mut self, now: u64) -> Option<u64> {
        if now < self.next {
            self.held += 1;
            return None;
        }
        self.next = now + WARN_EVERY;
        Some(std::mem::take(&mut self.held))
    }
}

/// The lease engine.
#[derive(Debug)]
pub struct Engine {
    settings: Settings,
    table: Table,
    stats: Stats,
    exhausted_warning: Throttle,
    dropped_warning: Throttle,
}

/// Formats bytes as colon-separated hex pairs.
pub fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Engine {
    /// An engine serving `settings`, starting from stored lease records.
    pub fn new(settings: Settings, leases: impl IntoIterator<Item = Lease>) -> Engine {
        let mut table = Table::default();
        for l in leases {
            table.insert(l);
        }
        Engine {
            settings,
            table,
            stats: Stats::default(),
            exhausted_warning: Throttle::default(),
            dropped_warning: Throttle::default(),
        }
    }

    /// Replaces the settings (a reload): new pools and options apply to the next exchange;
    /// leases are kept, and one outside the new pools is NAKed at its next renewal.
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Counts a datagram the shell dropped before parsing (e.g. oversized).
    pub fn note_malformed(&mut self) {
        self.stats.received += 1;
        self.stats.malformed += 1;
    }

    /// Number of lease records (every state).
    pub fn lease_count(&self) -> usize {
        self.table.len()
    }

    /// Every record worth keeping on disk, what a compaction writes: bound leases, and free
    /// records (released, expired, declined) of addresses still served, which carry the
    /// quarantines and let returning clients find their address. Offers are never stored.
    pub fn records(&self) -> Vec<Lease> {
        let served = |a: Ipv4Addr| {
            self.settings.fixed.iter().any(|f| f.address == a)
                || self
                    .settings
                    .subnets
                    .iter()
                    .any(|s| s.pools.iter().any(|p| p.contains(a)))
        };
        self.table
            .iter()
            .filter(|l| match l.state {
                LeaseState::Offered => false,
                LeaseState::Bound => true,
                LeaseState::Released | LeaseState::Declined => served(l.address),
            })
            .cloned()
            .collect()
    }

    /// Parses a datagram and handles it; malformed ones are counted and dropped.
    pub fn handle_bytes(&mut self, now: u64, datagram: &[u8]) -> Outcome {
        match Request::parse(datagram) {
            Ok(req) => self.handle(now, &req),
            Err(e) => {
                self.note_malformed();
                debug!(error = %e, "dropping a malformed DHCP packet");
                Outcome::default()
            }
        }
    }

    /// Handles one client message at unix time `now`.
    pub fn handle(&mut self, now: u64, req: &Request) -> Outcome {
        self.stats.received += 1;
        let Some(subnet) = self.settings.subnet_for(req.giaddr) else {
            self.stats.ignored += 1;
            debug!(giaddr = %req.giaddr, "ignoring a relayed message from a subnet not served");
            return Outcome::default();
        };
        match req.kind {
            MessageType::Discover => self.discover(now, subnet, req),
            MessageType::Request => self.request(now, subnet, req),
            MessageType::Decline => self.decline(now, req),
            MessageType::Release => self.release(now, req),
            MessageType::Inform => {
                let reply = self.reply(now, subnet, req, MessageType::Ack, Ipv4Addr::UNSPECIFIED);
                Outcome {
                    persist: Vec::new(),
                    reply: Some(reply),
                }
            }
            MessageType::Offer | MessageType::Ack | MessageType::Nak => {
                self.stats.ignored += 1;
                Outcome::default()
            }
        }
    }

    /// Every lease record except lapsed offers and quarantines, by address.
    pub fn leases(&self, now: u64) -> Vec<LeaseInfo> {
        self.table
            .iter()
            .filter_map(|l| {
                let state = match (l.state, l.expires > now) {
                    (LeaseState::Offered, true) => LeaseStatus::Offered,
                    (LeaseState::Bound, true) => LeaseStatus::Bound,
                    (LeaseState::Bound, false) => LeaseStatus::Expired,
                    (LeaseState::Released, _) => LeaseStatus::Released,
                    (LeaseState::Declined, true) => LeaseStatus::Declined,
                    (LeaseState::Offered | LeaseState::Declined, false) => return None,
                };
                let mac = <[u8; 6]>::try_from(l.hardware.as_slice()).ok();
                let class = self
                    .settings
                    .classes
                    .iter()
                    .find(|c| c.matches(l.vendor_class.as_deref(), mac))
                    .map(|c| c.name.clone());
                Some(LeaseInfo {
                    address: l.address,
                    mac: hex(&l.hardware),
                    client_id: hex(&l.client_id),
                    hostname: l.hostname.clone(),
                    vendor_class: l.vendor_class.clone(),
                    class,
                    state,
                    expires: l.expires,
                })
            })
            .collect()
    }

    /// Releases whatever the client with hardware address `hw` holds (the operator's
    /// `voxgate leases release MAC`); returns the records to store.
    pub fn release_hardware(&mut self, now: u64, hw: &[u8]) -> Vec<Lease> {
        let held: Vec<Ipv4Addr> = self
            .table
            .iter()
            .filter(|l| l.hardware == hw && matches!(l.holder(now), Holder::Client(_)))
            .map(|l| l.address)
            .collect();
        held.into_iter()
            .filter_map(|a| self.table.set_released(a, now))
            .collect()
    }

    /// The reservation of the client: by client identifier, else by MAC address.
    fn fixed_for(&self, req: &Request) -> Option<&Fixed> {
        let id = req.client_id();
        let fixed = &self.settings.fixed;
        fixed
            .iter()
            .find(|f| f.client_id.as_deref() == Some(&id[..]))
            .or_else(|| {
                let mac = req.mac()?;
                fixed
                    .iter()
                    .find(|f| f.client_id.is_none() && f.mac == Some(mac))
            })
    }

    /// Whether `addr` may go to `client` (whose reservation is `fixed`) at `now`.
    fn usable(
        &self,
        s: &Subnet,
        addr: Ipv4Addr,
        client: &[u8],
        fixed: Option<&Fixed>,
        now: u64,
    ) -> bool {
        if !s.net.contains(&addr)
            || addr == s.net.network()
            || addr == s.net.broadcast()
            || addr == self.settings.server_id
        {
            return false;
        }
        if fixed.is_none_or(|f| f.address != addr)
            && (!s.pools.iter().any(|p| p.contains(addr))
                || s.exclude.iter().any(|n| n.contains(&addr))
                || self.settings.fixed.iter().any(|f| f.address == addr))
        {
            return false;
        }
        match self.table.get(addr).map(|l| l.holder(now)) {
            None | Some(Holder::Free) => true,
            Some(Holder::Client(id)) => id == client,
            Some(Holder::Quarantine) => false,
        }
    }

    /// The address to offer (see the module documentation for the order of preference).
    fn choose(&self, now: u64, s: &Subnet, req: &Request, client: &[u8]) -> Option<Ipv4Addr> {
        let fixed = self.fixed_for(req);
        if let Some(f) = fixed {
            if self.usable(s, f.address, client, fixed, now) {
                return Some(f.address);
            }
            warn!(address = %f.address, client = %hex(client),
                "the reserved address is in use or quarantined; leasing from the pool");
        }
        let mut mine: Vec<&Lease> = self
            .table
            .of_client(client)
            .filter(|l| s.net.contains(&l.address))
            .collect();
        // Held first, then the most recently given up.
        mine.sort_by_key(|l| (l.holder(now) == Holder::Free, std::cmp::Reverse(l.expires)));
        if let Some(l) = mine
            .iter()
            .find(|l| self.usable(s, l.address, client, fixed, now))
        {
            return Some(l.address);
        }
        if let Some(a) = req
            .requested_address()
            .filter(|a| self.usable(s, *a, client, fixed, now))
        {
            return Some(a);
        }
        self.fresh(now, s, client, fixed).or_else(|| {
            self.table
                .iter()
                .filter(|l| self.usable(s, l.address, client, fixed, now))
                .min_by_key(|l| l.expires)
                .map(|l| l.address)
        })
    }

    /// A never-used address, searching the pools from a point derived from the client.
    fn fresh(
        &self,
        now: u64,
        s: &Subnet,
        client: &[u8],
        fixed: Option<&Fixed>,
    ) -> Option<Ipv4Addr> {
        let total: u64 = s.pools.iter().map(|p| u64::from(p.len())).sum();
        if total == 0 {
            return None;
        }
        let start = fnv1a(client) % total;
        (0..total).find_map(|i| {
            let mut k = (start + i) % total;
            let pool = s.pools.iter().find(|p| {
                let fits = k < u64::from(p.len());
                if !fits {
                    k -= u64::from(p.len());
                }
                fits
            })?;
            let a = Ipv4Addr::from(u32::from(pool.start) + k as u32);
            (self.table.get(a).is_none() && self.usable(s, a, client, fixed, now)).then_some(a)
        })
    }

    fn discover(&mut self, now: u64, subnet: usize, req: &Request) -> Outcome {
        let s = &self.settings.subnets[subnet];
        let client = req.client_id();
        let Some(addr) = self.choose(now, s, req, &client) else {
            self.stats.exhausted += 1;
            if let Some(held) = self.exhausted_warning.allow(now) {
                warn!(subnet = %s.net, client = %hex(&client), repeats = held,
                    "no free address to offer: the pool is exhausted");
            }
            return Outcome::default();
        };
        // A bound client that lost its state keeps its stored lease; anyone else gets an offer.
        let bound = self.table.get(addr).is_some_and(|l| {
            l.state == LeaseState::Bound && l.holder(now) == Holder::Client(&client)
        });
        if !bound {
            self.table
                .insert(lease_for(req, addr, LeaseState::Offered, now + OFFER_HOLD));
        }
        let reply = self.reply(now, subnet, req, MessageType::Offer, addr);
        Outcome {
            persist: Vec::new(),
            reply: Some(reply),
        }
    }

    fn request(&mut self, now: u64, subnet: usize, req: &Request) -> Outcome {
        let client = req.client_id();
        let (addr, state) = match (req.server_id(), req.requested_address()) {
            (Some(sid), _) if sid != self.settings.server_id => {
                // The client chose another server's offer: ours lapses now.
                self.table.drop_offers(&client);
                self.stats.ignored += 1;
                return Outcome::default();
            }
            (Some(_), Some(a)) => (a, "selecting"),
            (None, Some(a)) => (a, "init-reboot"),
            (None, None) if !req.ciaddr.is_unspecified() => (req.ciaddr, "renewing"),
            _ => {
                self.stats.ignored += 1;
                debug!(client = %hex(&client), "ignoring a DHCPREQUEST that names no address");
                return Outcome::default();
            }
        };
        let s = &self.settings.subnets[subnet];
        let fixed = self.fixed_for(req);
        let elsewhere =
            fixed.filter(|f| f.address != addr && self.usable(s, f.address, &client, fixed, now));
        let refusal = if !s.net.contains(&addr) {
            Some("the address is not on this network")
        } else if elsewhere.is_some() {
            Some("the client has another reserved address")
        } else if !self.usable(s, addr, &client, fixed, now) {
            Some("the address is not available to this client")
        } else {
            None
        };
        if let Some(why) = refusal {
            info!(%addr, client = %hex(&client), state, "DHCPNAK: {why}");
            let reply = self.nak(req, why);
            return Outcome {
                persist: Vec::new(),
                reply: Some(reply),
            };
        }
        let renewal = self.table.get(addr).is_some_and(|l| {
            l.state == LeaseState::Bound && l.holder(now) == Holder::Client(&client)
        });
        let lease = lease_for(
            req,
            addr,
            LeaseState::Bound,
            now + u64::from(self.settings.lease_time),
        );
        let mut persist = vec![lease.clone()];
        // One address per client and subnet: whatever else it held in the subnet goes back.
        let others: Vec<Ipv4Addr> = self
            .table
            .of_client(&client)
            .filter(|l| l.address != addr && s.net.contains(&l.address))
            .filter(|l| matches!(l.holder(now), Holder::Client(_)))
            .map(|l| l.address)
            .collect();
        for a in others {
            persist.extend(self.table.set_released(a, now));
        }
        self.table.insert(lease);
        if renewal {
            debug!(%addr, client = %hex(&client), state, "lease renewed");
        } else {
            info!(%addr, mac = %hex(req.hardware()), hostname = ?req.hostname(),
                vendor = ?req.vendor_class(), state, "lease granted");
        }
        let reply = self.reply(now, subnet, req, MessageType::Ack, addr);
        Outcome {
            persist,
            reply: Some(reply),
        }
    }

    fn decline(&mut self, now: u64, req: &Request) -> Outcome {
        let client = req.client_id();
        let mine = |e: &Engine, a: Ipv4Addr| {
            e.table.get(a).map(|l| l.holder(now)) == Some(Holder::Client(&client))
        };
        match (req.server_id(), req.requested_address()) {
            (Some(sid), Some(addr)) if sid == self.settings.server_id && mine(self, addr) => {
                self.stats.declines += 1;
                let q = self.settings.decline_quarantine;
                warn!(%addr, mac = %hex(req.hardware()), quarantine_s = q,
                    "address declined: another device uses it; not offered until the quarantine ends");
                let mut l = lease_for(req, addr, LeaseState::Declined, now + u64::from(q));
                // No owner: after the quarantine the address must not steer this client back.
                l.client_id.clear();
                self.table.insert(l.clone());
                Outcome {
                    persist: vec![l],
                    reply: None,
                }
            }
            _ => {
                self.stats.ignored += 1;
                Outcome::default()
            }
        }
    }

    fn release(&mut self, now: u64, req: &Request) -> Outcome {
        let client = req.client_id();
        let ours = req.server_id().is_none_or(|s| s == self.settings.server_id);
        let held = self.table.get(req.ciaddr).is_some_and(|l| {
            l.state == LeaseState::Bound && l.holder(now) == Holder::Client(&client)
        });
        if !(ours && held) {
            self.stats.ignored += 1;
            return Outcome::default();
        }
        self.stats.releases += 1;
        info!(addr = %req.ciaddr, mac = %hex(req.hardware()), "lease released");
        Outcome {
            persist: self
                .table
                .set_released(req.ciaddr, now)
                .into_iter()
                .collect(),
            reply: None,
        }
    }

    /// An OFFER or ACK for `yiaddr` (unspecified for an INFORM answer).
    fn reply(
        &mut self,
        now: u64,
        subnet: usize,
        req: &Request,
        kind: MessageType,
        yiaddr: Ipv4Addr,
    ) -> Reply {
        let st = &self.settings;
        let s = &st.subnets[subnet];
        let at = if yiaddr.is_unspecified() {
            req.ciaddr
        } else {
            yiaddr
        };
        let mut layer = s.options.clone();
        if let Some(p) = s.pools.iter().find(|p| p.contains(at)) {
            layer.stack(&p.options);
        }
        let vc = req.vendor_class();
        if let Some(c) = st
            .classes
            .iter()
            .find(|c| c.matches(vc.as_deref(), req.mac()))
        {
            layer.stack(&c.options);
        }
        let mut values: BTreeMap<u8, Vec<u8>> = layer
            .0
            .into_iter()
            .filter_map(|(c, v)| Some((c, v?)))
            .collect();
        if let Some(h) = self.fixed_for(req).and_then(|f| f.hostname.as_ref()) {
            values.insert(code::HOSTNAME, h.as_bytes().to_vec());
        }
        // Option 2 goes only to clients that ask, and follows the time zone (option 101).
        if !req.parameter_list().contains(&code::TIME_OFFSET) {
            values.remove(&code::TIME_OFFSET);
        } else if values.contains_key(&code::TZ_NAME) {
            if let Some(off) = st.zone.as_ref().and_then(|z| z.offset_at(now)) {
                values
                    .entry(code::TIME_OFFSET)
                    .or_insert(off.to_be_bytes().to_vec());
            }
        }
        let mut opts = vec![
            (code::MESSAGE_TYPE, vec![kind as u8]),
            (code::SERVER_ID, st.server_id.octets().to_vec()),
        ];
        if !yiaddr.is_unspecified() {
            let t = st.lease_time;
            opts.push((code::LEASE_TIME, t.to_be_bytes().to_vec()));
            opts.push((code::RENEWAL_TIME, (t / 2).to_be_bytes().to_vec()));
            opts.push((code::REBINDING_TIME, ((t / 8) * 7).to_be_bytes().to_vec()));
        }
        if let Some(id) = req.option(code::CLIENT_ID) {
            opts.push((code::CLIENT_ID, id.to_vec())); // RFC 6842
        }
        for c in req.parameter_list() {
            if let Some(v) = values.remove(c) {
                opts.push((*c, v));
            }
        }
        opts.extend(values);
        let ciaddr = if kind == MessageType::Ack {
            req.ciaddr
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        let e = wire::encode_reply(
            &header(req, ciaddr, yiaddr, req.flags),
            &opts,
            req.option(code::RELAY_INFO),
            req.max_reply(),
        );
        if !e.dropped.is_empty() {
            self.stats.options_dropped += e.dropped.len() as u64;
            if let Some(held) = self.dropped_warning.allow(now) {
                warn!(dropped = ?e.dropped, limit = req.max_reply(), mac = %hex(req.hardware()),
                    repeats = held, "options left out of a reply: they do not fit the client's size limit");
            }
        }
        match kind {
            MessageType::Offer => self.stats.offers += 1,
            _ => self.stats.acks += 1,
        }
        Reply {
            kind,
            to: destination(req, yiaddr),
            bytes: e.bytes,
        }
    }

    fn nak(&mut self, req: &Request, why: &str) -> Reply {
        self.stats.naks += 1;
        let mut opts = vec![
            (code::MESSAGE_TYPE, vec![MessageType::Nak as u8]),
            (code::SERVER_ID, self.settings.server_id.octets().to_vec()),
            (code::MESSAGE, why.as_bytes().to_vec()),
        ];
        if let Some(id) = req.option(code::CLIENT_ID) {
            opts.push((code::CLIENT_ID, id.to_vec()));
        }
        // RFC 2131 §4.3.2: a relayed NAK asks the relay to broadcast it.
        let relayed = !req.giaddr.is_unspecified();
        let flags = if relayed {
            req.flags | 0x8000
        } else {
            req.flags
        };
        let e = wire::encode_reply(
            &header(req, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, flags),
            &opts,
            req.option(code::RELAY_INFO),
            wire::MIN_MESSAGE,
        );
        Reply {
            kind: MessageType::Nak,
            to: if relayed {
                Destination::Relay(req.giaddr)
            } else {
                Destination::Broadcast
            },
            bytes: e.bytes,
        }
    }
}

fn header(req: &Request, ciaddr: Ipv4Addr, yiaddr: Ipv4Addr, flags: u16) -> ReplyHeader {
    ReplyHeader {
        xid: req.xid,
        flags,
        ciaddr,
        yiaddr,
        giaddr: req.giaddr,
        htype: req.htype,
        hlen: req.hlen,
        chaddr: req.chaddr,
    }
}

/// RFC 2131 §4.1: relay, else the client's own address, else broadcast if asked (or if there
/// is no address or MAC to send to), else straight to the new address at the client's MAC.
fn destination(req: &Request, yiaddr: Ipv4Addr) -> Destination {
    if !req.giaddr.is_unspecified() {
        Destination::Relay(req.giaddr)
    } else if !req.ciaddr.is_unspecified() {
        Destination::Unicast(req.ciaddr)
    } else if req.broadcast() || yiaddr.is_unspecified() {
        Destination::Broadcast
    } else {
        match req.mac() {
            Some(mac) => Destination::Link { ip: yiaddr, mac },
            None => Destination::Broadcast,
        }
    }
}

fn lease_for(req: &Request, address: Ipv4Addr, state: LeaseState, expires: u64) -> Lease {
    Lease {
        address,
        client_id: req.client_id(),
        hardware: req.hardware().to_vec(),
        hostname: req.hostname(),
        vendor_class: req.vendor_class(),
        state,
        expires,
    }
}

/// FNV-1a: a fixed hash, so a client's starting point survives restarts and Rust upgrades.
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x0100_0000_01b3)
    })
}
