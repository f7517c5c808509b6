//! voxgate's LLDP-MED agent: tells the phones on the voice port which VLAN, 802.1p priority
//! and DSCP to use for voice (IEEE 802.1AB LLDP with the ANSI/TIA-1057 LLDP-MED Network Policy
//! TLV), so they find the voice VLAN without being touched.
//!
//! - [`frame`]: LLDPDU encoding and parsing.
//! - [`agent`]: the sans-IO agent (time in, frames and next wake-up out).
//! - [`LldpService`]: the tokio shell the daemon supervises, sending raw Ethernet frames on the
//!   untagged parent port (`interfaces.lan.device`) and listening to the neighbours there.

#![warn(missing_docs)]

pub mod agent;
pub mod frame;
mod shell;

use std::net::Ipv4Addr;

use config::Loaded;
use supervisor::{Context, Service, ServiceFuture};

pub use agent::{Agent, NeighbourInfo};
pub use frame::{Advert, Application, NetworkPolicy};

/// The `lldp` service: advertises while `lldp.enabled`.
#[derive(Default)]
pub struct LldpService;

impl Service<Loaded> for LldpService {
    fn name(&self) -> &'static str {
        "lldp"
    }

    fn enabled(&self, config: &Loaded) -> bool {
        config.config.lldp.enabled
    }

    fn run(&self, ctx: Context<Loaded>) -> ServiceFuture {
        Box::pin(shell::run(ctx))
    }
}

/// The network policies a configuration advertises: Voice, and Voice Signaling when
/// `lldp.signaling`, on `lldp.vlan` or else `interfaces.lan.vlan`, tagged; with no VLAN,
/// untagged (VLAN 0) with the configured priority and DSCP.
pub fn policies(c: &config::Config) -> Vec<NetworkPolicy> {
    let l = &c.lldp;
    let vlan = l.vlan.or(c.interfaces.lan.vlan);
    let policy = |application, priority, dscp| NetworkPolicy {
        application,
        unknown: false,
        tagged: vlan.is_some(),
        vlan: vlan.unwrap_or(0),
        priority,
        dscp,
    };
    let mut v = vec![policy(Application::Voice, l.voice_priority, l.voice_dscp)];
    if l.signaling {
        v.push(policy(
            Application::VoiceSignaling,
            l.signaling_priority,
            l.signaling_dscp,
        ));
    }
    v
}

/// The advertisement of a configuration on a port with this MAC address and ifindex.
pub fn advert(c: &config::Config, mac: [u8; 6], ifindex: u32) -> Advert {
    let box_addr: Ipv4Addr = c.interfaces.lan.address.addr();
    Advert {
        mac,
        port: c.interfaces.lan.device.clone(),
        port_description: "voxgate voice port".into(),
        system_name: c.site.name.clone(),
        system_description: format!("voxgate {}", env!("CARGO_PKG_VERSION")),
        management: Some((box_addr, ifindex)),
        policies: policies(c),
    }
}

#[cfg(test)]
mod tests;
