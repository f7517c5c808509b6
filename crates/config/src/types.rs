//! Value types used in the configuration: ports, port ranges, networks and durations.
//!
//! Each type serialises to the same text an operator writes, and carries a JSON Schema with a
//! `format` that [`crate::validate`] checks, so a bad value is reported with its position
//! alongside every other error instead of stopping the parse at the first one.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Custom `format` names used in the schema, with the check for each.
/// Checks a string of a custom format, saying why it is malformed.
pub(crate) type FormatCheck = fn(&str) -> Result<(), String>;

pub(crate) const FORMATS: &[(&str, FormatCheck)] = &[
    ("voxgate-port-range", |s| s.parse::<PortRange>().map(drop)),
    ("voxgate-ipv4-cidr", |s| s.parse::<Ipv4Cidr>().map(drop)),
    ("voxgate-ip-cidr", |s| s.parse::<IpCidr>().map(drop)),
    ("voxgate-interface-address", |s| {
        s.parse::<InterfaceAddress>().map(drop)
    }),
    ("voxgate-duration", |s| s.parse::<Duration>().map(drop)),
    ("voxgate-mac", |s| s.parse::<MacAddr>().map(drop)),
];

/// The hint shown when a value of a custom format is malformed.
pub(crate) fn format_hint(format: &str) -> Option<&'static str> {
    Some(match format {
        "voxgate-port-range" => "write a port (5060) or an inclusive range (\"10000-20000\"), ports 1-65535",
        "voxgate-ipv4-cidr" => "write an IPv4 network in CIDR notation, e.g. 10.100.0.0/24 (a bare address means /32)",
        "voxgate-ip-cidr" => "write an IPv4 or IPv6 network in CIDR notation, e.g. 109.169.89.208/28 or 2001:db8::/32",
        "voxgate-interface-address" => "write the interface's own address with its prefix length, e.g. 10.100.0.1/24",
        "voxgate-duration" => "write a duration with a unit, e.g. 30s, 5m, 12h, or a number of seconds",
        "voxgate-ip" | "ipv4" | "ipv6" => "write an IP address, e.g. 10.100.0.1",
        "voxgate-mac" => "write a MAC address as six hex pairs, e.g. 00:04:f2:12:34:56",
        _ => return None,
    })
}

fn parse_via_str<'de, D: Deserializer<'de>, T: FromStr>(d: D, what: &str) -> Result<T, D::Error>
where
    T::Err: fmt::Display,
{
    let s = String::deserialize(d)?;
    s.parse::<T>()
        .map_err(|e| de::Error::custom(format!("invalid {what} {s:?}: {e}")))
}

macro_rules! string_schema {
    ($ty:ty, $name:literal, $format:literal, $desc:literal) => {
        impl JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"type": "string", "format": $format, "description": $desc})
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                parse_via_str(d, $name)
            }
        }
    };
}

/// A TCP/UDP port, 1-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Port(pub u16);

impl JsonSchema for Port {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Port".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "minimum": 1, "maximum": 65535, "description": "A port number, 1-65535."})
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An inclusive range of ports, written `5060` or `"10000-20000"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// First port of the range.
    pub first: u16,
    /// Last port of the range (inclusive).
    pub last: u16,
}

impl PortRange {
    /// A range holding exactly one port.
    pub const fn single(port: u16) -> Self {
        PortRange {
            first: port,
            last: port,
        }
    }
    /// Whether two ranges share at least one port.
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
    /// Number of ports in the range.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }
    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let port = |p: &str| -> Result<u16, String> {
            match p.trim().parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("{p:?} is not a port 1-65535")),
                Ok(n) => Ok(n),
            }
        };
        match s.split_once('-') {
            None => Ok(PortRange::single(port(s)?)),
            Some((a, b)) => {
                let (first, last) = (port(a)?, port(b)?);
                if first > last {
                    return Err(format!("range {s:?} runs backwards"));
                }
                Ok(PortRange { first, last })
            }
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.serialize_u16(self.first)
        } else {
            s.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) if (1..=65535).contains(&n) => Ok(PortRange::single(n as u16)),
            Raw::N(n) => Err(de::Error::custom(format!("{n} is not a port 1-65535"))),
            Raw::S(s) => s.parse().map_err(de::Error::custom),
        }
    }
}

impl JsonSchema for PortRange {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "PortRange".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["integer", "string"],
            "minimum": 1, "maximum": 65535,
            "format": "voxgate-port-range",
            "description": "A port (5060) or an inclusive port range (\"10000-20000\")."
        })
    }
}

/// An IPv4 network in CIDR notation; the address is normalised to the network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr(pub ipnet::Ipv4Net);

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let net = if s.contains('/') {
            s.parse::<ipnet::Ipv4Net>().map_err(|e| e.to_string())?
        } else {
            let a: Ipv4Addr = s
                .parse()
                .map_err(|e: std::net::AddrParseError| e.to_string())?;
            ipnet::Ipv4Net::from(a)
        };
        Ok(Ipv4Cidr(net.trunc()))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
string_schema!(
    Ipv4Cidr,
    "Ipv4Cidr",
    "voxgate-ipv4-cidr",
    "An IPv4 network in CIDR notation, e.g. 10.100.0.0/24."
);

/// An IPv4 or IPv6 network in CIDR notation (a bare address is a host route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpCidr(pub ipnet::IpNet);

impl IpCidr {
    /// Whether two networks share any address.
    pub fn overlaps(&self, other: &IpCidr) -> bool {
        self.0.contains(&other.0.network()) || other.0.contains(&self.0.network())
    }
}

impl FromStr for IpCidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let net = if s.contains('/') {
            s.parse::<ipnet::IpNet>().map_err(|e| e.to_string())?
        } else {
            let a: IpAddr = s
                .parse()
                .map_err(|e: std::net::AddrParseError| e.to_string())?;
            ipnet::IpNet::from(a)
        };
        Ok(IpCidr(net.trunc()))
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
string_schema!(
    IpCidr,
    "IpCidr",
    "voxgate-ip-cidr",
    "An IPv4 or IPv6 network in CIDR notation, e.g. 109.169.89.208/28."
);

/// An interface's own IPv4 address with its prefix length, e.g. `10.100.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InterfaceAddress(pub ipnet::Ipv4Net);

impl InterfaceAddress {
    /// The host address.
    pub fn addr(&self) -> Ipv4Addr {
        self.0.addr()
    }
    /// The subnet the address lies in.
    pub fn network(&self) -> ipnet::Ipv4Net {
        self.0.trunc()
    }
}

impl FromStr for InterfaceAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.contains('/') {
            return Err("the prefix length is missing (e.g. /24)".into());
        }
        let net: ipnet::Ipv4Net = s
            .parse()
            .map_err(|e: ipnet::AddrParseError| e.to_string())?;
        if net.prefix_len() < 31 && (net.addr() == net.network() || net.addr() == net.broadcast()) {
            return Err(format!(
                "{} is the network or broadcast address of {}",
                net.addr(),
                net.trunc()
            ));
        }
        Ok(InterfaceAddress(net))
    }
}

