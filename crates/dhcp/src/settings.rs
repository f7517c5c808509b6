//! What the engine serves, derived from the configuration: subnets with their pools, fixed
//! addresses, vendor classes and option layers, all encoded once per configuration.

use std::net::Ipv4Addr;
use std::path::Path;

use config::model::Config;
use ipnet::Ipv4Net;

use crate::options::{OptionLayer, Services, Zone};

/// Where the tz database lives on the box.
pub const ZONEINFO: &str = "/usr/share/zoneinfo";

/// Everything the engine needs to answer; replaced as a whole on reload.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The box's address towards the clients: option 54, and what relays send to.
    pub server_id: Ipv4Addr,
    /// The subnets served. The first is the voice LAN the server's interface is on and serves
    /// direct clients; the others are reached through relays, chosen by `giaddr`.
    pub subnets: Vec<Subnet>,
    /// Fixed addresses.
    pub fixed: Vec<Fixed>,
    /// Vendor classes, first match wins.
    pub classes: Vec<Class>,
    /// Lease duration in seconds.
    pub lease_time: u32,
    /// How long a declined address stays out of use, in seconds.
    pub decline_quarantine: u32,
    /// The site's time zone, for option 2.
    pub zone: Option<Zone>,
}

/// One IPv4 subnet and the pools in it.
#[derive(Debug, Clone)]
pub struct Subnet {
    /// The network.
    pub net: Ipv4Net,
    /// Address ranges to lease from, in the order tried.
    pub pools: Vec<Pool>,
    /// Networks inside the pools never leased.
    pub exclude: Vec<Ipv4Net>,
    /// Built-in defaults with `dhcp.options` on top.
    pub options: OptionLayer,
}

/// An inclusive address range with its option layer.
#[derive(Debug, Clone)]
pub struct Pool {
    /// First address.
    pub start: Ipv4Addr,
    /// Last address (inclusive).
    pub end: Ipv4Addr,
    /// Options over the subnet's.
    pub options: OptionLayer,
}

impl Pool {
    /// Whether `a` lies in the range.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        (self.start..=self.end).contains(&a)
    }
    /// Number of addresses in the range.
    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }
    /// Always false: a range holds at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A fixed address for one client.
#[derive(Debug, Clone)]
pub struct Fixed {
    /// Matches this MAC address...
    pub mac: Option<[u8; 6]>,
    /// ...or this client identifier (option 61), which takes precedence.
    pub client_id: Option<Vec<u8>>,
    /// The address.
    pub address: Ipv4Addr,
    /// Host name handed out with it (option 12).
    pub hostname: Option<String>,
}

/// A vendor class: who it matches and the options layered over the pool's.
#[derive(Debug, Clone)]
pub struct Class {
    /// Its name, for logs and the lease list.
    pub name: String,
    /// A substring of option 60, lower-case.
    pub vendor_class: Option<String>,
    /// The leading bytes of the MAC address.
    pub mac_prefix: Option<Vec<u8>>,
    /// Its options.
    pub options: OptionLayer,
}

impl Class {
    /// Whether a client with this option 60 and MAC belongs to the class (all criteria given
    /// must match).
    pub fn matches(&self, vendor_class: Option<&str>, mac: Option<[u8; 6]>) -> bool {
        let vc_ok = self.vendor_class.as_ref().is_none_or(|want| {
            vendor_class.is_some_and(|vc| vc.to_lowercase().contains(want.as_str()))
        });
        let mac_ok = self
            .mac_prefix
            .as_ref()
            .is_none_or(|p| mac.is_some_and(|m| m.starts_with(p)));
        vc_ok && mac_ok
    }
}

