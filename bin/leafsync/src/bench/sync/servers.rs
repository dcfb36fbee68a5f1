//! The servers of `bench sync`, in a child process of their own so that the client's CPU time is
//! the client's only. The parent re-executes its own binary with the hidden `bench sync-servers`
//! command ([`ServerProcess::spawn`]); the child generates the state once, serves it from `K`
//! nodes over one leafdb, prints one [`Ready`] line of JSON on stdout and runs until its stdin
//! closes (the parent exits, fails or is killed). For every line the parent writes to its stdin
//! it prints one line of JSON: the [`ServerCounters`] for `counters`
//! ([`ServerProcess::counters`]), the [`ChainReport`] for `chain` ([`ServerProcess::chain`]).
//!
//! Without churn the servers share the generated leafdb, which stays at block 0. With churn
//! (`churn.rs`) each server has a copy of its own, and the generated one makes the chain.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, ExitCode, Stdio},
    sync::Arc,
};

use alloy_primitives::B256;
use leafsync_leafdb::{GenParams, LeafDb, RocksStore};
use leafsync_p2p::peers::NodeRecord;
use leafsync_serve::LeafServer;
use serde::{Deserialize, Serialize};
use tracing::info;

use tokio_util::sync::CancellationToken;

use super::churn::{Chain, ChainReport, ChurnArgs, ChurnPlan};
use crate::{
    bench::proc::cpu_ticks,
    error::CliError,
    node::loopback::{open, runtime, start_servers, stop_servers},
};

/// Arguments of the hidden `bench sync-servers`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServersArgs {
    /// Accounts in the generated state.
    #[arg(long)]
    pub(crate) accounts: u64,
    /// Number of server nodes.
    #[arg(long)]
    pub(crate) servers: usize,
    /// Seed of the generator.
    #[arg(long)]
    pub(crate) seed: u64,
    /// The (empty) leafdb directory to generate the state into.
    #[arg(long)]
    pub(crate) datadir: PathBuf,
    /// Blocks applied while the clients sync.
    #[command(flatten)]
    pub(crate) churn: ChurnArgs,
}

/// The child's one line on stdout once every server listens.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Ready {
    /// The state root, hex.
    pub(crate) root: String,
    /// Accounts generated.
    pub(crate) accounts: u64,
    /// Storage slots generated.
    pub(crate) slots: u64,
    /// Seconds the generation took.
    pub(crate) generate_s: f64,
    /// Each server's enode URL.
    pub(crate) enodes: Vec<String>,
    /// The churn the servers apply (`None`: the state stays at block 0).
    pub(crate) churn: Option<ChurnPlan>,
}

/// What the servers did so far, as the child prints it for each line on its stdin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServerCounters {
    /// CPU time of the whole server process (every thread: RLPx sessions, serving, RocksDB),
    /// clock ticks of [`cpu_ticks`].
    pub(crate) cpu_ticks: u64,
    /// Requests answered, all servers together.
    pub(crate) served: u64,
    /// Chunk requests (`GetChunk`, `GetStorageChunk`) answered from the answering server's chunk
    /// cache (including those that waited for another request computing the same chunk).
    pub(crate) cache_hits: u64,
    /// Of the hits, those that waited for another request's computation (single flight).
    pub(crate) cache_joined: u64,
    /// Chunk requests the answering server had to read from its leafdb (not in its cache, or
    /// stale there).
    pub(crate) cache_misses: u64,
    /// Blocks of the churn chain made (0 without churn).
    pub(crate) blocks: u64,
}

impl ServerCounters {
    /// The counters of `servers`, now.
    fn now(
        servers: &[Arc<LeafServer<RocksStore>>],
        chain: Option<&Chain>,
    ) -> Result<Self, CliError> {
        let blocks = chain.map_or(0, Chain::blocks);
        let mut counters = Self { cpu_ticks: cpu_ticks("self")?, blocks, ..Self::default() };
        for stats in servers.iter().map(|s| s.stats()) {
            counters.served += stats.served;
            counters.cache_hits += stats.cache.hits;
            counters.cache_joined += stats.cache.joined;
            counters.cache_misses += stats.cache.misses;
        }
        Ok(counters)
    }

