//! [`SyncPeer`]: what the syncer needs of a peer — its announced head and one `request` method
//! for the four `leaf/1` requests — so that tests can simulate peers without sockets and another
//! source of state (snap/1) can plug in as one more peer type; [`NetworkPeer`] adapts a
//! connected `leaf/1` peer of the p2p layer's [`NetworkHandle`] (`crate::sources` follows the
//! network's peers during a sync).

use std::sync::{Arc, Mutex, PoisonError};

use alloy_primitives::B256;
use futures::future::BoxFuture;
use leafsync_p2p::{
    PeerId, PenaltyClass,
    leaf::{ChainHead, RlpFields},
    peers::{NetworkHandle, PeerInfo},
    requests::{LeafRequest, LeafResponse, RequestError},
};
use tokio::sync::mpsc;

/// The future of one request: the answer or why there is none.
pub type PeerFuture<T = LeafResponse> = BoxFuture<'static, Result<T, RequestError>>;

/// Peers that join a running sync (see [`crate::watch_network_peers`], `Syncer::with_new_peers`).
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
    /// Whether the peer has said it holds no flat state for `root` (snap/1: a range answered
    /// empty with an empty proof). While `root` is the pivot's it gets no chunk work (codes
    /// still, and nodes unless [`Self::lacks_nodes`]), and its empty answers cost it nothing;
    /// the next pivot asks it again.
    fn lacks_state(&self, root: &B256) -> bool {
        let _ = root;
        false
    }
    /// Whether the peer has said it holds no trie nodes for `root` (snap/1: `GetTrieNodes`
    /// answered with no node at all). While `root` is the pivot's it gets no node work, and its
    /// empty answers cost it nothing. A geth generating its snapshot has no ranges yet but
    /// serves nodes.
    fn lacks_nodes(&self, root: &B256) -> bool {
        let _ = root;
        false
    }
    /// Whether the peer's chunks are read at exactly the pivot's state (snap/1: every range it
    /// is asked names the pivot's root), not at whatever head it is at (`leaf/1`): a chunk of
    /// such a peer that differs from its skeleton hash is then a lie, never a stale read, and
    /// nothing of it is written or healed.
    fn exact_root(&self) -> bool {
        false
    }
    /// When the peer last answered any request of its source, for a source whose one sync
    /// request is a chain of round trips queued behind the others' at the peer (snap/1): the
    /// sync's guard on a request then counts from that answer rather than from the request's
    /// start (`None`, the default: from the start).
    fn last_answer(&self) -> Option<tokio::time::Instant> {
        None
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

/// [`response_len`] of a `Chunk` or `StorageChunk` answer from its pieces' encoded `lengths`
/// (both are the list of their pieces), so that the pieces are measured once.
pub(crate) fn pieces_response_len(lengths: &[u64]) -> u64 {
    let payload = lengths.iter().sum::<u64>() as usize;
    pair_len(payload + alloy_rlp::length_of_length(payload))
}

/// Length of `[request_id, fields...]` with the fields' encoded length given, counting the
/// request id as one byte (the transport's ids are small; the count is the same for every peer).
fn pair_len(fields: usize) -> u64 {
    let payload = 1 + fields;
    (payload + alloy_rlp::length_of_length(payload)) as u64
}

/// A connected `leaf/1` peer of a running network. Its head is shared with the watcher of
/// [`crate::watch_network_peers`], which keeps it current from the peer's `NewHead`
/// announcements.
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
            account_estimate: info.leaf.map_or(0, |status| status.account_estimate),
            head: Arc::new(Mutex::new(info.head)),
        }
    }

    pub(crate) fn set_head(&self, head: ChainHead) {
        *self.head.lock().unwrap_or_else(PoisonError::into_inner) = head;
    }
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

    fn penalise(&self, class: PenaltyClass) {
        report_in_background(&self.handle, self.id, class);
    }
}

/// Reports `peer` to the network from a task of its own: the network's command channel is
/// bounded, and the sync must not wait on it. Without a runtime (never the case inside a sync)
/// the penalty is dropped.
pub(crate) fn report_in_background(handle: &NetworkHandle, peer: PeerId, class: PenaltyClass) {
    let handle = handle.clone();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            // A peer already gone needs no penalty.
            let _ = handle.report(peer, class).await;
        });
    }
}
