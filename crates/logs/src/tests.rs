use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// An output the test can read back, and hold (writes block while `held`).
#[derive(Clone, Default)]
struct Out {
    bytes: Arc<Mutex<Vec<u8>>>,
    held: Arc<AtomicBool>,
    writes: Arc<Mutex<usize>>,
}

impl std::io::Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        while self.held.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        *self.writes.lock().unwrap() += 1;
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Out {
    fn text(&self) -> String {
        String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
    }
}

#[test]
fn every_line_of_every_thread_is_written_whole_and_in_each_threads_order() {
    let out = Out::default();
    let (w, guard) = writer(out.clone()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let w = &w;
            s.spawn(move || {
                for i in 0..1000 {
                    (&*w)
                        .write_all(format!("t{t} line {i}\n").as_bytes())
                        .unwrap();
                }
            });
        }
    });
    drop(guard);
    let text = out.text();
    assert_eq!(text.lines().count(), 4000);
    for t in 0..4 {
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("t{t} ")))
            .collect();
        let want: Vec<String> = (0..1000).map(|i| format!("t{t} line {i}")).collect();
        assert_eq!(mine, want);
    }
}

#[test]
fn a_line_is_written_soon_without_waiting_for_more_and_a_burst_in_few_writes() {
    let out = Out::default();
    let (w, _guard) = writer(out.clone()).unwrap();
    (&w).write_all(b"first\n").unwrap();
    let t0 = Instant::now();
    while out.text() != "first\n" {
        assert!(t0.elapsed() < Duration::from_secs(5), "not written");
        std::thread::sleep(Duration::from_millis(1));
    }
    // 10 000 lines written as fast as possible go out in far fewer writes.
    for i in 0..10_000 {
        (&w).write_all(format!("burst {i}\n").as_bytes()).unwrap();
    }
    while out.text().lines().count() < 10_001 {
        assert!(t0.elapsed() < Duration::from_secs(5), "burst not written");
        std::thread::sleep(Duration::from_millis(1));
    }
    let writes = *out.writes.lock().unwrap();
    assert!(writes < 100, "{writes} writes for 10 001 lines");
}

#[test]
fn lines_beyond_the_limit_are_dropped_counted_and_reported_never_blocking() {
    let out = Out::default();
    out.held.store(true, Ordering::SeqCst);
    let (w, guard) = writer(out.clone()).unwrap();
    // The first line wakes the writer, which blocks in its write; what follows piles up.
    (&w).write_all(b"first\n").unwrap();
    std::thread::sleep(GATHER * 5);
    let line = [b'x'; 1023];
    let line = [&line[..], b"\n"].concat();
    let fit = MAX_PENDING / line.len();
    let t0 = Instant::now();
    for _ in 0..fit + 10 {
        (&w).write_all(&line).unwrap();
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "writing blocked");
    out.held.store(false, Ordering::SeqCst);
    drop(guard);
    let text = out.text();
    assert_eq!(text.lines().filter(|l| l.starts_with('x')).count(), fit);
    assert!(
        text.ends_with("voxgate: 10 log line(s) dropped: the log output did not keep up\n"),
        "{}",
        &text[text.len() - 200..]
    );
}

#[test]
fn tracing_events_reach_the_output_as_lines() {
    let out = Out::default();
    let (w, guard) = writer(out.clone()).unwrap();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(w)
        .with_ansi(false)
        .without_time()
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(reason = "bye", "call ended");
        tracing::warn!("second");
    });
    drop(guard);
    assert_eq!(
        out.text(),
        " INFO logs::tests: call ended reason=\"bye\"\n WARN logs::tests: second\n"
    );
}
