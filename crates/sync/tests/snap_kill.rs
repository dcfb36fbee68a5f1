//! kill -9 over snap/1: a child process syncing into a RocksDB leafdb from simulated snap/1
//! servers is killed (SIGKILL) at random moments, five times; every reopen finds a consistent
//! progress record, and the last restart finishes with exactly the source's state, downloading
//! less than a full sync.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{
    kill::{child_sync, kill_and_resume, link},
    snap::{SimSnap, SnapBehaviour, probed_snap_peers},
};

const KILLS: usize = 5;

/// The child: syncs from two snap/1 servers behind slow links.
#[tokio::test]
#[ignore = "run by killed_snap_syncs_resume_to_the_exact_state as a child process"]
async fn snap_kill_child_syncer() {
    child_sync(async |src| {
        let servers: Vec<Arc<SimSnap>> = (1..=2u8)
            .map(|i| SimSnap::with(i, Arc::clone(&src), SnapBehaviour::Honest, Some(link()), None))
            .collect();
        probed_snap_peers(&servers).await
    })
    .await;
}

/// The parent: kills the child [`KILLS`] times; a sync from one honest server is the full sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_snap_syncs_resume_to_the_exact_state() {
    kill_and_resume("snap_kill_child_syncer", KILLS, async |src| {
        probed_snap_peers(&[SimSnap::new(1, src, SnapBehaviour::Honest)]).await
    })
    .await;
}
