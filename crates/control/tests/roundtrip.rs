//! Client and server over a real Unix socket.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use control::*;

struct Fixed;

impl Handler for Fixed {
    fn handle(&self, request: Request) -> Pin<Box<dyn Future<Output = Response> + Send + '_>> {
        Box::pin(async move {
            match request {
                Request::Status => Response::ok(Reply::Status(Status {
                    version: "test".into(),
                    pid: 1,
                    uptime_secs: 5,
                    site: "lab".into(),
                    config: ConfigStatus {
                        path: "/x".into(),
                        digest: "ab".into(),
                        profile: "lab".into(),
                        loaded_secs_ago: 1,
                        rejected: vec![],
                    },
                    services: vec![],
                    firewall: None,
                    sip: None,
                })),
                Request::Reload => Response::err("bad config", vec!["x.yaml:1:1: boom".into()]),
                // A busy box: thousands of calls make a reply of several megabytes.
                Request::Calls => Response::ok(Reply::Calls {
                    calls: (0..5000)
                        .map(|i| serde_json::json!({"key": format!("call-{i}"), "pad": "x".repeat(1000)}))
                        .collect(),
                }),
                _ => Response::err("unsupported here", vec![]),
            }
        })
    }
}

const T: Duration = Duration::from_secs(2);

#[tokio::test]
async fn requests_round_trip_and_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/control.sock");
    let listener = bind(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // a second daemon may not steal a live socket
    assert_eq!(
        bind(&path).unwrap_err().kind(),
        std::io::ErrorKind::AddrInUse
    );
    let server = tokio::spawn(serve(listener, Arc::new(Fixed)));

    match request(&path, Request::Status, T).await.unwrap() {
        Reply::Status(s) => assert_eq!(s.site, "lab"),
        other => panic!("{other:?}"),
    }
    match request(&path, Request::Calls, T).await.unwrap() {
        Reply::Calls { calls } => assert_eq!(calls.len(), 5000, "a reply over 1 MiB is read whole"),
        other => panic!("{other:?}"),
    }
    match request(&path, Request::Reload, T).await {
        Err(ClientError::Daemon { error, details }) => {
            assert_eq!(error, "bad config");
            assert_eq!(details, vec!["x.yaml:1:1: boom".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    server.abort();
    let _ = server.await;
}

#[tokio::test]
async fn wrong_version_and_garbage_get_an_answer_not_a_hangup() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let server = tokio::spawn(serve(bind(&path).unwrap(), Arc::new(Fixed)));
    let s = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (rd, mut wr) = s.into_split();
    let mut rd = BufReader::new(rd);
    for (req, want) in [
        (
            "{\"v\":99,\"cmd\":\"status\"}\n",
            "protocol version 99 not supported",
        ),
        ("not json\n", "malformed request"),
        ("{\"v\":1,\"cmd\":\"explode\"}\n", "unknown request"),
    ] {
        wr.write_all(req.as_bytes()).await.unwrap();
        let mut line = String::new();
        rd.read_line(&mut line).await.unwrap();
        assert!(line.contains(want), "{line}");
        assert!(line.contains("\"ok\":false"), "{line}");
    }
    server.abort();
}

#[tokio::test]
async fn no_daemon_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let e = request(&path, Request::Status, T).await.unwrap_err();
    assert!(matches!(e, ClientError::NotRunning(_)));
    assert_eq!(
        e.to_string(),
        format!(
            "voxgate is not running (no daemon answers on {})",
            path.display()
        )
    );
    // a stale socket file from a dead daemon is also "not running", and bind replaces it
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let e = request(&path, Request::Status, T).await.unwrap_err();
    assert!(matches!(e, ClientError::NotRunning(_)), "{e}");
    bind(&path).unwrap();
}
