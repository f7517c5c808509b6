//! Calls through the B2BUA: every dialog is two dialogs. The leg towards the provider has its
//! own Call-ID, tags, Via and Contact; the leg towards the phone mirrors it. SDP on each leg is
//! rewritten by the media relay ([`crate::b2bua::MediaControl`]) so that media is anchored at
//! the box. Handled: INVITE (with early media and auth challenges), ACK, BYE from either side,
//! CANCEL (including the race with 200), re-INVITE/UPDATE (hold, resume, codec change) and any
//! other in-dialog request, which is relayed to the other leg.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use ezk_sip_types::msg::{MessageLine, StatusLine};
use ezk_sip_types::{Method, Name};
use serde::Serialize;

use crate::b2bua::{copy_except, random_token, B2bua};
use crate::message::{response, Message};
use crate::name_addr;
use crate::replaces::{self, Replaces};
use crate::transaction::{ClientTx, Peer, ServerTx, Side};

/// Headers a request does not carry across the B2BUA: those naming transport, routing or
/// dialog state, regenerated for each leg. Everything else (including headers the box does
/// not know) passes through unchanged; towards the provider with LAN addresses hidden.
pub(crate) const PER_LEG: &[&str] = &[
    "via",
    "route",
    "record-route",
    "from",
    "to",
    "call-id",
    "cseq",
    "contact",
    "max-forwards",
    "content-length",
    "path",
    "service-route",
    "proxy-require",
];

/// Headers a response does not carry back (regenerated for the near leg); the rest passes.
pub(crate) const PER_LEG_RESPONSE: &[&str] = &[
    "via",
    "route",
    "record-route",
    "from",
    "to",
    "call-id",
    "cseq",
    "contact",
    "content-length",
    "path",
    "service-route",
];

/// One side of a call: a dialog with one party.
#[derive(Debug, Clone)]
pub(crate) struct Leg {
    pub(crate) side: Side,
    pub(crate) call_id: String,
    pub(crate) local_tag: String,
    pub(crate) remote_tag: Option<String>,
    /// Our From/To URI part on this leg (name-addr without tag).
    pub(crate) local_uri: String,
    /// The party's From/To URI part (name-addr without tag).
    pub(crate) remote_uri: String,
    /// Request-URI for in-dialog requests (the party's Contact).
    pub(crate) remote_target: String,
    /// Where the party's messages go.
    pub(crate) peer: Peer,
    /// Our CSeq counter on this leg.
    pub(crate) cseq: u32,
    /// The dialog's route set (RFC 3261 12.1): the proxies that record-routed, as Route values
    /// in the order our requests on this leg carry them. Empty on legs to phones.
    pub(crate) route_set: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum State {
    /// INVITE sent, no final response yet.
    Early,
    /// Challenged by the provider: the phone will resend its INVITE with credentials.
    Challenged,
    /// Answered.
    Confirmed,
    /// Cancelled by the caller before an answer.
    Cancelled,
    /// BYE sent or received.
    Ended,
}

impl Leg {
    /// The leg towards the party that sent `msg` (its dialog, with a new tag of ours).
    pub(crate) fn of_request(
        msg: &Message,
        from: Peer,
        from_na: &name_addr::NameAddr,
        to_na: &name_addr::NameAddr,
    ) -> Leg {
        let contact = header(msg, Name::CONTACT).and_then(|v| name_addr::parse(&v));
        Leg {
            side: from.side,
            call_id: msg.call_id().unwrap_or_default(),
            local_tag: random_token(10),
            remote_tag: from_na.tag().map(str::to_string),
            local_uri: name_addr_text(to_na),
            remote_uri: name_addr_text(from_na),
            remote_target: contact
                .map(|c| c.uri)
                .unwrap_or_else(|| from_na.uri.clone()),
            peer: from,
            cseq: 0,
            // As the UAS: the request's Record-Route, in order (12.1.1).
            route_set: record_route(msg),
        }
    }

    /// A new leg towards `peer` at `ruri`, with its own Call-ID and tag.
    pub(crate) fn towards(peer: Peer, ruri: &str, local_uri: String, remote_uri: String) -> Leg {
        Leg {
            side: peer.side,
            call_id: format!("{}@voxgate", random_token(20)),
            local_tag: random_token(10),
            remote_tag: None,
            local_uri,
            remote_uri,
            remote_target: ruri.to_string(),
            peer,
            cseq: 1,
            route_set: Vec::new(),
        }
    }

