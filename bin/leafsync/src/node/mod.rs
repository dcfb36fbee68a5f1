//! One node: the leafdb, the `leaf/1` network serving it, the follower of the execution client,
//! a sync of an empty leafdb, and the admin and metrics endpoints. Built from the validated
//! `Config` for the daemon (`NodeBuilder::from_config`), or on loopback for the demo, the
//! benchmarks and tests ([`NodeBuilder::loopback`]); [`Node::run`] runs it until a shutdown
//! future resolves, then stops every part in order and releases the leafdb.

mod builder;
mod eth;
mod head;
pub(crate) mod loopback;
mod repair;
mod sync;
#[cfg(test)]
mod tests;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy_primitives::B256;
use leafsync_ingest::{Follower, FollowerConfig, IngestError, IngestStats};
use leafsync_leafdb::{LeafDb, RocksStore};
use leafsync_p2p::{chain::ChainSpec, peers::NetworkHandle};
use leafsync_serve::LeafServer;
use leafsync_sync::{SyncOutcome, SyncStats};
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::builder::NodeBuilder;
use self::{
    head::HEAD_CHECK_INTERVAL,
    repair::{RepairPace, Trouble, repair_due, repair_settings, repair_sources},
    sync::{SyncPlan, sync_from_peers},
};
pub use crate::phase::DaemonPhase;
use crate::{
    admin::AdminState,
    config::{ElSection, SyncSettings},
    error::CliError,
};

/// How long shutdown waits for the follower to finish the block it is applying.
const FOLLOWER_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the network's finished tasks to drop their leafdb references.
const DB_RELEASE_TIMEOUT: Duration = Duration::from_millis(500);
/// How often shutdown looks whether they have.
const DB_RELEASE_POLL: Duration = Duration::from_millis(10);
/// How long an empty leafdb may take to be bootstrapped from the genesis file.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(300);
/// How often [`Node::wait_for_peers`] looks at the peer list.
const PEER_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How a node starts, decided once from the leafdb and the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The leafdb has a head: serve it (and follow the execution client, if configured).
    Serve,
    /// The leafdb is empty and `el.genesis` is set: the follower loads the genesis first.
    BootstrapFromGenesis,
    /// The leafdb is empty: sync it from `leaf/1` peers, then follow and serve.
    SyncFromPeers,
    /// The leafdb holds a repair of its state cut short (a head and a sync's progress record,
    /// with `el.rpc` set): finish it, then follow and serve (see `repair.rs`).
    Repair,
}

/// The running follower: its counters and its task.
type FollowerTask = (Arc<IngestStats>, tokio::task::JoinHandle<Result<(), IngestError>>);

/// Starts following `el.rpc`, if set, counting into `stats` when given (a follower started
/// again after a repair): the follower also bootstraps an empty leafdb from `el.genesis`. Called
/// on the main thread (in `block_on`'s future), never on a runtime thread: the block
/// application thread it starts keeps the normal priority.
fn start_follower(
    db: &Arc<LeafDb>,
    el: &ElSection,
    genesis_hash: B256,
    stop: watch::Receiver<bool>,
    stats: Option<Arc<IngestStats>>,
) -> Result<Option<FollowerTask>, CliError> {
    let Some(url) = &el.rpc else { return Ok(None) };
    let mut fc = FollowerConfig::new(url.clone());
    fc.genesis.clone_from(&el.genesis);
    fc.genesis_hash = Some(genesis_hash);
    fc.stuck_after = std::time::Duration::from_secs(el.stuck_after_secs);
    let mut follower = Follower::new(db.clone(), fc)?;
    if let Some(stats) = stats {
        follower = follower.with_stats(stats);
    }
    let stats = follower.stats();
    Ok(Some((stats, tokio::spawn(follower.run(stop)))))
}

