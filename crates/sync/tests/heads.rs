//! Servers at different heads around the pivot (up to 8 blocks behind or ahead, each block a
//! random diff of balances, nonces, storage, deletions and new contracts): the client still
//! reaches exactly the pivot's state, healing what the stale chunks got wrong.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{
    Behaviour, Hook, Hooked, SimPeer, assert_synced,
    chain::{ACCOUNTS, at, chain},
    chain_head, dyn_peers,
};
use leafsync_leafdb::LeafDb;
use leafsync_sync::{PeerFuture, SyncConfig, SyncPeer, Syncer, config::MAX_STALE_HEALS};

const BLOCKS: u64 = 16;
const PIVOT: u64 = 8;

#[tokio::test(start_paused = true)]
async fn servers_around_the_pivot_give_the_pivot_state() {
    let chain = chain(BLOCKS);
    let pivot_db = at(&chain, PIVOT);
    let pivot = chain[PIVOT as usize - 1].0;
    // No server is at the pivot itself: two behind, three ahead (within the recent-node window).
    let heads = [2u64, 5, 10, 13, 16];
    let peers: Vec<_> = heads
        .iter()
        .enumerate()
        .map(|(i, h)| SimPeer::new(i as u8 + 1, at(&chain, *h), Behaviour::Honest, ACCOUNTS))
        .collect();
    let client = Arc::new(LeafDb::in_memory());
    let config = SyncConfig {
        pivot: Some(chain_head(&pivot)),
        chunk_target_bytes: 16 * 1024,
        ..Default::default()
    };
    let out = Syncer::new(Arc::clone(&client), config, dyn_peers(&peers)).run().await.unwrap();
    assert_synced(&out, &client, &pivot_db, pivot.state_root);
    assert_eq!(client.head().unwrap().unwrap().number, PIVOT);
    assert!(out.banned.is_empty(), "stale is not junk: {:?}", out.banned);
    assert!(out.stats.chunks_healed > 0, "stale chunks were healed");
    println!(
        "heads={heads:?} pivot={PIVOT} heal_fraction={:.3} chunks={} healed_chunks={} healed_nodes={} bytes_down={} requests={}",
        out.stats.heal_fraction(),
        out.stats.chunks_done,
        out.stats.chunks_healed,
        out.stats.healed_nodes,
        out.stats.bytes_down,
        out.stats.requests
    );
}

/// Answers every request a second late (virtual time).
struct Slow;

impl Hook for Slow {
    fn around(&self, request: PeerFuture) -> PeerFuture {
        Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            request.await
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_benched_stale_server_still_gives_the_pieces_that_verify() {
    // A server one block behind the pivot takes most of the chunk work in large batches (the
    // server at the pivot is slow). After MAX_STALE_HEALS of its pieces differ it is benched:
    // from then on its further pieces that equal their skeleton hash are still imported, and
    // only those its block changed are asked again elsewhere.
    let chain = chain(PIVOT);
    let pivot = chain[PIVOT as usize - 1].0;
    let stale = SimPeer::new(1, at(&chain, PIVOT - 1), Behaviour::Honest, ACCOUNTS);
    let fresh = SimPeer::new(2, at(&chain, PIVOT), Behaviour::Honest, ACCOUNTS);
    let peers: Vec<Arc<dyn SyncPeer>> =
        vec![stale.clone(), Arc::new(Hooked { inner: fresh, hook: Slow })];
    let client = Arc::new(LeafDb::in_memory());
    let config = SyncConfig {
        pivot: Some(chain_head(&pivot)),
        chunk_target_bytes: 16 * 1024,
        ..Default::default()
    };
    let out = Syncer::new(Arc::clone(&client), config, peers).run().await.unwrap();
    assert_synced(&out, &client, &at(&chain, PIVOT), pivot.state_root);
    assert!(out.banned.is_empty(), "stale is not junk: {:?}", out.banned);
    let s = &out.stats;
    assert!(s.chunks_healed >= u64::from(MAX_STALE_HEALS), "the stale server was benched: {s:?}");
    // One block changes about 40 accounts and a new contract's storage: only the units it
    // touched differ, so few pieces can be set aside, out of many more chunks.
    assert!(s.chunks_passed + s.chunks_healed <= 60, "good pieces were thrown away: {s:?}");
    assert!(s.chunks_done > 150, "{s:?}");
}
