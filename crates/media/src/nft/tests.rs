//! The kernel path's nft I/O against a real kernel, in the lab's box namespace: what one
//! change costs, and what a call's release and a `voxgate calls` reading cost with many
//! streams in the kernel. Prints its figures (`--nocapture`).

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use super::*;
use crate::kernel::Flow;

fn flow(i: u16) -> Flow {
    Flow {
        addresses: [
            "10.100.0.1".parse().unwrap(),
            "203.0.113.2".parse().unwrap(),
        ],
        ports: [20000 + 2 * i, 30000 + 2 * i],
        peers: [
            SocketAddrV4::new("10.100.0.50".parse().unwrap(), 4000 + 2 * i),
            SocketAddrV4::new("198.51.100.10".parse().unwrap(), 16384 + 2 * i),
        ],
        mux: false,
        events: 1 << 101,
    }
}

fn install(ids: std::ops::Range<u16>) -> Vec<Change> {
    ids.map(|i| Change::Install {
        id: u64::from(i),
        slot: u32::from(i),
        flow: flow(i),
    })
    .collect()
}

fn withdraw(ids: std::ops::Range<u16>) -> Vec<Change> {
    ids.map(|i| Change::Withdraw {
        id: u64::from(i),
        slot: u32::from(i),
        flow: flow(i),
    })
    .collect()
}

/// Elements of the stream map (two per stream in the kernel).
fn elements() -> usize {
    nft(&["list", "map", "ip", kernel::TABLE, "streams"], "")
        .unwrap()
        .matches("jump s")
        .count()
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let x = f();
    (x, t.elapsed())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

#[test]
fn cost_of_kernel_changes_and_readings() {
    lab::require_root().unwrap();
    let lab = lab::Lab::new().unwrap();
    lab.in_netns(lab::Node::Box, || {
        let path = KernelPath::start().unwrap();
        for n in [1u16, 10, 100, 400] {
            let (done, add) = timed(|| apply_changes(&install(0..n)));
            assert!(done.is_empty(), "nft refused an install");
            assert_eq!(elements(), 2 * usize::from(n));

            // `voxgate calls`: one reading of every counter, whatever the number of streams.
            let (counters, read) = timed(read_counters);
            assert_eq!(counters.unwrap().len(), 2 * usize::from(n));

            // A call's release: one stream out, its final counters read, its chains removed;
            // the median of up to five.
            let k = n.min(5);
            let mut ones: Vec<Duration> = (0..k)
                .map(|i| {
                    let (done, d) = timed(|| apply_changes(&withdraw(i..i + 1)));
                    assert!(
                        matches!(
                            &done[..],
                            [Done::Withdrawn {
                                finals: [Some(_), Some(_)],
                                ..
                            }]
                        ),
                        "final counters of the withdrawn stream"
                    );
                    d
                })
                .collect();
            ones.sort();
            let one = ones[ones.len() / 2];
            assert_eq!(elements(), 2 * usize::from(n - k));

            let (done, rest) = timed(|| apply_changes(&withdraw(k..n)));
            assert_eq!(done.len(), usize::from(n - k));
            assert_eq!(elements(), 0);
            let per = |d: Duration, k: u16| {
                if k == 0 {
                    "-".to_string()
                } else {
                    format!("{:.0} µs/stream", d.as_secs_f64() * 1e6 / f64::from(k))
                }
            };
            eprintln!(
                "{n:>4} streams: install in one batch {} ms ({}); read every counter {} ms; \
                 withdraw one (a release, median of {k}) {} ms (slowest {} ms); withdraw the \
                 other {} in one batch {} ms ({})",
                ms(add),
                per(add, n),
                ms(read),
                ms(one),
                ms(ones[ones.len() - 1]),
                n - k,
                ms(rest),
                per(rest, n - k),
            );
        }
        drop(path);
    })
    .unwrap();
}
