//! Provider profiles: a provider's published allowlist and service ports, as versioned data.
//!
//! Profiles ship as YAML files (`config/providers/*.yaml` in the source tree,
//! `/usr/share/voxgate/providers/` on the box, overridable in `/etc/voxgate/providers/`); the
//! ones in the source tree are also built into the binary so that it runs without them.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{Duration, IpCidr, Port, PortRange};

/// Directories searched for a profile by name, in order, before the built-in profiles.
pub const PROFILE_DIRS: &[&str] = &["/etc/voxgate/providers", "/usr/share/voxgate/providers"];

/// Profiles compiled into the binary: (name, YAML text).
pub const BUILTIN_PROFILES: &[(&str, &str)] = &[
    (
        "babblevoice",
        include_str!("../../../config/providers/babblevoice.yaml"),
    ),
    ("lab", include_str!("../../../config/providers/lab.yaml")),
    (
        "twilio",
        include_str!("../../../config/providers/twilio.yaml"),
    ),
];

/// A provider profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Short name, matching the file name.
    pub name: String,
    /// Human-readable provider name.
    pub title: String,
    /// Revision of the provider's published data this profile follows (e.g. a date).
    pub revision: String,
    /// Where the data comes from, for reviewers.
    pub source: String,
    /// The provider's published networks: the only destinations voice traffic may reach.
    pub networks: Vec<Network>,
    /// The services phones use at the provider.
    pub services: Vec<Service>,
    /// The SIP server phones register with.
    pub sip: ProfileSip,
    /// Connection-tracking timeouts the provider recommends.
    #[serde(default)]
    pub timeouts: Timeouts,
}

/// One published network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The network (a bare address is a single host).
    pub cidr: IpCidr,
    /// What it is, as the provider describes it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// IP transport protocol of a service.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// A service the provider offers on its networks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Short identifier, used in rule comments (e.g. `sip-udp`).
    pub name: String,
    /// Why phones need it.
    pub purpose: String,
    /// Transport protocols.
    pub protocols: Vec<Protocol>,
    /// Destination ports or ranges at the provider.
    pub ports: Vec<PortRange>,
}

/// The provider's SIP service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileSip {
    /// Registrar/proxy host; sites usually override it with their own domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// SIP port at the provider (UDP and TCP).
    pub port: Port,
    /// SIP-over-TLS port at the provider (default 5061).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<Port>,
    /// Further registrar/proxy hosts (`host` or `host:port`), tried in this order when the
    /// server stops answering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// The provider's STUN server (`host` or `host:port`, port 3478 by default), which tells
    /// the box how the broadband router maps its SIP socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stun_server: Option<String>,
}

/// Connection-tracking timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// UDP session timeout.
    pub udp: Duration,
    /// Established TCP session timeout.
    pub tcp_established: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            udp: Duration::secs(300),
            tcp_established: Duration::secs(1800),
        }
    }
}

/// Where a profile's text came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProfileOrigin {
    /// A file on disk.
    File(PathBuf),
    /// Built into the binary.
    Builtin(String),
}

impl std::fmt::Display for ProfileOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProfileOrigin::File(p) => p.display().fmt(f),
            ProfileOrigin::Builtin(n) => write!(f, "<built-in profile {n}>"),
        }
    }
}

/// Finds a profile's text: a path (absolute, or relative to the config file's directory) when
/// `reference` names a file, otherwise by name in `dirs` and then the built-in profiles.
pub fn find_profile(
    reference: &str,
    config_dir: &Path,
    dirs: &[PathBuf],
) -> Result<(ProfileOrigin, String), String> {
    if reference.contains('/') || reference.ends_with(".yaml") || reference.ends_with(".yml") {
        let path = config_dir.join(reference);
        return std::fs::read_to_string(&path)
            .map(|t| (ProfileOrigin::File(path.clone()), t))
            .map_err(|e| format!("cannot read profile {}: {e}", path.display()));
    }
    if !is_profile_name(reference) {
        return Err(format!("{reference:?} is not a profile name"));
    }
    for dir in dirs {
        let path = dir.join(format!("{reference}.yaml"));
        match std::fs::read_to_string(&path) {
            Ok(t) => return Ok((ProfileOrigin::File(path), t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read profile {}: {e}", path.display())),
        }
    }
    BUILTIN_PROFILES
        .iter()
        .find(|(n, _)| *n == reference)
        .map(|(n, t)| (ProfileOrigin::Builtin((*n).into()), (*t).to_string()))
        .ok_or_else(|| format!("no provider profile named {reference:?}"))
}

/// The names of all profiles available by name (files in `dirs` and built-in), sorted.
pub fn available_profiles(dirs: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = BUILTIN_PROFILES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    for dir in dirs {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "yaml") {
                    if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                        names.push(stem.to_string());
                    }
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

fn is_profile_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
