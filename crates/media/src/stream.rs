//! One anchored stream (one media line of a call): the box's two legs, symmetric latching on
//! each, and what to do with every datagram that arrives.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::kernel::Flow;
use crate::packet::{classify, Packet};
use crate::rtcp::{self, RttMeter};
use crate::sdp::{Direction, MediaDesc, Transport};
use crate::settings::Policy;
use crate::stats::{static_payload, DirectionReport, DirectionStats, PayloadInfo};
use crate::Side;

/// How often the shell reads the kernel path's counters: a latched peer whose datagrams the
/// kernel forwards is only known to be alive that late.
pub(crate) const KERNEL_READ_EVERY: Duration = Duration::from_secs(1);

/// When a stream may move into the kernel, and when it must come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelRules {
    /// RTP packets the relay must have seen from each latched peer first (its payload types,
    /// sequence and timing are known then).
    pub after_packets: u64,
    /// A latched peer silent this long brings the stream back to user space (where silence,
    /// hold and a new source are handled as before).
    pub idle: Duration,
}

/// The stream's RTP that the kernel forwarded, per side it came from: packets and bytes.
#[derive(Debug, Clone, Copy, Default)]
struct KernelCounts {
    /// Totals of earlier stretches in the kernel.
    done: (u64, u64),
    /// The current stretch's counter.
    live: (u64, u64),
}

impl KernelCounts {
    fn total(&self) -> (u64, u64) {
        (self.done.0 + self.live.0, self.done.1 + self.live.1)
    }
}

/// A stream shared between the relay (offer/answer, timeouts, snapshots) and the tasks that
/// move its packets: each task locks only its own stream, never the whole relay.
pub type SharedStream = Arc<Mutex<Stream>>;

/// Which of a leg's two sockets: RTP (even port) or RTCP (odd port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Socket {
    /// The even port.
    Rtp = 0,
    /// The odd port.
    Rtcp = 1,
}

/// Send the datagram just handled out of the box's `socket` on `side`, to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// The side to send on.
    pub side: Side,
    /// Which of that side's sockets to send from.
    pub socket: Socket,
    /// The peer's address.
    pub to: SocketAddr,
}

/// The peer address a socket is locked to and when it last sent.
#[derive(Debug, Clone, Copy)]
struct Latch {
    addr: SocketAddr,
    last: Instant,
}

/// The box's end of a stream towards one side.
#[derive(Debug)]
struct Leg {
    /// The box's RTP port on this side (RTCP is the next one).
    port: u16,
    /// The peer's latest description of this stream, if it sent one.
    desc: Option<MediaDesc>,
    /// The last usable RTP address the peer's descriptions named (survives hold).
    named: Option<SocketAddr>,
    /// RTCP goes on the RTP port (negotiated by offer and answer).
    mux: bool,
    latch: [Option<Latch>; 2],
    rx: DirectionStats,
    /// Round trip box → this side's party → box, from the RTCP relayed.
    rtt: RttMeter,
    forwarded: u64,
    foreign: u64,
    invalid: u64,
    relatches: u64,
    undeliverable: u64,
    send_errors: u64,
    kernel: KernelCounts,
}

impl Leg {
    fn new(port: u16) -> Leg {
        Leg {
            port,
            desc: None,
            named: None,
            mux: false,
            latch: [None, None],
            rx: DirectionStats::default(),
            rtt: RttMeter::default(),
            forwarded: 0,
            foreign: 0,
            invalid: 0,
            relatches: 0,
            undeliverable: 0,
            send_errors: 0,
            kernel: KernelCounts::default(),
        }
    }

    /// Where packets for the peer's `socket` go: the latched address, else the description's.
    fn destination(&self, socket: Socket) -> Option<SocketAddr> {
        if let Some(d) = &self.desc {
            if d.zero_hold || d.port == 0 {
                return None;
            }
        }
        let named = self.desc.as_ref().and_then(|d| match socket {
            Socket::Rtp => d.rtp,
            Socket::Rtcp => d.rtcp,
        });
        self.latch[socket as usize].map(|l| l.addr).or(named)
    }

