//! Honest servers: the client rebuilds exactly the source's state (root, flat tables, tries,
//! code), with one server and with four, in leaf mode and heal-only mode.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Behaviour, SimPeer, assert_same_state, dyn_peers, raw_leaf_bytes, source};
use leafsync_leafdb::LeafDb;
use leafsync_sync::{SyncConfig, SyncMode, Syncer};

/// Accounts of the generated state: ~300 contracts, a few with storage too large to inline.
const ACCOUNTS: u64 = 3000;

/// Small chunks so that the state spreads over many chunks and all peers.
const TEST_CHUNK_BYTES: u64 = 16 * 1024;

async fn sync(servers: usize, mode: SyncMode) -> leafsync_sync::SyncOutcome {
    sync_with(
        servers,
        SyncConfig { chunk_target_bytes: TEST_CHUNK_BYTES, mode, ..Default::default() },
    )
    .await
}

async fn sync_with(servers: usize, config: SyncConfig) -> leafsync_sync::SyncOutcome {
    let mode = config.mode;
    let src = source(ACCOUNTS, 7);
    let peers: Vec<_> = (0..servers)
        .map(|i| SimPeer::new(i as u8 + 1, Arc::clone(&src), Behaviour::Honest, ACCOUNTS))
        .collect();
    let client = Arc::new(LeafDb::in_memory());
    let outcome = Syncer::new(Arc::clone(&client), config, dyn_peers(&peers)).run().await.unwrap();
    let root = src.account_root().unwrap();
    assert_eq!(outcome.root, root);
    assert_same_state(&client, &src, root);
    assert!(outcome.banned.is_empty() && outcome.dropped.is_empty());
    let raw = raw_leaf_bytes(&src);
    let s = &outcome.stats;
    println!(
        "servers={servers} mode={mode:?} raw_leaf_bytes={raw} bytes_down={} ratio={:.3} requests={} chunks={} split={} healed_nodes={} skeleton_nodes={} heal_fraction={:.3}",
        s.bytes_down,
        s.bytes_down as f64 / raw as f64,
        s.requests,
        s.chunks_done,
        s.chunks_split,
        s.healed_nodes,
        s.skeleton_nodes,
        s.heal_fraction()
    );
    outcome
}

#[tokio::test(start_paused = true)]
async fn one_honest_server_gives_the_exact_state() {
    let out = sync(1, SyncMode::Leaf).await;
    assert_eq!(out.stats.chunks_healed, 0, "honest chunks at the pivot all verify");
    assert_eq!(out.stats.healed_nodes, 0);
    assert!(out.stats.chunks_done > 16, "the state was spread over many chunks");
}

#[tokio::test(start_paused = true)]
async fn four_honest_servers_give_the_exact_state() {
    let out = sync(4, SyncMode::Leaf).await;
    assert_eq!(out.stats.chunks_healed, 0);
    // Every kind of a leaf sync's work was done, within the sync and before its finish.
    let p = &out.stats.phases;
    for span in [&p.skeleton, &p.chunks, &p.storage, &p.codes] {
        let (first, last) = (span.first.unwrap(), span.last.unwrap());
        assert!(first <= last && last <= p.finish.first.unwrap(), "{p:?}");
    }
    assert_eq!(p.heal, Default::default(), "nothing healed");
    assert_eq!(p.finish.last, Some(out.stats.elapsed));
}

#[tokio::test(start_paused = true)]
async fn heal_only_mode_gives_the_exact_state() {
    let leaf = sync(2, SyncMode::Leaf).await;
    let heal = sync(2, SyncMode::HealOnly).await;
    assert_eq!(heal.stats.chunks_done, 0, "heal-only fetches no chunks");
    assert!(heal.stats.healed_nodes > 0);
    let p = &heal.stats.phases;
    assert!(p.heal.last.is_some() && p.chunks.first.is_none() && p.skeleton.first.is_none());
    assert!(heal.stats.bytes_down > leaf.stats.bytes_down, "nodes cost more bytes than leaves");
}

#[tokio::test(start_paused = true)]
async fn too_large_chunks_and_storage_are_split_through_the_skeleton() {
    // One skeleton level only, and chunks capped at 20 KiB: most account chunks and the large
    // storages come back "too large" and are split via their trie nodes.
    let config = SyncConfig {
        chunk_target_bytes: 1 << 30,
        chunk_max_bytes: 20 * 1024,
        ..Default::default()
    };
    let out = sync_with(3, config).await;
    assert!(out.stats.chunks_split > 1, "{:?}", out.stats);
    assert_eq!(out.stats.chunks_healed, 0);
}
