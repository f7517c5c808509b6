//! The media relay: every call's RTP and RTCP anchored at the box, so the provider sees one
//! stable public endpoint and the phones one LAN endpoint.
//!
//! - [`sdp`] reads what each party's SDP says and rewrites it to name the box's own address
//!   and ports on the other side (codecs untouched, ICE dropped, hold kept).
//! - [`PortAllocator`] hands out even/odd port pairs per side, with quarantine after release.
//! - [`Stream`] is the sans-IO per-stream state machine: symmetric latching restricted to the
//!   voice subnet (LAN) and the provider's networks (WAN), validation, quality figures.
//! - [`Relay`] is the sans-IO core over all calls: offer/answer, timeouts, reports.
//! - [`MediaHandle`] is the tokio shell the SIP service calls; [`MediaService`] runs it under
//!   the supervisor.
//!
//! The SIP side's use, one call placed by a phone:
//!
//! ```no_run
//! # fn demo(media: media::MediaHandle, invite_sdp: &[u8], ok_sdp: &[u8]) -> Result<(), media::MediaError> {
//! use media::Side;
//! // The phone's INVITE: its offer goes on to the provider naming the box's WAN ports.
//! let to_provider = media.offer("call-1", Side::Lan, invite_sdp)?;
//! // The provider's 200 OK: its answer goes back to the phone naming the box's LAN ports.
//! let to_phone = media.answer("call-1", Side::Wan, ok_sdp)?;
//! // BYE from either side: ports freed, final figures logged and returned (or, with streams
//! // in the kernel, logged and sent as MediaEvent::Released once it has let go of them).
//! let report = media.release("call-1");
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod kernel;
mod nft;
pub mod packet;
mod ports;
mod relay;
pub mod rtcp;
pub mod sdp;
mod service;
mod settings;
mod shell;
pub mod stats;
mod stream;
mod sys;

use serde::{Deserialize, Serialize};

pub use ports::PortAllocator;
pub use relay::{CallReport, CallState, EndReason, MediaEvent, Opened, Outcome, Relay};
pub use service::MediaService;
pub use settings::{MediaSettings, TOS_EF};
pub use shell::{MediaHandle, Release};
pub use stream::{Forward, LegReport, SharedStream, Socket, Stream, StreamReport};
pub use sys::interface_ipv4;

/// One side of the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Towards the phones (the voice LAN).
    Lan = 0,
    /// Towards the provider (the WAN).
    Wan = 1,
}

impl Side {
    /// The opposite side.
    pub fn other(self) -> Side {
        match self {
            Side::Lan => Side::Wan,
            Side::Wan => Side::Lan,
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Lan => "LAN",
            Side::Wan => "WAN",
        })
    }
}

/// Why the relay refused an offer, answer or start.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The SDP does not parse.
    #[error("bad SDP: {0}")]
    Sdp(String),
    /// Every port pair of the side's range is in use or in quarantine.
    #[error("no free media port pair on the {0} side")]
    PortsExhausted(Side),
    /// A port could not be bound for a reason other than being taken.
    #[error("cannot bind media port {port} on the {side} side: {source}")]
    Bind {
        /// The side.
        side: Side,
        /// The RTP port of the pair.
        port: u16,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// No such call.
    #[error("unknown call {0}")]
    UnknownCall(String),
    /// An answer with no offer from the other side pending.
    #[error("call {0} has no offer from the other side to answer")]
    NoOffer(String),
    /// An answer whose media lines do not match the offer's (RFC 3264 section 6).
    #[error("the answer has {answered} media lines but the offer had {offered}")]
    MediaCount {
        /// Media lines in the offer.
        offered: usize,
        /// Media lines in the answer.
        answered: usize,
    },
    /// The WAN address is not known (no static address, and the interface has none yet).
    #[error("the WAN interface {0:?} has no IPv4 address")]
    NoWanAddress(String),
    /// The media service is not running.
    #[error("the media relay is not running")]
    NotRunning,
    /// The media thread could not be started.
    #[error("cannot start the media thread: {0}")]
    Thread(std::io::Error),
}
