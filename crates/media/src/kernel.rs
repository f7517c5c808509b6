//! The kernel path, sans-IO: which streams to hand to nftables, and the nft commands that
//! install and withdraw them.
//!
//! Once both ends of a stream are latched, its RTP needs no decision per packet: a datagram
//! from the latched peer on one side to the box's port goes to the latched peer on the other
//! side, from the box's port there. The box's own nftables table `ip voxgate_media` does that
//! without waking the relay:
//!
//! - `prerouting` (priority raw) looks every UDP datagram up by `ip saddr . udp sport . udp
//!   dport` in the verdict map `streams`; only the latched peer's datagrams to the stream's
//!   port match (a stranger, or the peer from a new NAT port, still reaches the relay's socket,
//!   which drops or re-latches as before). The stream's chain turns conntrack off for the
//!   datagram (`notrack`: stateless, so nothing is left behind in conntrack when the stream
//!   moves or ends, and no conntrack entry costs memory or a lookup), counts it in the named
//!   counter of that direction, rewrites the destination to the other side's peer and marks
//!   it with the direction's number.
//! - the kernel routes it (forwarding is on in the box's namespace); the firewall's forward
//!   chain accepts the mark ([`config::model::MEDIA_MARK`]).
//! - `postrouting` rewrites the source to the box's address and port on the way out, found by
//!   the mark in the verdict map `out`, and sets DSCP EF.
//!
//! Stateless rewriting was chosen over conntrack DNAT/SNAT maps: a conntrack entry outlives a
//! change of latch (a NAT port change or a re-INVITE would keep the old mapping until the
//! entry expires or is flushed through another netlink family), and the reply direction would
//! only be NATed after the first packet created the entry in the right direction.
//!
//! RFC 4733 events (DTMF) and RTCP stay in the relay (RTCP arrives on the odd port, which has no element; with rtcp-mux the
//! stream's chain returns RTCP packet types 200-206 to the normal path; events by their
//! payload type), so round trips, RTCP counts and DTMF are still seen there.
//!
//! While the kernel has a stream the relay sees none of its RTP: packet counts come from the
//! counters (exact), and loss and jitter from the RTCP report blocks each party sends about
//! the RTP it receives (RFC 3550 6.4.1; see `DirectionStats::on_far_report`), shown as
//! `loss_source`/`jitter_source: rtcp` in `voxgate calls --json`. Those are end to end (they
//! include the box's far leg). Loss in a kernel stretch becomes exact again (from sequence
//! numbers) once the relay has the stream back and sees its RTP. A stream whose parties send
//! no RTCP keeps the relay's figures: loss in the stretch unseen until it comes back (or at
//! all, for the last stretch of a call), jitter and longest gap as they were when the kernel
//! took it. Longest gap is never measured in the kernel.
//!
//! [`Offloader`] decides the changes from the streams' wishes; [`Batch`] renders them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use config::model::{MEDIA_MARK, MEDIA_MARK_MASK};

use crate::Side;

/// The nftables table the kernel path owns.
pub(crate) const TABLE: &str = "voxgate_media";

/// A stream that failed to install is not tried again for this long.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How many directions the mark can number (the bits outside [`MEDIA_MARK_MASK`]).
const DIRECTIONS: u32 = !MEDIA_MARK_MASK + 1;

/// What the kernel needs to forward one stream's RTP both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flow {
    /// The box's address on each side (`[Side::Lan as usize]`, ...).
    pub addresses: [Ipv4Addr; 2],
    /// The box's RTP port on each side.
    pub ports: [u16; 2],
    /// The latched RTP peer on each side.
    pub peers: [SocketAddrV4; 2],
    /// RTCP travels on the RTP port: it must still reach the relay.
    pub mux: bool,
    /// RFC 4733 event payload types (bit `pt` set): DTMF still reaches the relay, so it is
    /// seen and counted there.
    pub events: u128,
}

