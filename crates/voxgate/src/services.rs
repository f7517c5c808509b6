//! The one place where the daemon's services are listed. A new service is a crate that
//! implements `supervisor::Service<config::Loaded>`; add it here, in start order, and its
//! configuration section in `crates/config` (model + checks). A service that the control
//! socket needs to reach keeps a handle in [`Handles`].

use std::sync::Arc;

use config::Loaded;
use supervisor::Service;

/// Shared state of services that operator commands act on.
#[derive(Clone)]
pub struct Handles {
    /// The DHCP server's leases.
    pub dhcp: dhcp::DhcpHandle,
    /// The bootstrap scope's leases (phones learning the voice VLAN).
    pub dhcp_bootstrap: dhcp::DhcpHandle,
    /// The firewall's applied ruleset and pending confirmation.
    pub firewall: firewall::FirewallHandle,
    /// The media relay's calls and figures.
    pub media: media::MediaHandle,
    /// The SIP B2BUA's registrations.
    pub sip: sip::SipHandle,
}

/// Every service the daemon supervises, in start order (the firewall first, so that nothing
/// listens before the rules are in place), with the handles operator commands use.
pub fn all() -> (Vec<Arc<dyn Service<Loaded>>>, Handles) {
    let dhcp = dhcp::DhcpService::new();
    let bootstrap = dhcp::DhcpService::bootstrap();
    let media = media::MediaService::new(media::MediaHandle::new());
    let h = Handles {
        dhcp: dhcp.handle(),
        dhcp_bootstrap: bootstrap.handle(),
        firewall: Default::default(),
        media: media.handle(),
        sip: Default::default(),
    };
    let services: Vec<Arc<dyn Service<Loaded>>> = vec![
        Arc::new(firewall::FirewallService(h.firewall.clone())),
        Arc::new(links::Links),
        Arc::new(lldp::LldpService),
        Arc::new(dhcp),
        Arc::new(bootstrap),
        Arc::new(media),
        Arc::new(sip::SipService {
            handle: h.sip.clone(),
            media: Arc::new(MediaLink(h.media.clone())),
        }),
    ];
    (services, h)
}

/// Connects the SIP B2BUA to the media relay: offers and answers rewritten by the relay, and
/// calls the relay ends (no media) reported back so that SIP ends both legs.
struct MediaLink(media::MediaHandle);

fn media_side(s: sip::transaction::Side) -> media::Side {
    match s {
        sip::transaction::Side::Lan => media::Side::Lan,
        sip::transaction::Side::Wan => media::Side::Wan,
    }
}

impl sip::b2bua::MediaControl for MediaLink {
    fn offer(
        &mut self,
        call: &str,
        from: sip::transaction::Side,
        sdp: &[u8],
    ) -> Result<Vec<u8>, String> {
        self.0
            .offer(call, media_side(from), sdp)
            .map_err(|e| e.to_string())
    }
    fn answer(
        &mut self,
        call: &str,
        from: sip::transaction::Side,
        sdp: &[u8],
    ) -> Result<Vec<u8>, String> {
        self.0
            .answer(call, media_side(from), sdp)
            .map_err(|e| e.to_string())
    }
    fn release(&mut self, call: &str) {
        self.0.release(call);
    }
    fn public_address(&mut self, ip: std::net::Ipv4Addr) {
        self.0.set_public_address(Some(ip));
    }
}

impl sip::b2bua::MediaProvider for MediaLink {
    fn control(&self) -> Box<dyn sip::b2bua::MediaControl> {
        Box::new(MediaLink(self.0.clone()))
    }
    fn timeouts(&self) -> tokio::sync::mpsc::UnboundedReceiver<String> {
        let mut events = self.0.subscribe();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(media::MediaEvent::Ended { call_id, .. }) => {
                        if tx.send(call_id).is_err() {
                            return;
                        }
                    }
                    // The final figures of a call SIP released itself (logged by the relay).
                    Ok(media::MediaEvent::Released { .. }) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "media events lost");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        rx
    }
}
