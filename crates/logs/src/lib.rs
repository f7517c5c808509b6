//! The daemon's log output, written in batches off the services' threads.
//!
//! A service that logs appends the formatted line to a shared buffer and goes on; a writer
//! thread takes the whole buffer at once and writes it out (to stderr, i.e. the journal) with
//! one `write(2)`. The writer sleeps while there is nothing to write and is woken only by the
//! line that finds the buffer empty; it then waits [`GATHER`] for the rest of a burst.
//!
//! Why not tracing-appender's `non_blocking`: its channel wakes the writer thread for every
//! line. Measured with `perf` under the SIP benchmark at 2500 calls/s (three lines a call),
//! those wake-ups and the writer's context switches were about 7 % of the daemon's CPU; here
//! it is one wake-up per batch.
//!
//! Under overload (the writer cannot keep up, e.g. a stalled journal) lines beyond
//! [`MAX_PENDING`] bytes are dropped, never blocking a service; the writer then reports how
//! many were lost. Dropping [`Guard`] writes what is pending and stops the thread.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer lets a burst gather after the first line wakes it: the most a line
/// waits before it is written.
pub const GATHER: Duration = Duration::from_millis(10);

/// Bytes of lines waiting to be written beyond which new lines are dropped.
pub const MAX_PENDING: usize = 8 << 20;

/// Capacity the writer keeps between batches; a larger buffer (after a burst) is given back.
const KEEP: usize = 64 << 10;

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// Lines dropped since the last batch.
    dropped: u64,
    /// The writer is waiting for a line (and must be woken).
    idle: bool,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave the buffer inconsistent (appends are
        // single calls): keep logging.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where the services' log lines go: a [`tracing_subscriber::fmt::MakeWriter`] (cheap to
/// clone).
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
}

/// Keeps the writer thread; dropping it writes what is pending and stops the thread.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread over `out`.
pub fn writer(out: impl Write + Send + 'static) -> std::io::Result<(Writer, Guard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
    });
    let thread = std::thread::Builder::new()
        .name("voxgate-log".into())
        .spawn({
            let shared = shared.clone();
            move || write_batches(&shared, out)
        })?;
    Ok((
        Writer {
            shared: shared.clone(),
        },
        Guard {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The writer thread: waits for lines, lets a burst gather, writes it in one go.
fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::with_capacity(KEEP);
    loop {
        let mut st = shared.lock();
        while st.pending.is_empty() && st.dropped == 0 && !st.closing {
            st.idle = true;
            st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.idle = false;
        if !st.closing {
            drop(st);
            std::thread::sleep(GATHER);
            st = shared.lock();
        }
        std::mem::swap(&mut st.pending, &mut batch);
        let dropped = std::mem::take(&mut st.dropped);
        // What was pending is in `batch` now (and `pending` the empty buffer it swapped for).
        let closing = st.closing;
        drop(st);
        if dropped > 0 {
            // After the lines that were kept: they were written before the loss.
            let _ = writeln!(
                batch,
                "voxgate: {dropped} log line(s) dropped: the log output did not keep up"
            );
        }
        // Nothing to do if the output fails (stderr gone): the lines are lost either way,
        // and a service must not stall on it.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        batch.shrink_to(KEEP);
        if closing {
            return;
        }
    }
}

impl Writer {
    fn append(&self, line: &[u8]) {
        let mut st = self.shared.lock();
        if st.pending.len() + line.len() > MAX_PENDING {
            st.dropped += 1;
        } else {
            st.pending.extend_from_slice(line);
        }
        let wake = st.idle;
        st.idle = false;
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

impl Write for &Writer {
    /// Takes a whole formatted event (tracing-subscriber writes each with one `write_all`).
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Writer {
    type Writer = &'a Writer;
    fn make_writer(&'a self) -> &'a Writer {
        self
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests;
