//! The B2BUA core, sans-IO: datagrams and time in, datagrams out. This step relays
//! registrations (the box re-originates each phone's REGISTER towards the provider with its
//! own Call-ID, Via and Contact; digest challenges and credentials pass through untouched),
//! answers OPTIONS locally, keeps the broadband router's NAT binding open, and refuses what it
//! does not relay yet with a proper response.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ezk_sip_types::msg::{MessageLine, StatusLine};
use ezk_sip_types::{Method, Name};

use crate::message::Headers;
use ipnet::IpNet;
use serde::Serialize;

use crate::guard::{Guard, Limit};
use crate::message::{parse, response, Message, ParseError};
use crate::name_addr;
use crate::transaction::{ClientTx, Output, Peer, ServerTx, Side, Transactions};
use crate::upstream::{ServerState, Switch, Upstreams};

/// What the B2BUA needs to know about the box and the provider.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The box's SIP address on the voice LAN (Via/Contact towards phones).
    pub lan: SocketAddr,
    /// The box's SIP address on the WAN interface.
    pub wan: SocketAddr,
    /// The provider's SIP servers: the primary, then fallbacks in order of preference.
    pub upstreams: Vec<SocketAddr>,
    /// Interval of OPTIONS health checks to each server (only when there are fallbacks).
    pub health_interval: Duration,
    /// The provider's SIP domain (host part the box writes where a phone named the box).
    pub domain: String,
    /// Talk to the provider over TCP (one persistent connection) instead of UDP.
    pub upstream_transport: Transport,
    /// Phones must send from here.
    pub voice_net: IpNet,
    /// The provider must send from here.
    pub provider_nets: Vec<IpNet>,
    /// Interval of the NAT keepalive towards the provider.
    pub keepalive: Duration,
    /// Messages per second each LAN source may send (bursts of 4×); 0: unlimited.
    pub lan_rate_limit: u32,
    /// The provider's STUN server, asked how the router maps the WAN SIP socket.
    pub stun_server: Option<SocketAddr>,
}

/// How the box talks to the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Datagrams, one keepalive stream of CRLFs.
    Udp,
    /// One persistent connection per server.
    Tcp,
    /// TCP with TLS (the provider's certificate verified).
    Tls,
}

impl Transport {
    /// Lower-case name as Via (upper-cased) and `transport=` write it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Whether messages travel over a connection (no retransmissions, framing by length).
    pub fn reliable(self) -> bool {
        self != Transport::Udp
    }
}

/// A phone's registration as relayed upstream.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// Address of record (To URI).
    pub aor: String,
    /// The phone's own Contact URI.
    pub phone_contact: String,
    /// Where the phone's requests came from (its real transport address).
    pub phone_addr: SocketAddr,
    /// `udp`, or `tcp` when the phone registered over a connection (requests to it use
    /// that connection).
    pub phone_transport: String,
    /// The Contact the box registered upstream in its place.
    pub upstream_contact: String,
    /// The provider server the registration was last sent to.
    pub upstream: String,
    /// `registered`, `challenged`, `pending`, `failed` or `expired`.
    pub state: String,
    /// Seconds until the upstream registration expires (0 when not registered).
    pub expires_in: u64,
    /// The last failure (status line or timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip)]
    pub(crate) expires_at: Option<Instant>,
    #[serde(skip)]
    call_id: String,
    #[serde(skip)]
    from_tag: String,
    #[serde(skip)]
    cseq: u32,
    #[serde(skip)]
    pub(crate) token: String,
}

struct PendingRegister {
    server: ServerTx,
    /// The provider server it went to.
    upstream: SocketAddr,
    request: Message,
    /// The binding's key in `B2bua::regs`.
    binding: String,
}