/// One change to the kernel's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Start forwarding stream `id` in the kernel; its directions are numbered from `slot`.
    Install {
        /// The stream.
        id: u64,
        /// Its slot (two marks: `2 * slot` and `2 * slot + 1`).
        slot: u32,
        /// What to forward.
        flow: Flow,
    },
    /// Stop forwarding stream `id` in the kernel; its packets reach the relay again.
    Withdraw {
        /// The stream.
        id: u64,
        /// Its slot.
        slot: u32,
        /// What was forwarded.
        flow: Flow,
    },
}

#[derive(Debug, Clone, Copy)]
struct Installed {
    slot: u32,
    flow: Flow,
}

/// Keeps what the kernel forwards in line with what the streams want.
#[derive(Debug, Default)]
pub(crate) struct Offloader {
    installed: HashMap<u64, Installed>,
    free: Vec<u32>,
    next_slot: u32,
    /// Streams whose installation failed, with when they may be tried again.
    retry_at: HashMap<u64, Instant>,
    /// Streams being withdrawn, with their slots: not installed again (nor the slot reused)
    /// until the kernel has let go of them.
    withdrawing: HashMap<u64, u32>,
}

impl Offloader {
    /// Whether stream `id` is in the kernel (or about to be).
    pub fn is_installed(&self, id: u64) -> bool {
        self.installed.contains_key(&id)
    }

    /// The flow stream `id` is forwarded with, if it is in the kernel.
    pub fn flow_of(&self, id: u64) -> Option<Flow> {
        self.installed.get(&id).map(|i| i.flow)
    }

    /// Number of streams in the kernel.
    pub fn installed(&self) -> usize {
        self.installed.len()
    }

    /// The changes that bring the kernel to `wanted`: every live stream with the flow it wants
    /// forwarded (`None`: relay it in user space). Streams missing from `wanted` are gone and
    /// are withdrawn. A stream whose flow changed (a re-latch) is withdrawn, and installed
    /// afresh by a later plan once [`Offloader::withdrawn`] says the kernel let go of it.
    pub fn plan(&mut self, now: Instant, wanted: &[(u64, Option<Flow>)]) -> Vec<Change> {
        let mut changes = Vec::new();
        let live: HashMap<u64, Option<Flow>> = wanted.iter().copied().collect();
        let mut gone: Vec<u64> = self
            .installed
            .iter()
            .filter(|(id, i)| live.get(id).copied().flatten() != Some(i.flow))
            .map(|(&id, _)| id)
            .collect();
        gone.sort_unstable();
        for id in gone {
            changes.push(self.withdraw(id).expect("listed above"));
        }
        self.retry_at
            .retain(|id, at| live.contains_key(id) && *at > now);
        for &(id, flow) in wanted {
            let Some(flow) = flow else { continue };
            if self.installed.contains_key(&id)
                || self.retry_at.contains_key(&id)
                || self.withdrawing.contains_key(&id)
            {
                continue;
            }
            let Some(slot) = self.slot() else {
                // Every mark is in use: the rest stay in user space.
                break;
            };
            self.installed.insert(id, Installed { slot, flow });
            changes.push(Change::Install { id, slot, flow });
        }
        changes
    }

    /// Withdraws stream `id` now (its call ends), if installed.
    pub fn withdraw(&mut self, id: u64) -> Option<Change> {
        let i = self.installed.remove(&id)?;
        self.withdrawing.insert(id, i.slot);
        Some(Change::Withdraw {
            id,
            slot: i.slot,
            flow: i.flow,
        })
    }

    /// The kernel refused to install stream `id`: it stays in user space for
    /// [`RETRY_AFTER`]. Its slot is free again.
    pub fn failed(&mut self, now: Instant, id: u64) {
        if let Some(i) = self.installed.remove(&id) {
            self.free.push(i.slot);
        }
        self.retry_at.insert(id, now + RETRY_AFTER);
    }

