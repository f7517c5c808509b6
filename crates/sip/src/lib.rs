//! voxgate's SIP side: an ALG-free B2BUA between the phones on the voice LAN and the provider.

pub mod message;
pub mod name_addr;
pub mod transaction;
