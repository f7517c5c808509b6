//! The tokio shell: a UDP socket per allocated port, a task per stream moving its packets,
//! and a ticker that ends silent calls. [`MediaHandle`] is what the SIP service holds.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use std::cell::RefCell;

use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use config::model::KernelPath as KernelMode;

use crate::kernel::{self, Change, Flow, Offloader};
use crate::nft::{Done, KernelPath};
use crate::relay::{lock, CallReport, Ending, MediaEvent, Relay};
use crate::stream::{KernelRules, SharedStream, Socket, KERNEL_READ_EVERY};
use crate::{sys, MediaError, MediaSettings, Side};

/// How long a call's end waits for the kernel to hand back its streams' final counters.
const KERNEL_SYNC_LIMIT: Duration = Duration::from_secs(2);

/// How often silent calls are looked for; timeouts are whole seconds, so this is plenty.
const TICK: Duration = Duration::from_millis(500);

/// A stream's sockets: `[side][socket]`.
type Sockets = [[UdpSocket; 2]; 2];

/// The task of one stream, aborted (closing its sockets) when dropped.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A media thread: a single-threaded runtime running packet tasks.
struct Worker {
    runtime: Handle,
    /// Ends the thread (and with its runtime every task and socket) when sent or dropped.
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    fn spawn(index: usize) -> io::Result<Worker> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let runtime = rt.handle().clone();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("voxgate-media-{index}"))
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Worker {
            runtime,
            shutdown,
            thread,
        })
    }
}

struct Running {
    relay: Relay,
    /// The WAN device whose address the relay follows (its address came from DHCP, not from
    /// the configuration).
    follow_wan: Option<String>,
    tasks: HashMap<u64, Task>,
    /// Streams are spread over the workers by id; the ticker runs on the first.
    workers: Vec<Worker>,
    /// The kernel path, when configured and available.
    kernel: Option<Kernel>,
    /// Calls released while the kernel forwarded some of their streams: their final figures
    /// and ports wait for the kernel to let go of them (see [`MediaHandle::release`]).
    ending: Vec<Releasing>,
    /// Where [`MediaEvent::Released`] goes.
    events: broadcast::Sender<MediaEvent>,
    /// The ticker's task: finished only if it panicked (see [`MediaHandle::revive_ticker`]).
    ticker: JoinHandle<()>,
}

/// A released call waiting for the kernel.
struct Releasing {
    ending: Ending,
    /// Its streams the kernel has not let go of yet.
    waiting: HashSet<u64>,
    since: Instant,
}

/// What [`MediaHandle::release`] did.
#[derive(Debug)]
pub enum Release {
    /// The call is released: its final figures (also logged).
    Done(CallReport),
    /// The kernel forwarded some of the call's streams: they are being withdrawn, on the nft
    /// thread. The final figures (with the kernel's last counters) are logged and sent as
    /// [`MediaEvent::Released`] once it has let go of them; the call's ports stay allocated
    /// until then, so no new call gets a port the kernel still forwards.
    Pending,
}

/// The kernel path of a running relay: its I/O and its sans-IO bookkeeping.
struct Kernel {
    path: KernelPath,
    offloader: Offloader,
    rules: KernelRules,
}

impl Running {
    fn close(&mut self, ids: &[u64]) {
        for id in ids {
            self.tasks.remove(id);
        }
    }

