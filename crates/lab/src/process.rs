//! A process started in the lab.

use anyhow::{bail, Result};
use std::collections::HashSet;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A process started with [`crate::Lab::spawn`]. Dropping it stops it (SIGTERM, up to 2 s,
/// then SIGKILL); the lab's teardown kills it too if it is still running then.
pub struct LabProcess {
    child: Child,
    status: Option<ExitStatus>,
    /// The lab's set of unreaped pids: a pid leaves it only when reaped, under the lock,
    /// so the lab never signals a pid that may have been reused.
    live: Arc<Mutex<HashSet<u32>>>,
}

impl LabProcess {
    pub(crate) fn new(child: Child, live: Arc<Mutex<HashSet<u32>>>) -> LabProcess {
        live.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(child.id());
        LabProcess {
            child,
            status: None,
            live,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `sig` (e.g. `libc::SIGTERM`); fails if the process has already been reaped.
    pub fn signal(&self, sig: i32) -> Result<()> {
        if self.status.is_some() {
            bail!("process {} has already exited", self.pid());
        }
        // SAFETY: the pid is our unreaped child, so it cannot have been reused.
        if unsafe { libc::kill(self.pid() as libc::pid_t, sig) } != 0 {
            bail!(
                "kill {} {sig}: {}",
                self.pid(),
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    fn try_reap(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(status) = self.child.try_wait()? {
                live.remove(&self.child.id());
                self.status = Some(status);
            }
        }
        Ok(self.status)
    }

    /// Waits up to `d` for the process to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, d: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + d;
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if self.signal(libc::SIGKILL).is_ok() {
            let _ = self.wait_timeout(Duration::from_secs(5));
        }
    }

    /// The child, e.g. to take its piped stdout or stderr. Do not wait on it directly:
    /// use [`LabProcess::wait_timeout`], which keeps the lab's bookkeeping right.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        if self.signal(libc::SIGTERM).is_ok()
            && !matches!(self.wait_timeout(Duration::from_secs(2)), Ok(Some(_)))
        {
            self.kill();
        }
    }
}
