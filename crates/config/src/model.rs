//! The configuration model: one struct per section of `voxgate.yaml`, with its defaults.
//!
//! Every struct denies unknown keys; the doc comments become the JSON Schema's descriptions.
//! Adding a service means adding its section here (with defaults) and its checks in
//! [`crate::validate`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{Duration, InterfaceAddress, IpCidr, Ipv4Cidr, MacAddr, Port, PortRange};

/// The whole of `voxgate.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What this box is and where it stands.
    #[serde(default)]
    pub site: Site,
    /// The box's network interfaces.
    pub interfaces: Interfaces,
    /// The hosted VoIP provider this box connects the phones to.
    pub provider: Provider,
    /// DHCPv4 server for the voice network.
    #[serde(default)]
    pub dhcp: Dhcp,
    /// SIP B2BUA between the phones and the provider.
    #[serde(default)]
    pub sip: Sip,
    /// RTP/RTCP relay anchoring each call's media at the box.
    #[serde(default)]
    pub media: Media,
    /// STUN/TURN relay for softphones and browsers.
    #[serde(default)]
    pub turn: Turn,
    /// Caching DNS forwarder for the voice network.
    #[serde(default)]
    pub dns: Dns,
    /// Time client (towards upstream servers) and server (for the voice network).
    #[serde(default)]
    pub ntp: Ntp,
    /// nftables rules generated from the provider profile and this file.
    #[serde(default)]
    pub firewall: Firewall,
    /// Operator access: control socket, state, logging, SSH.
    #[serde(default)]
    pub management: Management,
}

/// Site identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Site {
    /// A short name for the site, shown in status output and logs.
    pub name: String,
    /// IANA time zone of the site (handed to phones).
    pub timezone: String,
}

impl Default for Site {
    fn default() -> Self {
        Site {
            name: "voxgate".into(),
            timezone: "Europe/London".into(),
        }
    }
}

/// The box's interfaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Interfaces {
    /// Towards the broadband router (or HSCN firewall).
    pub wan: Wan,
    /// Towards the desk phones: the voice network.
    pub lan: Lan,
    /// A separate management port, if the board has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "ManagementInterface")]
    pub management: Option<ManagementInterface>,
}

/// How the WAN interface gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WanMode {
    /// Address, gateway and DNS from the broadband router's DHCP server.
    Dhcp,
    /// Address and gateway from this file.
    Static,
}

/// The WAN interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wan {
    /// Kernel interface name, e.g. `wan0`.
    pub device: String,
    /// `dhcp` (default) or `static`.
    #[serde(default = "default_wan_mode")]
    pub mode: WanMode,
    /// Static mode: the interface address with prefix, e.g. 192.168.1.2/24.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<InterfaceAddress>,
    /// Static mode: the default gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
}

fn default_wan_mode() -> WanMode {
    WanMode::Dhcp
}

/// The voice LAN interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lan {
    /// Kernel interface name of the parent port, e.g. `lan0`.
    pub device: String,
    /// 802.1Q VLAN id of the voice network (1-4094); leave out for an untagged port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4094))]
    pub vlan: Option<u16>,
    /// The box's address on the voice network with its prefix, e.g. 10.100.0.1/24.
    pub address: InterfaceAddress,
}

impl Lan {
    /// The interface the voice services bind to: `lan0.100` with a VLAN, `lan0` without.
    pub fn voice_device(&self) -> String {
        match self.vlan {
            Some(id) => format!("{}.{id}", self.device),
            None => self.device.clone(),
        }
    }
}

/// A dedicated management interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManagementInterface {
    /// Kernel interface name, e.g. `mgmt0`.
    pub device: String,
    /// Address with prefix, e.g. 192.168.77.1/24.
    pub address: InterfaceAddress,
}

/// Provider selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Profile name (looked up in /etc/voxgate/providers, /usr/share/voxgate/providers, then the
    /// profiles built into the binary) or a path to a profile file.
    pub profile: String,
    /// Site-specific additions to the profile.
    #[serde(default)]
    pub overrides: ProviderOverrides,
}

/// Site-specific changes to a provider profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderOverrides {
    /// Extra provider networks to allow (announced by the provider, not yet in the profile).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_networks: Vec<IpCidr>,
    /// The SIP server (registrar/proxy) host name or address, if not the profile's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_server: Option<String>,
    /// The SIP server port, if not the profile's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_port: Option<Port>,
}

/// An inclusive range of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRange {
    /// First address handed out.
    pub start: Ipv4Addr,
    /// Last address handed out (inclusive).
    pub end: Ipv4Addr,
}

