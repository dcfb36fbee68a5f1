//! Restarts: a sync stopped mid-way (its only peer gone; each stop is like a kill between two
//! atomic writes) persists its progress; a new syncer on
//! the same leafdb resumes from the record and the tables, finishes with the exact state and
//! downloads less than a full sync.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{
    Behaviour, SimPeer, assert_synced,
    chain::{at, chain},
    db_head, dyn_peers, sim_serve_config, source,
};
use leafsync_leafdb::{LeafDb, MemStore, SyncMark};
use leafsync_serve::ServeConfig;
use leafsync_sync::{HealRoot, SyncConfig, SyncError, SyncMode, SyncProgress, Syncer};

const ACCOUNTS: u64 = 2000;

/// One unit a request, as before batching: the syncs stop between many requests.
fn config(mode: SyncMode) -> SyncConfig {
    SyncConfig { chunk_target_bytes: 16 * 1024, chunk_batch_bytes: 0, mode, ..Default::default() }
}

async fn resume_after(stops: &[u64], mode: SyncMode, junk: bool) {
    let src = source(ACCOUNTS, 21);
    let root = src.account_root().unwrap();
    let full_client = Arc::new(LeafDb::in_memory());
    let full = Syncer::new(
        full_client,
        config(mode),
        dyn_peers(&[SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, ACCOUNTS)]),
    )
    .run()
    .await
    .unwrap();
    let client = Arc::new(LeafDb::in_memory());
    let mut stopped_bytes = 0;
    for (i, stop) in stops.iter().enumerate() {
        let mut peers =
            vec![SimPeer::new(1, Arc::clone(&src), Behaviour::Limited(*stop), ACCOUNTS)];
        if junk && i == 0 {
            // Junk beside it in the first run, so that heal roots are in the record.
            peers.push(SimPeer::new(9, Arc::clone(&src), Behaviour::Junk, ACCOUNTS));
        }
        let err = Syncer::new(Arc::clone(&client), config(mode), dyn_peers(&peers))
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, SyncError::NoPeers), "run {i}: {err}");
        let record = SyncProgress::decode(&client.sync_progress().unwrap().unwrap()).unwrap();
        assert_eq!(record.pivot.state_root, root);
        stopped_bytes = record.bytes_down;
    }
    let peers = [SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, ACCOUNTS)];
    let resumed =
        Syncer::new(Arc::clone(&client), config(mode), dyn_peers(&peers)).run().await.unwrap();
    assert_synced(&resumed, &client, &src, root);
    assert_eq!(client.sync_progress().unwrap(), None, "record cleared when done");
    println!(
        "mode={mode:?} stops={stops:?} full_bytes={} bytes_before_stop={stopped_bytes} resumed_bytes={} resumed_chunks={}",
        full.stats.bytes_down, resumed.stats.bytes_down, resumed.stats.chunks_resumed
    );
    assert!(resumed.stats.bytes_down < full.stats.bytes_down, "resume started over");
    assert!(
        resumed.stats.bytes_down < full.stats.bytes_down - stopped_bytes / 2,
        "most of the work before the stop was kept"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stopped_leaf_sync_resumes_without_starting_over() {
    resume_after(&[120], SyncMode::Leaf, false).await;
}

#[tokio::test(start_paused = true)]
async fn repeated_stops_with_junk_and_heal_in_progress_resume() {
    resume_after(&[30, 30, 30, 30], SyncMode::Leaf, true).await;
}

#[tokio::test(start_paused = true)]
async fn a_stopped_heal_only_sync_resumes() {
    resume_after(&[8, 8], SyncMode::HealOnly, false).await;
}

/// A leafdb whose leaf sync stopped after `stop` answers of its honest peer, with a junk peer
/// beside it (so that heal roots are persisted).
async fn stopped_beside_junk(src: &Arc<LeafDb<MemStore>>, stop: u64) -> Arc<LeafDb<MemStore>> {
    let client = Arc::new(LeafDb::in_memory());
    let peers = [
        SimPeer::new(1, Arc::clone(src), Behaviour::Limited(stop), ACCOUNTS),
        SimPeer::new(9, Arc::clone(src), Behaviour::Junk, ACCOUNTS),
    ];
    let err = Syncer::new(Arc::clone(&client), config(SyncMode::Leaf), dyn_peers(&peers))
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::NoPeers), "{err}");
    client
}

