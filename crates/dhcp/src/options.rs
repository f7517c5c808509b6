//! Option values: the configuration's option blocks encoded once per configuration into
//! [`OptionLayer`]s, which the engine stacks (built-in defaults, pool, vendor class) per reply.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use config::model::DhcpOptions;

use crate::wire::code;

/// Encoded option values by code. `None` withdraws a value an earlier layer set (an empty list
/// in the configuration, or `timezone: false`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionLayer(pub BTreeMap<u8, Option<Vec<u8>>>);

impl OptionLayer {
    /// Encodes a configuration block; `zone` supplies options 100 and 101 when the block turns
    /// the time zone on.
    pub fn from_config(o: &DhcpOptions, zone: Option<&Zone>) -> OptionLayer {
        let mut l = OptionLayer::default();
        let addrs = |v: &Vec<Ipv4Addr>| (!v.is_empty()).then(|| ipv4s(v));
        let text = |s: &String| Some(s.as_bytes().to_vec());
        if let Some(v) = &o.routers {
            l.set(3, addrs(v));
        }
        if let Some(v) = &o.dns_servers {
            l.set(6, addrs(v));
        }
        if let Some(v) = &o.domain_name {
            l.set(15, text(v));
        }
        if let Some(v) = &o.ntp_servers {
            l.set(42, addrs(v));
        }
        if let Some(v) = &o.sip_servers {
            l.set(120, sip_servers(v));
        }
        if let Some(v) = &o.tftp_server {
            l.set(66, text(v));
        }
        if let Some(v) = &o.boot_file {
            l.set(67, text(v));
        }
        if let Some(v) = &o.cisco_tftp_servers {
            l.set(150, addrs(v));
        }
        if let Some(v) = &o.provisioning_url {
            l.set(160, text(v));
        }
        if let Some(subs) = &o.vendor_specific {
            let mut v = Vec::new();
            for s in subs {
                // Validation guarantees a payload of at most 253 bytes.
                let p = s.payload().unwrap_or_default();
                v.push(s.code);
                v.push(p.len() as u8);
                v.extend_from_slice(&p);
            }
            l.set(43, (!v.is_empty()).then_some(v));
        }
        match o.timezone {
            Some(true) => l.set_zone(zone),
            Some(false) => {
                l.set(code::POSIX_TZ, None);
                l.set(code::TZ_NAME, None);
            }
            None => {}
        }
        for x in &o.extra {
            l.set(x.code, x.payload().ok());
        }
        l
    }

    /// The built-in defaults of a subnet: mask, broadcast, and the box as router, plus DNS, NTP
    /// and SIP server while the box serves them, and the time zone.
    pub fn defaults(
        net: ipnet::Ipv4Net,
        box_addr: Ipv4Addr,
        services: Services,
        zone: Option<&Zone>,
    ) -> OptionLayer {
        let mut l = OptionLayer::default();
        l.set(code::SUBNET_MASK, Some(net.netmask().octets().to_vec()));
        l.set(code::BROADCAST, Some(net.broadcast().octets().to_vec()));
        l.set(3, Some(box_addr.octets().to_vec()));
        if services.dns {
            l.set(6, Some(box_addr.octets().to_vec()));
        }
        if services.ntp {
            l.set(42, Some(box_addr.octets().to_vec()));
        }
        if services.sip {
            l.set(120, sip_servers(&[box_addr.to_string()]));
        }
        l.set_zone(zone);
        l
    }

    pub(crate) fn set(&mut self, code: u8, value: Option<Vec<u8>>) {
        self.0.insert(code, value);
    }

    fn set_zone(&mut self, zone: Option<&Zone>) {
        if let Some(z) = zone {
            if let Some(posix) = &z.posix {
                self.set(code::POSIX_TZ, Some(posix.as_bytes().to_vec()));
            }
            self.set(code::TZ_NAME, Some(z.name.as_bytes().to_vec()));
        }
    }

    /// Lays `over` on top of this layer.
    pub fn stack(&mut self, over: &OptionLayer) {
        self.0.extend(over.0.iter().map(|(c, v)| (*c, v.clone())));
    }
}

/// Which of the box's services the defaults point phones at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Services {
    /// The DNS forwarder runs.
    pub dns: bool,
    /// The NTP server runs.
    pub ntp: bool,
    /// The SIP B2BUA runs.
    pub sip: bool,
}

fn ipv4s(v: &[Ipv4Addr]) -> Vec<u8> {
    v.iter().flat_map(|a| a.octets()).collect()
}

/// Option 120 (RFC 3361): encoding byte 1 and addresses, or 0 and names in DNS wire format.
fn sip_servers(v: &[String]) -> Option<Vec<u8>> {
    if v.is_empty() {
        return None;
    }
    let addrs: Option<Vec<Ipv4Addr>> = v.iter().map(|s| s.parse().ok()).collect();
    Some(match addrs {
        Some(a) => std::iter::once(1).chain(ipv4s(&a)).collect(),
        None => {
            let mut out = vec![0];
            for name in v {
                for label in name.trim_end_matches('.').split('.') {
                    out.push(label.len() as u8);
                    out.extend_from_slice(label.as_bytes());
                }
                out.push(0);
            }
            out
        }
    })
}

