//! `leafsync demo`: K servers and one client on loopback over a generated state. The servers
//! each hold the same synthetic state in their own leafdb and serve it over `leaf/1`; the client
//! starts empty, syncs from all of them at once over RLPx, and the result is checked: the
//! client's root, flat tables and codes must equal the servers'. Exits non-zero otherwise.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::{B256, keccak256};
use alloy_trie::EMPTY_ROOT_HASH;
use leafsync_leafdb::{DbOptions, GenParams, LeafDb, LeafDbConfig};
use leafsync_p2p::{
    chain::ChainSpec,
    leaf::{ChainHead, ServeFlags},
    peers::{
        EmptyHandler, LocalHead, Network, NetworkConfig, NetworkHandle, NodeRecord, RequestHandler,
    },
};
use leafsync_serve::{LeafServer, ServeConfig};
use leafsync_sync::{SyncConfig, Syncer, network_peers};
use secp256k1::SecretKey;
use tokio::sync::watch;
use tracing::info;

use crate::error::CliError;

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

fn demo_chain() -> ChainSpec {
    // A dev chain of its own, so demo nodes never match a real network.
    ChainSpec::preset("dev")
        .map(|c| c.with_genesis_hash(keccak256(b"leafsync demo")))
        .unwrap_or_else(|e| unreachable!("the dev preset is built in: {e}"))
}

/// Starts a loopback node (`127.0.0.1:0`, a fresh key) that dials `peers`.
pub(crate) async fn start_node(
    handler: Arc<dyn RequestHandler>,
    head: LocalHead,
    peers: Vec<NodeRecord>,
) -> Result<(NetworkHandle, watch::Sender<LocalHead>), CliError> {
    let (tx, rx) = watch::channel(head);
    let mut config =
        NetworkConfig::new(SecretKey::new(&mut rand::rng()), demo_chain(), rx, handler);
    config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.dial_interval = Duration::from_millis(100);
    config.static_peers = peers;
    Ok((Network::start(config).await?, tx))
}

/// Opens (creating it) a RocksDB leafdb at `path`.
pub(crate) fn open(path: &std::path::Path) -> Result<LeafDb, CliError> {
    std::fs::create_dir_all(path)
        .map_err(|source| CliError::Io { path: path.to_path_buf(), source })?;
    Ok(LeafDb::open(
        path,
        &DbOptions::default().block_cache_bytes(64 << 20),
        LeafDbConfig::default(),
    )?)
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

/// Starts an empty client node that dials `servers` and waits until it is connected to all of
/// them (at most [`CONNECT_TIMEOUT`]).
pub(crate) async fn start_client(
    servers: Vec<NodeRecord>,
) -> Result<(NetworkHandle, watch::Sender<LocalHead>), CliError> {
    let wanted = servers.len();
    let empty = LocalHead {
        head: ChainHead { number: 0, hash: B256::ZERO, state_root: EMPTY_ROOT_HASH },
        ..LocalHead::default()
    };
    let (client, head) = start_node(Arc::new(EmptyHandler), empty, servers).await?;
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    while client.peers().await.len() < wanted {
        if tokio::time::Instant::now() > deadline {
            client.shutdown().await;
            return Err(CliError::Invalid {
                what: "client".into(),
                reason: "the client did not connect to every server".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((client, head))
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
        let mut handles = Vec::new();
        for db in &servers {
            let handler = Arc::new(LeafServer::new(db.clone(), ServeConfig::default()));
            handles.push(start_node(handler, server_head(root, args.accounts), Vec::new()).await?);
        }
        let records = handles.iter().map(|(h, _)| h.local_enode()).collect();
        let (client, _head) = start_client(records).await?;
        info!(servers = handles.len(), "client connected; syncing");
        let sync_started = Instant::now();
        let (progress, stats) = watch::channel(leafsync_sync::SyncStats::default());
        let bar = crate::progress::Bar::start(stats);
        let out =
            Syncer::new(client_db.clone(), SyncConfig::default(), network_peers(&client).await)
                .with_progress(progress)
                .run()
                .await;
        drop(bar);
        let out = out.map_err(CliError::Sync)?;
        let secs = sync_started.elapsed().as_secs_f64();
        client.shutdown().await;
        for (h, _) in handles {
            h.shutdown().await;
        }
        Ok::<_, CliError>((out, secs))
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
