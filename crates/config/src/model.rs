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
    /// LLDP-MED advertisement of the voice network policy on the voice port.
    #[serde(default)]
    pub lldp: Lldp,
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
    /// Fallback SIP servers (`host` or `host:port`) in order of preference, if not the
    /// profile's; `[]` for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_fallbacks: Option<Vec<String>>,
}

/// An inclusive range of IPv4 addresses to lease from, with options for the phones in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRange {
    /// First address handed out.
    pub start: Ipv4Addr,
    /// Last address handed out (inclusive).
    pub end: Ipv4Addr,
    /// Options for clients leasing from this pool, over `dhcp.options`.
    #[serde(default, skip_serializing_if = "DhcpOptions::is_empty")]
    pub options: DhcpOptions,
}

/// A fixed address for one phone, known by its MAC address or its client identifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    /// The phone's MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// The client identifier (option 61) the phone sends, as hex, e.g. "01:00:04:f2:12:34:56";
    /// takes precedence over `mac`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<HexBytes>,
    /// The address it always gets.
    pub address: Ipv4Addr,
    /// Optional host name handed out with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// Bytes written as hex pairs, optionally separated by `:`, `-` or spaces, e.g. "0a640001".
/// Kept as written (and checked in validation) so a typo is reported with its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HexBytes(pub String);

/// An inline string schema, so that `Option<T>` stays `type: [string, null]` (no `anyOf`,
/// whose validation messages are poor).
macro_rules! inline_string_schema {
    ($ty:ty, $desc:literal) => {
        impl JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({"type": "string", "description": $desc})
            }
        }
    };
}
inline_string_schema!(
    HexBytes,
    "Bytes in hex, e.g. \"0a640001\" or \"01:00:04:f2:12:34:56\"."
);

impl HexBytes {
    /// The bytes, or why the text is not hex.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        let digits: Vec<char> = self
            .0
            .chars()
            .filter(|c| !matches!(c, ':' | '-' | ' '))
            .collect();
        if !digits.len().is_multiple_of(2) {
            return Err("odd number of hex digits".into());
        }
        digits
            .chunks(2)
            .map(|p| {
                let pair: String = p.iter().collect();
                u8::from_str_radix(&pair, 16).map_err(|_| format!("{pair:?} is not a hex pair"))
            })
            .collect()
    }
}

/// The start of a MAC address, one to six hex pairs, e.g. "80:5e:c0" (an OUI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MacPrefix(pub String);
inline_string_schema!(MacPrefix, "One to six hex pairs, e.g. \"80:5e:c0\".");

impl MacPrefix {
    /// The prefix's bytes, or why it is malformed.
    pub fn octets(&self) -> Result<Vec<u8>, String> {
        let parts: Vec<&str> = self.0.split([':', '-']).collect();
        if parts.len() > 6 {
            return Err("a MAC address has only six bytes".into());
        }
        parts
            .iter()
            .map(|p| match u8::from_str_radix(p, 16) {
                Ok(b) if p.len() == 2 => Ok(b),
                _ => Err(format!("{p:?} is not a hex pair")),
            })
            .collect()
    }
}

/// The value of a DHCP option (or of a sub-option of option 43): exactly one of `text`,
/// `hex` or `addresses`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionValue {
    /// Option code, 1-254.
    #[schemars(range(min = 1, max = 254))]
    pub code: u8,
    /// The value as text, sent as is (no terminating NUL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The value as raw bytes in hex, e.g. "0a640001".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<HexBytes>,
    /// The value as a list of IPv4 addresses, four bytes each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<Ipv4Addr>>,
}

impl OptionValue {
    /// The encoded value, or why it cannot be encoded.
    pub fn payload(&self) -> Result<Vec<u8>, String> {
        match (&self.text, &self.hex, &self.addresses) {
            (Some(t), None, None) => Ok(t.as_bytes().to_vec()),
            (None, Some(h), None) => h.bytes(),
            (None, None, Some(a)) => Ok(a.iter().flat_map(|a| a.octets()).collect()),
            _ => Err("exactly one of `text`, `hex` or `addresses` must be given".into()),
        }
    }
}

