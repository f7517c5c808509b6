//! The one place where the daemon's services are listed. A new service is a crate that
//! implements `supervisor::Service<config::Loaded>`; add it here, in start order, and its
//! configuration section in `crates/config` (model + checks). A service that the control
//! socket needs to reach keeps a handle in [`Handles`].

use std::sync::Arc;

use config::Loaded;
use supervisor::Service;

/// Shared state of services that operator commands act on.
#[derive(Clone, Default)]
pub struct Handles {
    /// The firewall's applied ruleset and pending confirmation.
    pub firewall: firewall::FirewallHandle,
    /// The SIP B2BUA's registrations.
    pub sip: sip::SipHandle,
}

/// Every service the daemon supervises, in start order: the firewall first, so that nothing
/// listens before the rules are in place.
pub fn all(h: &Handles) -> Vec<Arc<dyn Service<Loaded>>> {
    vec![
        Arc::new(firewall::FirewallService(h.firewall.clone())),
        Arc::new(links::Links),
        Arc::new(sip::SipService(h.sip.clone())),
    ]
}
