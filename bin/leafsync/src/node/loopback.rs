//! Loopback nodes for the demo, the benchmarks and tests: generated-state servers and an empty
//! client on `127.0.0.1:0`, each a [`Node`] built by [`NodeBuilder::loopback`].

use std::{path::Path, sync::Arc, time::Duration};

use alloy_primitives::{B256, keccak256};
use leafsync_leafdb::{DbOptions, LeafDb, LeafDbConfig, RocksStore};
use leafsync_p2p::{
    chain::ChainSpec,
    leaf::{ChainHead, ServeFlags},
    peers::{LocalHead, NodeRecord},
};
use leafsync_serve::LeafServer;
use tokio_util::sync::CancellationToken;

use super::{Node, NodeBuilder};
use crate::error::CliError;

/// How long the client may take to connect to every server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// RocksDB block cache of each demo and benchmark leafdb: 64 MiB, enough for a generated state
/// of a million accounts while K + 1 databases share the machine.
const LOOPBACK_BLOCK_CACHE_BYTES: usize = 64 << 20;

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
/// running until `stop` in a task of its own. Returns their records, tasks and `leaf/1` servers
/// (for their counters).
pub(crate) async fn start_servers(
    dbs: impl IntoIterator<Item = Arc<LeafDb>>,
    root: B256,
    accounts: u64,
    stop: &CancellationToken,
) -> Result<(Vec<NodeRecord>, ServerTasks, Vec<Arc<LeafServer<RocksStore>>>), CliError> {
    let (mut records, mut tasks, mut servers) = (Vec::new(), Vec::new(), Vec::new());
    for db in dbs {
        let node = NodeBuilder::loopback(db, demo_chain())
            .head(server_head(root, accounts))
            .start()
            .await?;
        records.push(node.network().local_enode());
        servers.push(node.leaf_server());
        tasks.push(tokio::spawn(node.run(stop.clone().cancelled_owned())));
    }
    Ok((records, tasks, servers))
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
