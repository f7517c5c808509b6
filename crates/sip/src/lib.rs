//! voxgate's SIP side: an ALG-free B2BUA between the phones on the voice LAN and the provider.

pub mod b2bua;
pub mod call;
pub mod guard;
pub mod headers;
pub mod locate;
pub mod message;
pub mod name_addr;
mod replaces;
mod requests;
mod service;
mod stream;
pub mod stun;
pub mod transaction;
pub mod upstream;
pub use service::{SipHandle, SipService, SipState, Traced};