/// The B2BUA.
pub struct B2bua {
    pub(crate) settings: Settings,
    pub(crate) tx: Transactions,
    /// Phone bindings by `"<aor> <phone contact URI>"`, each registered upstream with its own
    /// Contact (token), Call-ID and From tag.
    pub(crate) regs: HashMap<String, Registration>,
    /// Binding keys by the token of their upstream Contact.
    pub(crate) by_token: HashMap<String, String>,
    /// Binding keys by address of record.
    by_aor: HashMap<String, Vec<String>>,
    pending: HashMap<ClientTx, PendingRegister>,
    /// Our WAN address as the provider sees it (from `received`/`rport`).
    public: Option<SocketAddr>,
    keepalive_at: Option<Instant>,
    pub(crate) out: VecDeque<(Peer, Vec<u8>)>,
    /// Messages dropped by access control or parsing, for status.
    pub dropped: u64,
    pub(crate) media: Box<dyn MediaControl>,
    pub(crate) calls: crate::call::Calls,
    /// Requests relayed to the other leg, by the transaction that must answer them.
    pub(crate) relayed: HashMap<ServerTx, Message>,
    /// The provider's servers and which one is in use.
    upstream: Upstreams,
    /// Health checks out, by transaction.
    probes: HashMap<ClientTx, SocketAddr>,
    /// Rate limits and scanner rejection per side.
    lan_guard: Guard,
    wan_guard: Guard,
    /// Binding requests to the provider's STUN server.
    stun: crate::stun::StunProbe,
    /// The public IP media was last told.
    public_ip: Option<std::net::Ipv4Addr>,
    /// The time of the last call into the core.
    clock: Option<Instant>,
    /// When lapsed subscriptions were last looked for.
    pub(crate) last_sweep: Option<Instant>,
}

/// What one provider address may send: it carries every phone's traffic, and only the
/// provider's networks get this far, so this is a flood guard well above what the B2BUA can
/// handle (the Kamailio benchmark drove over a thousand registrations a second through it; a
/// lower limit here failed them instead of the box).
const WAN_LIMIT: Limit = Limit {
    per_sec: 20000.0,
    burst: 40000.0,
};

/// What one phone may send: far above what a phone needs (a handful of messages per call, a
/// burst of SUBSCRIBEs for its busy lamps at start), far below what would starve the others.
fn lan_limit(per_sec: u32) -> Option<Limit> {
    (per_sec > 0).then(|| Limit {
        per_sec: f64::from(per_sec),
        burst: 4.0 * f64::from(per_sec),
    })
}

/// The address of record of a key of `B2bua::regs` (`"<aor> <phone contact>"`).
fn aor_of(binding: &str) -> &str {
    binding.split(' ').next().unwrap_or(binding)
}

fn reg_upstream(reg: Option<&mut Registration>, server: SocketAddr) {
    if let Some(r) = reg {
        r.upstream = server.to_string();
    }
}

/// What the B2BUA asks of the media relay: rewrite each offer and answer so that media flows
/// through the box, and free a call's ports when it ends.
pub trait MediaControl: Send {
    /// An SDP offer arriving from `from`; returns the SDP to send to the other side.
    fn offer(&mut self, call: &str, from: Side, sdp: &[u8]) -> Result<Vec<u8>, String>;
    /// The SDP answer arriving from `from`; returns the SDP to send to the other side.
    fn answer(&mut self, call: &str, from: Side, sdp: &[u8]) -> Result<Vec<u8>, String>;
    /// The call ended.
    fn release(&mut self, call: &str);
    /// The box's public WAN address as the provider reports it (SDP towards the provider
    /// names it).
    fn public_address(&mut self, ip: std::net::Ipv4Addr);
}

/// Connects the SIP service to the media relay each time it starts.
pub trait MediaProvider: Send + Sync {
    /// A controller for a new B2BUA.
    fn control(&self) -> Box<dyn MediaControl>;
    /// Keys of calls whose media stopped in both directions (the B2BUA ends them).
    fn timeouts(&self) -> tokio::sync::mpsc::UnboundedReceiver<String>;
}

pub(crate) fn random_token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Headers copied from a phone's REGISTER to the upstream one; everything that names the
/// phone's transport (Via, Contact, Route, ...) is regenerated instead.
const REGISTER_COPY: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "expires",
    "user-agent",
    "allow",
    "supported",
    "require",
    "proxy-require",
    "accept",
    "allow-events",
];

/// Headers copied from the provider's response back to the phone.
const RESPONSE_COPY: &[&str] = &[
    "www-authenticate",
    "proxy-authenticate",
    "min-expires",
    "date",
    "warning",
    "retry-after",
    "supported",
    "allow",
    "server",
];

/// Copies every header of `from` except `names` into `to`.
pub(crate) fn copy_except(from: &Headers, to: &mut Headers, names: &[&str]) {
    for (name, value) in from.iter() {
        if !names
            .iter()
            .any(|n| name.as_print_str().eq_ignore_ascii_case(n))
        {
            to.insert(name.clone(), value.clone());
        }
    }
}

pub(crate) fn copy_named(from: &Headers, to: &mut Headers, names: &[&str]) {
    for (name, value) in from.iter() {
        if names
            .iter()
            .any(|n| name.as_print_str().eq_ignore_ascii_case(n))
        {
            to.insert(name.clone(), value.clone());
        }
    }
}