impl fmt::Display for InterfaceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
string_schema!(
    InterfaceAddress,
    "InterfaceAddress",
    "voxgate-interface-address",
    "An interface address with prefix length, e.g. 10.100.0.1/24."
);

/// A length of time, written with a unit (`30s`, `5m`, `12h`) or as whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// A duration of whole seconds.
    pub const fn secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }
    /// The duration in whole seconds.
    pub fn as_secs(&self) -> u64 {
        self.0.as_secs()
    }
}

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(n) = s.trim().parse::<u64>() {
            return Ok(Duration::secs(n));
        }
        humantime::parse_duration(s.trim())
            .map(Duration)
            .map_err(|e| e.to_string())
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Duration::secs(n)),
            Raw::S(s) => s.parse().map_err(de::Error::custom),
        }
    }
}

impl JsonSchema for Duration {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["integer", "string"], "minimum": 0,
            "format": "voxgate-duration",
            "description": "A duration with a unit (30s, 5m, 12h) or whole seconds."
        })
    }
}

/// An Ethernet MAC address, written as six hex pairs separated by `:` or `-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err("expected six hex pairs".into());
        }
        let mut mac = [0u8; 6];
        for (b, p) in mac.iter_mut().zip(&parts) {
            if p.len() != 2 {
                return Err(format!("{p:?} is not a hex pair"));
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("{p:?} is not a hex pair"))?;
        }
        Ok(MacAddr(mac))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}
string_schema!(
    MacAddr,
    "MacAddr",
    "voxgate-mac",
    "A MAC address, e.g. 00:04:f2:12:34:56."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_and_compare() {
        assert_eq!(
            "5060".parse::<PortRange>().unwrap(),
            PortRange::single(5060)
        );
        let r: PortRange = "10000-20000".parse().unwrap();
        assert_eq!(r.len(), 10001);
        assert!(r.overlaps(&PortRange::single(20000)));
        assert!(!r.overlaps(&PortRange::single(20001)));
        assert!("0".parse::<PortRange>().is_err());
        assert!("70000".parse::<PortRange>().is_err());
        assert!("20-10".parse::<PortRange>().is_err());
    }

    #[test]
    fn networks_normalise_and_overlap() {
        let a: IpCidr = "109.169.89.213/28".parse().unwrap();
        assert_eq!(a.to_string(), "109.169.89.208/28");
        let host: IpCidr = "54.76.182.113".parse().unwrap();
        assert_eq!(host.to_string(), "54.76.182.113/32");
        assert!(a.overlaps(&"109.169.89.0/24".parse().unwrap()));
        assert!(!a.overlaps(&host));
        assert!("10.0.0.0/33".parse::<IpCidr>().is_err());
    }

    #[test]
    fn interface_address_needs_a_host() {
        assert!("10.100.0.1/24".parse::<InterfaceAddress>().is_ok());
        assert!("10.100.0.0/24".parse::<InterfaceAddress>().is_err());
        assert!("10.100.0.255/24".parse::<InterfaceAddress>().is_err());
        assert!("10.100.0.1".parse::<InterfaceAddress>().is_err());
    }

    #[test]
    fn durations_and_macs() {
        assert_eq!("300".parse::<Duration>().unwrap(), Duration::secs(300));
        assert_eq!("30m".parse::<Duration>().unwrap(), Duration::secs(1800));
        assert!("soon".parse::<Duration>().is_err());
        let m: MacAddr = "00-04-F2-12-34-56".parse().unwrap();
        assert_eq!(m.to_string(), "00:04:f2:12:34:56");
        assert!("00:04:f2:12:34".parse::<MacAddr>().is_err());
    }
}
