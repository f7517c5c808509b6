//! Per-direction call quality: counts, loss from sequence numbers, RFC 3550 interarrival
//! jitter, longest gap, payload types, and an E-model estimate of R-factor and MOS.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::packet::RtpHeader;
use crate::rtcp::Block;

/// A jump of more than this many sequence numbers is a source restart, not loss (RFC 3550 A.1).
const MAX_DROPOUT: u16 = 3000;
/// Packets this far behind the highest sequence number count as reordered (RFC 3550 A.1).
const MAX_MISORDER: u16 = 100;

/// The codec family of a payload type, for the E-model and for jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// G.711 (PCMU/PCMA), and anything not listed below.
    #[default]
    G711,
    /// G.729 and G.729A.
    G729,
    /// RFC 4733 telephone events: excluded from jitter (events repeat their timestamp) and
    /// from the codec choice.
    Event,
}

impl Codec {
    /// The family of an rtpmap encoding name (case-insensitive).
    pub fn from_name(name: &str) -> Codec {
        match name.to_ascii_lowercase().as_str() {
            "telephone-event" => Codec::Event,
            "g729" | "g729a" | "g729ab" => Codec::G729,
            _ => Codec::G711,
        }
    }

    /// Equipment impairment Ie and packet-loss robustness Bpl (ITU-T G.113 Appendix I).
    /// G.711 is taken with packet-loss concealment (Bpl 25.1), as desk phones have it;
    /// wideband and other codecs are scored as G.711 on the narrowband scale.
    fn impairment(self) -> (f64, f64) {
        match self {
            Codec::G729 => (11.0, 19.0),
            Codec::G711 | Codec::Event => (0.0, 25.1),
        }
    }
}

/// How a payload type is clocked and which codec it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadInfo {
    /// RTP clock rate in Hz.
    pub clock: u32,
    /// Codec family.
    pub codec: Codec,
}

/// The static payload types of RFC 3551 with a clock rate other than 8000 Hz or a codec the
/// E-model distinguishes; the rest (and unknown dynamic types) default to 8000 Hz, G.711.
pub fn static_payload(pt: u8) -> PayloadInfo {
    let clock = match pt {
        6 => 16000,
        10 | 11 => 44100,
        16 => 11025,
        17 => 22050,
        14 | 25 | 26 | 28 | 31..=34 => 90000,
        _ => 8000,
    };
    let codec = if pt == 18 { Codec::G729 } else { Codec::G711 };
    PayloadInfo { clock, codec }
}

/// RFC 3550 appendix A.1 sequence tracking for one SSRC.
#[derive(Debug, Clone)]
struct Sequence {
    ssrc: u32,
    base: u32,
    max: u16,
    cycles: u32,
    received: u64,
    /// After a large jump, the sequence number that would confirm a restart.
    bad: Option<u16>,
}

impl Sequence {
    fn new(ssrc: u32, seq: u16) -> Sequence {
        Sequence {
            ssrc,
            base: u32::from(seq),
            max: seq,
            cycles: 0,
            received: 1,
            bad: None,
        }
    }

    fn expected(&self) -> u64 {
        u64::from(self.cycles) + u64::from(self.max) + 1 - u64::from(self.base)
    }

    /// Counts `seq`; false when it jumped so far that the sequence restarted.
    fn update(&mut self, seq: u16) -> bool {
        let delta = seq.wrapping_sub(self.max);
        if delta < MAX_DROPOUT {
            if seq < self.max {
                self.cycles += 1 << 16;
            }
            self.max = seq;
        } else if delta <= u16::MAX - MAX_MISORDER {
            // A big jump: believe it only when the next packet follows it.
            if self.bad == Some(seq) {
                return false;
            }
            self.bad = Some(seq.wrapping_add(1));
            return true;
        }
        // (Otherwise a duplicate or reordered packet: counted, max unchanged.)
        self.bad = None;
        self.received += 1;
        true
    }
}

/// Where a figure of a [`DirectionReport`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Measured by the relay on the RTP it saw (exact for loss, bracketed by sequence numbers).
    #[default]
    Relay,
    /// From the RTCP report blocks the party receiving this direction sends about it: the
    /// kernel forwarded the RTP without the relay seeing it. End to end, so it also counts
    /// what the box's far leg lost or jittered.
    Rtcp,
}

