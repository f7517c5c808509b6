//! What the box lets through, decided in one place: the provider profile and the configuration
//! become a list of [`Flow`]s (what reviewers sign off) and the rules that implement them.

use std::net::IpAddr;

use config::model::{KernelPath, WanMode, MEDIA_MARK, MEDIA_MARK_MASK};
use config::profile::Protocol;
use config::types::PortRange;
use config::Loaded;
use ipnet::IpNet;
use serde::Serialize;

use crate::ir::{Addr, Chain, CtTimeout, Match, Rule, Set, Stmt, Table, L4};

/// Which chain a flow is decided in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// To the box itself.
    Input,
    /// Through the box.
    Forward,
    /// From the box itself.
    Output,
}

/// One permitted flow, as a reviewer reads it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Flow {
    /// Chain.
    pub direction: Direction,
    /// Who may send (zone, interface or network set).
    pub from: String,
    /// To whom.
    pub to: String,
    /// `udp`, `tcp`, `udp/tcp` or `icmp`.
    pub protocol: String,
    /// Destination ports (`-` for ICMP).
    pub ports: String,
    /// Why.
    pub purpose: String,
    /// The profile or config entry it comes from.
    pub source: String,
}

/// The generated ruleset with the flows it permits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The nftables table.
    pub table: Table,
    /// Every permitted flow, in rule order.
    pub flows: Vec<Flow>,
    /// Named network sets: (set, networks, where they come from).
    pub networks: Vec<(String, Vec<IpNet>, String)>,
}

/// Limits on new flows from one WAN source (per second, burst).
const FLOOD_RATE: u32 = 20;
const FLOOD_BURST: u32 = 40;

