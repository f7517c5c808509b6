//! The network-namespace lab: a phone, the box, a broadband router with NAT, "the internet",
//! the VoIP provider and an unrelated stranger, each in its own namespace joined by veths.
//!
//! Every [`Lab`] has its own namespace names (`vglab-<pid>-<n>-<role>`), so tests can build labs
//! in parallel, and always removes them again: on drop, on panic unwind, and — for labs of a
//! process that was killed — through [`cleanup_stale`], which [`Lab::new`] calls.
//! Nothing is ever changed in the caller's own network namespace.

#![warn(missing_docs)]

mod netns;
mod process;
mod setup;

use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use process::LabProcess;

/// The lab's fixed addresses.
pub mod addr {
    use std::net::Ipv4Addr;
    /// The phone, `eth0` in the phone namespace (10.100.0.0/24, the voice LAN).
    pub const PHONE: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 50);
    /// The box on the voice LAN (`lan0`); the phone's default gateway.
    pub const BOX_LAN: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);
    /// The box on the broadband router's LAN (`wan0`, 10.200.0.0/24).
    pub const BOX_WAN: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
    /// The broadband router on its LAN (`lan0`); the box's default gateway.
    pub const ISP_LAN: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    /// The broadband router's public address (`wan0`): what the internet sees after NAT.
    pub const ISP_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
    /// The internet router towards the broadband router (`isp0`).
    pub const INET_ISP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    /// The internet router towards the provider (`prov0`).
    pub const INET_PROVIDER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    /// The internet router towards the stranger (`str0`).
    pub const INET_STRANGER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// The VoIP provider (`eth0` in the provider namespace).
    pub const PROVIDER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    /// An unrelated internet host (`eth0` in the stranger namespace).
    pub const STRANGER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
}

/// One namespace of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// A phone on the voice LAN.
    Phone,
    /// The appliance, where `voxgate run` goes.
    Box,
    /// The broadband router: NAT, short UDP timeout, optional SIP ALG.
    Isp,
    /// A plain router standing for the internet.
    Inet,
    /// The VoIP provider.
    Provider,
    /// An unrelated internet host, for negative tests.
    Stranger,
}

impl Node {
    /// Every node, in creation order.
    pub const ALL: [Node; 6] = [
        Node::Phone,
        Node::Box,
        Node::Isp,
        Node::Inet,
        Node::Provider,
        Node::Stranger,
    ];

    /// The role's short name, the last part of its namespace name.
    pub fn role(self) -> &'static str {
        match self {
            Node::Phone => "phone",
            Node::Box => "box",
            Node::Isp => "isp",
            Node::Inet => "inet",
            Node::Provider => "provider",
            Node::Stranger => "stranger",
        }
    }
}

/// How the broadband router behaves.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Masquerade with `fully-random` source ports, like the meanest carrier-grade NATs.
    pub nat_fully_random: bool,
    /// Run the kernel's SIP ALG (an nftables `ct helper` of type "sip" on UDP port 5060).
    pub sip_alg: bool,
    /// The router's UDP conntrack timeouts (plain and stream), in seconds.
    pub udp_timeout_secs: u32,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            nat_fully_random: false,
            sip_alg: false,
            udp_timeout_secs: 30,
        }
    }
}

/// A running lab. Dropping it kills every process in its namespaces and deletes them.
pub struct Lab {
    names: Vec<String>,
    /// Namespaces actually added, so a half-built lab tears down exactly what exists.
    created: Vec<String>,
    /// Pids spawned through [`Lab::spawn`] and not yet reaped (shared with each [`LabProcess`]).
    live: Arc<Mutex<HashSet<u32>>>,
}

