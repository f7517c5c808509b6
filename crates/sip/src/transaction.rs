//! RFC 3261 section 17 transactions, sans-IO: messages and the current time go in; datagrams
//! to send, events for the B2BUA and the next wake-up come out. No sockets, no clock.
//!
//! Timers A-K on unreliable transports (RFC 3261 table 4) with RFC 6026's Accepted state for
//! INVITE server transactions: a 2xx is retransmitted until its ACK arrives (the ACK for a 2xx
//! is end-to-end and carries its own branch, so it is matched by Call-ID and CSeq).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ezk_sip_types::msg::MessageLine;
use ezk_sip_types::{Method, Name};

use crate::message::{response, Message};

/// RTT estimate (T1).
pub const T1: Duration = Duration::from_millis(500);
/// Longest retransmit interval for non-INVITE requests and INVITE responses (T2).
pub const T2: Duration = Duration::from_secs(4);
/// Longest time a message stays in the network (T4).
pub const T4: Duration = Duration::from_secs(5);

/// Which socket a message uses: the voice LAN or the WAN towards the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Phones.
    Lan,
    /// The provider.
    Wan,
}

/// Where a message comes from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Socket side.
    pub side: Side,
    /// Remote address.
    pub addr: SocketAddr,
    /// Reliable transport (TCP): no retransmissions.
    pub reliable: bool,
}

/// Identifies a client transaction (one request the B2BUA sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTx(pub u64);

/// Identifies a server transaction (one request the B2BUA received).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTx(pub u64);

