//! `voxgate run`: loads the configuration, starts the supervised services and the control
//! socket, talks to systemd (READY, WATCHDOG, STOPPING), reloads on SIGHUP and stops on SIGTERM.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use config::Loaded;
use control::{ConfigStatus, FirewallState, ReloadOutcome, Reply, Request, Response, Status};
use sd_notify::NotifyState;
use supervisor::{Backoff, StatusView, Supervisor};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::{LogFormat, RunArgs};

/// How long services get to stop on SIGTERM before they are abandoned; with the rest of
/// shutdown this stays well inside systemd's and the brief's 5 s.
const STOP_GRACE: Duration = Duration::from_secs(4);

/// Entry point of `voxgate run`.
pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let loaded = match load(&args) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("voxgate: not starting: the configuration has errors");
            return Ok(ExitCode::from(2));
        }
    };
    // Writes the pending log lines when `voxgate run` returns.
    let _logs = init_logging(args.log_format, loaded.config.management.log_level.as_str())
        .context("starting the log writer")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("voxgate")
        .build()
        .context("starting the runtime")?;
    rt.block_on(run(args, loaded))
}

fn load(args: &RunArgs) -> Result<Loaded, config::Errors> {
    let mut l = config::load_ref(&args.config)?;
    let m = &mut l.config.management;
    if let Some(p) = &args.control_socket {
        m.control_socket = p.clone();
    }
    if let Some(p) = &args.state_dir {
        m.state_dir = p.clone();
    }
    Ok(l)
}

/// Logs go to stderr (the journal) through the writer thread of the `logs` crate: services
/// only append the formatted line to memory (measured under SIP load, `perf`: writing each
/// line from the service's thread cost a tenth of the daemon's CPU, and waking a writer
/// thread per line, as tracing-appender does, 7 %). Under overload lines are dropped and
/// counted rather than stalling signalling.
fn init_logging(format: LogFormat, level: &str) -> std::io::Result<logs::Guard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let (writer, guard) = logs::writer(std::io::stderr())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(guard)
}

/// How often memory freed by the services goes back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Gives memory glibc's allocator holds free back to the system, every [`TRIM_EVERY`].
/// Measured with the SIP benchmark's memory phase: after 2000 calls ended the daemon kept
/// 74 MiB (45 MiB with them up, 18 MiB idle before) for good, freed blocks spread over
/// per-thread arenas (calls are built on the SIP thread and freed partly on the media thread).
/// `malloc_trim` releases the free pages of every arena; it takes the arenas' locks for as
/// long as it runs, which is logged when it is more than a few milliseconds.
async fn return_freed_memory() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let took = tokio::task::spawn_blocking(|| {
            let t = Instant::now();
            // SAFETY: malloc_trim only walks and trims the allocator's own arenas.
            let released = unsafe { libc::malloc_trim(0) } == 1;
            (released, t.elapsed())
        })
        .await;
        if let Ok((released, took)) = took {
            if took > Duration::from_millis(5) {
                tracing::info!(
                    took_ms = took.as_millis() as u64,
                    released,
                    "freed memory returned to the system"
                );
            } else {
                tracing::debug!(
                    took_us = took.as_micros() as u64,
                    released,
                    "freed memory returned to the system"
                );
            }
        }
    }
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

async fn run(args: RunArgs, loaded: Loaded) -> anyhow::Result<ExitCode> {
    let m = loaded.config.management.clone();
    std::fs::create_dir_all(&m.state_dir)
        .with_context(|| format!("creating the state directory {}", m.state_dir.display()))?;
    let listener = control::bind(&m.control_socket)
        .with_context(|| format!("binding the control socket {}", m.control_socket.display()))?;

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %loaded.path.display(),
        digest = %loaded.digest,
        profile = %loaded.profile.name,
        site = %loaded.config.site.name,
        "starting"
    );
    let (tx, rx) = watch::channel(Arc::new(loaded));
    let (services, handles) = crate::services::all();
    let sup = Supervisor::start(services, rx, Backoff::default());
    let daemon = Arc::new(Daemon {
        handles,
        args,
        started: Instant::now(),
        tx,
        rejected: Mutex::new((Instant::now(), Vec::new())),
        services: sup.view(),
    });
    let server = tokio::spawn(control::serve(listener, daemon.clone()));

    notify(&[NotifyState::Ready, NotifyState::Status("running")]);
    if let Some(period) = sd_notify::watchdog_enabled() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period / 2);
            loop {
                tick.tick().await;
                notify(&[NotifyState::Watchdog]);
            }
        });
    }

    tokio::spawn(return_freed_memory());

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = daemon.reload();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping");
    notify(&[NotifyState::Stopping]);
    server.abort();
    sup.shutdown(STOP_GRACE).await;
    let _ = std::fs::remove_file(&m.control_socket);
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// What the control socket needs of the daemon.
struct Daemon {
    handles: crate::services::Handles,
    args: RunArgs,
    started: Instant,
    tx: watch::Sender<Arc<Loaded>>,
    /// When the configuration in force was loaded, and the errors of the last rejected reload.
    rejected: Mutex<(Instant, Vec<String>)>,
    services: StatusView,
}