    /// As the UAC, the route set of a dialog-creating response: its Record-Route, reversed
    /// (RFC 3261 12.1.2).
    pub(crate) fn learn_route_set(&mut self, response: &Message) {
        self.route_set = record_route(response).into_iter().rev().collect();
    }
}

impl Call {
    /// A pair of dialogs just opened (the request out, no answer yet).
    pub(crate) fn early(
        kind: Kind,
        key: String,
        from_na: &name_addr::NameAddr,
        to_na: &name_addr::NameAddr,
        caller: Leg,
        callee: Leg,
        now: Instant,
    ) -> Call {
        Call {
            kind,
            expires_at: None,
            key,
            from: from_na.uri.clone(),
            to: to_na.uri.clone(),
            caller,
            callee,
            state: State::Early,
            started: now,
            answered: None,
            invite: None,
            caller_invite: None,
            ack: None,
            early_answer: None,
            end_reason: None,
            caller_ruri: String::new(),
        }
    }
}

impl Call {
    /// The leg towards `side`'s party, then the other one.
    pub(crate) fn legs_from(&self, side: Side) -> (&Leg, &Leg) {
        if self.caller.side == side {
            (&self.caller, &self.callee)
        } else {
            (&self.callee, &self.caller)
        }
    }
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Early => "early",
            State::Challenged => "challenged",
            State::Confirmed => "confirmed",
            State::Cancelled => "cancelled",
            State::Ended => "ended",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Purpose {
    /// The initial INVITE relayed to `to` side; answers go to `server`.
    Invite { server: ServerTx },
    /// A relayed in-dialog request; answers go to `server`.
    Relay { server: ServerTx, sdp_offer: bool },
    /// Our own request (BYE, CANCEL, ACK-less cleanup); answers are absorbed.
    Own,
    /// A relayed out-of-dialog request other than INVITE (SUBSCRIBE, MESSAGE, NOTIFY, ...);
    /// answers go to `server`.
    Outside { server: ServerTx },
}

/// What a pair of dialogs carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A call (INVITE dialog), with media.
    Call,
    /// A subscription (SUBSCRIBE dialog: presence/BLF, message-summary, ...).
    Subscription,
    /// A request outside any dialog (MESSAGE, unsolicited NOTIFY, PUBLISH): the pair exists
    /// until its final response.
    Request,
}

#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) kind: Kind,
    /// When a subscription lapses unless refreshed.
    pub(crate) expires_at: Option<Instant>,
    pub(crate) key: String,
    /// The leg the call came from.
    pub(crate) caller: Leg,
    /// The leg the call went to.
    pub(crate) callee: Leg,
    pub(crate) state: State,
    pub(crate) started: Instant,
    pub(crate) answered: Option<Instant>,
    /// The callee-side INVITE we sent, for CANCEL and for the re-sent INVITE after a challenge.
    pub(crate) invite: Option<Message>,
    /// The caller's pending INVITE transaction and request.
    pub(crate) caller_invite: Option<(ServerTx, Message)>,
    /// Our ACK for the callee's 2xx, re-sent on 2xx retransmissions.
    pub(crate) ack: Option<Vec<u8>>,
    /// The early answer already sent to the caller (a 2xx after a 183 repeats it).
    pub(crate) early_answer: Option<Vec<u8>>,
    /// The Request-URI of the caller's INVITE: a provider that forks one INVITE to several
    /// of the box's registrations (a shared line) sends one Call-ID to several Request-URIs.
    pub(crate) caller_ruri: String,
    /// The caller's number and the callee's, for status.
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) end_reason: Option<String>,
}

/// Information on one call for `voxgate calls`.
#[derive(Debug, Clone, Serialize)]
pub struct CallInfo {
    /// Media key (also the call's name in logs).
    pub key: String,
    /// `outbound` (phone to provider) or `inbound`.
    pub direction: String,
    /// Caller URI.
    pub from: String,
    /// Callee URI.
    pub to: String,
    /// early, challenged, confirmed, cancelled or ended.
    pub state: String,
    /// Seconds since the INVITE.
    pub age_secs: u64,
    /// Seconds since the answer.
    pub talk_secs: u64,
    /// Call-ID on the phone's leg.
    pub lan_call_id: String,
    /// Call-ID on the provider's leg.
    pub wan_call_id: String,
}

/// Every call the B2BUA holds.
#[derive(Default)]
pub(crate) struct Calls {
    pub(crate) next: u64,
    pub(crate) calls: HashMap<u64, Call>,
    /// Calls by (side, Call-ID) of one of their legs: one, unless the provider forked an
    /// INVITE to several of the box's registrations (see [`Calls::find`]).
    pub(crate) by_dialog: HashMap<(Side, String), Vec<u64>>,
    pub(crate) by_client: HashMap<ClientTx, (u64, Purpose)>,
}

impl Calls {
    /// The dialog a phone or the provider names (a `Replaces` received on `from`'s side) as
    /// the party on the box's other leg of the same call knows it: that leg's Call-ID, the
    /// far party's tag as `to-tag` and the box's as `from-tag`. `None` for a dialog the box
    /// does not hold (left as written).
    pub(crate) fn other_leg(&self, from: Side, r: &Replaces) -> Option<Replaces> {
        let ids = self.by_dialog.get(&(from, r.call_id.clone()))?;
        let (near, far) = ids
            .iter()
            .filter_map(|id| self.calls.get(id))
            .map(|c| c.legs_from(from))
            .find(|(near, _)| near.local_tag == r.to_tag)?;
        if near.remote_tag.as_deref() != Some(r.from_tag.as_str()) {
            return None;
        }
        Some(Replaces {
            call_id: far.call_id.clone(),
            to_tag: far.remote_tag.clone()?,
            from_tag: far.local_tag.clone(),
            rest: r.rest.clone(),
        })
    }

    pub(crate) fn owns(&self, tx: ClientTx) -> bool {
        self.by_client.contains_key(&tx)
    }

