//! The box's public SIP address from STUN (RFC 8489), sans-IO: a Binding request from the WAN
//! SIP socket to the provider's STUN server at start and every [`INTERVAL`]; the
//! XOR-MAPPED-ADDRESS of the answer is how the broadband router maps that socket. That is known
//! before any phone registers (the other source is `received`/`rport` in the provider's
//! responses), and a change (the router lost or moved the binding) shows on the next probe.
//! The requests also keep that binding open. Messages are built and read with `stun-rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun_rs::attributes::stun::XorMappedAddress;
use stun_rs::methods::BINDING;
use stun_rs::{
    MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunMessageBuilder, TransactionId,
};

/// Time between Binding requests.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Whether a datagram is a STUN message: the two top bits zero and the magic cookie (RFC 8489
/// 6; SIP starts with a letter, a CRLF keepalive with `\r`).
pub fn is_stun(b: &[u8]) -> bool {
    b.len() >= 20 && b[0] & 0xc0 == 0 && b[4..8] == [0x21, 0x12, 0xa4, 0x42]
}

/// Probes of one STUN server.
#[derive(Debug)]
pub struct StunProbe {
    server: Option<SocketAddr>,
    next: Option<Instant>,
    pending: Option<TransactionId>,
}

impl StunProbe {
    /// Probes of `server` (none: nothing is ever sent).
    pub fn new(server: Option<SocketAddr>) -> StunProbe {
        StunProbe {
            server,
            next: None,
            pending: None,
        }
    }

    /// The server probed.
    pub fn server(&self) -> Option<SocketAddr> {
        self.server
    }

    /// Starts probing: the first request is due now.
    pub fn start(&mut self, now: Instant) {
        if self.server.is_some() && self.next.is_none() {
            self.next = Some(now);
        }
    }

    /// When the next request is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// The request to send now, if one is due.
    pub fn due(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let server = self.server?;
        if self.next.is_none_or(|t| now < t) {
            return None;
        }
        self.next = Some(now + INTERVAL);
        let msg = StunMessageBuilder::new(BINDING, MessageClass::Request).build();
        let mut buf = [0u8; 64];
        let n = MessageEncoderBuilder::default()
            .build()
            .encode(&mut buf, &msg)
            .ok()?;
        self.pending = Some(*msg.transaction_id());
        Some((server, buf[..n].to_vec()))
    }

    /// A STUN datagram from `from`: the mapped address if it is the success response to our
    /// outstanding request.
    pub fn on_message(&mut self, from: SocketAddr, b: &[u8]) -> Option<SocketAddr> {
        if Some(from) != self.server {
            return None;
        }
        let (msg, _) = MessageDecoderBuilder::default().build().decode(b).ok()?;
        if msg.method() != BINDING
            || msg.class() != MessageClass::SuccessResponse
            || Some(msg.transaction_id()) != self.pending.as_ref()
        {
            return None;
        }
        self.pending = None;
        let mapped = msg
            .get::<XorMappedAddress>()?
            .as_xor_mapped_address()
            .ok()?;
        Some(*mapped.socket_address())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's answer to `request`, mapping it to `mapped`.
    pub(crate) fn answer(request: &[u8], mapped: SocketAddr) -> Vec<u8> {
        let (req, _) = MessageDecoderBuilder::default()
            .build()
            .decode(request)
            .unwrap();
        let msg = StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
            .with_transaction_id(*req.transaction_id())
            .with_attribute(XorMappedAddress::from(mapped))
            .build();
        let mut buf = [0u8; 64];
        let n = MessageEncoderBuilder::default()
            .build()
            .encode(&mut buf, &msg)
            .unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn probes_every_interval_and_reads_the_mapped_address() {
        let t0 = Instant::now();
        let server: SocketAddr = "198.51.100.10:3478".parse().unwrap();
        let mapped: SocketAddr = "203.0.113.2:5060".parse().unwrap();
        let mut p = StunProbe::new(Some(server));
        assert_eq!(p.poll_timeout(), None);
        p.start(t0);
        let (to, req) = p.due(t0).unwrap();
        assert_eq!(to, server);
        assert!(is_stun(&req));
        assert!(p.due(t0 + Duration::from_secs(59)).is_none());
        let resp = answer(&req, mapped);
        assert!(is_stun(&resp));
        assert_eq!(
            p.on_message("192.0.2.66:3478".parse().unwrap(), &resp),
            None
        );
        assert_eq!(p.on_message(server, &resp), Some(mapped));
        assert_eq!(p.on_message(server, &resp), None, "answered once");
        let (_, again) = p.due(t0 + INTERVAL).unwrap();
        assert_ne!(again, req, "a new transaction");
        assert!(!is_stun(b"SIP/2.0 200 OK\r\n\r\n          "));
        assert!(StunProbe::new(None).due(t0).is_none());
    }
}
