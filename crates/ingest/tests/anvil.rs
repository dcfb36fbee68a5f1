//! End to end against a real execution client (anvil, pinned in tests/anvil): the leafdb,
//! initialised from `anvil_dumpState`, follows ≥ 50 blocks of transfers, deployments and storage
//! writes over WebSocket with its root equal to anvil's `stateRoot` after every block, and two
//! `anvil_reorg`s (of an empty block, and of two blocks of transfers and storage writes, across a
//! restart of the follower) are detected, rolled back and followed through. Fails, naming the install command, when anvil is not installed.

#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

use leafsync_ingest::test_utils as common;

use std::sync::Arc;

use alloy_primitives::{B256, U256, keccak256};
use common::*;
use leafsync_ingest::{
    ElHeaders, Follower, FollowerConfig, HeaderOrigin, HeaderQuery, IngestStats, RpcClient,
    system::HISTORY_STORAGE_ADDRESS,
};
use serde_json::{Value, json};

/// Workload blocks before the reorg.
const BLOCKS: u64 = 55;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_anvil_block_by_block_with_matching_roots() {
    let AnvilGenesis { turn: _turn, anvil, mut rpc, dir: _dir, genesis_file: genesis, db } =
        anvil_genesis().await;

    let mut config = FollowerConfig::new(anvil.ws());
    config.genesis = Some(genesis);
    config.poll_interval = POLL;
    let follower = Follower::new(Arc::clone(&db), config.clone()).unwrap();
    let stats = follower.stats();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(follower.run(stopped));

    let mut workload = Workload::new(&mut rpc).await;
    // Mines `blocks` workload blocks, each followed with anvil's hash and root.
    let follow =
        async |stats: &IngestStats, workload: &mut Workload, rpc: &mut RpcClient, blocks| {
            for _ in 0..blocks {
                let n = workload.mine_block(rpc).await;
                wait_for_head(stats, n).await;
                let block = rpc.block(n).await.unwrap();
                let head = db.head().unwrap().unwrap();
                assert_eq!((head.number, head.hash), (n, block.hash));
                assert_eq!(db.account_root().unwrap(), block.state_root, "root after block {n}");
            }
        };
    follow(&stats, &mut workload, &mut rpc, BLOCKS).await;
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
    follow(&stats, &mut workload, &mut rpc, 3).await;
    assert_eq!(stats.reorgs(), 1, "the reorg was detected once");
    assert_eq!(stats.blocks_reverted(), 1, "the replaced block was undone");

    // Two blocks of transfers and storage writes (no deployment: the workload's 59th and 60th),
    // replaced by anvil_reorg with two empty blocks: the state goes back to the fork point's.
    // The follower undoes both (each root checked against its parent's) before it applies the
    // new ones; applied on top, the dropped blocks' changes would stay and every root differ.
    // Between the blocks and the reorg the follower restarts: the new one rolls back with the
    // undos the leafdb kept.
    // Each block followed before the next is mined: anvil can hang when a trace overlaps its
    // mining (tests/support/mod.rs).
    let first = workload.mine_block(&mut rpc).await;
    wait_for_head(&stats, first).await;
    let n = workload.mine_block(&mut rpc).await;
    wait_for_head(&stats, n).await;
    stop.send_replace(true);
    tokio::time::timeout(FOLLOW_TIMEOUT, task).await.unwrap().unwrap().unwrap();
    let follower = Follower::new(Arc::clone(&db), config).unwrap();
    let stats = follower.stats();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(follower.run(stopped));
    let old = rpc.block(n).await.unwrap();
    let _: Value = rpc.call("anvil_reorg", json!([2, []])).await.unwrap();
    let new = rpc.block(n).await.unwrap();
    // The new blocks are empty: at Prague their only change is the system call's (EIP-2935).
    assert_ne!(old.state_root, new.state_root, "the dropped blocks changed the state");
    let deadline = tokio::time::Instant::now() + FOLLOW_TIMEOUT;
    while db.head().unwrap().unwrap().hash != new.hash {
        assert!(tokio::time::Instant::now() < deadline, "the new block {n} was not applied");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(db.account_root().unwrap(), new.state_root, "root after the reorg");
    follow(&stats, &mut workload, &mut rpc, 3).await;
    assert_eq!(stats.reorgs(), 1);
    assert_eq!(stats.blocks_reverted(), 2, "both blocks, from the undos kept in the leafdb");
    assert_eq!(stats.mismatching_blocks(), 0);
    assert_eq!(db.root_mismatches().unwrap(), 0);
    assert_eq!(stats.blocks_behind(), 0);
    stop.send_replace(true);
    tokio::time::timeout(FOLLOW_TIMEOUT, task).await.unwrap().unwrap().unwrap();
}

/// anvil at Prague runs EIP-2935's system call before every block's transactions: the parent
/// hash goes into the history contract's ring buffer, a write no trace shows (geth's and
/// anvil's block traces cover transactions only; a block of none traces as `[]`). Without the
/// system calls folded in, block 1's root differed from anvil's and every block after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_prague_anvil_whose_system_calls_no_trace_shows() {
    let AnvilGenesis { turn: _turn, anvil, mut rpc, dir: _dir, genesis_file: genesis, db } =
        anvil_genesis().await;
    let running = spawn_follower(&db, anvil.ws(), |c| c.genesis = Some(genesis));
    let stats = Arc::clone(&running.stats);
    let mut workload = Workload::new(&mut rpc).await;
    for i in 0..6 {
        // Empty blocks too: their only change is the system call's.
        let n = if i % 2 == 0 {
            let _: Value = rpc.call("evm_mine", json!([])).await.unwrap();
            rpc.block_number().await.unwrap()
        } else {
            workload.mine_block(&mut rpc).await
        };
        wait_for_head(&stats, n).await;
        let block = rpc.block(n).await.unwrap();
        assert!(block.requests_hash.is_some(), "a Prague block");
        assert_eq!(db.account_root().unwrap(), block.state_root, "root after block {n}");
    }
    assert_eq!(stats.mismatching_blocks(), 0);
    // `eth_getStorageAt` by block hash (how the request contracts' state is read after a
    // Prague block; anvil does not deploy them): block 1 stored block 0's hash at slot 0.
    let (genesis, first) = (rpc.block(0).await.unwrap(), rpc.block(1).await.unwrap());
    let stored = rpc.storage_at(HISTORY_STORAGE_ADDRESS, B256::ZERO, first.hash).await.unwrap();
    assert_eq!(stored, U256::from_be_bytes(genesis.hash.0));
    running.stop().await;
}

/// anvil's headers (Prague: every fork field up to `requestsHash`) re-encode to their
/// hashes, so a leafsync beside anvil answers eth/69 header queries; anvil's `eth_config` has a
/// zero fork hash (not computed), read as none, so the fork id falls back to the chain preset.
#[tokio::test]
async fn anvil_headers_are_served_and_its_fork_id_falls_back() {
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
    // Longer queries are read in JSON-RPC batches (anvil has no header methods: of blocks),
    // over HTTP and over WebSocket.
    let _: Value = rpc.call("anvil_mine", json!([250])).await.unwrap();
    for url in [anvil.http(), anvil.ws()] {
        let headers = ElHeaders::new(&url).unwrap();
        let query =
            HeaderQuery { origin: HeaderOrigin::Number(1), amount: 300, skip: 0, reverse: false };
        let answer = headers.headers(query).await;
        assert_eq!(answer.len(), 253, "blocks 1 to 253 over {url}");
        for (rlp, n) in answer.iter().zip(1..).step_by(50) {
            assert_eq!(keccak256(rlp), rpc.block(n).await.unwrap().hash, "header {n} over {url}");
        }
    }
    assert_eq!(rpc.fork_id().await.unwrap(), None, "anvil's zero fork hash is no fork id");
}
