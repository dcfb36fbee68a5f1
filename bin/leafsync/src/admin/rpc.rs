//! The admin JSON-RPC methods over the node's state, dispatched by `jsonrpsee`'s [`RpcModule`]
//! (the HTTP layer in `mod.rs` hands it each request body).

use std::{str::FromStr, sync::Arc};

use jsonrpsee::{
    RpcModule,
    core::{RpcResult, async_trait},
    types::{ErrorObjectOwned, error::ErrorCode},
};
use leafsync_p2p::{
    leaf::ChainHead,
    peers::{self, NodeRecord},
};
use leafsync_sync::{Phase, SyncStats};

use super::{
    AdminState, MAX_ADMIN_ADDED_PEERS,
    api::{
        AdminApiServer, BlockRef, Direction, FollowStatus, HeadInfo, NodeInfo, PeerInfo,
        StatePhase, StateSync, SyncStatus, SyncsOver,
    },
};

/// JSON-RPC error code of a server-side failure (the database, the network).
const SERVER_ERROR: i32 = -32000;

fn server_error(message: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(SERVER_ERROR, message.to_string(), None::<()>)
}

/// The capabilities `peer`'s session speaks, in the order they take message ids.
fn protocols(peer: &peers::PeerInfo) -> Vec<String> {
    let spoken =
        [(peer.eth.is_some(), "eth/69"), (peer.leaf.is_some(), "leaf/1"), (peer.snap, "snap/1")];
    spoken.into_iter().filter(|(on, _)| *on).map(|(_, name)| name.to_string()).collect()
}

/// The methods, over the node's state.
pub(crate) fn module(state: Arc<AdminState>) -> RpcModule<AdminRpc> {
    AdminRpc(state).into_rpc()
}

/// Answers one JSON-RPC request (a batch is refused), as the JSON text to send back.
pub(crate) async fn answer(module: &RpcModule<AdminRpc>, body: &str) -> String {
    match module.raw_json_request(body, 1).await {
        Ok((response, _subscriptions)) => response.get().to_string(),
        Err(_) => {
            let code = if body.trim_start().starts_with('[') {
                ErrorCode::InvalidRequest
            } else {
                ErrorCode::ParseError
            };
            let error = ErrorObjectOwned::from(code);
            serde_json::json!({"jsonrpc": "2.0", "id": null, "error": error}).to_string()
        }
    }
}

/// The server side of [`AdminApiServer`].
#[derive(Clone)]
pub(crate) struct AdminRpc(Arc<AdminState>);

impl From<ChainHead> for BlockRef {
    fn from(h: ChainHead) -> Self {
        Self { number: h.number, hash: h.hash, state_root: h.state_root }
    }
}

impl From<Phase> for StatePhase {
    fn from(p: Phase) -> Self {
        match p {
            Phase::Chunks => Self::Chunks,
            Phase::Heal => Self::Heal,
            Phase::Done => Self::Done,
        }
    }
}

/// The sync counters, `None` when this run did not sync.
pub(crate) fn state_sync(s: &SyncStats) -> Option<StateSync> {
    if s.requests == 0 && s.phase != Phase::Done {
        return None;
    }
    Some(StateSync {
        phase: s.phase.into(),
        pivot: s.pivot.into(),
        chunks_total: s.chunks_total,
        chunks_done: s.chunks_done,
        chunks_healed: s.chunks_healed,
        accounts: s.accounts,
        slots: s.slots,
        codes: s.codes,
        healed_nodes: s.healed_nodes,
        heal_queue: s.heal_queue,
        requests: s.requests,
        bytes_down: s.bytes_down,
        peers: s.peers,
        peers_banned: s.peers_banned,
        peers_joined: s.peers_joined,
        peers_back: s.peers_back,
        repivots: s.repivots,
        elapsed_secs: s.elapsed.as_secs_f64(),
        eta_secs: s.eta().map(|d| d.as_secs()),
    })
}