/// The site's time zone as phones get it.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The tz database name (option 101), e.g. `Europe/London`.
    pub name: String,
    /// The POSIX TZ string (option 100), e.g. `GMT0BST,M3.5.0/1,M10.5.0`.
    pub posix: Option<String>,
    /// The zone's rules, for the UTC offset in force (option 2).
    pub rules: Option<tz::TimeZone>,
}

impl Zone {
    /// Reads `name` from the tz database in `dir` (normally /usr/share/zoneinfo). Without the
    /// file (or for a name that is not a plain zone path) only the name is known: option 101
    /// goes out, 100 and 2 do not.
    pub fn load(name: &str, dir: &Path) -> Zone {
        let plain = !name.is_empty()
            && !name.starts_with('/')
            && name
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..");
        let data = plain.then(|| std::fs::read(dir.join(name)).ok()).flatten();
        let (posix, rules) = match &data {
            Some(d) => (posix_footer(d), tz::TimeZone::from_tz_data(d).ok()),
            None => (None, None),
        };
        Zone {
            name: name.to_string(),
            posix,
            rules,
        }
    }

    /// The zone's offset from UTC at `now` (option 2). Option 2 is a fixed offset that goes
    /// stale at the next daylight-saving change, so it is sent only to phones that ask for it,
    /// as the offset in force when the lease is granted; they refresh it at every renewal.
    pub fn offset_at(&self, now: u64) -> Option<i32> {
        let t = i64::try_from(now).ok()?;
        Some(
            self.rules
                .as_ref()?
                .find_local_time_type(t)
                .ok()?
                .ut_offset(),
        )
    }
}

/// The POSIX TZ string that TZif files of version 2 and later end with (RFC 8536 §3.3).
fn posix_footer(data: &[u8]) -> Option<String> {
    if data.len() < 5 || &data[..4] != b"TZif" || data[4] < b'2' {
        return None;
    }
    let body = data.strip_suffix(b"\n")?;
    let start = body.iter().rposition(|&b| b == b'\n')? + 1;
    let footer = std::str::from_utf8(&body[start..]).ok()?;
    (!footer.is_empty() && footer.bytes().all(|b| b.is_ascii_graphic())).then(|| footer.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::model::{HexBytes, OptionValue};

    #[test]
    fn sip_servers_carry_their_encoding_byte() {
        assert_eq!(
            sip_servers(&["10.0.0.1".into(), "10.0.0.2".into()]),
            Some(vec![1, 10, 0, 0, 1, 10, 0, 0, 2])
        );
        assert_eq!(
            sip_servers(&["sip.example.com.".into()]),
            Some(b"\x00\x03sip\x07example\x03com\x00".to_vec())
        );
        assert_eq!(sip_servers(&[]), None);
    }

    #[test]
    fn a_block_encodes_every_field_and_withdraws_empty_ones() {
        let o = DhcpOptions {
            routers: Some(vec![]),
            tftp_server: Some("https://prov.example.com/y".into()),
            vendor_specific: Some(vec![
                OptionValue {
                    code: 1,
                    text: Some("stun.example.com".into()),
                    hex: None,
                    addresses: None,
                },
                OptionValue {
                    code: 2,
                    text: None,
                    hex: Some(HexBytes("0d96".into())),
                    addresses: None,
                },
            ]),
            timezone: Some(false),
            extra: vec![OptionValue {
                code: 224,
                text: None,
                hex: None,
                addresses: Some(vec![Ipv4Addr::new(192, 0, 2, 1)]),
            }],
            ..Default::default()
        };
        let l = OptionLayer::from_config(&o, None).0;
        assert_eq!(l[&3], None);
        assert_eq!(l[&66].as_deref(), Some(&b"https://prov.example.com/y"[..]));
        let mut v43 = vec![1, 16];
        v43.extend_from_slice(b"stun.example.com");
        v43.extend_from_slice(&[2, 2, 0x0d, 0x96]);
        assert_eq!(l[&43].as_deref(), Some(&v43[..]));
        assert_eq!((l[&100].clone(), l[&101].clone()), (None, None));
        assert_eq!(l[&224].as_deref(), Some(&[192, 0, 2, 1][..]));
    }

    #[test]
    fn london_from_the_tz_database() {
        let z = Zone::load("Europe/London", Path::new("/usr/share/zoneinfo"));
        assert_eq!(z.posix.as_deref(), Some("GMT0BST,M3.5.0/1,M10.5.0"));
        // 2024-01-15 and 2024-07-15, 12:00 UTC
        assert_eq!(z.offset_at(1_705_320_000), Some(0));
        assert_eq!(z.offset_at(1_721_044_800), Some(3600));
        let bad = Zone::load("../../etc/passwd", Path::new("/usr/share/zoneinfo"));
        assert_eq!((bad.posix.as_deref(), bad.offset_at(0)), (None, None));
    }
}
