//! Servers at different heads around the pivot (up to 8 blocks behind or ahead, each block a
//! random diff of balances, nonces, storage, deletions and new contracts): the client still
//! reaches exactly the pivot's state, healing what the stale chunks got wrong.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{
    Behaviour, SimPeer, assert_synced,
    chain::{ACCOUNTS, at, chain},
    chain_head, dyn_peers,
};
use leafsync_leafdb::LeafDb;
use leafsync_sync::{SyncConfig, Syncer};

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
