//! What the relay learns from the RTCP it passes on (RFC 3550 6.4.1), sans-IO: each report
//! block's loss and jitter figures (see [`Block`]), and the round-trip time. When the box
//! relays a sender report (SR) towards a party, it notes the SR's timestamp (the middle 32
//! bits of its NTP time) and when it sent it; when that party's next report block names the
//! SR (LSR) and how long it held it (DLSR), the round trip box → party → box is
//! `now − sent − DLSR`. So each leg gets its own RTT, which the relay cannot see in RTP.
//! SRTCP encrypts the sender information: its LSRs then match nothing and no RTT is shown.

use std::time::{Duration, Instant};

/// RTCP packet types carrying report blocks.
const SR: u8 = 200;
const RR: u8 = 201;

/// SRs remembered per leg (a party may answer an older one).
const REMEMBERED: usize = 4;

/// One report block (RFC 3550 6.4.1): what the sender of the SR/RR measured of the RTP it
/// receives from `ssrc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Block {
    /// The source the block is about.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since reception began (24-bit signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter, in timestamp units of the source's RTP clock.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp (0: none yet).
    pub lsr: u32,
    /// Delay since that SR, in units of 1/65536 s.
    pub dlsr: u32,
}

/// What one RTCP compound packet holds that the relay uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reports {
    /// Middle 32 bits of the NTP timestamp of each SR in the compound.
    pub sr_ntp: Vec<u32>,
    /// The report blocks of every SR and RR in the compound.
    pub blocks: Vec<Block>,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

/// Reads the SRs and report blocks of a compound packet; stops quietly at anything malformed
/// (what was read before stays).
pub fn parse(b: &[u8]) -> Reports {
    let mut out = Reports::default();
    let mut at = 0;
    while at + 4 <= b.len() {
        let (v, rc, pt) = (b[at] >> 6, usize::from(b[at] & 0x1f), b[at + 1]);
        let len = (usize::from(u16::from_be_bytes([b[at + 2], b[at + 3]])) + 1) * 4;
        if v != 2 || at + len > b.len() {
            break;
        }
        let p = &b[at..at + len];
        let blocks_at = match pt {
            SR => {
                if let (Some(msw), Some(lsw)) = (be32(p, 8), be32(p, 12)) {
                    out.sr_ntp.push((msw << 16) | (lsw >> 16));
                }
                28
            }
            RR => 8,
            _ => {
                at += len;
                continue;
            }
        };
        for i in 0..rc {
            let o = blocks_at + 24 * i;
            let Some(b) = p.get(o..o + 24) else { break };
            let word = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let lost = word(4);
            out.blocks.push(Block {
                ssrc: word(0),
                fraction_lost: (lost >> 24) as u8,
                // Sign-extends the 24-bit field.
                cumulative_lost: ((lost << 8) as i32) >> 8,
                highest_seq: word(8),
                jitter: word(12),
                lsr: word(16),
                dlsr: word(20),
            });
        }
        at += len;
    }
    out
}

/// The RTT of one leg: SRs sent towards its party, and the last RTT measured.
#[derive(Debug, Default, Clone)]
pub struct RttMeter {
    sent: Vec<(u32, Instant)>,
    /// The last round trip measured.
    pub last: Option<Duration>,
}

impl RttMeter {
    /// The relay forwards `reports` (an RTCP compound) towards this leg's party at `now`.
    pub fn sent(&mut self, now: Instant, reports: &Reports) {
        for &ntp in &reports.sr_ntp {
            if self.sent.len() == REMEMBERED {
                self.sent.remove(0);
            }
            self.sent.push((ntp, now));
        }
    }

    /// This leg's party sent `reports` at `now`: a block naming an SR we sent gives the RTT.
    pub fn received(&mut self, now: Instant, reports: &Reports) {
        for &Block { lsr, dlsr, .. } in &reports.blocks {
            if lsr == 0 {
                continue;
            }
            if let Some(&(_, at)) = self.sent.iter().rev().find(|(ntp, _)| *ntp == lsr) {
                // DLSR is in units of 1/65536 s.
                let held = Duration::from_micros(u64::from(dlsr) * 1_000_000 / 65_536);
                if let Some(rtt) = now.saturating_duration_since(at).checked_sub(held) {
                    self.last = Some(rtt);
                }
            }
        }
    }

