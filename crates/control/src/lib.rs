//! The control socket between the running daemon and the `voxgate` CLI.
//!
//! One request per line, one response per line, JSON, each carrying the protocol version `v`.
//! A client of another version gets a clear error instead of a misread answer.

mod client;
mod proto;
mod server;

pub use client::{request, stream, ClientError};
pub use proto::*;
pub use server::{bind, serve, Handler};