/// The latest report block the receiving party sent about this direction's source.
#[derive(Debug, Clone, Copy)]
struct FarEnd {
    at: Instant,
    /// The loss the relay had seen when the report arrived.
    seen_lost: i64,
    fraction_lost: u8,
    cumulative_lost: i64,
    /// Interarrival jitter in seconds (`None`: the source's clock rate is unknown).
    jitter: Option<f64>,
}

/// A stretch in the kernel whose RTP the relay has not yet bracketed with sequence numbers
/// of its own: loss and jitter in it are only known from the receiving party's RTCP.
#[derive(Debug, Clone, Copy)]
struct Stretch {
    started: Instant,
    /// The receiving party's cumulative loss when the stretch began (its last report then,
    /// or, before it reported, the loss the relay had seen: the party's count covers that).
    base_lost: i64,
}

/// Quality of the media arriving at the box from one side.
#[derive(Debug, Clone, Default)]
pub struct DirectionStats {
    packets: u64,
    bytes: u64,
    rtcp_packets: u64,
    rtcp_bytes: u64,
    seq: Option<Sequence>,
    /// Expected and received packets of earlier SSRCs (or restarted sequences).
    past_expected: u64,
    past_received: u64,
    /// Interarrival jitter estimate in seconds.
    jitter: f64,
    /// Arrival and timestamp of the previous packet (with its SSRC and clock) for jitter.
    prev: Option<(Instant, u32, u32, u32)>,
    last_arrival: Option<Instant>,
    max_gap: Duration,
    payload_types: u128,
    codec: Codec,
    /// RTP the kernel forwarded without the relay seeing it: packets and bytes.
    kernel: (u64, u64),
    /// The kernel forwards this direction now: RTP the relay still sees (events) is counted
    /// aside, not in the sequence, whose span then jumps over the kernel's stretch once the
    /// relay has the stream back.
    offloaded: bool,
    /// RTP the relay saw while the kernel had the stream.
    aside: u64,
    /// Kernel packets and RTP seen aside that precede RTP the relay saw afterwards (with the
    /// stream back from the kernel): inside the sequence span already.
    bracketed: u64,
    /// The receiving party's latest report block about this direction.
    far: Option<FarEnd>,
    /// The kernel stretch not bracketed yet (set while offloaded, and after until the relay
    /// sees RTP again).
    stretch: Option<Stretch>,
}

impl DirectionStats {
    /// Sets the totals of the RTP the kernel path forwarded from this side: they count as
    /// received, and loss stays exact (see `report_with_delay`).
    pub fn set_kernel(&mut self, packets: u64, bytes: u64) {
        self.kernel = (packets, bytes);
    }

    /// Whether the kernel forwards this direction now (from `now`).
    pub fn set_offloaded(&mut self, now: Instant, offloaded: bool) {
        self.offloaded = offloaded;
        if offloaded && self.stretch.is_none() {
            let seen = self.seen_lost();
            // The party's count covers the loss the relay saw after its last report too.
            let base_lost = match self.far {
                Some(f) => f.cumulative_lost + (seen - f.seen_lost).max(0),
                None => seen,
            };
            self.stretch = Some(Stretch {
                started: now,
                base_lost,
            });
        }
    }

    /// The SSRC of the RTP the relay last counted in sequence.
    pub fn ssrc(&self) -> Option<u32> {
        self.seq.as_ref().map(|s| s.ssrc)
    }

    /// The party receiving this direction reported on it at `now` (a report block about
    /// [`DirectionStats::ssrc`]): its jitter is converted with the clock rate of the last
    /// RTP the relay saw.
    pub fn on_far_report(&mut self, now: Instant, b: &Block) {
        let clock = self.prev.map(|p| p.3).filter(|&c| c > 0);
        self.far = Some(FarEnd {
            at: now,
            seen_lost: self.seen_lost(),
            fraction_lost: b.fraction_lost,
            cumulative_lost: i64::from(b.cumulative_lost),
            jitter: clock.map(|c| f64::from(b.jitter) / f64::from(c)),
        });
    }

