//! The `links` service: watches that the interfaces the configuration names (WAN, voice LAN and
//! its VLAN, management) exist in the box's network namespace and are up.
//!
//! Every other service binds to one of these interfaces, so a missing or down link is the first
//! thing a support engineer needs to see: the service fails with the interface's name, the
//! supervisor shows it as restarting with that error, and it runs again once the link is back.

use std::ffi::CString;
use std::sync::Arc;
use std::time::Duration;

use config::Loaded;
use supervisor::{Context, Service, ServiceFuture};

/// How often the links are checked.
const INTERVAL: Duration = Duration::from_secs(2);

/// The service.
pub struct Links;

/// Operational state of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Interface name.
    pub device: String,
    /// Kernel interface index.
    pub index: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
}

/// Looks an interface up by name in the current network namespace.
pub fn link_state(device: &str) -> anyhow::Result<LinkState> {
    let name = CString::new(device)?;
    // SAFETY: if_nametoindex reads a NUL-terminated string and returns 0 when there is no such
    // interface.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        anyhow::bail!("interface {device} does not exist");
    }
    let flags = std::fs::read_to_string(format!("/sys/class/net/{device}/flags"))
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok());
    Ok(LinkState {
        device: device.to_string(),
        index,
        up: flags.is_none_or(|f| f & libc::IFF_UP as u32 != 0),
    })
}

/// The interfaces a configuration needs.
pub fn wanted(loaded: &Loaded) -> Vec<String> {
    let i = &loaded.config.interfaces;
    let mut v = vec![i.wan.device.clone(), i.lan.voice_device()];
    if let Some(m) = &i.management {
        v.push(m.device.clone());
    }
    v
}

fn check(loaded: &Loaded) -> anyhow::Result<()> {
    for dev in wanted(loaded) {
        let s = link_state(&dev)?;
        if !s.up {
            anyhow::bail!("interface {dev} is down");
        }
    }
    Ok(())
}

impl Service<Loaded> for Links {
    fn name(&self) -> &'static str {
        "links"
    }

    fn enabled(&self, _: &Loaded) -> bool {
        true
    }

    fn run(&self, mut ctx: Context<Loaded>) -> ServiceFuture {
        Box::pin(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            loop {
                let loaded: Arc<Loaded> = ctx.config.borrow_and_update().clone();
                check(&loaded)?;
                tokio::select! {
                    _ = ctx.stop.cancelled() => return Ok(()),
                    _ = tick.tick() => {}
                    _ = ctx.config.changed() => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_exists_and_nonsense_does_not() {
        let lo = link_state("lo").unwrap();
        assert!(lo.index > 0);
        let e = link_state("nosuch0").unwrap_err();
        assert_eq!(e.to_string(), "interface nosuch0 does not exist");
    }
}
