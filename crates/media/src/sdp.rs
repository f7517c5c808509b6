//! SDP: what a party's description says about each stream, and the description the box sends
//! on in its place, naming the box's own address and ports.
//!
//! Parsing and writing are `sdp-types` (structured lines with unknown attributes kept
//! verbatim, so codecs, `fmtp`, crypto and the rest pass through untouched); this module only
//! reads the few fields the relay needs and rewrites the address-bearing ones.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use sdp_types::{AddrType, Attribute, Connection, Media, NetType, Session};
use serde::{Deserialize, Serialize};

use crate::stats::{static_payload, Codec, PayloadInfo};
use crate::MediaError;

/// Attributes of ICE (RFC 8839) and trickle ICE: dropped when anchoring, because the box is
/// the only media endpoint each party sees, reachable at the address in `c=`.
const ICE_ATTRIBUTES: &[&str] = &[
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "ice-pacing",
];

/// The SDP media direction of a stream (RFC 3264 section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Both ways (the default).
    #[default]
    SendRecv,
    /// The party only sends (it holds the call, perhaps with music).
    SendOnly,
    /// The party only receives.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    fn from_attribute(name: &str) -> Option<Direction> {
        Some(match name {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

/// How a stream's packets are relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// RTP and RTCP (any RTP profile, SRTP included: headers stay in clear).
    Rtp,
    /// Plain datagrams relayed without RTP checks: T.38 over UDPTL.
    Datagram,
}

/// What one party's description says about one media line.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaDesc {
    /// Media type: audio, video, image...
    pub media: String,
    /// The port in `m=`; 0 disables or rejects the stream.
    pub port: u16,
    /// How to relay it; `None` for transports the relay cannot anchor (TCP ones).
    pub transport: Option<Transport>,
    /// Where the party wants RTP, when the description names a usable IPv4 address.
    pub rtp: Option<SocketAddr>,
    /// Where it wants RTCP (`a=rtcp`, else the RTP port + 1).
    pub rtcp: Option<SocketAddr>,
    /// It offers or accepts RTCP multiplexed on the RTP port (RFC 5761).
    pub mux: bool,
    /// Its direction attribute (media level over session level).
    pub direction: Direction,
    /// Old-style hold: the connection address is 0.0.0.0.
    pub zero_hold: bool,
    /// Payload types from `m=` and `a=rtpmap`.
    pub payloads: Vec<(u8, PayloadInfo)>,
}

impl MediaDesc {
    /// Whether the relay should anchor this stream.
    pub fn relayable(&self) -> bool {
        self.port != 0 && self.transport.is_some()
    }

    /// Whether the party is on hold in this stream (it does not take part in both directions).
    pub fn on_hold(&self) -> bool {
        self.zero_hold || self.direction != Direction::SendRecv
    }
}

/// Parses a session description.
pub fn parse(bytes: &[u8]) -> Result<Session, MediaError> {
    Session::parse(bytes).map_err(|e| MediaError::Sdp(e.to_string()))
}

fn transport(proto: &str) -> Option<Transport> {
    let p = proto.to_ascii_uppercase();
    if p.starts_with("TCP") {
        None
    } else if p.contains("RTP/") {
        Some(Transport::Rtp)
    } else if p == "UDPTL" || p == "UDP" {
        Some(Transport::Datagram)
    } else {
        None
    }
}

/// The address of a `c=` line; `Err` for a name or IPv6 (kept unresolved: latching finds
/// the peer).
fn connection_ip(c: &Connection) -> Option<IpAddr> {
    c.try_address().ok().map(|a| a.ip)
}

/// What each media line of `s` says.
pub fn describe(s: &Session) -> Vec<MediaDesc> {
    let session_dir = s
        .attributes
        .iter()
        .find_map(|a| Direction::from_attribute(&a.attribute));
    s.medias
        .iter()
        .map(|m| {
            let conn = m.connections.first().or(s.connection.as_ref());
            let ip = conn.and_then(connection_ip);
            let zero_hold = ip.is_some_and(|ip| ip.is_unspecified());
            let usable = ip
                .filter(|ip| ip.is_ipv4() && !ip.is_unspecified())
                .filter(|_| m.port != 0);
            let rtp = usable.map(|ip| SocketAddr::new(ip, m.port));
            let rtcp_attr = m.get_first_attribute_value("rtcp").flatten().map(rtcp_attr);
            let rtcp = match rtcp_attr {
                Some((port, Some(ip))) if port != 0 => Some(SocketAddr::new(ip, port)),
                Some((port, None)) if port != 0 => usable.map(|ip| SocketAddr::new(ip, port)),
                _ => usable.map(|ip| SocketAddr::new(ip, m.port.wrapping_add(1))),
            };
            let direction = m
                .attributes
                .iter()
                .find_map(|a| Direction::from_attribute(&a.attribute))
                .or(session_dir)
                .unwrap_or_default();
            MediaDesc {
                media: m.media.clone(),
                port: m.port,
                transport: transport(&m.proto),
                rtp,
                rtcp,
                mux: m.has_attribute("rtcp-mux"),
                direction,
                zero_hold,
                payloads: payloads(m),
            }
        })
        .collect()
}