/// Options handed to phones. Unset fields inherit: `dhcp.options` from the built-in defaults,
/// a pool's from `dhcp.options`, a vendor class's from the pool's. An empty list sends nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DhcpOptions {
    /// Option 3, default gateways. Default: the box's voice address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routers: Option<Vec<Ipv4Addr>>,
    /// Option 6, DNS servers. Default: the box's voice address while `dns` is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_servers: Option<Vec<Ipv4Addr>>,
    /// Option 15, the DNS domain of the voice network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// Option 42, NTP servers. Default: the box's voice address while `ntp` is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ntp_servers: Option<Vec<Ipv4Addr>>,
    /// Option 120 (RFC 3361), SIP servers: IPv4 addresses or host names, not mixed. Default: the
    /// box's voice address while `sip` is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_servers: Option<Vec<String>>,
    /// Option 66, the provisioning (TFTP) server: a host name, an address, or a URL such as
    /// `https://prov.example.com/yealink` (sent exactly as written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tftp_server: Option<String>,
    /// Option 67, the boot or configuration file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_file: Option<String>,
    /// Option 150, TFTP server addresses (Cisco phones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cisco_tftp_servers: Option<Vec<Ipv4Addr>>,
    /// Option 160, the provisioning URL (Poly/Polycom phones), sent exactly as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning_url: Option<String>,
    /// Option 43, vendor-specific information as sub-options, e.g. a STUN server. (For a raw
    /// value, use `extra` with code 43.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_specific: Option<Vec<OptionValue>>,
    /// Hand out the site's time zone (`site.timezone`): options 100 (POSIX TZ string) and 101
    /// (tz database name), and option 2 (the current UTC offset) to phones that ask. Default:
    /// true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<bool>,
    /// Any other option by code; also overrides a field above with the same code.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<OptionValue>,
}

impl DhcpOptions {
    /// Whether nothing is set (everything inherits).
    pub fn is_empty(&self) -> bool {
        *self == DhcpOptions::default()
    }
}

/// Which phones a vendor class applies to: every criterion given must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct VendorMatch {
    /// Part of the vendor class identifier (option 60) the phone sends, compared without
    /// regard to case, e.g. `yealink`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_class: Option<String>,
    /// The start of the phone's MAC address, e.g. "80:5e:c0" (an OUI of the vendor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_prefix: Option<MacPrefix>,
}

/// Options for one make of phone; the first class that matches a phone applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VendorClass {
    /// A short name, shown in logs and `voxgate leases`.
    pub name: String,
    /// Which phones belong to the class.
    #[serde(rename = "match")]
    pub matches: VendorMatch,
    /// Their options, over the pool's and `dhcp.options`.
    #[serde(default, skip_serializing_if = "DhcpOptions::is_empty")]
    pub options: DhcpOptions,
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
    /// Fixed addresses by MAC or client identifier.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<Reservation>,
    /// Lease duration.
    pub lease_time: Duration,
    /// How long an address a phone declined (another device answers ARP on it) is not
    /// offered again.
    pub decline_quarantine: Duration,
    /// Options for every phone.
    #[serde(skip_serializing_if = "DhcpOptions::is_empty")]
    pub options: DhcpOptions,
    /// Options per make of phone, by vendor class identifier and/or MAC prefix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vendor_classes: Vec<VendorClass>,
    /// A bootstrap scope on the untagged port that tells phones the voice VLAN; left out: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Bootstrap")]
    pub bootstrap: Option<Bootstrap>,
}

/// A small DHCP scope on the untagged port (`interfaces.lan.device`, e.g. `lan0` while the voice
/// network is `lan0.100`) for phones that are not LLDP-capable: they take a short lease there,
/// read the voice VLAN from a vendor option, and start DHCP again tagged on that VLAN.
///
/// Every lease carries option 132, the VLAN id in two bytes (IANA: "IEEE 802.1Q VLAN ID").
/// Built-in vendor classes add: `avaya`
/// (option 60 contains `ccp.avaya.com`) option 242 `L2Q=1,L2QVLAN=<id>`; `mitel` (option 60
/// contains `ipphone.mitel.com`) option 43 `id:ipphone.mitel.com;vlan=<id>;l2p=6;dscp=46`;
/// `polycom` (option 60 contains `polycom`) option 128 `VLAN-A=<id>;`. A class in
/// `vendor_classes` with one of these names replaces the built-in one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// Interface of the untagged segment. Default: `interfaces.lan.device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The box's address on the untagged segment with its prefix, e.g. 10.99.0.1/24 (a subnet
    /// of its own; the box must hold this address on the device).
    pub address: InterfaceAddress,
    /// The VLAN id the phones are told. Default: `interfaces.lan.vlan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4094))]
    pub vlan: Option<u16>,
    /// Address ranges in the bootstrap subnet. Empty: the upper half of the subnet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<AddressRange>,
    /// Lease duration: short, since phones leave for the voice VLAN at once.
    #[serde(default = "default_bootstrap_lease")]
    pub lease_time: Duration,
    /// Options for every client of the scope, over the VLAN hint (option 132).
    #[serde(default, skip_serializing_if = "DhcpOptions::is_empty")]
    pub options: DhcpOptions,
    /// VLAN hints per make of phone, tried before the built-in classes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vendor_classes: Vec<VendorClass>,
}

fn default_bootstrap_lease() -> Duration {
    Duration::secs(300)
}

