//! Harnesses for tests of this crate and the crates above it (feature `test-utils`).
//!
//! [`ChildTest`] runs one `#[ignore]`d test of the current test binary as a child process, so a
//! test can SIGKILL a writer at random moments and check what the next open finds (the kill -9
//! pattern of `tests/crash.rs` and sync's `tests/kill.rs`).

use std::{
    ffi::OsStr,
    io::{self, BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// A child process running one test of the current test binary, its stdout read line by line on
/// a thread. Dropping it kills the child.
#[derive(Debug)]
pub struct ChildTest {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl ChildTest {
    /// Runs the test `name` (normally `#[ignore]`d, so only this runs it) of the current test
    /// binary with `env` added to its environment; its stderr is discarded.
    pub fn spawn<'a>(
        name: &str,
        env: impl IntoIterator<Item = (&'a str, &'a OsStr)>,
    ) -> io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no child stdout"))?;
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Self { child, lines, reader: Some(reader) })
    }

    /// The next line the child printed, waiting up to `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Reads lines until `pick` returns `Some` for one, or `timeout` passes.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Some(found) = self.next_line(left).as_deref().and_then(&mut pick) {
                return Some(found);
            }
        }
        None
    }

    /// SIGKILLs the child, reaps it, and returns the lines it printed that were not read yet.
    pub fn kill(mut self) -> io::Result<Vec<String>> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(self.rest())
    }

    /// Waits for the child to exit and returns its status with the lines not read yet.
    pub fn wait(mut self) -> io::Result<(ExitStatus, Vec<String>)> {
        let status = self.child.wait()?;
        Ok((status, self.rest()))
    }

    /// Joins the reader (the child's stdout is closed) and drains the lines.
    fn rest(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.lines.try_iter().collect()
    }
}

impl Drop for ChildTest {
    fn drop(&mut self) {
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The directory of the package whose test is running: `CARGO_MANIFEST_DIR` as cargo sets it
/// when the test runs, else `built_in` (the caller's `env!("CARGO_MANIFEST_DIR")`). A test binary
/// kept in a shared target directory from a build in another checkout would otherwise read that
/// checkout's files.
pub fn package_dir(built_in: &str) -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| built_in.into(), Into::into)
}
