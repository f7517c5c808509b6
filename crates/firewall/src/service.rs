//! The `firewall` service: applies the generated table at start and whenever a reload changes
//! it, removes it when a reload turns the firewall off, and keeps it in place across restarts
//! of the daemon (the box stays protected). [`FirewallHandle`] lets the control socket apply
//! with a confirmation deadline and confirm.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use config::Loaded;
use supervisor::{Context, Service, ServiceFuture};
use tokio_util::sync::CancellationToken;

use crate::{apply, generate};

#[derive(Default)]
struct State {
    /// The ruleset text in force (as generated), if voxgate applied one.
    applied: Option<String>,
    /// A pending apply awaiting `rules confirm`: the ruleset to go back to, and the timer.
    pending: Option<(Option<String>, CancellationToken)>,
    /// What happened last, for status.
    last_event: String,
}

/// Shared access to the firewall's state; cheap to clone.
#[derive(Clone, Default)]
pub struct FirewallHandle(Arc<Mutex<State>>);

impl FirewallHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `text` unless it is already in force. With `confirm`, the previous ruleset is
    /// restored automatically unless [`FirewallHandle::confirm`] is called within that time.
    pub fn apply(&self, text: &str, confirm: Option<Duration>) -> Result<bool> {
        let mut st = self.lock();
        if st.applied.as_deref() == Some(text) && confirm.is_none() {
            return Ok(false);
        }
        apply::apply(text)?;
        let previous = st.applied.replace(text.to_string());
        st.last_event = "applied".into();
        tracing::info!(bytes = text.len(), "firewall ruleset applied");
        if let Some(limit) = confirm {
            if let Some((_, old_timer)) = st.pending.take() {
                old_timer.cancel();
            }
            let token = CancellationToken::new();
            st.pending = Some((previous, token.clone()));
            st.last_event = format!(
                "applied; awaiting `voxgate rules confirm` within {}s",
                limit.as_secs()
            );
            let me = self.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = token.cancelled() => {}
                    _ = tokio::time::sleep(limit) => me.roll_back(),
                }
            });
        }
        Ok(true)
    }

    fn roll_back(&self) {
        let mut st = self.lock();
        let Some((previous, _)) = st.pending.take() else {
            return;
        };
        let result = match &previous {
            Some(text) => apply::apply(text),
            None => apply::remove(),
        };
        match result {
            Ok(()) => {
                tracing::error!("firewall change not confirmed in time: previous ruleset restored");
                st.applied = previous;
                st.last_event = "rolled back: the last change was not confirmed in time".into();
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "firewall rollback failed");
                st.last_event = format!("rollback failed: {e:#}");
            }
        }
    }

    /// Keeps a pending change; returns false when none was pending.
    pub fn confirm(&self) -> bool {
        let mut st = self.lock();
        match st.pending.take() {
            Some((_, token)) => {
                token.cancel();
                st.last_event = "applied and confirmed".into();
                tracing::info!("firewall change confirmed");
                true
            }
            None => false,
        }
    }

    /// Whether a change awaits confirmation, and what happened last.
    pub fn state(&self) -> (bool, String) {
        let st = self.lock();
        (st.pending.is_some(), st.last_event.clone())
    }

    fn forget(&self) {
        let mut st = self.lock();
        st.applied = None;
        st.last_event = "removed: firewall disabled".into();
    }
}

/// The service; shares its state with the daemon through a [`FirewallHandle`].
pub struct FirewallService(pub FirewallHandle);

impl Service<Loaded> for FirewallService {
    fn name(&self) -> &'static str {
        "firewall"
    }

    fn enabled(&self, l: &Loaded) -> bool {
        l.config.firewall.enabled
    }

    fn run(&self, mut ctx: Context<Loaded>) -> ServiceFuture {
        let handle = self.0.clone();
        Box::pin(async move {
            loop {
                let loaded = ctx.config.borrow_and_update().clone();
                if loaded.config.firewall.enabled {
                    let text = generate(&loaded).table.to_nft();
                    let h = handle.clone();
                    tokio::task::spawn_blocking(move || h.apply(&text, None)).await??;
                }
                tokio::select! {
                    _ = ctx.stop.cancelled() => break,
                    changed = ctx.config.changed() => if changed.is_err() { break },
                }
            }
            // Stopped: keep the table on shutdown (the box stays protected while voxgate
            // restarts); remove it only when the configuration turned the firewall off.
            if !ctx.config.borrow().config.firewall.enabled {
                tokio::task::spawn_blocking(apply::remove).await??;
                handle.forget();
                tracing::info!("firewall disabled: table inet voxgate removed");
            }
            Ok(())
        })
    }
}