impl Settings {
    /// Settings for a (validated) configuration, reading the time zone from `zoneinfo`.
    pub fn from_config(c: &Config, zoneinfo: &Path) -> Settings {
        let d = &c.dhcp;
        let lan = c.interfaces.lan.address;
        let net = lan.network();
        let zone = Zone::load(&c.site.timezone, zoneinfo);
        if zone.posix.is_none() {
            tracing::warn!(
                timezone = %c.site.timezone,
                "time zone not found in {}: phones get only its name (option 101)",
                zoneinfo.display()
            );
        }
        let services = Services {
            dns: c.dns.enabled,
            ntp: c.ntp.enabled,
            sip: c.sip.enabled,
        };
        let mut options = OptionLayer::defaults(net, lan.addr(), services, Some(&zone));
        options.stack(&OptionLayer::from_config(&d.options, Some(&zone)));
        let mut pools: Vec<Pool> = d
            .pools
            .iter()
            .map(|p| Pool {
                start: p.start,
                end: p.end,
                options: OptionLayer::from_config(&p.options, Some(&zone)),
            })
            .collect();
        if pools.is_empty() {
            pools.extend(upper_half(net));
        }
        Settings {
            server_id: lan.addr(),
            subnets: vec![Subnet {
                net,
                pools,
                exclude: d.exclude.iter().map(|e| e.0).collect(),
                options,
            }],
            fixed: d
                .reservations
                .iter()
                .map(|r| Fixed {
                    mac: r.mac.map(|m| m.0),
                    client_id: r.client_id.as_ref().and_then(|h| h.bytes().ok()),
                    address: r.address,
                    hostname: r.hostname.clone(),
                })
                .collect(),
            classes: d
                .vendor_classes
                .iter()
                .map(|v| Class {
                    name: v.name.clone(),
                    vendor_class: v.matches.vendor_class.as_ref().map(|s| s.to_lowercase()),
                    mac_prefix: v.matches.mac_prefix.as_ref().and_then(|p| p.octets().ok()),
                    options: OptionLayer::from_config(&v.options, Some(&zone)),
                })
                .collect(),
            lease_time: u32::try_from(d.lease_time.as_secs()).unwrap_or(u32::MAX),
            decline_quarantine: u32::try_from(d.decline_quarantine.as_secs()).unwrap_or(u32::MAX),
            zone: Some(zone),
        }
    }

    /// Which of `subnets` a client is served from: the relay's (by `giaddr`), else the
    /// directly attached one.
    pub fn subnet_for(&self, giaddr: Ipv4Addr) -> Option<usize> {
        if giaddr.is_unspecified() {
            (!self.subnets.is_empty()).then_some(0)
        } else {
            self.subnets.iter().position(|s| s.net.contains(&giaddr))
        }
    }
}

/// The documented default pool: the upper half of the subnet's host addresses.
fn upper_half(net: Ipv4Net) -> Option<Pool> {
    if net.prefix_len() > 30 {
        return None;
    }
    let (first, last) = (u32::from(net.network()) + 1, u32::from(net.broadcast()) - 1);
    let hosts = last - first + 1;
    Some(Pool {
        start: Ipv4Addr::from(first + hosts / 2),
        end: Ipv4Addr::from(last),
        options: OptionLayer::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pool_is_the_upper_half() {
        let p = upper_half("10.100.0.0/24".parse().unwrap()).unwrap();
        assert_eq!(
            (p.start, p.end),
            (
                "10.100.0.128".parse().unwrap(),
                "10.100.0.254".parse().unwrap()
            )
        );
        assert_eq!(p.len(), 127);
        let p = upper_half("10.0.0.0/30".parse().unwrap()).unwrap();
        assert_eq!(
            (p.start, p.end),
            ("10.0.0.2".parse().unwrap(), "10.0.0.2".parse().unwrap())
        );
        assert!(upper_half("10.0.0.0/31".parse().unwrap()).is_none());
    }

    #[test]
    fn classes_need_every_criterion() {
        let c = Class {
            name: "yealink".into(),
            vendor_class: Some("yealink".into()),
            mac_prefix: Some(vec![0x80, 0x5e, 0xc0]),
            options: OptionLayer::default(),
        };
        let mac = Some([0x80, 0x5e, 0xc0, 1, 2, 3]);
        assert!(c.matches(Some("Yealink SIP-T46S"), mac));
        assert!(!c.matches(Some("Yealink SIP-T46S"), Some([0; 6])));
        assert!(!c.matches(None, mac));
    }
}
