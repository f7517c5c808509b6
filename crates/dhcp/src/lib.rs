//! voxgate's DHCPv4 server for the voice network.
//!
//! - [`wire`]: a strict codec for DHCP messages (client messages in, replies out).
//! - [`engine`]: the sans-IO lease engine; time is an input, the output says what to store
//!   and what to send where.
//! - [`store`]: the crash-safe lease journal under `management.state_dir`/dhcp.
//! - [`DhcpService`]: the tokio shell the daemon supervises, and [`DhcpHandle`], the lease
//!   list and release for `voxgate leases`.
//!
//! ```no_run
//! # fn wire(services: &mut Vec<std::sync::Arc<dyn supervisor::Service<config::Loaded>>>) {
//! let dhcp = dhcp::DhcpService::new();
//! let leases = dhcp.handle(); // for the control socket
//! services.push(std::sync::Arc::new(dhcp));
//! # }
//! ```

#![warn(missing_docs)]

pub mod engine;
pub mod options;
mod server;
pub mod settings;
pub mod store;
pub mod wire;

use std::io;
use std::net::Ipv4Addr;

use config::types::MacAddr;
use config::Loaded;
use supervisor::{Context, Service, ServiceFuture};

pub use engine::{Engine, LeaseInfo, LeaseStatus, Stats};
pub use server::bind;
pub use settings::Settings;

/// The `dhcp` service: serves DHCP on the voice interface while `dhcp.enabled`. A reload
/// applies new pools and options to the next exchange and keeps every lease; a change of
/// interface or state directory restarts the server with the stored leases.
///
/// [`DhcpService::bootstrap`] is the `dhcp-bootstrap` service: the same server for the
/// bootstrap scope (`dhcp.bootstrap`) on the untagged port, with its own lease store
/// (`management.state_dir`/dhcp-bootstrap), whose leases tell phones the voice VLAN.
pub struct DhcpService {
    shared: server::Shared,
    scope: server::Scope,
}

impl Default for DhcpService {
    fn default() -> Self {
        DhcpService::new()
    }
}

impl DhcpService {
    /// The voice network's server, not yet running.
    pub fn new() -> DhcpService {
        DhcpService {
            shared: Default::default(),
            scope: server::Scope::Voice,
        }
    }

    /// The bootstrap scope's server, not yet running.
    pub fn bootstrap() -> DhcpService {
        DhcpService {
            shared: Default::default(),
            scope: server::Scope::Bootstrap,
        }
    }

    /// A handle on the running server's leases, for the control socket.
    pub fn handle(&self) -> DhcpHandle {
        DhcpHandle(self.shared.clone())
    }
}

impl Service<Loaded> for DhcpService {
    fn name(&self) -> &'static str {
        match self.scope {
            server::Scope::Voice => "dhcp",
            server::Scope::Bootstrap => "dhcp-bootstrap",
        }
    }

    fn enabled(&self, config: &Loaded) -> bool {
        config.config.dhcp.enabled && self.scope.device(config).is_some()
    }

    fn run(&self, ctx: Context<Loaded>) -> ServiceFuture {
        Box::pin(server::serve(self.shared.clone(), self.scope, ctx))
    }
}

/// Why a [`DhcpHandle`] request failed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The service is disabled, stopped or restarting.
    #[error("the DHCP service is not running")]
    NotRunning,
    /// Storing the change failed; the service restarts from the stored leases.
    #[error("storing the lease change failed: {0}")]
    Store(#[from] io::Error),
}

/// Reads and changes the running server's leases; cheap to clone.
#[derive(Clone)]
pub struct DhcpHandle(server::Shared);

impl DhcpHandle {
    /// Every lease record (bound, offered, expired, released, declined), by address.
    pub fn list(&self) -> Result<Vec<LeaseInfo>, HandleError> {
        let guard = server::lock(&self.0);
        let core = guard.as_ref().ok_or(HandleError::NotRunning)?;
        Ok(core.engine.leases(server::unix_now()))
    }

    /// The server's counters.
    pub fn stats(&self) -> Result<Stats, HandleError> {
        let guard = server::lock(&self.0);
        Ok(guard
            .as_ref()
            .ok_or(HandleError::NotRunning)?
            .engine
            .stats())
    }

    /// Frees whatever the phone with this MAC holds, durably; returns the addresses freed
    /// (none if it held nothing). Meant for phones that are gone: one still on the network
    /// gets the address back at its next renewal, unless another client took it meanwhile,
    /// in which case the renewal is refused and the phone starts over.
    pub async fn release(&self, mac: MacAddr) -> Result<Vec<Ipv4Addr>, HandleError> {
        let shared = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = server::lock(&shared);
            let core = guard.as_mut().ok_or(HandleError::NotRunning)?;
            let records = core.engine.release_hardware(server::unix_now(), &mac.0);
            if let Err(e) = core.persist(&records) {
                // The engine is now ahead of the disk: drop it so the service restarts from
                // what is stored rather than serve from a state that was never saved.
                *guard = None;
                tracing::error!(error = %e, "storing a release failed");
                return Err(e.into());
            }
            tracing::info!(%mac, addresses = ?records.iter().map(|l| l.address).collect::<Vec<_>>(),
                "leases released by the operator");
            Ok(records.into_iter().map(|l| l.address).collect())
        })
        .await
        .map_err(|e| HandleError::Store(io::Error::other(e)))?
    }
}
