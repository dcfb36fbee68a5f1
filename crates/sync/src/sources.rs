//! The peers of a running network as a sync sees them: [`PeerSources`] says which kinds a sync
//! takes (`leaf/1` peers, and `eth/69` + `snap/1` peers as [`SnapPeer`]s), [`network_peers`]
//! lists them now and [`watch_network_peers`] follows them over time (new peers, new heads and
//! block ranges).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use futures::{
    StreamExt,
    future::{BoxFuture, join_all},
    stream::FuturesUnordered,
};
use leafsync_p2p::{
    PeerId,
    leaf::{ChainHead, ServeFlags},
    peers::{NetworkEvent, NetworkHandle, PeerInfo},
};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::debug;

use crate::{
    config::NEW_PEERS_CHANNEL_BOUND,
    peer::{NetworkPeer, NewPeers, SyncPeer},
    snap::{NetworkSnapPeer, SnapPeer, SnapTransport},
};

/// Which peers a sync takes from the network.
#[derive(Debug, Clone)]
pub struct PeerSources {
    /// `leaf/1` peers that serve state. Default: `true`.
    pub leaf: bool,
    /// Peers that speak `eth/69` and `snap/1` (and not `leaf/1` while `leaf` is on: `leaf/1`
    /// is preferred), as [`SnapPeer`]s whose head follows this watch of the pivot (the
    /// execution client's head: number, hash, state root; see
    /// [`crate::snap::network::snap_head`]). The same watch should be the sync's pivot feed.
    /// Default: `None` (no snap/1 peers).
    pub snap: Option<watch::Receiver<ChainHead>>,
}

impl Default for PeerSources {
    fn default() -> Self {
        Self { leaf: true, snap: None }
    }
}

impl PeerSources {
    /// `leaf/1` peers and, with the pivot watch `pivot`, snap/1 peers.
    pub fn with_snap(pivot: watch::Receiver<ChainHead>) -> Self {
        Self { leaf: true, snap: Some(pivot) }
    }
}

/// Whether a `leaf/1` peer has a state to sync from: its `Status` says it serves chunks and
/// nodes, or it has announced a head since (a node that was syncing at the handshake announces
/// its first head once its state is complete; `Status` is not sent again).
fn serves_state(info: &PeerInfo) -> bool {
    info.leaf.is_some_and(|status| {
        status.serves.contains(ServeFlags(ServeFlags::ACCOUNTS.0 | ServeFlags::NODES.0))
            || info.head != status.head
    })
}

/// A peer of the network as the watcher knows it.
#[derive(Debug, Clone)]
enum Known {
    Leaf(NetworkPeer),
    Snap(NetworkSnapPeer),
}

impl Known {
    /// The kind of sync peer `info` is for `sources`: a `leaf/1` peer when it speaks `leaf/1`
    /// (and leaf peers are taken), else a snap/1 peer when it speaks eth/69 and snap/1 (and
    /// snap peers are taken).
    fn of(handle: &NetworkHandle, info: &PeerInfo, sources: &PeerSources) -> Option<Self> {
        if info.leaf.is_some() && sources.leaf {
            return Some(Self::Leaf(NetworkPeer::new(handle.clone(), info)));
        }
        let pivot = sources.snap.clone()?;
        NetworkSnapPeer::new(handle.clone(), info, pivot).map(Self::Snap)
    }

    fn id(&self) -> PeerId {
        match self {
            Self::Leaf(p) => p.id(),
            Self::Snap(p) => p.id(),
        }
    }

    /// Whether it has state to offer now.
    fn serves(&self, info: &PeerInfo) -> bool {
        match self {
            Self::Leaf(_) => serves_state(info),
            Self::Snap(_) => true,
        }
    }

    /// The sync peer; a snap/1 peer is probed for its account count at its head's root first
    /// (snap/1 announces none, and the syncer sizes its chunks by the peers' median).
    async fn sync_peer(&self) -> Arc<dyn SyncPeer> {
        match self {
            Self::Leaf(peer) => Arc::new(peer.clone()),
            Self::Snap(transport) => {
                let root = transport.head().state_root;
                let peer = SnapPeer::new(Arc::new(transport.clone()));
                if !root.is_zero() {
                    peer.probe_accounts(root).await;
                }
                Arc::new(peer)
            }
        }
    }
}