impl Daemon {
    /// Re-reads the configuration; a bad one is rejected with its errors and the running one
    /// stays in force.
    fn reload(&self) -> Result<ReloadOutcome, Vec<String>> {
        notify(&[NotifyState::Reloading]);
        let result = self.try_reload();
        notify(&[NotifyState::Ready]);
        result
    }

    fn try_reload(&self) -> Result<ReloadOutcome, Vec<String>> {
        let old = self.tx.borrow().clone();
        let mut state = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        match load(&self.args) {
            Err(errors) => {
                let lines: Vec<String> = errors.0.iter().map(|d| d.to_string()).collect();
                for d in &errors.0 {
                    tracing::error!(error = %d, "reload rejected");
                }
                tracing::error!(
                    errors = lines.len(),
                    digest = %old.digest,
                    "reload rejected; the running configuration stays in force"
                );
                state.1 = lines.clone();
                Err(lines)
            }
            Ok(new) => {
                state.1.clear();
                let changed = new.digest != old.digest;
                let digest = new.digest.clone();
                if changed {
                    warn_restart_only(&old, &new);
                    state.0 = Instant::now();
                    tracing::info!(%digest, "configuration reloaded");
                    self.tx.send_replace(Arc::new(new));
                } else {
                    tracing::info!(%digest, "configuration unchanged");
                }
                Ok(ReloadOutcome { digest, changed })
            }
        }
    }

    fn status(&self) -> Status {
        let loaded = self.tx.borrow().clone();
        let state = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        Status {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            site: loaded.config.site.name.clone(),
            config: ConfigStatus {
                path: loaded.path.display().to_string(),
                digest: loaded.digest.clone(),
                profile: format!("{} ({})", loaded.profile.name, loaded.profile.revision),
                loaded_secs_ago: state.0.elapsed().as_secs(),
                rejected: state.1.clone(),
            },
            services: self.services.status(),
            firewall: Some(self.firewall_state()).filter(|f| !f.last_event.is_empty()),
            sip: self.handles.sip.state().map(|s| control::SipStatus {
                upstreams: s
                    .upstreams
                    .into_iter()
                    .map(|u| control::UpstreamStatus {
                        address: u.address,
                        state: u.state,
                        last_ok_secs: u.last_ok_secs,
                        last_error: u.last_error,
                    })
                    .collect(),
                public_address: s.public_address,
                registrations: s.registrations,
                calls: s.calls,
                subscriptions: s.subscriptions,
                dropped: s.dropped,
            }),
        }
    }

    fn firewall_state(&self) -> FirewallState {
        let (pending_confirm, last_event) = self.handles.firewall.state();
        FirewallState {
            pending_confirm,
            last_event,
        }
    }

    /// `voxgate rules apply`: reload, then apply the new configuration's firewall now
    /// (optionally with a confirmation deadline) before the service sees the change.
    fn rules_apply(&self, confirm: Option<Duration>) -> Response {
        let new = match load(&self.args) {
            Ok(l) => l,
            Err(errors) => {
                return Response::err(
                    "the configuration has errors; nothing applied",
                    errors.0.iter().map(|d| d.to_string()).collect(),
                )
            }
        };
        if !new.config.firewall.enabled {
            return Response::err(
                "the firewall is disabled in the configuration (firewall.enabled)",
                vec![],
            );
        }
        let text = firewall::generate(&new).table.to_nft();
        if let Err(e) = self.handles.firewall.apply(&text, confirm) {
            return Response::err(format!("{e:#}"), vec![]);
        }
        // The firewall service finds this ruleset already applied and leaves it alone.
        if let Err(lines) = self.reload() {
            return Response::err("applied, but the reload failed", lines);
        }
        Response::ok(Reply::Rules(self.firewall_state()))
    }
}

/// Settings that are read once at start-up.
fn warn_restart_only(old: &Loaded, new: &Loaded) {
    let (a, b) = (&old.config.management, &new.config.management);
    let items: [(&str, &PathBuf, &PathBuf); 2] = [
        (
            "management.control_socket",
            &a.control_socket,
            &b.control_socket,
        ),
        ("management.state_dir", &a.state_dir, &b.state_dir),
    ];
    for (key, was, now) in items {
        if was != now {
            tracing::warn!(key, was = %was.display(), now = %now.display(), "takes effect at the next restart");
        }
    }
    if a.log_level != b.log_level {
        tracing::warn!(
            key = "management.log_level",
            "takes effect at the next restart"
        );
    }
}