impl B2bua {
    /// A B2BUA with no registrations.
    pub fn new(settings: Settings, media: Box<dyn MediaControl>) -> B2bua {
        B2bua {
            upstream: Upstreams::new(&settings.upstreams, settings.health_interval),
            probes: HashMap::new(),
            lan_guard: Guard::new(lan_limit(settings.lan_rate_limit)),
            wan_guard: Guard::new(Some(WAN_LIMIT)),
            stun: crate::stun::StunProbe::new(settings.stun_server),
            public_ip: None,
            clock: None,
            last_sweep: None,
            media,
            calls: Default::default(),
            relayed: HashMap::new(),
            settings,
            tx: Transactions::new(),
            regs: HashMap::new(),
            by_token: HashMap::new(),
            by_aor: HashMap::new(),
            pending: HashMap::new(),
            public: None,
            keepalive_at: None,
            out: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Replaces the settings (after a reload); registrations are kept.
    pub fn set_settings(&mut self, settings: Settings) {
        self.lan_guard.set_limit(lan_limit(settings.lan_rate_limit));
        self.upstream
            .reconfigure(&settings.upstreams, settings.health_interval);
        if settings.stun_server != self.stun.server() {
            self.stun = crate::stun::StunProbe::new(settings.stun_server);
            if let Some(now) = self.clock {
                self.stun.start(now);
            }
        }
        self.settings = settings;
    }

    /// Starts the health checks of the provider's servers (when there are fallbacks to move
    /// to; a lone server has nowhere to fail over to).
    pub fn start(&mut self, now: Instant) {
        self.clock = Some(now);
        self.stun.start(now);
        if self.settings.upstreams.len() > 1 {
            self.upstream.start(now);
        }
    }

    /// The provider's servers and their health, in order of preference.
    pub fn upstreams(&self, now: Instant) -> Vec<ServerState> {
        self.upstream.states(now)
    }

    /// A phone's TCP connection closed: the phones registered over it cannot be reached until
    /// they register again (a new connection).
    pub fn lan_connection_closed(&mut self, addr: SocketAddr) {
        for r in self.regs.values_mut() {
            if r.phone_addr == addr && r.phone_transport == "tcp" && r.state == "registered" {
                r.state = "disconnected".into();
                r.last_error = Some("the phone's TCP connection closed".into());
                tracing::info!(aor = %r.aor, phone = %addr, "phone's connection closed; unreachable until it registers again");
            }
        }
    }

    /// The box's public SIP address as the provider reported it, if it did.
    pub fn public_address(&self) -> Option<SocketAddr> {
        self.public
    }

    /// The address the box advertises towards the provider.
    pub fn wan_advertised(&self) -> SocketAddr {
        self.public.unwrap_or(self.settings.wan)
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(Peer, Vec<u8>)> {
        self.out.pop_front()
    }

    /// When [`B2bua::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.tx.poll_timeout(),
            self.keepalive_at,
            self.upstream.poll_timeout(),
            self.stun.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Calls in progress, for `voxgate calls`.
    pub fn calls(&self, now: Instant) -> Vec<crate::call::CallInfo> {
        self.calls.info(now)
    }

    /// Every registration (one per phone binding), sorted by AoR and phone Contact.
    pub fn registrations(&self, now: Instant) -> Vec<Registration> {
        let mut v: Vec<Registration> = self
            .regs
            .values()
            .cloned()
            .map(|mut r| {
                r.expires_in = r
                    .expires_at
                    .map_or(0, |t| t.saturating_duration_since(now).as_secs());
                if r.state == "registered" && r.expires_in == 0 {
                    r.state = "expired".into();
                }
                r
            })
            .collect();
        v.sort_by(|a, b| (&a.aor, &a.phone_contact).cmp(&(&b.aor, &b.phone_contact)));
        v
    }

    pub(crate) fn upstream_peer(&self) -> Peer {
        Peer {
            side: Side::Wan,
            addr: self.upstream.active(),
            reliable: self.settings.upstream_transport.reliable(),
        }
    }

    /// `udp`, `tcp` or `tls`: the transport towards the provider, as Via and Contact name it.
    pub(crate) fn wan_transport(&self) -> &'static str {
        self.settings.upstream_transport.name()
    }

    /// Runs timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = Some(now);
        self.tx.handle_timeout(now);
        self.sweep_outside(now);
        if let Some((server, bytes)) = self.stun.due(now) {
            let peer = Peer {
                side: Side::Wan,
                addr: server,
                reliable: false,
            };
            self.out.push_back((peer, bytes));
        }
        let (due, switch) = self.upstream.due(now);
        for server in due {
            self.probe(now, server);
        }
        self.switched(switch);
        if self.keepalive_at.is_some_and(|t| now >= t) {
            // One CRLF keepalive stream for all phones holds the router's binding open
            // (RFC 5626 4.4.1 double CRLF).
            self.out
                .push_back((self.upstream_peer(), b"\r\n\r\n".to_vec()));
            self.keepalive_at = Some(now + self.settings.keepalive);
        }
        self.drive(now);
    }

    /// Feeds a datagram received on `from`.
    pub fn receive(&mut self, now: Instant, bytes: &[u8], from: Peer) {
        self.clock = Some(now);
        let allowed = match from.side {
            Side::Lan => self.settings.voice_net.contains(&from.addr.ip()),
            Side::Wan => self
                .settings
                .provider_nets
                .iter()
                .any(|n| n.contains(&from.addr.ip())),
        };
        if !allowed {
            self.dropped += 1;
            tracing::debug!(from = %from.addr, side = ?from.side, "SIP from an unexpected source dropped");
            return;
        }
        let guard = match from.side {
            Side::Lan => &mut self.lan_guard,
            Side::Wan => &mut self.wan_guard,
        };
        if let Err(why) = guard.admit(now, from.addr.ip(), bytes) {
            self.dropped += 1;
            tracing::debug!(from = %from.addr, ?why, "SIP refused before parsing");
            return;
        }
        if from.side == Side::Wan && !from.reliable && crate::stun::is_stun(bytes) {
            if let Some(mapped) = self.stun.on_message(from.addr, bytes) {
                self.learn_mapping(mapped, "STUN");
            }
            return;
        }
        if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
            if bytes == b"\r\n\r\n" {
                self.out.push_back((from, b"\r\n".to_vec())); // keepalive pong
            }
            return;
        }
        match parse(bytes, from.reliable) {
            Ok((msg, _)) => self.tx.receive(now, msg, from),
            Err(ParseError::Reject { code, reason }) => {
                // A request too broken to handle still gets its answer (RFC 3261 16.3, 8.2),
                // built from the bytes as received; the guard above bounds how many.
                self.dropped += 1;
                tracing::debug!(from = %from.addr, code, %reason, "malformed request refused");
                if let Some(r) =
                    crate::message::reject_response(bytes, code, &reason, Some(&random_token(8)))
                {
                    self.out.push_back((from, r));
                }
            }
            Err(e) => {
                self.dropped += 1;
                tracing::debug!(from = %from.addr, error = %e, "unparseable SIP dropped");
            }
        }
        self.drive(now);
    }