    /// Accounts an RTP packet of `len` bytes that arrived at `now`.
    pub fn on_rtp(&mut self, now: Instant, h: &RtpHeader, len: usize, pt: PayloadInfo) {
        self.packets += 1;
        self.bytes += len as u64;
        self.payload_types |= 1 << h.pt;
        if self.offloaded {
            self.aside += 1;
            return;
        }
        // The kernel's counters are final here: the stream is only back once they were read.
        self.bracketed = self.kernel.0 + self.aside;
        self.stretch = None;
        if let Some(last) = self.last_arrival {
            self.max_gap = self.max_gap.max(now.saturating_duration_since(last));
        }
        self.last_arrival = Some(now);
        let counted = match &mut self.seq {
            Some(s) if s.ssrc == h.ssrc => s.update(h.seq),
            _ => false,
        };
        if !counted {
            // A new SSRC (or a restarted sequence): keep the old one's totals.
            if let Some(old) = self.seq.take() {
                self.past_expected += old.expected();
                self.past_received += old.received;
            }
            self.seq = Some(Sequence::new(h.ssrc, h.seq));
        }
        if pt.codec == Codec::Event {
            return;
        }
        self.codec = pt.codec;
        // RFC 3550 A.8, in seconds rather than timestamp units so that a change of clock rate
        // (a codec switch) does not rescale the estimate.
        if let Some((at, ts, ssrc, clock)) = self.prev {
            if ssrc == h.ssrc && clock == pt.clock {
                let sent = f64::from(h.ts.wrapping_sub(ts) as i32) / f64::from(clock);
                let d = now.saturating_duration_since(at).as_secs_f64() - sent;
                self.jitter += (d.abs() - self.jitter) / 16.0;
            }
        }
        self.prev = Some((now, h.ts, h.ssrc, pt.clock));
    }

    /// RTP packets the relay itself saw.
    pub fn rtp_seen(&self) -> u64 {
        match &self.seq {
            Some(s) => self.past_received + s.received,
            None => self.past_received,
        }
    }

    /// Accounts an RTCP packet of `len` bytes.
    pub fn on_rtcp(&mut self, len: usize) {
        self.rtcp_packets += 1;
        self.rtcp_bytes += len as u64;
    }

    /// Accounts a datagram relayed without inspection (T.38 UDPTL, DTLS).
    pub fn on_other(&mut self, now: Instant, len: usize) {
        self.packets += 1;
        self.bytes += len as u64;
        if let Some(last) = self.last_arrival {
            self.max_gap = self.max_gap.max(now.saturating_duration_since(last));
        }
        self.last_arrival = Some(now);
    }

    /// The serialisable figures.
    pub fn report(&self) -> DirectionReport {
        self.report_with_delay(0.0)
    }

    /// The figures, the R-factor counting `network_ms` of one-way network delay measured
    /// elsewhere (RTCP round trips) on top of [`BASE_DELAY_MS`].
    pub fn report_with_delay(&self, network_ms: f64) -> DirectionReport {
        let (mut expected, received) = self.counts();
        // In a stretch the relay has not bracketed, loss and jitter are the receiving party's,
        // once it has reported during the stretch: its loss since the stretch began is added
        // to what the relay saw (and to what was expected), its jitter replaces the relay's
        // (which stopped when the kernel took the stream).
        let far = match (self.stretch, self.far) {
            (Some(st), Some(f)) if f.at >= st.started => Some((st, f)),
            _ => None,
        };
        let mut loss_source = Source::Relay;
        let mut jitter_source = Source::Relay;
        let mut jitter = self.jitter;
        if let Some((st, f)) = far {
            expected += (f.cumulative_lost - st.base_lost).max(0) as u64;
            loss_source = Source::Rtcp;
            if let Some(j) = f.jitter {
                jitter = j;
                jitter_source = Source::Rtcp;
            }
        }
        // Duplicates can make received exceed expected; RFC 3550 clamps loss at zero.
        let lost = expected.saturating_sub(received);
        let loss_percent = if expected > 0 {
            100.0 * lost as f64 / expected as f64
        } else {
            0.0
        };
        let jitter_ms = jitter * 1000.0;
        let r = (expected > 0).then(|| r_factor(loss_percent, jitter_ms, network_ms, self.codec));
        DirectionReport {
            packets: self.packets + self.kernel.0,
            bytes: self.bytes + self.kernel.1,
            rtcp_packets: self.rtcp_packets,
            rtcp_bytes: self.rtcp_bytes,
            expected,
            lost,
            loss_percent: round2(loss_percent),
            jitter_ms: round2(jitter_ms),
            max_gap_ms: self.max_gap.as_millis() as u64,
            payload_types: (0..128u8)
                .filter(|pt| self.payload_types & (1 << pt) != 0)
                .collect(),
            r_factor: r.map(round2),
            mos: r.map(|r| round2(mos(r))),
            loss_source,
            jitter_source,
            far_end: self.far.map(|f| FarEndReport {
                fraction_lost_percent: round2(f64::from(f.fraction_lost) * 100.0 / 256.0),
                cumulative_lost: f.cumulative_lost,
                jitter_ms: f.jitter.map(|j| round2(j * 1000.0)),
            }),
        }
    }

