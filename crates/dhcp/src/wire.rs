//! The DHCPv4 wire format (RFC 2131, 2132, 3396): a strict parser for client messages and an
//! encoder for replies.
//!
//! Why not dhcproto's codec (the tests use dhcproto as the independent peer): its decoder stops
//! at the first option it cannot type (a Latin-1 host name before option 53 loses the message
//! type), panics in debug builds on some short options (81, 80, 94), and its encoder writes
//! options sorted by code with no overload. A server must keep every option of a sloppy client,
//! never panic on a hostile one, put options in the order the client asked for (RFC 2132 §9.8)
//! and fit them in the size the client accepts (option 57, else 576 bytes). Options here stay
//! opaque bytes; the engine reads the few it needs through [`Request`]'s accessors.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// UDP port of DHCP servers (and of relay agents).
pub const SERVER_PORT: u16 = 67;
/// UDP port of DHCP clients.
pub const CLIENT_PORT: u16 = 68;
/// The largest DHCP message every client accepts: 576-byte IP datagram less IP and UDP headers.
pub const MIN_MESSAGE: usize = 576 - 28;
/// The largest reply sent even when a client allows more: one unfragmented Ethernet frame.
pub const MAX_MESSAGE: usize = 1500 - 28;
/// The largest client message accepted (a fragmented datagram at most; clients send ~300).
pub const MAX_REQUEST: usize = 4096;

const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// The fixed BOOTP header before the magic cookie.
const HEADER: usize = 236;
const SNAME: std::ops::Range<usize> = 44..108;
const FILE: std::ops::Range<usize> = 108..236;
/// Replies are padded to the BOOTP minimum that some relays and old clients insist on.
const BOOTP_MIN: usize = 300;

/// Option codes the engine reads or writes.
pub mod code {
    #![allow(missing_docs)]
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const TIME_OFFSET: u8 = 2;
    pub const HOSTNAME: u8 = 12;
    pub const BROADCAST: u8 = 28;
    pub const REQUESTED_ADDRESS: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const RELAY_INFO: u8 = 82;
    pub const POSIX_TZ: u8 = 100;
    pub const TZ_NAME: u8 = 101;
    pub const END: u8 = 255;
}

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Client looks for servers.
    Discover = 1,
    /// Server offers an address.
    Offer = 2,
    /// Client asks for (or renews) an address.
    Request = 3,
    /// Client found the address in use.
    Decline = 4,
    /// Server grants the address.
    Ack = 5,
    /// Server refuses.
    Nak = 6,
    /// Client gives the address back.
    Release = 7,
    /// Client has an address and asks for options only.
    Inform = 8,
}

impl MessageType {
    fn from_client(b: u8) -> Option<MessageType> {
        Some(match b {
            1 => MessageType::Discover,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            _ => return None,
        })
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            MessageType::Discover => "DHCPDISCOVER",
            MessageType::Offer => "DHCPOFFER",
            MessageType::Request => "DHCPREQUEST",
            MessageType::Decline => "DHCPDECLINE",
            MessageType::Ack => "DHCPACK",
            MessageType::Nak => "DHCPNAK",
            MessageType::Release => "DHCPRELEASE",
            MessageType::Inform => "DHCPINFORM",
        };
        f.write_str(s)
    }
}

/// Why a datagram is not a DHCP client message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Shorter than the BOOTP header and magic cookie.
    #[error("{0} bytes is too short for a DHCP message")]
    Short(usize),
    /// Larger than any DHCP client sends.
    #[error("{0} bytes is too long for a DHCP message")]
    Long(usize),
    /// A BOOTREPLY (or garbage) where a BOOTREQUEST belongs.
    #[error("op {0} is not BOOTREQUEST")]
    NotRequest(u8),
    /// `hlen` beyond the 16-byte `chaddr` field.
    #[error("hardware address length {0} exceeds 16")]
    HardwareLength(u8),
    /// Plain BOOTP (no DHCP magic cookie): not served.
    #[error("no DHCP magic cookie")]
    NoMagic,
    /// An option's length runs past the end of its field.
    #[error("option {code} at byte {at} runs past the end of the packet")]
    OptionOverrun {
        /// The option code.
        code: u8,
        /// Offset of the option in the packet.
        at: usize,
    },
    /// A fixed-size option of the wrong size.
    #[error("option {code} has length {len}")]
    OptionLength {
        /// The option code.
        code: u8,
        /// Its (concatenated) length.
        len: usize,
    },
    /// No option 53.
    #[error("no message type (option 53)")]
    NoMessageType,
    /// A message type a client does not send.
    #[error("message type {0} is not one a client sends")]
    MessageType(u8),
}