/// Waits until the follower has loaded the genesis (or failed: then its error, when it has one;
/// or timed out: then the execution client is named, which is what did not answer).
async fn wait_for_bootstrap(
    db: &LeafDb,
    mut follower: Option<&mut FollowerTask>,
) -> Result<(), CliError> {
    let deadline = tokio::time::Instant::now() + BOOTSTRAP_TIMEOUT;
    loop {
        if db.head()?.is_some() {
            return Ok(());
        }
        if let Some((_, task)) = follower.as_deref_mut()
            && task.is_finished()
            && let Ok(Err(e)) = task.await
        {
            return Err(CliError::Ingest(e));
        }
        if follower.as_ref().is_none_or(|(_, task)| task.is_finished()) {
            return Err(CliError::Invalid {
                what: "el.genesis".into(),
                reason:
                    "the leafdb could not be bootstrapped from the execution client (see the log)"
                        .into(),
            });
        }
        if tokio::time::Instant::now() > deadline {
            return Err(CliError::Invalid {
                what: "el.rpc".into(),
                reason: format!(
                    "the execution client did not let the genesis state be bootstrapped within \
                     {} s (is it running and reachable? its errors are in the log)",
                    BOOTSTRAP_TIMEOUT.as_secs()
                ),
            });
        }
        tokio::time::sleep(HEAD_CHECK_INTERVAL).await;
    }
}

/// A started node. Dropping it without [`Node::run`] or [`Node::shutdown`] leaves its tasks to
/// the runtime.
pub struct Node {
    db: Arc<LeafDb>,
    chain: ChainSpec,
    el: ElSection,
    sync: SyncSettings,
    start: Start,
    network: NetworkHandle,
    state: Arc<AdminState>,
    tasks: JoinSet<()>,
    stop: CancellationToken,
    follower: Option<FollowerTask>,
    follower_stop: watch::Sender<bool>,
    /// When the next repair of a state off the chain may start (`repair.rs`).
    repair_pace: RepairPace,
    phase: watch::Sender<DaemonPhase>,
    sync_progress: watch::Sender<SyncStats>,
    admin_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
}

impl Node {
    /// The network.
    pub const fn network(&self) -> &NetworkHandle {
        &self.network
    }

    /// The node's `leaf/1` server (its counters: requests answered, chunk cache).
    pub(crate) fn leaf_server(&self) -> Arc<LeafServer<RocksStore>> {
        Arc::clone(&self.state.server)
    }

    /// How the node started.
    pub const fn start_mode(&self) -> Start {
        self.start
    }

    /// The kinds of peers a sync or a repair of this node takes.
    #[cfg(test)]
    pub(crate) const fn sync_sources(&self) -> crate::config::SyncSources {
        self.sync.sources
    }

    /// The admin JSON-RPC's bound address, when enabled.
    pub const fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The metrics endpoint's bound address, when enabled.
    pub const fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The daemon's phase, as it changes.
    pub fn phase(&self) -> watch::Receiver<DaemonPhase> {
        self.phase.subscribe()
    }