/// A fixed address for one phone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    /// The phone's MAC address.
    pub mac: MacAddr,
    /// The address it always gets.
    pub address: Ipv4Addr,
    /// Optional host name handed out with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// DHCPv4 server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Dhcp {
    /// Serve DHCP on the voice network.
    pub enabled: bool,
    /// Address ranges to lease from; they must lie in the voice subnet. Empty: the upper half
    /// of the subnet.
    pub pools: Vec<AddressRange>,
    /// Addresses (or networks) inside the pools never to lease.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<Ipv4Cidr>,
    /// Fixed addresses by MAC.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<Reservation>,
    /// Lease duration.
    pub lease_time: Duration,
}

impl Default for Dhcp {
    fn default() -> Self {
        Dhcp {
            enabled: true,
            pools: Vec::new(),
            exclude: Vec::new(),
            reservations: Vec::new(),
            lease_time: Duration::secs(12 * 3600),
        }
    }
}

/// Transport towards the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SipTransport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
    /// SIP over TLS.
    Tls,
}

/// SIP B2BUA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Sip {
    /// Relay registrations and calls between the phones and the provider.
    pub enabled: bool,
    /// Port the phones send SIP to on the box's voice address (UDP and TCP).
    pub lan_port: Port,
    /// Transport towards the provider.
    pub transport: SipTransport,
    /// Interval of keepalives that hold the broadband router's NAT binding open.
    pub keepalive_interval: Duration,
}

impl Default for Sip {
    fn default() -> Self {
        Sip {
            enabled: true,
            lan_port: Port(5060),
            transport: SipTransport::Udp,
            keepalive_interval: Duration::secs(20),
        }
    }
}

/// RTP/RTCP relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Media {
    /// Anchor call media at the box.
    pub enabled: bool,
    /// Ports the box uses for media towards the phones.
    pub lan_ports: PortRange,
    /// Ports the box uses for media towards the provider.
    pub wan_ports: PortRange,
    /// A call with no media in either direction for this long is ended (hold is respected).
    pub timeout: Duration,
}

impl Default for Media {
    fn default() -> Self {
        Media {
            enabled: true,
            lan_ports: PortRange {
                first: 20000,
                last: 29999,
            },
            wan_ports: PortRange {
                first: 30000,
                last: 39999,
            },
            timeout: Duration::secs(60),
        }
    }
}

/// STUN/TURN relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Turn {
    /// Run the STUN/TURN server on the voice network.
    pub enabled: bool,
    /// STUN/TURN listening port.
    pub port: Port,
    /// Also accept TURN from the internet (remote softphones); off by default.
    pub expose_on_wan: bool,
    /// Ports for relayed transport addresses.
    pub relay_ports: PortRange,
    /// Authentication realm.
    pub realm: String,
}

impl Default for Turn {
    fn default() -> Self {
        Turn {
            enabled: false,
            port: Port(3478),
            expose_on_wan: false,
            relay_ports: PortRange {
                first: 49152,
                last: 49999,
            },
            realm: "voxgate".into(),
        }
    }
}

/// DNS forwarder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Answer DNS on the box's voice address.
    pub enabled: bool,
    /// Upstream resolvers; empty: those learned from the WAN's DHCP lease.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<IpAddr>,
    /// Maximum number of cached answers.
    pub cache_size: u32,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            enabled: true,
            upstreams: Vec::new(),
            cache_size: 1024,
        }
    }
}

/// NTP client and server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Ntp {
    /// Serve time to the voice network (only once the box itself is synchronised).
    pub enabled: bool,
    /// Upstream servers (host names or addresses).
    pub servers: Vec<String>,
}

impl Default for Ntp {
    fn default() -> Self {
        Ntp {
            enabled: true,
            servers: vec!["0.uk.pool.ntp.org".into(), "1.uk.pool.ntp.org".into()],
        }
    }
}

/// Firewall generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Firewall {
    /// Generate and apply the nftables table `inet voxgate`.
    pub enabled: bool,
    /// Let phones reach the provider directly (provisioning, direct media) on the profile's
    /// services, besides through the box's own relays.
    pub forward_to_provider: bool,
    /// Log dropped packets (rate limited).
    pub log_drops: bool,
}

impl Default for Firewall {
    fn default() -> Self {
        Firewall {
            enabled: true,
            forward_to_provider: false,
            log_drops: true,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Normal operation.
    Info,
    /// Troubleshooting detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The level's name as `tracing` filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Operator access.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Management {
    /// Path of the control socket the CLI talks to (mode 0660).
    pub control_socket: PathBuf,
    /// Directory for persistent state (leases, keys).
    pub state_dir: PathBuf,
    /// Log verbosity.
    pub log_level: LogLevel,
    /// Networks allowed to reach SSH; empty: only the management interface's subnet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh_from: Vec<IpCidr>,
    /// Public keys of the support account.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
}

impl Default for Management {
    fn default() -> Self {
        Management {
            control_socket: PathBuf::from("/run/voxgate/control.sock"),
            state_dir: PathBuf::from("/var/lib/voxgate"),
            log_level: LogLevel::Info,
            ssh_from: Vec::new(),
            ssh_keys: Vec::new(),
        }
    }
}