    fn on_hold(&self) -> bool {
        self.desc.as_ref().is_some_and(MediaDesc::on_hold)
    }
}

/// One media line of a call, anchored at the box: a sans-IO state machine fed with every
/// datagram that reaches one of its four sockets.
#[derive(Debug)]
pub struct Stream {
    id: u64,
    index: usize,
    media: String,
    transport: Transport,
    legs: [Leg; 2],
    payloads: Box<[PayloadInfo; 128]>,
    policy: Arc<Policy>,
    last_activity: Instant,
    /// The box's address on each side (what its sockets are bound to).
    addresses: [Ipv4Addr; 2],
    /// The kernel forwards (or was just asked to forward) this stream's RTP.
    offloaded: bool,
}

/// The kind of a datagram the stream accepted.
enum Accepted {
    Rtp(crate::packet::RtpHeader),
    Rtcp,
    Opaque,
}

impl Stream {
    pub(crate) fn new(
        id: u64,
        index: usize,
        desc: &MediaDesc,
        ports: [u16; 2],
        policy: Arc<Policy>,
        now: Instant,
    ) -> Stream {
        let video = desc.media.eq_ignore_ascii_case("video");
        let payloads = Box::new(std::array::from_fn(|pt| {
            let mut info = static_payload(pt as u8);
            if video && pt >= 96 {
                info.clock = 90000;
            }
            info
        }));
        Stream {
            id,
            index,
            media: desc.media.clone(),
            transport: desc.transport.unwrap_or(Transport::Rtp),
            legs: [Leg::new(ports[0]), Leg::new(ports[1])],
            payloads,
            policy,
            last_activity: now,
            addresses: [Ipv4Addr::UNSPECIFIED; 2],
            offloaded: false,
        }
    }

    /// Records the box's addresses the stream's sockets are bound to (for the kernel path).
    pub(crate) fn set_addresses(&mut self, addresses: [Ipv4Addr; 2]) {
        self.addresses = addresses;
    }

