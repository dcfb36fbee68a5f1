//! A script of `tests/interop` run by Node.js: an independent devp2p peer for the interop tests
//! of this and other crates.

use super::package_dir;
use serde_json::Value;
use std::{
    io::BufRead,
    path::PathBuf,
    process::{Child, Command, Stdio},
};
use tokio::sync::mpsc;

/// `tests/interop`, where the scripts and their `node_modules` are.
pub fn interop_dir() -> PathBuf {
    package_dir(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

/// A running script: its process (killed on drop) and its events, one JSON value a line (a line
/// that is not JSON arrives as a string). Every line is echoed to stderr as `ethereumjs: …`.
#[derive(Debug)]
pub struct NodeScript {
    child: Child,
    /// The events, until the script exits or has printed the most it may.
    pub events: mpsc::Receiver<Value>,
}

impl Drop for NodeScript {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeScript {
    /// Runs `node <script> <args>` in [`interop_dir`]; reading stops after `max_events` lines.
    ///
    /// # Panics
    /// When `node` cannot be started.
    pub fn spawn(script: &str, args: &[String], max_events: usize) -> Self {
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(interop_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run node (Node.js is required for the interop tests)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::channel(max_events);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().take(max_events) {
                let Ok(line) = line else { break };
                eprintln!("ethereumjs: {line}");
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.blocking_send(value).is_err() {
                    break;
                }
            }
        });
        Self { child, events }
    }
}