/// Forwards the SIP shell's trace to one control-socket client, filtered, until it leaves.
fn sip_trace(
    handle: &sip::SipHandle,
    filter: Option<String>,
) -> tokio::sync::mpsc::Receiver<Response> {
    let mut feed = handle.trace();
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let t = match feed.recv().await {
                Ok(t) => t,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "SIP trace client too slow; messages skipped");
                    continue;
                }
                Err(_) => return,
            };
            let message = String::from_utf8_lossy(&t.bytes).into_owned();
            let peer = t.peer.to_string();
            if filter
                .as_deref()
                .is_some_and(|f| !message.contains(f) && !peer.contains(f))
            {
                continue;
            }
            let line = control::TraceLine {
                at_ms: t
                    .at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                direction: if t.inbound { "in" } else { "out" }.into(),
                side: match t.side {
                    sip::transaction::Side::Lan => "lan",
                    sip::transaction::Side::Wan => "wan",
                }
                .into(),
                peer,
                message,
            };
            if tx.send(Response::ok(Reply::Trace(line))).await.is_err() {
                return; // the client left
            }
        }
    });
    rx
}

impl control::Handler for Daemon {
    fn stream(&self, request: &Request) -> Option<tokio::sync::mpsc::Receiver<Response>> {
        match request {
            Request::SipTrace { filter } => Some(sip_trace(&self.handles.sip, filter.clone())),
            _ => None,
        }
    }

    fn handle(&self, request: Request) -> Pin<Box<dyn Future<Output = Response> + Send + '_>> {
        Box::pin(async move {
            match request {
                Request::Status => Response::ok(Reply::Status(self.status())),
                Request::RulesApply { confirm_secs } => tokio::task::block_in_place(|| {
                    self.rules_apply(confirm_secs.map(Duration::from_secs))
                }),
                Request::Leases => {
                    // The voice scope must answer; the bootstrap scope only when it runs.
                    match self.handles.dhcp.list() {
                        Ok(voice) => {
                            let bootstrap = self.handles.dhcp_bootstrap.list().unwrap_or_default();
                            let entry = |l: dhcp::LeaseInfo, scope: &str| control::LeaseEntry {
                                address: l.address.to_string(),
                                mac: l.mac,
                                hostname: l.hostname,
                                vendor: l.vendor_class,
                                state: format!("{:?}", l.state).to_lowercase(),
                                expires: l.expires,
                                scope: scope.into(),
                            };
                            Response::ok(Reply::Leases {
                                leases: voice
                                    .into_iter()
                                    .map(|l| entry(l, "voice"))
                                    .chain(bootstrap.into_iter().map(|l| entry(l, "bootstrap")))
                                    .collect(),
                            })
                        }
                        Err(e) => Response::err(e.to_string(), vec![]),
                    }
                }
                Request::LeaseRelease { mac } => match mac.parse::<config::types::MacAddr>() {
                    Err(e) => Response::err(format!("{mac:?} is not a MAC address: {e}"), vec![]),
                    Ok(m) => match self.handles.dhcp.release(m).await {
                        Ok(mut addrs) => {
                            if let Ok(more) = self.handles.dhcp_bootstrap.release(m).await {
                                addrs.extend(more);
                            }
                            Response::ok(Reply::Released {
                                addresses: addrs.iter().map(|a| a.to_string()).collect(),
                            })
                        }
                        Err(e) => Response::err(e.to_string(), vec![]),
                    },
                },
                Request::Calls => {
                    // Signalling from the B2BUA, joined with the relay's per-stream figures.
                    // Reading the kernel path's counters runs nft: off the runtime's threads.
                    let relay = self.handles.media.clone();
                    let media = tokio::task::spawn_blocking(move || relay.snapshot())
                        .await
                        .unwrap_or_default();
                    let calls = self
                        .handles
                        .sip
                        .calls()
                        .into_iter()
                        .filter_map(|c| {
                            let mut v = serde_json::to_value(&c).ok()?;
                            if let Some(m) = media.iter().find(|m| m.call_id == c.key) {
                                v["media"] = serde_json::to_value(m).ok()?;
                            }
                            Some(v)
                        })
                        .collect();
                    Response::ok(Reply::Calls { calls })
                }
                Request::SipTrace { .. } => Response::err("sip trace is a stream", vec![]),
                Request::Regs => Response::ok(Reply::Regs {
                    registrations: self
                        .handles
                        .sip
                        .registrations()
                        .into_iter()
                        .map(|r| control::RegistrationInfo {
                            aor: r.aor,
                            phone_contact: r.phone_contact,
                            phone_addr: r.phone_addr.to_string(),
                            phone_transport: r.phone_transport,
                            upstream_contact: r.upstream_contact,
                            upstream: r.upstream,
                            state: r.state,
                            expires_in: r.expires_in,
                            last_error: r.last_error,
                        })
                        .collect(),
                }),
                Request::RulesConfirm => {
                    if self.handles.firewall.confirm() {
                        Response::ok(Reply::Rules(self.firewall_state()))
                    } else {
                        Response::err("no firewall change awaits confirmation", vec![])
                    }
                }
                Request::Reload => match self.reload() {
                    Ok(o) => Response::ok(Reply::Reloaded(o)),
                    Err(lines) => Response::err(
                        "the new configuration has errors; the running one stays in force",
                        lines,
                    ),
                },
            }
        })
    }
}
