//! Wire types: requests, responses and the status the daemon reports.

use serde::{Deserialize, Serialize};

/// Version of the request/response protocol; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request line the daemon accepts, so that a confused client cannot exhaust its
/// memory.
pub const MAX_LINE: usize = 1 << 20;

/// Longest reply line a client accepts: a busy box's `calls` or `regs` runs to megabytes
/// (thousands of calls, tens of thousands of registrations), and it is the operator's own
/// daemon talking.
pub const MAX_REPLY: usize = 256 << 20;

/// What a client asks the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Version, uptime, configuration and the state of every service.
    Status,
    /// Re-read the configuration file, as SIGHUP does.
    Reload,
    /// Re-read the configuration and apply its firewall; with `confirm_secs`, restore the
    /// previous ruleset unless [`Request::RulesConfirm`] arrives in time.
    RulesApply {
        /// Seconds to wait for confirmation before rolling back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confirm_secs: Option<u64>,
    },
    /// Keep the ruleset applied with a confirmation deadline.
    RulesConfirm,
    /// The phones' registrations relayed to the provider.
    Regs,
    /// The DHCP leases of the voice network.
    Leases,
    /// Free the lease(s) of one phone.
    LeaseRelease {
        /// The phone's MAC address.
        mac: String,
    },
    /// Calls in progress.
    Calls,
    /// A live trace of SIP messages (a stream of [`Reply::Trace`] until the client leaves).
    SipTrace {
        /// Only messages containing this text (a number, a Call-ID, an address).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
    },
}

/// A request as it travels: the command and the protocol version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version of the sender.
    pub v: u32,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// The daemon's answer: `{"v":1,"ok":true,"result":{...}}` or
/// `{"v":1,"ok":false,"error":"...","details":[...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version of the daemon.
    pub v: u32,
    /// Whether the request succeeded.
    pub ok: bool,
    /// Command-specific result, when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Reply>,
    /// One line saying what went wrong, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Further lines (e.g. every configuration error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// Command-specific results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// Answer to [`Request::Status`].
    Status(Status),
    /// Answer to [`Request::Reload`].
    Reloaded(ReloadOutcome),
    /// Answer to [`Request::RulesApply`] and [`Request::RulesConfirm`].
    Rules(FirewallState),
    /// Answer to [`Request::Leases`].
    Leases {
        /// Every lease the server remembers.
        leases: Vec<LeaseEntry>,
    },
    /// Answer to [`Request::LeaseRelease`]: the addresses freed.
    Released {
        /// Freed addresses.
        addresses: Vec<String>,
    },
    /// Answer to [`Request::Calls`].
    Calls {
        /// One entry per call.
        calls: Vec<serde_json::Value>,
    },
    /// One message of a [`Request::SipTrace`] stream.
    Trace(TraceLine),
    /// Answer to [`Request::Regs`].
    Regs {
        /// One entry per address of record.
        registrations: Vec<RegistrationInfo>,
    },
}

/// One SIP message as the box received or sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceLine {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `in` (received by the box) or `out` (sent by the box).
    pub direction: String,
    /// `lan` (phones) or `wan` (provider).
    pub side: String,
    /// The other party's transport address.
    pub peer: String,
    /// The message as on the wire (lossy UTF-8).
    pub message: String,
}

/// One DHCP lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEntry {
    /// The address.
    pub address: String,
    /// The phone's MAC address.
    pub mac: String,
    /// Host name the phone sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Vendor class (option 60) the phone sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// offered, bound, expired, released or declined.
    pub state: String,
    /// Unix time the lease ends.
    pub expires: u64,
    /// `voice` (the voice network) or `bootstrap` (the untagged port, telling phones the
    /// voice VLAN).
    #[serde(default)]
    pub scope: String,
}

/// One phone's registration as the box relays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationInfo {
    /// Address of record.
    pub aor: String,
    /// The phone's Contact URI.
    pub phone_contact: String,
    /// The phone's transport address (where its requests come from).
    pub phone_addr: String,
    /// `udp` or `tcp` (requests to the phone use its connection).
    #[serde(default)]
    pub phone_transport: String,
    /// The Contact the box registered upstream.
    pub upstream_contact: String,
    /// The provider server the registration was last sent to.
    #[serde(default)]
    pub upstream: String,
    /// registered, challenged, pending, failed, unregistered or expired.
    pub state: String,
    /// Seconds until the upstream registration expires.
    pub expires_in: u64,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The firewall's state as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallState {
    /// A change awaits `voxgate rules confirm`.
    pub pending_confirm: bool,
    /// What happened last (applied, confirmed, rolled back, ...).
    pub last_event: String,
}

/// The daemon's state, as `voxgate status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Daemon version.
    pub version: String,
    /// Daemon process id.
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Site name from the configuration.
    pub site: String,
    /// The configuration in force.
    pub config: ConfigStatus,
    /// Every service, in start order.
    pub services: Vec<ServiceStatus>,
    /// The firewall's last event, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallState>,
    /// The SIP side, while the service runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip: Option<SipStatus>,
}

/// The SIP side at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipStatus {
    /// The provider's servers in order of preference.
    pub upstreams: Vec<UpstreamStatus>,
    /// The box's public SIP address as the provider reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address: Option<String>,
    /// Phones registered upstream.
    pub registrations: usize,
    /// Calls in progress.
    pub calls: usize,
    /// Subscriptions held.
    pub subscriptions: usize,
    /// Messages dropped by access control or parsing.
    pub dropped: u64,
}

/// One provider server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    /// Address and port.
    pub address: String,
    /// `active`, `standby` or `down`.
    pub state: String,
    /// Seconds since it last answered a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ok_secs: Option<u64>,
    /// Why it is (or last was) down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The configuration in force and the last reload attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// File it was read from.
    pub path: String,
    /// SHA-256 of the configuration and profile text.
    pub digest: String,
    /// Provider profile name and revision.
    pub profile: String,
    /// Seconds since it was loaded.
    pub loaded_secs_ago: u64,
    /// Errors of the last rejected reload, if the last attempt failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,
}

/// What a supervised service is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Started and has not failed since.
    Running,
    /// Failed; waiting to start again.
    Restarting,
    /// Turned off in the configuration.
    Disabled,
    /// Stopped because the daemon is shutting down.
    Stopped,
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServiceState::Running => "running",
            ServiceState::Restarting => "restarting",
            ServiceState::Disabled => "disabled",
            ServiceState::Stopped => "stopped",
        })
    }
}

/// One service's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service name, e.g. `dhcp`.
    pub name: String,
    /// Current state.
    pub state: ServiceState,
    /// Seconds in the current state.
    pub since_secs: u64,
    /// How often it has been restarted after failing.
    pub restarts: u32,
    /// The most recent failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Result of a reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    /// Digest of the configuration now in force.
    pub digest: String,
    /// Whether it differs from the one before.
    pub changed: bool,
}

impl Response {
    /// A successful response.
    pub fn ok(result: Reply) -> Response {
        Response {
            v: PROTOCOL_VERSION,
            ok: true,
            result: Some(result),
            error: None,
            details: Vec::new(),
        }
    }
    /// A failed response.
    pub fn err(error: impl Into<String>, details: Vec<String>) -> Response {
        Response {
            v: PROTOCOL_VERSION,
            ok: false,
            result: None,
            error: Some(error.into()),
            details,
        }
    }
}
