//! A small model of the one nftables table voxgate owns, rendered two ways: nft's text syntax
//! (what reviewers read and what is applied) and nft's JSON schema (checked against the
//! `nftables` crate's types). Both come from the same rules, so they cannot disagree.

use std::fmt::Write as _;

use config::types::PortRange;
use ipnet::IpNet;
use serde_json::{json, Value};

/// Name of the table voxgate owns entirely.
pub const TABLE: &str = "voxgate";

/// An address operand: a named set or one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A named set; the bool is true for an IPv6 set.
    Set(String, bool),
    /// A literal network (IPv4 or IPv6).
    Net(IpNet),
}

impl Addr {
    fn v6(&self) -> bool {
        match self {
            Addr::Set(_, v6) => *v6,
            Addr::Net(n) => matches!(n, IpNet::V6(_)),
        }
    }
    fn text(&self) -> String {
        match self {
            Addr::Set(n, _) => format!("@{n}"),
            Addr::Net(n) if n.prefix_len() == n.max_prefix_len() => n.addr().to_string(),
            Addr::Net(n) => n.to_string(),
        }
    }
    fn json(&self) -> Value {
        match self {
            Addr::Set(n, _) => json!(format!("@{n}")),
            Addr::Net(n) if n.prefix_len() == n.max_prefix_len() => json!(n.addr().to_string()),
            Addr::Net(n) => {
                json!({"prefix": {"addr": n.network().to_string(), "len": n.prefix_len()}})
            }
        }
    }
}

/// A transport protocol matched by `meta l4proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum L4 {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl L4 {
    fn name(self) -> &'static str {
        match self {
            L4::Udp => "udp",
            L4::Tcp => "tcp",
        }
    }
}

/// One condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Arrived on this interface.
    Iif(String),
    /// Leaves by this interface.
    Oif(String),
    /// Source address.
    Saddr(Addr),
    /// Destination address.
    Daddr(Addr),
    /// Transport protocol(s).
    Proto(Vec<L4>),
    /// Destination port(s) of the transport header.
    Dport(Vec<PortRange>),
    /// Source port(s) of the transport header.
    Sport(Vec<PortRange>),
    /// Connection-tracking state(s).
    CtState(Vec<&'static str>),
    /// ICMP (IPv4) types.
    Icmp(Vec<&'static str>),
    /// ICMPv6 types.
    Icmpv6(Vec<&'static str>),
    /// The packet mark, masked: `meta mark & mask == value`.
    Mark {
        /// Bits compared.
        mask: u32,
        /// Their wanted value.
        value: u32,
    },
}

/// A statement: what a matching packet gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    /// Count packets and bytes.
    Counter,
    /// Let it through.
    Accept,
    /// Drop it.
    Drop,
    /// Log (at most `per_minute` lines a minute) with a prefix.
    Log {
        /// Log prefix.
        prefix: String,
        /// Rate limit of log lines.
        per_minute: u32,
    },
    /// Drop when a source exceeds `rate`/second (burst `burst`) of new flows, tracked per
    /// source address in the dynamic set `set`.
    FloodDrop {
        /// Dynamic set remembering sources.
        set: String,
        /// IPv6 set.
        v6: bool,
        /// Allowed new flows per second.
        rate: u32,
        /// Burst allowance.
        burst: u32,
    },
    /// Attach a named `ct timeout` policy to the connection.
    CtTimeout(String),
    /// Set the DSCP field (IPv4 or IPv6) to a named class (`ef`, `cs3`).
    Dscp {
        /// IPv6 header.
        v6: bool,
        /// Class name.
        class: &'static str,
    },
    /// Source NAT to the outgoing interface's address.
    Masquerade,
}

/// One rule: conditions, statements and the reason it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Conditions, all of which must hold.
    pub matches: Vec<Match>,
    /// Statements, in order.
    pub stmts: Vec<Stmt>,
    /// Why the rule exists (shown to reviewers, at most 128 bytes in nft).
    pub comment: String,
}

/// A base chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Chain name.
    pub name: &'static str,
    /// `filter`, `nat` or `route`.
    pub kind: &'static str,
    /// Netfilter hook.
    pub hook: &'static str,
    /// Priority (number).
    pub priority: i32,
    /// Default verdict.
    pub policy: &'static str,
    /// What the chain is for.
    pub comment: String,
    /// Rules, in order.
    pub rules: Vec<Rule>,
}