/// Every `leaf/1` peer currently connected to `handle` that serves state, as sync peers (heads
/// as of now; see [`watch_network_peers`] for live heads, later peers and snap/1 peers).
pub async fn network_peers(handle: &NetworkHandle) -> Vec<Arc<dyn SyncPeer>> {
    handle
        .peers()
        .await
        .into_iter()
        .filter(serves_state)
        .map(|info| Arc::new(NetworkPeer::new(handle.clone(), &info)) as Arc<dyn SyncPeer>)
        .collect()
}

/// Whether `handle` has a peer a sync with `sources` can use now.
pub async fn has_sync_peers(handle: &NetworkHandle, sources: &PeerSources) -> bool {
    let peers = handle.peers().await;
    peers.iter().any(|info| Known::of(handle, info, sources).is_some_and(|k| k.serves(info)))
}

/// The peers of a running network as a sync sees them over time (the kinds `sources` takes):
/// the ones serving state now, and a channel of peers that start serving later (they connect,
/// or a `leaf/1` peer announces its first head). A task keeps every returned peer's head
/// current from `NewHead` and `BlockRange` events; it ends when the receiver is dropped or the
/// network shuts down. snap/1 peers are probed for their account count before they are handed
/// over (at most `PROBE_TIMEOUT` each, concurrently).
///
/// The channel is bounded by [`NEW_PEERS_CHANNEL_BOUND`]. While it is full (a sync that does
/// not read it: its final check runs for minutes on mainnet) peers due to be handed over wait
/// in the watcher, one entry per peer, handed over as the sync takes peers: a peer that
/// reconnects meanwhile is handed over once, with its newest session, and one that leaves is
/// not handed over. No task is spawned per peer, and a snap/1 peer is probed only once the
/// channel has room for it. The watcher goes on reading events meanwhile.
pub async fn watch_network_peers(
    handle: &NetworkHandle,
    sources: &PeerSources,
) -> (Vec<Arc<dyn SyncPeer>>, NewPeers) {
    watch_bounded(handle, sources, NEW_PEERS_CHANNEL_BOUND).await
}

