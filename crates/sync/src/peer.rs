//! [`SyncPeer`]: what the syncer needs of a peer — its announced head and the four `leaf/1`
//! requests — so that tests can simulate peers without sockets; [`NetworkPeer`] adapts a
//! connected peer of the p2p layer's [`NetworkHandle`], and [`watch_network_peers`] follows the
//! network's peers (new ones, new heads) during a sync.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
};

use futures::future::BoxFuture;
use leafsync_p2p::{
    PeerId,
    leaf::{
        ChainHead, Chunk, Codes, GetChunk, GetCodes, GetNodes, GetStorageChunk, Nodes,
        PenaltyClass, ServeFlags, StorageChunk,
    },
    peers::{NetworkEvent, NetworkHandle, PeerInfo},
    requests::RequestError,
};
use tokio::sync::{broadcast, mpsc};
use tracing::debug;

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

/// A connected `leaf/1` peer of a running network. Its head is shared with the watcher of
/// [`watch_network_peers`], which keeps it current from the peer's `NewHead` announcements.
#[derive(Debug, Clone)]
pub struct NetworkPeer {
    handle: NetworkHandle,
    id: PeerId,
    account_estimate: u64,
    head: Arc<Mutex<ChainHead>>,
}

impl NetworkPeer {
    /// Wraps a connected peer; its head stays the one in `info`.
    pub fn new(handle: NetworkHandle, info: &PeerInfo) -> Self {
        Self {
            handle,
            id: info.id,
            account_estimate: info.status.account_estimate,
            head: Arc::new(Mutex::new(info.head)),
        }
    }

    fn set_head(&self, head: ChainHead) {
        *self.head.lock().unwrap_or_else(PoisonError::into_inner) = head;
    }
}

/// Whether a peer has a state to sync from: its `Status` says it serves chunks and nodes, or it
/// has announced a head since (a node that was syncing at the handshake announces its first head
/// once its state is complete; `Status` is not sent again).
fn serves_state(info: &PeerInfo) -> bool {
    info.status.serves.contains(ServeFlags(ServeFlags::ACCOUNTS.0 | ServeFlags::NODES.0))
        || info.head != info.status.head
}

/// Every peer currently connected to `handle` that serves state, as sync peers (heads as of
/// now; see [`watch_network_peers`] for live heads and later peers).
pub async fn network_peers(handle: &NetworkHandle) -> Vec<Arc<dyn SyncPeer>> {
    handle
        .peers()
        .await
        .into_iter()
        .filter(serves_state)
        .map(|info| Arc::new(NetworkPeer::new(handle.clone(), &info)) as Arc<dyn SyncPeer>)
        .collect()
}

/// The peers of a running network as a sync sees them over time: the ones serving state now,
/// and a channel of peers that start serving later (they connect, or announce their first head).
/// A task keeps every returned peer's head current from `NewHead` events; it ends when the
/// receiver is dropped or the network shuts down.
pub async fn watch_network_peers(
    handle: &NetworkHandle,
) -> (Vec<Arc<dyn SyncPeer>>, mpsc::UnboundedReceiver<Arc<dyn SyncPeer>>) {
    // Subscribe before listing, so nothing between the two is missed.
    let mut events = handle.events();
    let mut known: HashMap<PeerId, NetworkPeer> = HashMap::new();
    let mut now = Vec::new();
    for info in handle.peers().await {
        let peer = NetworkPeer::new(handle.clone(), &info);
        if serves_state(&info) {
            now.push(Arc::new(peer.clone()) as Arc<dyn SyncPeer>);
        }
        known.insert(info.id, peer);
    }
    let mut handed: HashSet<PeerId> = now.iter().map(|p| p.id()).collect();
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = handle.clone();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = tx.closed() => return,
                event = events.recv() => event,
            };
            let offer = match event {
                Ok(NetworkEvent::PeerConnected { peer, .. }) => {
                    // The listing has the full record (status, head) of the new session.
                    let info = handle.peers().await.into_iter().find(|i| i.id == peer);
                    info.map(|info| {
                        let serves = serves_state(&info);
                        let p = NetworkPeer::new(handle.clone(), &info);
                        known.insert(peer, p.clone());
                        handed.remove(&peer);
                        (p, serves)
                    })
                }
                Ok(NetworkEvent::NewHead { peer, head }) => known.get(&peer).map(|p| {
                    p.set_head(head);
                    (p.clone(), true)
                }),
                Ok(NetworkEvent::PeerDisconnected { peer, .. }) => {
                    known.remove(&peer);
                    handed.remove(&peer);
                    None
                }
                Ok(_) => None,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // Events were lost (a NewHead flood, say): the listing is the truth. Peers
                    // that left are forgotten, heads refreshed, and serving peers that joined
                    // meanwhile are handed over now rather than at their next announcement.
                    debug!(missed, "sync peer watcher lagged; re-reading the peer list");
                    let listing = handle.peers().await;
                    let live: HashSet<PeerId> = listing.iter().map(|i| i.id).collect();
                    known.retain(|id, _| live.contains(id));
                    handed.retain(|id| live.contains(id));
                    for info in listing {
                        let peer = known
                            .entry(info.id)
                            .or_insert_with(|| NetworkPeer::new(handle.clone(), &info));
                        peer.set_head(info.head);
                        if serves_state(&info)
                            && handed.insert(info.id)
                            && tx.send(Arc::new(peer.clone()) as Arc<dyn SyncPeer>).is_err()
                        {
                            return;
                        }
                    }
                    None
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if let Some((peer, true)) = offer
                && handed.insert(peer.id)
                && tx.send(Arc::new(peer) as Arc<dyn SyncPeer>).is_err()
            {
                return;
            }
        }
    });
    (now, rx)
}

impl SyncPeer for NetworkPeer {
    fn id(&self) -> PeerId {
        self.id
    }

    fn head(&self) -> ChainHead {
        *self.head.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn account_estimate(&self) -> u64 {
        self.account_estimate
    }

    fn get_chunk(&self, request: GetChunk) -> PeerFuture<Chunk> {
        let (handle, id) = (self.handle.clone(), self.id);
        Box::pin(async move { handle.get_chunk(id, request).await })
    }

    fn get_storage_chunk(&self, request: GetStorageChunk) -> PeerFuture<StorageChunk> {
        let (handle, id) = (self.handle.clone(), self.id);
        Box::pin(async move { handle.get_storage_chunk(id, request).await })
    }

    fn get_nodes(&self, request: GetNodes) -> PeerFuture<Nodes> {
        let (handle, id) = (self.handle.clone(), self.id);
        Box::pin(async move { handle.get_nodes(id, request).await })
    }

    fn get_codes(&self, request: GetCodes) -> PeerFuture<Codes> {
        let (handle, id) = (self.handle.clone(), self.id);
        Box::pin(async move { handle.get_codes(id, request).await })
    }

    fn penalise(&self, class: PenaltyClass) -> BoxFuture<'static, ()> {
        let (handle, id) = (self.handle.clone(), self.id);
        Box::pin(async move {
            // A peer already gone needs no penalty.
            let _ = handle.report(id, class).await;
        })
    }
}
