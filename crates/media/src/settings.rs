//! What the relay needs to know about the box, taken from the configuration.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use config::model::KernelPath;
use config::types::PortRange;
use config::Loaded;
use ipnet::{IpNet, Ipv4Net};

/// DSCP EF (46) in the IPv4 TOS byte: expedited forwarding for voice (RFC 3246, RFC 4594).
pub const TOS_EF: u8 = 0xB8;

/// The relay's settings: addresses, port ranges, who may send media, and its timers.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaSettings {
    /// The box's address on the voice LAN: LAN sockets bind to it and LAN SDP names it.
    pub lan_address: Ipv4Addr,
    /// The voice subnet: the only sources accepted on the LAN side.
    pub lan_network: Ipv4Net,
    /// The WAN interface's address if the configuration fixes it (static mode); with DHCP the
    /// shell looks it up on `wan_device` when it starts.
    pub wan_address: Option<Ipv4Addr>,
    /// The WAN interface, for looking its address up.
    pub wan_device: String,
    /// Ports for the LAN side, allocated in even/odd (RTP/RTCP) pairs.
    pub lan_ports: PortRange,
    /// Ports for the WAN side, allocated in even/odd (RTP/RTCP) pairs.
    pub wan_ports: PortRange,
    /// The provider's networks (profile plus overrides): the only sources accepted on the WAN.
    pub provider_networks: Vec<IpNet>,
    /// An active call with no media in either direction for this long is ended.
    pub timeout: Duration,
    /// The same for a call on hold (a stream sendonly, recvonly, inactive or at 0.0.0.0) or not
    /// yet answered: silence is normal there, so only a much longer bound frees leaked calls.
    pub hold_timeout: Duration,
    /// How long a released port is kept out of use, so that late packets of the old call (or a
    /// stranger who learnt the port) never reach the next call that gets it.
    pub quarantine: Duration,
    /// How long a latched peer must be silent before another allowed source may take its place.
    ///
    /// Two seconds is a hundred packet times at 20 ms: a live source never pauses that long
    /// (comfort noise and RTCP keep flowing), so nobody can hijack a talking stream, while a
    /// phone that changed port or a provider whose NAT mapping moved loses at most two
    /// seconds of audio.
    pub relatch_after: Duration,
    /// IPv4 TOS byte on every socket (default DSCP EF).
    pub tos: u8,
    /// Threads moving packets, each a single-threaded runtime with its share of the streams.
    pub threads: usize,
    /// Whether established streams are forwarded by the kernel (nftables) when possible.
    pub kernel_path: KernelPath,
    /// RTP packets the relay sees from each latched peer before the kernel takes the stream
    /// over (default 50, a second of audio: payload types and a loss baseline are known).
    pub kernel_after_packets: u64,
    /// A peer silent this long brings its stream back from the kernel (default 5 s).
    pub kernel_idle: Duration,
}

impl MediaSettings {
    /// The settings for a validated configuration, with defaults for what it does not say.
    pub fn from_loaded(loaded: &Loaded) -> MediaSettings {
        let c = &loaded.config;
        let mut provider_networks: Vec<IpNet> =
            loaded.profile.networks.iter().map(|n| n.cidr.0).collect();
        provider_networks.extend(c.provider.overrides.extra_networks.iter().map(|n| n.0));
        MediaSettings {
            lan_address: c.interfaces.lan.address.addr(),
            lan_network: c.interfaces.lan.address.network(),
            wan_address: c.interfaces.wan.address.map(|a| a.addr()),
            wan_device: c.interfaces.wan.device.clone(),
            lan_ports: c.media.lan_ports,
            wan_ports: c.media.wan_ports,
            provider_networks,
            timeout: c.media.timeout.0,
            quarantine: c.media.port_quarantine.0,
            kernel_path: c.media.kernel_path,
            ..MediaSettings::defaults()
        }
    }

    /// Settings with the built-in timers and no addresses: a base for tests and tools.
    pub fn defaults() -> MediaSettings {
        MediaSettings {
            lan_address: Ipv4Addr::UNSPECIFIED,
            lan_network: Ipv4Net::default(),
            wan_address: None,
            wan_device: String::new(),
            lan_ports: PortRange {
                first: 20000,
                last: 29999,
            },
            wan_ports: PortRange {
                first: 30000,
                last: 39999,
            },
            provider_networks: Vec::new(),
            timeout: Duration::from_secs(60),
            hold_timeout: Duration::from_secs(3600),
            quarantine: Duration::from_secs(30),
            relatch_after: Duration::from_secs(2),
            tos: TOS_EF,
            threads: 1,
            kernel_path: KernelPath::Auto,
            kernel_after_packets: 50,
            kernel_idle: Duration::from_secs(5),
        }
    }
}

/// Who may send media to each side, shared by every stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    pub lan_network: Ipv4Net,
    pub provider_networks: Vec<IpNet>,
    pub relatch_after: Duration,
}

impl Policy {
    pub fn new(s: &MediaSettings) -> Policy {
        Policy {
            lan_network: s.lan_network,
            provider_networks: s.provider_networks.clone(),
            relatch_after: s.relatch_after,
        }
    }

    /// Whether `ip` may send media to the box on `side`.
    pub fn allows(&self, side: crate::Side, ip: IpAddr) -> bool {
        match (side, ip) {
            (crate::Side::Lan, IpAddr::V4(v4)) => self.lan_network.contains(&v4),
            (crate::Side::Lan, IpAddr::V6(_)) => false,
            (crate::Side::Wan, ip) => self.provider_networks.iter().any(|n| n.contains(&ip)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_configuration() {
        let loaded =
            config::load_str(std::path::Path::new("lab.yaml"), config::LAB_CONFIG, &[]).unwrap();
        let s = MediaSettings::from_loaded(&loaded);
        assert_eq!(s.lan_address, Ipv4Addr::new(10, 100, 0, 1));
        assert_eq!(s.lan_network.to_string(), "10.100.0.0/24");
        assert_eq!(s.wan_address, Some(Ipv4Addr::new(10, 200, 0, 2)));
        assert_eq!(s.wan_device, "wan0");
        assert_eq!(
            s.provider_networks,
            vec!["198.51.100.0/24".parse().unwrap()]
        );
        assert_eq!(s.timeout, Duration::from_secs(60));
        let p = Policy::new(&s);
        assert!(p.allows(crate::Side::Wan, "198.51.100.10".parse().unwrap()));
        assert!(!p.allows(crate::Side::Wan, "10.200.0.1".parse().unwrap()));
        assert!(p.allows(crate::Side::Lan, "10.100.0.50".parse().unwrap()));
        assert!(!p.allows(crate::Side::Lan, "10.200.0.1".parse().unwrap()));
    }
}
