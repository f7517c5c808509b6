//! Helpers shared by the daemon's integration tests: run `voxgate` in the lab's box and talk
//! to it over its control socket.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lab::{Lab, Node};
use serde_json::Value;

pub const VOXGATE: &str = env!("CARGO_BIN_EXE_voxgate");

pub fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(VOXGATE)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

pub fn status(socket: &Path) -> Value {
    let out = cli(socket, &["status", "--json"]);
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls `status` until `pred` holds, or fails after `limit` with the last status shown.
pub fn wait_status(
    socket: &Path,
    limit: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let t0 = Instant::now();
    loop {
        if socket.exists() {
            let out = cli(socket, &["status", "--json"]);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                if pred(&v) {
                    return v;
                }
                if t0.elapsed() > limit {
                    panic!("timed out waiting for {what}; last status:\n{v:#}");
                }
            }
        }
        assert!(
            t0.elapsed() < limit,
            "timed out waiting for {what} (no answer on {})",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn service<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in {status:#}"))
}

pub fn lab_config(site: &str) -> String {
    config::LAB_CONFIG.replace("name: lab", &format!("name: {site}"))
}

pub struct Box_ {
    pub dir: tempfile::TempDir,
}

impl Box_ {
    pub fn new() -> Box_ {
        Box_ {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("voxgate.yaml")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/control.sock")
    }
    pub fn start(&self, lab: &Lab) -> lab::LabProcess {
        let mut cmd = lab.command(Node::Box, VOXGATE);
        cmd.arg("run")
            .arg("--config")
            .arg(self.config())
            .arg("--control-socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .arg("--log-format")
            .arg("json")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("daemon.log")).unwrap());
        lab.spawn(Node::Box, cmd).unwrap()
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }
}
