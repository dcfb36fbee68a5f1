//! Restarts: a sync stopped mid-way (its only peer gone; each stop is like a kill between two
//! atomic writes) persists its progress; a new syncer on
//! the same leafdb resumes from the record and the tables, finishes with the exact state and
//! downloads less than a full sync.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Behaviour, SimPeer, assert_synced, dyn_peers, source};
use leafsync_leafdb::{LeafDb, MemStore};
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
