//! The neighbour disappearing mid-stream and coming back, and the follower restarting: a proxy
//! in front of anvil closes every connection while blocks keep being mined; afterwards every
//! block was applied exactly once (the applied count equals the blocks mined, the root equals
//! anvil's). Then the follower is stopped, the on-disk leafdb closed, more blocks mined, and a
//! new follower resumes from the leafdb head. Fails, naming the install command, when anvil is not installed.

#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

use leafsync_ingest::test_utils as common;

use std::{sync::Arc, time::Duration};

use common::*;

use leafsync_leafdb::{DbOptions, LeafDb, LeafDbConfig, RocksStore};

async fn assert_root(db: &LeafDb<RocksStore>, rpc: &mut leafsync_ingest::RpcClient, n: u64) {
    let block = rpc.block(n).await.unwrap();
    let head = db.head().unwrap().unwrap();
    assert_eq!((head.number, head.hash), (n, block.hash));
    assert_eq!(db.account_root().unwrap(), block.state_root, "root at block {n}");
    assert_eq!(db.root_mismatches().unwrap(), 0, "a skipped or repeated block shows in the root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_and_restart_skip_nothing_and_repeat_nothing() {
    init_logs();
    let bin = anvil_binary();
    let anvil = Anvil::start(&bin).await;
    let proxy = Proxy::start(anvil.addr).await;
    let mut rpc = anvil.rpc();
    let dir = tempfile::tempdir().unwrap();
    let genesis = dump_state_alloc(&mut rpc, dir.path()).await;
    let open = || {
        Arc::new(
            LeafDb::open(&dir.path().join("db"), &DbOptions::default(), LeafDbConfig::default())
                .unwrap(),
        )
    };
    let db = open();
    let running = spawn_follower(&db, proxy.http(), |c| c.genesis = Some(genesis.clone()));
    let stats = Arc::clone(&running.stats);
    let mut workload = Workload::new(&mut rpc).await;
    for _ in 0..5 {
        let n = workload.mine_block(&mut rpc).await;
        wait_for_head(&stats, n).await;
    }

    // A long outage: blocks are mined while the neighbour is unreachable.
    proxy.set_down(true);
    let before = stats.head();
    for _ in 0..8 {
        workload.mine_block(&mut rpc).await;
    }
    let deadline = tokio::time::Instant::now() + FOLLOW_TIMEOUT;
    while stats.retries() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no retries while the neighbour is down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.head(), before, "nothing applied while the neighbour is down");
    proxy.set_down(false);
    let n = rpc.block_number().await.unwrap();
    wait_for_head(&stats, n).await;
    assert_root(&db, &mut rpc, n).await;

    // Flapping: the link drops right after each block is mined, mid-stream.
    for _ in 0..10 {
        workload.mine_block(&mut rpc).await;
        proxy.set_down(true);
        tokio::time::sleep(Duration::from_millis(15)).await;
        proxy.set_down(false);
    }
    let n = rpc.block_number().await.unwrap();
    wait_for_head(&stats, n).await;
    assert_root(&db, &mut rpc, n).await;
    assert_eq!(stats.blocks_applied(), n, "every block from 1 to {n} applied exactly once");
    assert!(stats.retries() >= 2);
    running.stop().await;

    // Restart: close the leafdb, mine more blocks, reopen and resume from its head.
    drop(db);
    for _ in 0..5 {
        workload.mine_block(&mut rpc).await;
    }
    let db = open();
    assert_eq!(db.head().unwrap().unwrap().number, n, "progress is the leafdb head");
    let running = spawn_follower(&db, anvil.http(), |_| {});
    let stats = Arc::clone(&running.stats);
    let m = rpc.block_number().await.unwrap();
    wait_for_head(&stats, m).await;
    assert_root(&db, &mut rpc, m).await;
    assert_eq!(stats.blocks_applied(), m - n, "resumed after block {n}, not from the start");
    running.stop().await;
}
