//! The `media` service: runs the relay under the supervisor, following configuration reloads.

use config::Loaded;
use supervisor::{Context, Service, ServiceFuture};

use crate::{MediaHandle, MediaSettings};

/// How often the service checks that the relay's ticker still runs (and starts it again).
const TICKER_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the relay behind a [`MediaHandle`] that the SIP service shares.
pub struct MediaService {
    handle: MediaHandle,
}

impl MediaService {
    /// A service driving `handle` (give the SIP service a clone of the same handle).
    pub fn new(handle: MediaHandle) -> MediaService {
        MediaService { handle }
    }

    /// The handle the service drives.
    pub fn handle(&self) -> MediaHandle {
        self.handle.clone()
    }
}

/// Stops the relay however the service's future ends (stop, error or cancellation).
struct StopOnDrop(MediaHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl Service<Loaded> for MediaService {
    fn name(&self) -> &'static str {
        "media"
    }

    fn enabled(&self, config: &Loaded) -> bool {
        config.config.media.enabled
    }

    fn run(&self, mut ctx: Context<Loaded>) -> ServiceFuture {
        let handle = self.handle.clone();
        Box::pin(async move {
            let settings = MediaSettings::from_loaded(&ctx.config.borrow_and_update());
            handle.start(settings)?;
            let _stop = StopOnDrop(handle.clone());
            let mut watchdog = tokio::time::interval(TICKER_CHECK);
            loop {
                tokio::select! {
                    _ = ctx.stop.cancelled() => return Ok(()),
                    _ = watchdog.tick() => {
                        if handle.revive_ticker() {
                            tracing::error!("the media relay's ticker panicked (its message is on stderr) and was started again; calls keep their media");
                        }
                    }
                    changed = ctx.config.changed() => {
                        if changed.is_err() {
                            // The daemon is going away; it cancels `stop` next.
                            ctx.stop.cancelled().await;
                            return Ok(());
                        }
                        let settings = MediaSettings::from_loaded(&ctx.config.borrow_and_update());
                        handle.reconfigure(settings);
                    }
                }
            }
        })
    }
}
