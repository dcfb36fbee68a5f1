//! kill -9: a child process syncing into a RocksDB leafdb is killed (SIGKILL) at random moments,
//! ten times; every reopen finds a consistent progress record, and the last restart finishes
//! with exactly the source's state, downloading less than a full sync.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{
    Behaviour, SimPeer, dyn_peers,
    kill::{ACCOUNTS, SEED, child_sync, full_sync_bytes, kill_and_resume, link},
    paced, source,
};
use leafsync_leafdb::test_utils::ChildTest;
use leafsync_sync::SyncPeer;

const CHILD_ENV: &str = "LEAFSYNC_SYNC_KILL_TEST_DIR";
const KILLS: usize = 10;

/// The child: syncs from two leaf/1 peers behind slow links.
#[tokio::test]
#[ignore = "run by killed_syncs_resume_to_the_exact_state as a child process"]
async fn kill_child_syncer() {
    if !ChildTest::is_child() {
        return; // run by its parent test only
    }
    let src = source(ACCOUNTS, SEED);
    let peers: Vec<Arc<dyn SyncPeer>> = (1..=2u8)
        .map(|i| paced(SimPeer::new(i, Arc::clone(&src), Behaviour::Honest, ACCOUNTS), link()))
        .collect();
    child_sync(CHILD_ENV, peers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_syncs_resume_to_the_exact_state() {
    let src = source(ACCOUNTS, SEED);
    let honest = [SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, ACCOUNTS)];
    let full_bytes = full_sync_bytes(dyn_peers(&honest)).await;
    kill_and_resume("kill_child_syncer", CHILD_ENV, KILLS, &src, full_bytes);
}