    /// The loss the relay has seen itself.
    fn seen_lost(&self) -> i64 {
        let (expected, received) = self.counts();
        expected.saturating_sub(received) as i64
    }

    /// Packets expected and received: the relay's sequence numbers, plus the kernel's packets
    /// (and RTP seen aside meanwhile), inside the sequence span once the relay saw RTP after
    /// them, else as many expected as arrived (loss there is not seen by the relay).
    fn counts(&self) -> (u64, u64) {
        let (expected, received) = match &self.seq {
            Some(s) => (
                self.past_expected + s.expected(),
                self.past_received + s.received,
            ),
            None => (self.past_expected, self.past_received),
        };
        let unbracketed = self.kernel.0 + self.aside - self.bracketed;
        (
            expected + unbracketed,
            received + self.kernel.0 + self.aside,
        )
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Assumed mouth-to-ear delay before the jitter buffer: 20 ms packetisation plus 20 ms for
/// codec, access links and the far network, which the relay cannot see.
const BASE_DELAY_MS: f64 = 40.0;

/// The ITU-T G.107 E-model in the simplification of Cole & Rosenbluth (2001): R0 − Is taken
/// as 93.2 (G.107 defaults), the delay impairment `Id = 0.024 d + 0.11 (d − 177.3) H(d −
/// 177.3)` on an estimated one-way delay `d` = [`BASE_DELAY_MS`] + `network_ms` (one-way
/// network delay measured from RTCP, 0 when unknown) + a jitter buffer of twice the jitter,
/// and the equipment impairment `Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl + Bpl)`
/// (random loss, BurstR = 1) with `Ie`/`Bpl` of the codec. No echo, no advantage factor.
pub fn r_factor(loss_percent: f64, jitter_ms: f64, network_ms: f64, codec: Codec) -> f64 {
    let d = BASE_DELAY_MS + network_ms + 2.0 * jitter_ms;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let (ie, bpl) = codec.impairment();
    let ie_eff = ie + (95.0 - ie) * loss_percent / (loss_percent + bpl);
    (93.2 - id - ie_eff).clamp(0.0, 100.0)
}

/// MOS (conversational quality, 1 to 4.5) from an R-factor (G.107 Annex B).
pub fn mos(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// Serialisable quality of one direction of one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionReport {
    /// RTP (or other media) packets received and relayed.
    pub packets: u64,
    /// Their bytes (UDP payload).
    pub bytes: u64,
    /// RTCP packets received and relayed.
    pub rtcp_packets: u64,
    /// Their bytes.
    pub rtcp_bytes: u64,
    /// Packets the sequence numbers say were sent.
    pub expected: u64,
    /// Packets lost before reaching the box (expected − received, never negative).
    pub lost: u64,
    /// `lost` as a percentage of `expected`.
    pub loss_percent: f64,
    /// RFC 3550 interarrival jitter in milliseconds.
    pub jitter_ms: f64,
    /// Longest time between two packets, in milliseconds (includes hold).
    pub max_gap_ms: u64,
    /// RTP payload types seen.
    pub payload_types: Vec<u8>,
    /// Estimated R-factor (see [`r_factor`]); absent before any RTP.
    pub r_factor: Option<f64>,
    /// Estimated MOS from the R-factor.
    pub mos: Option<f64>,
    /// Where `lost` (and `expected`, `loss_percent`) come from: `relay`, or `rtcp` while part
    /// of the RTP went through the kernel unseen and the receiving party has reported since.
    #[serde(default)]
    pub loss_source: Source,
    /// Where `jitter_ms` comes from (as `loss_source`).
    #[serde(default)]
    pub jitter_source: Source,
    /// The receiving party's own view of this direction, from its latest RTCP report block
    /// (end to end: it includes the box's far leg). Absent until it has reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub far_end: Option<FarEndReport>,
}

/// What the party receiving a direction says of it in RTCP (RFC 3550 6.4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FarEndReport {
    /// Loss since its previous report, in percent.
    pub fraction_lost_percent: f64,
    /// Packets lost since it began receiving (negative with duplicates).
    pub cumulative_lost: i64,
    /// Its interarrival jitter in milliseconds (absent if the clock rate is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(seq: u16, ts: u32) -> RtpHeader {
        RtpHeader {
            pt: 0,
            marker: false,
            seq,
            ts,
            ssrc: 7,
        }
    }

