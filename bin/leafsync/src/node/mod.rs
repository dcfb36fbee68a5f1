//! One node: the leafdb, the `leaf/1` network serving it, the follower of the execution client,
//! a sync of an empty leafdb, and the admin and metrics endpoints. Built from the validated
//! `Config` for the daemon (`NodeBuilder::from_config`), or on loopback for the demo, the
//! benchmarks and tests ([`NodeBuilder::loopback`]); [`Node::run`] runs it until a shutdown
//! future resolves, then stops every part in order and releases the leafdb.

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
use leafsync_leafdb::{BlockHeader, LeafDb, RocksStore};
use leafsync_p2p::{
    chain::ChainSpec,
    peers::{LocalHead, Network, NetworkHandle, NodeRecord},
};
use leafsync_serve::LeafServer;
use leafsync_sync::{SyncOutcome, SyncStats};
use secp256k1::SecretKey;
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::{
    head::{HEAD_CHECK_INTERVAL, announce_heads, local_head, unfollowed_warning},
    repair::{RepairPace, Trouble, cannot_resume, repair_due, repair_settings, repair_sources},
    sync::{SyncPlan, sync_from_peers},
};
pub use crate::phase::DaemonPhase;
use crate::{
    admin::{AdminState, Role},
    config::{Config, ElSection, NetworkSettings, PivotSource, SyncSettings, SyncSources},
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
/// How often a loopback node dials its static peers: often, so tests and the demo connect fast.
const LOOPBACK_DIAL_INTERVAL: Duration = Duration::from_millis(100);
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

/// Everything a node is built from.
pub struct NodeBuilder {
    db: Arc<LeafDb>,
    chain: ChainSpec,
    key: SecretKey,
    network: NetworkSettings,
    dial_interval: Option<Duration>,
    serve: leafsync_serve::ServeConfig,
    /// `serve.snap`: serve snap/1 from the leafdb's head.
    serve_snap: bool,
    /// `serve.leaf`: offer `leaf/1`.
    serve_leaf: bool,
    el: ElSection,
    sync: SyncSettings,
    admin: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    head: Option<LocalHead>,
}

impl NodeBuilder {
    /// The daemon's node over `db`, as `config` says, with identity `key`.
    pub(crate) fn from_config(config: &Config, db: Arc<LeafDb>, key: SecretKey) -> Self {
        Self {
            db,
            chain: config.chain.clone(),
            key,
            network: config.network.clone(),
            dial_interval: None,
            serve: config.serve.clone(),
            serve_snap: config.serve_snap,
            serve_leaf: config.serve_leaf,
            el: config.el.clone(),
            sync: config.sync.clone(),
            admin: config.admin,
            metrics: config.metrics,
            head: None,
        }
    }

    /// A node on `127.0.0.1:0` with a fresh key, no discovery and no endpoints, serving `db` on
    /// `chain` with the default limits; an empty `db` syncs with the peers' pivot.
    pub fn loopback(db: Arc<LeafDb>, chain: ChainSpec) -> Self {
        Self {
            db,
            chain,
            key: SecretKey::new(&mut rand::rng()),
            network: NetworkSettings {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                external_ip: None,
                discovery: false,
                bootnodes: Vec::new(),
                static_peers: Vec::new(),
                trusted_peers: Vec::new(),
                el_peer: None,
                max_inbound: leafsync_p2p::peers::DEFAULT_MAX_INBOUND,
                max_outbound: leafsync_p2p::peers::DEFAULT_MAX_OUTBOUND,
            },
            dial_interval: Some(LOOPBACK_DIAL_INTERVAL),
            serve: leafsync_serve::ServeConfig::default(),
            serve_snap: false,
            serve_leaf: true,
            el: ElSection::default(),
            sync: SyncSettings {
                sources: SyncSources { leaf: true, snap: false },
                pivot: PivotSource::Peers,
                checkpoint: None,
                peer_pivot: true,
                progress_bar: true,
                config: leafsync_sync::SyncConfig::default(),
            },
            admin: None,
            metrics: None,
            head: None,
        }
    }

    /// Peers to keep connected.
    #[must_use]
    pub fn static_peers(mut self, peers: Vec<NodeRecord>) -> Self {
        self.network.static_peers = peers;
        self
    }

    /// Announces `head` instead of the one read from the leafdb (a generated state, with its
    /// exact account count) until the leafdb head moves (blocks applied to it); from then on the
    /// leafdb's heads, with `head`'s account estimate.
    #[must_use]
    pub const fn head(mut self, head: LocalHead) -> Self {
        self.head = Some(head);
        self
    }

    /// Serves the admin JSON-RPC on `addr`.
    #[must_use]
    pub const fn admin(mut self, addr: SocketAddr) -> Self {
        self.admin = Some(addr);
        self
    }

    /// Whether the node speaks eth/69: what snap/1 rides beside, needed to serve snap/1
    /// (`serve.snap`) and to sync from snap/1 peers (`"snap"` in `sync.sources`).
    const fn eth_enabled(&self) -> bool {
        self.serve_snap || self.sync.sources.snap
    }

    /// The start mode for a leafdb whose head is `head`, holding a sync's progress record or
    /// not (`syncing`).
    fn start_mode(&self, head: Option<&BlockHeader>, syncing: bool) -> Start {
        match (head, &self.el.genesis, &self.el.rpc) {
            (Some(_), _, Some(_)) if syncing => Start::Repair,
            (Some(_), _, _) => Start::Serve,
            (None, Some(_), Some(_)) => Start::BootstrapFromGenesis,
            // A genesis file without an execution client has nothing to load it: the node
            // serves its empty state, as before there was a start mode.
            (None, Some(_), None) => Start::Serve,
            (None, None, _) => Start::SyncFromPeers,
        }
    }

    /// Starts the follower (when `el.rpc` is set), the network and the endpoints. Must run on the
    /// thread that drives the runtime (`block_on`), never in a spawned task: the follower's
    /// block application thread inherits that thread's CPU priority.
    pub async fn start(self) -> Result<Node, CliError> {
        let head = self.db.head()?;
        let syncing = self.db.sync_progress()?.is_some();
        if head.is_some() && syncing && self.el.rpc.is_none() {
            // Its tables are half rewritten and hold no account root: served as they are, the
            // node would offer nothing, for good and without a word.
            return Err(CliError::Invalid {
                what: "el.rpc".into(),
                reason: "the leafdb holds a repair cut short (a sync's progress over a head), \
                         which finishes only at the execution client's head: set `el.rpc`"
                    .into(),
            });
        }
        let start = self.start_mode(head.as_ref(), syncing);
        if let (Some(head), None) = (&head, &self.el.rpc)
            && let Some(warning) = unfollowed_warning(&self.db, &self.chain)?
        {
            warn!(head = head.number, "{warning}");
        }
        // A sync the configuration cannot run fails here, before a port is opened.
        let el_rpc = self.el.rpc.as_deref();
        match start {
            Start::SyncFromPeers => {
                SyncPlan { settings: &self.sync, el_rpc, chain: &self.chain }.check()?;
            }
            Start::Repair => {
                let settings = repair_settings(&self.sync);
                cannot_resume(&SyncPlan { settings: &settings, el_rpc, chain: &self.chain })?;
            }
            Start::Serve | Start::BootstrapFromGenesis => {}
        }
        let stop = CancellationToken::new();
        let (follower_stop, _) = watch::channel(false);
        let mut node_follower = None;
        if matches!(start, Start::Serve | Start::BootstrapFromGenesis) {
            node_follower = start_follower(
                &self.db,
                &self.el,
                self.chain.genesis_hash,
                follower_stop.subscribe(),
                None,
            )?;
        }
        if head.is_none() && start == Start::BootstrapFromGenesis {
            wait_for_bootstrap(&self.db, node_follower.as_mut()).await?;
        }
        let local = match self.head {
            Some(fixed) => fixed,
            None => local_head(&self.db, &self.chain)?,
        };
        let (head_tx, head_rx) = watch::channel(local);
        let server = Arc::new(LeafServer::new(self.db.clone(), self.serve.clone()));
        let mut net =
            self.network.network_config(self.key, self.chain.clone(), head_rx, server.clone());
        if let Some(interval) = self.dial_interval {
            net.dial_interval = interval;
        }
        net.leaf = self.serve_leaf;
        let eth_on = self.eth_enabled();
        if eth_on {
            let el_rpc = self.el.rpc.as_deref();
            let eth = eth::eth_config(&self.db, &self.chain, el_rpc, self.serve_snap, stop.clone());
            net.eth = Some(eth?);
        }
        let network = Network::start(net).await?;
        let mut tasks = JoinSet::new();
        // Peers learn our new heads as the follower (or a benchmark) applies blocks.
        tasks.spawn(announce_heads(self.db.clone(), self.chain.clone(), head_tx, stop.clone()));
        let phase = match (start, &node_follower) {
            (Start::SyncFromPeers, _) => DaemonPhase::Syncing,
            (Start::Repair, _) => DaemonPhase::Repairing,
            (_, Some(_)) => DaemonPhase::Following,
            (_, None) => DaemonPhase::Serving,
        };
        let (phase_tx, phase_rx) = watch::channel(phase);
        let (sync_tx, sync_rx) = watch::channel(SyncStats::default());
        let state = Arc::new(AdminState {
            network: network.clone(),
            db: self.db.clone(),
            server,
            chain: self.chain.clone(),
            started: std::time::Instant::now(),
            ingest: std::sync::OnceLock::new(),
            phase: phase_rx,
            sync: sync_rx,
            sources: self.sync.sources,
            added_peers: std::sync::Mutex::default(),
            repairs: std::sync::atomic::AtomicU64::new(0),
        });
        if let Some((stats, _)) = &node_follower {
            let _ = state.ingest.set(stats.clone());
        }
        let mut bound = [None, None];
        for (slot, (addr, role)) in
            [(self.admin, Role::Admin), (self.metrics, Role::Metrics)].into_iter().enumerate()
        {
            let Some(addr) = addr else { continue };
            let listener = crate::admin::bind(addr, role).await?;
            bound[slot] = Some(listener.1);
            tasks.spawn(crate::admin::accept_loop(listener.0, role, state.clone(), stop.clone()));
        }
        info!(
            chain = %self.chain.name,
            head = local.head.number,
            state_root = %local.head.state_root,
            accounts = local.account_estimate,
            enode = %network.local_enode(),
            leaf = self.serve_leaf,
            eth_snap = eth_on,
            keccak_lanes = leafsync_leafdb::trie::keccak_lanes(),
            "network up"
        );
        Ok(Node {
            db: self.db,
            chain: self.chain,
            el: self.el,
            sync: self.sync,
            start,
            network,
            state,
            tasks,
            stop,
            follower: node_follower,
            follower_stop,
            repair_pace: RepairPace::default(),
            phase: phase_tx,
            sync_progress: sync_tx,
            admin_addr: bound[0],
            metrics_addr: bound[1],
        })
    }
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
    pub(crate) const fn sync_sources(&self) -> SyncSources {
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