    /// The kernel has let go of stream `id` (withdrawn): its slot is free again.
    pub fn withdrawn(&mut self, id: u64) {
        if let Some(slot) = self.withdrawing.remove(&id) {
            self.free.push(slot);
        }
    }

    /// Whether any stream is in the kernel or being withdrawn from it.
    pub fn busy(&self) -> bool {
        !self.installed.is_empty() || !self.withdrawing.is_empty()
    }

    /// Whether stream `id` is being withdrawn.
    pub fn is_withdrawing(&self, id: u64) -> bool {
        self.withdrawing.contains_key(&id)
    }

    fn slot(&mut self) -> Option<u32> {
        if let Some(s) = self.free.pop() {
            return Some(s);
        }
        if self.next_slot >= DIRECTIONS / 2 {
            return None;
        }
        self.next_slot += 1;
        Some(self.next_slot - 1)
    }
}

/// The mark of the direction from `side` of the stream in `slot`.
pub(crate) fn mark(slot: u32, side: Side) -> u32 {
    MEDIA_MARK | (slot * 2 + side as u32)
}

/// The named counter of the datagrams stream `id` received from `side` in the kernel.
pub(crate) fn counter(id: u64, side: Side) -> String {
    format!("s{id}_{}", side_name(side))
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Lan => "lan",
        Side::Wan => "wan",
    }
}

fn key(flow: &Flow, from: Side) -> String {
    let p = flow.peers[from as usize];
    format!("{} . {} . {}", p.ip(), p.port(), flow.ports[from as usize])
}

/// The table, replacing any earlier one (a restarted daemon's leftovers) in one transaction.
/// With `guard_forwarding`, forwarded datagrams other than the kernel path's are dropped: the
/// box did not forward before the relay turned forwarding on, and still does not.
pub(crate) fn table(guard_forwarding: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "table ip {TABLE}\ndelete table ip {TABLE}");
    let _ = writeln!(o, "table ip {TABLE} {{");
    let _ = writeln!(
        o,
        "\tmap streams {{ type ipv4_addr . inet_service . inet_service : verdict; comment \"latched RTP peer . its port . the box's port -> the stream's direction\"; }}"
    );
    let _ = writeln!(
        o,
        "\tmap out {{ type mark : verdict; comment \"direction mark -> the box's address and port on the way out\"; }}"
    );
    let _ = writeln!(
        o,
        "\tchain prerouting {{ type filter hook prerouting priority raw; policy accept; meta l4proto udp ip saddr . udp sport . udp dport vmap @streams comment \"RTP of streams latched on both sides\"; }}"
    );
    let _ = writeln!(
        o,
        "\tchain postrouting {{ type filter hook postrouting priority srcnat; policy accept; meta mark & {MEDIA_MARK_MASK:#010x} == {MEDIA_MARK:#010x} meta mark vmap @out; }}"
    );
    if guard_forwarding {
        let _ = writeln!(
            o,
            "\tchain forward {{ type filter hook forward priority filter; policy accept; meta mark & {MEDIA_MARK_MASK:#010x} != {MEDIA_MARK:#010x} drop comment \"the box forwards nothing else: it did not before the media relay turned forwarding on\"; }}"
        );
    }
    o.push_str("}\n");
    o
}

/// Removes the table.
pub(crate) fn remove_table() -> String {
    format!("table ip {TABLE}\ndelete table ip {TABLE}\n")
}

/// nft commands for a set of changes, in the order they must run.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Batch {
    /// Installs and unhooks: after this, no new datagram of a withdrawn stream is counted.
    pub first: String,
    /// The counters to read between `first` and `last` (withdrawn streams' final figures).
    pub read: Vec<(u64, Side)>,
    /// Removes what the withdrawn streams left (their chains, out elements and counters).
    pub last: String,
}