    pub(crate) fn drive(&mut self, now: Instant) {
        while let Some(o) = self.tx.poll_output() {
            match o {
                Output::Transmit { to, bytes } => self.out.push_back((to, bytes)),
                Output::Request { tx, msg, from } => self.on_request(now, tx, msg, from),
                Output::Response { tx, msg } if self.probes.contains_key(&tx) => {
                    let code = msg.code().unwrap_or(500);
                    if code >= 200 {
                        let server = self.probes.remove(&tx).expect("checked");
                        self.learn_public_address(&msg);
                        let sw = self.upstream.answered(now, server, code);
                        self.switched(sw);
                    }
                }
                Output::Timeout { tx } if self.probes.contains_key(&tx) => {
                    // Counted as a miss when the next round goes out.
                    self.probes.remove(&tx);
                }
                Output::Response { tx, msg } if self.calls.owns(tx) => {
                    self.call_response(now, tx, msg)
                }
                Output::Response { tx, msg } => self.on_response(now, tx, msg),
                Output::Timeout { tx } if self.calls.owns(tx) => self.call_timeout(now, tx),
                Output::Timeout { tx } => self.on_timeout(now, tx),
                Output::Ack { msg, from } => self.call_ack(now, msg, from),
                Output::Stray2xx { msg, from } => self.call_stray_2xx(msg, from),
            }
        }
    }

