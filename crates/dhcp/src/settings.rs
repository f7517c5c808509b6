//! What the engine serves, derived from the configuration: subnets with their pools, fixed
//! addresses, vendor classes and option layers, all encoded once per configuration.

use std::net::Ipv4Addr;
use std::path::Path;

use config::model::{Config, VendorClass};
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
    /// A configured vendor class.
    pub fn from_config(v: &VendorClass, zone: Option<&Zone>) -> Class {
        Class {
            name: v.name.clone(),
            vendor_class: v.matches.vendor_class.as_ref().map(|s| s.to_lowercase()),
            mac_prefix: v.matches.mac_prefix.as_ref().and_then(|p| p.octets().ok()),
            options: OptionLayer::from_config(&v.options, zone),
        }
    }

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
                .map(|v| Class::from_config(v, Some(&zone)))
                .collect(),
            lease_time: u32::try_from(d.lease_time.as_secs()).unwrap_or(u32::MAX),
            decline_quarantine: u32::try_from(d.decline_quarantine.as_secs()).unwrap_or(u32::MAX),
            zone: Some(zone),
        }
    }

    /// Settings of the bootstrap scope (`dhcp.bootstrap`), when it is configured and a VLAN is
    /// known: the bootstrap subnet with its pools and short leases, the VLAN hints of
    /// [`vlan_hints`] under the scope's own options and classes, and no reservations. Phones
    /// get address, mask and router there, and no DNS, NTP or SIP server: they only pass through.
    pub fn bootstrap_from_config(c: &Config) -> Option<Settings> {
        let (b, _, vlan) = c.dhcp.bootstrap_scope(&c.interfaces.lan)?;
        let net = b.address.network();
        let mut options = OptionLayer::defaults(net, b.address.addr(), Services::default(), None);
        let (hint, builtin) = vlan_hints(vlan);
        options.stack(&hint);
        options.stack(&OptionLayer::from_config(&b.options, None));
        let mut pools: Vec<Pool> = b
            .pools
            .iter()
            .map(|p| Pool {
                start: p.start,
                end: p.end,
                options: OptionLayer::from_config(&p.options, None),
            })
            .collect();
        if pools.is_empty() {
            pools.extend(upper_half(net));
        }
        let mut classes: Vec<Class> = b
            .vendor_classes
            .iter()
            .map(|v| Class::from_config(v, None))
            .collect();
        let own: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
        classes.extend(builtin.into_iter().filter(|c| !own.contains(&c.name)));
        Some(Settings {
            server_id: b.address.addr(),
            subnets: vec![Subnet {
                net,
                pools,
                exclude: Vec::new(),
                options,
            }],
            fixed: Vec::new(),
            classes,
            lease_time: u32::try_from(b.lease_time.as_secs()).unwrap_or(u32::MAX),
            decline_quarantine: u32::try_from(c.dhcp.decline_quarantine.as_secs())
                .unwrap_or(u32::MAX),
            zone: None,
        })
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

/// The voice-VLAN hints a bootstrap lease carries, in the forms phones read them:
///
/// - every client: option 132 = the VLAN id as two bytes, big-endian. IANA lists 132 as
///   "IEEE 802.1Q VLAN ID" (one of the PXE-era codes 128-135 of RFC 4578, later taken up by
///   IP phones, e.g. Mitel's "Voice VLAN ID (132)"); busybox udhcpc, the DHCP client of much
///   embedded firmware, reads it as a 16-bit integer (`vlanid`).
/// - `avaya` (option 60 contains `ccp.avaya.com`, the vendor class of Avaya 96x1/J100 phones):
///   option 242 = `L2Q=1,L2QVLAN=<id>` — the name=value pairs Avaya's administrator guides
///   accept in the DHCPACK (site-specific option 242 by default, `SSON`); `L2Q=1` turns
///   tagging on, `L2QVLAN` names the VLAN.
/// - `mitel` (option 60 contains `ipphone.mitel.com`): option 43 =
///   `id:ipphone.mitel.com;vlan=<id>;l2p=6;dscp=46` — Mitel's tag/value string (engineering
///   guidelines: "must always start with `id:ipphone.mitel.com;`", `vlan` voice VLAN id, `l2p`
///   802.1p priority, `dscp` DSCP), as option 43 text (option 125 carries the same string).
/// - `polycom` (option 60 contains `polycom`): option 128 = `VLAN-A=<id>;`, the "DHCP VLAN
///   Discovery" string of Polycom's SoundPoint administrator's guide (starts with `VLAN-A=`,
///   IDs separated by `+`, ends with `;`) in the first of the options (128, 144, 157, 191) its
///   "Fixed" VLAN discovery examines.
///
/// Cisco phones and most newer Yealink and Poly models learn the VLAN by LLDP-MED (or CDP)
/// instead; the `lldp` service covers them.
pub fn vlan_hints(vlan: u16) -> (OptionLayer, Vec<Class>) {
    let text = |s: String| Some(s.into_bytes());
    let mut all = OptionLayer::default();
    all.set(132, Some(vlan.to_be_bytes().to_vec()));
    let class = |name: &str, vc: &str, code: u8, value: String| {
        let mut options = OptionLayer::default();
        options.set(code, text(value));
        Class {
            name: name.into(),
            vendor_class: Some(vc.into()),
            mac_prefix: None,
            options,
        }
    };
    let classes = vec![
        class(
            "avaya",
            "ccp.avaya.com",
            242,
            format!("L2Q=1,L2QVLAN={vlan}"),
        ),
        class(
            "mitel",
            "ipphone.mitel.com",
            43,
            format!("id:ipphone.mitel.com;vlan={vlan};l2p=6;dscp=46"),
        ),
        class("polycom", "polycom", 128, format!("VLAN-A={vlan};")),
    ];
    (all, classes)
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
    fn bootstrap_scope_carries_the_vlan_hints_and_config_classes_come_first() {
        let text = "interfaces:
  wan: {device: wan0}
  lan: {device: lan0, vlan: 100, address: 10.100.0.1/24}
provider: {profile: lab}
dhcp:
  bootstrap:
    address: 10.99.0.1/28
    lease_time: 2m
    vendor_classes:
      - name: polycom
        match: {vendor_class: polycom}
        options: {extra: [{code: 128, text: \"VLAN-A=100+200;\"}]}
      - name: snom
        match: {vendor_class: snom}
        options: {extra: [{code: 224, text: \"vlan=100\"}]}
";
        let c = config::load_str(Path::new("x.yaml"), text, &[])
            .unwrap()
            .config;
        let s = Settings::bootstrap_from_config(&c).unwrap();
        assert_eq!(s.server_id, Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(s.lease_time, 120);
        let sub = &s.subnets[0];
        assert_eq!(sub.net.to_string(), "10.99.0.0/28");
        assert_eq!(
            (sub.pools[0].start, sub.pools[0].end),
            (Ipv4Addr::new(10, 99, 0, 8), Ipv4Addr::new(10, 99, 0, 14))
        );
        let o = &sub.options.0;
        assert_eq!(o[&132], Some(vec![0, 100]));
        assert_eq!(o[&3], Some(vec![10, 99, 0, 1]));
        assert!(!o.contains_key(&6) && !o.contains_key(&120) && !o.contains_key(&101));
        let names: Vec<&str> = s.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["polycom", "snom", "avaya", "mitel"]);
        assert_eq!(
            s.classes[0].options.0[&128].as_deref(),
            Some(&b"VLAN-A=100+200;"[..])
        );
        assert_eq!(
            s.classes[2].options.0[&242].as_deref(),
            Some(&b"L2Q=1,L2QVLAN=100"[..])
        );
        // Without a VLAN anywhere there is no bootstrap scope (validation says why).
        let mut c2 = c.clone();
        c2.interfaces.lan.vlan = None;
        assert!(Settings::bootstrap_from_config(&c2).is_none());
        assert!(Settings::bootstrap_from_config(
            &config::load_str(Path::new("x.yaml"), config::LAB_CONFIG, &[])
                .unwrap()
                .config
        )
        .is_none());
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
