//! What many peers can make a sync hold: the requests in flight across all peers ask for at
//! most `MAX_IN_FLIGHT_BYTES` together, however many peers there are.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{Behaviour, Hook, Hooked, SimPeer, assert_same_state, source};
use leafsync_leafdb::LeafDb;
use leafsync_sync::{
    PeerFuture, SyncConfig, SyncPeer, Syncer,
    config::{CHUNK_MAX_BYTES, MAX_IN_FLIGHT_BYTES},
};

/// Counts the requests in flight across every peer it wraps, and the most at once.
#[derive(Clone, Default)]
struct Counted {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Hook for Counted {
    fn around(&self, request: PeerFuture) -> PeerFuture {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        let now = Arc::clone(&self.now);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let answer = request.await;
            now.fetch_sub(1, Ordering::SeqCst);
            answer
        })
    }
}

#[tokio::test(start_paused = true)]
async fn requests_in_flight_across_all_peers_stay_within_the_byte_budget() {
    let src = source(2000, 11);
    let counted = Counted::default();
    let peers: Vec<Arc<dyn SyncPeer>> = (1..=200u8)
        .map(|n| {
            let inner = SimPeer::new(n, Arc::clone(&src), Behaviour::Honest, 2000);
            Arc::new(Hooked { inner, hook: counted.clone() }) as Arc<dyn SyncPeer>
        })
        .collect();
    let client = Arc::new(LeafDb::in_memory());
    // One unit a request, as before batching: many small requests fill the byte budget.
    let config =
        SyncConfig { chunk_target_bytes: 16 * 1024, chunk_batch_bytes: 0, ..Default::default() };
    let out = Syncer::new(Arc::clone(&client), config, peers).run().await.unwrap();
    let root = src.account_root().unwrap();
    assert_same_state(&client, &src, root);
    let bound = (MAX_IN_FLIGHT_BYTES / CHUNK_MAX_BYTES) as usize;
    let most = counted.most.load(Ordering::SeqCst);
    assert!(most <= bound, "{most} requests in flight, more than the budget's {bound}");
    assert!(most > bound / 2, "the test never came near the budget ({most}): {:?}", out.stats);
}
