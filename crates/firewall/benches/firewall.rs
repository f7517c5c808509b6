//! Firewall benchmark (not a test): generate + validate + apply time for the babblevoice profile
//! and for a synthetic 10 000-network allowlist, and UDP forwarding throughput through the lab
//! box with 7 vs 10 000 provider entries (interval sets should make it flat).
//!
//! Run as root: `cargo bench -p voxgate-firewall --bench firewall`

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab::{addr, Lab, Node};

const BASE: &str = "\
site: {name: bench}
interfaces:
  wan: {device: wan0, mode: static, address: 10.200.0.2/24, gateway: 10.200.0.1}
  lan: {device: lan0, address: 10.100.0.1/24}
firewall: {forward_to_provider: true}
provider:
  profile: PROFILE
";

/// A profile with `n` networks: the lab provider's segment plus n-1 disjoint /28s.
fn synthetic_profile(dir: &Path, n: usize) -> String {
    let mut nets = vec!["  - {cidr: 198.51.100.0/24}".to_string()];
    for i in 0..n - 1 {
        // Every other /28 of 100.64.0.0/10, so that none can be folded into a larger block.
        let base = (100u32 << 24 | 64 << 16) + (i as u32) * 32;
        nets.push(format!(
            "  - {{cidr: {}/28}}",
            std::net::Ipv4Addr::from(base)
        ));
    }
    let lab = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/providers/lab.yaml"
    ))
    .unwrap();
    let start = lab.find("networks:").unwrap();
    let end = lab.find("services:").unwrap();
    let text = format!(
        "{}networks:\n{}\n\n{}",
        &lab[..start],
        nets.join("\n"),
        &lab[end..]
    );
    let path = dir.join(format!("synthetic{n}.yaml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed());
    }
    (median(times), last.unwrap())
}

/// UDP packets per second forwarded phone -> provider during `secs`.
fn throughput(lab: &Lab, secs: f64) -> f64 {
    let rx = lab
        .in_netns(Node::Provider, || UdpSocket::bind("0.0.0.0:5060"))
        .unwrap()
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let tx = lab
        .in_netns(Node::Phone, || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let (s2, g2) = (stop.clone(), got.clone());
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut answered = false;
        while !s2.load(Ordering::Relaxed) {
            if let Ok((_, from)) = rx.recv_from(&mut buf) {
                g2.fetch_add(1, Ordering::Relaxed);
                // One reply makes the flow established, as RTP is: without it every packet
                // of a one-way flow stays `ct state new` and walks the allowlist sets.
                if !answered {
                    let _ = rx.send_to(b"reply", from);
                    answered = true;
                }
            }
        }
    });
    let to = SocketAddr::from((addr::PROVIDER, 5060));
    let payload = [0u8; 172];
    let t0 = Instant::now();
    let counted_from = got.load(Ordering::Relaxed);
    while t0.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            let _ = tx.send_to(&payload, to);
        }
    }
    let n = got.load(Ordering::Relaxed) - counted_from;
    stop.store(true, Ordering::Relaxed);
    receiver.join().unwrap();
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    lab::require_root().unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!("voxgate firewall benchmark (median of 5 runs)\n");
    println!(
        "{:<28} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "allowlist", "networks", "validate", "generate", "nft -c", "apply"
    );
    let mut results = Vec::new();
    for (label, profile) in [
        ("babblevoice (7 networks)", "babblevoice".to_string()),
        ("lab (1 network)", "lab".to_string()),
        (
            "synthetic 10 000 networks",
            synthetic_profile(dir.path(), 10_000),
        ),
    ] {
        let text = BASE.replace("PROFILE", &profile);
        let cfg = dir.path().join("voxgate.yaml");
        std::fs::write(&cfg, &text).unwrap();
        let (t_load, loaded) = time(5, || {
            config::load_ref(&cfg.to_string_lossy()).unwrap_or_else(|e| panic!("{e}"))
        });
        let (t_gen, policy) = time(5, || firewall::generate(&loaded));
        let nft = policy.table.to_nft();
        let lab = Lab::new().unwrap();
        let t_check = lab
            .in_netns(Node::Box, || {
                time(5, || firewall::apply::check(&nft).unwrap()).0
            })
            .unwrap();
        let t_apply = lab
            .in_netns(Node::Box, || {
                time(5, || firewall::apply::apply(&nft).unwrap()).0
            })
            .unwrap();
        let nets: usize = policy
            .networks
            .iter()
            .filter(|n| n.0 == "provider")
            .map(|n| n.1.len())
            .sum();
        println!(
            "{label:<28} {nets:>9} {:>10.1?} {:>10.1?} {:>10.1?} {:>10.1?}",
            t_load, t_gen, t_check, t_apply
        );
        if profile != "babblevoice" {
            results.push((label, lab));
        }
    }
    println!("\nUDP forwarding phone -> provider through the box (172-byte packets, 2 s each, 5 alternating runs)");
    let mut pps = [Vec::new(), Vec::new()];
    for _ in 0..5 {
        for (i, (_, lab)) in results.iter().enumerate() {
            pps[i].push(throughput(lab, 2.0));
        }
    }
    for (i, (label, _)) in results.iter().enumerate() {
        let mean = pps[i].iter().sum::<f64>() / pps[i].len() as f64;
        println!(
            "{label:<28} {mean:>12.0} packets/s  (runs: {:?})",
            pps[i].iter().map(|p| *p as u64).collect::<Vec<_>>()
        );
    }
    let a = pps[0].iter().sum::<f64>();
    let b = pps[1].iter().sum::<f64>();
    println!("ratio 10 000 / 1 network: {:.3}", b / a);
}
