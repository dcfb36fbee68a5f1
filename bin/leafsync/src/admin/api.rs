//! The admin JSON-RPC as one `jsonrpsee` trait: the server (`rpc.rs`) implements it, and the
//! `leafsync status` client (`status.rs`) is generated from it, so both sides share the typed,
//! camelCase answers below. docs/operators.md lists the methods and fields.

use alloy_primitives::B256;
use jsonrpsee::{core::RpcResult, proc_macros::rpc};
use serde::{Deserialize, Serialize};

use crate::{config::SyncSources, phase::DaemonPhase};

/// `admin_*` and `leaf_*`.
#[rpc(server, client)]
pub(crate) trait AdminApi {
    /// The node's identity, addresses and chain.
    #[method(name = "admin_nodeInfo")]
    async fn node_info(&self) -> RpcResult<NodeInfo>;

    /// The connected peers.
    #[method(name = "admin_peers")]
    async fn peers(&self) -> RpcResult<Vec<PeerInfo>>;

    /// Adds a static peer (an enode URL); at most `MAX_ADMIN_ADDED_PEERS` per run.
    #[method(name = "admin_addPeer")]
    async fn add_peer(&self, enode: String) -> RpcResult<bool>;

    /// The leafdb head, `null` for an empty leafdb.
    #[method(name = "leaf_head")]
    async fn head(&self) -> RpcResult<Option<HeadInfo>>;

    /// The phase and the counters of the sync, the follower and the server.
    #[method(name = "leaf_syncStatus")]
    async fn sync_status(&self) -> RpcResult<SyncStatus>;
}

/// `admin_nodeInfo`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NodeInfo {
    /// The node id (public key, hex).
    pub(crate) id: String,
    /// The enode URL.
    pub(crate) enode: String,
    /// The ENR, base64, when discovery runs.
    pub(crate) enr: Option<String>,
    /// The RLPx address.
    pub(crate) listen_addr: String,
    /// The chain preset's name.
    pub(crate) chain: String,
    /// The network id.
    pub(crate) network_id: u64,
    /// The genesis hash.
    pub(crate) genesis: B256,
    /// Seconds since the node started.
    pub(crate) uptime_secs: u64,
}

/// Which side dialed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Direction {
    /// The peer dialed us.
    Inbound,
    /// We dialed the peer.
    Outbound,
}

impl Direction {
    /// The name in the API.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// A block by number, hash and state root.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BlockRef {
    /// Block number.
    pub(crate) number: u64,
    /// Block hash.
    pub(crate) hash: B256,
    /// State root.
    pub(crate) state_root: B256,
}

/// One entry of `admin_peers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PeerInfo {
    /// The peer's node id.
    pub(crate) id: String,
    /// Its address.
    pub(crate) addr: String,
    /// Who dialed.
    pub(crate) direction: Direction,
    /// Its client version.
    pub(crate) client: String,
    /// The head it announced last.
    pub(crate) head: BlockRef,
    /// Its score.
    pub(crate) score: f64,
    /// Whether it is a trusted peer.
    pub(crate) trusted: bool,
    /// The capabilities the session speaks, e.g. `["eth/69", "snap/1"]` (absent from daemons
    /// before snap/1).
    #[serde(default)]
    pub(crate) protocols: Vec<String>,
    /// The protocol a sync takes state from it over.
    #[serde(default)]
    pub(crate) syncs_over: SyncsOver,
}

/// The protocol a sync takes state from a peer over (`admin_peers`' `syncsOver`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SyncsOver {
    /// `leaf/1`.
    Leaf,
    /// `snap/1` (beside eth/69).
    Snap,
    /// None: it speaks no protocol of `sync.sources` (an eth/69-only peer, say).
    #[default]
    None,
}

impl SyncsOver {
    /// For a peer that speaks `leaf/1` (`leaf`) and snap/1 beside eth/69 (`snap`), with the
    /// node's `sync.sources`: `leaf/1` first, as the sync prefers it.
    pub(crate) const fn of(leaf: bool, snap: bool, sources: SyncSources) -> Self {
        if leaf && sources.leaf {
            Self::Leaf
        } else if snap && sources.snap {
            Self::Snap
        } else {
            Self::None
        }
    }

