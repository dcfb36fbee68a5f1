//! Who picks the pivot: peers' heads are unauthenticated, so without a trusted pivot a sync
//! that may not take one from peers refuses to start; Sybil heads never move a trusted pivot; a
//! pivot trie deeper than any real one ends the sync with an error, not a panic; a server on a
//! sibling block at the pivot's height is healed around, not banned.
#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::HashMap, sync::Arc};

use alloy_primitives::{B256, Bytes, U256, keccak256};
use alloy_trie::nodes::RlpNode;
use common::{
    Behaviour, Hook, Hooked, SimPeer, assert_same_state, assert_synced,
    chain::{ACCOUNTS, SEED, at, chain, random_diff},
    chain_head, dyn_peers, source,
};
use leafsync_leafdb::{BlockHeader, GenParams, LeafDb, MemStore, trie::node::encode_branch};
use leafsync_p2p::PenaltyClass;
use leafsync_p2p::{
    PeerId,
    leaf::{ChainHead, Nodes},
    requests::{LeafRequest, LeafResponse},
};
use leafsync_sync::{PeerFuture, SyncConfig, SyncError, SyncMode, SyncPeer, Syncer};
use tokio::sync::watch;

/// Announces a head far past the real one, with a state root nobody has.
struct SybilHead;

impl Hook for SybilHead {
    fn head(&self, inner: &SimPeer) -> ChainHead {
        let real = inner.head();
        ChainHead {
            number: real.number + 100,
            hash: keccak256(b"sybil head"),
            state_root: keccak256(b"sybil root"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_trusted_pivot_a_sync_that_may_not_trust_peers_refuses_to_start() {
    let src = source(500, 3);
    let peers = [SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, 500)];
    let config = SyncConfig { peer_pivot: false, ..Default::default() };
    let client = Arc::new(LeafDb::in_memory());
    let r = Syncer::new(Arc::clone(&client), config, dyn_peers(&peers)).run().await;
    assert!(matches!(r, Err(SyncError::NoTrustedPivot)), "{r:?}");
    assert_eq!(client.head().unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn sybil_heads_never_choose_or_move_a_trusted_pivot() {
    let src = source(2000, 11);
    let root = src.account_root().unwrap();
    let honest = SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, 2000);
    let mut peers: Vec<Arc<dyn SyncPeer>> = vec![honest.clone()];
    for n in 2..5 {
        let inner = SimPeer::new(n, Arc::clone(&src), Behaviour::Honest, 2000);
        peers.push(Arc::new(Hooked { inner, hook: SybilHead }));
    }
    let (_tx, feed) = watch::channel(honest.head());
    let config =
        SyncConfig { peer_pivot: false, chunk_target_bytes: 16 * 1024, ..Default::default() };
    let client = Arc::new(LeafDb::in_memory());
    let out =
        Syncer::new(Arc::clone(&client), config, peers).with_pivot_feed(feed).run().await.unwrap();
    assert_eq!(out.root, root);
    assert_eq!(out.stats.repivots, 0);
    assert_same_state(&client, &src, root);
}

#[tokio::test(start_paused = true)]
async fn peer_heads_do_not_move_the_pivot_when_peers_may_not_choose_it() {
    // Even with a record to resume, no feed and peers not trusted: the record's pivot is not
    // resumed (it may have come from peers) and nothing starts.
    let src = source(500, 3);
    let inner = SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, 500);
    let peers: Vec<Arc<dyn SyncPeer>> = vec![Arc::new(Hooked { inner, hook: SybilHead })];
    let client = Arc::new(LeafDb::in_memory());
    // A first run trusting peers stops at once on the fake root (no node has it)...
    let trusting =
        SyncConfig { stall_timeout: std::time::Duration::from_secs(5), ..Default::default() };
    assert!(Syncer::new(Arc::clone(&client), trusting, peers.clone()).run().await.is_err());
    assert!(client.sync_progress().unwrap().is_some(), "its record is kept");
    // ...and a run that may not trust peers does not resume that record.
    let careful = SyncConfig { peer_pivot: false, ..Default::default() };
    let r = Syncer::new(Arc::clone(&client), careful, peers).run().await;
    assert!(matches!(r, Err(SyncError::NoTrustedPivot)), "{r:?}");
}

/// Serves trie nodes from a map by hash; no chunks, no codes.
struct MapPeer {
    nodes: HashMap<B256, Bytes>,
    head: ChainHead,
}

impl SyncPeer for MapPeer {
    fn id(&self) -> PeerId {
        PeerId::repeat_byte(9)
    }
    fn head(&self) -> ChainHead {
        self.head
    }
    fn account_estimate(&self) -> u64 {
        1
    }
    fn request(&self, request: LeafRequest) -> PeerFuture {
        let answer = match &request {
            LeafRequest::GetNodes(r) => {
                let nodes =
                    r.nodes.iter().map(|n| self.nodes.get(&n.hash).cloned().unwrap_or_default());
                LeafResponse::Nodes(Nodes { nodes: nodes.collect() })
            }
            _ => request.empty_response(),
        };
        Box::pin(async move { Ok(answer) })
    }
    fn penalise(&self, _: PenaltyClass) {}
}

#[tokio::test(start_paused = true)]
async fn a_pivot_trie_deeper_than_64_nibbles_is_an_error_not_a_panic() {
    // 66 branch nodes, each with one hashed child at index 0: valid RLP, every hash checks out,
    // but the path passes 64 nibbles.
    let mut nodes = HashMap::new();
    let mut child = keccak256(b"bottom");
    let mut rlp = Vec::new();
    for _ in 0..66 {
        let mut children: [Option<RlpNode>; 16] = Default::default();
        children[0] = Some(RlpNode::word_rlp(&child));
        encode_branch(&children, None, &mut rlp);
        child = keccak256(&rlp);
        nodes.insert(child, Bytes::from(rlp.clone()));
    }
    let head = ChainHead { number: 1, hash: B256::repeat_byte(1), state_root: child };
    let peer: Arc<dyn SyncPeer> = Arc::new(MapPeer { nodes, head });
    let config = SyncConfig { pivot: Some(head), mode: SyncMode::HealOnly, ..Default::default() };
    let r = Syncer::new(Arc::new(LeafDb::in_memory()), config, vec![peer]).run().await;
    assert!(matches!(r, Err(SyncError::PathTooLong)), "{r:?}");
}

/// A chain of 4 blocks, the leafdb at its block 4 (the pivot), and one at a sibling of it:
/// block 4 built on block 3 with another diff and another hash.
fn pivot_and_sibling() -> (BlockHeader, Arc<LeafDb<MemStore>>, Arc<LeafDb<MemStore>>) {
    let blocks = chain(4);
    let (pivot, _) = blocks[3];
    let pivot_db = at(&blocks, 4);
    let sibling_db = at(&blocks, 3);
    let params = GenParams { accounts: ACCOUNTS, seed: SEED };
    let diff = random_diff(&sibling_db, params, 1000);
    let sibling = BlockHeader {
        number: 4,
        hash: B256::from(U256::from(4_000_000u64)),
        parent_hash: blocks[2].0.hash,
        state_root: B256::ZERO,
        timestamp: 0,
    };
    sibling_db.apply_block(&sibling, &diff).unwrap();
    (pivot, pivot_db, sibling_db)
}

#[tokio::test(start_paused = true)]
async fn a_server_on_a_sibling_block_at_the_pivot_height_is_healed_around_not_banned() {
    let (pivot, pivot_db, sibling_db) = pivot_and_sibling();
    let peers = [
        SimPeer::new(1, Arc::clone(&pivot_db), Behaviour::Honest, ACCOUNTS),
        SimPeer::new(2, Arc::clone(&sibling_db), Behaviour::Honest, ACCOUNTS),
    ];
    let config = SyncConfig {
        pivot: Some(chain_head(&pivot)),
        chunk_target_bytes: 16 * 1024,
        ..Default::default()
    };
    let client = Arc::new(LeafDb::in_memory());
    let out = Syncer::new(Arc::clone(&client), config, dyn_peers(&peers)).run().await.unwrap();
    assert_synced(&out, &client, &pivot_db, pivot.state_root);
    assert!(out.banned.is_empty(), "a sibling-block server was banned");
    assert!(peers[1].penalties.lock().unwrap().iter().all(|p| *p != PenaltyClass::Fatal));
    assert!(out.stats.chunks_healed > 0, "the sibling's chunks differed and were healed");
}

/// A server on a sibling block at the pivot's height that reorgs onto the pivot's chain while
/// its answers wait to be judged (it announces the pivot's block once its first answer is
/// out): its pieces were read on the sibling. Judged by its head at judging time alone, they
/// claimed the pivot's own head as junk, and three banned it.
#[tokio::test(start_paused = true)]
async fn a_sibling_server_reorging_onto_the_pivot_while_its_answers_wait_is_not_banned() {
    let (pivot, pivot_db, sibling_db) = pivot_and_sibling();

    /// Serves the sibling until its first answer is out, then the pivot's chain (announcing
    /// it); the answers asked before the move are judged after it.
    struct Reorging {
        sibling: Arc<SimPeer>,
        onto: Arc<SimPeer>,
        moved: Arc<std::sync::atomic::AtomicBool>,
    }
    impl SyncPeer for Reorging {
        fn id(&self) -> PeerId {
            self.sibling.id()
        }
        fn head(&self) -> ChainHead {
            let moved = self.moved.load(std::sync::atomic::Ordering::SeqCst);
            if moved { self.onto.head() } else { self.sibling.head() }
        }
        fn account_estimate(&self) -> u64 {
            self.sibling.account_estimate()
        }
        fn request(&self, request: LeafRequest) -> PeerFuture {
            if self.moved.load(std::sync::atomic::Ordering::SeqCst) {
                return self.onto.request(request);
            }
            let (answer, moved) = (self.sibling.request(request), Arc::clone(&self.moved));
            Box::pin(async move {
                let answer = answer.await;
                moved.store(true, std::sync::atomic::Ordering::SeqCst);
                answer
            })
        }
        fn penalise(&self, class: PenaltyClass) {
            self.sibling.penalise(class)
        }
    }
    let honest = SimPeer::new(1, Arc::clone(&pivot_db), Behaviour::Honest, ACCOUNTS);
    let inner = SimPeer::new(2, Arc::clone(&sibling_db), Behaviour::Honest, ACCOUNTS);
    let onto = SimPeer::new(3, Arc::clone(&pivot_db), Behaviour::Honest, ACCOUNTS);
    let reorging =
        Arc::new(Reorging { sibling: Arc::clone(&inner), onto, moved: Default::default() });
    let peers: Vec<Arc<dyn SyncPeer>> = vec![honest, reorging];
    let config = SyncConfig {
        pivot: Some(chain_head(&pivot)),
        chunk_target_bytes: 16 * 1024,
        ..Default::default()
    };
    let client = Arc::new(LeafDb::in_memory());
    let out = Syncer::new(Arc::clone(&client), config, peers).run().await.unwrap();
    assert_synced(&out, &client, &pivot_db, pivot.state_root);
    assert!(out.banned.is_empty(), "the server that left its sibling block was banned");
    assert!(inner.penalties.lock().unwrap().iter().all(|p| *p != PenaltyClass::Fatal));
    assert!(out.stats.chunks_healed > 0, "its sibling chunks differed and were healed");
}
