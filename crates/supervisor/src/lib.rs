//! Supervision of the daemon's services.
//!
//! Each [`Service`] runs as its own task (or, through [`on_own_thread`], on a thread of its
//! own with a single-threaded runtime). When one fails (returns an error, returns early or
//! panics) it is logged with its error and started again after an exponential back-off, while
//! the others keep running. A reload that disables a service stops it; one that enables it
//! starts it. [`Supervisor::status`] reports each service's state for `voxgate status`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control::{ServiceState, ServiceStatus};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a service is handed when it starts.
pub struct Context<C> {
    /// The configuration in force; changes on every accepted reload.
    pub config: watch::Receiver<Arc<C>>,
    /// Cancelled when the service must stop (shutdown, or disabled by a reload).
    pub stop: CancellationToken,
}

/// The future a service runs.
pub type ServiceFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A long-running part of the daemon (DHCP, SIP, ...).
pub trait Service<C>: Send + Sync + 'static {
    /// Short name shown in status and logs.
    fn name(&self) -> &'static str;
    /// Whether the configuration turns this service on.
    fn enabled(&self, config: &C) -> bool;
    /// Runs until `ctx.stop` is cancelled (then returns `Ok`) or until it fails.
    fn run(&self, ctx: Context<C>) -> ServiceFuture;
}

/// Runs `service` on a thread of its own with a single-threaded runtime, for a service whose
/// one task moves many small messages (SIP): on the daemon's multi-threaded runtime each
/// datagram woke a second worker that found nothing to steal (measured with `perf` under the
/// SIP benchmark: context switches and futex wake-ups were a tenth of the daemon's CPU). A
/// panic on that thread is raised again here, so the supervisor sees it as it would on its
/// own runtime. The thread ends when the service does (it must watch `ctx.stop`).
pub fn on_own_thread(name: &'static str, service: ServiceFuture) -> ServiceFuture {
    let (done, result) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("voxgate-{name}"))
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|rt| rt.block_on(service))
            }));
            let _ = done.send(outcome);
        });
    Box::pin(async move {
        spawned.map_err(|e| anyhow::anyhow!("cannot start the {name} thread: {e}"))?;
        match result.await {
            Ok(Ok(r)) => r,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(anyhow::anyhow!("the {name} thread ended without a result")),
        }
    })
}

/// Restart delays: `initial`, doubling up to `max`; reset once a run lasted `stable`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// A run at least this long counts as healthy and resets the delay.
    pub stable: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            stable: Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
struct Slot {
    name: &'static str,
    state: ServiceState,
    since: Instant,
    restarts: u32,
    last_error: Option<String>,
}

type Slots = Arc<Mutex<Vec<Slot>>>;

/// The running set of services.
pub struct Supervisor {
    slots: Slots,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Supervisor {
    /// Starts every service under `config`.
    pub fn start<C: Send + Sync + 'static>(
        services: Vec<Arc<dyn Service<C>>>,
        config: watch::Receiver<Arc<C>>,
        backoff: Backoff,
    ) -> Supervisor {
        let now = Instant::now();
        let slots: Slots = Arc::new(Mutex::new(
            services
                .iter()
                .map(|s| Slot {
                    name: s.name(),
                    state: ServiceState::Stopped,
                    since: now,
                    restarts: 0,
                    last_error: None,
                })
                .collect(),
        ));
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for (i, svc) in services.into_iter().enumerate() {
            let keeper = Keeper {
                index: i,
                svc,
                config: config.clone(),
                slots: slots.clone(),
                shutdown: shutdown.clone(),
                backoff,
            };
            tasks.spawn(keeper.run());
        }
        Supervisor {
            slots,
            shutdown,
            tasks,
        }
    }

    /// A handle that reads the services' state, for the control socket.
    pub fn view(&self) -> StatusView {
        StatusView(self.slots.clone())
    }

    /// Each service's state, in start order.
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.view().status()
    }

    /// Stops every service, waiting up to `grace` before abandoning those that do not stop.
    pub async fn shutdown(mut self, grace: Duration) {
        self.shutdown.cancel();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            let stuck: Vec<&str> = lock(&self.slots)
                .iter()
                .filter(|s| s.state != ServiceState::Stopped && s.state != ServiceState::Disabled)
                .map(|s| s.name)
                .collect();
            tracing::warn!(
                ?stuck,
                "services did not stop within {grace:?}; abandoning them"
            );
            self.tasks.abort_all();
        }
    }
}

