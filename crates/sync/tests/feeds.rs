//! What a daemon feeds a running sync: peers that join mid-way (`with_new_peers`), a trusted
//! pivot from the execution client that is ahead of the servers and then moves
//! (`with_pivot_feed`), and the published counters (`with_progress`).
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{
    Behaviour, SimPeer, assert_same_state, assert_synced,
    chain::{ACCOUNTS, at, chain},
    chain_head, delayed, dyn_peers, source,
};
use leafsync_leafdb::{
    BlockDiff, BlockHeader, LeafDb, LeafDbConfig, MemStore,
    kv::{KvRead, Table},
    test_utils::{HookAt, HookStore},
};
use leafsync_p2p::leaf::ChainHead;
use leafsync_sync::{
    Phase, SyncConfig, SyncError, SyncMode, SyncPeer, SyncStats, Syncer, config::MAX_CATCH_UPS,
};
use tokio::sync::{mpsc, watch};

const CHUNK_BYTES: u64 = 16 * 1024;

type Db = Arc<LeafDb<MemStore>>;

fn slow(inner: Arc<SimPeer>) -> Arc<dyn SyncPeer> {
    delayed(inner, Duration::from_millis(20))
}

/// One unit a request, as before batching: peers join, leave and the pivot moves between many
/// requests.
fn config() -> SyncConfig {
    SyncConfig { chunk_target_bytes: CHUNK_BYTES, chunk_batch_bytes: 0, ..Default::default() }
}

/// The only peer disconnects after a few answers; a second one joins a second later and the
/// sync finishes from it. Without the channel the same sync fails for lack of peers.
#[tokio::test(start_paused = true)]
async fn a_peer_joining_mid_sync_takes_over() {
    let src = source(3000, 5);
    let root = src.account_root().unwrap();
    let fresh = || SimPeer::new(1, Arc::clone(&src), Behaviour::Limited(12), 3000);

    let alone = Syncer::new(Arc::new(LeafDb::in_memory()), config(), dyn_peers(&[fresh()]));
    assert!(matches!(alone.run().await, Err(SyncError::NoPeers)), "one limited peer cannot finish");

    let late = SimPeer::new(2, Arc::clone(&src), Behaviour::Honest, 3000);
    let (tx, rx) = mpsc::channel(1);
    let (progress_tx, progress) = watch::channel(SyncStats::default());
    let joiner = Arc::clone(&late) as Arc<dyn SyncPeer>;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(joiner).await.unwrap();
        // The sender stays open until the sync ends, as a daemon's peer watcher does.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let first = fresh();
    let client = Arc::new(LeafDb::in_memory());
    let out = Syncer::new(Arc::clone(&client), config(), dyn_peers(&[Arc::clone(&first)]))
        .with_new_peers(rx)
        .with_progress(progress_tx)
        .run()
        .await
        .unwrap();
    assert_synced(&out, &client, &src, root);
    assert_eq!(out.dropped, vec![first.id], "the first peer left");
    assert!(out.banned.is_empty());
    let by_late = late.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert!(by_late > 0, "the peer that joined got work");
    // The published counters end with the outcome's.
    let last = progress.borrow().clone();
    assert_eq!(last.phase, Phase::Done);
    assert_eq!(last.chunks_done, out.stats.chunks_done);
    assert_eq!(last.bytes_down, out.stats.bytes_down);
    assert_eq!(last.pivot, out.pivot);
    println!("joined peer answered {by_late} of {} requests", out.stats.requests);
}

