//! Supervisor behaviour on tokio's paused clock: no real sleeps.

use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

/// Test configuration: which services are on.
#[derive(Debug)]
struct Cfg {
    on: bool,
}

/// Fails its first `failures` runs (by error, or by panic when `panics`), then runs until told
/// to stop.
struct Flaky {
    failures: u32,
    panics: bool,
    runs: Arc<AtomicU32>,
}

impl Service<Cfg> for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn enabled(&self, c: &Cfg) -> bool {
        c.on
    }
    fn run(&self, ctx: Context<Cfg>) -> ServiceFuture {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let (fail, panics) = (n < self.failures, self.panics);
        Box::pin(async move {
            if fail {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if panics {
                    panic!("boom {n}");
                }
                anyhow::bail!("port in use (run {n})");
            }
            ctx.stop.cancelled().await;
            Ok(())
        })
    }
}

struct Steady;

impl Service<Cfg> for Steady {
    fn name(&self) -> &'static str {
        "steady"
    }
    fn enabled(&self, _: &Cfg) -> bool {
        true
    }
    fn run(&self, ctx: Context<Cfg>) -> ServiceFuture {
        Box::pin(async move {
            ctx.stop.cancelled().await;
            Ok(())
        })
    }
}

fn state(sup: &Supervisor, name: &str) -> ServiceStatus {
    sup.status().into_iter().find(|s| s.name == name).unwrap()
}

async fn settle(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn failing_service_restarts_with_backoff_while_others_run() {
    let runs = Arc::new(AtomicU32::new(0));
    let (_tx, rx) = watch::channel(Arc::new(Cfg { on: true }));
    let flaky = Arc::new(Flaky {
        failures: 3,
        panics: false,
        runs: runs.clone(),
    });
    let sup = Supervisor::start(vec![flaky, Arc::new(Steady)], rx, Backoff::default());

    settle(Duration::from_millis(150)).await; // first run failed at 100 ms; retry after 1 s
    let s = state(&sup, "flaky");
    assert_eq!(s.state, ServiceState::Restarting);
    assert_eq!(s.restarts, 1);
    assert_eq!(s.last_error.as_deref(), Some("port in use (run 0)"));
    assert_eq!(state(&sup, "steady").state, ServiceState::Running);

    // runs fail at 0.1 s, 1.2 s, 3.3 s (delays 1, 2, 4 s); the fourth starts at 7.3 s and holds
    settle(Duration::from_millis(1000)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    settle(Duration::from_millis(2200)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(state(&sup, "flaky").state, ServiceState::Restarting);
    settle(Duration::from_millis(4100)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    let s = state(&sup, "flaky");
    assert_eq!(s.state, ServiceState::Running);
    assert_eq!(s.restarts, 3);
    assert_eq!(
        s.last_error.as_deref(),
        Some("port in use (run 2)"),
        "last error is kept for the engineer"
    );

    sup.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_a_failure_not_a_crash() {
    let runs = Arc::new(AtomicU32::new(0));
    let (_tx, rx) = watch::channel(Arc::new(Cfg { on: true }));
    let flaky = Arc::new(Flaky {
        failures: 1,
        panics: true,
        runs: runs.clone(),
    });
    let sup = Supervisor::start(vec![flaky], rx, Backoff::default());
    settle(Duration::from_millis(150)).await;
    let s = state(&sup, "flaky");
    assert_eq!(s.state, ServiceState::Restarting);
    assert_eq!(s.last_error.as_deref(), Some("panicked: boom 0"));
    settle(Duration::from_secs(2)).await;
    assert_eq!(state(&sup, "flaky").state, ServiceState::Running);
    sup.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn reload_disables_and_enables() {
    let runs = Arc::new(AtomicU32::new(0));
    let (tx, rx) = watch::channel(Arc::new(Cfg { on: false }));
    let flaky = Arc::new(Flaky {
        failures: 0,
        panics: false,
        runs: runs.clone(),
    });
    let sup = Supervisor::start(vec![flaky], rx, Backoff::default());
    settle(Duration::from_millis(10)).await;
    assert_eq!(state(&sup, "flaky").state, ServiceState::Disabled);
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    tx.send(Arc::new(Cfg { on: true })).unwrap();
    settle(Duration::from_millis(10)).await;
    assert_eq!(state(&sup, "flaky").state, ServiceState::Running);

    tx.send(Arc::new(Cfg { on: false })).unwrap();
    settle(Duration::from_millis(10)).await;
    let s = state(&sup, "flaky");
    assert_eq!(s.state, ServiceState::Disabled);
    assert_eq!(s.restarts, 0, "being disabled is not a failure");
    sup.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_everything_and_abandons_the_stuck() {
    struct Stuck;
    impl Service<Cfg> for Stuck {
        fn name(&self) -> &'static str {
            "stuck"
        }
        fn enabled(&self, _: &Cfg) -> bool {
            true
        }
        fn run(&self, _: Context<Cfg>) -> ServiceFuture {
            Box::pin(std::future::pending())
        }
    }
    let (_tx, rx) = watch::channel(Arc::new(Cfg { on: true }));
    let sup = Supervisor::start(
        vec![Arc::new(Steady), Arc::new(Stuck)],
        rx,
        Backoff::default(),
    );
    settle(Duration::from_millis(10)).await;
    let t0 = Instant::now();
    sup.shutdown(Duration::from_secs(3)).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_service_on_its_own_thread_runs_there_stops_and_fails_as_on_the_runtime() {
    // Runs on a thread named after it, and ends when told to stop.
    let stop = CancellationToken::new();
    let s = stop.clone();
    let run = tokio::spawn(on_own_thread(
        "test",
        Box::pin(async move {
            let name = std::thread::current().name().map(str::to_string);
            anyhow::ensure!(name.as_deref() == Some("voxgate-test"), "ran on {name:?}");
            // Its own runtime drives timers and tasks.
            tokio::spawn(async {}).await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
            s.cancelled().await;
            Ok(())
        }),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!run.is_finished());
    stop.cancel();
    run.await.unwrap().unwrap();

    // An error comes back as it was; a panic is raised again where the supervisor awaits.
    let err = on_own_thread("test", Box::pin(async { anyhow::bail!("port in use") }))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "port in use");
    let panicked = tokio::spawn(on_own_thread(
        "test",
        Box::pin(async { panic!("boom on the thread") }),
    ))
    .await
    .unwrap_err();
    assert!(panicked.is_panic());
    let p = panicked.into_panic();
    assert_eq!(p.downcast_ref::<&str>(), Some(&"boom on the thread"));
}