    fn on_request(&mut self, now: Instant, tx: ServerTx, msg: Message, from: Peer) {
        let method = msg.method().cloned().expect("request");
        // Extensions a proxy must support (none here), or that an OPTIONS answered here would
        // have to: 420 with what is unsupported (RFC 3261 8.2.2.3).
        let unsupported = crate::message::values(&msg.headers, &Name::PROXY_REQUIRE)
            .chain(
                (method == Method::OPTIONS)
                    .then(|| crate::message::values(&msg.headers, &Name::REQUIRE))
                    .into_iter()
                    .flatten(),
            )
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if !unsupported.is_empty() {
            let mut r = response(&msg, 420, "Bad Extension", Some(&random_token(8)));
            r.headers.insert(Name::UNSUPPORTED, unsupported);
            self.tx.respond(now, tx, r);
            return;
        }
        let max_forwards = crate::message::values(&msg.headers, &Name::MAX_FORWARDS)
            .next()
            .and_then(|v| v.trim().parse::<u32>().ok());
        if max_forwards == Some(0) && method != Method::OPTIONS {
            let r = response(&msg, 483, "Too Many Hops", Some(&random_token(8)));
            self.tx.respond(now, tx, r);
            return;
        }
        if method == Method::OPTIONS {
            let mut r = response(&msg, 200, "OK", Some(&random_token(8)));
            r.headers
                .insert(Name::ALLOW, "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, PRACK, INFO, REFER, SUBSCRIBE, NOTIFY, MESSAGE, PUBLISH");
            self.tx.respond(now, tx, r);
            return;
        }
        if method != Method::REGISTER && self.call_request(now, tx, &msg, from) {
            return;
        }
        match (from.side, method == Method::REGISTER) {
            (Side::Lan, true) => self.relay_register(now, tx, msg, from),
            _ => {
                let r = response(&msg, 501, "Not Implemented", Some(&random_token(8)));
                self.tx.respond(now, tx, r);
            }
        }
    }

    /// The key in `regs` of the binding a REGISTER for `aor` from `from` refreshes: one per
    /// phone Contact, so that phones sharing an address of record (a shared line) each have
    /// their own upstream registration, and the provider rings them all. A phone that
    /// re-registers from the same address with a new Contact keeps its binding (and the
    /// upstream registration) under the new key. Without a Contact (a query, or `*`): this
    /// phone's binding of the AoR, else any of the AoR's.
    fn binding_key(
        &mut self,
        now: Instant,
        aor: &str,
        contact: Option<&str>,
        from: SocketAddr,
    ) -> String {
        // The AoR's bindings, from the index: a scan of every registration per REGISTER made
        // registrations/s fall with the number of phones registered.
        let keys: Vec<String> = self.by_aor.get(aor).cloned().unwrap_or_default();
        let mine = |regs: &HashMap<String, Registration>| {
            keys.iter()
                .filter(|k| regs.get(*k).is_some_and(|r| r.phone_addr == from))
                .min()
                .cloned()
        };
        let Some(contact) = contact else {
            return mine(&self.regs)
                .or_else(|| keys.iter().min().cloned())
                .unwrap_or_else(|| format!("{aor} "));
        };
        let key = format!("{aor} {contact}");
        if !self.regs.contains_key(&key) {
            // A new binding: the AoR's lapsed ones (expired, unregistered, failed) go.
            let lapsed: Vec<&String> = keys
                .iter()
                .filter(|k| {
                    self.regs.get(*k).is_some_and(|r| {
                        r.expires_at.is_none_or(|t| t <= now)
                            && !matches!(r.state.as_str(), "pending" | "challenged")
                    })
                })
                .collect();
            for k in lapsed {
                self.remove_binding(k);
            }
            if let Some(old) = mine(&self.regs) {
                if let Some(r) = self.remove_binding(&old) {
                    tracing::info!(%aor, from = %r.phone_contact, to = %contact, "phone's Contact changed; its registration follows");
                    self.insert_binding(key.clone(), r);
                }
            }
        }
        key
    }

    /// Adds binding `key` (see [`B2bua::binding_key`]) with its indexes.
    fn insert_binding(&mut self, key: String, reg: Registration) {
        self.by_token.insert(reg.token.clone(), key.clone());
        let keys = self.by_aor.entry(reg.aor.clone()).or_default();
        if !keys.contains(&key) {
            keys.push(key.clone());
        }
        self.regs.insert(key, reg);
    }