    /// What the kernel should forward for this stream now, or `None` to relay it in user
    /// space: both sides latched to IPv4 peers that have sent at least `after_packets` RTP
    /// packets and are not silent for `idle`, nobody holds the stream and both sides know
    /// where to send.
    pub(crate) fn kernel_flow(&self, now: Instant, rules: KernelRules) -> Option<Flow> {
        if self.on_hold() || self.addresses.iter().any(Ipv4Addr::is_unspecified) {
            return None;
        }
        let mut peers = [std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0); 2];
        for side in [Side::Lan, Side::Wan] {
            let leg = &self.legs[side as usize];
            let latch = leg.latch[Socket::Rtp as usize]?;
            let SocketAddr::V4(peer) = latch.addr else {
                return None;
            };
            if leg.destination(Socket::Rtp) != Some(latch.addr)
                || leg.rx.rtp_seen() < rules.after_packets
                || now.saturating_duration_since(latch.last) >= rules.idle
            {
                return None;
            }
            peers[side as usize] = peer;
        }
        Some(Flow {
            addresses: self.addresses,
            ports: [self.legs[0].port, self.legs[1].port],
            peers,
            mux: self.legs[0].mux,
            events: (0..128)
                .filter(|&pt| self.payloads[pt].codec == crate::stats::Codec::Event)
                .fold(0, |m, pt| m | 1 << pt),
        })
    }

    /// Whether the kernel forwards this stream's RTP.
    pub fn offloaded(&self) -> bool {
        self.offloaded
    }

    /// The stream was handed to the kernel at `now`.
    pub(crate) fn set_offloaded(&mut self, now: Instant) {
        self.offloaded = true;
        for leg in &mut self.legs {
            leg.rx.set_offloaded(now, true);
        }
    }

    /// The kernel's counter of the RTP from `side` in the current stretch: a count that moved
    /// means the latched peer is alive (and the call not silent).
    pub(crate) fn kernel_counts(&mut self, now: Instant, side: Side, packets: u64, bytes: u64) {
        let leg = &mut self.legs[side as usize];
        if packets > leg.kernel.live.0 {
            if let Some(l) = &mut leg.latch[Socket::Rtp as usize] {
                l.last = now;
            }
            self.last_activity = now;
        }
        leg.kernel.live = (packets.max(leg.kernel.live.0), bytes.max(leg.kernel.live.1));
        let (p, b) = leg.kernel.total();
        leg.rx.set_kernel(p, b);
    }

    /// The kernel no longer forwards the stream; `finals` are its counters' last values, per
    /// side the RTP came from (`None` if they could not be read: the last reading stays).
    pub(crate) fn kernel_withdrawn(&mut self, now: Instant, finals: [Option<(u64, u64)>; 2]) {
        for side in [Side::Lan, Side::Wan] {
            if let Some((p, b)) = finals[side as usize] {
                self.kernel_counts(now, side, p, b);
            }
            let leg = &mut self.legs[side as usize];
            let (p, b) = leg.kernel.total();
            leg.kernel = KernelCounts {
                done: (p, b),
                live: (0, 0),
            };
            leg.rx.set_offloaded(now, false);
        }
        self.offloaded = false;
    }

    /// The relay's id for this stream.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The box's RTP port on `side`.
    pub fn port(&self, side: Side) -> u16 {
        self.legs[side as usize].port
    }

    pub(crate) fn media(&self) -> &str {
        &self.media
    }

    pub(crate) fn transport(&self) -> Transport {
        self.transport
    }

    /// Takes a party's new description of this stream (offer or answer from `side`). A new
    /// address unlatches that leg, so the peer the description names can be learnt afresh.
    pub(crate) fn describe(&mut self, side: Side, desc: &MediaDesc, now: Instant) {
        for &(pt, info) in &desc.payloads {
            self.payloads[usize::from(pt)] = info;
        }
        let leg = &mut self.legs[side as usize];
        if desc.rtp.is_some() && leg.named.is_some() && desc.rtp != leg.named {
            leg.latch = [None, None];
        }
        leg.named = desc.rtp.or(leg.named);
        leg.desc = Some(desc.clone());
        self.last_activity = now;
    }

    /// Sets whether RTCP is multiplexed, once an answer has settled it.
    pub(crate) fn set_mux(&mut self, mux: bool) {
        self.legs[0].mux = mux;
        self.legs[1].mux = mux;
    }

    pub(crate) fn set_policy(&mut self, policy: Arc<Policy>) {
        self.policy = policy;
    }

    /// When a valid packet last passed (or the stream was last described).
    pub fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// Whether either party holds the stream (a direction other than sendrecv, or 0.0.0.0).
    pub fn on_hold(&self) -> bool {
        self.legs.iter().any(Leg::on_hold)
    }

    /// Handles a datagram from `src` that reached the box's `socket` on `side`; returns where
    /// to relay it, or `None` to drop it (the reason is counted).
    pub fn on_packet(
        &mut self,
        now: Instant,
        side: Side,
        socket: Socket,
        src: SocketAddr,
        bytes: &[u8],
    ) -> Option<Forward> {
        let accepted = match (self.transport, classify(bytes)) {
            (Transport::Datagram, _) | (Transport::Rtp, Packet::Dtls) => Accepted::Opaque,
            (Transport::Rtp, Packet::Rtp(h)) if socket == Socket::Rtp => Accepted::Rtp(h),
            (Transport::Rtp, Packet::Rtcp) => Accepted::Rtcp,
            _ => {
                self.legs[side as usize].invalid += 1;
                return None;
            }
        };
        if !self.latch(now, side, socket, src) {
            self.legs[side as usize].foreign += 1;
            return None;
        }
        self.last_activity = now;
        let rx = &mut self.legs[side as usize].rx;
        let (out_socket, wanted) = match accepted {
            Accepted::Rtp(h) => {
                rx.on_rtp(now, &h, bytes.len(), self.payloads[usize::from(h.pt)]);
                (Socket::Rtp, Socket::Rtp)
            }
            Accepted::Rtcp => {
                rx.on_rtcp(bytes.len());
                let reports = rtcp::parse(bytes);
                // This side's party reports on what it receives: the other side's RTP.
                let theirs = &mut self.legs[side.other() as usize].rx;
                for b in &reports.blocks {
                    if theirs.ssrc() == Some(b.ssrc) {
                        theirs.on_far_report(now, b);
                    }
                }
                self.legs[side as usize].rtt.received(now, &reports);
                self.legs[side.other() as usize].rtt.sent(now, &reports);
                (Socket::Rtcp, Socket::Rtcp)
            }
            Accepted::Opaque => {
                rx.on_other(now, bytes.len());
                (socket, socket)
            }
        };
        let out = &mut self.legs[side.other() as usize];
        // With mux, RTCP for this peer goes to its RTP address from the RTP socket.
        let (out_socket, to) = if out.mux && wanted == Socket::Rtcp {
            (Socket::Rtp, out.destination(Socket::Rtp))
        } else {
            (out_socket, out.destination(wanted))
        };
        match to {
            Some(to) => {
                out.forwarded += 1;
                Some(Forward {
                    side: side.other(),
                    socket: out_socket,
                    to,
                })
            }
            None => {
                out.undeliverable += 1;
                None
            }
        }
    }

    /// Counts a datagram the shell could not send out of `side`.
    pub fn send_failed(&mut self, side: Side) {
        let leg = &mut self.legs[side as usize];
        leg.send_errors += 1;
        leg.forwarded = leg.forwarded.saturating_sub(1);
    }

    /// Symmetric latching: the first allowed source on a socket becomes its peer; another
    /// allowed source takes over only once the peer has been silent for `relatch_after`
    /// (and, for RTCP, only from the host that sends the RTP).
    fn latch(&mut self, now: Instant, side: Side, socket: Socket, src: SocketAddr) -> bool {
        let rtp_host = self.legs[side as usize].latch[0].map(|l| l.addr.ip());
        let leg = &mut self.legs[side as usize];
        let slot = &mut leg.latch[socket as usize];
        match slot {
            Some(l) if l.addr == src => {
                l.last = now;
                true
            }
            Some(l) => {
                // While the kernel forwards the peer's RTP, its activity is only known from
                // counters read every KERNEL_READ_EVERY: allow for that much staleness.
                let slack = if self.offloaded {
                    KERNEL_READ_EVERY
                } else {
                    Duration::ZERO
                };
                let silent =
                    now.saturating_duration_since(l.last) >= self.policy.relatch_after + slack;
                let same_host = socket == Socket::Rtp || rtp_host.is_none_or(|h| h == src.ip());
                if silent && same_host && self.policy.allows(side, src.ip()) {
                    tracing::debug!(stream = self.id, ?side, ?socket, from = %l.addr, to = %src, "re-latched");
                    *l = Latch {
                        addr: src,
                        last: now,
                    };
                    leg.relatches += 1;
                    true
                } else {
                    false
                }
            }
            None if self.policy.allows(side, src.ip()) => {
                *slot = Some(Latch {
                    addr: src,
                    last: now,
                });
                true
            }
            None => false,
        }
    }

    /// The serialisable state and figures.
    pub fn report(&self) -> StreamReport {
        // What the relay knows of the delay: half of each leg's round trip.
        let one_way_ms: f64 = self.legs.iter().filter_map(|l| l.rtt.millis()).sum::<f64>() / 2.0;
        let leg = |side: Side| {
            let l = &self.legs[side as usize];
            // What the kernel forwarded towards this side came from the other one.
            let kernel_out = self.legs[side.other() as usize].kernel.total().0;
            let latched = l.latch[0].map(|x| x.addr);
            LegReport {
                port: l.port,
                peer: latched.or(l.desc.as_ref().and_then(|d| d.rtp)),
                latched: latched.is_some(),
                rtcp_mux: l.mux,
                direction: l.desc.as_ref().map(|d| d.direction).unwrap_or_default(),
                zero_hold: l.desc.as_ref().is_some_and(|d| d.zero_hold),
                received: l.rx.report_with_delay(one_way_ms),
                rtt_ms: l.rtt.millis(),
                forwarded: l.forwarded + kernel_out,
                dropped_foreign: l.foreign,
                dropped_invalid: l.invalid,
                relatches: l.relatches,
                undeliverable: l.undeliverable,
                send_errors: l.send_errors,
            }
        };
        StreamReport {
            index: self.index,
            media: self.media.clone(),
            on_hold: self.on_hold(),
            kernel: self.offloaded,
            lan: leg(Side::Lan),
            wan: leg(Side::Wan),
        }
    }
}