/// What the transaction layer produces.
#[derive(Debug)]
pub enum Output {
    /// Send these bytes.
    Transmit {
        /// To whom.
        to: Peer,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// A new request arrived (retransmissions are absorbed).
    Request {
        /// Its transaction; answer with [`Transactions::respond`].
        tx: ServerTx,
        /// The request.
        msg: Message,
        /// Who sent it.
        from: Peer,
    },
    /// An ACK for a 2xx, or a request that needs no transaction: the B2BUA handles it.
    Ack {
        /// The ACK.
        msg: Message,
        /// Who sent it.
        from: Peer,
    },
    /// A response to one of our requests (provisional or final, first copy only).
    Response {
        /// Our request's transaction.
        tx: ClientTx,
        /// The response.
        msg: Message,
    },
    /// A 2xx retransmission for an INVITE whose transaction has ended: the B2BUA re-sends
    /// its ACK.
    Stray2xx {
        /// The response.
        msg: Message,
        /// Who sent it.
        from: Peer,
    },
    /// Our request got no final response in time (Timer B or F).
    Timeout {
        /// The request's transaction.
        tx: ClientTx,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Calling,
    Proceeding,
    Completed,
}

struct Client {
    invite: bool,
    /// The request as sent, for retransmissions over UDP until a response ends them (empty
    /// after that, and over TCP).
    bytes: Vec<u8>,
    /// An INVITE's request, for the ACK of a non-2xx final response (dropped after that).
    /// Other requests keep only their bytes: a parsed message was 2.2 KB of heap per REGISTER
    /// relayed, kept for Timer K after its answer (the core bench's registrations held).
    invite_request: Option<Message>,
    /// Its entry in `client_keys`, removed with it.
    key: Option<(String, String)>,
    peer: Peer,
    state: ClientState,
    /// Next retransmission and its interval (Timer A / E).
    retransmit: Option<(Instant, Duration)>,
    /// Give-up time (Timer B / F) or end of Completed (Timer D / K).
    deadline: Instant,
    /// The ACK sent for a non-2xx final response (re-sent on retransmissions).
    ack: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
}

struct Server {
    invite: bool,
    peer: Peer,
    state: ServerState,
    last_response: Option<Vec<u8>>,
    retransmit: Option<(Instant, Duration)>,
    /// End of the current state (Timer H / I / J / L), if any.
    deadline: Option<Instant>,
    call_id: String,
    cseq: u32,
    /// Its entry in `server_keys`, removed with it.
    key: Option<(String, String, String)>,
}

/// The transaction layer.
pub struct Transactions {
    next_id: u64,
    clients: HashMap<ClientTx, Client>,
    /// (branch, method) -> client transaction.
    client_keys: HashMap<(String, String), ClientTx>,
    servers: HashMap<ServerTx, Server>,
    /// (branch, sent-by, method) -> server transaction (ACK maps to INVITE).
    server_keys: HashMap<(String, String, String), ServerTx>,
    /// INVITE server transactions that sent a 2xx, by (Call-ID, CSeq): the end-to-end ACK
    /// finds its transaction here rather than by a scan of all of them.
    accepted: HashMap<(String, u32), ServerTx>,
    /// When each transaction's next timer fires (earliest first). Entries may be stale (the
    /// transaction ended or its timer moved later); they are checked when they come up, so
    /// [`Transactions::poll_timeout`] and [`Transactions::handle_timeout`] never walk every
    /// transaction: at hundreds of calls per second thousands are alive (Timer J keeps a
    /// non-INVITE server transaction for 32 s).
    timers: BinaryHeap<Reverse<(Instant, TxKey)>>,
    out: VecDeque<Output>,
}

/// A transaction in the timer queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum TxKey {
    Client(ClientTx),
    Server(ServerTx),
}

impl Default for Transactions {
    fn default() -> Self {
        Self::new()
    }
}

/// The transaction key of a message: its top Via's branch and sent-by. A request from an
/// RFC 2543 element (no branch, or one without the `z9hG4bK` cookie) gets the key RFC 3261
/// 17.2.3 prescribes for matching it instead: Request-URI, From tag, Call-ID, CSeq number and
/// the whole top Via, which its retransmissions and the ACK of a non-2xx share.
fn branch_of(msg: &Message) -> Option<(String, String)> {
    let (sent_by, branch) = msg.via_key()?;
    match branch {
        Some(b) if b.starts_with("z9hG4bK") => Some((b, sent_by)),
        _ => {
            let MessageLine::Request(line) = &msg.line else {
                return None;
            };
            let uri = format!(
                "{}",
                ezk_sip_types::print::AppendCtx::default_print_ctx(&line.uri)
            );
            let from_tag = crate::message::values(&msg.headers, &Name::FROM)
                .next()
                .and_then(|f| crate::name_addr::parse(f))
                .and_then(|f| f.tag().map(str::to_string))
                .unwrap_or_default();
            let via_text = crate::message::values(&msg.headers, &Name::VIA)
                .next()
                .map(|v| v.to_string())
                .unwrap_or_default();
            let key = format!(
                "rfc2543|{uri}|{from_tag}|{}|{}|{via_text}",
                msg.call_id().unwrap_or_default(),
                msg.cseq().map_or(0, |c| c.cseq)
            );
            Some((key, sent_by))
        }
    }
}

fn method_key(m: &Method) -> String {
    if *m == Method::ACK {
        Method::INVITE.to_string()
    } else {
        m.to_string()
    }
}

impl Transactions {
    /// An empty layer.
    pub fn new() -> Self {
        Transactions {
            next_id: 1,
            clients: HashMap::new(),
            client_keys: HashMap::new(),
            servers: HashMap::new(),
            server_keys: HashMap::new(),
            accepted: HashMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
        }
    }

    /// When `key`'s next timer fires (retransmission or end), if it has one.
    fn next_timer(&self, key: TxKey) -> Option<Instant> {
        match key {
            TxKey::Client(id) => self
                .clients
                .get(&id)
                .map(|c| c.retransmit.map_or(c.deadline, |r| r.0.min(c.deadline))),
            TxKey::Server(id) => {
                self.servers
                    .get(&id)
                    .and_then(|s| match (s.retransmit.map(|r| r.0), s.deadline) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    })
            }
        }
    }