/// `a=rtcp:PORT [IN IP4 ADDR]` (RFC 3605).
fn rtcp_attr(v: &str) -> (u16, Option<IpAddr>) {
    let mut f = v.split_whitespace();
    let port = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let ip = f.nth(2).and_then(|a| a.parse().ok());
    (port, ip)
}

fn payloads(m: &Media) -> Vec<(u8, PayloadInfo)> {
    let video = m.media.eq_ignore_ascii_case("video");
    let mut out: Vec<(u8, PayloadInfo)> = m
        .fmt
        .split_whitespace()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter(|pt| *pt < 128)
        .map(|pt| {
            let mut info = static_payload(pt);
            if video && pt >= 96 {
                info.clock = 90000;
            }
            (pt, info)
        })
        .collect();
    for v in m.get_attribute_values("rtpmap").flatten() {
        // a=rtpmap:<pt> <encoding>/<clock>[/<channels>]
        let Some((pt, enc)) = v.split_once(' ') else {
            continue;
        };
        let mut enc = enc.trim().split('/');
        let (Ok(pt), Some(name), Some(Ok(clock))) = (
            pt.trim().parse::<u8>(),
            enc.next(),
            enc.next().map(str::parse::<u32>),
        ) else {
            continue;
        };
        if pt >= 128 || clock == 0 {
            continue;
        }
        let info = PayloadInfo {
            clock,
            codec: Codec::from_name(name),
        };
        match out.iter_mut().find(|(p, _)| *p == pt) {
            Some(slot) => slot.1 = info,
            None => out.push((pt, info)),
        }
    }
    out
}

/// The `o=` line the box uses towards one side of a call: the first description it sends there
/// fixes user name and session id, and the version goes up by one whenever the rest changes
/// (RFC 3264 section 8), whatever the parties on the other side do with theirs.
#[derive(Debug, Clone)]
pub struct Origin {
    username: Option<String>,
    sess_id: String,
    version: u64,
    /// The last description sent, written with version 0, to tell whether anything changed.
    last: Vec<u8>,
}

/// Rewrites `s` for the side whose box address is `address`: the box's address in `o=` and
/// `c=`, media line `i` on port `ports[i]` (`None`: port 0, the stream is rejected or
/// disabled), `a=rtcp` on the odd port of the pair, ICE and BUNDLE grouping dropped. Old-style
/// hold (0.0.0.0) is kept so the other party sees the hold as the holder wrote it.
pub fn rewrite(
    s: &Session,
    descs: &[MediaDesc],
    address: Ipv4Addr,
    ports: &[Option<u16>],
    origin: &mut Option<Origin>,
) -> Vec<u8> {
    let mut out = s.clone();
    let live = || descs.iter().zip(ports).filter(|(_, p)| p.is_some());
    let all_held = live().count() > 0 && live().all(|(d, _)| d.zero_hold);
    let conn = |ip: Ipv4Addr| Connection::new(NetType::In, AddrType::Ip4, ip);
    out.connection = Some(conn(if all_held {
        Ipv4Addr::UNSPECIFIED
    } else {
        address
    }));
    out.attributes.retain(|a| keep(a, true));
    for ((m, d), port) in out.medias.iter_mut().zip(descs).zip(ports) {
        m.connections.clear();
        m.attributes.retain(|a| keep(a, false));
        let Some(port) = *port else {
            m.port = 0;
            m.num_ports = None;
            continue;
        };
        if d.zero_hold && !all_held {
            m.connections.push(conn(Ipv4Addr::UNSPECIFIED));
        }
        // An answer that accepts mux may name the RTP port in a=rtcp; keep that meaning.
        let rtcp = if d.mux && d.rtcp.map(|a| a.port()) == Some(d.port) {
            port
        } else {
            port + 1
        };
        for a in m.attributes.iter_mut() {
            if a.attribute.eq_ignore_ascii_case("rtcp") {
                a.value = Some(rtcp.to_string());
            }
        }
        m.port = port;
        m.num_ports = None;
    }

    let o = origin.get_or_insert_with(|| Origin {
        username: s.origin.username.clone(),
        sess_id: s.origin.sess_id.clone(),
        version: s.origin.sess_version,
        last: Vec::new(),
    });
    out.origin = sdp_types::Origin {
        username: o.username.clone(),
        sess_id: o.sess_id.clone(),
        sess_version: 0,
        nettype: NetType::In,
        addrtype: AddrType::Ip4,
        unicast_address: address.to_string(),
    };
    let probe = write(&out);
    if !o.last.is_empty() && o.last != probe {
        o.version += 1;
    }
    o.last = probe;
    out.origin.sess_version = o.version;
    write(&out)
}

fn keep(a: &Attribute, session: bool) -> bool {
    let name = a.attribute.to_ascii_lowercase();
    if ICE_ATTRIBUTES.contains(&name.as_str()) {
        return false;
    }
    // Each stream gets its own ports here, so BUNDLE grouping (RFC 9143) no longer holds.
    !(session && name == "group" && a.value.as_deref().is_some_and(|v| v.starts_with("BUNDLE")))
}

fn write(s: &Session) -> Vec<u8> {
    let mut v = Vec::with_capacity(512);
    s.write(&mut v).expect("writing to a Vec cannot fail");
    v
}

#[cfg(test)]
pub(crate) mod tests;