/// A record written by version 1 (heal roots inside it) still resumes: a stopped sync's record
/// and heal-root entries are rewritten in the version-1 form, and the next run finishes.
#[tokio::test(start_paused = true)]
async fn a_version_1_record_with_heal_roots_resumes() {
    #[derive(alloy_rlp::RlpEncodable)]
    struct V1 {
        pivot: leafsync_p2p::leaf::ChainHead,
        depth: u64,
        heal_roots: Vec<HealRoot>,
        bytes_down: u64,
        requests: u64,
    }
    let src = source(ACCOUNTS, 22);
    let root = src.account_root().unwrap();
    let client = stopped_beside_junk(&src, 6).await;
    let record = SyncProgress::decode(&client.sync_progress().unwrap().unwrap()).unwrap();
    let heal_roots: Vec<HealRoot> = client
        .sync_heal_roots()
        .unwrap()
        .iter()
        .map(|(k, v)| HealRoot::from_entry(k, v).unwrap())
        .collect();
    assert!(!heal_roots.is_empty(), "junk chunks left heal roots");
    let mut v1 = vec![1u8];
    v1.extend(alloy_rlp::encode(V1 {
        pivot: record.pivot,
        depth: record.depth,
        heal_roots: heal_roots.clone(),
        bytes_down: record.bytes_down,
        requests: record.requests,
    }));
    client.put_sync_progress(&v1).unwrap();
    client.clear_sync_heal_roots().unwrap();
    assert_eq!(SyncProgress::decode(&v1).unwrap().heal_roots, heal_roots);

    let honest = [SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, ACCOUNTS)];
    let out = Syncer::new(Arc::clone(&client), config(SyncMode::Leaf), dyn_peers(&honest))
        .run()
        .await
        .unwrap();
    assert_synced(&out, &client, &src, root);
    assert!(
        client.sync_heal_roots().unwrap().is_empty() && client.sync_progress().unwrap().is_none()
    );
}

/// A progress record that does not decode (a damaged file, a record of a newer leafsync), or a
/// heal-root entry that does not, is dropped instead of failing every start: the sync starts
/// over on the tables a stopped sync left (what they hold that hashes right is kept), checks
/// them all, and ends exact.
#[tokio::test(start_paused = true)]
async fn a_record_or_heal_root_that_does_not_decode_starts_the_sync_over() {
    let src = source(ACCOUNTS, 23);
    let root = src.account_root().unwrap();
    type Damage = fn(&LeafDb<MemStore>);
    let damages: [(&str, Damage); 3] = [
        ("record", |db| db.put_sync_progress(&[2, 0xff, 0x01]).unwrap()),
        ("newer record", |db| db.put_sync_progress(&[9]).unwrap()),
        ("heal root", |db| db.put_sync_heal_root(&[0xc0, 0xff], &[1; 7]).unwrap()),
    ];
    for (what, damage) in damages {
        let client = stopped_beside_junk(&src, 40).await;
        damage(&client);
        let honest = [SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, ACCOUNTS)];
        let out = Syncer::new(Arc::clone(&client), config(SyncMode::Leaf), dyn_peers(&honest))
            .run()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_synced(&out, &client, &src, root);
        assert!(
            client.sync_heal_roots().unwrap().is_empty()
                && client.sync_progress().unwrap().is_none(),
            "{what}: progress cleared"
        );
    }
}

/// Serving as the marks tests want it: storages of more than a few dozen slots are fetched apart
/// (large), so that a stop finds some open.
fn small_inline() -> ServeConfig {
    ServeConfig { inline_storage_bytes: 2048, ..sim_serve_config() }
}