/// A DHCP message from a client (or relayed from one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The message type (option 53).
    pub kind: MessageType,
    /// Hardware address type (1 = Ethernet).
    pub htype: u8,
    /// Hardware address length.
    pub hlen: u8,
    /// Relay hops.
    pub hops: u8,
    /// Transaction id chosen by the client.
    pub xid: u32,
    /// BOOTP flags; bit 15 asks for broadcast replies.
    pub flags: u16,
    /// The client's current address (renewing, rebinding, informing).
    pub ciaddr: Ipv4Addr,
    /// The relay agent's address, or unspecified when not relayed.
    pub giaddr: Ipv4Addr,
    /// Client hardware address field (first `hlen` bytes are meaningful).
    pub chaddr: [u8; 16],
    /// Option values by code, split options already concatenated (RFC 3396).
    options: BTreeMap<u8, Vec<u8>>,
}

impl Request {
    /// Parses a client message, rejecting anything malformed.
    pub fn parse(b: &[u8]) -> Result<Request, Malformed> {
        if b.len() < HEADER + MAGIC.len() {
            return Err(Malformed::Short(b.len()));
        }
        if b.len() > MAX_REQUEST {
            return Err(Malformed::Long(b.len()));
        }
        if b[0] != 1 {
            return Err(Malformed::NotRequest(b[0]));
        }
        if b[2] > 16 {
            return Err(Malformed::HardwareLength(b[2]));
        }
        if b[HEADER..HEADER + 4] != MAGIC {
            return Err(Malformed::NoMagic);
        }
        let mut options = BTreeMap::new();
        scan(b, HEADER + 4..b.len(), &mut options)?;
        // RFC 2131 §4.1: `file` is read before `sname` when the client overloads them.
        match options.get(&code::OVERLOAD).map(Vec::as_slice) {
            None => {}
            Some(&[v @ 1..=3]) => {
                if v & 1 != 0 {
                    scan(b, FILE, &mut options)?;
                }
                if v & 2 != 0 {
                    scan(b, SNAME, &mut options)?;
                }
            }
            Some(v) => {
                return Err(Malformed::OptionLength {
                    code: code::OVERLOAD,
                    len: v.len(),
                })
            }
        }
        for (c, want) in [
            (code::MESSAGE_TYPE, 1..=1),
            (code::REQUESTED_ADDRESS, 4..=4),
            (code::SERVER_ID, 4..=4),
            (code::LEASE_TIME, 4..=4),
            (code::MAX_SIZE, 2..=2),
            (code::CLIENT_ID, 2..=255),
            // Echoed in the reply (RFC 3046): one option's worth at most.
            (code::RELAY_INFO, 0..=255),
        ] {
            if let Some(v) = options.get(&c) {
                if !want.contains(&v.len()) {
                    return Err(Malformed::OptionLength {
                        code: c,
                        len: v.len(),
                    });
                }
            }
        }
        let t = options
            .get(&code::MESSAGE_TYPE)
            .ok_or(Malformed::NoMessageType)?[0];
        let kind = MessageType::from_client(t).ok_or(Malformed::MessageType(t))?;
        let addr = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
        let mut chaddr = [0u8; 16];
        chaddr.copy_from_slice(&b[28..44]);
        Ok(Request {
            kind,
            htype: b[1],
            hlen: b[2],
            hops: b[3],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            flags: u16::from_be_bytes([b[10], b[11]]),
            ciaddr: addr(12),
            giaddr: addr(24),
            chaddr,
            options,
        })
    }

