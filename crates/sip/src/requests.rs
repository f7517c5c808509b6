//! Out-of-dialog requests other than REGISTER and INVITE, relayed like calls: each is two
//! dialogs (or two transactions), the provider's leg with the box's own Call-ID, tags, Via and
//! Contact. SUBSCRIBE (busy-lamp field, message-summary) and out-of-dialog REFER create a
//! subscription whose NOTIFYs and refreshes then travel as in-dialog requests; MESSAGE,
//! PUBLISH and unsolicited NOTIFY (e.g. message waiting, RFC 3842) live only as long as their
//! transaction. Requests from the provider reach the phone registered under the contact token
//! in their Request-URI, exactly as inbound calls do.

use std::time::{Duration, Instant};

use ezk_sip_types::Name;

use crate::b2bua::{copy_except, random_token, B2bua};
use crate::call::{
    build_request, header, reason_of, relayed, Call, Kind, Leg, Purpose, State, PER_LEG_RESPONSE,
};
use crate::message::{response, Message};
use crate::name_addr;
use crate::transaction::{Peer, ServerTx};

/// How long past its expiry a subscription is kept for a late refresh or final NOTIFY, and how
/// long a challenged request waits for its retry with credentials (64 × T1, timer F).
const GRACE: Duration = Duration::from_secs(32);

/// Subscriptions last this long when neither side names an expiry (RFC 6665 leaves the
/// default to the event package; message-summary and dialog use 3600 s).
const DEFAULT_EXPIRES: u64 = 3600;

fn expires(msg: &Message) -> Option<u64> {
    header(msg, Name::EXPIRES).and_then(|e| e.trim().parse().ok())
}

/// Methods whose request creates a subscription dialog.
fn creates_dialog(method: &str) -> bool {
    method == "SUBSCRIBE" || method == "REFER"
}

impl B2bua {
    /// A new out-of-dialog request from `from`: relayed to the other side on a fresh leg.
    pub(crate) fn outside_request(
        &mut self,
        now: Instant,
        tx: ServerTx,
        msg: &Message,
        from: Peer,
    ) {
        let addrs = self.addrs();
        let method = msg.method().map(|m| m.to_string()).unwrap_or_default();
        let from_na = header(msg, Name::FROM).and_then(|v| name_addr::parse(&v));
        let to_na = header(msg, Name::TO).and_then(|v| name_addr::parse(&v));
        let (Some(from_na), Some(to_na)) = (from_na, to_na) else {
            self.tx
                .respond(now, tx, response(msg, 400, "Bad From or To", None));
            return;
        };
        let (peer, ruri, callee_from, callee_to) = match self
            .route(now, msg, from, &from_na, &to_na)
        {
            Ok(r) => r,
            Err((code, reason)) => {
                tracing::info!(%method, from = %from.addr, code, "out-of-dialog request refused");
                self.tx
                    .respond(now, tx, response(msg, code, reason, Some(&random_token(8))));
                return;
            }
        };
        let caller = Leg::of_request(msg, from, &from_na, &to_na);
        let callee = Leg::towards(peer, &ruri, callee_from, callee_to);
        let with_contact = creates_dialog(&method) || method == "NOTIFY";
        let Some(req) = build_request(
            &method,
            &ruri,
            &callee,
            1,
            addrs.via(peer),
            with_contact.then(|| addrs.contact(peer)).as_deref(),
            &relayed(&self.hider(), msg, peer.side),
            &msg.body,
        ) else {
            self.tx.respond(
                now,
                tx,
                response(msg, 400, "Bad Request-URI", Some(&caller.local_tag)),
            );
            return;
        };
        let id = self.calls.next_id();
        let key = format!("{}-{id}", method.to_ascii_lowercase());
        let kind = if creates_dialog(&method) {
            Kind::Subscription
        } else {
            Kind::Request
        };
        tracing::info!(%key, from = %from_na.uri, to = %ruri, direction = ?from.side, event = header(msg, Name::EVENT).unwrap_or_default(), "out-of-dialog request relayed");
        let ctx = self.tx.request(now, req.clone(), peer);
        let call = Call::early(kind, key, &from_na, &to_na, caller, callee, now);
        self.calls.open(
            id,
            ctx,
            Purpose::Outside { server: tx },
            Call {
                expires_at: Some(now + GRACE),
                invite: Some(req),
                caller_invite: Some((tx, msg.clone())),
                ..call
            },
        );
    }

