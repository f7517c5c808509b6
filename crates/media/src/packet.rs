//! Telling RTP from RTCP (and from STUN and DTLS) and checking that a datagram is well formed
//! before it may latch a stream or be counted.

/// The fixed RTP header fields the relay uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Payload type (7 bits).
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Media timestamp.
    pub ts: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

/// What a datagram on a media port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet {
    /// A well-formed RTP packet.
    Rtp(RtpHeader),
    /// A well-formed RTCP (or SRTCP) compound packet.
    Rtcp,
    /// A DTLS record (DTLS-SRTP key exchange), relayed as is.
    Dtls,
    /// A STUN message: ICE is stripped when anchoring, so nobody should send these.
    Stun,
    /// Anything else, or RTP/RTCP that fails the checks.
    Invalid,
}

/// Classifies `b` by its first bytes (RFC 7983 demultiplexing, RFC 5761 for RTP/RTCP) and
/// validates RTP and RTCP headers (RFC 3550 appendix A.1 checks).
pub fn classify(b: &[u8]) -> Packet {
    match b.first() {
        Some(0..=3) => Packet::Stun,
        Some(20..=63) => Packet::Dtls,
        Some(128..=191) if b.len() >= 2 && (192..=223).contains(&b[1]) => rtcp(b),
        Some(128..=191) => rtp(b),
        _ => Packet::Invalid,
    }
}

fn rtp(b: &[u8]) -> Packet {
    if b.len() < 12 {
        return Packet::Invalid;
    }
    let csrcs = usize::from(b[0] & 0x0f);
    let mut header = 12 + 4 * csrcs;
    if b[0] & 0x10 != 0 {
        // Header extension: 16-bit profile, 16-bit length in 32-bit words.
        if b.len() < header + 4 {
            return Packet::Invalid;
        }
        header += 4 + 4 * usize::from(u16::from_be_bytes([b[header + 2], b[header + 3]]));
    }
    let padding = if b[0] & 0x20 != 0 {
        usize::from(b[b.len() - 1])
    } else {
        0
    };
    if header > b.len() || (b[0] & 0x20 != 0 && (padding == 0 || header + padding > b.len())) {
        return Packet::Invalid;
    }
    Packet::Rtp(RtpHeader {
        pt: b[1] & 0x7f,
        marker: b[1] & 0x80 != 0,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
    })
}

fn rtcp(b: &[u8]) -> Packet {
    // The first packet of a compound must be a report (SR 200, RR 201) per RFC 3550, but
    // reduced-size RTCP (RFC 5506) allows others: accept the RTCP types 192-223 leave room
    // for, and check only that the first length field fits (SRTCP appends a tag after it).
    if b.len() < 8 {
        return Packet::Invalid;
    }
    let words = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if (words + 1) * 4 > b.len() {
        return Packet::Invalid;
    }
    Packet::Rtcp
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A G.711 packet as phones send it: 12-byte header and `payload` bytes of audio.
    pub fn rtp_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: usize) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.resize(12 + payload, 0xd5);
        p
    }

    /// A receiver report with no report blocks.
    pub fn rtcp_rr(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 201, 0, 1];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p
    }

    #[test]
    fn rtp_headers() {
        let p = rtp_packet(0, 0xfffe, 160, 0xdeadbeef, 160);
        assert_eq!(
            classify(&p),
            Packet::Rtp(RtpHeader {
                pt: 0,
                marker: false,
                seq: 0xfffe,
                ts: 160,
                ssrc: 0xdeadbeef
            })
        );
        // RFC 4733 event with the marker bit, PT 101.
        let mut ev = rtp_packet(101 | 0x80, 7, 320, 1, 4);
        assert!(matches!(classify(&ev), Packet::Rtp(h) if h.pt == 101 && h.marker));
        // Two CSRCs and a one-word extension: 12 + 8 + 4 + 4 = 28 bytes of header.
        ev = rtp_packet(0, 1, 1, 1, 16);
        ev[0] = 0x80 | 0x10 | 2;
        ev[20..24].copy_from_slice(&[0xbe, 0xde, 0, 1]);
        assert!(matches!(classify(&ev), Packet::Rtp(_)));
        ev[23] = 2; // the extension now claims more than the packet has
        assert_eq!(classify(&ev), Packet::Invalid);
    }

    #[test]
    fn malformed_rtp_is_invalid() {
        assert_eq!(classify(&[]), Packet::Invalid);
        assert_eq!(classify(&rtp_packet(0, 1, 1, 1, 0)[..11]), Packet::Invalid);
        let mut v1 = rtp_packet(0, 1, 1, 1, 160);
        v1[0] = 0x40; // version 1
        assert_eq!(classify(&v1), Packet::Invalid);
        let mut cc = rtp_packet(0, 1, 1, 1, 8);
        cc[0] = 0x8f; // 15 CSRCs do not fit in 20 bytes
        assert_eq!(classify(&cc), Packet::Invalid);
        let mut pad = rtp_packet(0, 1, 1, 1, 4);
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 0; // zero padding count
        assert_eq!(classify(&pad), Packet::Invalid);
        *pad.last_mut().unwrap() = 4; // the whole payload is padding: fine
        assert!(matches!(classify(&pad), Packet::Rtp(_)));
        *pad.last_mut().unwrap() = 5;
        assert_eq!(classify(&pad), Packet::Invalid);
        assert_eq!(classify(b"hello world, not rtp"), Packet::Invalid);
    }

    #[test]
    fn rtcp_stun_and_dtls() {
        assert_eq!(classify(&rtcp_rr(5)), Packet::Rtcp);
        let mut sr = vec![0x80, 200, 0, 6];
        sr.resize(28, 0);
        assert_eq!(classify(&sr), Packet::Rtcp);
        assert_eq!(
            classify(&sr[..20]),
            Packet::Invalid,
            "length field too long"
        );
        assert_eq!(classify(&rtcp_rr(5)[..7]), Packet::Invalid);
        let stun = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        assert_eq!(classify(&stun), Packet::Stun);
        assert_eq!(classify(&[22, 0xfe, 0xfd, 0, 0]), Packet::Dtls);
    }
}
