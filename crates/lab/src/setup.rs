//! Builds the topology:
//!
//! ```text
//! phone eth0 ── lan0 box wan0 ── lan0 isp wan0 ── isp0 inet prov0 ── eth0 provider
//!                                                      inet str0  ── eth0 stranger
//! ```

use crate::addr::*;
use crate::{netns, Lab, LabOptions, Node};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Veth pairs: (node, interface) ── (node, interface).
const LINKS: [(Node, &str, Node, &str); 5] = [
    (Node::Box, "lan0", Node::Phone, "eth0"),
    (Node::Box, "wan0", Node::Isp, "lan0"),
    (Node::Inet, "isp0", Node::Isp, "wan0"),
    (Node::Inet, "prov0", Node::Provider, "eth0"),
    (Node::Inet, "str0", Node::Stranger, "eth0"),
];

/// Every interface address; all are /24.
pub(crate) const ADDRESSES: [(Node, &str, Ipv4Addr); 10] = [
    (Node::Phone, "eth0", PHONE),
    (Node::Box, "lan0", BOX_LAN),
    (Node::Box, "wan0", BOX_WAN),
    (Node::Isp, "lan0", ISP_LAN),
    (Node::Isp, "wan0", ISP_WAN),
    (Node::Inet, "isp0", INET_ISP),
    (Node::Inet, "prov0", INET_PROVIDER),
    (Node::Inet, "str0", INET_STRANGER),
    (Node::Provider, "eth0", PROVIDER),
    (Node::Stranger, "eth0", STRANGER),
];

const DEFAULT_ROUTES: [(Node, Ipv4Addr); 5] = [
    (Node::Phone, BOX_LAN),
    (Node::Box, ISP_LAN),
    (Node::Isp, INET_ISP),
    (Node::Provider, INET_PROVIDER),
    (Node::Stranger, INET_STRANGER),
];

/// The port the broadband router's SIP ALG watches.
const SIP_PORT: u16 = 5060;

/// Runs `ip` with a whitespace-separated argument line (lab names never contain spaces).
fn ip(args: &str) -> Result<()> {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!("ip {args}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

pub(crate) fn build(lab: &mut Lab, opts: &LabOptions) -> Result<()> {
    // The very first `ip netns add` on a machine bind-mounts /run/netns; two at once could
    // stack mounts and hide each other's namespaces, so adds in this process take turns.
    static ADD: Mutex<()> = Mutex::new(());
    for node in Node::ALL {
        let name = lab.netns(node).to_string();
        {
            let _turn = ADD.lock().unwrap_or_else(|e| e.into_inner());
            ip(&format!("netns add {name}"))?;
        }
        lab.created.push(name.clone());
        // Before any interface exists, so none ever waits on IPv6 DAD or chats over IPv6.
        netns::sysctls(
            &name,
            &[
                ("net/ipv6/conf/all/disable_ipv6", "1".into()),
                ("net/ipv6/conf/default/disable_ipv6", "1".into()),
            ],
        )?;
        ip(&format!("-n {name} link set lo up"))?;
    }
    for (i, (a, a_if, b, b_if)) in LINKS.into_iter().enumerate() {
        let (na, nb) = (lab.netns(a), lab.netns(b));
        // Explicit, distinct ifindexes on the two ends: when a veth's ifindex equals its
        // peer's (easy across namespaces), the kernel treats its carrier change as not
        // urgent and reports it up to a second late (NO-CARRIER, operstate DOWN).
        let (ia, ib) = (10 + 2 * i, 11 + 2 * i);
        ip(&format!(
            "-n {na} link add {a_if} index {ia} type veth peer name {b_if} index {ib} netns {nb}"
        ))?;
    }
    for (node, ifname, addr) in ADDRESSES {
        let ns = lab.netns(node);
        ip(&format!("-n {ns} addr add {addr}/24 dev {ifname}"))?;
        ip(&format!("-n {ns} link set {ifname} up"))?;
    }
    for (node, via) in DEFAULT_ROUTES {
        ip(&format!(
            "-n {} route add default via {via}",
            lab.netns(node)
        ))?;
    }
    for node in [Node::Box, Node::Isp, Node::Inet] {
        netns::sysctls(lab.netns(node), &[("net/ipv4/ip_forward", "1".into())])?;
    }

    // The broadband router. Its ruleset goes in first: it puts conntrack to use in the
    // namespace, which the UDP timeout sysctls below belong to.
    let isp = lab.netns(Node::Isp);
    nft(isp, &isp_ruleset(opts))?;
    let t = opts.udp_timeout_secs.to_string();
    netns::sysctls(
        isp,
        &[
            ("net/netfilter/nf_conntrack_udp_timeout", t.clone()),
            ("net/netfilter/nf_conntrack_udp_timeout_stream", t),
        ],
    )?;

    wait_links_up(lab)?;
    for (from, to) in [(Node::Phone, BOX_LAN), (Node::Box, PROVIDER)] {
        if !lab.ping(from, to, Duration::from_secs(2))? {
            bail!("lab self-check failed: {} cannot ping {to}", from.role());
        }
    }
    Ok(())
}

/// Waits (briefly) until every lab interface reports operstate UP, so whatever starts in the
/// lab next sees its links up.
fn wait_links_up(lab: &Lab) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    for node in Node::ALL {
        let ns = lab.netns(node);
        loop {
            let out = Command::new("ip")
                .args(["-n", ns, "-o", "link", "show"])
                .output()?;
            let links = String::from_utf8_lossy(&out.stdout);
            let down: Vec<&str> = links
                .lines()
                .filter(|l| !l.contains(" lo:") && !l.contains("state UP"))
                .collect();
            if out.status.success() && down.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                bail!("links in {ns} not up: {down:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// A home router: masquerade the LAN, forward only LAN→WAN plus replies (no port forwards).
fn isp_ruleset(opts: &LabOptions) -> String {
    let random = if opts.nat_fully_random {
        " fully-random"
    } else {
        ""
    };
    let (helper, assign) = if opts.sip_alg {
        (
            "ct helper sip { type \"sip\" protocol udp; l3proto ip; }".to_string(),
            format!("udp dport {SIP_PORT} ct helper set \"sip\""),
        )
    } else {
        Default::default()
    };
    format!(
        r#"table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" ip saddr 10.200.0.0/24 masquerade{random}
  }}
}}
table ip filter {{
  {helper}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    {assign}
    ct state established,related accept
    iifname "lan0" oifname "wan0" accept
  }}
}}
"#
    )
}

fn nft(ns: &str, ruleset: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(ruleset.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft -f in {ns}: {}\n{ruleset}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
