//! voxgate's firewall: one nftables table (`inet voxgate`) generated from the provider's
//! published allowlist and the site configuration — deterministic, commented, reviewable — plus
//! the reports reviewers sign off (`explain`, `diff`) and an atomic apply with a lockout guard.

pub mod apply;
pub mod ir;
mod policy;
pub mod report;
mod service;

pub use policy::{generate, Direction, Flow, Policy};
pub use service::{FirewallHandle, FirewallService};
