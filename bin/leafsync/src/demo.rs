//! `leafsync demo`: K servers and one client on loopback over a generated state. The servers
//! each hold the same synthetic state in their own leafdb and serve it over `leaf/1`; the client
//! starts empty, syncs from all of them at once over RLPx, and the result is checked: the
//! client's root, flat tables and codes must equal the servers'. Exits non-zero otherwise.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::{B256, keccak256};
use leafsync_leafdb::{DbOptions, GenParams, LeafDb, LeafDbConfig};
use leafsync_p2p::{
    chain::ChainSpec,
    leaf::{ChainHead, ServeFlags},
    peers::{LocalHead, NodeRecord},
};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    error::CliError,
    node::{Node, NodeBuilder},
};

/// RocksDB block cache of each demo and benchmark leafdb: 64 MiB, enough for a generated state
/// of a million accounts while K + 1 databases share the machine.
const LOOPBACK_BLOCK_CACHE_BYTES: usize = 64 << 20;

/// How long the client may take to connect to every server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `leafsync demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Accounts in the generated state.
    #[arg(long, default_value_t = 100_000)]
    accounts: u64,
    /// Number of servers.
    #[arg(long, default_value_t = 3)]
    servers: usize,
    /// Seed of the generator.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where to put the databases (a fresh temporary directory inside it, removed at the end).
    #[arg(long, default_value = ".")]
    workdir: PathBuf,
}

/// The chain of every loopback node: a dev chain of its own, so demo nodes never match a real
/// network.
pub(crate) fn demo_chain() -> ChainSpec {
    ChainSpec::preset("dev")
        .map(|c| c.with_genesis_hash(keccak256(b"leafsync demo")))
        .unwrap_or_else(|e| unreachable!("the dev preset is built in: {e}"))
}

/// Opens (creating it) a RocksDB leafdb at `path`.
pub(crate) fn open(path: &Path) -> Result<LeafDb, CliError> {
    std::fs::create_dir_all(path)
        .map_err(|source| CliError::Io { path: path.to_path_buf(), source })?;
    let options = DbOptions::default().block_cache_bytes(LOOPBACK_BLOCK_CACHE_BYTES);
    Ok(LeafDb::open(path, &options, LeafDbConfig::default())?)
}

/// What a server of the generated state announces: block 0 with its root, serving everything.
pub(crate) fn server_head(state_root: B256, accounts: u64) -> LocalHead {
    LocalHead {
        head: ChainHead { number: 0, hash: B256::ZERO, state_root },
        timestamp: 0,
        account_estimate: accounts,
        serves: ServeFlags::ALL,
    }
}

/// The running server nodes of the demo or a benchmark.
pub(crate) type ServerTasks = Vec<tokio::task::JoinHandle<Result<(), CliError>>>;

/// Starts a loopback node per leafdb of `dbs`, each serving the generated state (root `root`) and
/// running until `stop` in a task of its own. Returns their records and tasks.
pub(crate) async fn start_servers(
    dbs: impl IntoIterator<Item = Arc<LeafDb>>,
    root: B256,
    accounts: u64,
    stop: &CancellationToken,
) -> Result<(Vec<NodeRecord>, ServerTasks), CliError> {
    let (mut records, mut tasks) = (Vec::new(), Vec::new());
    for db in dbs {
        let node = NodeBuilder::loopback(db, demo_chain())
            .head(server_head(root, accounts))
            .start()
            .await?;
        records.push(node.network().local_enode());
        tasks.push(tokio::spawn(node.run(stop.clone().cancelled_owned())));
    }
    Ok((records, tasks))
}

/// Stops the servers of [`start_servers`] and waits for each to shut down.
pub(crate) async fn stop_servers(
    stop: &CancellationToken,
    tasks: ServerTasks,
) -> Result<(), CliError> {
    stop.cancel();
    for task in tasks {
        let stopped = task.await.map_err(|e| CliError::Invalid {
            what: "a loopback server".into(),
            reason: e.to_string(),
        })?;
        stopped?;
    }
    Ok(())
}

