//! [`SyncPeer`]: what the syncer needs of a peer — its announced head and the four `leaf/1`
//! requests — so that tests can simulate peers without sockets; [`NetworkPeer`] adapts a
//! connected peer of the p2p layer's [`NetworkHandle`].

use std::sync::Arc;

use futures::future::BoxFuture;
use leafsync_p2p::{
    PeerId,
    leaf::{
        ChainHead, Chunk, Codes, GetChunk, GetCodes, GetNodes, GetStorageChunk, Nodes,
        PenaltyClass, StorageChunk,
    },
    peers::{NetworkHandle, PeerInfo},
    requests::RequestError,
};

/// The future of one request: the typed answer or why there is none.
pub type PeerFuture<T> = BoxFuture<'static, Result<T, RequestError>>;

/// A peer the syncer can ask for state. Each method returns a `'static` future so requests to
/// many peers run concurrently inside the syncer's one loop.
pub trait SyncPeer: Send + Sync + 'static {
    /// The peer's node id.
    fn id(&self) -> PeerId;
    /// The head the peer announced (its Status or latest NewHead).
    fn head(&self) -> ChainHead;
    /// The peer's estimate of the number of accounts (from its Status).
    fn account_estimate(&self) -> u64;
    /// `GetChunk`.
    fn get_chunk(&self, request: GetChunk) -> PeerFuture<Chunk>;
    /// `GetStorageChunk`.
    fn get_storage_chunk(&self, request: GetStorageChunk) -> PeerFuture<StorageChunk>;
    /// `GetNodes`.
    fn get_nodes(&self, request: GetNodes) -> PeerFuture<Nodes>;
    /// `GetCodes`.
    fn get_codes(&self, request: GetCodes) -> PeerFuture<Codes>;
    /// Tells the network layer the peer misbehaved (it scores, disconnects and bans).
    fn penalise(&self, class: PenaltyClass) -> BoxFuture<'static, ()>;
}

/// A connected `leaf/1` peer of a running network.
#[derive(Debug, Clone)]
pub struct NetworkPeer {
    handle: NetworkHandle,
    info: PeerInfo,
}

impl NetworkPeer {
    /// Wraps a connected peer.
    pub const fn new(handle: NetworkHandle, info: PeerInfo) -> Self {
        Self { handle, info }
    }
}

/// Every peer currently connected to `handle`, as sync peers.
pub async fn network_peers(handle: &NetworkHandle) -> Vec<Arc<dyn SyncPeer>> {
    handle
        .peers()
        .await
        .into_iter()
        .map(|info| Arc::new(NetworkPeer::new(handle.clone(), info)) as Arc<dyn SyncPeer>)
        .collect()
}

impl SyncPeer for NetworkPeer {
    fn id(&self) -> PeerId {
        self.info.id
    }

    fn head(&self) -> ChainHead {
        self.info.head
    }

    fn account_estimate(&self) -> u64 {
        self.info.status.account_estimate
    }

    fn get_chunk(&self, request: GetChunk) -> PeerFuture<Chunk> {
        let (handle, id) = (self.handle.clone(), self.info.id);
        Box::pin(async move { handle.get_chunk(id, request).await })
    }

    fn get_storage_chunk(&self, request: GetStorageChunk) -> PeerFuture<StorageChunk> {
        let (handle, id) = (self.handle.clone(), self.info.id);
        Box::pin(async move { handle.get_storage_chunk(id, request).await })
    }

    fn get_nodes(&self, request: GetNodes) -> PeerFuture<Nodes> {
        let (handle, id) = (self.handle.clone(), self.info.id);
        Box::pin(async move { handle.get_nodes(id, request).await })
    }

    fn get_codes(&self, request: GetCodes) -> PeerFuture<Codes> {
        let (handle, id) = (self.handle.clone(), self.info.id);
        Box::pin(async move { handle.get_codes(id, request).await })
    }

    fn penalise(&self, class: PenaltyClass) -> BoxFuture<'static, ()> {
        let (handle, id) = (self.handle.clone(), self.info.id);
        Box::pin(async move {
            // A peer already gone needs no penalty.
            let _ = handle.report(id, class).await;
        })
    }
}
