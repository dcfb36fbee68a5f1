//! kill -9: a child process syncing into a RocksDB leafdb is killed (SIGKILL) at random moments,
//! ten times; every reopen finds a consistent progress record, and the last restart finishes
//! with exactly the source's state, downloading less than a full sync.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    Behaviour, SimPeer, dyn_peers,
    kill::{ACCOUNTS, child_sync, kill_and_resume, linked_peers},
};

const KILLS: usize = 10;

/// The child: syncs from two leaf/1 peers behind slow links.
#[tokio::test]
#[ignore = "run by killed_syncs_resume_to_the_exact_state as a child process"]
async fn kill_child_syncer() {
    child_sync(async |src| linked_peers(&src)).await;
}

/// The parent: kills the child [`KILLS`] times; a sync from one honest peer is the full sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_syncs_resume_to_the_exact_state() {
    kill_and_resume("kill_child_syncer", KILLS, async |src| {
        dyn_peers(&[SimPeer::new(1, src, Behaviour::Honest, ACCOUNTS)])
    })
    .await;
}