fn l4s(protocols: &[Protocol]) -> Vec<L4> {
    let mut v: Vec<L4> = protocols
        .iter()
        .map(|p| match p {
            Protocol::Udp => L4::Udp,
            Protocol::Tcp => L4::Tcp,
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

fn proto_text(p: &[L4]) -> String {
    p.iter()
        .map(|p| match p {
            L4::Udp => "udp",
            L4::Tcp => "tcp",
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn ports_text(p: &[PortRange]) -> String {
    p.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Splits networks into sorted, de-duplicated IPv4 and IPv6 lists.
fn split(nets: impl IntoIterator<Item = IpNet>) -> (Vec<IpNet>, Vec<IpNet>) {
    let mut all: Vec<IpNet> = nets.into_iter().map(|n| n.trunc()).collect();
    all.sort();
    all.dedup();
    // An interval set rejects overlapping elements: fold what is covered by another entry.
    let all = IpNet::aggregate(&all);
    all.into_iter().partition(|n| matches!(n, IpNet::V4(_)))
}

struct Builder {
    input: Vec<Rule>,
    forward: Vec<Rule>,
    output: Vec<Rule>,
    flows: Vec<Flow>,
}

/// A set of networks usable as a rule operand: its IPv4 and IPv6 halves.
struct NetSet {
    v4: Option<String>,
    v6: Option<String>,
}

impl Builder {
    /// Adds an accept rule (one per address family the endpoints need) and its flow.
    #[allow(clippy::too_many_arguments)]
    fn allow(
        &mut self,
        dir: Direction,
        (from_label, from): (&str, Vec<Match>),
        (to_label, to): (&str, Vec<Match>),
        nets: Option<(&NetSet, bool)>,
        proto: &[L4],
        ports: &[PortRange],
        purpose: &str,
        source: &str,
    ) {
        let mut base = from;
        base.extend(to);
        let mut variants: Vec<Vec<Match>> = Vec::new();
        match nets {
            None => variants.push(base.clone()),
            Some((set, is_dest)) => {
                for (name, v6) in [(&set.v4, false), (&set.v6, true)] {
                    if let Some(name) = name {
                        let a = Addr::Set(name.clone(), v6);
                        let mut m = base.clone();
                        m.push(if is_dest {
                            Match::Daddr(a)
                        } else {
                            Match::Saddr(a)
                        });
                        variants.push(m);
                    }
                }
            }
        }
        for mut m in variants {
            if !proto.is_empty() {
                m.push(Match::Proto(proto.to_vec()));
            }
            if !ports.is_empty() {
                m.push(Match::Dport(ports.to_vec()));
            }
            let rule = Rule {
                matches: m,
                stmts: vec![Stmt::Counter, Stmt::Accept],
                comment: format!("{purpose} [{source}]"),
            };
            match dir {
                Direction::Input => self.input.push(rule),
                Direction::Forward => self.forward.push(rule),
                Direction::Output => self.output.push(rule),
            }
        }
        self.flows.push(Flow {
            direction: dir,
            from: from_label.to_string(),
            to: to_label.to_string(),
            protocol: if proto.is_empty() {
                "any".into()
            } else {
                proto_text(proto)
            },
            ports: if ports.is_empty() {
                "any".into()
            } else {
                ports_text(ports)
            },
            purpose: purpose.to_string(),
            source: source.to_string(),
        });
    }
}

fn single(p: u16) -> Vec<PortRange> {
    vec![PortRange::single(p)]
}

/// Builds the ruleset for a validated configuration and its provider profile.
pub fn generate(l: &Loaded) -> Policy {
    let c = &l.config;
    let p = &l.profile;
    let wan = c.interfaces.wan.device.clone();
    let lan = c.interfaces.lan.voice_device();
    let lan_net: IpNet = c.interfaces.lan.address.network().into();
    let pname = format!("profile {}", p.name);
    let udp = [L4::Udp];
    let tcp = [L4::Tcp];
    let both = [L4::Udp, L4::Tcp];

    // Named sets.
    let mut sets: Vec<Set> = Vec::new();
    let mut networks = Vec::new();
    let mut named = |name: &str, nets: Vec<IpNet>, comment: String| -> NetSet {
        let (v4, v6) = split(nets);
        networks.push((
            name.to_string(),
            v4.iter().chain(v6.iter()).copied().collect(),
            comment.clone(),
        ));
        let mut ns = NetSet { v4: None, v6: None };
        for (elements, v6) in [(v4, false), (v6, true)] {
            if elements.is_empty() {
                continue;
            }
            let set_name = format!("{name}_{}", if v6 { "v6" } else { "v4" });
            sets.push(Set {
                name: set_name.clone(),
                v6,
                elements,
                dynamic_timeout: None,
                comment: comment.clone(),
            });
            if v6 {
                ns.v6 = Some(set_name);
            } else {
                ns.v4 = Some(set_name);
            }
        }
        ns
    };
    let provider_nets: Vec<IpNet> = p
        .networks
        .iter()
        .map(|n| n.cidr.0)
        .chain(c.provider.overrides.extra_networks.iter().map(|n| n.0))
        .collect();
    let provider = named(
        "provider",
        provider_nets,
        format!(
            "{} published networks ({} revision {}){}",
            p.title,
            pname,
            p.revision,
            if c.provider.overrides.extra_networks.is_empty() {
                String::new()
            } else {
                " + config provider.overrides.extra_networks".into()
            }
        ),
    );
    let mut ssh_nets: Vec<IpNet> = c.management.ssh_from.iter().map(|n| n.0).collect();
    if let Some(m) = &c.interfaces.management {
        ssh_nets.push(m.address.network().into());
    }
    let ssh = (!ssh_nets.is_empty()).then(|| {
        named(
            "ssh",
            ssh_nets,
            "networks allowed to reach SSH (config management.ssh_from, interfaces.management)"
                .into(),
        )
    });
    let dns_up: Vec<IpNet> = c
        .dns
        .upstreams
        .iter()
        .map(|a: &IpAddr| IpNet::from(*a))
        .collect();
    let dns_sets = (c.dns.enabled && !dns_up.is_empty()).then(|| {
        named(
            "dns_upstream",
            dns_up,
            "upstream resolvers (config dns.upstreams)".into(),
        )
    });

    let mut b = Builder {
        input: Vec::new(),
        forward: Vec::new(),
        output: Vec::new(),
        flows: Vec::new(),
    };
    let from_lan = || ("voice LAN", vec![Match::Iif(lan.clone())]);
    let from_wan = || ("WAN", vec![Match::Iif(wan.clone())]);
    let to_box = || ("box", vec![]);
    let from_box = || ("box", vec![]);
    let to_wan = || ("WAN", vec![Match::Oif(wan.clone())]);
    let to_lan = || ("voice LAN", vec![Match::Oif(lan.clone())]);

    // --- input: the voice LAN reaches only the box's own services.
    if c.dhcp.enabled {
        b.allow(
            Direction::Input,
            from_lan(),
            to_box(),
            None,
            &udp,
            &single(67),
            "DHCP: phones get their address",
            "config dhcp.enabled",
        );
    }
    if let Some((_, dev, _)) = c
        .dhcp
        .bootstrap_scope(&c.interfaces.lan)
        .filter(|_| c.dhcp.enabled)
    {
        let port = || ("untagged port", vec![Match::Iif(dev.clone())]);
        b.allow(
            Direction::Input,
            port(),
            to_box(),
            None,
            &udp,
            &single(67),
            "DHCP bootstrap: phones learn the voice VLAN",
            "config dhcp.bootstrap",
        );
        b.allow(
            Direction::Output,
            from_box(),
            ("untagged port", vec![Match::Oif(dev.clone())]),
            None,
            &udp,
            &single(68),
            "DHCP bootstrap: replies to phones on the untagged port",
            "config dhcp.bootstrap",
        );
    }
    if c.dns.enabled {
        b.allow(
            Direction::Input,
            from_lan(),
            to_box(),
            None,
            &both,
            &single(53),
            "DNS: phones resolve through the box",
            "config dns.enabled",
        );
    }
    if c.ntp.enabled {
        b.allow(
            Direction::Input,
            from_lan(),
            to_box(),
            None,
            &udp,
            &single(123),
            "NTP: phones take time from the box",
            "config ntp.enabled",
        );
    }
    if c.sip.enabled {
        b.allow(
            Direction::Input,
            from_lan(),
            to_box(),
            None,
            &both,
            &single(c.sip.lan_port.0),
            "SIP: phones register and call via the box",
            "config sip.lan_port",
        );
    }
    if c.media.enabled {
        b.allow(
            Direction::Input,
            from_lan(),
            to_box(),
            None,
            &udp,
            &[c.media.lan_ports],
            "RTP/RTCP: call audio from phones to the relay",
            "config media.lan_ports",
        );
    }
    if c.turn.enabled {
        b.allow(
            Direction::Input,
            from_lan(),
            to_box(),
            None,
            &both,
            &single(c.turn.port.0),
            "STUN/TURN for softphones",
            "config turn.port",
        );
        b.allow(
            Direction::Input,
            from_lan(),
            to_box(),
            None,
            &udp,
            &[c.turn.relay_ports],
            "TURN relayed media",
            "config turn.relay_ports",
        );
    }
    if let Some(ssh) = &ssh {
        b.allow(
            Direction::Input,
            ("management networks", vec![]),
            to_box(),
            Some((ssh, false)),
            &tcp,
            &single(22),
            "SSH for support engineers",
            "config management.ssh_from",
        );
    }
    // --- input from the WAN: only the provider, only to the box's relays.
    if c.media.enabled {
        b.allow(
            Direction::Input,
            from_wan(),
            to_box(),
            Some((&provider, false)),
            &udp,
            &[c.media.wan_ports],
            "RTP/RTCP: call audio from the provider to the relay",
            "config media.wan_ports",
        );
    }
    if c.sip.enabled {
        // Requests from provider servers the box has not yet talked to (failover, inbound
        // calls after a NAT rebinding); flood-limited per source below.
        b.allow(
            Direction::Input,
            from_wan(),
            to_box(),
            Some((&provider, false)),
            &both,
            &single(c.sip.lan_port.0),
            "SIP: requests from the provider",
            "config sip.lan_port",
        );
    }
    if c.turn.enabled && c.turn.expose_on_wan {
        b.allow(
            Direction::Input,
            from_wan(),
            to_box(),
            None,
            &both,
            &single(c.turn.port.0),
            "STUN/TURN for remote softphones",
            "config turn.expose_on_wan",
        );
        b.allow(
            Direction::Input,
            from_wan(),
            to_box(),
            None,
            &udp,
            &[c.turn.relay_ports],
            "TURN relayed media for remote softphones",
            "config turn.expose_on_wan",
        );
    }
    if c.interfaces.wan.mode == WanMode::Dhcp {
        b.allow(
            Direction::Input,
            from_wan(),
            to_box(),
            None,
            &udp,
            &single(68),
            "DHCP client: the WAN address from the router",
            "config interfaces.wan.mode",
        );
    }

    // --- forward: phones to the provider directly, only if configured.
    if c.firewall.forward_to_provider {
        for s in &p.services {
            let proto = l4s(&s.protocols);
            let mut from = vec![Match::Iif(lan.clone()), Match::Saddr(Addr::Net(lan_net))];
            from.push(Match::Oif(wan.clone()));
            b.allow(
                Direction::Forward,
                ("voice LAN", from),
                ("provider networks", vec![]),
                Some((&provider, true)),
                &proto,
                &s.ports,
                &s.purpose,
                &format!("{pname}: service {}", s.name),
            );
        }
    }

    // --- output: the box's own traffic.
    b.allow(
        Direction::Output,
        from_box(),
        to_lan(),
        None,
        &[],
        &[],
        "the box's services answering and calling phones",
        "config interfaces.lan",
    );
    for s in &p.services {
        let proto = l4s(&s.protocols);
        b.allow(
            Direction::Output,
            from_box(),
            ("provider networks", vec![Match::Oif(wan.clone())]),
            Some((&provider, true)),
            &proto,
            &s.ports,
            &s.purpose,
            &format!("{pname}: service {}", s.name),
        );
    }
    if c.dns.enabled {
        match &dns_sets {
            Some(set) => b.allow(
                Direction::Output,
                from_box(),
                ("DNS upstreams", vec![Match::Oif(wan.clone())]),
                Some((set, true)),
                &both,
                &single(53),
                "DNS forwarding to upstream resolvers",
                "config dns.upstreams",
            ),
            None => b.allow(
                Direction::Output,
                from_box(),
                to_wan(),
                None,
                &both,
                &single(53),
                "DNS forwarding to the resolvers the WAN DHCP lease names",
                "config dns.upstreams (empty)",
            ),
        }
    }
    if c.ntp.enabled && !c.ntp.servers.is_empty() {
        // Servers are host names (pool.ntp.org) whose addresses change: NTP cannot be pinned
        // to a set that is fixed at generation time.
        b.allow(
            Direction::Output,
            from_box(),
            to_wan(),
            None,
            &udp,
            &single(123),
            "NTP client: the box's own time",
            "config ntp.servers",
        );
    }
    if c.interfaces.wan.mode == WanMode::Dhcp {
        b.allow(
            Direction::Output,
            from_box(),
            to_wan(),
            None,
            &udp,
            &single(67),
            "DHCP client: the WAN address from the router",
            "config interfaces.wan.mode",
        );
    }

    let table = assemble(l, &wan, &provider, sets, b);
    let flows = table.1;
    Policy {
        table: table.0,
        flows,
        networks,
    }
}

fn common_head(chain: &str, v6_icmp: bool) -> Vec<Rule> {
    let mut v = vec![
        Rule {
            matches: vec![Match::CtState(vec!["invalid"])],
            stmts: vec![Stmt::Counter, Stmt::Drop],
            comment: format!("{chain}: packets conntrack cannot place"),
        },
        Rule {
            matches: vec![Match::CtState(vec!["established", "related"])],
            stmts: vec![Stmt::Counter, Stmt::Accept],
            comment: format!("{chain}: replies and related traffic of permitted flows"),
        },
    ];
    if v6_icmp {
        v.push(Rule {
            matches: vec![Match::Icmpv6(vec![
                "nd-neighbor-solicit",
                "nd-neighbor-advert",
                "nd-router-advert",
            ])],
            stmts: vec![Stmt::Counter, Stmt::Accept],
            comment: "IPv6 neighbour discovery".into(),
        });
    }
    v
}

fn tail(chain: &str, log: bool) -> Vec<Rule> {
    let mut stmts = vec![Stmt::Counter];
    if log {
        stmts.push(Stmt::Log {
            prefix: format!("voxgate {chain} drop: "),
            per_minute: 10,
        });
    }
    vec![Rule {
        matches: vec![],
        stmts,
        comment: format!("{chain}: count (and log, rate-limited) what the policy drops"),
    }]
}

fn assemble(
    l: &Loaded,
    wan: &str,
    provider: &NetSet,
    mut sets: Vec<Set>,
    b: Builder,
) -> (Table, Vec<Flow>) {
    let c = &l.config;
    let p = &l.profile;
    let log = c.firewall.log_drops;

    // Per-source flood limits on new SIP and STUN flows arriving from the WAN.
    let mut flood_rules = Vec::new();
    let mut flood_ports = Vec::new();
    if c.sip.enabled {
        flood_ports.push(PortRange::single(c.sip.lan_port.0));
    }
    if c.turn.enabled && c.turn.expose_on_wan {
        flood_ports.push(PortRange::single(c.turn.port.0));
    }
    if !flood_ports.is_empty() {
        for v6 in [false, true] {
            let name = format!("flood_{}", if v6 { "v6" } else { "v4" });
            sets.push(Set {
                name: name.clone(),
                v6,
                elements: vec![],
                dynamic_timeout: Some(60),
                comment: format!("WAN sources opening SIP/STUN flows (limit {FLOOD_RATE}/s, burst {FLOOD_BURST})"),
            });
            let m = vec![
                Match::Iif(wan.to_string()),
                Match::CtState(vec!["new"]),
                Match::Proto(vec![L4::Udp, L4::Tcp]),
                Match::Dport(flood_ports.clone()),
            ];
            flood_rules.push(Rule {
                matches: m,
                stmts: vec![Stmt::FloodDrop {
                    set: name,
                    v6,
                    rate: FLOOD_RATE,
                    burst: FLOOD_BURST,
                }],
                comment: "rate limit new SIP/STUN flows per WAN source".into(),
            });
        }
    }

    let mut input = vec![Rule {
        matches: vec![Match::Iif("lo".into())],
        stmts: vec![Stmt::Accept],
        comment: "the box talking to itself".into(),
    }];
    input.extend(common_head("input", true));
    input.push(Rule {
        matches: vec![Match::Icmp(vec![
            "echo-request",
            "destination-unreachable",
            "time-exceeded",
            "parameter-problem",
        ])],
        stmts: vec![Stmt::Counter, Stmt::Accept],
        comment: "ICMP: reachability checks and path MTU discovery".into(),
    });
    input.extend(flood_rules);
    input.extend(b.input);
    input.extend(tail("input", log));

    let mut forward = common_head("forward", false);
    if c.media.enabled && c.media.kernel_path == KernelPath::Auto {
        // Untracked (notrack) datagrams, so after the conntrack rules: only the media relay's
        // own kernel path sets this mark, on RTP of streams it has latched on both sides.
        forward.push(Rule {
            matches: vec![Match::Mark {
                mask: MEDIA_MARK_MASK,
                value: MEDIA_MARK,
            }],
            stmts: vec![Stmt::Counter, Stmt::Accept],
            comment:
                "latched RTP the media relay forwards in the kernel [config media.kernel_path]"
                    .into(),
        });
    }
    forward.extend(b.forward);
    forward.extend(tail("forward", log));

    let mut output = vec![Rule {
        matches: vec![Match::Oif("lo".into())],
        stmts: vec![Stmt::Accept],
        comment: "the box talking to itself".into(),
    }];
    output.extend(common_head("output", true));
    output.push(Rule {
        matches: vec![Match::Icmp(vec![
            "echo-request",
            "echo-reply",
            "destination-unreachable",
            "time-exceeded",
            "parameter-problem",
        ])],
        stmts: vec![Stmt::Counter, Stmt::Accept],
        comment: "ICMP from the box: diagnostics and errors".into(),
    });
    output.extend(b.output);
    output.extend(tail("output", log));

    // Conntrack timeouts and DSCP for voice traffic, before conntrack confirms the flow.
    let udp_to = format!("{}-udp", p.name);
    let tcp_to = format!("{}-tcp", p.name);
    let mut mark = Vec::new();
    for (name, v6) in [(&provider.v4, false), (&provider.v6, true)] {
        let Some(name) = name else { continue };
        for (dir_match, l4, to) in [
            (Match::Daddr(Addr::Set(name.clone(), v6)), L4::Udp, &udp_to),
            (Match::Saddr(Addr::Set(name.clone(), v6)), L4::Udp, &udp_to),
            (Match::Daddr(Addr::Set(name.clone(), v6)), L4::Tcp, &tcp_to),
            (Match::Saddr(Addr::Set(name.clone(), v6)), L4::Tcp, &tcp_to),
        ] {
            mark.push(Rule {
                // `ct state new` first: established packets skip the set lookup entirely.
                matches: vec![
                    Match::CtState(vec!["new"]),
                    dir_match,
                    Match::Proto(vec![l4]),
                ],
                stmts: vec![Stmt::CtTimeout(to.clone())],
                comment: format!(
                    "provider traffic keeps the profile's {} timeout",
                    if l4 == L4::Udp { "UDP" } else { "TCP" }
                ),
            });
        }
    }
    let mut dscp = Vec::new();
    for v6 in [false, true] {
        if c.media.enabled {
            dscp.push(Rule {
                matches: vec![
                    Match::Proto(vec![L4::Udp]),
                    Match::Sport(vec![c.media.lan_ports, c.media.wan_ports]),
                ],
                stmts: vec![Stmt::Dscp { v6, class: "ef" }],
                comment: "DSCP EF on the relay's RTP/RTCP [config media.*_ports]".into(),
            });
        }
        if c.sip.enabled {
            let mut sip_ports = vec![PortRange::single(c.sip.lan_port.0)];
            if p.sip.port.0 != c.sip.lan_port.0 {
                sip_ports.push(PortRange::single(p.sip.port.0));
            }
            sip_ports.sort();
            dscp.push(Rule {
                matches: vec![
                    Match::Proto(vec![L4::Udp, L4::Tcp]),
                    Match::Sport(sip_ports),
                ],
                stmts: vec![Stmt::Dscp { v6, class: "cs3" }],
                comment: "DSCP CS3 on the box's SIP [config sip.lan_port, profile sip.port]".into(),
            });
        }
    }
    let mut chains = vec![
        Chain {
            name: "prerouting_mark",
            kind: "filter",
            hook: "prerouting",
            priority: -150,
            policy: "accept",
            comment: "conntrack timeouts from the provider profile for traffic arriving at or through the box".into(),
            rules: mark.clone(),
        },
        Chain {
            name: "output_mark",
            kind: "route",
            hook: "output",
            priority: -150,
            policy: "accept",
            comment: "conntrack timeouts and DSCP marks for the box's own traffic".into(),
            rules: mark.into_iter().chain(dscp).collect(),
        },
        Chain {
            name: "input",
            kind: "filter",
            hook: "input",
            priority: 0,
            policy: "drop",
            comment: "to the box: the voice LAN reaches only the box's services; the WAN only what the profile and config name".into(),
            rules: input,
        },
        Chain {
            name: "forward",
            kind: "filter",
            hook: "forward",
            priority: 0,
            policy: "drop",
            comment: "through the box: nothing unless config firewall.forward_to_provider, then only to the provider".into(),
            rules: forward,
        },
        Chain {
            name: "output",
            kind: "filter",
            hook: "output",
            priority: 0,
            policy: "drop",
            comment: "from the box: phones, the provider's services, DNS/NTP upstreams".into(),
            rules: output,
        },
    ];
    if c.firewall.forward_to_provider {
        chains.push(Chain {
            name: "postrouting_nat",
            kind: "nat",
            hook: "postrouting",
            priority: 100,
            policy: "accept",
            comment: "phones reach the provider from the box's WAN address".into(),
            rules: vec![Rule {
                matches: vec![
                    Match::Oif(wan.to_string()),
                    Match::Saddr(Addr::Net(c.interfaces.lan.address.network().into())),
                ],
                stmts: vec![Stmt::Masquerade],
                comment:
                    "masquerade the voice LAN on the WAN [config firewall.forward_to_provider]"
                        .into(),
            }],
        });
    }
    let timeouts = vec![
        CtTimeout {
            name: udp_to,
            proto: L4::Udp,
            policy: vec![
                ("unreplied", p.timeouts.udp.as_secs()),
                ("replied", p.timeouts.udp.as_secs()),
            ],
            comment: format!(
                "UDP session timeout {} [profile {} timeouts.udp]",
                p.timeouts.udp, p.name
            ),
        },
        CtTimeout {
            name: tcp_to,
            proto: L4::Tcp,
            policy: vec![("established", p.timeouts.tcp_established.as_secs())],
            comment: format!(
                "TCP established timeout {} [profile {} timeouts.tcp_established]",
                p.timeouts.tcp_established, p.name
            ),
        },
    ];
    let header = vec![
        "voxgate firewall: generated, do not edit by hand.".to_string(),
        format!(
            "site {} / {} revision {} / config digest {}",
            c.site.name,
            p.title,
            p.revision,
            &l.digest[..16.min(l.digest.len())]
        ),
        "".into(),
        "No SIP ALG: no rule here attaches a conntrack helper, and kernels since 6.0 never".into(),
        "assign one automatically, so SIP is never rewritten in the kernel. The box itself".into(),
        "rewrites SIP and SDP as a B2BUA; a helper would corrupt that.".into(),
    ];
    (
        Table {
            header,
            sets,
            timeouts,
            chains,
        },
        b.flows,
    )
}