    pub(crate) fn info(&self, now: Instant) -> Vec<CallInfo> {
        let mut v: Vec<CallInfo> = self
            .calls
            .values()
            .filter(|c| c.kind == Kind::Call)
            .map(|c| {
                let (lan, wan) = if c.caller.side == Side::Lan {
                    (&c.caller, &c.callee)
                } else {
                    (&c.callee, &c.caller)
                };
                CallInfo {
                    key: c.key.clone(),
                    direction: if c.caller.side == Side::Lan {
                        "outbound"
                    } else {
                        "inbound"
                    }
                    .into(),
                    from: c.from.clone(),
                    to: c.to.clone(),
                    state: c.state.name().to_string(),
                    age_secs: now.saturating_duration_since(c.started).as_secs(),
                    talk_secs: c
                        .answered
                        .map_or(0, |a| now.saturating_duration_since(a).as_secs()),
                    lan_call_id: lan.call_id.clone(),
                    wan_call_id: wan.call_id.clone(),
                }
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// A new id for a pair of dialogs.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Records a new pair of dialogs: both legs by Call-ID, and the client transaction that
    /// opened the far one.
    pub(crate) fn open(&mut self, id: u64, ctx: ClientTx, purpose: Purpose, call: Call) {
        for leg in [&call.caller, &call.callee] {
            self.by_dialog
                .entry((leg.side, leg.call_id.clone()))
                .or_default()
                .push(id);
        }
        self.by_client.insert(ctx, (id, purpose));
        self.calls.insert(id, call);
    }

    /// The call a request received on `side` belongs to. Its Call-ID names one call, except
    /// where the provider forked an INVITE to several of the box's registrations (phones
    /// sharing a line): then the box's tag in To tells the dialogs apart, and before there is
    /// one, the Request-URI (each fork's is a different registration's Contact; a CANCEL
    /// repeats its INVITE's). `None` for an INVITE that is a new fork, or an unknown Call-ID.
    pub(crate) fn find(&self, side: Side, msg: &Message) -> Option<u64> {
        let call_id = msg.call_id()?;
        let ids = self.by_dialog.get(&(side, call_id))?;

        let to_tag = header(msg, Name::TO)
            .and_then(|t| name_addr::parse(&t))
            .and_then(|t| t.tag().map(str::to_string));
        if let Some(tag) = to_tag {
            return ids
                .iter()
                .find(|id| {
                    self.calls
                        .get(id)
                        .is_some_and(|c| c.legs_from(side).0.local_tag == tag)
                })
                .or(ids.first())
                .copied();
        }
        let ruri = request_uri(msg);
        let same_ruri = ids.iter().find(|id| {
            self.calls
                .get(id)
                .is_some_and(|c| c.caller.side == side && c.caller_ruri == ruri)
        });
        match same_ruri {
            Some(id) => Some(*id),
            // Another fork of an INVITE the box already has from this side.
            None if msg.method() == Some(&Method::INVITE)
                && ids
                    .iter()
                    .any(|id| self.calls.get(id).is_some_and(|c| c.caller.side == side)) =>
            {
                None
            }
            None => ids.first().copied(),
        }
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Call> {
        let c = self.calls.remove(&id)?;
        for leg in [&c.caller, &c.callee] {
            let key = (leg.side, leg.call_id.clone());
            if let Some(ids) = self.by_dialog.get_mut(&key) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.by_dialog.remove(&key);
                }
            }
        }
        // Its client transactions still out leave `by_client` with their final response or
        // timeout (and find no call then): no scan of every transaction per call.
        Some(c)
    }
}

/// Every Record-Route entry of `msg`, in order, as written.
pub(crate) fn record_route(msg: &Message) -> Vec<String> {
    crate::message::values(&msg.headers, &Name::RECORD_ROUTE)
        .flat_map(|v| name_addr::split_list(v))
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

/// A request's Request-URI as printed (empty for a response).
pub(crate) fn request_uri(msg: &Message) -> String {
    match &msg.line {
        MessageLine::Request(r) => {
            ezk_sip_types::print::AppendCtx::default_print_ctx(&r.uri).to_string()
        }
        MessageLine::Response(_) => String::new(),
    }
}

pub(crate) fn header(msg: &Message, name: Name) -> Option<String> {
    crate::message::values(&msg.headers, &name)
        .next()
        .map(|v| v.to_string())
}

pub(crate) fn is_sdp(msg: &Message) -> bool {
    !msg.body.is_empty()
        && header(msg, Name::CONTENT_TYPE)
            .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/sdp"))
}

/// Whether the sender can take an SDP answer: no Accept header, or one naming
/// `application/sdp`, `application/*` or `*/*` (an empty Accept accepts nothing, RFC 3261
/// 20.1). An offer from one that cannot gets 406 (RFC 4475 sdp01).
pub(crate) fn accepts_sdp(msg: &Message) -> bool {
    let mut values = crate::message::values(&msg.headers, &Name::ACCEPT).peekable();
    if values.peek().is_none() {
        return true;
    }
    values.flat_map(|v| v.split(',')).any(|range| {
        let range = range.split(';').next().unwrap_or("").trim();
        ["application/sdp", "application/*", "*/*"]
            .iter()
            .any(|ok| range.eq_ignore_ascii_case(ok))
    })
}

/// 406 for an offer whose sender accepts no SDP answer, naming what the box can send.
fn not_acceptable(msg: &Message, tag: &str) -> Message {
    let mut r = response(msg, 406, "Not Acceptable", Some(tag));
    r.headers.insert(Name::ACCEPT, "application/sdp");
    r.headers.insert(
        Name::WARNING,
        "399 voxgate \"an SDP answer is the only one the box can give\"",
    );
    r
}

pub(crate) fn reason_of(msg: &Message) -> String {
    match &msg.line {
        MessageLine::Response(StatusLine {
            reason: Some(r), ..
        }) => r.to_string(),
        _ => String::new(),
    }
}

pub(crate) fn name_addr_text(n: &name_addr::NameAddr) -> String {
    match &n.display {
        Some(d) => format!("\"{d}\" <{}>", n.uri),
        None => format!("<{}>", n.uri),
    }
}

/// A request on `leg`: its own Via (new branch), From, To, Call-ID, CSeq, route set and
/// Contact, then `extra` as given (values trimmed), Max-Forwards 70 unless `extra` has one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_request(
    method: &str,
    ruri: &str,
    leg: &Leg,
    cseq: u32,
    via: String,
    contact: Option<&str>,
    extra: &[(String, String)],
    body: &[u8],
) -> Option<Message> {
    let mut h: Vec<(Name, String)> = Vec::with_capacity(8 + leg.route_set.len() + extra.len());
    h.push((
        Name::VIA,
        format!("SIP/2.0/{via};branch=z9hG4bK{};rport", random_token(16)),
    ));
    if !extra
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("max-forwards"))
    {
        h.push((Name::MAX_FORWARDS, "70".into()));
    }
    h.push((
        Name::FROM,
        format!("{};tag={}", leg.local_uri, leg.local_tag),
    ));
    h.push((
        Name::TO,
        match &leg.remote_tag {
            Some(tag) => format!("{};tag={tag}", leg.remote_uri),
            None => leg.remote_uri.clone(),
        },
    ));
    h.push((Name::CALL_ID, leg.call_id.clone()));
    h.push((Name::CSEQ, format!("{cseq} {method}")));
    // Loose routing only (every entry `;lr` in practice since RFC 3261); the request still
    // goes to the leg's peer: the provider server the box uses, never an address a message
    // named (no open relay).
    for route in &leg.route_set {
        h.push((Name::ROUTE, route.clone()));
    }
    if let Some(c) = contact {
        h.push((Name::CONTACT, format!("<{c}>")));
    }
    for (n, v) in extra {
        h.push((Name::from(n.clone()), v.trim().to_string()));
    }
    match crate::message::request(method, ruri, h, body) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(method, %ruri, error = %e, "cannot build a request");
            None
        }
    }
}