/// Renders the nft commands of `changes` (a withdrawal and an installation of the same stream
/// use different slots, so they never clash within one batch).
pub(crate) fn render(changes: &[Change]) -> Batch {
    let mut b = Batch::default();
    for c in changes {
        match *c {
            Change::Install { id, slot, flow } => install(&mut b.first, id, slot, &flow),
            Change::Withdraw { id, slot, flow } => {
                for side in [Side::Lan, Side::Wan] {
                    let _ = writeln!(
                        b.first,
                        "delete element ip {TABLE} streams {{ {} }}",
                        key(&flow, side)
                    );
                    b.read.push((id, side));
                    let _ = writeln!(
                        b.last,
                        "delete element ip {TABLE} out {{ {:#010x} }}",
                        mark(slot, side)
                    );
                }
                for side in [Side::Lan, Side::Wan] {
                    let n = side_name(side);
                    let _ = writeln!(b.last, "delete chain ip {TABLE} s{id}_{n}_in");
                    let _ = writeln!(b.last, "delete chain ip {TABLE} s{id}_{n}_out");
                    let _ = writeln!(b.last, "delete counter ip {TABLE} {}", counter(id, side));
                }
            }
        }
    }
    b
}

/// Installs one stream in an order the kernel accepts: counters and chains before the map
/// elements that refer to them.
pub(crate) fn install_one(id: u64, slot: u32, flow: &Flow) -> String {
    let mut o = String::new();
    install(&mut o, id, slot, flow);
    o
}

fn install(o: &mut String, id: u64, slot: u32, flow: &Flow) {
    for from in [Side::Lan, Side::Wan] {
        let to = from.other();
        let n = side_name(from);
        let peer = flow.peers[to as usize];
        let c = counter(id, from);
        let _ = writeln!(o, "add counter ip {TABLE} {c}");
        let _ = writeln!(o, "add chain ip {TABLE} s{id}_{n}_in");
        if flow.mux {
            // RTCP packet types (RFC 5761 section 4): the relay reads them.
            let _ = writeln!(
                o,
                "add rule ip {TABLE} s{id}_{n}_in @th,72,8 200-206 return"
            );
        }
        let events: Vec<String> = (0..128u8)
            .filter(|pt| flow.events & (1 << pt) != 0)
            .map(|pt| pt.to_string())
            .collect();
        if !events.is_empty() {
            // The payload type: the 7 bits after the marker bit of the RTP header's byte 1.
            let _ = writeln!(
                o,
                "add rule ip {TABLE} s{id}_{n}_in @th,73,7 {{ {} }} return",
                events.join(", ")
            );
        }
        let _ = writeln!(
            o,
            "add rule ip {TABLE} s{id}_{n}_in notrack counter name \"{c}\" ip daddr set {} udp dport set {} meta mark set {:#010x} accept",
            peer.ip(),
            peer.port(),
            mark(slot, from)
        );
        let _ = writeln!(o, "add chain ip {TABLE} s{id}_{n}_out");
        let _ = writeln!(
            o,
            "add rule ip {TABLE} s{id}_{n}_out ip saddr set {} udp sport set {} ip dscp set ef accept",
            flow.addresses[to as usize], flow.ports[to as usize]
        );
    }
    for from in [Side::Lan, Side::Wan] {
        let n = side_name(from);
        let _ = writeln!(
            o,
            "add element ip {TABLE} out {{ {:#010x} : jump s{id}_{n}_out }}",
            mark(slot, from)
        );
        let _ = writeln!(
            o,
            "add element ip {TABLE} streams {{ {} : jump s{id}_{n}_in }}",
            key(flow, from)
        );
    }
}

/// Packets and bytes of every named counter in `nft -j list counters table ...` output.
pub(crate) fn parse_counters(json: &str) -> Result<HashMap<String, (u64, u64)>, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("nft's counter list: {e}"))?;
    let items = v["nftables"]
        .as_array()
        .ok_or("nft's counter list has no nftables array")?;
    Ok(items
        .iter()
        .filter_map(|i| {
            let c = i.get("counter")?;
            Some((
                c["name"].as_str()?.to_string(),
                (c["packets"].as_u64()?, c["bytes"].as_u64()?),
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests;
