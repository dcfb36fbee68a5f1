//! kill -9 over snap/1: a child process syncing into a RocksDB leafdb from simulated snap/1
//! servers is killed (SIGKILL) at random moments, five times; every reopen finds a consistent
//! progress record, and the last restart finishes with exactly the source's state, downloading
//! less than a full sync.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{
    kill::{ACCOUNTS, SEED, child_sync, full_sync_bytes, kill_and_resume, link},
    snap::{SimSnap, SnapBehaviour, probed_snap_peers},
    source,
};
use leafsync_leafdb::test_utils::ChildTest;

const CHILD_ENV: &str = "LEAFSYNC_SNAP_KILL_TEST_DIR";
const KILLS: usize = 5;

/// The child: syncs from two snap/1 servers behind slow links.
#[tokio::test]
#[ignore = "run by killed_snap_syncs_resume_to_the_exact_state as a child process"]
async fn snap_kill_child_syncer() {
    if !ChildTest::is_child() {
        return; // run by its parent test only
    }
    let src = source(ACCOUNTS, SEED);
    let servers: Vec<Arc<SimSnap>> = (1..=2u8)
        .map(|i| SimSnap::with(i, Arc::clone(&src), SnapBehaviour::Honest, Some(link()), None))
        .collect();
    child_sync(CHILD_ENV, probed_snap_peers(&servers).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_snap_syncs_resume_to_the_exact_state() {
    let src = source(ACCOUNTS, SEED);
    let honest = [SimSnap::new(1, Arc::clone(&src), SnapBehaviour::Honest)];
    let full_bytes = full_sync_bytes(probed_snap_peers(&honest).await).await;
    kill_and_resume("snap_kill_child_syncer", CHILD_ENV, KILLS, &src, full_bytes);
}