const PREFIX: &str = "vglab-";
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Builds a lab with the default [`LabOptions`].
    pub fn new() -> Result<Lab> {
        Lab::with(LabOptions::default())
    }

    /// Builds a lab, checks that the phone reaches the box and the box reaches the provider,
    /// and returns it; on any failure everything built so far is removed again.
    pub fn with(opts: LabOptions) -> Result<Lab> {
        require_root()?;
        if let Err(e) = cleanup_stale() {
            eprintln!("voxgate-lab: cleaning up stale namespaces: {e:#}");
        }
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let mut lab = Lab {
            names: Node::ALL
                .iter()
                .map(|node| format!("{PREFIX}{pid}-{n}-{}", node.role()))
                .collect(),
            created: Vec::new(),
            live: Arc::default(),
        };
        setup::build(&mut lab, &opts)?;
        Ok(lab)
    }

    /// The name of the node's network namespace.
    pub fn netns(&self, node: Node) -> &str {
        &self.names[node as usize]
    }

    /// A command that runs `program` inside the node's namespace (`ip netns exec NS program`).
    /// Start it with [`Lab::spawn`]: teardown kills what it started even if it has not yet
    /// entered the namespace, whereas a process started directly is found only once inside.
    pub fn command(&self, node: Node, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.netns(node)]).arg(program);
        cmd
    }

    /// Runs `argv` in the node's namespace to completion and returns its output whatever
    /// its exit status; fails only if it cannot be started.
    pub fn exec(&self, node: Node, argv: &[&str]) -> Result<Output> {
        let (program, args) = argv.split_first().context("exec: empty argv")?;
        self.command(node, program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("starting {argv:?} in {}", self.netns(node)))
    }

    /// Runs `argv` in the node's namespace and returns its stdout; fails unless it exits 0.
    pub fn run_ok(&self, node: Node, argv: &[&str]) -> Result<String> {
        let out = self.exec(node, argv)?;
        if !out.status.success() {
            bail!(
                "{argv:?} in {} failed ({}): {}",
                self.netns(node),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `cmd` (built with [`Lab::command`]); the lab kills it at teardown at the latest.
    pub fn spawn(&self, node: Node, mut cmd: Command) -> Result<LabProcess> {
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {cmd:?} in {}", self.netns(node)))?;
        Ok(LabProcess::new(child, self.live.clone()))
    }

    /// Runs `f` on a thread that has entered the node's namespace and returns its result.
    /// Sockets `f` creates stay in that namespace, whichever thread uses them later.
    pub fn in_netns<T: Send>(&self, node: Node, f: impl FnOnce() -> T + Send) -> Result<T> {
        netns::run_in(self.netns(node), f)
    }

    /// Sends one ICMP echo from the node to `to`; true if the reply came within `timeout`.
    /// (Built in because the lab machines need not have `ping`.)
    pub fn ping(&self, from: Node, to: Ipv4Addr, timeout: Duration) -> Result<bool> {
        self.in_netns(from, || netns::ping(to, timeout))?
    }
}

impl fmt::Display for Lab {
    /// One line per namespace with its interfaces and addresses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for node in Node::ALL {
            write!(f, "{:<9} {:<26}", node.role(), self.netns(node))?;
            for (_, ifname, ip) in setup::ADDRESSES.iter().filter(|a| a.0 == node) {
                write!(f, " {ifname} {ip}/24")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let tracked: Vec<u32> = live.iter().copied().collect();
        netns::teardown(&self.created, &tracked);
    }
}

/// Deletes lab namespaces whose creating process is gone (killing what still runs in them);
/// returns how many were deleted.
pub fn cleanup_stale() -> Result<usize> {
    let dir = match std::fs::read_dir(netns::RUN_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).context(netns::RUN_DIR),
    };
    let mut stale = Vec::new();
    for entry in dir {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !alive(pid) {
                stale.push(name);
            }
        }
    }
    Ok(netns::teardown(&stale, &[]))
}

/// Whether `pid` runs; a zombie counts as gone (an orphan may wait a while to be reaped).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Fails with a clear message unless the process runs as root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the lab needs root (network namespaces): run the tests as root");
    }
    Ok(())
}
