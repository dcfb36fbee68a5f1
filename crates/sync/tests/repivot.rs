//! A pivot move in the middle of a sync: the servers' heads jump past the re-pivot distance;
//! the syncer moves to the new head, keeps the chunks it imported (unchanged ones are found
//! complete, changed ones healed) and ends with exactly the new pivot's state.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use common::{
    Behaviour, Hook, Hooked, SimPeer, assert_synced,
    chain::{ACCOUNTS, at, chain},
    dyn_peers,
};
use leafsync_leafdb::{BlockDiff, BlockHeader, LeafDb, SyncMark};
use leafsync_p2p::{
    PeerId, PenaltyClass,
    leaf::{ChainHead, LeafRequest},
};
use leafsync_serve::ServeConfig;
use leafsync_sync::{
    PeerFuture, SyncConfig, SyncError, SyncOutcome, SyncPeer, SyncProgress, Syncer,
    config::SyncMode,
};

/// The servers start here; it becomes the first pivot.
const START: u64 = 2;
/// The servers jump here (after [`JUMP_AFTER`] requests unless said).
const JUMP_TO: u64 = 14;
const JUMP_AFTER: u64 = 100;
/// Re-pivot distance of the test (the default is 64; the chain is short).
const DISTANCE: u64 = 8;

/// Applies the chain's next blocks to a server's leafdb once the servers together have answered
/// `jump_after` requests.
struct Jump {
    counter: Arc<AtomicU64>,
    jump_after: u64,
    blocks: Mutex<Vec<(BlockHeader, BlockDiff)>>,
}

impl Hook for Jump {
    fn before(&self, inner: &SimPeer) {
        if self.counter.fetch_add(1, Ordering::Relaxed) >= self.jump_after {
            for (header, diff) in self.blocks.lock().unwrap().drain(..) {
                assert!(inner.db.apply_block(&header, &diff).unwrap().root_matches);
            }
        }
    }
}

/// A server whose storage chunks take [`STORAGE_DELAY`] to come (in paused time): the sync's
/// large storages stay open long, so that a move of the pivot finds some open.
struct SlowStorage(Arc<dyn SyncPeer>);

/// How long [`SlowStorage`]'s storage chunks take.
const STORAGE_DELAY: Duration = Duration::from_secs(2);

impl SyncPeer for SlowStorage {
    fn id(&self) -> PeerId {
        self.0.id()
    }
    fn head(&self) -> ChainHead {
        self.0.head()
    }
    fn account_estimate(&self) -> u64 {
        self.0.account_estimate()
    }
    fn request(&self, req: LeafRequest) -> PeerFuture {
        let slow = matches!(req, LeafRequest::GetStorageChunk(_));
        let answer = self.0.request(req);
        Box::pin(async move {
            if slow {
                tokio::time::sleep(STORAGE_DELAY).await;
            }
            answer.await
        })
    }
    fn penalise(&self, class: PenaltyClass) {
        self.0.penalise(class)
    }
}

/// Three servers of `chain` that jump from [`START`] to [`JUMP_TO`] after `jump_after` requests
/// (their storage chunks slow if `slow_storage`), each behaving as `behaviour`.
fn jumping_servers(
    chain: &[(BlockHeader, BlockDiff)],
    jump_after: u64,
    slow_storage: bool,
    behaviour: Behaviour,
) -> Vec<Arc<dyn SyncPeer>> {
    let counter = Arc::new(AtomicU64::new(0));
    (0..3u8)
        .map(|i| {
            let inner = SimPeer::serving(
                i + 1,
                at(chain, START),
                behaviour,
                ACCOUNTS,
                serve_config(slow_storage),
            );
            let hook = Jump {
                counter: Arc::clone(&counter),
                jump_after,
                blocks: Mutex::new(chain[START as usize..JUMP_TO as usize].to_vec()),
            };
            let server = Arc::new(Hooked { inner, hook }) as Arc<dyn SyncPeer>;
            if slow_storage { Arc::new(SlowStorage(server)) } else { server }
        })
        .collect()
}

/// With slow storage, storages of more than a few dozen slots are large (fetched by storage
/// chunks, and open for long).
fn serve_config(slow_storage: bool) -> ServeConfig {
    let inline_storage_bytes = if slow_storage { 2048 } else { 64 * 1024 };
    ServeConfig { inline_storage_bytes, ..ServeConfig::default() }
}

fn config(mode: SyncMode) -> SyncConfig {
    SyncConfig {
        chunk_target_bytes: 16 * 1024,
        // One unit a request, as before batching: the pivot moves between many requests.
        chunk_batch_bytes: 0,
        repivot_distance: DISTANCE,
        mode,
        ..Default::default()
    }
}