/// A sync from `src` stopped after `stop` answers of its honest peer (a junk peer beside it with
/// `junk`, so that heals are under way) into `client`, `config` as given.
async fn stop_after(
    client: &Arc<LeafDb<MemStore>>,
    src: &Arc<LeafDb<MemStore>>,
    stop: u64,
    junk: bool,
    config: SyncConfig,
) {
    let mut peers = vec![SimPeer::serving(
        1,
        Arc::clone(src),
        Behaviour::Limited(stop),
        ACCOUNTS,
        small_inline(),
    )];
    if junk {
        peers.push(SimPeer::serving(9, Arc::clone(src), Behaviour::Junk, ACCOUNTS, small_inline()));
    }
    let err = Syncer::new(Arc::clone(client), config, dyn_peers(&peers)).run().await.unwrap_err();
    assert!(matches!(err, SyncError::NoPeers), "stop after {stop}: {err}");
}

/// Finishes the sync in `client` from an honest server of `src`, `config` as given; checks that
/// it ends exact, its final check repairs nothing, and it re-derives few accounts (those the
/// stop left open: before the marks, every account of every chunk the stopped run imported).
async fn finish_from(
    client: &Arc<LeafDb<MemStore>>,
    src: &Arc<LeafDb<MemStore>>,
    config: SyncConfig,
    label: &str,
) {
    let honest =
        [SimPeer::serving(1, Arc::clone(src), Behaviour::Honest, ACCOUNTS, small_inline())];
    let out = Syncer::new(Arc::clone(client), config, dyn_peers(&honest)).run().await.unwrap();
    let s = &out.stats;
    println!(
        "{label}: resumed {} chunks, healed {}, rederived {} accounts, final repairs {}",
        s.chunks_resumed, s.chunks_healed, s.rederived_accounts, s.final_repairs
    );
    assert_synced(&out, client, src, src.account_root().unwrap());
    assert_eq!(s.final_repairs, 0, "{label}: {s:?}");
    assert!(s.rederived_accounts < ACCOUNTS / 4, "{label}: {s:?}");
    for kind in SyncMark::ALL {
        assert!(client.sync_marks(kind).unwrap().is_empty(), "{label}: {kind:?} marks cleared");
    }
}

/// A stopped sync marks what it leaves open (storage tries, codes, heals), so the run that
/// resumes it trusts the rest of its tables as they are: it re-derives only what was open, not
/// every chunk the stopped run imported (at mainnet size tens of minutes, at every re-pivot of
/// the resumed run too), and its final check finds nothing to repair. Stops at several points,
/// some with heals under way.
#[tokio::test(start_paused = true)]
async fn a_resumed_sync_re_derives_only_what_the_stop_left_open() {
    let src = source(ACCOUNTS, 24);
    let mut open_storages = 0;
    for (stop, junk) in [(20, false), (60, true), (120, false), (180, true)] {
        let client = Arc::new(LeafDb::in_memory());
        stop_after(&client, &src, stop, junk, config(SyncMode::Leaf)).await;
        open_storages += client.sync_marks(SyncMark::OpenStorage).unwrap().len();
        finish_from(&client, &src, config(SyncMode::Leaf), &format!("stop after {stop}")).await;
    }
    assert!(open_storages > 0, "some stop left storages open");
}

/// A sync restarted too far past its record's pivot to resume it (configured here; on a node,
/// the execution client's head moved on by more than the re-pivot distance while it was down)
/// starts at the new pivot over the stopped run's tables: the marks make that a re-pivot, which
/// re-derives only what was open and what changed, not a start over tables it must re-derive
/// whole.
#[tokio::test(start_paused = true)]
async fn a_sync_restarted_at_a_new_pivot_carries_what_the_stopped_run_left_open() {
    let chain = chain(14);
    let (old, new) = (at(&chain, 2), at(&chain, 14));
    for (stop, junk) in [(60, true), (150, false)] {
        let client = Arc::new(LeafDb::in_memory());
        let pinned = |db: &LeafDb<MemStore>| SyncConfig {
            pivot: Some(db_head(db)),
            ..config(SyncMode::Leaf)
        };
        stop_after(&client, &old, stop, junk, pinned(&old)).await;
        finish_from(&client, &new, pinned(&new), &format!("new pivot, stop after {stop}")).await;
    }
}