    /// What happened since `earlier`.
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            cpu_ticks: self.cpu_ticks.saturating_sub(earlier.cpu_ticks),
            served: self.served.saturating_sub(earlier.served),
            cache_hits: self.cache_hits.saturating_sub(earlier.cache_hits),
            cache_joined: self.cache_joined.saturating_sub(earlier.cache_joined),
            cache_misses: self.cache_misses.saturating_sub(earlier.cache_misses),
            blocks: self.blocks.saturating_sub(earlier.blocks),
        }
    }

    /// Chunk requests answered from a cache over all chunk requests (NaN without any).
    pub(crate) fn hit_rate(&self) -> f64 {
        let all = self.cache_hits + self.cache_misses;
        if all == 0 { f64::NAN } else { self.cache_hits as f64 / all as f64 }
    }
}

/// Prints one line of JSON on stdout.
fn print_line(value: &impl Serialize) -> Result<(), CliError> {
    let line = serde_json::to_string(value).map_err(|e| CliError::Invalid {
        what: "a line to the parent".into(),
        reason: e.to_string(),
    })?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|source| CliError::Io { path: "<stdout>".into(), source })
}

/// Answers each line on stdin (`counters` or `chain`), until stdin closes.
fn answer_parent(
    servers: &[Arc<LeafServer<RocksStore>>],
    chain: Option<&Chain>,
) -> Result<(), CliError> {
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|source| CliError::Io { path: "<stdin>".into(), source })?;
        match line.trim() {
            "chain" => print_line(&chain.map(Chain::report).unwrap_or_default())?,
            _ => print_line(&ServerCounters::now(servers, chain)?)?,
        }
    }
    Ok(())
}

/// With churn, a copy of the generated leafdb `db` for each of `count` servers, inside its
/// directory `datadir`; without, `db` itself for each.
fn server_dbs(
    db: &Arc<LeafDb>,
    datadir: &Path,
    count: usize,
    churn: bool,
) -> Result<Vec<Arc<LeafDb>>, CliError> {
    if !churn {
        return Ok(vec![Arc::clone(db); count]);
    }
    (0..count)
        .map(|i| {
            let path = datadir.join(format!("server-{i}"));
            db.checkpoint(&path)?;
            open(&path).map(Arc::new)
        })
        .collect()
}

