//! Locating the provider's SIP servers (RFC 3263 without NAPTR). Each configured server is
//! `host` or `host:port`: an address is used as written; a name with a port is looked up for
//! its addresses (A); a name without a port is first looked up as SRV
//! (`_sip._udp`, `_sip._tcp` or `_sips._tcp` by transport), its targets taken in priority order
//! (then by weight, heaviest first, so that the order is the same on every box), and only when
//! it has no SRV records for its addresses with the default port. Every address found becomes
//! one server, in that order: the first is the primary, the rest are the fallbacks the box
//! health-checks and fails over to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;

use crate::b2bua::Transport;

/// One server found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Where to send.
    pub addr: SocketAddr,
    /// The name its TLS certificate must carry: the configured host (RFC 5922: the domain,
    /// not the SRV target).
    pub name: String,
    /// How it was found, for the log.
    pub how: String,
}

/// A resolver asking `servers` (the configured upstreams), or the system's resolvers when
/// there are none.
pub fn resolver(servers: &[IpAddr]) -> anyhow::Result<TokioResolver> {
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    let builder = if servers.is_empty() {
        TokioResolver::builder_tokio()?
    } else {
        let config = ResolverConfig::from_parts(
            None,
            vec![],
            NameServerConfigGroup::from_ips_clear(servers, 53, true),
        );
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    Ok(builder.with_options(opts).build())
}

/// The SRV service name for `transport` (RFC 3263 4.1).
fn srv_prefix(transport: Transport) -> &'static str {
    match transport {
        Transport::Udp => "_sip._udp",
        Transport::Tcp => "_sip._tcp",
        Transport::Tls => "_sips._tcp",
    }
}

/// Splits `host[:port]`.
fn split(host: &str) -> (&str, Option<u16>) {
    match host.rsplit_once(':') {
        Some((h, p)) => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => (host, None),
        },
        None => (host, None),
    }
}

async fn addresses(r: &TokioResolver, name: &str) -> Result<Vec<Ipv4Addr>, String> {
    match r
        .ipv4_lookup(format!("{}.", name.trim_end_matches('.')))
        .await
    {
        Ok(l) => Ok(l.iter().map(|a| a.0).collect()),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

/// Every server `hosts` name, in order of preference; and what could not be found, with why.
/// Names are looked up with the resolvers `dns` (the system's when empty); addresses need no
/// lookup.
pub async fn locate(
    dns: &[IpAddr],
    hosts: &[String],
    default_port: u16,
    transport: Transport,
) -> (Vec<Located>, Vec<String>) {
    let mut found: Vec<Located> = Vec::new();
    let mut failed = Vec::new();
    let mut resolver_slot: Option<TokioResolver> = None;
    let push = |found: &mut Vec<Located>, addr: SocketAddr, name: &str, how: String| {
        if !found.iter().any(|l| l.addr == addr) {
            found.push(Located {
                addr,
                name: name.to_string(),
                how,
            });
        }
    };
    for host in hosts {
        let (name, port) = split(host);
        if let Ok(ip) = name.parse::<Ipv4Addr>() {
            let addr = SocketAddr::new(IpAddr::V4(ip), port.unwrap_or(default_port));
            push(&mut found, addr, name, "address".into());
            continue;
        }
        if resolver_slot.is_none() {
            match resolver(dns) {
                Ok(r) => resolver_slot = Some(r),
                Err(e) => {
                    failed.push(format!("{name}: no DNS resolver: {e}"));
                    continue;
                }
            }
        }
        let r = resolver_slot.as_ref().expect("set above");
        if port.is_none() {
            let srv = format!("{}.{}.", srv_prefix(transport), name.trim_end_matches('.'));
            if let Ok(lookup) = r.srv_lookup(srv.as_str()).await {
                let mut records: Vec<_> = lookup.iter().cloned().collect();
                records.sort_by_key(|s| (s.priority(), std::cmp::Reverse(s.weight())));
                let before = found.len();
                for s in records {
                    let target = s.target().to_utf8();
                    match addresses(r, &target).await {
                        Ok(ips) => {
                            for ip in ips {
                                let addr = SocketAddr::new(IpAddr::V4(ip), s.port());
                                let how = format!("SRV {srv} priority {} → {target}", s.priority());
                                push(&mut found, addr, name, how);
                            }
                        }
                        Err(e) => failed.push(e),
                    }
                }
                if found.len() > before {
                    continue;
                }
            }
        }
        match addresses(r, name).await {
            Ok(ips) if !ips.is_empty() => {
                for ip in ips {
                    let addr = SocketAddr::new(IpAddr::V4(ip), port.unwrap_or(default_port));
                    push(&mut found, addr, name, format!("A {name}"));
                }
            }
            Ok(_) => failed.push(format!("{name}: no IPv4 address")),
            Err(e) => failed.push(e),
        }
    }
    (found, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_split() {
        assert_eq!(split("sip.example.net"), ("sip.example.net", None));
        assert_eq!(
            split("sip.example.net:5080"),
            ("sip.example.net", Some(5080))
        );
        assert_eq!(split("192.0.2.1:5060"), ("192.0.2.1", Some(5060)));
        assert_eq!(srv_prefix(Transport::Tls), "_sips._tcp");
    }

    #[tokio::test]
    async fn addresses_need_no_dns() {
        // An unreachable resolver: addresses must not consult it.
        let (found, failed) = locate(
            &["192.0.2.1".parse().unwrap()],
            &["198.51.100.10".into(), "198.51.100.11:5080".into()],
            5060,
            Transport::Udp,
        )
        .await;
        assert!(failed.is_empty());
        assert_eq!(
            found.iter().map(|l| l.addr.to_string()).collect::<Vec<_>>(),
            ["198.51.100.10:5060", "198.51.100.11:5080"]
        );
    }
}