/// A sync in `mode` from three servers that jump from [`START`] to [`JUMP_TO`] after
/// `jump_after` requests (their storage chunks slow if `slow_storage`); checks that it re-pivots
/// once and ends in the new pivot's exact state.
async fn sync_across_a_jump(jump_after: u64, slow_storage: bool, mode: SyncMode) -> SyncOutcome {
    let chain = chain(JUMP_TO);
    let servers = jumping_servers(&chain, jump_after, slow_storage, Behaviour::Honest);
    let client = Arc::new(LeafDb::in_memory());
    let out = Syncer::new(Arc::clone(&client), config(mode), servers).run().await.unwrap();
    let target = chain[JUMP_TO as usize - 1].0;
    assert_eq!(out.stats.repivots, 1, "jump after {jump_after}");
    assert_eq!(out.pivot.number, JUMP_TO);
    assert_synced(&out, &client, &at(&chain, JUMP_TO), target.state_root);
    assert_eq!(client.head().unwrap().unwrap().number, JUMP_TO);
    out
}

/// A re-pivot re-derives only what the old pivot's work cut short, not every chunk synced
/// before it (at mainnet size that takes longer than the blocks between two re-pivots): the
/// unchanged chunks are taken as they are, a changed one's heal re-derives the accounts it
/// wrote, and the storages the move left open are fetched again, so that the final check finds
/// nothing to repair. Over moves at several points of the sync (in the chunks, among the large
/// storages, near the end).
#[tokio::test(start_paused = true)]
async fn a_repivot_re_derives_only_what_it_cut_short() {
    for jump_after in [30, 70, 120, 170, 215, 225, 245] {
        let out = sync_across_a_jump(jump_after, true, SyncMode::Leaf).await;
        let s = &out.stats;
        println!(
            "jump after {jump_after}: resumed {} healed {} rederived {} accounts, requests {}",
            s.chunks_resumed, s.chunks_healed, s.rederived_accounts, s.requests
        );
        assert_eq!(s.final_repairs, 0, "jump after {jump_after}: {s:?}");
        // The accounts the blocks between the pivots changed, with their siblings in the
        // leaves' branches; before, every account of a resumed chunk (~the state's 2,000).
        assert!(s.rederived_accounts < ACCOUNTS / 4, "jump after {jump_after}: {s:?}");
    }
}

/// A heal-only sync's re-pivot cuts its heal from the root short: below it, subtries the heal
/// wrote have flat entries never re-derived, so the new pivot's heal re-derives everything it
/// finds unchanged there, not only where it writes (without that rule the final check found
/// items to repair: 1 after a move at the 10th request, 131 at the 30th).
#[tokio::test(start_paused = true)]
async fn a_heal_only_repivot_re_derives_below_the_heal_it_cut_short() {
    for jump_after in [10, 30, 50] {
        let out = sync_across_a_jump(jump_after, true, SyncMode::HealOnly).await;
        assert_eq!(out.stats.final_repairs, 0, "jump after {jump_after}: {:?}", out.stats);
    }
}

#[tokio::test(start_paused = true)]
async fn the_pivot_moves_mid_sync_and_chunk_work_is_kept() {
    let out = sync_across_a_jump(JUMP_AFTER, false, SyncMode::Leaf).await;
    let chain = chain(JUMP_TO);
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

/// A sync stopped after a re-pivot (its servers stop answering, as if it were killed) resumes
/// at the new pivot with what the re-pivot carried, read back from its marks (the storages it
/// left open, the heals it cut short): it ends exact, re-derives few accounts and repairs
/// nothing at the end.
#[tokio::test(start_paused = true)]
async fn a_sync_stopped_after_a_repivot_resumes_what_it_carried() {
    let chain = chain(JUMP_TO);
    let target = at(&chain, JUMP_TO);
    let mut open_storages = 0;
    for (jump_after, stop) in [(30, 40), (70, 50), (120, 70)] {
        let client = Arc::new(LeafDb::in_memory());
        let servers = jumping_servers(&chain, jump_after, true, Behaviour::Limited(stop));
        let err = Syncer::new(Arc::clone(&client), config(SyncMode::Leaf), servers)
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, SyncError::NoPeers), "{err}");
        let record = SyncProgress::decode(&client.sync_progress().unwrap().unwrap()).unwrap();
        assert_eq!(record.pivot.number, JUMP_TO, "jump after {jump_after}: re-pivoted first");
        let open = client.sync_marks(SyncMark::OpenStorage).unwrap().len();
        open_storages += open;
        let honest = SimPeer::serving(1, Arc::clone(&target), Behaviour::Honest, ACCOUNTS, {
            serve_config(true)
        });
        let out = Syncer::new(Arc::clone(&client), config(SyncMode::Leaf), dyn_peers(&[honest]))
            .run()
            .await
            .unwrap();
        let s = &out.stats;
        println!(
            "jump after {jump_after}, stop after {stop}: {open} storages open; resumed \
             {} chunks, rederived {} accounts, final repairs {}",
            s.chunks_resumed, s.rederived_accounts, s.final_repairs
        );
        assert_synced(&out, &client, &target, target.account_root().unwrap());
        assert_eq!(s.final_repairs, 0, "jump after {jump_after}: {s:?}");
        assert!(s.rederived_accounts < ACCOUNTS / 4, "jump after {jump_after}: {s:?}");
    }
    assert!(open_storages > 0, "some stop left storages open");
}