/// Reads the supervised services' state; cheap to clone.
#[derive(Clone)]
pub struct StatusView(Slots);

impl StatusView {
    /// Each service's state, in start order.
    pub fn status(&self) -> Vec<ServiceStatus> {
        let now = Instant::now();
        lock(&self.0)
            .iter()
            .map(|s| ServiceStatus {
                name: s.name.to_string(),
                state: s.state,
                since_secs: now.saturating_duration_since(s.since).as_secs(),
                restarts: s.restarts,
                last_error: s.last_error.clone(),
            })
            .collect()
    }
}

fn lock(slots: &Slots) -> std::sync::MutexGuard<'_, Vec<Slot>> {
    // A panic while holding this lock cannot leave a slot half-written: recover the data.
    slots.lock().unwrap_or_else(|e| e.into_inner())
}

struct Keeper<C> {
    index: usize,
    svc: Arc<dyn Service<C>>,
    config: watch::Receiver<Arc<C>>,
    slots: Slots,
    shutdown: CancellationToken,
    backoff: Backoff,
}

/// How one run of a service ended.
enum Ended {
    Shutdown,
    Disabled,
    Failed(String),
}

impl<C: Send + Sync + 'static> Keeper<C> {
    fn set(&self, state: ServiceState, error: Option<String>) {
        let mut slots = lock(&self.slots);
        let s = &mut slots[self.index];
        if s.state != state {
            s.since = Instant::now();
        }
        s.state = state;
        if state == ServiceState::Restarting {
            s.restarts += 1;
        }
        if error.is_some() {
            s.last_error = error;
        }
    }

    fn enabled(&self) -> bool {
        let cfg = self.config.borrow().clone();
        self.svc.enabled(&cfg)
    }

    async fn run(mut self) {
        let name = self.svc.name();
        let mut delay = self.backoff.initial;
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            if !self.enabled() {
                self.set(ServiceState::Disabled, None);
                tracing::info!(service = name, "disabled by the configuration");
                tokio::select! {
                    _ = self.shutdown.cancelled() => break,
                    changed = self.config.changed() => if changed.is_err() { break },
                }
                continue;
            }
            self.set(ServiceState::Running, None);
            tracing::info!(service = name, "starting");
            let started = Instant::now();
            match self.run_once().await {
                Ended::Shutdown => break,
                Ended::Disabled => continue,
                Ended::Failed(error) => {
                    if started.elapsed() >= self.backoff.stable {
                        delay = self.backoff.initial;
                    }
                    tracing::error!(service = name, %error, retry_in = ?delay, "service failed");
                    self.set(ServiceState::Restarting, Some(error));
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(self.backoff.max);
                }
            }
        }
        let state = if self.enabled() {
            ServiceState::Stopped
        } else {
            ServiceState::Disabled
        };
        self.set(state, None);
        tracing::info!(service = name, "stopped");
    }

    async fn run_once(&mut self) -> Ended {
        let stop = self.shutdown.child_token();
        let ctx = Context {
            config: self.config.clone(),
            stop: stop.clone(),
        };
        // Spawned rather than awaited in place, so that a panic is caught as a failure.
        let mut task = tokio::spawn(self.svc.run(ctx));
        let mut watch = self.config.clone();
        let outcome = loop {
            tokio::select! {
                res = &mut task => break res,
                changed = watch.changed() => {
                    if changed.is_ok() && !self.enabled() {
                        tracing::info!(service = self.svc.name(), "disabled by reload; stopping");
                        stop.cancel();
                    }
                }
                _ = self.shutdown.cancelled(), if !stop.is_cancelled() => stop.cancel(),
            }
        };
        match outcome {
            Ok(Ok(())) if self.shutdown.is_cancelled() => Ended::Shutdown,
            Ok(Ok(())) if stop.is_cancelled() => Ended::Disabled,
            Ok(Ok(())) => Ended::Failed("exited without an error but was not asked to stop".into()),
            Ok(Err(e)) => Ended::Failed(format!("{e:#}")),
            Err(e) if e.is_panic() => {
                let p = e.into_panic();
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Ended::Failed(format!("panicked: {msg}"))
            }
            Err(e) => Ended::Failed(format!("task ended: {e}")),
        }
    }
}

#[cfg(test)]
mod tests;