    /// The same request again on its Call-ID without a To tag: the retry with credentials
    /// after a 401/407 goes out on the same upstream leg with the next CSeq.
    pub(crate) fn outside_resend(&mut self, now: Instant, id: u64, tx: ServerTx, msg: &Message) {
        let addrs = self.addrs();
        let hider = self.hider();
        let method = msg.method().map(|m| m.to_string()).unwrap_or_default();
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        if c.state != State::Challenged || c.kind == Kind::Call {
            let mut r = response(msg, 500, "Request Pending", Some(&c.caller.local_tag));
            r.headers.insert(Name::RETRY_AFTER, "1");
            self.tx.respond(now, tx, r);
            return;
        }
        c.callee.cseq += 1;
        let with_contact = creates_dialog(&method) || method == "NOTIFY";
        let Some(req) = build_request(
            &method,
            &c.callee.remote_target.clone(),
            &c.callee,
            c.callee.cseq,
            addrs.via(c.callee.peer),
            with_contact
                .then(|| addrs.contact(c.callee.peer))
                .as_deref(),
            &relayed(&hider, msg, c.callee.side),
            &msg.body,
        ) else {
            return;
        };
        c.state = State::Early;
        c.expires_at = Some(now + GRACE);
        c.invite = Some(req.clone());
        c.caller_invite = Some((tx, msg.clone()));
        let peer = c.callee.peer;
        let ctx = self.tx.request(now, req, peer);
        self.calls
            .by_client
            .insert(ctx, (id, Purpose::Outside { server: tx }));
    }

    /// The far side's final answer to a relayed out-of-dialog request.
    pub(crate) fn outside_response(
        &mut self,
        now: Instant,
        id: u64,
        server: ServerTx,
        msg: Message,
    ) {
        let addrs = self.addrs();
        let hider = self.hider();
        let code = msg.code().unwrap_or(500);
        if code < 200 {
            return;
        }
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        let Some((_, req)) = c.caller_invite.take() else {
            return;
        };
        let mut r = response(&req, code, &reason_of(&msg), Some(&c.caller.local_tag));
        copy_except(&msg.headers, &mut r.headers, PER_LEG_RESPONSE);
        if c.caller.side == crate::transaction::Side::Wan {
            hider.hide_lan_headers(&mut r.headers);
        }
        r.body = msg.body.clone();
        let key = c.key.clone();
        match (code, c.kind) {
            (200..=299, Kind::Subscription) => {
                c.callee.learn_route_set(&msg);
                for route in &c.caller.route_set {
                    r.headers.insert(Name::RECORD_ROUTE, route.clone());
                }
                c.callee.remote_tag = header(&msg, Name::TO)
                    .and_then(|t| name_addr::parse(&t))
                    .and_then(|t| t.tag().map(str::to_string));
                if let Some(t) = header(&msg, Name::CONTACT).and_then(|v| name_addr::parse(&v)) {
                    c.callee.remote_target = t.uri;
                }
                let secs = expires(&msg)
                    .or_else(|| expires(&req))
                    .unwrap_or(DEFAULT_EXPIRES);
                c.state = State::Confirmed;
                c.answered = Some(now);
                c.expires_at = Some(now + Duration::from_secs(secs) + GRACE);
                r.headers
                    .insert(Name::CONTACT, format!("<{}>", addrs.contact(c.caller.peer)));
                tracing::info!(%key, expires = secs, "subscription accepted");
                self.tx.respond(now, server, r);
            }
            (401 | 407, _) => {
                c.state = State::Challenged;
                c.expires_at = Some(now + GRACE);
                self.tx.respond(now, server, r);
            }
            _ => {
                if code >= 300 {
                    tracing::info!(%key, code, reason = %reason_of(&msg), "out-of-dialog request refused by the far side");
                }
                self.tx.respond(now, server, r);
                self.calls.remove(id);
            }
        }
    }

    /// A relayed in-dialog request ended with `msg`: NOTIFY `terminated`, 481 or a refresh
    /// change a subscription's life.
    pub(crate) fn subscription_progress(
        &mut self,
        now: Instant,
        id: u64,
        req: &Message,
        msg: &Message,
    ) {
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        if c.kind != Kind::Subscription {
            return;
        }
        let code = msg.code().unwrap_or(500);
        let method = req.method().map(|m| m.to_string()).unwrap_or_default();
        let terminated = method == "NOTIFY"
            && header(req, Name::SUBSCRIPTION_STATE)
                .is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("terminated"));
        if terminated || code == 481 {
            tracing::info!(key = %c.key, "subscription ended");
            self.calls.remove(id);
            return;
        }
        if method == "SUBSCRIBE" && (200..300).contains(&code) {
            let secs = expires(msg).or_else(|| expires(req)).unwrap_or(0);
            c.expires_at = Some(now + Duration::from_secs(secs) + GRACE);
        }
    }

    /// Forgets subscriptions that lapsed and requests that were challenged and never retried.
    pub(crate) fn sweep_outside(&mut self, now: Instant) {
        // At most once a second: it looks at every pair of dialogs.
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        let lapsed: Vec<u64> = self
            .calls
            .calls
            .iter()
            .filter(|(_, c)| c.kind != Kind::Call && c.expires_at.is_some_and(|t| t <= now))
            .filter(|(_, c)| c.caller_invite.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in lapsed {
            if let Some(c) = self.calls.remove(id) {
                tracing::info!(key = %c.key, "subscription lapsed");
            }
        }
    }

    /// Subscriptions held (for status).
    pub fn subscriptions(&self) -> usize {
        self.calls
            .calls
            .values()
            .filter(|c| c.kind == Kind::Subscription)
            .count()
    }
}