    /// The value of option `code`, if present.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options.get(&code).map(Vec::as_slice)
    }

    fn address_option(&self, c: u8) -> Option<Ipv4Addr> {
        let v: [u8; 4] = self.option(c)?.try_into().ok()?;
        Some(Ipv4Addr::from(v))
    }

    /// Option 50: the address the client asks for.
    pub fn requested_address(&self) -> Option<Ipv4Addr> {
        self.address_option(code::REQUESTED_ADDRESS)
    }

    /// Option 54: the server the client talks to.
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.address_option(code::SERVER_ID)
    }

    /// The hardware address (`chaddr` cut to `hlen`).
    pub fn hardware(&self) -> &[u8] {
        &self.chaddr[..usize::from(self.hlen)]
    }

    /// The Ethernet MAC address, if the client is on Ethernet.
    pub fn mac(&self) -> Option<[u8; 6]> {
        (self.htype == 1 && self.hlen == 6).then(|| self.hardware().try_into().ok())?
    }

    /// Who the client is (RFC 2131 §4.2): option 61 if sent, else hardware type and address —
    /// the same bytes as the usual option 61 of Ethernet clients, so both forms match.
    pub fn client_id(&self) -> Vec<u8> {
        match self.option(code::CLIENT_ID) {
            Some(id) => id.to_vec(),
            None => std::iter::once(self.htype)
                .chain(self.hardware().iter().copied())
                .collect(),
        }
    }

    /// Option 12, made printable and at most 63 bytes (it ends up in logs and the CLI).
    pub fn hostname(&self) -> Option<String> {
        self.option(code::HOSTNAME).map(|v| printable(v, 63))
    }

    /// Option 60, made printable and at most 255 bytes.
    pub fn vendor_class(&self) -> Option<String> {
        self.option(code::VENDOR_CLASS).map(|v| printable(v, 255))
    }

    /// Option 55: the options the client asks for, in its order of preference.
    pub fn parameter_list(&self) -> &[u8] {
        self.option(code::PARAMETER_LIST).unwrap_or_default()
    }

    /// The largest reply the client accepts (option 57 less IP and UDP headers), within
    /// [`MIN_MESSAGE`]..=[`MAX_MESSAGE`].
    pub fn max_reply(&self) -> usize {
        let asked = self
            .option(code::MAX_SIZE)
            .map_or(0, |v| usize::from(u16::from_be_bytes([v[0], v[1]])));
        asked.saturating_sub(28).clamp(MIN_MESSAGE, MAX_MESSAGE)
    }

    /// Whether the client asked for broadcast replies (BOOTP flags bit 15).
    pub fn broadcast(&self) -> bool {
        self.flags & 0x8000 != 0
    }
}

/// Reads the options in `b[range]` into `out`, concatenating repeated codes (RFC 3396).
fn scan(
    b: &[u8],
    range: std::ops::Range<usize>,
    out: &mut BTreeMap<u8, Vec<u8>>,
) -> Result<(), Malformed> {
    let mut i = range.start;
    while i < range.end {
        match b[i] {
            code::PAD => i += 1,
            code::END => return Ok(()),
            c => {
                let overrun = Malformed::OptionOverrun { code: c, at: i };
                let Some(&len) = b[..range.end].get(i + 1) else {
                    return Err(overrun);
                };
                let end = i + 2 + usize::from(len);
                if end > range.end {
                    return Err(overrun);
                }
                out.entry(c).or_default().extend_from_slice(&b[i + 2..end]);
                i = end;
            }
        }
    }
    // No END: tolerated, some clients end at the packet's end.
    Ok(())
}

fn printable(v: &[u8], max: usize) -> String {
    let s: String = String::from_utf8_lossy(v)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The fixed fields of a reply.
#[derive(Debug, Clone)]
pub struct ReplyHeader {
    /// Transaction id, copied from the request.
    pub xid: u32,
    /// Flags, copied from the request (a relayed NAK sets the broadcast bit).
    pub flags: u16,
    /// The client's address as it said (ACK to a renewal or INFORM), else unspecified.
    pub ciaddr: Ipv4Addr,
    /// The address handed out.
    pub yiaddr: Ipv4Addr,
    /// The relay agent, copied from the request.
    pub giaddr: Ipv4Addr,
    /// Hardware type, length and address, copied from the request.
    pub htype: u8,
    /// See `htype`.
    pub hlen: u8,
    /// See `htype`.
    pub chaddr: [u8; 16],
}

/// An encoded reply and the options that did not fit.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The datagram.
    pub bytes: Vec<u8>,
    /// Codes left out for lack of room.
    pub dropped: Vec<u8>,
}

