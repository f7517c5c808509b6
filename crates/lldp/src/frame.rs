//! LLDPDUs on the wire: encoding the box's advertisement and parsing neighbours' frames.
//!
//! Hand-written rather than taken from a crate: no maintained Rust crate encodes the LLDP-MED
//! TLVs (ANSI/TIA-1057), and the format is a flat list of type-length-value records that a
//! hundred lines cover. Layouts, with the clauses they come from:
//!
//! - TLV header (IEEE 802.1AB-2016 §8.4): 7-bit type, 9-bit length, big-endian.
//! - Mandatory TLVs first, in this order (§8.5): Chassis ID (1), Port ID (2), Time To Live (3);
//!   End of LLDPDU (0, length 0) last.
//! - Organizationally specific TLV (127, §8.6): 3-byte OUI, subtype, value. TIA's OUI for
//!   LLDP-MED is 00-12-BB: subtype 1 LLDP-MED Capabilities (TIA-1057 §10.2.2: capabilities
//!   bitmap u16, device type u8), subtype 2 Network Policy (§10.2.3: application type u8, then
//!   24 bits U T X VLAN(12) L2-priority(3) DSCP(6)).

use std::net::Ipv4Addr;

use serde::Serialize;

/// The nearest-bridge group address LLDP frames are sent to (802.1AB §7.1).
pub const LLDP_MULTICAST: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];
/// LLDP's EtherType.
pub const ETHERTYPE: u16 = 0x88cc;
/// TIA's OUI, which the LLDP-MED TLVs carry.
pub const TIA_OUI: [u8; 3] = [0x00, 0x12, 0xbb];

const TLV_END: u8 = 0;
const TLV_CHASSIS: u8 = 1;
const TLV_PORT: u8 = 2;
const TLV_TTL: u8 = 3;
const TLV_PORT_DESCRIPTION: u8 = 4;
const TLV_SYSTEM_NAME: u8 = 5;
const TLV_SYSTEM_DESCRIPTION: u8 = 6;
const TLV_CAPABILITIES: u8 = 7;
const TLV_MANAGEMENT: u8 = 8;
const TLV_ORG: u8 = 127;

/// Chassis ID subtype "MAC address" (802.1AB Table 8-2).
const CHASSIS_MAC: u8 = 4;
/// Port ID subtype "interface name" (802.1AB Table 8-3).
const PORT_IFNAME: u8 = 5;
/// System capability "router" (802.1AB Table 8-4, bit 5 counted from 1).
pub const CAP_ROUTER: u16 = 0x0010;
/// System capability "telephone".
pub const CAP_TELEPHONE: u16 = 0x0020;
/// LLDP-MED capabilities advertised: LLDP-MED Capabilities and Network Policy (TIA-1057
/// §10.2.2.2, bits 0 and 1).
const MED_CAPS: u16 = 0x0003;
/// LLDP-MED device type "Network Connectivity" (TIA-1057 §10.2.2.3).
const MED_NETWORK_CONNECTIVITY: u8 = 4;
/// The largest LLDPDU value field a TLV can hold (9-bit length).
const MAX_TLV: usize = 511;

/// An application type of the Network Policy TLV (TIA-1057 Table 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Application {
    /// Voice media (1).
    Voice,
    /// Voice signalling (2).
    VoiceSignaling,
    /// Any other type, by number.
    Other(u8),
}

impl Application {
    fn code(self) -> u8 {
        match self {
            Application::Voice => 1,
            Application::VoiceSignaling => 2,
            Application::Other(n) => n,
        }
    }
    fn from_code(c: u8) -> Application {
        match c {
            1 => Application::Voice,
            2 => Application::VoiceSignaling,
            n => Application::Other(n),
        }
    }
}

/// One LLDP-MED network policy: how a class of traffic is to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NetworkPolicy {
    /// What traffic it is for.
    pub application: Application,
    /// The policy is not known (the U flag); the other fields are then meaningless.
    pub unknown: bool,
    /// Send 802.1Q-tagged frames on `vlan` (the T flag); untagged when false.
    pub tagged: bool,
    /// VLAN id, 0-4095 (0 when untagged: priority-tagged at most).
    pub vlan: u16,
    /// 802.1p priority, 0-7.
    pub priority: u8,
    /// DSCP, 0-63.
    pub dscp: u8,
}

impl NetworkPolicy {
    fn bits(&self) -> u32 {
        (u32::from(self.unknown) << 23)
            | (u32::from(self.tagged) << 22)
            | ((u32::from(self.vlan) & 0x0fff) << 9)
            | ((u32::from(self.priority) & 0x07) << 6)
            | (u32::from(self.dscp) & 0x3f)
    }
}

