//! End to end against a real execution client (anvil, pinned in tests/anvil): the leafdb,
//! initialised from `anvil_dumpState`, follows ≥ 50 blocks of transfers, deployments and storage
//! writes over WebSocket with its root equal to anvil's `stateRoot` after every block, and an
//! `anvil_reorg` is detected, logged and followed through. Fails, naming the install command, when anvil is not installed.

#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

mod common;

use std::sync::Arc;

use alloy_primitives::keccak256;
use common::*;
use leafsync_ingest::{ElHeaders, Follower, FollowerConfig, HeaderOrigin, HeaderQuery};
use leafsync_leafdb::LeafDb;
use serde_json::{Value, json};

/// Workload blocks before the reorg.
const BLOCKS: u64 = 55;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_anvil_block_by_block_with_matching_roots() {
    init_logs();
    let AnvilGenesis { turn: _turn, anvil, mut rpc, dir: _dir, genesis_file: genesis } =
        anvil_genesis().await;

    let db = Arc::new(LeafDb::in_memory());
    let mut config = FollowerConfig::new(anvil.ws());
    config.genesis = Some(genesis);
    config.poll_interval = POLL;
    let follower = Follower::new(Arc::clone(&db), config).unwrap();
    let stats = follower.stats();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(follower.run(stopped));

    let mut workload = Workload::new(&mut rpc).await;
    for _ in 0..BLOCKS {
        let n = workload.mine_block(&mut rpc).await;
        wait_for_head(&stats, n).await;
        let block = rpc.block(n).await.unwrap();
        let head = db.head().unwrap().unwrap();
        assert_eq!((head.number, head.hash), (n, block.hash));
        assert_eq!(db.account_root().unwrap(), block.state_root, "root after block {n}");
    }
    assert!(workload.contracts.len() >= 10, "deployments happened");
    assert_eq!(stats.blocks_applied(), BLOCKS, "each block applied exactly once");

    // An empty block, replaced by anvil_reorg with another empty block (same state, new hash).
    let _: Value = rpc.call("evm_mine", json!([])).await.unwrap();
    let n = rpc.block_number().await.unwrap();
    wait_for_head(&stats, n).await;
    let old = rpc.block(n).await.unwrap();
    let _: Value = rpc.call("anvil_reorg", json!([1, []])).await.unwrap();
    let new = rpc.block(n).await.unwrap();
    assert_ne!(old.hash, new.hash, "anvil_reorg replaced the block");
    // Following continues on the new chain.
    for _ in 0..3 {
        let n = workload.mine_block(&mut rpc).await;
        wait_for_head(&stats, n).await;
        let block = rpc.block(n).await.unwrap();
        assert_eq!(db.head().unwrap().unwrap().hash, block.hash);
        assert_eq!(db.account_root().unwrap(), block.state_root, "root after block {n}");
    }
    assert_eq!(stats.reorgs(), 1, "the reorg was detected once");
    assert_eq!(stats.mismatching_blocks(), 0);
    assert_eq!(db.root_mismatches().unwrap(), 0);
    assert_eq!(stats.blocks_behind(), 0);
    stop.send_replace(true);
    tokio::time::timeout(FOLLOW_TIMEOUT, task).await.unwrap().unwrap().unwrap();
}

/// anvil's headers (Cancun: every fork field up to `parentBeaconBlockRoot`) re-encode to their
/// hashes, so a leafsync beside anvil answers eth/69 header queries; anvil's `eth_config` has a
/// zero fork hash (not computed), read as none, so the fork id falls back to the chain preset.
#[tokio::test]
async fn anvil_headers_are_served_and_its_fork_id_falls_back() {
    init_logs();
    let (_turn, anvil) = anvil_turn().await;
    let mut rpc = anvil.rpc();
    mine_blocks(&mut rpc, 3).await;
    let headers = ElHeaders::new(&anvil.http()).unwrap();
    let query = HeaderQuery { origin: HeaderOrigin::Number(3), amount: 4, skip: 0, reverse: true };
    let answer = headers.headers(query).await;
    assert_eq!(answer.len(), 4, "blocks 3, 2, 1 and genesis");
    for (rlp, n) in answer.iter().zip([3, 2, 1, 0]) {
        assert_eq!(keccak256(rlp), rpc.block(n).await.unwrap().hash, "header {n}");
    }
    assert_eq!(rpc.fork_id().await.unwrap(), None, "anvil's zero fork hash is no fork id");
}