/// Encodes a BOOTREPLY of at most `limit` bytes. `options` come in priority order and are
/// written in that order; values over 255 bytes are split (RFC 3396). What does not fit in the
/// options field goes to `file`, then `sname` (option 52, RFC 2131 §4.1); what fits nowhere is
/// dropped and reported. `relay_info` (option 82) is echoed last, as RFC 3046 asks.
pub fn encode_reply(
    h: &ReplyHeader,
    options: &[(u8, Vec<u8>)],
    relay_info: Option<&[u8]>,
    limit: usize,
) -> Encoded {
    let limit = limit.clamp(MIN_MESSAGE, MAX_MESSAGE);
    let size = |v: &[u8]| v.len() + 2 * v.len().div_ceil(255).max(1);
    let tail = relay_info.map_or(0, size);
    let room = (limit - HEADER - MAGIC.len() - 1).saturating_sub(tail);
    let total: usize = options.iter().map(|(_, v)| size(v)).sum();
    // Options field, file, sname; each area keeps a byte for its END.
    let mut areas: [(Vec<u8>, usize); 3] = if total <= room {
        [(Vec::new(), room), (Vec::new(), 0), (Vec::new(), 0)]
    } else {
        [
            (Vec::new(), room.saturating_sub(3)),
            (Vec::new(), FILE.len() - 1),
            (Vec::new(), SNAME.len() - 1),
        ]
    };
    let mut dropped = Vec::new();
    for (c, v) in options {
        match areas
            .iter_mut()
            .find(|(buf, cap)| buf.len() + size(v) <= *cap)
        {
            Some((buf, _)) => put(buf, *c, v),
            None => dropped.push(*c),
        }
    }
    let overload = u8::from(!areas[1].0.is_empty()) | u8::from(!areas[2].0.is_empty()) << 1;
    let [(mut opts, _), (file, _), (sname, _)] = areas;
    if overload != 0 {
        put(&mut opts, code::OVERLOAD, &[overload]);
    }
    if let Some(ri) = relay_info {
        put(&mut opts, code::RELAY_INFO, ri);
    }
    opts.push(code::END);

    let mut b = vec![0u8; HEADER];
    b[0] = 2; // BOOTREPLY
    b[1] = h.htype;
    b[2] = h.hlen;
    b[4..8].copy_from_slice(&h.xid.to_be_bytes());
    b[10..12].copy_from_slice(&h.flags.to_be_bytes());
    b[12..16].copy_from_slice(&h.ciaddr.octets());
    b[16..20].copy_from_slice(&h.yiaddr.octets());
    b[24..28].copy_from_slice(&h.giaddr.octets());
    b[28..44].copy_from_slice(&h.chaddr);
    for (area, range) in [(sname, SNAME), (file, FILE)] {
        if !area.is_empty() {
            b[range.start..range.start + area.len()].copy_from_slice(&area);
            b[range.start + area.len()] = code::END;
        }
    }
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&opts);
    if b.len() < BOOTP_MIN {
        b.resize(BOOTP_MIN, code::PAD);
    }
    Encoded { bytes: b, dropped }
}