/// One stream of a call as `voxgate calls --json` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamReport {
    /// Position of the media line in the SDP.
    pub index: usize,
    /// Media type (audio, video, image).
    pub media: String,
    /// Whether a party holds the stream.
    pub on_hold: bool,
    /// Whether the kernel forwards its RTP (figures then include the kernel's counters).
    #[serde(default)]
    pub kernel: bool,
    /// The leg towards the phone.
    pub lan: LegReport,
    /// The leg towards the provider.
    pub wan: LegReport,
}

/// The box's end of a stream towards one side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegReport {
    /// The box's RTP port on this side (RTCP on the next one).
    pub port: u16,
    /// The peer: the latched source, else the address its SDP names.
    pub peer: Option<SocketAddr>,
    /// Whether RTP from the peer has been latched.
    pub latched: bool,
    /// Whether RTCP is multiplexed on the RTP port.
    pub rtcp_mux: bool,
    /// The direction the peer's SDP gives.
    pub direction: Direction,
    /// Whether the peer holds with a 0.0.0.0 address.
    pub zero_hold: bool,
    /// Quality of what arrived from this side.
    pub received: DirectionReport,
    /// Round trip between the box and this side's party, from RTCP sender and receiver
    /// reports (absent until both have passed, and with SRTCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Datagrams relayed out towards this side.
    pub forwarded: u64,
    /// Datagrams from sources that are not (or no longer) this leg's peer, dropped.
    pub dropped_foreign: u64,
    /// Malformed datagrams (or STUN, RTP on the RTCP port) from this side, dropped.
    pub dropped_invalid: u64,
    /// Times another source took over after the peer fell silent.
    pub relatches: u64,
    /// Datagrams for this side dropped for want of an address (hold at 0.0.0.0, no SDP yet).
    pub undeliverable: u64,
    /// Datagrams towards this side the kernel refused to send.
    pub send_errors: u64,
}