    /// Removes binding `key` and its index entries.
    fn remove_binding(&mut self, key: &str) -> Option<Registration> {
        let r = self.regs.remove(key)?;
        self.by_token.remove(&r.token);
        if let Some(keys) = self.by_aor.get_mut(&r.aor) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_aor.remove(&r.aor);
            }
        }
        Some(r)
    }

    fn relay_register(&mut self, now: Instant, tx: ServerTx, msg: Message, from: Peer) {
        let to = crate::message::values(&msg.headers, &Name::TO)
            .next()
            .map(|v| v.to_string())
            .unwrap_or_default();
        let Some(aor) = name_addr::parse(&to)
            .map(|n| n.uri)
            .filter(|u| u.starts_with("sip:") || u.starts_with("sips:"))
        else {
            // An address of record is a SIP URI (RFC 3261 10.2; RFC 4475 unksm2).
            self.tx
                .respond(now, tx, response(&msg, 400, "Bad To", None));
            return;
        };
        let contact = crate::message::values(&msg.headers, &Name::CONTACT)
            .next()
            .map(|v| v.to_string());
        // Every Contact, each value read as a list (message::check has validated them).
        let mut all = crate::message::values(&msg.headers, &Name::CONTACT)
            .filter_map(|v| name_addr::parse_list(v))
            .flatten();
        let phone_contact = all.next();
        let contacts = usize::from(phone_contact.is_some()) + all.count();
        if contacts > 1 {
            tracing::warn!(%aor, phone = %from.addr, contacts, "REGISTER with several Contacts: only the first is registered upstream");
        }
        let key = self.binding_key(
            now,
            &aor,
            phone_contact.as_ref().map(|c| c.uri.as_str()),
            from.addr,
        );
        let wan = self.wan_advertised();
        let transport = self.wan_transport();
        if !self.regs.contains_key(&key) {
            let reg = Registration {
                aor: aor.clone(),
                phone_contact: String::new(),
                phone_addr: from.addr,
                phone_transport: String::new(),
                upstream_contact: String::new(),
                upstream: String::new(),
                state: "pending".into(),
                expires_in: 0,
                last_error: None,
                expires_at: None,
                call_id: format!("{}@voxgate", random_token(20)),
                from_tag: random_token(10),
                cseq: 0,
                token: random_token(12),
            };
            self.insert_binding(key.clone(), reg);
        }
        let reg = self.regs.get_mut(&key).expect("inserted above");
        reg.phone_addr = from.addr;
        reg.phone_transport = if from.reliable { "tcp" } else { "udp" }.into();
        if let Some(c) = &phone_contact {
            reg.phone_contact = c.uri.clone();
        }
        reg.cseq += 1;
        let upstream_contact = match self.settings.upstream_transport {
            Transport::Udp => format!("sip:{}@{}", reg.token, wan),
            t => format!("sip:{}@{};transport={}", reg.token, wan, t.name()),
        };

        let mut h = Headers::new();
        h.insert(
            Name::VIA,
            format!(
                "SIP/2.0/{} {wan};branch=z9hG4bK{};rport",
                transport.to_uppercase(),
                random_token(16)
            ),
        );
        let mf = crate::message::values(&msg.headers, &Name::MAX_FORWARDS)
            .next()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(70);
        if mf == 0 {
            self.tx
                .respond(now, tx, response(&msg, 483, "Too Many Hops", None));
            return;
        }
        h.insert(Name::MAX_FORWARDS, (mf - 1).to_string());
        h.insert(Name::FROM, format!("<{aor}>;tag={}", reg.from_tag));
        h.insert(Name::TO, to.clone());
        h.insert(Name::CALL_ID, reg.call_id.clone());
        h.insert(Name::CSEQ, format!("{} REGISTER", reg.cseq));
        match &phone_contact {
            // Contact: * (remove all) passes as is; otherwise our own contact, keeping the
            // phone's requested expiry.
            None if contact.as_deref().map(str::trim) == Some("*") => h.insert(Name::CONTACT, "*"),
            Some(c) => {
                let mut v = format!("<{upstream_contact}>");
                if let Some(e) = c.param("expires") {
                    v += &format!(";expires={e}");
                }
                h.insert(Name::CONTACT, v);
            }
            None => {}
        }
        copy_named(&msg.headers, &mut h, REGISTER_COPY);
        reg.upstream_contact = upstream_contact;
        let line = msg.line.clone();
        let upstream = Message {
            line,
            headers: h,
            body: Bytes::new(),
        };
        let peer = self.upstream_peer();
        reg_upstream(self.regs.get_mut(&key), peer.addr);
        let ctx = self.tx.request(now, upstream, peer);
        self.pending.insert(
            ctx,
            PendingRegister {
                upstream: peer.addr,
                server: tx,
                request: msg,
                binding: key,
            },
        );
        if self.keepalive_at.is_none() {
            self.keepalive_at = Some(now + self.settings.keepalive);
        }
    }

    fn on_response(&mut self, now: Instant, tx: ClientTx, msg: Message) {
        let code = msg.code().unwrap_or(500);
        if code < 200 {
            return;
        }
        let Some(p) = self.pending.remove(&tx) else {
            return;
        };
        self.learn_public_address(&msg);
        if self.settings.upstreams.len() > 1 {
            let sw = self.upstream.answered(now, p.upstream, code);
            self.switched(sw);
        }
        let to_tag = crate::message::values(&msg.headers, &Name::TO)
            .next()
            .and_then(|v| name_addr::parse(v))
            .and_then(|n| n.tag().map(str::to_string))
            .unwrap_or_else(|| random_token(8));
        let reason = match &msg.line {
            MessageLine::Response(StatusLine {
                reason: Some(r), ..
            }) => r.to_string(),
            _ => String::new(),
        };
        let mut r = response(&p.request, code, &reason, Some(&to_tag));
        copy_named(&msg.headers, &mut r.headers, RESPONSE_COPY);
        let reg = self.regs.get_mut(&p.binding);
        if let Some(reg) = reg {
            if (200..300).contains(&code) {
                // Our contact's granted expiry becomes the phone's. The registrar lists every
                // binding of the AoR (other phones on a shared line too), often in one header.
                let granted = crate::message::values(&msg.headers, &Name::CONTACT)
                    .filter_map(|v| name_addr::parse_list(v))
                    .flatten()
                    .find(|c| c.uri.contains(&reg.token))
                    .and_then(|c| c.param("expires").and_then(|e| e.parse::<u64>().ok()))
                    .or_else(|| {
                        crate::message::values(&msg.headers, &Name::EXPIRES)
                            .next()
                            .and_then(|e| e.trim().parse().ok())
                    });
                match granted {
                    Some(secs) if secs > 0 && !reg.phone_contact.is_empty() => {
                        r.headers.insert(
                            Name::CONTACT,
                            format!("<{}>;expires={secs}", reg.phone_contact),
                        );
                        reg.state = "registered".into();
                        reg.expires_at = Some(now + Duration::from_secs(secs));
                        reg.last_error = None;
                    }
                    _ => {
                        // Unregistered (expires=0 or Contact: *), or a query.
                        reg.state = "unregistered".into();
                        reg.expires_at = None;
                    }
                }
                tracing::info!(aor = %reg.aor, state = %reg.state, phone = %reg.phone_addr, "registration relayed");
            } else if code == 401 || code == 407 {
                reg.state = "challenged".into();
            } else {
                reg.state = "failed".into();
                reg.last_error = Some(format!("{code} {reason}"));
                tracing::warn!(aor = %reg.aor, code, %reason, "registration refused upstream");
            }
        }
        self.tx.respond(now, p.server, r);
    }

    fn on_timeout(&mut self, now: Instant, tx: ClientTx) {
        let Some(p) = self.pending.remove(&tx) else {
            return;
        };
        if let Some(reg) = self.regs.get_mut(&p.binding) {
            reg.state = "failed".into();
            reg.last_error = Some(format!("no answer from {}", p.upstream));
        }
        tracing::warn!(aor = %aor_of(&p.binding), upstream = %p.upstream, "registration timed out upstream");
        if self.settings.upstreams.len() > 1 {
            let sw = self.upstream.failed(p.upstream, "a registration timed out");
            self.switched(sw);
        }
        let r = response(&p.request, 408, "Request Timeout", Some(&random_token(8)));
        self.tx.respond(now, p.server, r);
    }

    /// What hides LAN addresses from the provider.
    pub(crate) fn hider(&self) -> Hider {
        Hider {
            voice_net: self.settings.voice_net,
            domain: self.settings.domain.clone(),
        }
    }

    /// An OPTIONS health check to `server`.
    fn probe(&mut self, now: Instant, server: SocketAddr) {
        let transport = self.settings.upstream_transport.name().to_ascii_uppercase();
        let text = format!(
            "OPTIONS sip:{server} SIP/2.0\r\nVia: SIP/2.0/{transport} {};branch=z9hG4bK{};rport\r\nMax-Forwards: 70\r\nFrom: <sip:voxgate@{}>;tag={}\r\nTo: <sip:{server}>\r\nCall-ID: {}@voxgate\r\nCSeq: 1 OPTIONS\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n",
            self.wan_advertised(),
            random_token(16),
            self.settings.domain,
            random_token(10),
            random_token(20),
        );
        let Ok((msg, _)) = parse(text.as_bytes(), true) else {
            tracing::warn!(%server, "cannot build a health check");
            return;
        };
        let peer = Peer {
            side: Side::Wan,
            addr: server,
            reliable: self.settings.upstream_transport.reliable(),
        };
        let tx = self.tx.request(now, msg, peer);
        self.probes.insert(tx, server);
    }

    /// Logs a change of provider server; the keepalive stream follows it.
    fn switched(&mut self, switch: Option<Switch>) {
        if let Some(s) = switch {
            if s.back {
                tracing::info!(from = %s.from, to = %s.to, "SIP provider server: back to the preferred one");
            } else {
                tracing::warn!(from = %s.from, to = %s.to, "SIP provider server failed over; registrations move as phones refresh them");
            }
        }
    }

    /// How the router maps the box's SIP socket, learned from `source`. Over UDP it is the
    /// box's public SIP address; over TCP/TLS the connection's mapping differs, so only the
    /// public IP (for media) is taken from STUN.
    fn learn_mapping(&mut self, public: SocketAddr, source: &str) {
        if self.settings.upstream_transport == Transport::Udp && self.public != Some(public) {
            tracing::info!(%public, source, "public SIP address learned");
            self.public = Some(public);
        }
        self.tell_media(public);
    }

    fn tell_media(&mut self, public: SocketAddr) {
        if let IpAddr::V4(v4) = public.ip() {
            if self.public_ip != Some(v4) {
                self.public_ip = Some(v4);
                self.media.public_address(v4);
            }
        }
    }

    /// `received`/`rport` in our top Via tell how the provider sees us through the NAT.
    fn learn_public_address(&mut self, msg: &Message) {
        let Some(via) = msg.top_via() else { return };
        let ip = via
            .params
            .get_val("received")
            .and_then(|r| r.parse::<IpAddr>().ok());
        let port = via
            .params
            .get_val("rport")
            .and_then(|r| r.parse::<u16>().ok());
        if let (Some(ip), Some(port)) = (ip, port) {
            let public = SocketAddr::new(ip, port);
            if self.public != Some(public) {
                tracing::info!(%public, source = "the provider's Via", "public SIP address learned");
                self.public = Some(public);
            }
            self.tell_media(public);
        }
    }
}

