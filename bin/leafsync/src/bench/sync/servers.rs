//! The servers of `bench sync`, in a child process of their own so that the client's CPU time is
//! the client's only. The parent re-executes its own binary with the hidden `bench sync-servers`
//! command ([`ServerProcess::spawn`]); the child generates the state once, serves it from `K`
//! nodes over one leafdb, prints one [`Ready`] line of JSON on stdout and runs until its stdin
//! closes (the parent exits, fails or is killed).

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
};

use alloy_primitives::B256;
use leafsync_leafdb::GenParams;
use leafsync_p2p::peers::NodeRecord;
use serde::{Deserialize, Serialize};
use tracing::info;

use tokio_util::sync::CancellationToken;

use crate::{
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
}

/// `leafsync bench sync-servers`: the child's side.
pub(crate) fn servers(args: &ServersArgs) -> Result<ExitCode, CliError> {
    let started = std::time::Instant::now();
    let db = open(&args.datadir)?;
    let generated = db.generate(GenParams { accounts: args.accounts, seed: args.seed })?;
    let generate_s = started.elapsed().as_secs_f64();
    info!(accounts = generated.accounts, slots = generated.slots, generate_s, "state generated");
    let db = std::sync::Arc::new(db);
    runtime()?.block_on(async {
        let stop = CancellationToken::new();
        let dbs = std::iter::repeat_n(db, args.servers);
        let (records, tasks) =
            start_servers(dbs, generated.root, generated.accounts, &stop).await?;
        let ready = Ready {
            root: generated.root.to_string(),
            accounts: generated.accounts,
            slots: generated.slots,
            generate_s,
            enodes: records.iter().map(ToString::to_string).collect(),
        };
        let line = serde_json::to_string(&ready)
            .map_err(|e| CliError::Invalid { what: "ready line".into(), reason: e.to_string() })?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .map_err(|source| CliError::Io { path: "<stdout>".into(), source })?;
        drop(stdout);
        // Serve until the parent closes our stdin (on exit, failure or death alike).
        let _ =
            tokio::task::spawn_blocking(|| std::io::stdin().lock().read_to_end(&mut Vec::new()))
                .await;
        stop_servers(&stop, tasks).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The running child, killed when this is dropped.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
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
    ) -> Result<Self, CliError> {
        let exe = std::env::current_exe()
            .map_err(|source| CliError::Io { path: "<current executable>".into(), source })?;
        let mut child = Command::new(&exe)
            .args(["bench", "sync-servers", "--accounts", &accounts.to_string()])
            .args(["--servers", &servers.to_string(), "--seed", &seed.to_string()])
            .arg("--datadir")
            .arg(datadir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| CliError::Io { path: exe.clone(), source })?;
        let stdout = child.stdout.take();
        // From here on, dropping `process` kills the child.
        let mut process = Self {
            child,
            root: B256::ZERO,
            accounts: 0,
            slots: 0,
            generate_s: 0.0,
            records: Vec::new(),
        };
        let ready = stdout.and_then(|out| {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .find_map(|line| serde_json::from_str::<Ready>(&line).ok())
        });
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
        Ok(process)
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
