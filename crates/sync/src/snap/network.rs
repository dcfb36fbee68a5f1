//! [`NetworkSnapPeer`]: a connected peer of the p2p layer that speaks `eth/69` and `snap/1` as
//! a [`SnapTransport`]. Its head comes from its eth block range and the sync's pivot
//! ([`snap_head`]), kept current by the watcher of `crate::watch_network_peers`.

use std::sync::{Arc, Mutex, PoisonError};

use alloy_primitives::B256;
use leafsync_leafdb::DEFAULT_RECENT_BLOCKS;
use leafsync_p2p::{
    PeerId, PenaltyClass,
    eth::BlockRangeUpdate,
    leaf::ChainHead,
    peers::{NetworkHandle, PeerInfo},
    snap::SnapMessage,
};
use tokio::sync::watch;

use super::SnapTransport;
use crate::peer::{PeerFuture, report_in_background};

/// How far a peer's announced latest block may trail the pivot for the peer to be taken to
/// have the pivot's state (32): geth sends `BlockRangeUpdate` only once its head has moved 32
/// blocks (`blockRangeState.shouldSend`), so the latest block it announced is up to 31 blocks
/// behind the head it has.
pub const ANNOUNCED_HEAD_LAG: u64 = 32;

/// The head a snap/1 peer is taken to have. snap/1 serves state by root, and eth/69 announces
/// only the peer's latest block number and hash, no state root. A geth keeps the state of its
/// last [`DEFAULT_RECENT_BLOCKS`] blocks (128 diff layers) and announces its head every
/// [`ANNOUNCED_HEAD_LAG`] blocks, so a peer whose announced latest block is less than that
/// much before the `pivot` (the trusted head of the execution client), or at most 127 blocks past it,
/// is taken to have the pivot's state: its head is the pivot. (Before, the announcement had to
/// reach the pivot: a geth at the chain's head was taken to have its state 31 times in 32, and
/// got no trie-node work, so a sync from geth peers alone stalled until its timeout.) A peer
/// that does not have it after all answers empty, which marks it without state for that root.
/// Otherwise its own latest block with a zero state root, which the syncer never gives the
/// pivot's trie nodes to (and which must not choose a pivot: snap peers are used with a trusted
/// pivot only).
pub fn snap_head(range: &BlockRangeUpdate, pivot: &ChainHead) -> ChainHead {
    let trails = pivot.number.saturating_sub(range.latest);
    let leads = range.latest.saturating_sub(pivot.number);
    let covers = trails < ANNOUNCED_HEAD_LAG
        && leads < DEFAULT_RECENT_BLOCKS
        && pivot.state_root != B256::ZERO;
    if covers {
        *pivot
    } else {
        ChainHead { number: range.latest, hash: range.latest_hash, state_root: B256::ZERO }
    }
}

/// A connected eth/69 + snap/1 peer of a running network as a [`SnapTransport`]; wrap it in a
/// [`super::SnapPeer`] for a sync. Clones share the peer's range.
#[derive(Debug, Clone)]
pub struct NetworkSnapPeer {
    handle: NetworkHandle,
    id: PeerId,
    range: Arc<Mutex<BlockRangeUpdate>>,
    pivot: watch::Receiver<ChainHead>,
}

impl NetworkSnapPeer {
    /// Wraps a connected peer (`None` if it does not speak eth/69 and snap/1); its head follows
    /// `pivot` as [`snap_head`] says.
    pub fn new(
        handle: NetworkHandle,
        info: &PeerInfo,
        pivot: watch::Receiver<ChainHead>,
    ) -> Option<Self> {
        let eth = info.eth.filter(|_| info.snap)?;
        Some(Self { handle, id: info.id, range: Arc::new(Mutex::new(eth.range)), pivot })
    }

    /// The peer announced a new block range.
    pub fn set_range(&self, range: BlockRangeUpdate) {
        *self.range.lock().unwrap_or_else(PoisonError::into_inner) = range;
    }
}

impl SnapTransport for NetworkSnapPeer {
    fn id(&self) -> PeerId {
        self.id
    }

    fn head(&self) -> ChainHead {
        let range = *self.range.lock().unwrap_or_else(PoisonError::into_inner);
        snap_head(&range, &self.pivot.borrow())
    }

    /// The network assigns the request id, matches the answer by it, decodes it within snap/1's
    /// limits, and applies the request timeout.
    fn request(&self, request: SnapMessage) -> PeerFuture<SnapMessage> {
        let (handle, id) = (self.handle.clone(), self.id);
        Box::pin(async move { handle.snap_request(id, request).await })
    }

    fn penalise(&self, class: PenaltyClass) {
        report_in_background(&self.handle, self.id, class);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_within_the_recent_window_has_the_pivot_state() {
        let pivot = ChainHead {
            number: 1000,
            hash: B256::repeat_byte(1),
            state_root: B256::repeat_byte(2),
        };
        let range =
            |latest| BlockRangeUpdate { earliest: 0, latest, latest_hash: B256::repeat_byte(3) };
        assert_eq!(snap_head(&range(1000), &pivot), pivot);
        assert_eq!(snap_head(&range(1127), &pivot), pivot);
        let own = snap_head(&range(1128), &pivot);
        assert_eq!((own.number, own.state_root), (1128, B256::ZERO));
        // geth announces its head every 32 blocks: the announcement trails the head it has.
        assert_eq!(snap_head(&range(999), &pivot), pivot);
        assert_eq!(snap_head(&range(1000 - ANNOUNCED_HEAD_LAG + 1), &pivot), pivot);
        let behind = snap_head(&range(1000 - ANNOUNCED_HEAD_LAG), &pivot);
        assert_eq!((behind.number, behind.state_root), (1000 - ANNOUNCED_HEAD_LAG, B256::ZERO));
        let unknown = ChainHead { state_root: B256::ZERO, ..pivot };
        assert_eq!(snap_head(&range(1000), &unknown).state_root, B256::ZERO);
    }
}
