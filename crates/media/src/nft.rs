//! The kernel path's I/O: the `voxgate_media` table, forwarding in the box's namespace, and a
//! thread that runs `nft` so that no packet thread ever waits for it.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::kernel::{self, Change};

const FORWARDING: &str = "/proc/sys/net/ipv4/ip_forward";

/// Runs `nft` with `args`, feeding it `stdin`; its stdout, or its stderr as the error.
fn nft(args: &[&str], stdin: &str) -> Result<String, String> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin.as_bytes())
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for nft: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn apply(commands: &str) -> Result<(), String> {
    nft(&["-f", "-"], commands).map(drop)
}

fn read_counters() -> Result<HashMap<String, (u64, u64)>, String> {
    let out = nft(
        &["-j", "list", "counters", "table", "ip", kernel::TABLE],
        "",
    )?;
    kernel::parse_counters(&out)
}

/// What the nft thread reports back.
pub(crate) enum Done {
    /// Stream `id` could not be installed.
    Failed { id: u64, error: String },
    /// Stream `id` is out of the kernel; its counters' last values per side (`None`: unread).
    Withdrawn {
        id: u64,
        finals: [Option<(u64, u64)>; 2],
    },
    /// Every counter of the table.
    Counters(HashMap<String, (u64, u64)>),
}

enum Job {
    Apply(Vec<Change>),
    Read,
    /// Answered once every earlier job is done and reported.
    Sync(mpsc::Sender<()>),
}

/// The kernel path of a running relay: owns the table (and forwarding, if it turned it on)
/// until dropped.
pub(crate) struct KernelPath {
    jobs: Option<mpsc::Sender<Job>>,
    done: Arc<Mutex<Vec<Done>>>,
    thread: Option<JoinHandle<()>>,
    /// Forwarding was off and the relay turned it on: turned off again at the end.
    restore_forwarding: bool,
}

impl KernelPath {
    /// Sets the table up (replacing a crashed run's) and turns forwarding on in this network
    /// namespace; the error says why the kernel path cannot be used.
    pub fn start() -> Result<KernelPath, String> {
        let forwarding = std::fs::read_to_string(FORWARDING)
            .map_err(|e| format!("cannot read {FORWARDING}: {e}"))?;
        let was_off = forwarding.trim() == "0";
        apply(&kernel::table(was_off)).map_err(|e| format!("nft refused the table: {e}"))?;
        if was_off {
            if let Err(e) = std::fs::write(FORWARDING, "1") {
                let _ = apply(&kernel::remove_table());
                return Err(format!("cannot turn IPv4 forwarding on: {e}"));
            }
            tracing::info!("media kernel path: IPv4 forwarding turned on; the box forwards nothing but latched RTP");
        }
        let (tx, rx) = mpsc::channel();
        let done = Arc::new(Mutex::new(Vec::new()));
        let sink = done.clone();
        let thread = std::thread::Builder::new()
            .name("voxgate-media-nft".into())
            .spawn(move || run(rx, sink))
            .map_err(|e| format!("cannot start the nft thread: {e}"))?;
        Ok(KernelPath {
            jobs: Some(tx),
            done,
            thread: Some(thread),
            restore_forwarding: was_off,
        })
    }

    /// Queues changes (installs first reported as failures if refused; withdrawals report
    /// their final counters).
    pub fn apply(&self, changes: Vec<Change>) {
        if !changes.is_empty() {
            self.send(Job::Apply(changes));
        }
    }

    /// Queues a reading of every counter.
    pub fn read(&self) {
        self.send(Job::Read);
    }

    /// Waits (up to `limit`) until every queued job is done; false on timeout.
    pub fn sync(&self, limit: Duration) -> bool {
        self.ticket().recv_timeout(limit).is_ok()
    }

    /// A marker answered once every job queued before it is done: [`KernelPath::sync`] that
    /// the caller waits on itself, e.g. with no lock held.
    pub fn ticket(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Sync(tx));
        rx
    }

    /// What the nft thread has reported since the last call.
    pub fn take_done(&self) -> Vec<Done> {
        std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn send(&self, job: Job) {
        if let Some(j) = &self.jobs {
            // The thread only ends when `jobs` is dropped.
            let _ = j.send(job);
        }
    }
}

impl Drop for KernelPath {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Err(e) = apply(&kernel::remove_table()) {
            tracing::error!(error = %e, "media kernel path: cannot remove the nftables table");
        }
        if self.restore_forwarding {
            if let Err(e) = std::fs::write(FORWARDING, "0") {
                tracing::error!(error = %e, "media kernel path: cannot turn IPv4 forwarding off again");
            }
        }
    }
}

fn run(jobs: mpsc::Receiver<Job>, done: Arc<Mutex<Vec<Done>>>) {
    let report = |d: Vec<Done>| {
        if !d.is_empty() {
            done.lock().unwrap_or_else(|e| e.into_inner()).extend(d);
        }
    };
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Apply(changes) => report(apply_changes(&changes)),
            Job::Read => match read_counters() {
                Ok(c) => report(vec![Done::Counters(c)]),
                Err(e) => tracing::warn!(error = %e, "media kernel path: cannot read counters"),
            },
            Job::Sync(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

/// Installs and unhooks in one transaction (one change at a time if it is refused, to find
/// the culprit), reads the withdrawn streams' counters, then removes what they leave.
fn apply_changes(changes: &[Change]) -> Vec<Done> {
    let mut out = Vec::new();
    let batch = kernel::render(changes);
    if let Err(e) = apply(&batch.first) {
        tracing::warn!(error = %e, changes = changes.len(), "media kernel path: batch refused; applying one change at a time");
        for c in changes {
            let text = match *c {
                Change::Install { id, slot, flow } => kernel::install_one(id, slot, &flow),
                Change::Withdraw { .. } => kernel::render(std::slice::from_ref(c)).first,
            };
            if let Err(error) = apply(&text) {
                if let Change::Install { id, .. } = *c {
                    // Whatever the failed transaction added is gone with it.
                    out.push(Done::Failed { id, error });
                } else {
                    tracing::error!(error = %error, "media kernel path: cannot unhook a stream");
                }
            }
        }
    }
    if batch.read.is_empty() {
        return out;
    }
    let counters = read_counters().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "media kernel path: cannot read the final counters");
        HashMap::new()
    });
    let mut finals: HashMap<u64, [Option<(u64, u64)>; 2]> = HashMap::new();
    for &(id, side) in &batch.read {
        finals.entry(id).or_default()[side as usize] =
            counters.get(&kernel::counter(id, side)).copied();
    }
    let mut ids: Vec<u64> = finals.keys().copied().collect();
    ids.sort_unstable();
    out.extend(ids.into_iter().map(|id| Done::Withdrawn {
        id,
        finals: finals[&id],
    }));
    if let Err(e) = apply(&batch.last) {
        tracing::error!(error = %e, "media kernel path: cannot remove withdrawn streams' chains");
    }
    out
}

#[cfg(test)]
mod tests;