    const PCMU: PayloadInfo = PayloadInfo {
        clock: 8000,
        codec: Codec::G711,
    };

    /// Feeds packets `(seq, arrival ms)` with timestamps 160 per sequence number.
    fn feed(packets: &[(u16, u64)]) -> DirectionReport {
        let t0 = Instant::now();
        let mut s = DirectionStats::default();
        for &(seq, ms) in packets {
            let h = hdr(seq, u32::from(seq).wrapping_mul(160));
            s.on_rtp(t0 + Duration::from_millis(ms), &h, 172, PCMU);
        }
        s.report()
    }

    #[test]
    fn loss_with_wrap_and_reordering() {
        // 65533..=65535, 0..=4 with 65535 missing and 2 arriving after 3.
        let r = feed(&[
            (65533, 0),
            (65534, 20),
            (0, 60),
            (1, 80),
            (3, 120),
            (2, 125),
            (4, 140),
        ]);
        assert_eq!((r.packets, r.expected, r.lost), (7, 8, 1));
        assert_eq!(r.loss_percent, 12.5);
        assert_eq!(r.max_gap_ms, 40);
        assert_eq!(r.bytes, 7 * 172);
        assert_eq!(r.payload_types, vec![0]);
    }

    #[test]
    fn duplicates_do_not_make_loss_negative() {
        let r = feed(&[(10, 0), (11, 20), (11, 21), (12, 40)]);
        assert_eq!((r.packets, r.expected, r.lost), (4, 3, 0));
    }

    #[test]
    fn a_restarted_sequence_is_not_loss() {
        // A jump confirmed by the next packet: the source restarted (RFC 3550 A.1). The first
        // sequence expected 2 and got 2; the new one starts at 20001 (the packet that only
        // announced the jump is relayed but in neither sequence).
        let r = feed(&[(1, 0), (2, 20), (20000, 40), (20001, 60)]);
        assert_eq!((r.packets, r.expected, r.lost), (4, 3, 0));
        // A single stray jump is ignored (not counted) and the sequence continues.
        let r = feed(&[(1, 0), (2, 20), (20000, 40), (3, 60)]);
        assert_eq!((r.packets, r.expected, r.lost), (4, 3, 0));
    }

    #[test]
    fn a_new_ssrc_keeps_the_old_totals() {
        let t0 = Instant::now();
        let mut s = DirectionStats::default();
        for (i, seq) in [100u16, 102].into_iter().enumerate() {
            s.on_rtp(
                t0 + Duration::from_millis(20 * i as u64),
                &hdr(seq, 0),
                172,
                PCMU,
            );
        }
        let mut other = hdr(5000, 0);
        other.ssrc = 8;
        s.on_rtp(t0 + Duration::from_millis(60), &other, 172, PCMU);
        let r = s.report();
        assert_eq!((r.packets, r.expected, r.lost), (3, 4, 1));
    }

    #[test]
    fn jitter_against_hand_computed_values() {
        // Packet 2 arrives 10 ms late: D = +10 ms, then D = -10 ms for packet 3.
        // J1 = 10/16 = 0.625 ms; J2 = 0.625 + (10 - 0.625)/16 = 1.2109375 ms.
        let r = feed(&[(1, 0), (2, 30), (3, 40)]);
        assert_eq!(r.jitter_ms, 1.21);
        let t0 = Instant::now();
        let mut s = DirectionStats::default();
        for (seq, ms) in [(1u16, 0u64), (2, 30), (3, 40)] {
            s.on_rtp(
                t0 + Duration::from_millis(ms),
                &hdr(seq, u32::from(seq) * 160),
                172,
                PCMU,
            );
        }
        assert!((s.jitter * 1000.0 - 1.2109375).abs() < 1e-9);
        // Perfectly paced packets: no jitter.
        assert_eq!(feed(&[(1, 0), (2, 20), (3, 40), (4, 60)]).jitter_ms, 0.0);
    }