/// An in-dialog request without Contact or body (ACK, BYE) on `leg`, to its remote target.
fn in_dialog(
    addrs: Addrs,
    method: &str,
    leg: &Leg,
    cseq: u32,
    extra: &[(String, String)],
) -> Option<Message> {
    build_request(
        method,
        &leg.remote_target,
        leg,
        cseq,
        addrs.via(leg.peer),
        None,
        extra,
        &[],
    )
}

/// The headers a relayed request carries to `to`: all but the per-leg ones (LAN addresses
/// hidden towards the provider), and Max-Forwards one less than it arrived with (RFC 3261
/// 16.6; 70 when it had none).
pub(crate) fn relayed(
    hider: &crate::b2bua::Hider,
    msg: &Message,
    to: Side,
) -> Vec<(String, String)> {
    let mut v = hider.carried(copied_except(msg, PER_LEG), to);
    let mf = header(msg, Name::MAX_FORWARDS)
        .and_then(|m| m.trim().parse::<u32>().ok())
        .map_or(70, |m| m.saturating_sub(1).min(70));
    v.push(("Max-Forwards".into(), mf.to_string()));
    v
}

/// Every header of `msg` except `names` (the per-leg ones), in order.
pub(crate) fn copied_except(msg: &Message, names: &[&str]) -> Vec<(String, String)> {
    msg.headers
        .iter()
        .filter(|(n, _)| {
            !names
                .iter()
                .any(|c| n.as_print_str().eq_ignore_ascii_case(c))
        })
        .map(|(n, v)| (n.as_print_str().to_string(), v.to_string()))
        .collect()
}

pub(crate) fn copied(msg: &Message, names: &[&str]) -> Vec<(String, String)> {
    msg.headers
        .iter()
        .filter(|(n, _)| {
            names
                .iter()
                .any(|c| n.as_print_str().eq_ignore_ascii_case(c))
        })
        .map(|(n, v)| (n.as_print_str().to_string(), v.to_string()))
        .collect()
}

/// The box's own SIP addresses on each side, copied out so that call state can be borrowed
/// mutably while requests are built.
#[derive(Clone, Copy)]
pub(crate) struct Addrs {
    lan: SocketAddr,
    wan: SocketAddr,
    wan_transport: crate::b2bua::Transport,
}

impl Addrs {
    /// The sent-by part of our Via towards `peer`: transport and address.
    pub(crate) fn via(self, peer: Peer) -> String {
        match peer.side {
            Side::Lan if peer.reliable => format!("TCP {}", self.lan),
            Side::Lan => format!("UDP {}", self.lan),
            Side::Wan if self.wan_transport.reliable() => format!(
                "{} {}",
                self.wan_transport.name().to_ascii_uppercase(),
                self.wan
            ),
            Side::Wan => format!("UDP {}", self.wan),
        }
    }

    /// Our Contact URI towards `peer`.
    pub(crate) fn contact(self, peer: Peer) -> String {
        match peer.side {
            Side::Lan if peer.reliable => format!("sip:voxgate@{};transport=tcp", self.lan),
            Side::Lan => format!("sip:voxgate@{}", self.lan),
            Side::Wan if self.wan_transport.reliable() => format!(
                "sip:voxgate@{};transport={}",
                self.wan,
                self.wan_transport.name()
            ),
            Side::Wan => format!("sip:voxgate@{}", self.wan),
        }
    }
}

impl B2bua {
    pub(crate) fn addrs(&self) -> Addrs {
        Addrs {
            lan: self.settings.lan,
            wan: self.wan_advertised(),
            wan_transport: self.settings.upstream_transport,
        }
    }

    /// Handles a request that belongs to calls; returns false when it is not for calls (then
    /// the caller answers it).
    pub(crate) fn call_request(
        &mut self,
        now: Instant,
        tx: ServerTx,
        msg: &Message,
        from: Peer,
    ) -> bool {
        // Dialogs named in Replaces / Refer-To are the other leg's on the far side.
        let mapped = replaces::map_message(msg, &|r| self.calls.other_leg(from.side, r));
        let msg = mapped.as_ref().unwrap_or(msg);
        let method = msg.method().cloned().expect("request");
        let existing = self.calls.find(from.side, msg);
        let has_to_tag = header(msg, Name::TO)
            .and_then(|t| name_addr::parse(&t))
            .is_some_and(|t| t.tag().is_some());
        match (method.to_string().as_str(), existing, has_to_tag) {
            ("INVITE", None, false) => self.new_call(now, tx, msg, from),
            ("INVITE", Some(id), false) => self.resend_invite(now, id, tx, msg),
            ("CANCEL", Some(id), _) => self.cancel(now, id, tx, msg),
            ("BYE", Some(id), true) if self.calls.calls[&id].kind == Kind::Call => {
                self.bye(now, id, tx, msg, from.side)
            }
            (_, Some(id), true) => self.relay_in_dialog(now, id, tx, msg, from.side),
            ("SUBSCRIBE" | "NOTIFY" | "MESSAGE" | "PUBLISH" | "REFER", None, false) => {
                self.outside_request(now, tx, msg, from)
            }
            ("SUBSCRIBE" | "NOTIFY" | "MESSAGE" | "PUBLISH" | "REFER", Some(id), false) => {
                self.outside_resend(now, id, tx, msg)
            }
            (
                "INVITE" | "BYE" | "CANCEL" | "UPDATE" | "INFO" | "PRACK" | "SUBSCRIBE" | "NOTIFY"
                | "REFER",
                None,
                _,
            ) => {
                let r = response(
                    msg,
                    481,
                    "Call/Transaction Does Not Exist",
                    Some(&random_token(8)),
                );
                self.tx.respond(now, tx, r);
            }
            _ => return false,
        }
        true
    }