/// Starts an empty client node over `db` that dials `servers` and waits until it is connected
/// to all of them (at most [`CONNECT_TIMEOUT`]).
pub(crate) async fn start_client(
    db: Arc<LeafDb>,
    servers: Vec<NodeRecord>,
) -> Result<Node, CliError> {
    let wanted = servers.len();
    let client = NodeBuilder::loopback(db, demo_chain()).static_peers(servers).start().await?;
    if let Err(e) = client.wait_for_peers(wanted, CONNECT_TIMEOUT).await {
        client.shutdown().await?;
        return Err(e);
    }
    Ok(client)
}

/// The multi-threaded runtime the loopback nodes run on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io { path: "<tokio runtime>".into(), source })
}

/// Rejects `--servers 0`.
pub(crate) fn check_servers(servers: usize) -> Result<(), CliError> {
    if servers == 0 {
        return Err(CliError::Invalid {
            what: "--servers".into(),
            reason: "at least one server is needed".into(),
        });
    }
    Ok(())
}

pub(crate) fn demo(args: &DemoArgs) -> Result<ExitCode, CliError> {
    check_servers(args.servers)?;
    let dir = args.workdir.join(format!("leafsync-demo-{}", std::process::id()));
    let result = run_demo(args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_demo(args: &DemoArgs, dir: &std::path::Path) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let params = GenParams { accounts: args.accounts, seed: args.seed };
    let mut servers = Vec::new();
    for i in 0..args.servers {
        let db = open(&dir.join(format!("server-{i}")))?;
        let out = db.generate(params)?;
        info!(server = i, accounts = out.accounts, slots = out.slots, root = %out.root, "server state generated");
        servers.push(Arc::new(db));
    }
    let root = servers[0].account_root()?;
    let client_db = Arc::new(open(&dir.join("client"))?);
    let runtime = runtime()?;
    let outcome = runtime.block_on(async {
        let stop = CancellationToken::new();
        let (records, tasks) =
            start_servers(servers.iter().cloned(), root, args.accounts, &stop).await?;
        let client = start_client(client_db.clone(), records).await?;
        info!(servers = tasks.len(), "client connected; syncing");
        let sync_started = Instant::now();
        let out = client.sync_state().await;
        let secs = sync_started.elapsed().as_secs_f64();
        client.shutdown().await?;
        stop_servers(&stop, tasks).await?;
        Ok::<_, CliError>((out?, secs))
    })?;
    let (out, sync_secs) = outcome;
    drop(runtime);

    // The check: the client's state equals the servers', leaf for leaf.
    let client = client_db.verify()?;
    let server = servers[0].verify()?;
    let same = out.root == root
        && client.ok()
        && client.computed_root == server.computed_root
        && (client.accounts, client.slots) == (server.accounts, server.slots);
    let s = &out.stats;
    println!(
        "leafsync demo: {} servers, 1 client, {} accounts, {} storage slots",
        args.servers, server.accounts, server.slots
    );
    println!("  state root     {root}");
    println!(
        "  client root    {}  ({})",
        out.root,
        if out.root == root { "equal" } else { "DIFFERENT" }
    );
    println!(
        "  flat state     {}",
        if same {
            "equal to the servers' (accounts, slots, codes, every trie node)"
        } else {
            "DIFFERENT"
        }
    );
    println!(
        "  sync time      {sync_secs:.1} s (whole demo {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "  downloaded     {:.1} MiB in {} requests",
        s.bytes_down as f64 / (1 << 20) as f64,
        s.requests
    );
    println!(
        "  chunks         {} ({} verified, {} healed); heal fraction {:.3}; {} nodes healed",
        s.chunks_done,
        s.chunks_verified,
        s.chunks_healed,
        s.heal_fraction(),
        s.healed_nodes
    );
    if !same {
        for p in &client.problems {
            println!("  problem: {p}");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