    #[test]
    fn events_do_not_count_towards_jitter() {
        let t0 = Instant::now();
        let mut s = DirectionStats::default();
        let event = PayloadInfo {
            clock: 8000,
            codec: Codec::Event,
        };
        s.on_rtp(t0, &hdr(1, 160), 172, PCMU);
        // Three event packets repeating one timestamp, 50 ms apart.
        for i in 0..3u16 {
            let mut h = hdr(2 + i, 320);
            h.pt = 101;
            s.on_rtp(
                t0 + Duration::from_millis(50 * (u64::from(i) + 1)),
                &h,
                16,
                event,
            );
        }
        s.on_rtp(
            t0 + Duration::from_millis(200),
            &hdr(5, 160 + 1600),
            172,
            PCMU,
        );
        let r = s.report();
        assert_eq!(r.jitter_ms, 0.0);
        assert_eq!(r.payload_types, vec![0, 101]);
        assert_eq!((r.expected, r.lost), (5, 0));
    }

    fn block(cumulative_lost: i32, jitter: u32) -> Block {
        Block {
            ssrc: 7,
            fraction_lost: 0,
            cumulative_lost,
            highest_seq: 0,
            jitter,
            lsr: 0,
            dlsr: 0,
        }
    }

    /// 50 paced packets (sequence 0..50 but 10 missing) from `t0`, then the kernel takes over.
    fn offloaded_after_loss(t0: Instant) -> DirectionStats {
        let mut s = DirectionStats::default();
        for seq in (0..50u16).filter(|&q| q != 10) {
            let at = t0 + Duration::from_millis(20 * u64::from(seq));
            s.on_rtp(at, &hdr(seq, u32::from(seq) * 160), 172, PCMU);
        }
        s.set_offloaded(t0 + Duration::from_secs(1), true);
        s
    }

    #[test]
    fn in_the_kernel_loss_and_jitter_come_from_the_receiver_s_rtcp() {
        let t0 = Instant::now();
        let mut s = offloaded_after_loss(t0);
        s.set_kernel(200, 200 * 172);
        let r = s.report();
        assert_eq!(
            (r.lost, r.expected),
            (1, 250),
            "no report yet: the relay's own"
        );
        assert_eq!(
            (r.loss_source, r.jitter_source),
            (Source::Relay, Source::Relay)
        );
        assert_eq!(r.jitter_ms, 0.0);
        assert_eq!(r.far_end, None);

        // The receiver reports 6 lost since it began (the 1 the relay saw too) and 80
        // timestamp units of jitter: 10 ms at 8000 Hz.
        s.on_far_report(t0 + Duration::from_secs(5), &block(6, 80));
        let r = s.report();
        assert_eq!((r.lost, r.expected, r.packets), (6, 255, 249));
        assert_eq!(
            (r.loss_source, r.jitter_source),
            (Source::Rtcp, Source::Rtcp)
        );
        assert_eq!(r.jitter_ms, 10.0);
        let far = r.far_end.clone().unwrap();
        assert_eq!((far.cumulative_lost, far.jitter_ms), (6, Some(10.0)));
        // The MOS follows the RTCP figures.
        let quiet = r_factor(100.0 / 250.0, 0.0, 0.0, Codec::G711);
        assert!(r.r_factor.unwrap() < round2(quiet));

        // Back in user space, the kernel's stretch withdrawn with 210 packets; the relay's
        // next packet brackets it with sequence numbers: exact again, and its own jitter.
        s.set_kernel(210, 210 * 172);
        s.set_offloaded(t0 + Duration::from_secs(6), false);
        let r = s.report();
        assert_eq!(
            r.loss_source,
            Source::Rtcp,
            "until the relay sees RTP again"
        );
        let seq = 50 + 210 + 3; // three lost in the kernel's stretch
        s.on_rtp(
            t0 + Duration::from_millis(20 * u64::from(seq)),
            &hdr(seq, u32::from(seq) * 160),
            172,
            PCMU,
        );
        let r = s.report();
        assert_eq!(
            (r.lost, r.loss_source, r.jitter_source),
            (4, Source::Relay, Source::Relay)
        );
        assert_eq!(r.jitter_ms, 0.0);
    }