/// Topology hiding: rewrites what goes to the provider so that it names no LAN address.
pub struct Hider {
    voice_net: IpNet,
    domain: String,
}

impl Hider {
    /// `text` with every IPv4 address of the voice network replaced by the provider's
    /// domain: what goes to the provider names no LAN address (topology hiding).
    pub(crate) fn hide_lan(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
            out.push_str(&rest[..start]);
            let run = &rest[start..];
            // `%40` (an escaped '@', as in Refer-To's `?Replaces=id%4010.100.0.50`): the
            // escape's two digits are not part of an address.
            if out.ends_with('%') && run.len() > 2 && run.as_bytes()[1].is_ascii_digit() {
                out.push_str(&run[..2]);
                rest = &run[2..];
                continue;
            }
            let len = run
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(run.len());
            let candidate = run[..len].trim_end_matches('.');
            match candidate.parse::<std::net::Ipv4Addr>() {
                Ok(ip) if self.voice_net.contains(&IpAddr::V4(ip)) => {
                    out.push_str(&self.domain);
                    out.push_str(&run[candidate.len()..len]);
                }
                _ => out.push_str(&run[..len]),
            }
            rest = &run[len..];
        }
        out.push_str(rest);
        out
    }

    /// Headers to carry to `to`: towards the provider with LAN addresses hidden, except the
    /// credentials (the digest covers them as the phone wrote them).
    pub(crate) fn carried(&self, mut v: Vec<(String, String)>, to: Side) -> Vec<(String, String)> {
        if to == Side::Wan {
            for (n, val) in &mut v {
                if !n.eq_ignore_ascii_case("authorization")
                    && !n.eq_ignore_ascii_case("proxy-authorization")
                {
                    *val = self.hide_lan(val);
                }
            }
        }
        v
    }

    /// Hides LAN addresses in every header of a response going to the provider.
    pub(crate) fn hide_lan_headers(&self, headers: &mut Headers) {
        let mut out = Headers::new();
        for (n, v) in headers.iter() {
            out.insert(n.clone(), self.hide_lan(v));
        }
        *headers = out;
    }
}