    fn new_call(&mut self, now: Instant, tx: ServerTx, msg: &Message, from: Peer) {
        let addrs = self.addrs();
        let from_na = header(msg, Name::FROM).and_then(|v| name_addr::parse(&v));
        let to_na = header(msg, Name::TO).and_then(|v| name_addr::parse(&v));
        let (Some(from_na), Some(to_na)) = (from_na, to_na) else {
            self.tx
                .respond(now, tx, response(msg, 400, "Bad From or To", None));
            return;
        };
        let caller = Leg::of_request(msg, from, &from_na, &to_na);
        let (callee_peer, callee_ruri, callee_from, callee_to) =
            match self.route(now, msg, from, &from_na, &to_na) {
                Ok(r) => r,
                Err((code, reason)) => {
                    self.tx
                        .respond(now, tx, response(msg, code, reason, Some(&random_token(8))));
                    return;
                }
            };
        let callee_side = callee_peer.side;
        let callee = Leg::towards(callee_peer, &callee_ruri, callee_from, callee_to);
        if !msg.body.is_empty() && !is_sdp(msg) {
            // The relay anchors media from SDP only (RFC 4475 invut).
            let mut r = response(msg, 415, "Unsupported Media Type", Some(&caller.local_tag));
            r.headers.insert(Name::ACCEPT, "application/sdp");
            self.tx.respond(now, tx, r);
            return;
        }
        if is_sdp(msg) && !accepts_sdp(msg) {
            self.tx
                .respond(now, tx, not_acceptable(msg, &caller.local_tag));
            return;
        }
        let id = self.calls.next_id();
        let key = format!("call-{id}");
        let body = if is_sdp(msg) {
            match self.media.offer(&key, from.side, &msg.body) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(%key, error = %e, "media offer refused");
                    self.tx.respond(
                        now,
                        tx,
                        response(msg, 488, "Not Acceptable Here", Some(&caller.local_tag)),
                    );
                    self.media.release(&key);
                    return;
                }
            }
        } else {
            Vec::new()
        };
        let Some(invite) = build_request(
            "INVITE",
            &callee_ruri,
            &callee,
            1,
            addrs.via(callee_peer),
            Some(&addrs.contact(callee_peer)),
            &relayed(&self.hider(), msg, callee_side),
            &body,
        ) else {
            self.tx.respond(
                now,
                tx,
                response(msg, 400, "Bad Request-URI", Some(&caller.local_tag)),
            );
            self.media.release(&key);
            return;
        };
        tracing::info!(%key, from = %from_na.uri, to = %callee_ruri, direction = ?from.side, "call");
        let ctx = self.tx.request(now, invite.clone(), callee_peer);
        let call = Call::early(Kind::Call, key, &from_na, &to_na, caller, callee, now);
        self.calls.open(
            id,
            ctx,
            Purpose::Invite { server: tx },
            Call {
                invite: Some(invite),
                caller_invite: Some((tx, msg.clone())),
                caller_ruri: request_uri(msg),
                ..call
            },
        );
    }

    /// Where a new request from `from` goes, and with which identity: phones' requests go to
    /// the provider (topology hidden), the provider's to the phone registered under the
    /// contact token in the Request-URI. Returns (peer, Request-URI, From, To) or the status
    /// to refuse it with.
    pub(crate) fn route(
        &self,
        now: Instant,
        msg: &Message,
        from: Peer,
        from_na: &name_addr::NameAddr,
        to_na: &name_addr::NameAddr,
    ) -> Result<(Peer, String, String, String), (u16, &'static str)> {
        let ruri = match &msg.line {
            MessageLine::Request(r) => format!(
                "{}",
                ezk_sip_types::print::AppendCtx::default_print_ctx(&r.uri)
            ),
            _ => unreachable!("a request"),
        };
        Ok(match from.side {
            Side::Lan => {
                // To the provider: the dialled Request-URI as the phone wrote it (the digest
                // covers it), unless it names the box itself, which the provider cannot route.
                let lan_host = self.settings.lan.ip().to_string();
                let ruri = if ruri.contains(&format!("@{lan_host}")) {
                    ruri.replace(&lan_host, &self.settings.domain)
                } else {
                    ruri
                };
                let hide = |uri: &str| {
                    let lan_net_host = from.addr.ip().to_string();
                    uri.replace(&lan_net_host, &self.settings.domain)
                        .replace(&lan_host, &self.settings.domain)
                };
                let f = name_addr::NameAddr {
                    uri: hide(&from_na.uri),
                    ..from_na.clone()
                };
                let t = name_addr::NameAddr {
                    uri: hide(&to_na.uri),
                    ..to_na.clone()
                };
                (
                    self.upstream_peer(),
                    ruri,
                    name_addr_text(&f),
                    name_addr_text(&t),
                )
            }
            Side::Wan => {
                // From the provider to the phone registered under the contact token.
                let token = ruri
                    .strip_prefix("sip:")
                    .and_then(|r| r.split('@').next())
                    .unwrap_or_default()
                    .to_string();
                let Some(reg) = self
                    .by_token
                    .get(&token)
                    .and_then(|aor| self.regs.get(aor))
                    .cloned()
                else {
                    return Err((404, "Not Found"));
                };
                if reg.expires_at.is_none_or(|t| t <= now) || reg.state == "disconnected" {
                    return Err((480, "Temporarily Unavailable"));
                }
                let peer = Peer {
                    side: Side::Lan,
                    addr: reg.phone_addr,
                    reliable: reg.phone_transport == "tcp",
                };
                (
                    peer,
                    reg.phone_contact.clone(),
                    name_addr_text(from_na),
                    format!("<{}>", reg.aor),
                )
            }
        })
    }

    /// The phone re-sends its INVITE with credentials after a 401/407: same upstream dialog,
    /// next CSeq, credentials copied.
    fn resend_invite(&mut self, now: Instant, id: u64, tx: ServerTx, msg: &Message) {
        let addrs = self.addrs();
        let hider = self.hider();
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        if c.state != State::Challenged {
            let r = response(msg, 491, "Request Pending", Some(&c.caller.local_tag));
            self.tx.respond(now, tx, r);
            return;
        }
        c.callee.cseq += 1;
        let body = if is_sdp(msg) {
            self.media
                .offer(&c.key, c.caller.side, &msg.body)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let Some(invite) = build_request(
            "INVITE",
            &c.callee.remote_target.clone(),
            &c.callee,
            c.callee.cseq,
            addrs.via(c.callee.peer),
            Some(&addrs.contact(c.callee.peer)),
            &relayed(&hider, msg, c.callee.side),
            &body,
        ) else {
            return;
        };
        c.state = State::Early;
        c.invite = Some(invite.clone());
        c.caller_invite = Some((tx, msg.clone()));
        let peer = c.callee.peer;
        let ctx = self.tx.request(now, invite, peer);
        self.calls
            .by_client
            .insert(ctx, (id, Purpose::Invite { server: tx }));
    }

    fn cancel(&mut self, now: Instant, id: u64, tx: ServerTx, msg: &Message) {
        self.tx.respond(now, tx, response(msg, 200, "OK", None));
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        if c.state != State::Early {
            return;
        }
        c.state = State::Cancelled;
        c.end_reason = Some("cancelled by the caller".into());
        // The caller's INVITE ends with 487 now; the callee's is cancelled (a 2xx that crosses
        // the CANCEL is ACKed and BYEd when it arrives).
        if let Some((stx, inv)) = c.caller_invite.take() {
            let r = response(&inv, 487, "Request Terminated", Some(&c.caller.local_tag));
            self.tx.respond(now, stx, r);
        }
        if let Some(inv) = &c.invite {
            let mut h = crate::message::Headers::new();
            for name in [Name::VIA, Name::FROM, Name::TO, Name::CALL_ID, Name::ROUTE] {
                for v in crate::message::values(&inv.headers, &name) {
                    h.insert(name.clone(), v.clone());
                }
            }
            h.insert(Name::CSEQ, format!("{} CANCEL", c.callee.cseq));
            h.insert(Name::MAX_FORWARDS, "70");
            let line = match &inv.line {
                MessageLine::Request(r) => MessageLine::Request(ezk_sip_types::msg::RequestLine {
                    method: Method::CANCEL,
                    uri: r.uri.clone(),
                }),
                other => other.clone(),
            };
            let cancel = Message {
                line,
                headers: h,
                body: Bytes::new(),
            };
            let peer = c.callee.peer;
            let ctx = self.tx.request(now, cancel, peer);
            self.calls.by_client.insert(ctx, (id, Purpose::Own));
        }
        tracing::info!(key = %c.key, "call cancelled by the caller");
    }

    fn bye(&mut self, now: Instant, id: u64, tx: ServerTx, msg: &Message, from: Side) {
        let addrs = self.addrs();
        let hider = self.hider();
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        let (this_tag, other) = if c.caller.side == from {
            (c.caller.local_tag.clone(), &mut c.callee)
        } else {
            (c.callee.local_tag.clone(), &mut c.caller)
        };
        self.tx
            .respond(now, tx, response(msg, 200, "OK", Some(&this_tag)));
        other.cseq += 1;
        let bye = build_request(
            "BYE",
            &other.remote_target,
            other,
            other.cseq,
            addrs.via(other.peer),
            None,
            &hider.carried(copied(msg, &["reason"]), other.side),
            &[],
        );
        let peer = other.peer;
        c.state = State::Ended;
        c.end_reason = Some(format!(
            "BYE from the {}",
            if from == Side::Lan {
                "phone"
            } else {
                "provider"
            }
        ));
        let key = c.key.clone();
        let talk_secs = c
            .answered
            .map(|a| now.saturating_duration_since(a).as_secs());
        tracing::info!(%key, reason = c.end_reason.as_deref().unwrap_or(""), talk_secs, "call ended");
        if let Some(bye) = bye {
            let ctx = self.tx.request(now, bye, peer);
            self.calls.by_client.insert(ctx, (id, Purpose::Own));
        }
        self.media.release(&key);
    }

    fn relay_in_dialog(&mut self, now: Instant, id: u64, tx: ServerTx, msg: &Message, from: Side) {
        let addrs = self.addrs();
        let hider = self.hider();
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        let method = msg.method().map(|m| m.to_string()).unwrap_or_default();
        let key = c.key.clone();
        // A subscription's first NOTIFY may overtake the SUBSCRIBE's 2xx: it establishes the
        // notifier's tag and target on its leg.
        let near = if c.caller.side == from {
            &mut c.caller
        } else {
            &mut c.callee
        };
        if near.remote_tag.is_none() {
            near.remote_tag = header(msg, Name::FROM)
                .and_then(|f| name_addr::parse(&f))
                .and_then(|f| f.tag().map(str::to_string));
            if let Some(t) = header(msg, Name::CONTACT).and_then(|v| name_addr::parse(&v)) {
                near.remote_target = t.uri;
            }
        }
        // The box's tag on the sender's leg, for answers it gives itself.
        let tag = c.legs_from(from).0.local_tag.clone();
        let sdp_offer =
            c.kind == Kind::Call && is_sdp(msg) && (method == "INVITE" || method == "UPDATE");
        if c.kind == Kind::Call
            && (method == "INVITE" || method == "UPDATE")
            && !msg.body.is_empty()
            && !is_sdp(msg)
        {
            let mut r = response(msg, 415, "Unsupported Media Type", Some(&tag));
            r.headers.insert(Name::ACCEPT, "application/sdp");
            self.tx.respond(now, tx, r);
            return;
        }
        if sdp_offer && !accepts_sdp(msg) {
            self.tx.respond(now, tx, not_acceptable(msg, &tag));
            return;
        }
        let body = if sdp_offer {
            match self.media.offer(&key, from, &msg.body) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(%key, error = %e, "re-offer refused");
                    self.tx.respond(
                        now,
                        tx,
                        response(msg, 488, "Not Acceptable Here", Some(&tag)),
                    );
                    return;
                }
            }
        } else {
            msg.body.to_vec()
        };
        let other = if c.caller.side == from {
            &mut c.callee
        } else {
            &mut c.caller
        };
        other.cseq += 1;
        let contact = (method == "INVITE"
            || method == "UPDATE"
            || method == "SUBSCRIBE"
            || method == "NOTIFY"
            || method == "REFER")
            .then(|| addrs.contact(other.peer));
        let Some(req) = build_request(
            &method,
            &other.remote_target,
            other,
            other.cseq,
            addrs.via(other.peer),
            contact.as_deref(),
            &relayed(&hider, msg, other.side),
            &body,
        ) else {
            self.tx
                .respond(now, tx, response(msg, 500, "Server Internal Error", None));
            return;
        };
        let peer = other.peer;
        let ctx = self.tx.request(now, req, peer);
        self.calls.by_client.insert(
            ctx,
            (
                id,
                Purpose::Relay {
                    server: tx,
                    sdp_offer,
                },
            ),
        );
        // Remember the request to answer it: stored in the transaction mapping via server tx.
        self.relayed.insert(tx, msg.clone());
    }

    pub(crate) fn call_response(&mut self, now: Instant, tx: ClientTx, msg: Message) {
        let addrs = self.addrs();
        let hider = self.hider();
        let code = msg.code().unwrap_or(500);
        let Some((id, purpose)) = self.calls.by_client.get(&tx).cloned() else {
            return;
        };
        if code >= 200 {
            self.calls.by_client.remove(&tx);
        }
        match purpose {
            Purpose::Own => {
                if matches!(self.calls.calls.get(&id), Some(c) if c.state == State::Ended)
                    && code >= 200
                {
                    self.calls.remove(id);
                }
            }
            Purpose::Invite { server } => self.invite_response(now, id, server, msg),
            Purpose::Outside { server } => self.outside_response(now, id, server, msg),
            Purpose::Relay { server, sdp_offer } => {
                let Some(req) = self.relayed.get(&server).cloned() else {
                    return;
                };
                if code >= 200 {
                    self.relayed.remove(&server);
                }
                let Some(c) = self.calls.calls.get_mut(&id) else {
                    return;
                };
                let key = c.key.clone();
                let (tag, other_side, near) =
                    match crate::message::values(&req.headers, &Name::CALL_ID).next() {
                        Some(cid) if cid.as_str() == c.caller.call_id => {
                            (c.caller.local_tag.clone(), c.callee.side, c.caller.peer)
                        }
                        _ => (c.callee.local_tag.clone(), c.caller.side, c.callee.peer),
                    };
                let mut r = response(&req, code, &reason_of(&msg), Some(&tag));
                copy_except(&msg.headers, &mut r.headers, PER_LEG_RESPONSE);
                if other_side == Side::Lan {
                    // The answer goes to the provider.
                    hider.hide_lan_headers(&mut r.headers);
                }
                if (200..300).contains(&code) && req.method() == Some(&Method::INVITE) {
                    // ACK the re-INVITE's 2xx on the far leg; the near leg's ACK is absorbed.
                    let leg = if other_side == c.caller.side {
                        &c.caller
                    } else {
                        &c.callee
                    };
                    let cseq = msg.cseq().map(|x| x.cseq).unwrap_or(leg.cseq);
                    if let Some(ack) = in_dialog(addrs, "ACK", leg, cseq, &[]) {
                        self.tx.send(&ack, leg.peer);
                    }
                    r.headers
                        .insert(Name::CONTACT, format!("<{}>", addrs.contact(near)));
                }
                if (200..300).contains(&code) && req.method() == Some(&Method::SUBSCRIBE) {
                    r.headers
                        .insert(Name::CONTACT, format!("<{}>", addrs.contact(near)));
                }
                if code >= 200 {
                    self.subscription_progress(now, id, &req, &msg);
                }
                if sdp_offer && is_sdp(&msg) && (200..300).contains(&code) {
                    match self.media.answer(&key, other_side, &msg.body) {
                        Ok(b) => r.body = Bytes::from(b),
                        Err(e) => tracing::warn!(%key, error = %e, "media answer refused"),
                    }
                } else if !sdp_offer {
                    r.body = msg.body.clone();
                }
                self.tx.respond(now, server, r);
            }
        }
    }

    fn invite_response(&mut self, now: Instant, id: u64, server: ServerTx, msg: Message) {
        let addrs = self.addrs();
        let hider = self.hider();
        let code = msg.code().unwrap_or(500);
        if code == 100 {
            return;
        }
        let contact = self.contact_for_caller(id);
        let Some(c) = self.calls.calls.get_mut(&id) else {
            return;
        };
        let to_tag = header(&msg, Name::TO)
            .and_then(|t| name_addr::parse(&t))
            .and_then(|t| t.tag().map(str::to_string));
        let Some(inv) = c.caller_invite.as_ref().map(|(_, m)| m.clone()) else {
            // The caller cancelled: a 2xx crossing the CANCEL is ACKed and ended.
            if (200..300).contains(&code) {
                c.callee.learn_route_set(&msg);
                c.callee.remote_tag = to_tag;
                if let Some(t) = header(&msg, Name::CONTACT).and_then(|v| name_addr::parse(&v)) {
                    c.callee.remote_target = t.uri;
                }
                let cseq = c.callee.cseq;
                let leg = c.callee.clone();
                if let Some(ack) = in_dialog(addrs, "ACK", &leg, cseq, &[]) {
                    self.tx.send(&ack, leg.peer);
                }
                let c = self.calls.calls.get_mut(&id).expect("present");
                c.callee.cseq += 1;
                let leg = c.callee.clone();
                if let Some(bye) = in_dialog(addrs, "BYE", &leg, leg.cseq, &[]) {
                    let ctx = self.tx.request(now, bye, leg.peer);
                    self.calls.by_client.insert(ctx, (id, Purpose::Own));
                }
                c.state = State::Ended;
                tracing::info!(key = %c.key, "answer crossed the CANCEL: ACKed and ended");
            } else if code >= 200 {
                let key = c.key.clone();
                self.media.release(&key);
                self.calls.remove(id);
            }
            return;
        };
        let key = c.key.clone();
        let mut r = response(&inv, code, &reason_of(&msg), Some(&c.caller.local_tag));
        copy_except(&msg.headers, &mut r.headers, PER_LEG_RESPONSE);
        if c.caller.side == Side::Wan {
            hider.hide_lan_headers(&mut r.headers);
        }
        if code < 300 {
            if to_tag.is_some() {
                c.callee.learn_route_set(&msg);
            }
            // The caller's proxies see their Record-Route echoed (RFC 3261 12.1.1).
            for route in &c.caller.route_set {
                r.headers.insert(Name::RECORD_ROUTE, route.clone());
            }
            c.callee.remote_tag = to_tag.clone();
            if let Some(t) = header(&msg, Name::CONTACT).and_then(|v| name_addr::parse(&v)) {
                c.callee.remote_target = t.uri;
            }
            r.headers.insert(Name::CONTACT, format!("<{contact}>"));
            if is_sdp(&msg) {
                let answer = match &c.early_answer {
                    Some(prev) if code >= 200 => Ok(prev.clone()),
                    _ => self.media.answer(&key, c.callee.side, &msg.body),
                };
                match answer {
                    Ok(b) => {
                        if code < 200 {
                            c.early_answer = Some(b.clone());
                        }
                        r.body = Bytes::from(b);
                    }
                    Err(e) => tracing::warn!(%key, error = %e, "media answer refused"),
                }
            }
        }
        match code {
            101..=199 => self.tx.respond(now, server, r),
            200..=299 => {
                c.state = State::Confirmed;
                c.answered = Some(now);
                // Needed only before the answer (CANCEL, a re-sent INVITE, a 2xx after a
                // 183): not kept for the whole call.
                c.caller_invite = None;
                c.invite = None;
                c.early_answer = None;
                let leg = c.callee.clone();
                let cseq = msg.cseq().map(|x| x.cseq).unwrap_or(leg.cseq);
                if let Some(ack) = in_dialog(addrs, "ACK", &leg, cseq, &[]) {
                    self.tx.send(&ack, leg.peer);
                    if let Some(c) = self.calls.calls.get_mut(&id) {
                        c.ack = Some(ack.to_bytes());
                    }
                }
                // Debug only: "call" and "call ended" (with its talk time) tell the story at
                // info, two lines per call (log volume was a tenth of the CPU per call).
                tracing::debug!(%key, "call answered");
                self.tx.respond(now, server, r);
            }
            401 | 407 if c.caller.side == Side::Lan => {
                c.state = State::Challenged;
                c.caller_invite = None;
                self.tx.respond(now, server, r);
            }
            _ => {
                tracing::info!(%key, code, reason = %reason_of(&msg), "call failed");
                self.tx.respond(now, server, r);
                self.media.release(&key);
                self.calls.remove(id);
            }
        }
    }

    fn contact_for_caller(&self, id: u64) -> String {
        let addrs = self.addrs();
        let peer = self.calls.calls.get(&id).map_or(
            Peer {
                side: Side::Lan,
                addr: self.settings.lan,
                reliable: false,
            },
            |c| c.caller.peer,
        );
        addrs.contact(peer)
    }

    pub(crate) fn call_timeout(&mut self, now: Instant, tx: ClientTx) {
        let Some((id, purpose)) = self.calls.by_client.remove(&tx) else {
            return;
        };
        match purpose {
            Purpose::Invite { server } => {
                if let Some(c) = self.calls.calls.get(&id) {
                    if let Some((_, inv)) = &c.caller_invite {
                        let r = response(inv, 408, "Request Timeout", Some(&c.caller.local_tag));
                        self.tx.respond(now, server, r);
                    }
                    let key = c.key.clone();
                    tracing::warn!(%key, "no answer to the INVITE");
                    self.media.release(&key);
                }
                self.calls.remove(id);
            }
            Purpose::Outside { server } => {
                if let Some(c) = self.calls.remove(id) {
                    if let Some((_, req)) = c.caller_invite {
                        let r = response(&req, 408, "Request Timeout", Some(&c.caller.local_tag));
                        self.tx.respond(now, server, r);
                    }
                    tracing::warn!(key = %c.key, "no answer to an out-of-dialog request");
                }
            }
            Purpose::Relay { server, .. } => {
                if let Some(req) = self.relayed.remove(&server) {
                    self.tx.respond(
                        now,
                        server,
                        response(&req, 408, "Request Timeout", Some(&random_token(8))),
                    );
                }
            }
            Purpose::Own => {
                if matches!(self.calls.calls.get(&id), Some(c) if c.state == State::Ended) {
                    self.calls.remove(id);
                }
            }
        }
    }

    /// An ACK for a 2xx: absorbed (the B2BUA ACKed the far leg itself), unless it carries SDP
    /// for a late offer, which is not supported and logged.
    pub(crate) fn call_ack(&mut self, _now: Instant, msg: Message, from: Peer) {
        let call_id = msg.call_id().unwrap_or_default();
        if self.calls.by_dialog.contains_key(&(from.side, call_id)) && is_sdp(&msg) {
            tracing::warn!("ACK with SDP (late offer) is not relayed");
        }
    }

    /// A retransmitted 2xx: our ACK was lost; send it again.
    pub(crate) fn call_stray_2xx(&mut self, msg: Message, from: Peer) {
        let Some(id) = self.calls.find(from.side, &msg) else {
            return;
        };
        if let Some(c) = self.calls.calls.get(&id) {
            if let Some(ack) = &c.ack {
                self.out.push_back((c.callee.peer, ack.clone()));
            }
        }
    }

    /// Ends every call whose media timed out (reported by the relay).
    pub fn media_timeout(&mut self, now: Instant, key: &str) {
        let addrs = self.addrs();
        let Some(id) = self
            .calls
            .calls
            .iter()
            .find(|(_, c)| c.key == key)
            .map(|(id, _)| *id)
        else {
            return;
        };
        let c = self.calls.calls.get_mut(&id).expect("found");
        if c.state != State::Confirmed {
            return;
        }
        c.state = State::Ended;
        c.end_reason = Some("no media".into());
        for leg in [c.caller.clone(), c.callee.clone()] {
            let cseq = leg.cseq + 1;
            let reason = vec![(
                "Reason".to_string(),
                "SIP;cause=408;text=\"media timeout\"".to_string(),
            )];
            if let Some(bye) = in_dialog(addrs, "BYE", &leg, cseq, &reason) {
                let ctx = self.tx.request(now, bye, leg.peer);
                self.calls.by_client.insert(ctx, (id, Purpose::Own));
            }
        }
        tracing::warn!(%key, "call ended: no media in either direction");
        self.media.release(key);
        self.drive(now);
    }
}
