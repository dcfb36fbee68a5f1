//! [`SyncPeer`]: what the syncer needs of a peer — its announced head and one `request` method
//! for the four `leaf/1` requests — so that tests can simulate peers without sockets and another
//! source of state (snap/1) can plug in as one more peer type; [`NetworkPeer`] adapts a
//! connected peer of the p2p layer's [`NetworkHandle`], and [`watch_network_peers`] follows the
//! network's peers (new ones, new heads) during a sync.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
};

use alloy_primitives::B256;
use futures::future::BoxFuture;
use leafsync_p2p::{
    PeerId, PenaltyClass,
    leaf::{ChainHead, RlpFields, ServeFlags},
    peers::{NetworkEvent, NetworkHandle, PeerInfo},
    requests::{LeafRequest, LeafResponse, RequestError},
};
use tokio::sync::{broadcast, mpsc};
use tracing::debug;

use crate::config::NEW_PEERS_CHANNEL_BOUND;

/// The future of one request: the answer or why there is none.
pub type PeerFuture<T = LeafResponse> = BoxFuture<'static, Result<T, RequestError>>;

/// Peers that join a running sync (see [`watch_network_peers`], `Syncer::with_new_peers`).
pub type NewPeers = mpsc::Receiver<Arc<dyn SyncPeer>>;

/// A peer the syncer can ask for state: the seam where every source of peers plugs in.
/// `request` returns a `'static` future so requests to many peers run concurrently inside the
/// syncer's one loop.
pub trait SyncPeer: Send + Sync + 'static {
    /// The peer's node id.
    fn id(&self) -> PeerId;
    /// The head the peer announced (its Status or latest NewHead).
    fn head(&self) -> ChainHead;
    /// The peer's estimate of the number of accounts (from its Status).
    fn account_estimate(&self) -> u64;
    /// Sends one request; the answer must be of the request's kind (the syncer bans a peer whose
    /// answer is not). The transport chooses the request id.
    fn request(&self, req: LeafRequest) -> PeerFuture;
    /// Sends one request for the state of `pivot`: what the syncer calls. A source whose
    /// requests name a state root (snap/1) needs the pivot; the default ignores it.
    fn request_at(&self, pivot: &ChainHead, req: LeafRequest) -> PeerFuture {
        let _ = pivot;
        self.request(req)
    }
    /// Whether the peer has said it holds no state for `root` (snap/1: a range answered empty
    /// with an empty proof). While `root` is the pivot's it gets no work, and its empty answers
    /// cost it nothing; the next pivot asks it again.
    fn lacks_state(&self, root: &B256) -> bool {
        let _ = root;
        false
    }
    /// Tells the peer's source it misbehaved (it scores, disconnects and bans). Fire and
    /// forget: it must not block, so a busy network layer never stalls the sync.
    fn penalise(&self, class: PenaltyClass);
}

/// Encoded size of a request's RLP body (without the message id and framing).
pub fn request_len(request: &LeafRequest) -> u64 {
    pair_len(match request {
        LeafRequest::GetChunk(m) => m.fields_length(),
        LeafRequest::GetStorageChunk(m) => m.fields_length(),
        LeafRequest::GetNodes(m) => m.fields_length(),
        LeafRequest::GetCodes(m) => m.fields_length(),
    })
}

/// Encoded size of an answer's RLP body: what the sync counts as bytes downloaded and what a
/// peer's measured throughput is made of.
pub fn response_len(response: &LeafResponse) -> u64 {
    pair_len(match response {
        LeafResponse::Chunk(m) => m.fields_length(),
        LeafResponse::StorageChunk(m) => m.fields_length(),
        LeafResponse::Nodes(m) => m.fields_length(),
        LeafResponse::Codes(m) => m.fields_length(),
    })
}

/// Length of `[request_id, fields...]` with the fields' encoded length given, counting the
/// request id as one byte (the transport's ids are small; the count is the same for every peer).
fn pair_len(fields: usize) -> u64 {
    let payload = 1 + fields;
    (payload + alloy_rlp::length_of_length(payload)) as u64
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
///
/// The channel is bounded by [`NEW_PEERS_CHANNEL_BOUND`]; when it is full the watcher waits for
/// the sync to take a peer (events meanwhile queue in the network's broadcast channel, and a
/// lag there is repaired from the peer listing).
pub async fn watch_network_peers(handle: &NetworkHandle) -> (Vec<Arc<dyn SyncPeer>>, NewPeers) {
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
    let (tx, rx) = mpsc::channel(NEW_PEERS_CHANNEL_BOUND);
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
                            && tx.send(Arc::new(peer.clone()) as Arc<dyn SyncPeer>).await.is_err()
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
                && tx.send(Arc::new(peer) as Arc<dyn SyncPeer>).await.is_err()
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

    fn request(&self, req: LeafRequest) -> PeerFuture {
        let (handle, id) = (self.handle.clone(), self.id);
        Box::pin(async move { handle.request(id, req).await })
    }

    /// Sent from a task of its own: the network's command channel is bounded, and the sync must
    /// not wait on it. Without a runtime (never the case inside a sync) the penalty is dropped.
    fn penalise(&self, class: PenaltyClass) {
        let (handle, id) = (self.handle.clone(), self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // A peer already gone needs no penalty.
                let _ = handle.report(id, class).await;
            });
        }
    }
}