impl AdminRpc {
    fn head_info(&self) -> RpcResult<Option<HeadInfo>> {
        let head = self.0.db.head().map_err(server_error)?;
        Ok(head.map(|h| HeadInfo {
            number: h.number,
            hash: h.hash,
            parent_hash: h.parent_hash,
            state_root: h.state_root,
        }))
    }

    /// Records `record` as added; refused past [`MAX_ADMIN_ADDED_PEERS`] distinct peers.
    fn count_added(&self, record: &NodeRecord, enode: &str) -> RpcResult<()> {
        let mut added = self.0.added_peers.lock().unwrap_or_else(|e| e.into_inner());
        if !added.contains(&record.id) && added.len() >= MAX_ADMIN_ADDED_PEERS {
            return Err(server_error(format!(
                "admin_addPeer {enode}: this run already added {MAX_ADMIN_ADDED_PEERS} peers \
                 (the limit); list more in p2p.static_peers"
            )));
        }
        added.insert(record.id);
        Ok(())
    }
}

#[async_trait]
impl AdminApiServer for AdminRpc {
    async fn node_info(&self) -> RpcResult<NodeInfo> {
        let s = &self.0;
        let enode = s.network.local_enode();
        Ok(NodeInfo {
            id: s.network.local_id().to_string(),
            enode: enode.to_string(),
            enr: s.network.local_enr().await.map(|e| e.to_base64()),
            listen_addr: enode.addr.to_string(),
            chain: s.chain.name.clone(),
            network_id: s.chain.network_id,
            genesis: s.chain.genesis_hash,
            uptime_secs: s.started.elapsed().as_secs(),
        })
    }

    async fn peers(&self) -> RpcResult<Vec<PeerInfo>> {
        let peers = self.0.network.peers().await;
        let sources = self.0.sources;
        Ok(peers
            .into_iter()
            .map(|p| PeerInfo {
                protocols: protocols(&p),
                syncs_over: SyncsOver::of(p.leaf.is_some(), p.eth.is_some() && p.snap, sources),
                id: p.id.to_string(),
                addr: p.addr.to_string(),
                direction: match p.direction {
                    leafsync_p2p::peers::Direction::Inbound => Direction::Inbound,
                    leafsync_p2p::peers::Direction::Outbound => Direction::Outbound,
                },
                client: p.client_version,
                head: p.head.into(),
                score: p.score,
                trusted: p.trusted,
            })
            .collect())
    }

    async fn add_peer(&self, enode: String) -> RpcResult<bool> {
        let record = NodeRecord::from_str(&enode).map_err(|e| {
            let code = ErrorCode::InvalidParams.code();
            ErrorObjectOwned::owned(code, format!("invalid enode: {e}"), None::<()>)
        })?;
        self.count_added(&record, &enode)?;
        self.0.network.add_peer(record).await.map_err(server_error)?;
        Ok(true)
    }

    async fn head(&self) -> RpcResult<Option<HeadInfo>> {
        self.head_info()
    }

    async fn sync_status(&self) -> RpcResult<SyncStatus> {
        let s = &self.0;
        let head = self.head_info()?;
        let root_mismatches = s.db.root_mismatches().map_err(server_error)?;
        let served = s.server.stats();
        let follow = s.ingest.get().map(|i| FollowStatus {
            el_head: i.el_head(),
            blocks_behind: i.blocks_behind(),
            blocks_applied: i.blocks_applied(),
            mismatching_blocks: i.mismatching_blocks(),
            reorgs: i.reorgs(),
            blocks_reverted: i.blocks_reverted(),
            retries: i.retries(),
            stuck_block: i.stuck_block(),
            el_silent_secs: i.el_silent_secs(),
        });
        let phase = *s.phase.borrow();
        let state_sync = state_sync(&s.sync.borrow());
        Ok(SyncStatus {
            phase,
            follow,
            state_sync,
            head,
            peers: s.network.peers().await.len() as u64,
            root_mismatches,
            repairs: s.repairs.load(std::sync::atomic::Ordering::Relaxed),
            served: served.served,
            cache_hits: served.cache.hits,
            cache_misses: served.cache.misses,
        })
    }
}