/// What the box advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// The port's MAC address: the frame's source and the Chassis ID.
    pub mac: [u8; 6],
    /// The port's interface name (Port ID).
    pub port: String,
    /// Port description, e.g. "voice LAN".
    pub port_description: String,
    /// System Name: the site's name.
    pub system_name: String,
    /// System Description, e.g. "voxgate 0.1.0".
    pub system_description: String,
    /// The box's address on the voice network (Management Address), with the port's ifindex.
    pub management: Option<(Ipv4Addr, u32)>,
    /// The network policies, voice first.
    pub policies: Vec<NetworkPolicy>,
}

fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    // Values longer than a TLV can hold are cut (only free text can be that long).
    let value = &value[..value.len().min(MAX_TLV)];
    let head = (u16::from(kind) << 9) | value.len() as u16;
    out.extend_from_slice(&head.to_be_bytes());
    out.extend_from_slice(value);
}

fn text(s: &str, max: usize) -> &[u8] {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

/// The Ethernet frame advertising `a` with time-to-live `ttl` seconds (0: the neighbours
/// forget the box at once, sent on shutdown).
pub fn encode(a: &Advert, ttl: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(160);
    f.extend_from_slice(&LLDP_MULTICAST);
    f.extend_from_slice(&a.mac);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    let mut v = vec![CHASSIS_MAC];
    v.extend_from_slice(&a.mac);
    tlv(&mut f, TLV_CHASSIS, &v);
    let mut v = vec![PORT_IFNAME];
    v.extend_from_slice(text(&a.port, 255));
    tlv(&mut f, TLV_PORT, &v);
    tlv(&mut f, TLV_TTL, &ttl.to_be_bytes());
    if !a.port_description.is_empty() {
        tlv(&mut f, TLV_PORT_DESCRIPTION, text(&a.port_description, 255));
    }
    if !a.system_name.is_empty() {
        tlv(&mut f, TLV_SYSTEM_NAME, text(&a.system_name, 255));
    }
    if !a.system_description.is_empty() {
        tlv(
            &mut f,
            TLV_SYSTEM_DESCRIPTION,
            text(&a.system_description, 255),
        );
    }
    let caps = CAP_ROUTER.to_be_bytes();
    tlv(
        &mut f,
        TLV_CAPABILITIES,
        &[caps[0], caps[1], caps[0], caps[1]],
    );
    if let Some((ip, ifindex)) = a.management {
        // Address string length (subtype + address), subtype IPv4 (1), the address, interface
        // numbering by ifIndex (2), the index, and no OID (802.1AB §8.5.9).
        let mut v = vec![5, 1];
        v.extend_from_slice(&ip.octets());
        v.push(2);
        v.extend_from_slice(&ifindex.to_be_bytes());
        v.push(0);
        tlv(&mut f, TLV_MANAGEMENT, &v);
    }
    let mut v = TIA_OUI.to_vec();
    v.push(1);
    v.extend_from_slice(&MED_CAPS.to_be_bytes());
    v.push(MED_NETWORK_CONNECTIVITY);
    tlv(&mut f, TLV_ORG, &v);
    for p in &a.policies {
        let mut v = TIA_OUI.to_vec();
        v.push(2);
        v.push(p.application.code());
        v.extend_from_slice(&p.bits().to_be_bytes()[1..]);
        tlv(&mut f, TLV_ORG, &v);
    }
    tlv(&mut f, TLV_END, &[]);
    f
}

/// Why a received frame is not a usable LLDPDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than an Ethernet header, or not EtherType 0x88cc.
    #[error("not an LLDP frame")]
    NotLldp,
    /// A TLV runs past the end of the frame.
    #[error("TLV type {kind} claims {len} bytes; {left} are left")]
    Truncated {
        /// The TLV's type.
        kind: u8,
        /// Its length field.
        len: usize,
        /// Bytes left in the frame.
        left: usize,
    },
    /// Chassis ID, Port ID and TTL are missing, out of order or malformed.
    #[error("{0}")]
    Mandatory(&'static str),
}

/// A neighbour's advertisement, as far as the box cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Neighbour {
    /// The source MAC address of the frame.
    pub source: String,
    /// Chassis ID, shown as text (MAC addresses in colon form).
    pub chassis: String,
    /// Port ID, shown as text.
    pub port: String,
    /// Seconds the advertisement is valid; 0 means "forget me".
    pub ttl: u16,
    /// System Name, if sent.
    pub system_name: Option<String>,
    /// System Description, if sent.
    pub system_description: Option<String>,
    /// Enabled system capabilities (802.1AB Table 8-4 bits), if sent.
    pub capabilities: Option<u16>,
    /// LLDP-MED device type (1-3 endpoint classes, 4 network connectivity), if it speaks
    /// LLDP-MED.
    pub med_device_type: Option<u8>,
    /// Network policies it sent.
    pub policies: Vec<NetworkPolicy>,
}

