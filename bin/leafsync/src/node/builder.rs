//! [`NodeBuilder`]: what a node is built from (the daemon's configuration, or loopback
//! defaults), how it starts with the leafdb it finds, and the start itself: the follower, the
//! network and the endpoints.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use leafsync_leafdb::{BlockHeader, LeafDb, RocksStore};
use leafsync_p2p::{
    chain::ChainSpec,
    peers::{LocalHead, Network, NetworkConfig, NodeRecord},
};
use leafsync_serve::LeafServer;
use leafsync_sync::SyncStats;
use secp256k1::SecretKey;
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    DaemonPhase, Node, Start, eth,
    head::{announce_heads, local_head, unfollowed_warning},
    repair::{RepairPace, cannot_resume, repair_settings},
    start_follower,
    sync::SyncPlan,
    wait_for_bootstrap,
};
use crate::{
    admin::{AdminState, Role},
    config::{Config, ElSection, NetworkSettings, PivotSource, SyncSettings, SyncSources},
    error::CliError,
};

/// How often a loopback node dials its static peers: often, so tests and the demo connect fast.
const LOOPBACK_DIAL_INTERVAL: Duration = Duration::from_millis(100);
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
    pub(super) el: ElSection,
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
    pub(super) fn start_mode(&self, head: Option<&BlockHeader>, syncing: bool) -> Start {
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

    /// The leafdb's head and how the node starts with it; fails, before a port is opened, where
    /// the configuration cannot run that start (a sync it cannot run, a repair without `el.rpc`).
    fn plan(&self) -> Result<(Option<BlockHeader>, Start), CliError> {
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
        Ok((head, start))
    }

    /// The network's configuration: this node's key, chain, head feed, server and dial pace,
    /// with eth/69 (and snap/1 serving) where [`Self::eth_enabled`].
    fn network_config(
        &self,
        head: watch::Receiver<LocalHead>,
        server: Arc<LeafServer<RocksStore>>,
        stop: &CancellationToken,
    ) -> Result<NetworkConfig, CliError> {
        let mut net = self.network.network_config(self.key, self.chain.clone(), head, server);
        if let Some(interval) = self.dial_interval {
            net.dial_interval = interval;
        }
        net.leaf = self.serve_leaf;
        if self.eth_enabled() {
            let el_rpc = self.el.rpc.as_deref();
            let eth = eth::eth_config(&self.db, &self.chain, el_rpc, self.serve_snap, stop.clone());
            net.eth = Some(eth?);
        }
        Ok(net)
    }

    /// Binds the admin JSON-RPC and the metrics endpoint where configured and serves them in
    /// `tasks`: their bound addresses.
    async fn endpoints(
        &self,
        state: &Arc<AdminState>,
        tasks: &mut JoinSet<()>,
        stop: &CancellationToken,
    ) -> Result<[Option<SocketAddr>; 2], CliError> {
        let mut bound = [None, None];
        for (slot, (addr, role)) in
            [(self.admin, Role::Admin), (self.metrics, Role::Metrics)].into_iter().enumerate()
        {
            let Some(addr) = addr else { continue };
            let listener = crate::admin::bind(addr, role).await?;
            bound[slot] = Some(listener.1);
            tasks.spawn(crate::admin::accept_loop(listener.0, role, state.clone(), stop.clone()));
        }
        Ok(bound)
    }

    /// Starts the follower (when `el.rpc` is set), the network and the endpoints. Must run on the
    /// thread that drives the runtime (`block_on`), never in a spawned task: the follower's
    /// block application thread inherits that thread's CPU priority.
    pub async fn start(self) -> Result<Node, CliError> {
        let (head, start) = self.plan()?;
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
        let net = self.network_config(head_rx, server.clone(), &stop)?;
        let eth_on = net.eth.is_some();
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
        let bound = self.endpoints(&state, &mut tasks, &stop).await?;
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