/// `leafsync bench sync-servers`: the child's side.
pub(crate) fn servers(args: &ServersArgs) -> Result<ExitCode, CliError> {
    let started = std::time::Instant::now();
    let db = open(&args.datadir)?;
    let params = GenParams { accounts: args.accounts, seed: args.seed };
    let generated = db.generate(params)?;
    let generate_s = started.elapsed().as_secs_f64();
    info!(accounts = generated.accounts, slots = generated.slots, generate_s, "state generated");
    let plan = args.churn.plan(generated.accounts, generated.slots)?;
    let db = Arc::new(db);
    let dbs = server_dbs(&db, &args.datadir, args.servers, plan.is_some())?;
    runtime()?.block_on(async {
        let stop = CancellationToken::new();
        let (records, tasks, servers) =
            start_servers(dbs.iter().cloned(), generated.root, generated.accounts, &stop).await?;
        let chain = match plan {
            Some(plan) => Some(Chain::start(plan, params, generated.root, db, dbs)?),
            None => None,
        };
        print_line(&Ready {
            root: generated.root.to_string(),
            accounts: generated.accounts,
            slots: generated.slots,
            generate_s,
            enodes: records.iter().map(ToString::to_string).collect(),
            churn: plan,
        })?;
        // Serve until the parent closes our stdin (on exit, failure or death alike).
        let reported = tokio::task::spawn_blocking(move || {
            let answered = answer_parent(&servers, chain.as_ref());
            if let Some(report) = chain.map(Chain::stop) {
                info!(blocks = report.head(), late_ms = report.late_ms, "churn: the chain stopped");
            }
            answered
        })
        .await;
        let stopped = stop_servers(&stop, tasks).await;
        reported.map_err(|e| CliError::Invalid {
            what: "bench sync-servers: the counters' thread".into(),
            reason: e.to_string(),
        })??;
        stopped
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The running child, killed when this is dropped.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    /// The child's stdout, after its ready line: its [`ServerCounters`] lines.
    stdout: Option<BufReader<ChildStdout>>,
    /// The servers' root.
    pub(crate) root: B256,
    /// Accounts of the state.
    pub(crate) accounts: u64,
    /// Storage slots of the state.
    pub(crate) slots: u64,
    /// Seconds the child took to generate the state.
    pub(crate) generate_s: f64,
    /// The servers.
    pub(crate) records: Vec<NodeRecord>,
    /// The churn the servers apply.
    pub(crate) churn: Option<ChurnPlan>,
}

fn child_failed(reason: String) -> CliError {
    CliError::Invalid { what: "bench sync: the server process".into(), reason }
}

impl ServerProcess {
    /// Starts the child and waits (as long as generating the state takes) for its ready line.
    pub(crate) fn spawn(
        accounts: u64,
        servers: usize,
        seed: u64,
        datadir: &Path,
        churn: &ChurnArgs,
    ) -> Result<Self, CliError> {
        let exe = std::env::current_exe()
            .map_err(|source| CliError::Io { path: "<current executable>".into(), source })?;
        let mut child = Command::new(&exe)
            .args(["bench", "sync-servers", "--accounts", &accounts.to_string()])
            .args(["--servers", &servers.to_string(), "--seed", &seed.to_string()])
            .arg("--datadir")
            .arg(datadir)
            .args(churn.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| CliError::Io { path: exe.clone(), source })?;
        let stdout = child.stdout.take().map(BufReader::new);
        // From here on, dropping `process` kills the child.
        let mut process = Self {
            child,
            stdout,
            root: B256::ZERO,
            accounts: 0,
            slots: 0,
            generate_s: 0.0,
            records: Vec::new(),
            churn: None,
        };
        let ready = process.read_line::<Ready>();
        let Some(ready) = ready else {
            let status = process.child.wait().map_or_else(|e| e.to_string(), |s| s.to_string());
            return Err(child_failed(format!("exited ({status}) before it was ready")));
        };
        process.root = ready
            .root
            .parse()
            .map_err(|_| child_failed(format!("root {:?} is not a hash", ready.root)))?;
        process.records = ready
            .enodes
            .iter()
            .map(|e| e.parse().map_err(|err| child_failed(format!("enode {e:?}: {err}"))))
            .collect::<Result<_, _>>()?;
        (process.accounts, process.slots, process.generate_s) =
            (ready.accounts, ready.slots, ready.generate_s);
        process.churn = ready.churn;
        Ok(process)
    }

    /// The next line of the child's stdout that parses as `T`; `None` at its end.
    fn read_line<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        let stdout = self.stdout.as_mut()?;
        let mut line = String::new();
        loop {
            line.clear();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {
                    if let Ok(value) = serde_json::from_str(&line) {
                        return Some(value);
                    }
                }
            }
        }
    }

    /// The servers' counters now.
    pub(crate) fn counters(&mut self) -> Result<ServerCounters, CliError> {
        self.ask("counters")
    }

    /// The churn chain so far (empty without churn); an error if the chain stopped.
    pub(crate) fn chain(&mut self) -> Result<ChainReport, CliError> {
        let report: ChainReport = self.ask("chain")?;
        match &report.failed {
            Some(why) => Err(child_failed(format!("its chain stopped: {why}"))),
            None => Ok(report),
        }
    }

    /// The child's answer to `question`, a line on its stdin.
    fn ask<T: serde::de::DeserializeOwned>(&mut self, question: &str) -> Result<T, CliError> {
        let Some(stdin) = self.child.stdin.as_mut() else {
            return Err(child_failed("already stopped".into()));
        };
        stdin
            .write_all(format!("{question}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| child_failed(format!("cannot be asked for its {question}: {e}")))?;
        self.read_line().ok_or_else(|| child_failed(format!("did not report its {question}")))
    }

    /// Stops the servers the orderly way (their stdin closes) and waits for the child, which
    /// closes its leafdb.
    pub(crate) fn stop(&mut self) -> Result<(), CliError> {
        drop(self.child.stdin.take());
        let status =
            self.child.wait().map_err(|e| child_failed(format!("cannot be waited for: {e}")))?;
        if status.success() { Ok(()) } else { Err(child_failed(format!("exited ({status})"))) }
    }

    /// `Some(why)` when the child is no longer running (to explain a failed sync).
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("the server process exited ({status})")),
            Ok(None) => None,
            Err(e) => Some(format!("the server process cannot be waited for: {e}")),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Already exited or not: kill is harmless, and wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
