//! Harnesses for tests of this crate and the crates above it (feature `test-utils`).
//!
//! [`ChildTest`] runs one `#[ignore]`d test of the current test binary as a child process, so a
//! test can SIGKILL a writer at random moments and check what the next open finds (the kill -9
//! pattern of `tests/crash.rs` and sync's `tests/kill.rs`). [`HookStore`] runs another thread's
//! writes at a chosen read of a reader, to show what a preempted reader sees, and refuses writes
//! as a full disk does when told to.

use std::{
    ffi::OsStr,
    io::{self, BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Mutex, PoisonError, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    LeafDbError, MemStore, Result,
    kv::{Durability, KvIter, KvRead, KvStore, SortedWriter, Table, WriteBatch},
    schema::meta,
};

/// Set in a [`ChildTest`]'s environment (to the test's name).
const CHILD_TEST_ENV: &str = "LEAFSYNC_CHILD_TEST";

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
            .env(CHILD_TEST_ENV, name)
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

    /// Whether this process is a [`ChildTest`]: a child test's body starts with `if
    /// !ChildTest::is_child() { return; }`, so that `cargo test -- --include-ignored` passes
    /// over it instead of running a child (which may wait for a signal forever) on its own.
    pub fn is_child() -> bool {
        std::env::var_os(CHILD_TEST_ENV).is_some()
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

    /// The child's process id (to send it signals).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child's exit status, waiting up to `timeout` for it; `None` while it still runs.
    pub fn exit_within(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// What a [`HookStore`] runs, once: another thread's writes landing at a chosen moment of a
/// reader's work.
pub type Hook = Box<dyn FnOnce() + Send>;

/// When a [`HookStore`]'s hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAt {
    /// When a snapshot is asked for, before it is taken.
    Snapshot,
    /// When the store itself (not a snapshot of it) is asked for `key` of the table, before it
    /// is read.
    Get(Table, &'static [u8]),
}

/// The meta key of the state's account root (for [`HookAt::Get`]).
pub const ACCOUNT_ROOT_KEY: &[u8] = meta::ACCOUNT_ROOT;

/// A [`MemStore`] that runs a hook, once, at a chosen read ([`HookAt`]): the apply thread's work
/// landing while a reader is preempted between two reads. It notes each write's durability, and
/// refuses writes as a full disk does once told to ([`HookStore::refuse_writes_after`]).
#[derive(Default)]
pub struct HookStore {
    inner: MemStore,
    hook: Mutex<Option<(HookAt, Hook)>>,
    durabilities: Mutex<Vec<Durability>>,
    gate: Mutex<WriteGate>,
}

/// The writes (batches, sorted writers, flushes) a [`HookStore`] was asked for, and which it
/// refuses.
#[derive(Debug, Default)]
struct WriteGate {
    /// Writes let through before every further one is refused (`None`: all).
    allowed: Option<u64>,
    /// Writes asked for since the store was made or the gate last set, refused ones included.
    count: u64,
    /// The numbers of the refused writes, in order.
    refused: Vec<u64>,
}

impl HookStore {
    /// An empty store without a hook.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `hook` once, at the first read `at`.
    pub fn set_hook(&self, at: HookAt, hook: Hook) {
        *self.hook.lock().unwrap_or_else(PoisonError::into_inner) = Some((at, hook));
    }

    /// The durability of every write so far, in order.
    pub fn durabilities(&self) -> Vec<Durability> {
        self.durabilities.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// From now on, every write (batch, sorted writer, flush) after the first `allowed` fails
    /// with a storage error `write <n> refused: no space left`, as on a full disk (which fails
    /// every write after the first); the writes are counted again from zero.
    pub fn refuse_writes_after(&self, allowed: u64) {
        *self.write_gate() = WriteGate { allowed: Some(allowed), ..WriteGate::default() };
    }

    /// Writes (batches, sorted writers, flushes) asked for since the store was made or last
    /// told [`Self::refuse_writes_after`], refused ones included.
    pub fn writes(&self) -> u64 {
        self.write_gate().count
    }

    /// The numbers of the writes refused, in order (counted as [`Self::writes`]).
    pub fn refused_writes(&self) -> Vec<u64> {
        self.write_gate().refused.clone()
    }

    fn write_gate(&self) -> std::sync::MutexGuard<'_, WriteGate> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a write; refuses it past the allowed ones.
    fn pass_write(&self) -> Result<()> {
        let mut gate = self.write_gate();
        gate.count += 1;
        let n = gate.count;
        if gate.allowed.is_none_or(|allowed| n <= allowed) {
            return Ok(());
        }
        gate.refused.push(n);
        let error = io::Error::other(format!("write {n} refused: no space left"));
        Err(LeafDbError::Storage(Box::new(error)))
    }

    /// Runs the hook, once, if it is set for a read that `is_now` matches.
    fn fire_if(&self, is_now: impl Fn(&HookAt) -> bool) {
        let mut slot = self.hook.lock().unwrap_or_else(PoisonError::into_inner);
        let hook = match slot.take() {
            Some((at, hook)) if is_now(&at) => hook,
            other => {
                *slot = other;
                return;
            }
        };
        drop(slot);
        hook();
    }
}

impl KvRead for HookStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.fire_if(|at| matches!(at, HookAt::Get(t, k) if *t == table && *k == key));
        self.inner.get(table, key)
    }

    fn iter_from<'a>(&'a self, table: Table, start: &[u8]) -> KvIter<'a> {
        self.inner.iter_from(table, start)
    }
}

impl KvStore for HookStore {
    type Snapshot<'a> = <MemStore as KvStore>::Snapshot<'a>;

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        self.pass_write()?;
        self.durabilities.lock().unwrap_or_else(PoisonError::into_inner).push(durability);
        self.inner.write(batch, durability)
    }

    fn snapshot(&self) -> Self::Snapshot<'_> {
        self.fire_if(|at| *at == HookAt::Snapshot);
        self.inner.snapshot()
    }

    fn flush(&self) -> Result<()> {
        self.pass_write()?;
        self.inner.flush()
    }

    fn sorted_writer(&self, table: Table) -> Result<Box<dyn SortedWriter + '_>> {
        self.pass_write()?;
        self.inner.sorted_writer(table)
    }
}

/// Overwrites 4 KiB in the middle of the largest table file (`*.sst`) of the RocksDB directory
/// `dir`, as a bad sector would, and returns that file's size: RocksDB then fails the block's
/// checksum when it reads it.
pub fn damage_largest_table(dir: &std::path::Path) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom, Write};
    let mut largest: Option<(u64, std::path::PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "sst") {
            let len = std::fs::metadata(&path)?.len();
            if largest.as_ref().is_none_or(|(l, _)| len > *l) {
                largest = Some((len, path));
            }
        }
    }
    let (len, path) = largest.ok_or_else(|| io::Error::other("no table file to damage"))?;
    let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
    file.seek(SeekFrom::Start(len / 2))?;
    file.write_all(&[0xa5; 4 << 10])?;
    file.sync_all()?;
    Ok(len)
}