    /// The last RTT in milliseconds.
    pub fn millis(&self) -> Option<f64> {
        self.last
            .map(|d| (d.as_secs_f64() * 100_000.0).round() / 100.0)
    }
}

/// Test helpers: RTCP packets as endpoints send them.
#[cfg(test)]
pub(crate) mod build {
    /// An SR with NTP time (msw, lsw) and no report blocks.
    pub fn sr(ssrc: u32, msw: u32, lsw: u32) -> Vec<u8> {
        let mut b = vec![0x80, 200, 0, 6];
        for w in [ssrc, msw, lsw, 1234, 10, 1600] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    /// An RR with one report block carrying `lsr` and `dlsr`.
    pub fn rr(ssrc: u32, lsr: u32, dlsr: u32) -> Vec<u8> {
        let mut b = vec![0x81, 201, 0, 7];
        for w in [ssrc, 0xdead_beef, 0, 100, 3, lsr, dlsr] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    /// An RR from `ssrc` with one report block about `about`: `fraction` lost (1/256),
    /// `cumulative` lost (24-bit signed) and `jitter` in timestamp units.
    pub fn rr_loss(ssrc: u32, about: u32, fraction: u8, cumulative: i32, jitter: u32) -> Vec<u8> {
        let lost = (u32::from(fraction) << 24) | (cumulative as u32 & 0x00ff_ffff);
        let mut b = vec![0x81, 201, 0, 7];
        for w in [ssrc, about, lost, 1000, jitter, 0, 0] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    #[test]
    fn parses_sr_and_rr_in_a_compound() {
        let mut b = sr(1, 0x0001_2345, 0x6789_0000);
        b.extend(rr(2, 0x2345_6789, 65536));
        // An SDES after them is skipped.
        b.extend([0x81, 202, 0, 1, 0, 0, 0, 2]);
        let r = parse(&b);
        assert_eq!(r.sr_ntp, vec![0x2345_6789]);
        assert_eq!(
            r.blocks,
            vec![Block {
                ssrc: 0xdead_beef,
                fraction_lost: 0,
                cumulative_lost: 0,
                highest_seq: 100,
                jitter: 3,
                lsr: 0x2345_6789,
                dlsr: 65536
            }]
        );
        // Truncated: what came before stays, no panic.
        assert_eq!(parse(&b[..30]).sr_ntp, vec![0x2345_6789]);
        assert_eq!(parse(&[0x81, 201]), Reports::default());
    }

    #[test]
    fn report_block_loss_and_jitter() {
        let b = parse(&rr_loss(9, 0xaaaa, 64, 1234, 80)).blocks;
        assert_eq!(b.len(), 1);
        assert_eq!(
            (
                b[0].ssrc,
                b[0].fraction_lost,
                b[0].cumulative_lost,
                b[0].jitter
            ),
            (0xaaaa, 64, 1234, 80)
        );
        // More duplicates than losses: the 24-bit field is negative.
        assert_eq!(
            parse(&rr_loss(9, 1, 0, -2, 0)).blocks[0].cumulative_lost,
            -2
        );
        assert_eq!(
            parse(&rr_loss(9, 1, 0, 0x7f_ffff, 0)).blocks[0].cumulative_lost,
            0x7f_ffff
        );
        // A block cut short is not read.
        let mut short = rr_loss(9, 1, 0, 5, 0);
        short.truncate(20);
        short[3] = 4;
        assert!(parse(&short).blocks.is_empty());
    }

    #[test]
    fn round_trip_is_now_minus_sent_minus_the_party_s_delay() {
        let t0 = Instant::now();
        let mut m = RttMeter::default();
        m.sent(t0, &parse(&sr(1, 0x0001_2345, 0x6789_0000)));
        // The party held the SR 0.5 s and answered 0.56 s after we sent it: 60 ms RTT.
        m.received(
            t0 + Duration::from_millis(560),
            &parse(&rr(2, 0x2345_6789, 32768)),
        );
        assert_eq!(m.millis(), Some(60.0));
        // A block naming an SR we never sent (or none: LSR 0) changes nothing.
        m.received(t0 + Duration::from_secs(2), &parse(&rr(2, 7, 0)));
        m.received(t0 + Duration::from_secs(2), &parse(&rr(2, 0, 0)));
        assert_eq!(m.millis(), Some(60.0));
    }
}