    #[test]
    fn a_report_from_before_the_stretch_is_its_baseline() {
        let t0 = Instant::now();
        let mut s = DirectionStats::default();
        for seq in 0..20u16 {
            let at = t0 + Duration::from_millis(20 * u64::from(seq));
            s.on_rtp(at, &hdr(seq, u32::from(seq) * 160), 172, PCMU);
        }
        // The receiver had lost 2 by its report at 0.4 s (the relay 0: lost after the box).
        s.on_far_report(t0 + Duration::from_millis(400), &block(2, 8));
        // Then the relay sees one lost before the kernel takes over.
        for seq in 21..50u16 {
            let at = t0 + Duration::from_millis(20 * u64::from(seq));
            s.on_rtp(at, &hdr(seq, u32::from(seq) * 160), 172, PCMU);
        }
        s.set_offloaded(t0 + Duration::from_secs(1), true);
        s.set_kernel(100, 100 * 172);
        // The old report is not current: the relay's figures, its jitter unchanged.
        let r = s.report();
        assert_eq!(
            (r.lost, r.loss_source, r.jitter_source),
            (1, Source::Relay, Source::Relay)
        );
        // The next report says 2 + 1 + 4 in the kernel: only those 4 are added.
        s.on_far_report(t0 + Duration::from_secs(3), &block(7, 16));
        let r = s.report();
        assert_eq!((r.lost, r.loss_source), (5, Source::Rtcp));
        assert_eq!(r.jitter_ms, 2.0);
        // A report with less loss than the baseline (duplicates) adds nothing.
        s.on_far_report(t0 + Duration::from_secs(4), &block(-1, 0));
        assert_eq!(s.report().lost, 1);
    }

    #[test]
    fn jitter_is_converted_with_the_stream_s_clock_rate() {
        let t0 = Instant::now();
        let mut s = DirectionStats::default();
        let wideband = PayloadInfo {
            clock: 16000,
            codec: Codec::G711,
        };
        for seq in 0..3u16 {
            let at = t0 + Duration::from_millis(20 * u64::from(seq));
            s.on_rtp(at, &hdr(seq, u32::from(seq) * 320), 332, wideband);
        }
        s.set_offloaded(t0 + Duration::from_secs(1), true);
        s.on_far_report(t0 + Duration::from_secs(2), &block(0, 80));
        let r = s.report();
        assert_eq!((r.jitter_ms, r.jitter_source), (5.0, Source::Rtcp));
        // Outside the kernel the relay's own jitter stays, the report is only shown.
        let mut s = DirectionStats::default();
        s.on_rtp(t0, &hdr(1, 160), 172, PCMU);
        s.on_far_report(t0 + Duration::from_secs(2), &block(3, 80));
        let r = s.report();
        assert_eq!(
            (r.jitter_ms, r.lost, r.jitter_source),
            (0.0, 0, Source::Relay)
        );
        assert_eq!(r.far_end.unwrap().cumulative_lost, 3);
    }

    #[test]
    fn e_model_figures() {
        // No loss, no jitter, G.711: R = 93.2 - 0.024*40 = 92.24;
        // MOS = 1 + 0.035*92.24 + 92.24*32.24*7.76*7e-6 = 4.38994.
        let r = r_factor(0.0, 0.0, 0.0, Codec::G711);
        assert!((r - 92.24).abs() < 1e-9);
        assert!((mos(r) - 4.38994).abs() < 1e-5, "{}", mos(r));
        // 5 % random loss: Ie,eff = 95*5/30.1 = 15.78.
        let r = r_factor(5.0, 0.0, 0.0, Codec::G711);
        assert!((r - (92.24 - 95.0 * 5.0 / 30.1)).abs() < 1e-9);
        // G.729 with no loss starts at Ie = 11.
        assert!((r_factor(0.0, 0.0, 0.0, Codec::G729) - 81.24).abs() < 1e-9);
        // 80 ms of jitter: d = 200 ms crosses the 177.3 ms knee.
        let r = r_factor(0.0, 80.0, 0.0, Codec::G711);
        assert!((r - (93.2 - 0.024 * 200.0 - 0.11 * 22.7)).abs() < 1e-9);
        assert_eq!(mos(0.0), 1.0);
        assert_eq!(mos(100.0), 4.5);
        assert_eq!(Codec::from_name("telephone-event"), Codec::Event);
        assert_eq!(Codec::from_name("G729"), Codec::G729);
        assert_eq!(static_payload(18).codec, Codec::G729);
        assert_eq!(static_payload(9).clock, 8000, "G.722 is clocked at 8000 Hz");
    }
}