/// [`watch_network_peers`] with a channel of `bound` peers.
async fn watch_bounded(
    handle: &NetworkHandle,
    sources: &PeerSources,
    bound: usize,
) -> (Vec<Arc<dyn SyncPeer>>, NewPeers) {
    // Subscribe before listing, so nothing between the two is missed.
    let mut events = handle.events();
    let mut known: HashMap<PeerId, Known> = HashMap::new();
    let mut serving = Vec::new();
    for info in handle.peers().await {
        if let Some(peer) = Known::of(handle, &info, sources) {
            if peer.serves(&info) {
                serving.push(peer.clone());
            }
            known.insert(info.id, peer);
        }
    }
    let now: Vec<Arc<dyn SyncPeer>> = join_all(serving.iter().map(Known::sync_peer)).await;
    let mut handed: HashSet<PeerId> = now.iter().map(|p| p.id()).collect();
    let (tx, rx) = mpsc::channel(bound);
    let (handle, sources) = (handle.clone(), sources.clone());
    tokio::spawn(async move {
        // Peers due to be handed over, oldest first, each once; their session is the one in
        // `known` when the channel has room. At most one per connected peer: an entry leaves
        // with its session.
        let mut due: VecDeque<PeerId> = VecDeque::new();
        // Handovers under way (a snap/1 peer's probe), each holding its place in the channel:
        // at most `bound`.
        let mut handing: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
        loop {
            let event = tokio::select! {
                () = tx.closed() => return,
                event = events.recv() => event,
                place = tx.clone().reserve_owned(), if !due.is_empty() => {
                    let peer = due.pop_front().and_then(|id| known.get(&id).cloned());
                    if let (Ok(place), Some(peer)) = (place, peer) {
                        handing.push(Box::pin(async move {
                            place.send(peer.sync_peer().await);
                        }));
                    }
                    continue;
                }
                Some(()) = handing.next(), if !handing.is_empty() => continue,
            };
            let offer = match event {
                Ok(NetworkEvent::PeerConnected { peer, .. }) => {
                    // The listing has the full record (statuses, head) of the new session.
                    let info = handle.peers().await.into_iter().find(|i| i.id == peer);
                    handed.remove(&peer);
                    due.retain(|id| *id != peer);
                    known.remove(&peer);
                    info.and_then(|info| {
                        let p = Known::of(&handle, &info, &sources)?;
                        known.insert(peer, p.clone());
                        let serves = p.serves(&info);
                        Some((p, serves))
                    })
                }
                Ok(NetworkEvent::NewHead { peer, head }) => match known.get(&peer) {
                    Some(Known::Leaf(p)) => {
                        p.set_head(head);
                        Some((Known::Leaf(p.clone()), true))
                    }
                    _ => None,
                },
                Ok(NetworkEvent::BlockRange { peer, range }) => {
                    if let Some(Known::Snap(p)) = known.get(&peer) {
                        p.set_range(range);
                    }
                    None
                }
                Ok(NetworkEvent::PeerDisconnected { peer, .. }) => {
                    known.remove(&peer);
                    handed.remove(&peer);
                    due.retain(|id| *id != peer);
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
                    due.retain(|id| live.contains(id));
                    for info in listing {
                        let Some(fresh) = Known::of(&handle, &info, &sources) else { continue };
                        let peer = known.entry(info.id).or_insert(fresh);
                        match peer {
                            Known::Leaf(p) => p.set_head(info.head),
                            Known::Snap(p) => {
                                if let Some(eth) = info.eth {
                                    p.set_range(eth.range);
                                }
                            }
                        }
                        if peer.serves(&info) && handed.insert(info.id) {
                            due.push_back(info.id);
                        }
                    }
                    None
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            // `handed` holds each peer once per session, and `due` only peers it holds.
            if let Some((peer, true)) = offer
                && handed.insert(peer.id())
            {
                due.push_back(peer.id());
            }
        }
    });
    (now, rx)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use alloy_primitives::B256;
    use leafsync_p2p::{
        peers::EmptyHandler,
        test_utils::{
            TestNode, WAIT, test_config, test_head, test_key, wait_connected, wait_event,
        },
    };
    use secp256k1::SecretKey;

    use super::*;

    /// Sessions of the reconnecting peer.
    const SESSIONS: u64 = 8;
    /// The watcher's channel in this test: far fewer places than sessions.
    const BOUND: usize = 2;
    /// The peers' state root (a head past block 0 with a zero root is refused).
    const ROOT: B256 = B256::repeat_byte(0xaa);

    /// A session of the peer with `key`, dialing `client`, its head numbered `session`; returns
    /// once `client` has it.
    async fn session(client: &TestNode, key: SecretKey, session: u64) -> TestNode {
        let (mut config, head) = test_config(Arc::new(EmptyHandler), test_head(session, ROOT));
        config.secret_key = key;
        config.static_peers = vec![client.enode()];
        let server = TestNode::with_config(config, head).await;
        wait_connected(&client.handle, server.id()).await;
        server
    }

    /// A sync that does not read its channel of new peers (its final check runs for minutes on
    /// mainnet) while one peer reconnects again and again: the channel fills, and then the
    /// watcher keeps one entry per peer, its newest session, instead of a task per handover
    /// holding a session that is gone. Once the sync reads, it gets what the channel held and
    /// the live session, not every session since.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_reconnecting_while_the_sync_does_not_read_waits_once() {
        let client =
            TestNode::start(Arc::new(EmptyHandler), test_head(0, B256::ZERO), vec![]).await;
        let (now, mut joining) =
            watch_bounded(&client.handle, &PeerSources::default(), BOUND).await;
        assert!(now.is_empty());
        let mut events = client.handle.events();
        let (key, id) = test_key();
        for n in 0..SESSIONS - 1 {
            session(&client, key, n).await.handle.shutdown().await;
            wait_event(&mut events, |e| match e {
                NetworkEvent::PeerDisconnected { peer, .. } if *peer == id => Some(()),
                _ => None,
            })
            .await;
        }
        let _live = session(&client, key, SESSIONS - 1).await;
        // The sync reads now: sessions until the live one.
        let mut handed = Vec::new();
        while handed.last() != Some(&(SESSIONS - 1)) {
            let peer = tokio::time::timeout(WAIT, joining.recv()).await.unwrap().unwrap();
            assert_eq!(peer.id(), id);
            handed.push(peer.head().number);
        }
        assert!(handed.len() <= BOUND + 1, "sessions handed over: {handed:?}");
    }
}