/// A peer joining mid-sync is asked a probe of the pivot's root before anything else (its
/// round trip is measured on a small answer): one that answers nodes hashing to something else
/// is banned on that first answer, before it gets any chunk, and the sync finishes from the
/// next peer that joins. Without the probe it would take chunks (it serves them honestly) and
/// never be asked a node.
#[tokio::test(start_paused = true)]
async fn a_joining_peer_is_probed_first_and_a_wrong_probe_answer_bans_it() {
    let src = source(3000, 5);
    let root = src.account_root().unwrap();
    let first = SimPeer::new(1, Arc::clone(&src), Behaviour::Limited(12), 3000);
    let wrong = SimPeer::new(2, Arc::clone(&src), Behaviour::WrongNodes, 3000);
    let honest = SimPeer::new(3, Arc::clone(&src), Behaviour::Honest, 3000);
    let (tx, rx) = mpsc::channel(2);
    let joiners = [Arc::clone(&wrong), Arc::clone(&honest)];
    tokio::spawn(async move {
        for peer in joiners {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tx.send(peer as Arc<dyn SyncPeer>).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let client = Arc::new(LeafDb::in_memory());
    let out = Syncer::new(Arc::clone(&client), config(), dyn_peers(&[first]))
        .with_new_peers(rx)
        .run()
        .await
        .unwrap();
    assert_synced(&out, &client, &src, root);
    assert_eq!(out.banned, vec![wrong.id], "the wrong-node peer is banned");
    assert_eq!(wrong.requests.load(Ordering::Relaxed), 1, "asked the probe only");
    assert!(honest.penalties.lock().unwrap().is_empty());
}

/// The execution client's head (the trusted pivot) is two blocks ahead of every server: chunks
/// are fetched (stale, healed later) while no server can serve the pivot's nodes; nobody is
/// dropped for that, and once the servers import the blocks the sync ends at the trusted pivot.
#[tokio::test(start_paused = true)]
async fn a_trusted_pivot_ahead_of_the_servers_waits_for_them() {
    let blocks = chain(6);
    let dbs: Vec<Db> = (0..3).map(|_| at(&blocks, 4)).collect();
    let peers: Vec<Arc<dyn SyncPeer>> = dbs
        .iter()
        .enumerate()
        .map(|(i, db)| slow(SimPeer::new(i as u8 + 1, Arc::clone(db), Behaviour::Honest, ACCOUNTS)))
        .collect();
    let pivot = chain_head(&blocks[5].0);
    let (_feed_tx, feed) = watch::channel(pivot);
    let servers = dbs.clone();
    let later = blocks[4..6].to_vec();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        for db in &servers {
            for (header, diff) in &later {
                assert!(db.apply_block(header, diff).unwrap().root_matches);
            }
        }
    });
    let client = Arc::new(LeafDb::in_memory());
    let started = tokio::time::Instant::now();
    let out = Syncer::new(Arc::clone(&client), config(), peers)
        .with_pivot_feed(feed)
        .run()
        .await
        .unwrap();
    assert_eq!(out.pivot, pivot);
    assert_synced(&out, &client, &at(&blocks, 6), pivot.state_root);
    assert!(out.dropped.is_empty() && out.banned.is_empty(), "{out:?}");
    // The skeleton comes from the pivot's nodes, so nothing but waiting happens before then.
    assert!(started.elapsed() >= Duration::from_secs(5), "it waited for the servers");
}

/// Three slow servers of `blocks` at block `start`: their leafdbs (to apply later blocks to)
/// and the peers.
fn servers_at(
    blocks: &[(BlockHeader, BlockDiff)],
    start: u64,
) -> (Vec<Db>, Vec<Arc<dyn SyncPeer>>) {
    let dbs: Vec<Db> = (0..3).map(|_| at(blocks, start)).collect();
    let peers = dbs
        .iter()
        .enumerate()
        .map(|(i, db)| slow(SimPeer::new(i as u8 + 1, Arc::clone(db), Behaviour::Honest, ACCOUNTS)))
        .collect();
    (dbs, peers)
}

/// The trusted head moves while the servers follow it block by block: the sync re-pivots to the
/// feed once it is `repivot_distance` past the pivot (the peers' own heads do not decide it) and
/// ends at exactly the feed's head.
#[tokio::test(start_paused = true)]
async fn the_trusted_feed_moves_the_pivot() {
    const START: u64 = 2;
    const END: u64 = 10;
    let blocks = chain(END);
    let (dbs, peers) = servers_at(&blocks, START);
    let (feed_tx, feed) = watch::channel(chain_head(&blocks[START as usize - 1].0));
    let servers = dbs.clone();
    let later = blocks[START as usize..].to_vec();
    tokio::spawn(async move {
        for (header, diff) in &later {
            tokio::time::sleep(Duration::from_millis(50)).await;
            for db in &servers {
                assert!(db.apply_block(header, diff).unwrap().root_matches);
            }
            feed_tx.send_replace(chain_head(header));
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let client = Arc::new(LeafDb::in_memory());
    let config = SyncConfig { repivot_distance: 4, ..config() };
    let out =
        Syncer::new(Arc::clone(&client), config, peers).with_pivot_feed(feed).run().await.unwrap();
    assert!(out.stats.repivots >= 1, "{:?}", out.stats);
    assert!(out.pivot.number >= START + 4, "moved to the feed's head: {:?}", out.pivot);
    let expected = blocks[out.pivot.number as usize - 1].0;
    assert_eq!(out.pivot, chain_head(&expected));
    assert_same_state(&client, &at(&blocks, out.pivot.number), expected.state_root);
    assert!(out.dropped.is_empty() && out.banned.is_empty(), "{out:?}");
}

/// The trusted head moves on while the final check scans the flat state (minutes on mainnet;
/// here the move is made at the scan's snapshot): the sync catches up to it instead of recording
/// a pivot the execution client may no longer keep the state of, and the catch-up's end does not
/// scan again. The first move, during the sync, makes the final check scan (a re-pivot).
#[tokio::test(start_paused = true)]
async fn a_head_that_moved_on_during_the_final_scan_is_caught_up() {
    caught_up_after_the_scan(SyncMode::Leaf).await;
}

/// As above in heal-only mode, whose final check always scans: the catch-up heals from the
/// root over the proved state, and does not scan again.
#[tokio::test(start_paused = true)]
async fn a_heal_only_sync_catches_up_after_its_scan() {
    caught_up_after_the_scan(SyncMode::HealOnly).await;
}

async fn caught_up_after_the_scan(mode: SyncMode) {
    const START: u64 = 2;
    const MID: u64 = 6;
    const END: u64 = 12;
    let blocks = chain(END);
    let (dbs, peers) = servers_at(&blocks, START);
    let (feed_tx, feed) = watch::channel(chain_head(&blocks[START as usize - 1].0));
    let feed_tx = Arc::new(feed_tx);
    let apply =
        |servers: Vec<Db>, from: u64, to: u64| advance(&blocks, servers, &feed_tx, from, to);
    let first_move = apply(dbs.clone(), START, MID);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        first_move();
    });
    let store = HookStore::new();
    let fired = Arc::new(AtomicBool::new(false));
    let (second_move, flag) = (apply(dbs.clone(), MID, END), Arc::clone(&fired));
    // The client's first snapshot is the final check's scan.
    store.set_hook(
        HookAt::Snapshot,
        Box::new(move || {
            second_move();
            flag.store(true, Ordering::Relaxed);
        }),
    );
    let client = Arc::new(LeafDb::with_store(store, LeafDbConfig::default()).unwrap());
    let config = SyncConfig { repivot_distance: 4, mode, ..config() };
    let out =
        Syncer::new(Arc::clone(&client), config, peers).with_pivot_feed(feed).run().await.unwrap();
    assert!(fired.load(Ordering::Relaxed), "the final check scanned: {:?}", out.stats);
    let expected = blocks[END as usize - 1].0;
    assert_eq!(out.pivot, chain_head(&expected), "caught up to the head: {:?}", out.stats);
    assert_eq!(out.stats.repivots, 2, "{:?}", out.stats);
    assert_same_state(&client, &at(&blocks, END), expected.state_root);
    // One scan, of the state at the first re-pivot's head.
    let mid = at(&blocks, MID);
    let leaves = [Table::Accounts, Table::Storage]
        .into_iter()
        .map(|t| mid.store().iter_from(t, &[]).count() as u64)
        .sum::<u64>();
    assert_eq!(out.stats.final_rehashed, leaves, "{:?}", out.stats);
    assert_eq!(out.stats.final_repairs, 0, "{:?}", out.stats);
}

/// Moves the chain on from block `from` to `to`: each block applied to every server, then
/// announced by the trusted feed.
fn advance(
    blocks: &[(BlockHeader, BlockDiff)],
    servers: Vec<Db>,
    feed: &Arc<watch::Sender<ChainHead>>,
    from: u64,
    to: u64,
) -> impl FnOnce() + Send + 'static {
    let later = blocks[from as usize..to as usize].to_vec();
    let feed = Arc::clone(feed);
    move || {
        for (header, diff) in &later {
            for db in &servers {
                assert!(db.apply_block(header, diff).unwrap().root_matches);
            }
            feed.send_replace(chain_head(header));
        }
    }
}

/// Runs `moves` one at each snapshot of `client`'s store (each a final check's scan), in order.
fn at_each_scan(client: Weak<LeafDb<HookStore>>, mut moves: Vec<Box<dyn FnOnce() + Send>>) {
    let Some(db) = client.upgrade() else { return };
    if moves.is_empty() {
        return;
    }
    let next = moves.remove(0);
    // The store runs a hook with its lock released: the hook may set the next one.
    db.store().set_hook(
        HookAt::Snapshot,
        Box::new(move || {
            next();
            at_each_scan(client, moves);
        }),
    );
}

/// With `full_final_check` a catch-up's end scans too; a head that moves on by the re-pivot
/// distance during every scan gets `MAX_CATCH_UPS` catch-ups, then the sync records its pivot
/// (with a warning) rather than chase the chain for ever.
#[tokio::test(start_paused = true)]
async fn catch_ups_are_bounded_when_every_scan_falls_behind() {
    const START: u64 = 2;
    const STEP: u64 = 4;
    let scans = u64::from(MAX_CATCH_UPS) + 2;
    let blocks = chain(START + STEP * scans);
    let (dbs, peers) = servers_at(&blocks, START);
    let (feed_tx, feed) = watch::channel(chain_head(&blocks[START as usize - 1].0));
    let feed_tx = Arc::new(feed_tx);
    let moves: Vec<Box<dyn FnOnce() + Send>> = (0..scans)
        .map(|k| {
            let (from, to) = (START + STEP * k, START + STEP * (k + 1));
            Box::new(advance(&blocks, dbs.clone(), &feed_tx, from, to)) as Box<dyn FnOnce() + Send>
        })
        .collect();
    let client = Arc::new(LeafDb::with_store(HookStore::new(), LeafDbConfig::default()).unwrap());
    at_each_scan(Arc::downgrade(&client), moves);
    let config = SyncConfig { repivot_distance: STEP, full_final_check: true, ..config() };
    let out =
        Syncer::new(Arc::clone(&client), config, peers).with_pivot_feed(feed).run().await.unwrap();
    let last = START + STEP * u64::from(MAX_CATCH_UPS);
    let expected = blocks[last as usize - 1].0;
    assert_eq!(out.pivot, chain_head(&expected), "{:?}", out.stats);
    assert_eq!(out.stats.repivots, u64::from(MAX_CATCH_UPS), "{:?}", out.stats);
    assert_same_state(&client, &at(&blocks, last), expected.state_root);
}