    /// Takes what the nft thread reported, then moves streams into or out of the kernel as
    /// they now want; with `read`, asks for fresh counters too.
    fn sync_kernel(&mut self, now: Instant, read: bool) {
        self.take_kernel_reports(now);
        self.finish_released(now);
        let Some(k) = self.kernel.as_mut() else {
            return;
        };
        let streams = self.relay.streams();
        let mut wanted: Vec<(u64, Option<Flow>)> = streams
            .iter()
            .map(|(&id, s)| (id, lock(s).kernel_flow(now, k.rules)))
            .collect();
        wanted.sort_unstable_by_key(|(id, _)| *id);
        let changes = k.offloader.plan(now, &wanted);
        for c in &changes {
            match *c {
                Change::Install { id, flow, .. } => {
                    tracing::debug!(stream = id, lan = %flow.peers[0], wan = %flow.peers[1], "stream forwarded in the kernel");
                    if let Some(s) = streams.get(&id) {
                        lock(s).set_offloaded(now);
                    }
                }
                Change::Withdraw { id, .. } => {
                    tracing::debug!(stream = id, "stream back in user space");
                }
            }
        }
        k.path.apply(changes);
        if read && k.offloader.installed() > 0 {
            k.path.read();
        }
    }

    /// After an offer or answer of one call: those of its `streams` in the kernel that no
    /// longer want the flow they are forwarded with (hold, a new address) leave it now. Only
    /// this call's streams are looked at; installs wait for the tick, whose pass over every
    /// stream would make each offer cost O(streams) (it did: calls/s fell with the number of
    /// streams held or in quarantine).
    fn withdraw_changed(&mut self, now: Instant, streams: &[SharedStream]) {
        self.take_kernel_reports(now);
        let Some(k) = self.kernel.as_mut() else {
            return;
        };
        if k.offloader.installed() == 0 {
            return;
        }
        let changes: Vec<Change> = streams
            .iter()
            .filter_map(|s| {
                let s = lock(s);
                let id = s.id();
                let current = k.offloader.flow_of(id)?;
                if s.kernel_flow(now, k.rules) == Some(current) {
                    return None;
                }
                tracing::debug!(stream = id, "stream back in user space");
                k.offloader.withdraw(id)
            })
            .collect();
        k.path.apply(changes);
    }