/// A named set of addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// Set name.
    pub name: String,
    /// IPv6 addresses.
    pub v6: bool,
    /// Elements (sorted); interval sets take networks.
    pub elements: Vec<IpNet>,
    /// Dynamic set with entries expiring after this many seconds (for per-source limits).
    pub dynamic_timeout: Option<u32>,
    /// Where the entries come from.
    pub comment: String,
}

/// A `ct timeout` policy object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtTimeout {
    /// Object name.
    pub name: String,
    /// Transport protocol.
    pub proto: L4,
    /// Connection state → seconds.
    pub policy: Vec<(&'static str, u64)>,
    /// Where the values come from.
    pub comment: String,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Header comment lines (without `#`).
    pub header: Vec<String>,
    /// Named sets.
    pub sets: Vec<Set>,
    /// Conntrack timeout policies.
    pub timeouts: Vec<CtTimeout>,
    /// Base chains.
    pub chains: Vec<Chain>,
}

fn list<T>(items: &[T], one: impl Fn(&T) -> String) -> String {
    match items {
        [x] => one(x),
        _ => format!(
            "{{ {} }}",
            items.iter().map(one).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn ports_json(ports: &[PortRange]) -> Value {
    let one = |p: &PortRange| {
        if p.first == p.last {
            json!(p.first)
        } else {
            json!({"range": [p.first, p.last]})
        }
    };
    match ports {
        [p] => one(p),
        _ => json!({"set": ports.iter().map(one).collect::<Vec<_>>()}),
    }
}

fn strs_json(items: &[&str]) -> Value {
    match items {
        [x] => json!(x),
        _ => json!({"set": items}),
    }
}

/// nft limits comments to 128 bytes; cut on a character boundary.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(128);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn quote(s: &str) -> String {
    format!("\"{}\"", clip(s).replace('"', "'"))
}

impl Match {
    fn text(&self) -> String {
        match self {
            Match::Iif(i) => format!("iifname {}", quote(i)),
            Match::Oif(i) => format!("oifname {}", quote(i)),
            Match::Saddr(a) => format!("{} saddr {}", if a.v6() { "ip6" } else { "ip" }, a.text()),
            Match::Daddr(a) => format!("{} daddr {}", if a.v6() { "ip6" } else { "ip" }, a.text()),
            Match::Proto(p) => format!("meta l4proto {}", list(p, |p| p.name().to_string())),
            Match::Dport(p) => format!("th dport {}", list(p, |p| p.to_string())),
            Match::Sport(p) => format!("th sport {}", list(p, |p| p.to_string())),
            // Comma-joined flags: one bitmask test, as nft itself prints it.
            Match::CtState(s) => format!("ct state {}", s.join(",")),
            Match::Icmp(t) => format!("icmp type {}", list(t, |s| s.to_string())),
            Match::Icmpv6(t) => format!("icmpv6 type {}", list(t, |s| s.to_string())),
            Match::Mark { mask, value } => format!("meta mark & {mask:#010x} == {value:#010x}"),
        }
    }

    fn json(&self) -> Value {
        let m = |left: Value, right: Value, op: &str| json!({"match": {"op": op, "left": left, "right": right}});
        let payload =
            |proto: &str, field: &str| json!({"payload": {"protocol": proto, "field": field}});
        match self {
            Match::Iif(i) => m(json!({"meta": {"key": "iifname"}}), json!(clip(i)), "=="),
            Match::Oif(i) => m(json!({"meta": {"key": "oifname"}}), json!(clip(i)), "=="),
            Match::Saddr(a) => m(
                payload(if a.v6() { "ip6" } else { "ip" }, "saddr"),
                a.json(),
                "==",
            ),
            Match::Daddr(a) => m(
                payload(if a.v6() { "ip6" } else { "ip" }, "daddr"),
                a.json(),
                "==",
            ),
            Match::Proto(p) => {
                let names: Vec<&str> = p.iter().map(|p| p.name()).collect();
                m(json!({"meta": {"key": "l4proto"}}), strs_json(&names), "==")
            }
            Match::Dport(p) => m(payload("th", "dport"), ports_json(p), "=="),
            Match::Sport(p) => m(payload("th", "sport"), ports_json(p), "=="),
            Match::CtState(s) => m(json!({"ct": {"key": "state"}}), json!(s), "in"),
            Match::Icmp(t) => m(payload("icmp", "type"), strs_json(t), "=="),
            Match::Icmpv6(t) => m(payload("icmpv6", "type"), strs_json(t), "=="),
            Match::Mark { mask, value } => m(
                json!({"&": [{"meta": {"key": "mark"}}, mask]}),
                json!(value),
                "==",
            ),
        }
    }
}

impl Stmt {
    fn text(&self) -> String {
        match self {
            Stmt::Counter => "counter".into(),
            Stmt::Accept => "accept".into(),
            Stmt::Drop => "drop".into(),
            Stmt::Log { prefix, per_minute } => {
                format!("limit rate {per_minute}/minute burst 5 packets log prefix {} level info", quote(prefix))
            }
            Stmt::FloodDrop { set, v6, rate, burst } => format!(
                "add @{set} {{ {} saddr limit rate over {rate}/second burst {burst} packets }} counter drop",
                if *v6 { "ip6" } else { "ip" }
            ),
            Stmt::CtTimeout(n) => format!("ct timeout set {}", quote(n)),
            Stmt::Dscp { v6, class } => format!("{} dscp set {class}", if *v6 { "ip6" } else { "ip" }),
            Stmt::Masquerade => "masquerade".into(),
        }
    }

    fn json(&self) -> Vec<Value> {
        match self {
            Stmt::Counter => vec![json!({"counter": null})],
            Stmt::Accept => vec![json!({"accept": null})],
            Stmt::Drop => vec![json!({"drop": null})],
            Stmt::Log { prefix, per_minute } => vec![
                json!({"limit": {"rate": per_minute, "per": "minute", "burst": 5, "burst_unit": "packets"}}),
                json!({"log": {"prefix": clip(prefix), "level": "info"}}),
            ],
            Stmt::FloodDrop {
                set,
                v6,
                rate,
                burst,
            } => vec![
                json!({"set": {
                    "op": "add",
                    "elem": {"payload": {"protocol": if *v6 { "ip6" } else { "ip" }, "field": "saddr"}},
                    "set": format!("@{set}"),
                    "stmt": [{"limit": {"rate": rate, "per": "second", "burst": burst, "burst_unit": "packets", "inv": true}}]
                }}),
                json!({"counter": null}),
                json!({"drop": null}),
            ],
            Stmt::CtTimeout(n) => vec![json!({"ct timeout": n})],
            Stmt::Dscp { v6, class } => vec![json!({"mangle": {
                "key": {"payload": {"protocol": if *v6 { "ip6" } else { "ip" }, "field": "dscp"}},
                "value": class
            }})],
            Stmt::Masquerade => vec![json!({"masquerade": null})],
        }
    }
}

impl Rule {
    fn text(&self) -> String {
        let mut parts: Vec<String> = self.matches.iter().map(Match::text).collect();
        parts.extend(self.stmts.iter().map(Stmt::text));
        format!("{} comment {}", parts.join(" "), quote(&self.comment))
    }
}

impl Table {
    /// The table in nft's text syntax: the whole file that `nft -f` applies atomically. It first
    /// creates-then-deletes the table so that the new definition replaces the old one in the
    /// same transaction, whether or not it existed.
    pub fn to_nft(&self) -> String {
        let mut o = String::new();
        for h in &self.header {
            let _ = writeln!(o, "# {h}");
        }
        let _ = writeln!(
            o,
            "\ntable inet {TABLE}\ndelete table inet {TABLE}\n\ntable inet {TABLE} {{"
        );
        for s in &self.sets {
            let _ = writeln!(o, "\t# {}", s.comment);
            let _ = writeln!(o, "\tset {} {{", s.name);
            let _ = writeln!(
                o,
                "\t\ttype {}",
                if s.v6 { "ipv6_addr" } else { "ipv4_addr" }
            );
            match s.dynamic_timeout {
                Some(t) => {
                    let _ = writeln!(
                        o,
                        "\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout {t}s"
                    );
                }
                None => {
                    let _ = writeln!(o, "\t\tflags interval");
                }
            }
            if !s.elements.is_empty() {
                let els: Vec<String> = s.elements.iter().map(|n| Addr::Net(*n).text()).collect();
                let _ = writeln!(o, "\t\telements = {{ {} }}", els.join(",\n\t\t\t     "));
            }
            let _ = writeln!(o, "\t}}\n");
        }
        for t in &self.timeouts {
            let _ = writeln!(o, "\t# {}", t.comment);
            let _ = writeln!(o, "\tct timeout {} {{", t.name);
            let _ = writeln!(o, "\t\tprotocol {}", t.proto.name());
            let _ = writeln!(o, "\t\tl3proto inet");
            let pol: Vec<String> = t.policy.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(o, "\t\tpolicy = {{ {} }}", pol.join(", "));
            let _ = writeln!(o, "\t}}\n");
        }
        for (i, c) in self.chains.iter().enumerate() {
            let _ = writeln!(o, "\t# {}", c.comment);
            let _ = writeln!(o, "\tchain {} {{", c.name);
            let _ = writeln!(
                o,
                "\t\ttype {} hook {} priority {}; policy {};",
                c.kind, c.hook, c.priority, c.policy
            );
            for r in &c.rules {
                let _ = writeln!(o, "\t\t{}", r.text());
            }
            let _ = writeln!(
                o,
                "\t}}{}",
                if i + 1 < self.chains.len() { "\n" } else { "" }
            );
        }
        o.push_str("}\n");
        o
    }

    /// The table in nft's JSON schema (`nft -j -f` input): the same create-delete-add
    /// transaction as [`Table::to_nft`], checked against the `nftables` crate's types.
    pub fn to_json(&self) -> anyhow::Result<Value> {
        let fam = "inet";
        let mut cmds = vec![
            json!({"add": {"table": {"family": fam, "name": TABLE}}}),
            json!({"delete": {"table": {"family": fam, "name": TABLE}}}),
            json!({"add": {"table": {"family": fam, "name": TABLE}}}),
        ];
        for s in &self.sets {
            let mut set = json!({
                "family": fam, "table": TABLE, "name": s.name,
                "type": if s.v6 { "ipv6_addr" } else { "ipv4_addr" },
                "comment": clip(&s.comment),
            });
            match s.dynamic_timeout {
                Some(t) => {
                    // nft 1.0.6's JSON parser knows no "dynamic" flag; it marks the set
                    // dynamic itself because a rule adds to it from the packet path.
                    set["flags"] = json!(["timeout"]);
                    set["timeout"] = json!(t);
                    set["size"] = json!(65535);
                }
                None => set["flags"] = json!(["interval"]),
            }
            if !s.elements.is_empty() {
                set["elem"] = json!(s
                    .elements
                    .iter()
                    .map(|n| Addr::Net(*n).json())
                    .collect::<Vec<_>>());
            }
            cmds.push(json!({"add": {"set": set}}));
        }
        for t in &self.timeouts {
            let pol: serde_json::Map<String, Value> = t
                .policy
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            cmds.push(json!({"add": {"ct timeout": {
                "family": fam, "table": TABLE, "name": t.name,
                "protocol": t.proto.name(), "l3proto": "inet", "policy": pol,
            }}}));
        }
        for c in &self.chains {
            cmds.push(json!({"add": {"chain": {
                "family": fam, "table": TABLE, "name": c.name,
                "type": c.kind, "hook": c.hook, "prio": c.priority, "policy": c.policy,
            }}}));
            for r in &c.rules {
                let mut expr: Vec<Value> = r.matches.iter().map(Match::json).collect();
                expr.extend(r.stmts.iter().flat_map(Stmt::json));
                cmds.push(json!({"add": {"rule": {
                    "family": fam, "table": TABLE, "chain": c.name,
                    "expr": expr, "comment": clip(&r.comment),
                }}}));
            }
        }
        // Every command is checked against the nftables crate's schema types, except `ct
        // timeout` objects: the crate models them as one state/value pair, while nft reads a
        // `policy` map of state -> seconds (parser_json.c), which is what is emitted here.
        for c in &cmds {
            if c["add"].get("ct timeout").is_some() {
                continue;
            }
            if let Err(e) = serde_json::from_value::<nftables::schema::NfObject>(c.clone()) {
                anyhow::bail!("generated JSON does not fit the nftables schema ({e}): {c}");
            }
        }
        Ok(json!({"nftables": cmds}))
    }
}