fn mac_text(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An ID TLV's value as text: a MAC address (subtype `mac_subtype`) in colon form, printable
/// text as is, anything else in hex.
fn id_text(v: &[u8], mac_subtype: u8) -> String {
    match v.split_first() {
        Some((&st, rest)) if st == mac_subtype && rest.len() == 6 => mac_text(rest),
        Some((_, rest))
            if !rest.is_empty() && rest.iter().all(|c| c.is_ascii_graphic() || *c == b' ') =>
        {
            String::from_utf8_lossy(rest).into_owned()
        }
        Some((_, rest)) => mac_text(rest),
        None => String::new(),
    }
}

/// Parses an Ethernet frame carrying an LLDPDU. Strict about what a neighbour entry needs (the
/// mandatory TLVs, lengths within the frame); unknown TLVs are skipped.
pub fn parse(frame: &[u8]) -> Result<Neighbour, ParseError> {
    if frame.len() < 14 || frame[12..14] != ETHERTYPE.to_be_bytes() {
        return Err(ParseError::NotLldp);
    }
    let mut rest = &frame[14..];
    let mut n = Neighbour {
        source: mac_text(&frame[6..12]),
        chassis: String::new(),
        port: String::new(),
        ttl: 0,
        system_name: None,
        system_description: None,
        capabilities: None,
        med_device_type: None,
        policies: Vec::new(),
    };
    let mut index = 0;
    loop {
        if rest.len() < 2 {
            // A frame may end without the End TLV once the mandatory ones are in.
            if index < 3 {
                return Err(ParseError::Mandatory(
                    "the frame ends before Chassis ID, Port ID and TTL",
                ));
            }
            break;
        }
        let head = u16::from_be_bytes([rest[0], rest[1]]);
        let (kind, len) = ((head >> 9) as u8, usize::from(head & 0x1ff));
        if rest.len() - 2 < len {
            return Err(ParseError::Truncated {
                kind,
                len,
                left: rest.len() - 2,
            });
        }
        let v = &rest[2..2 + len];
        rest = &rest[2 + len..];
        match (index, kind) {
            (0, TLV_CHASSIS) if len >= 2 => n.chassis = id_text(v, CHASSIS_MAC),
            (0, _) => {
                return Err(ParseError::Mandatory(
                    "the first TLV is not a valid Chassis ID",
                ))
            }
            (1, TLV_PORT) if len >= 2 => n.port = id_text(v, 3),
            (1, _) => {
                return Err(ParseError::Mandatory(
                    "the second TLV is not a valid Port ID",
                ))
            }
            (2, TLV_TTL) if len >= 2 => n.ttl = u16::from_be_bytes([v[0], v[1]]),
            (2, _) => return Err(ParseError::Mandatory("the third TLV is not a valid TTL")),
            (_, TLV_END) => break,
            (_, TLV_SYSTEM_NAME) => n.system_name = Some(String::from_utf8_lossy(v).into_owned()),
            (_, TLV_SYSTEM_DESCRIPTION) => {
                n.system_description = Some(String::from_utf8_lossy(v).into_owned())
            }
            (_, TLV_CAPABILITIES) if len == 4 => {
                n.capabilities = Some(u16::from_be_bytes([v[2], v[3]]))
            }
            (_, TLV_ORG) if len >= 4 && v[..3] == TIA_OUI => match (v[3], &v[4..]) {
                (1, [_, _, class, ..]) => n.med_device_type = Some(*class),
                (2, [app, a, b, c, ..]) => {
                    let bits = u32::from_be_bytes([0, *a, *b, *c]);
                    n.policies.push(NetworkPolicy {
                        application: Application::from_code(*app),
                        unknown: bits & (1 << 23) != 0,
                        tagged: bits & (1 << 22) != 0,
                        vlan: ((bits >> 9) & 0x0fff) as u16,
                        priority: ((bits >> 6) & 0x07) as u8,
                        dscp: (bits & 0x3f) as u8,
                    });
                }
                _ => {}
            },
            _ => {}
        }
        index += 1;
    }
    Ok(n)
}