    /// Applies the nft thread's reports to the streams.
    fn take_kernel_reports(&mut self, now: Instant) {
        let Some(k) = self.kernel.as_mut() else {
            return;
        };
        let done = k.path.take_done();
        if done.is_empty() {
            return;
        }
        let mut streams = self.relay.streams();
        for e in &self.ending {
            for st in e.ending.streams() {
                let id = lock(&st).id();
                streams.insert(id, st);
            }
        }
        for d in done {
            match d {
                Done::Failed { id, error } => {
                    tracing::warn!(stream = id, error = %error, "media kernel path: nftables refused a stream; it stays in user space");
                    k.offloader.failed(now, id);
                    if let Some(s) = streams.get(&id) {
                        lock(s).kernel_withdrawn(now, [None, None]);
                    }
                }
                Done::Withdrawn { id, finals } => {
                    k.offloader.withdrawn(id);
                    if let Some(s) = streams.get(&id) {
                        lock(s).kernel_withdrawn(now, finals);
                    }
                    for e in &mut self.ending {
                        e.waiting.remove(&id);
                    }
                }
                Done::Counters(c) => {
                    for (&id, s) in &streams {
                        if !k.offloader.is_installed(id) && !k.offloader.is_withdrawing(id) {
                            continue;
                        }
                        let mut s = lock(s);
                        for side in [Side::Lan, Side::Wan] {
                            if let Some(&(p, b)) = c.get(&kernel::counter(id, side)) {
                                s.kernel_counts(now, side, p, b);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Releases a call: at once if the kernel forwards none of its streams; else queues their
    /// withdrawal and leaves the rest to [`Running::finish_released`].
    fn release(&mut self, now: Instant, call_id: &str) -> Option<Release> {
        let streams = self.relay.call_streams(call_id);
        let waiting: HashSet<u64> = match self.kernel.as_mut() {
            None => HashSet::new(),
            Some(k) => {
                let ids: HashSet<u64> = streams
                    .iter()
                    .map(|s| lock(s).id())
                    .filter(|&id| k.offloader.is_installed(id) || k.offloader.is_withdrawing(id))
                    .collect();
                let changes: Vec<Change> = ids
                    .iter()
                    .filter_map(|&id| k.offloader.withdraw(id))
                    .collect();
                k.path.apply(changes);
                ids
            }
        };
        if waiting.is_empty() {
            let (report, closed) = self.relay.release(now, call_id)?;
            self.close(&closed);
            return Some(Release::Done(report));
        }
        let ending = self.relay.end(call_id)?;
        tracing::debug!(
            call_id,
            streams = waiting.len(),
            "call released; waiting for the kernel to let go of its streams"
        );
        self.ending.push(Releasing {
            ending,
            waiting,
            since: now,
        });
        Some(Release::Pending)
    }

    /// Finishes the released calls the kernel has let go of: final figures logged and sent,
    /// sockets closed, ports into quarantine.
    fn finish_released(&mut self, now: Instant) {
        let (done, waiting): (Vec<Releasing>, Vec<Releasing>) = std::mem::take(&mut self.ending)
            .into_iter()
            .partition(|e| e.waiting.is_empty());
        self.ending = waiting;
        for e in done {
            let took = now.saturating_duration_since(e.since);
            if took > KERNEL_SYNC_LIMIT {
                tracing::warn!(
                    call_id = e.ending.call_id(),
                    took_ms = took.as_millis() as u64,
                    "media kernel path: slow to let go of a released call's streams"
                );
            }
            let call_id = e.ending.call_id().to_string();
            let (report, closed) = self.relay.finish(now, e.ending);
            self.close(&closed);
            // No subscriber is fine: the figures are logged.
            let _ = self.events.send(MediaEvent::Released { call_id, report });
        }
    }

    /// Waits (up to [`KERNEL_SYNC_LIMIT`]) for the kernel to let go of released calls, and
    /// finishes them (the relay stops).
    fn finish_released_now(&mut self, now: Instant) {
        if self.ending.is_empty() {
            return;
        }
        if let Some(k) = &self.kernel {
            if !k.path.sync(KERNEL_SYNC_LIMIT) {
                tracing::warn!("media kernel path: nft did not answer in time; released calls' last figures may miss a second of kernel counters");
            }
        }
        self.take_kernel_reports(now);
        for e in &mut self.ending {
            e.waiting.clear();
        }
        self.finish_released(now);
    }

    /// Fresh counters for every stream in the kernel, and withdrawals finished, waited for.
    fn read_kernel_now(&mut self, now: Instant) {
        let Some(k) = self.kernel.as_ref() else {
            return;
        };
        if !k.offloader.busy() {
            return;
        }
        k.path.read();
        k.path.sync(KERNEL_SYNC_LIMIT);
        self.take_kernel_reports(now);
        self.finish_released(now);
    }
}

struct Inner {
    running: Mutex<Option<Running>>,
    events: broadcast::Sender<MediaEvent>,
    public_address: Mutex<Option<Ipv4Addr>>,
}

/// The media relay as the SIP service uses it: cheap to clone, usable from any task. Calls
/// made while the media service is not running fail with [`MediaError::NotRunning`].
#[derive(Clone)]
pub struct MediaHandle {
    inner: Arc<Inner>,
}

impl Default for MediaHandle {
    fn default() -> Self {
        MediaHandle::new()
    }
}

impl MediaHandle {
    /// A handle to a relay that is not running yet ([`MediaHandle::start`] or the
    /// [`crate::MediaService`] starts it).
    pub fn new() -> MediaHandle {
        MediaHandle {
            inner: Arc::new(Inner {
                running: Mutex::new(None),
                events: broadcast::channel(256).0,
                public_address: Mutex::new(None),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, Option<Running>> {
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the relay (stopping a running one first) on its own thread, which inherits the
    /// caller's network namespace. With no WAN address in `settings`, the WAN interface's
    /// current address is used.
    ///
    /// Packets are moved by single-threaded runtimes on `settings.threads` threads of their
    /// own rather than by the daemon's runtime: measured in the lab (`benches/relay.rs`), the
    /// multi-threaded runtime cost a fifth more CPU per packet waking its workers across
    /// cores. A second thread halves the median added latency under load but costs a fifth
    /// more CPU again, so one is the default.
    pub fn start(&self, mut settings: MediaSettings) -> Result<(), MediaError> {
        self.stop();
        let follow_wan = settings
            .wan_address
            .is_none()
            .then(|| settings.wan_device.clone());
        if settings.wan_address.is_none() {
            settings.wan_address = sys::interface_ipv4(&settings.wan_device);
        }
        let mut relay = Relay::new(settings)?;
        relay.set_public_address(*lock_plain(&self.inner.public_address));
        ensure_open_files(relay.stream_capacity());
        let workers = (0..relay.settings().threads.max(1))
            .map(Worker::spawn)
            .collect::<io::Result<Vec<_>>>()
            .map_err(MediaError::Thread)?;
        let kernel = match relay.settings().kernel_path {
            KernelMode::Off => {
                tracing::info!("media kernel path off [config media.kernel_path]: every packet passes through the relay");
                None
            }
            KernelMode::Auto => match KernelPath::start() {
                Ok(path) => {
                    tracing::info!(table = kernel::TABLE, "media kernel path on: RTP of streams latched on both sides is forwarded by nftables");
                    let s = relay.settings();
                    Some(Kernel {
                        path,
                        offloader: Offloader::default(),
                        rules: KernelRules {
                            after_packets: s.kernel_after_packets,
                            idle: s.kernel_idle,
                        },
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %e, "media kernel path unavailable: every packet passes through the relay");
                    None
                }
            },
        };
        tracing::info!(
            lan = %relay.bind_address(Side::Lan),
            wan = %relay.bind_address(Side::Wan),
            lan_ports = %relay.settings().lan_ports,
            wan_ports = %relay.settings().wan_ports,
            "media relay started"
        );
        // The ticker may run before the state is in place: it then waits for the next tick.
        // (It used to end when it found no state, and with it, for the whole run, the kernel
        // path and the end of silent calls; the media lab test caught it about one run in 13.)
        let ticker = workers[0].runtime.spawn(tick(Arc::downgrade(&self.inner)));
        *self.state() = Some(Running {
            relay,
            follow_wan,
            tasks: HashMap::new(),
            workers,
            kernel,
            ending: Vec::new(),
            events: self.inner.events.clone(),
            ticker,
        });
        Ok(())
    }

    /// Stops the relay: every call is released (reported as ended, reason `stopped`) and
    /// every socket closed by the time this returns.
    pub fn stop(&self) {
        let Some(mut r) = self.state().take() else {
            return;
        };
        r.read_kernel_now(Instant::now());
        r.finish_released_now(Instant::now());
        for (event, _) in r.relay.release_all(Instant::now()) {
            let _ = self.inner.events.send(event);
        }
        for w in r.workers {
            let _ = w.shutdown.send(());
            if w.thread.join().is_err() {
                tracing::error!("a media thread panicked");
            }
        }
        tracing::info!("media relay stopped");
    }

    /// Whether the relay is running.
    pub fn is_running(&self) -> bool {
        self.state().is_some()
    }

    /// Starts the ticker again if it has ended, which it only does by panicking (the message
    /// is on stderr): without it silent calls are never ended and no stream moves into or out
    /// of the kernel. Calls keep their media. True if it had ended.
    pub fn revive_ticker(&self) -> bool {
        let mut guard = self.state();
        let Some(r) = guard.as_mut() else {
            return false;
        };
        if !r.ticker.is_finished() {
            return false;
        }
        r.ticker = r.workers[0]
            .runtime
            .spawn(tick(Arc::downgrade(&self.inner)));
        true
    }

    /// Applies new settings; running calls keep their ports (see [`Relay::reconfigure`]). A
    /// new number of threads takes effect at the next start.
    pub fn reconfigure(&self, mut settings: MediaSettings) {
        if let Some(r) = self.state().as_mut() {
            if settings.wan_address.is_none() {
                settings.wan_address = sys::interface_ipv4(&settings.wan_device)
                    .or(Some(r.relay.bind_address(Side::Wan)));
            }
            r.relay.reconfigure(settings);
        }
    }

    /// Sets (or clears) the public address SDP names towards the provider, e.g. the one the
    /// provider reports in `Via: received=`. Kept across restarts of the relay.
    pub fn set_public_address(&self, address: Option<Ipv4Addr>) {
        *lock_plain(&self.inner.public_address) = address;
        if let Some(r) = self.state().as_mut() {
            r.relay.set_public_address(address);
        }
    }

    /// Receives [`MediaEvent`]s: calls the relay ended by itself, and the final figures of
    /// calls released while in the kernel.
    pub fn subscribe(&self) -> broadcast::Receiver<MediaEvent> {
        self.inner.events.subscribe()
    }

    /// Takes an offer from `from` and returns it rewritten for the other side; see
    /// [`Relay::offer`]. Binds the sockets of new streams and starts relaying at once.
    pub fn offer(&self, call_id: &str, from: Side, sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let mut guard = self.state();
        let r = guard.as_mut().ok_or(MediaError::NotRunning)?;
        // The WAN address may have moved with a new lease since the last tick.
        if let Some(ip) = r.follow_wan.as_deref().and_then(sys::interface_ipv4) {
            r.relay.set_wan_address(ip);
        }
        let addrs = [
            r.relay.bind_address(Side::Lan),
            r.relay.bind_address(Side::Wan),
        ];
        let tos = r.relay.settings().tos;
        let mut bind = |side: Side, port: u16| -> io::Result<[std::net::UdpSocket; 2]> {
            let ip = addrs[side as usize];
            Ok([
                sys::bind_udp(ip, port, tos)?,
                sys::bind_udp(ip, port + 1, tos)?,
            ])
        };
        let out = r
            .relay
            .offer(Instant::now(), call_id, from, sdp, &mut bind)?;
        r.close(&out.closed);
        for o in out.opened {
            let id = lock(&o.stream).id();
            let worker = &r.workers[id as usize % r.workers.len()];
            // The sockets are registered with the reactor by the task, on the worker whose
            // tasks use them: epoll_ctl then costs the media thread, not the caller's (the
            // SIP thread; measured with perf under the SIP benchmark: a sixth of its time).
            let task = worker.runtime.spawn(pump(o.stream, o.sockets));
            r.tasks.insert(id, Task(task));
        }
        // A hold or a new address takes streams out of the kernel at once.
        let streams = r.relay.call_streams(call_id);
        r.withdraw_changed(Instant::now(), &streams);
        Ok(out.sdp)
    }

    /// Takes an answer from `from` and returns it rewritten for the offerer; see
    /// [`Relay::answer`].
    pub fn answer(&self, call_id: &str, from: Side, sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let mut guard = self.state();
        let r = guard.as_mut().ok_or(MediaError::NotRunning)?;
        let out = r.relay.answer(Instant::now(), call_id, from, sdp)?;
        r.close(&out.closed);
        let streams = r.relay.call_streams(call_id);
        r.withdraw_changed(Instant::now(), &streams);
        Ok(out.sdp)
    }

    /// Ends a call: sockets closed, ports into quarantine, final figures logged and returned
    /// ([`Release::Done`]). With streams in the kernel, it does not wait for nft (a release
    /// then takes tens of milliseconds, measured in `nft::tests`): [`Release::Pending`], and
    /// the figures follow as [`MediaEvent::Released`]. `None` if the relay does not know the
    /// call (e.g. it already timed out).
    pub fn release(&self, call_id: &str) -> Option<Release> {
        let mut guard = self.state();
        let r = guard.as_mut()?;
        r.release(Instant::now(), call_id)
    }

    /// Every call's state and figures, for `voxgate calls`.
    ///
    /// Streams in the kernel have their counters read first (one `nft` run), so packet counts
    /// are exact at the moment of asking.
    pub fn snapshot(&self) -> Vec<CallReport> {
        // The counters are read with the relay's lock released: offers and answers would
        // otherwise wait for nft (tens of ms with hundreds of streams in the kernel).
        let ticket = {
            let guard = self.state();
            let Some(r) = guard.as_ref() else {
                return Vec::new();
            };
            r.kernel.as_ref().filter(|k| k.offloader.busy()).map(|k| {
                k.path.read();
                k.path.ticket()
            })
        };
        if let Some(t) = ticket {
            let _ = t.recv_timeout(KERNEL_SYNC_LIMIT);
        }
        let mut guard = self.state();
        let Some(r) = guard.as_mut() else {
            return Vec::new();
        };
        let now = Instant::now();
        r.take_kernel_reports(now);
        r.finish_released(now);
        r.relay.snapshot(now)
    }
}

/// Descriptors the daemon needs besides media sockets (SIP over TCP and TLS, DHCP, control
/// connections, logs, netlink).
const OTHER_FILES: u64 = 1024;

/// Raises the soft limit on open files to what a full port pool needs (four sockets a
/// stream), as far as the hard limit allows, and says so when the pool cannot be used whole:
/// once the limit is reached, offers are refused ("Too many open files") while ports are free.
/// Under voxgate.service the limit is LimitNOFILE; started by hand, often a soft 1024.
fn ensure_open_files(streams: usize) {
    let wanted = streams as u64 * 4 + OTHER_FILES;
    match sys::raise_open_files(wanted) {
        Ok(limit) if limit < wanted => tracing::warn!(
            limit,
            wanted,
            streams_at_once = limit.saturating_sub(OTHER_FILES) / 4,
            port_pool_streams = streams,
            "the open files limit is below what the media port ranges need: fewer calls' media at once than the ranges hold (raise LimitNOFILE, or narrow media.lan_ports/wan_ports)"
        ),
        Ok(limit) => tracing::debug!(limit, wanted, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open files limit"),
    }
}

fn lock_plain<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ends silent calls and moves streams into and out of the kernel, until the relay stops
/// (its first worker's runtime ends) or the handle is gone.
async fn tick(inner: Weak<Inner>) {
    let mut every = tokio::time::interval(TICK);
    let mut ticks: u64 = 0;
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        // Never block a media thread behind an offer in progress: try again next tick.
        let mut guard = match inner.running.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => continue,
        };
        // No state: not stored yet, or stopped (then this runtime, and the ticker with it,
        // ends within moments).
        let Some(r) = guard.as_mut() else {
            continue;
        };
        for (event, closed) in r.relay.poll(Instant::now()) {
            r.close(&closed);
            // No subscriber (SIP not running) is fine: the call is released either way.
            let _ = inner.events.send(event);
        }
        ticks += 1;
        // Streams into and out of the kernel; its counters every KERNEL_READ_EVERY.
        r.sync_kernel(Instant::now(), ticks.is_multiple_of(KERNEL_READ_TICKS));
        // A new DHCP lease may have moved the WAN address.
        if ticks.is_multiple_of(WAN_CHECK_TICKS) {
            if let Some(ip) = r.follow_wan.as_deref().and_then(sys::interface_ipv4) {
                r.relay.set_wan_address(ip);
            }
        }
    }
}

/// Ticks between readings of the kernel path's counters.
const KERNEL_READ_TICKS: u64 = KERNEL_READ_EVERY.as_millis() as u64 / TICK.as_millis() as u64;

/// Ticks between checks of a DHCP-assigned WAN address (5 s).
const WAN_CHECK_TICKS: u64 = 10;

thread_local! {
    /// The media thread's receive buffer: a datagram is read and relayed within one poll,
    /// never across an await, so every task of the thread shares it. 64 KiB, the largest UDP
    /// datagram, so nothing is ever relayed truncated.
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; 65536]);
}

/// Moves the packets arriving on a stream's four sockets: one task per stream (one per socket
/// cost four spawns and aborts per call, measured under the SIP benchmark's call rates).
///
/// One datagram per `recv_from`: measured in the lab (`benches/relay.rs`, 200 streams),
/// `recvmmsg` batches of 8 with the readiness cleared on a short batch cost 13.3-13.6 µs
/// of relay CPU per packet against 10.9-11.4 µs for this loop, since at 50 packets/s per
/// socket a batch almost never holds more than one.
async fn pump(stream: SharedStream, sockets: [[std::net::UdpSocket; 2]; 2]) {
    let sockets = match register(sockets) {
        Ok(s) => s,
        Err(e) => {
            // Only when the kernel refuses more epoll watches: the stream stays silent and
            // its call ends by the media timeout, freeing the ports.
            tracing::error!(stream = lock(&stream).id(), error = %e, "cannot register media sockets");
            return;
        }
    };
    const ALL: [(Side, Socket); 4] = [
        (Side::Lan, Socket::Rtp),
        (Side::Lan, Socket::Rtcp),
        (Side::Wan, Socket::Rtp),
        (Side::Wan, Socket::Rtcp),
    ];
    // A socket that failed is left alone; the others go on.
    let mut failed = [false; 4];
    // Where the next look starts, so a busy socket cannot starve the others.
    let mut next = 0;
    loop {
        let ready = std::future::poll_fn(|cx| {
            for k in 0..4 {
                let i = (next + k) % 4;
                let (side, socket) = ALL[i];
                if failed[i] {
                    continue;
                }
                let rx = &sockets[side as usize][socket as usize];
                if let std::task::Poll::Ready(r) = rx.poll_recv_ready(cx) {
                    return std::task::Poll::Ready((i, r));
                }
            }
            std::task::Poll::Pending
        })
        .await;
        let (i, result) = ready;
        next = (i + 1) % 4;
        let (side, socket) = ALL[i];
        let ok = match result {
            Ok(()) => BUFFER.with_borrow_mut(|buf| drain(buf, &stream, side, socket, &sockets)),
            Err(e) => {
                tracing::error!(?side, ?socket, error = %e, "media socket failed");
                false
            }
        };
        if !ok {
            failed[i] = true;
            if failed.iter().all(|&f| f) {
                return;
            }
        }
    }
}

/// Registers a stream's sockets with the reactor of the runtime this runs on.
fn register(sockets: [[std::net::UdpSocket; 2]; 2]) -> io::Result<Sockets> {
    let [[lan_rtp, lan_rtcp], [wan_rtp, wan_rtcp]] = sockets;
    Ok([
        [
            UdpSocket::from_std(lan_rtp)?,
            UdpSocket::from_std(lan_rtcp)?,
        ],
        [
            UdpSocket::from_std(wan_rtp)?,
            UdpSocket::from_std(wan_rtcp)?,
        ],
    ])
}

/// Relays what is queued on a readable socket; false when the socket failed.
fn drain(
    buf: &mut [u8],
    stream: &SharedStream,
    side: Side,
    socket: Socket,
    sockets: &Sockets,
) -> bool {
    let rx = &sockets[side as usize][socket as usize];
    loop {
        let (n, src) = match rx.try_recv_from(buf) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            // ICMP errors for earlier sends surface here; nothing to do.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::error!(?side, ?socket, error = %e, "media socket failed");
                return false;
            }
        };
        let fwd = lock(stream).on_packet(Instant::now(), side, socket, src, &buf[..n]);
        if let Some(f) = fwd {
            let tx = &sockets[f.side as usize][f.socket as usize];
            if tx.try_send_to(&buf[..n], f.to).is_err() {
                lock(stream).send_failed(f.side);
            }
        }
    }
}

#[cfg(test)]
mod tests;