/// Appends option `c` with value `v`, split into 255-byte pieces (an empty value is one piece).
fn put(buf: &mut Vec<u8>, c: u8, v: &[u8]) {
    if v.is_empty() {
        buf.extend_from_slice(&[c, 0]);
    }
    for piece in v.chunks(255) {
        buf.push(c);
        buf.push(piece.len() as u8);
        buf.extend_from_slice(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(opts: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[28..34].copy_from_slice(&[0, 4, 0xf2, 1, 2, 3]);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(opts);
        b
    }

    #[test]
    fn parses_and_concatenates_split_options() {
        let r = Request::parse(&packet(&[
            53, 1, 1, 12, 2, 0xe9, b'x', 60, 3, b'a', b'b', b'c', 0, 60, 2, b'd', b'e', 255,
        ]))
        .unwrap();
        assert_eq!(r.kind, MessageType::Discover);
        // Latin-1 is kept (lossily) and does not hide the other options.
        assert_eq!(r.hostname().as_deref(), Some("\u{fffd}x"));
        assert_eq!(r.vendor_class().as_deref(), Some("abcde"));
        assert_eq!(r.client_id(), vec![1, 0, 4, 0xf2, 1, 2, 3]);
        assert_eq!(r.mac(), Some([0, 4, 0xf2, 1, 2, 3]));
        assert_eq!(r.max_reply(), MIN_MESSAGE);
    }

    #[test]
    fn rejects_malformed_messages() {
        let cases: Vec<(Vec<u8>, Malformed)> = vec![
            (vec![1; 100], Malformed::Short(100)),
            (
                {
                    let mut p = packet(&[53, 1, 1, 255]);
                    p[0] = 2;
                    p
                },
                Malformed::NotRequest(2),
            ),
            (
                {
                    let mut p = packet(&[53, 1, 1, 255]);
                    p[HEADER] = 0;
                    p
                },
                Malformed::NoMagic,
            ),
            (
                packet(&[53, 1, 1, 12, 200, b'x']),
                Malformed::OptionOverrun { code: 12, at: 243 },
            ),
            (
                packet(&[53, 1]),
                Malformed::OptionOverrun { code: 53, at: 240 },
            ),
            (
                packet(&[53, 2, 1, 1, 255]),
                Malformed::OptionLength { code: 53, len: 2 },
            ),
            (
                packet(&[53, 1, 3, 50, 3, 1, 2, 3, 255]),
                Malformed::OptionLength { code: 50, len: 3 },
            ),
            (packet(&[12, 1, b'x', 255]), Malformed::NoMessageType),
            (
                // A giant option 82, split in two (RFC 3396), cannot be echoed.
                packet(&[&[53, 1, 1, 82, 255][..], &[9; 255], &[82, 1, 9, 255]].concat()),
                Malformed::OptionLength { code: 82, len: 256 },
            ),
            (packet(&[53, 1, 5, 255]), Malformed::MessageType(5)),
        ];
        for (p, want) in cases {
            assert_eq!(Request::parse(&p), Err(want));
        }
    }

    #[test]
    fn reads_options_overloaded_into_file_and_sname() {
        let mut p = packet(&[53, 1, 1, 52, 1, 3, 255]);
        p[FILE.start..FILE.start + 4].copy_from_slice(&[60, 1, b'f', 255]);
        p[SNAME.start..SNAME.start + 4].copy_from_slice(&[60, 1, b's', 255]);
        let r = Request::parse(&p).unwrap();
        assert_eq!(r.vendor_class().as_deref(), Some("fs"));
    }

    fn header() -> ReplyHeader {
        ReplyHeader {
            xid: 7,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(10, 0, 0, 9),
            giaddr: Ipv4Addr::UNSPECIFIED,
            htype: 1,
            hlen: 6,
            chaddr: [1; 16],
        }
    }

    /// Reads a reply back: (options in wire order with their area, overload value).
    fn areas(b: &[u8]) -> Vec<(&'static str, u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut read = |name: &'static str, r: std::ops::Range<usize>| {
            let mut i = r.start;
            while i < r.end && b[i] != 255 {
                if b[i] == 0 {
                    i += 1;
                    continue;
                }
                let len = usize::from(b[i + 1]);
                out.push((name, b[i], b[i + 2..i + 2 + len].to_vec()));
                i += 2 + len;
            }
        };
        read("options", 240..b.len());
        read("file", FILE);
        read("sname", SNAME);
        out
    }

    #[test]
    fn keeps_the_given_order_and_splits_long_values() {
        let opts = vec![
            (53, vec![2]),
            (66, b"tftp".to_vec()),
            (3, vec![10, 0, 0, 1]),
        ];
        let e = encode_reply(&header(), &opts, Some(&[1, 2, 9, 9]), MIN_MESSAGE);
        let got: Vec<u8> = areas(&e.bytes).iter().map(|a| a.1).collect();
        assert_eq!(got, vec![53, 66, 3, 82]);
        assert!(e.bytes.len() >= BOOTP_MIN && e.dropped.is_empty());

        let long = vec![(53, vec![2]), (43, vec![7; 300])];
        let e = encode_reply(&header(), &long, None, MAX_MESSAGE);
        let got: Vec<(u8, usize)> = areas(&e.bytes).iter().map(|a| (a.1, a.2.len())).collect();
        assert_eq!(got, vec![(53, 1), (43, 255), (43, 45)]);
    }

    #[test]
    fn overloads_file_then_sname_then_drops() {
        // 548-byte limit: 307 bytes of options room. Three 150-byte options and two 60-byte
        // ones: two big ones in the options field, the third in file, one small one in sname,
        // the last dropped.
        let opts: Vec<(u8, Vec<u8>)> = vec![
            (53, vec![2]),
            (224, vec![1; 150]),
            (225, vec![2; 120]),
            (226, vec![3; 120]),
            (227, vec![4; 60]),
            (228, vec![5; 60]),
        ];
        let e = encode_reply(&header(), &opts, None, MIN_MESSAGE);
        assert!(e.bytes.len() <= MIN_MESSAGE, "{}", e.bytes.len());
        let got: Vec<(&str, u8)> = areas(&e.bytes).iter().map(|a| (a.0, a.1)).collect();
        assert_eq!(
            got,
            vec![
                ("options", 53),
                ("options", 224),
                ("options", 225),
                ("options", 52),
                ("file", 226),
                ("sname", 227),
            ]
        );
        assert_eq!(areas(&e.bytes)[3].2, vec![3], "file and sname overloaded");
        assert_eq!(e.dropped, vec![228]);
    }
}
