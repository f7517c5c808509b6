//! The one place where the daemon's services are listed. A new service is a crate that
//! implements `supervisor::Service<config::Loaded>`; add it here, in start order, and its
//! configuration section in `crates/config` (model + checks).

use std::sync::Arc;

use config::Loaded;
use supervisor::Service;

/// Every service the daemon supervises, in start order.
pub fn all() -> Vec<Arc<dyn Service<Loaded>>> {
    vec![Arc::new(links::Links)]
}