    /// The name in the API.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Leaf => "leaf",
            Self::Snap => "snap",
            Self::None => "none",
        }
    }
}

/// `leaf_head`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HeadInfo {
    /// Block number.
    pub(crate) number: u64,
    /// Block hash.
    pub(crate) hash: B256,
    /// Parent hash.
    pub(crate) parent_hash: B256,
    /// State root.
    pub(crate) state_root: B256,
}

/// The follower's counters in `leaf_syncStatus`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FollowStatus {
    /// The execution client's head number.
    pub(crate) el_head: u64,
    /// Blocks the leafdb is behind it.
    pub(crate) blocks_behind: u64,
    /// Blocks applied in this run.
    pub(crate) blocks_applied: u64,
    /// Applied blocks whose computed root differed from the header's.
    pub(crate) mismatching_blocks: u64,
    /// Reorgs seen.
    pub(crate) reorgs: u64,
    /// Blocks rolled back by reorgs.
    #[serde(default)]
    pub(crate) blocks_reverted: u64,
    /// Retried calls to the execution client.
    pub(crate) retries: u64,
    /// The block following is stuck at (its trace keeps failing), 0 when it is not.
    #[serde(default)]
    pub(crate) stuck_block: u64,
    /// Seconds since the execution client last answered, `None` before its first answer.
    #[serde(default)]
    pub(crate) el_silent_secs: Option<u64>,
}

/// The sync's phase in `stateSync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StatePhase {
    /// Chunks are fetched.
    Chunks,
    /// The trie is healed.
    Heal,
    /// Done.
    Done,
}

impl StatePhase {
    /// The name in the API.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Chunks => "chunks",
            Self::Heal => "heal",
            Self::Done => "done",
        }
    }
}

/// This run's state sync in `leaf_syncStatus`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StateSync {
    /// The sync's phase.
    pub(crate) phase: StatePhase,
    /// The pivot.
    pub(crate) pivot: BlockRef,
    /// Chunks known so far.
    pub(crate) chunks_total: u64,
    /// Chunks imported.
    pub(crate) chunks_done: u64,
    /// Chunks that needed heal.
    pub(crate) chunks_healed: u64,
    /// Accounts imported from chunks.
    pub(crate) accounts: u64,
    /// Storage slots imported from chunks.
    pub(crate) slots: u64,
    /// Codes written.
    pub(crate) codes: u64,
    /// Trie nodes written by heal.
    pub(crate) healed_nodes: u64,
    /// Heal nodes waiting or in flight.
    pub(crate) heal_queue: u64,
    /// Requests sent.
    pub(crate) requests: u64,
    /// Bytes of answers received.
    pub(crate) bytes_down: u64,
    /// Peers the sync uses.
    pub(crate) peers: u64,
    /// Peers banned by the sync.
    pub(crate) peers_banned: u64,
    /// Peers new to the sync that it took.
    pub(crate) peers_joined: u64,
    /// New sessions of peers the sync already had.
    pub(crate) peers_back: u64,
    /// Pivot moves.
    pub(crate) repivots: u64,
    /// Seconds since the sync started.
    pub(crate) elapsed_secs: f64,
    /// Estimated seconds left, when known.
    pub(crate) eta_secs: Option<u64>,
}

/// `leaf_syncStatus`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SyncStatus {
    /// What the daemon is doing.
    pub(crate) phase: DaemonPhase,
    /// The follower's counters, `null` when not following.
    pub(crate) follow: Option<FollowStatus>,
    /// This run's sync, `null` without one.
    pub(crate) state_sync: Option<StateSync>,
    /// The leafdb head.
    pub(crate) head: Option<HeadInfo>,
    /// Connected peers.
    pub(crate) peers: u64,
    /// Blocks whose computed root differed from the header's.
    pub(crate) root_mismatches: u64,
    /// Repairs of a state off the chain finished in this run.
    #[serde(default)]
    pub(crate) repairs: u64,
    /// `leaf/1` requests answered.
    pub(crate) served: u64,
    /// Chunk cache hits.
    pub(crate) cache_hits: u64,
    /// Chunk cache misses.
    pub(crate) cache_misses: u64,
}