    /// Queues `key`'s next timer (after its timers changed).
    fn arm(&mut self, key: TxKey) {
        if let Some(at) = self.next_timer(key) {
            self.timers.push(Reverse((at, key)));
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Next output to act on.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Transactions::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Number of live transactions (for status and leak tests).
    pub fn len(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends a request in a new client transaction. The request must carry a top Via with a
    /// unique `z9hG4bK` branch. ACKs are not transactions: use [`Transactions::send`].
    pub fn request(&mut self, now: Instant, msg: Message, peer: Peer) -> ClientTx {
        let id = ClientTx(self.id());
        let invite = msg.method() == Some(&Method::INVITE);
        let bytes = msg.to_bytes();
        let key = branch_of(&msg)
            .zip(msg.method())
            .map(|((branch, _), m)| (branch, method_key(m)));
        if let Some(k) = &key {
            self.client_keys.insert(k.clone(), id);
        }
        self.clients.insert(
            id,
            Client {
                invite,
                bytes: if peer.reliable {
                    Vec::new()
                } else {
                    bytes.clone()
                },
                invite_request: invite.then_some(msg),
                key,
                peer,
                state: ClientState::Calling,
                retransmit: (!peer.reliable).then_some((now + T1, T1)),
                deadline: now + 64 * T1,
                ack: None,
            },
        );
        self.arm(TxKey::Client(id));
        self.out.push_back(Output::Transmit { to: peer, bytes });
        id
    }

    /// Sends a message outside any transaction (an ACK for a 2xx, a stateless response).
    pub fn send(&mut self, msg: &Message, to: Peer) {
        self.out.push_back(Output::Transmit {
            to,
            bytes: msg.to_bytes(),
        });
    }

    /// Answers a server transaction. Responses after the final one are ignored.
    pub fn respond(&mut self, now: Instant, tx: ServerTx, msg: Message) {
        let Some(code) = msg.code() else { return };
        let Some(s) = self.servers.get_mut(&tx) else {
            tracing::debug!(?tx, code, "response for an ended transaction dropped");
            return;
        };
        if s.state != ServerState::Proceeding {
            return;
        }
        let bytes = msg.to_bytes();
        self.out.push_back(Output::Transmit {
            to: s.peer,
            bytes: bytes.clone(),
        });
        s.last_response = Some(bytes);
        let unreliable = !s.peer.reliable;
        match (s.invite, code) {
            (_, 100..=199) => {}
            (true, 200..=299) => {
                s.state = ServerState::Accepted;
                s.retransmit = unreliable.then_some((now + T1, T1));
                s.deadline = Some(now + 64 * T1);
                self.accepted.insert((s.call_id.clone(), s.cseq), tx);
            }
            (true, _) => {
                s.state = ServerState::Completed;
                s.retransmit = unreliable.then_some((now + T1, T1));
                s.deadline = Some(now + 64 * T1);
            }
            (false, _) => {
                s.state = ServerState::Completed;
                s.retransmit = None;
                s.deadline = Some(now + if unreliable { 64 * T1 } else { Duration::ZERO });
            }
        }
        self.arm(TxKey::Server(tx));
    }

    /// Feeds a received message.
    pub fn receive(&mut self, now: Instant, msg: Message, from: Peer) {
        match &msg.line {
            MessageLine::Request(_) => self.receive_request(now, msg, from),
            MessageLine::Response(_) => self.receive_response(now, msg, from),
        }
    }

    fn receive_request(&mut self, now: Instant, mut msg: Message, from: Peer) {
        let method = msg.method().cloned().expect("a request");
        let key = branch_of(&msg).map(|(b, sent_by)| (b, sent_by, method_key(&method)));
        if let Some(tx) = key.as_ref().and_then(|k| self.server_keys.get(k)).copied() {
            let s = self.servers.get_mut(&tx).expect("keyed transactions exist");
            if method == Method::ACK {
                if s.invite && s.state == ServerState::Completed {
                    s.state = ServerState::Confirmed;
                    s.retransmit = None;
                    s.deadline = Some(now + if from.reliable { Duration::ZERO } else { T4 });
                    self.arm(TxKey::Server(tx));
                }
                return; // the ACK of a non-2xx belongs to the transaction
            }
            // A retransmitted request: repeat the last response, if any.
            if let Some(last) = &s.last_response {
                self.out.push_back(Output::Transmit {
                    to: s.peer,
                    bytes: last.clone(),
                });
            }
            return;
        }
        if method == Method::ACK {
            // ACK for a 2xx: stop retransmitting the 2xx of the matching INVITE.
            let call_id = msg.call_id().unwrap_or_default();
            let cseq = msg.cseq().map(|c| c.cseq).unwrap_or(0);
            if let Some(tx) = self.accepted.get(&(call_id, cseq)) {
                if let Some(s) = self.servers.get_mut(tx) {
                    if s.state == ServerState::Accepted {
                        s.retransmit = None;
                    }
                }
            }
            self.out.push_back(Output::Ack { msg, from });
            return;
        }
        let id = ServerTx(self.id());
        let invite = method == Method::INVITE;
        // After the keys were taken from the Via as the client wrote it.
        crate::message::stamp_via(&mut msg.headers, from.addr);
        if let Some(k) = &key {
            self.server_keys.insert(k.clone(), id);
        }
        self.servers.insert(
            id,
            Server {
                invite,
                peer: from,
                state: ServerState::Proceeding,
                last_response: None,
                retransmit: None,
                deadline: None,
                call_id: msg.call_id().unwrap_or_default(),
                cseq: msg.cseq().map(|c| c.cseq).unwrap_or(0),
                key,
            },
        );
        if invite {
            // 100 Trying at once stops the phone's INVITE retransmissions (RFC 3261 17.2.1).
            let trying = response(&msg, 100, "Trying", None);
            self.respond(now, id, trying);
        }
        self.out.push_back(Output::Request { tx: id, msg, from });
    }

    fn receive_response(&mut self, now: Instant, msg: Message, from: Peer) {
        let code = msg.code().expect("a response");
        let key = branch_of(&msg)
            .zip(msg.cseq())
            .map(|((b, _), c)| (b, method_key(&c.method)));
        let Some(tx) = key.as_ref().and_then(|k| self.client_keys.get(k)).copied() else {
            if (200..300).contains(&code) && msg.cseq().is_some_and(|c| c.method == Method::INVITE)
            {
                self.out.push_back(Output::Stray2xx { msg, from });
            } else {
                tracing::debug!(code, "response matching no transaction dropped");
            }
            return;
        };
        let c = self.clients.get_mut(&tx).expect("keyed transactions exist");
        match (c.state, code) {
            (ClientState::Calling | ClientState::Proceeding, 100..=199) => {
                c.state = ClientState::Proceeding;
                if c.invite {
                    c.retransmit = None; // Timer A stops on any provisional
                    c.bytes = Vec::new();
                } else if let Some((_, _)) = c.retransmit {
                    c.retransmit = Some((now + T2, T2));
                }
                self.out.push_back(Output::Response { tx, msg });
            }
            (ClientState::Calling | ClientState::Proceeding, 200..=299) if c.invite => {
                // The transaction ends; 2xx retransmissions arrive as Stray2xx.
                self.out.push_back(Output::Response { tx, msg });
                self.remove_client(tx);
            }
            (ClientState::Calling | ClientState::Proceeding, _) => {
                c.state = ClientState::Completed;
                c.retransmit = None;
                c.bytes = Vec::new();
                if let Some(request) = c.invite_request.take() {
                    let ack = ack_for(&request, &msg).to_bytes();
                    self.out.push_back(Output::Transmit {
                        to: c.peer,
                        bytes: ack.clone(),
                    });
                    c.ack = Some(ack);
                    c.deadline = now
                        + if c.peer.reliable {
                            Duration::ZERO
                        } else {
                            32 * Duration::from_secs(1)
                        };
                } else {
                    c.deadline = now + if c.peer.reliable { Duration::ZERO } else { T4 };
                }
                self.out.push_back(Output::Response { tx, msg });
            }
            (ClientState::Completed, _) => {
                // A retransmitted final response: re-send the ACK (INVITE), absorb otherwise.
                if let Some(ack) = &c.ack {
                    self.out.push_back(Output::Transmit {
                        to: c.peer,
                        bytes: ack.clone(),
                    });
                }
            }
        }
        self.arm(TxKey::Client(tx));
    }

    fn remove_client(&mut self, tx: ClientTx) {
        if let Some(k) = self.clients.remove(&tx).and_then(|c| c.key) {
            self.client_keys.remove(&k);
        }
    }

    fn remove_server(&mut self, tx: ServerTx) {
        if let Some(s) = self.servers.remove(&tx) {
            if let Some(k) = s.key {
                if self.server_keys.get(&k) == Some(&tx) {
                    self.server_keys.remove(&k);
                }
            }
            let a = (s.call_id, s.cseq);
            if self.accepted.get(&a) == Some(&tx) {
                self.accepted.remove(&a);
            }
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            due.push(key);
        }
        due.sort_unstable();
        due.dedup();
        for key in due {
            match key {
                TxKey::Client(id) => self.client_timers(now, id),
                TxKey::Server(id) => self.server_timers(now, id),
            }
            // Still alive: queue its next timer (an entry that came up early re-arms here).
            self.arm(key);
        }
    }

    fn client_timers(&mut self, now: Instant, id: ClientTx) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if now >= c.deadline {
            if c.state != ClientState::Completed {
                self.out.push_back(Output::Timeout { tx: id });
            }
            self.remove_client(id);
            return;
        }
        if let Some((at, interval)) = c.retransmit {
            if now >= at {
                self.out.push_back(Output::Transmit {
                    to: c.peer,
                    bytes: c.bytes.clone(),
                });
                let next = if c.invite {
                    interval * 2
                } else {
                    (interval * 2).min(T2)
                };
                c.retransmit = Some((now + next, next));
            }
        }
    }

    fn server_timers(&mut self, now: Instant, id: ServerTx) {
        let Some(s) = self.servers.get_mut(&id) else {
            return;
        };
        if let Some(at) = s.deadline {
            if now >= at {
                if s.state == ServerState::Completed && s.invite {
                    tracing::warn!(call_id = %s.call_id, "no ACK for a final response (Timer H)");
                }
                self.remove_server(id);
                return;
            }
        }
        if let Some((at, interval)) = s.retransmit {
            if now >= at {
                if let Some(last) = &s.last_response {
                    self.out.push_back(Output::Transmit {
                        to: s.peer,
                        bytes: last.clone(),
                    });
                }
                let next = (interval * 2).min(T2);
                s.retransmit = Some((now + next, next));
            }
        }
    }
}

/// The ACK a client INVITE transaction sends for a non-2xx final response (RFC 3261
/// 17.1.1.3): same Request-URI, Call-ID, From, CSeq number and top Via as the INVITE, To from
/// the response.
pub fn ack_for(invite: &Message, resp: &Message) -> Message {
    let mut headers = crate::message::Headers::new();
    if let Some(v) = crate::message::values(&invite.headers, &Name::VIA).next() {
        headers.insert(Name::VIA, v.clone());
    }
    for name in [Name::FROM, Name::CALL_ID, Name::ROUTE] {
        for v in crate::message::values(&invite.headers, &name) {
            headers.insert(name.clone(), v.clone());
        }
    }
    for v in crate::message::values(&resp.headers, &Name::TO) {
        headers.insert(Name::TO, v.clone());
    }
    let n = invite.cseq().map(|c| c.cseq).unwrap_or(1);
    headers.insert(Name::CSEQ, format!("{n} ACK"));
    headers.insert(Name::MAX_FORWARDS, "70");
    let line = match &invite.line {
        MessageLine::Request(r) => MessageLine::Request(ezk_sip_types::msg::RequestLine {
            method: Method::ACK,
            uri: r.uri.clone(),
        }),
        other => other.clone(),
    };
    Message {
        line,
        headers,
        body: bytes::Bytes::new(),
    }
}