/// One line for the log: what arrived from the peer and its quality, then only the drops and
/// re-latches that happened.
impl std::fmt::Display for LegReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.received;
        match self.peer {
            Some(p) => write!(f, "{p}")?,
            None => f.write_str("no peer")?,
        }
        if !self.latched {
            f.write_str(" (not latched)")?;
        }
        write!(
            f,
            " rx {} lost {} ({:.1}%) jitter {:.1} ms",
            r.packets, r.lost, r.loss_percent, r.jitter_ms
        )?;
        if r.max_gap_ms > 0 {
            write!(f, " gap {} ms", r.max_gap_ms)?;
        }
        if let Some(m) = r.mos {
            write!(f, " mos {m:.1}")?;
        }
        if let Some(rtt) = self.rtt_ms {
            write!(f, " rtt {rtt:.0} ms")?;
        }
        write!(f, " tx {}", self.forwarded)?;
        for (n, what) in [
            (self.dropped_foreign, "foreign"),
            (self.dropped_invalid, "invalid"),
            (self.relatches, "relatches"),
            (self.undeliverable, "undeliverable"),
            (self.send_errors, "send errors"),
        ] {
            if n > 0 {
                write!(f, " {what} {n}")?;
            }
        }
        Ok(())
    }
}

/// `audio#0 lan … | wan …`, with `kernel` and `held` when they apply.
impl std::fmt::Display for StreamReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.media, self.index)?;
        if self.kernel {
            f.write_str(" kernel")?;
        }
        if self.on_hold {
            f.write_str(" held")?;
        }
        write!(f, ": lan {} | wan {}", self.lan, self.wan)
    }
}

#[cfg(test)]
mod tests;
