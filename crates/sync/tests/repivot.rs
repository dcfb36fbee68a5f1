//! A pivot move in the middle of a sync: the servers' heads jump past the re-pivot distance;
//! the syncer moves to the new head, keeps the chunks it imported (unchanged ones are found
//! complete, changed ones healed) and ends with exactly the new pivot's state.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use common::{
    Behaviour, Hook, Hooked, SimPeer, assert_synced,
    chain::{ACCOUNTS, at, chain},
    dyn_peers,
};
use leafsync_leafdb::{BlockDiff, BlockHeader, LeafDb};
use leafsync_sync::{SyncConfig, SyncPeer, Syncer};

/// The servers start here; it becomes the first pivot.
const START: u64 = 2;
/// The servers jump here after [`JUMP_AFTER`] requests.
const JUMP_TO: u64 = 14;
const JUMP_AFTER: u64 = 100;
/// Re-pivot distance of the test (the default is 64; the chain is short).
const DISTANCE: u64 = 8;

/// Applies the chain's next blocks to a server's leafdb once the servers together have answered
/// [`JUMP_AFTER`] requests.
struct Jump {
    counter: Arc<AtomicU64>,
    blocks: Mutex<Vec<(BlockHeader, BlockDiff)>>,
}

impl Hook for Jump {
    fn before(&self, inner: &SimPeer) {
        if self.counter.fetch_add(1, Ordering::Relaxed) >= JUMP_AFTER {
            for (header, diff) in self.blocks.lock().unwrap().drain(..) {
                assert!(inner.db.apply_block(&header, &diff).unwrap().root_matches);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_pivot_moves_mid_sync_and_chunk_work_is_kept() {
    let chain = chain(JUMP_TO);
    let counter = Arc::new(AtomicU64::new(0));
    let servers: Vec<Arc<dyn SyncPeer>> = (0..3u8)
        .map(|i| {
            let inner = SimPeer::new(i + 1, at(&chain, START), Behaviour::Honest, ACCOUNTS);
            let hook = Jump {
                counter: Arc::clone(&counter),
                blocks: Mutex::new(chain[START as usize..JUMP_TO as usize].to_vec()),
            };
            Arc::new(Hooked { inner, hook }) as Arc<dyn SyncPeer>
        })
        .collect();
    let client = Arc::new(LeafDb::in_memory());
    let config = SyncConfig {
        chunk_target_bytes: 16 * 1024,
        // One unit a request, as before batching: the pivot moves between many requests.
        chunk_batch_bytes: 0,
        repivot_distance: DISTANCE,
        ..Default::default()
    };
    let out = Syncer::new(Arc::clone(&client), config, servers).run().await.unwrap();
    let target = chain[JUMP_TO as usize - 1].0;
    assert_eq!(out.stats.repivots, 1);
    assert_eq!(out.pivot.number, JUMP_TO);
    assert_synced(&out, &client, &at(&chain, JUMP_TO), target.state_root);
    assert_eq!(client.head().unwrap().unwrap().number, JUMP_TO);
    assert!(out.stats.chunks_resumed > 0, "unchanged chunks were kept: {:?}", out.stats);
    // A fresh sync at the new pivot for comparison.
    let fresh = Syncer::new(
        Arc::new(LeafDb::in_memory()),
        SyncConfig { chunk_target_bytes: 16 * 1024, ..Default::default() },
        dyn_peers(&[SimPeer::new(9, at(&chain, JUMP_TO), Behaviour::Honest, ACCOUNTS)]),
    )
    .run()
    .await
    .unwrap();
    println!(
        "repivot {START}->{JUMP_TO}: bytes_down={} (fresh sync {}), chunks_resumed={} healed_chunks={} healed_nodes={}",
        out.stats.bytes_down,
        fresh.stats.bytes_down,
        out.stats.chunks_resumed,
        out.stats.chunks_healed,
        out.stats.healed_nodes
    );
    // The work before the move is not thrown away: far less than a fresh sync plus what was
    // downloaded before the move.
    assert!(out.stats.bytes_down < fresh.stats.bytes_down * 3 / 2);
}