    /// Waits until `count` peers are connected, at most `timeout`.
    pub async fn wait_for_peers(&self, count: usize, timeout: Duration) -> Result<(), CliError> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.network.peers().await.len() < count {
            if tokio::time::Instant::now() > deadline {
                return Err(CliError::Invalid {
                    what: "node".into(),
                    reason: format!("did not connect to {count} peers in {timeout:?}"),
                });
            }
            tokio::time::sleep(PEER_POLL_INTERVAL).await;
        }
        Ok(())
    }

    /// Syncs the empty leafdb from peers (see `sync.rs`); progress on the admin API.
    pub async fn sync_state(&self) -> Result<SyncOutcome, CliError> {
        let plan =
            SyncPlan { settings: &self.sync, el_rpc: self.el.rpc.as_deref(), chain: &self.chain };
        sync_from_peers(&self.network, &self.db, &plan, self.sync_progress.clone()).await
    }

    /// Runs until `shutdown` resolves (or the follower stops): syncs first when the leafdb is
    /// empty (or finishes a repair cut short), then follows and serves, repairing the state
    /// from peers whenever it goes off the chain (`repair.rs`); then stops everything in order
    /// (see [`Node::shutdown`]).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), CliError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let started = match self.start {
            Start::SyncFromPeers => self.first_sync(&mut shutdown).await,
            Start::Repair => self.repair(Trouble::CutShort, &mut shutdown).await,
            Start::Serve | Start::BootstrapFromGenesis => Ok(true),
        };
        match started {
            Ok(true) => {}
            Ok(false) => return self.shutdown().await,
            Err(e) => {
                self.shutdown().await?;
                return Err(e);
            }
        }
        let repair_plan = repair_settings(&self.sync);
        let el_rpc = self.el.rpc.as_deref();
        let sources =
            repair_sources(&SyncPlan { settings: &repair_plan, el_rpc, chain: &self.chain });
        let ended = loop {
            let Some((stats, task)) = self.follower.as_mut() else {
                shutdown.await;
                break None;
            };
            let (db, network, stats) = (self.db.clone(), self.network.clone(), stats.clone());
            let not_before = self.repair_pace.not_before();
            let due = repair_due(db, stats, network, sources.clone(), not_before);
            let trouble = tokio::select! {
                () = &mut shutdown => break None,
                r = task => break Some(r),
                trouble = due => trouble,
            };
            match self.repair(trouble, &mut shutdown).await {
                Ok(true) => {}
                Ok(false) => break None,
                Err(e) => {
                    self.shutdown().await?;
                    return Err(e);
                }
            }
        };
        info!("shutting down");
        if ended.is_some() {
            self.follower = None;
        }
        self.shutdown().await?;
        match ended {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(CliError::Ingest(e)),
            Some(Err(e)) => Err(CliError::FollowerFailed(e.to_string())),
        }
    }

    /// Syncs the empty leafdb, then starts following. `false` when `shutdown` came first
    /// (progress is kept).
    async fn first_sync(
        &mut self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<bool, CliError> {
        tokio::select! {
            () = shutdown => {
                info!("shutting down during sync (progress is kept)");
                return Ok(false);
            }
            r = self.sync_state() => r?,
        };
        self.follow_again(None)?;
        Ok(true)
    }

    /// Starts the follower (counting into `stats` when given) and publishes the phase.
    fn follow_again(&mut self, stats: Option<Arc<IngestStats>>) -> Result<(), CliError> {
        let stop = self.follower_stop.subscribe();
        self.follower = start_follower(&self.db, &self.el, self.chain.genesis_hash, stop, stats)?;
        if let Some((stats, _)) = &self.follower {
            let _ = self.state.ingest.set(stats.clone());
        }
        let phase =
            if self.follower.is_some() { DaemonPhase::Following } else { DaemonPhase::Serving };
        self.phase.send_replace(phase);
        Ok(())
    }

    /// Stops in order: the follower (finishing its block), the background tasks and endpoints,
    /// the network; then releases the leafdb, which closes when this was its last user.
    pub async fn shutdown(mut self) -> Result<(), CliError> {
        self.follower_stop.send_replace(true);
        if let Some((_, task)) = self.follower.take()
            && tokio::time::timeout(FOLLOWER_STOP_TIMEOUT, task).await.is_err()
        {
            warn!("the follower did not stop in time");
        }
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.network.shutdown().await;
        let Self { db, state, .. } = self;
        drop(state);
        // The network's manager and session tasks drop their handler (and its leafdb reference)
        // just after acknowledging the shutdown: give them a moment to.
        let deadline = tokio::time::Instant::now() + DB_RELEASE_TIMEOUT;
        while Arc::strong_count(&db) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(DB_RELEASE_POLL).await;
        }
        if Arc::strong_count(&db) == 1 {
            drop(db);
            info!("database closed; bye");
        } else {
            info!("node stopped; the database closes when the work still holding it ends");
        }
        Ok(())
    }
}