impl Dhcp {
    /// The bootstrap scope's interface and VLAN id, when the scope is configured and a VLAN is
    /// known (`dhcp.bootstrap.vlan`, else `interfaces.lan.vlan`).
    pub fn bootstrap_scope(&self, lan: &Lan) -> Option<(&Bootstrap, String, u16)> {
        let b = self.bootstrap.as_ref()?;
        let vlan = b.vlan.or(lan.vlan)?;
        let device = b.device.clone().unwrap_or_else(|| lan.device.clone());
        Some((b, device, vlan))
    }
}

impl Default for Dhcp {
    fn default() -> Self {
        Dhcp {
            enabled: true,
            pools: Vec::new(),
            exclude: Vec::new(),
            reservations: Vec::new(),
            lease_time: Duration::secs(12 * 3600),
            decline_quarantine: Duration::secs(3600),
            options: DhcpOptions::default(),
            vendor_classes: Vec::new(),
            bootstrap: None,
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
    /// Interval of OPTIONS health checks to each provider server; a server that misses two in
    /// a row is failed over from, and failed back to once it answers again.
    pub health_interval: Duration,
    /// SIP messages per second each source on the voice LAN may send (bursts of four times
    /// that); more are dropped and logged. 0 turns the limit off.
    pub rate_limit: u32,
    /// With `transport: tls`, a PEM file of certificate authorities trusted for the
    /// provider's certificate besides the system's (e.g. a private CA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<String>,
    /// STUN server (`host` or `host:port`, port 3478 by default) asked every minute how the
    /// broadband router maps the box's SIP socket; default: the profile's, if it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stun_server: Option<String>,
}

impl Default for Sip {
    fn default() -> Self {
        Sip {
            enabled: true,
            lan_port: Port(5060),
            transport: SipTransport::Udp,
            keepalive_interval: Duration::secs(20),
            health_interval: Duration::secs(30),
            rate_limit: 100,
            tls_ca_file: None,
            stun_server: None,
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
    /// How long a released port pair rests before another call gets it, so that late packets
    /// of the old call never reach the new one. With `P` pairs per side, calls of `D` seconds
    /// can be set up at `P / (D + quarantine)` per second at most.
    pub port_quarantine: Duration,
    /// Whether established streams are moved into the kernel: once both ends of a stream are
    /// latched, the box's nftables rewrite and forward its RTP without waking the relay
    /// (RTCP stays in the relay). `auto` uses it when nftables allows, else user space.
    pub kernel_path: KernelPath,
}

/// Whether the media relay may forward established streams in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KernelPath {
    /// In the kernel when nftables and the permissions allow, else in user space (logged).
    #[default]
    Auto,
    /// Every packet through the relay process.
    Off,
}

/// Packet marks (`meta mark`) the media relay's kernel path puts on the datagrams it
/// forwards, so that the firewall's forward chain can let exactly those through:
/// `mark & MEDIA_MARK_MASK == MEDIA_MARK`.
pub const MEDIA_MARK: u32 = 0x7660_0000;
/// See [`MEDIA_MARK`]; the bits outside the mask number the forwarded directions.
pub const MEDIA_MARK_MASK: u32 = 0xfff0_0000;

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
            port_quarantine: Duration::secs(30),
            kernel_path: KernelPath::Auto,
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

/// LLDP-MED (IEEE 802.1AB with ANSI/TIA-1057) on the voice port: the box advertises itself and
/// the network policy phones should use for voice (VLAN, 802.1p priority, DSCP), so phones find
/// the voice VLAN without being touched. Sent on `interfaces.lan.device`, the untagged parent
/// port, even when the voice network is a VLAN on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Lldp {
    /// Advertise on the voice port.
    pub enabled: bool,
    /// Time between advertisements (802.1AB msgTxInterval, 1s-1h); neighbours keep an
    /// advertisement for four intervals.
    pub interval: Duration,
    /// The voice VLAN phones are told to tag with. Default: `interfaces.lan.vlan`; with neither,
    /// the policy says untagged (VLAN 0) and still carries the priority and DSCP.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4094))]
    pub vlan: Option<u16>,
    /// 802.1p priority of voice media (0-7).
    #[schemars(range(min = 0, max = 7))]
    pub voice_priority: u8,
    /// DSCP of voice media (0-63); 46 is EF.
    #[schemars(range(min = 0, max = 63))]
    pub voice_dscp: u8,
    /// Also advertise a Voice Signaling policy (SIP) on the same VLAN.
    pub signaling: bool,
    /// 802.1p priority of voice signalling (0-7).
    #[schemars(range(min = 0, max = 7))]
    pub signaling_priority: u8,
    /// DSCP of voice signalling (0-63); 24 is CS3.
    #[schemars(range(min = 0, max = 63))]
    pub signaling_dscp: u8,
}

impl Default for Lldp {
    fn default() -> Self {
        Lldp {
            enabled: true,
            interval: Duration::secs(30),
            vlan: None,
            voice_priority: 5,
            voice_dscp: 46,
            signaling: true,
            signaling_priority: 3,
            signaling_dscp: 24,
        }
    }
}
