//! `leafsync run` following a real execution client: anvil (the pinned npm package) starts, the
//! daemon bootstraps its empty leafdb from anvil's genesis state (`el.genesis`), follows blocks of
//! transfers over WebSocket, reports them through `leafsync status`, and its state root equals
//! anvil's header root, also after an `anvil_reorg` that it rolls back. Then the whole chain: a second daemon with an empty datadir finds the
//! first through a discv5 bootnode, syncs its state at anvil's head (the trusted pivot), and
//! follows anvil's new blocks. Fails, naming the install command, when anvil is not installed.
#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

mod support;
use leafsync_ingest::test_utils as workload;

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use alloy_primitives::{Address, keccak256};
use leafsync_ingest::RpcClient;
use leafsync_leafdb::{DbOptions, LeafDb, LeafDbConfig};
use leafsync_p2p::leaf::ChainHead;
use leafsync_sync::SyncProgress;
use serde_json::{Value, json};
use support::{
    assert_head_is_els, both_follow_then_stop, line_with, sigterm_and_wait, start_daemon, status,
    wait_status, wait_synced_at,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use workload::{AnvilGenesis, anvil_genesis};

/// Blocks mined while the daemon follows.
const BLOCKS: u64 = 12;

/// Mines blocks `from..to` of three transfers each to fresh addresses (never 0 value: anvil keeps
/// empty accounts), each applied by every daemon of `followers` (admin addresses) before the
/// next is mined ([`support::wait_applied`]).
async fn mine(rpc: &mut RpcClient, from: u64, to: u64, followers: &[&str]) {
    let dev: Vec<Address> = rpc.call("eth_accounts", json!([])).await.unwrap();
    for i in from..to {
        for k in 0..3u64 {
            let to = Address::from_slice(&keccak256(format!("follow-{i}-{k}"))[12..]);
            let from = dev[((i + k) % dev.len() as u64) as usize];
            let tx = json!({"from": from, "to": to, "value": format!("{:#x}", 1_000_000_000_000_000u64 + i)});
            let _: Value = rpc.call("eth_sendTransaction", json!([tx])).await.unwrap();
        }
        let _: Value = rpc.call("evm_mine", json!([])).await.unwrap();
        support::wait_applied(followers, i + 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_bootstraps_from_genesis_and_follows_anvil() {
    let AnvilGenesis { turn: _turn, anvil, mut rpc, dir, genesis_file, .. } = anvil_genesis().await;
    let genesis = rpc.block(0).await.unwrap();

    let toml = support::daemon_toml(
        &dir.path().join("data"),
        &support::dev_chain(genesis.hash),
        None,
        &el_section(anvil.addr, Some(&genesis_file)),
    );
    let (mut daemon, lines) = start_daemon(dir.path(), "run", &toml);
    let admin = line_with(&lines, "admin: ");
    assert_eq!(status(&admin)["sync"]["phase"], "following");

    mine(&mut rpc, 0, BLOCKS, &[&admin]).await;
    // The counters are stored just after the head: wait for both.
    let s = wait_status(&admin, "daemon did not follow", |s| {
        s["sync"]["head"]["number"] == BLOCKS && s["sync"]["follow"]["blocksApplied"] == BLOCKS
    })
    .await;
    assert_head_is_els(&s, &mut rpc, BLOCKS).await;
    assert_eq!(s["sync"]["follow"]["blocksApplied"], BLOCKS);
    assert_eq!(s["sync"]["follow"]["mismatchingBlocks"], 0);
    assert_eq!(s["sync"]["follow"]["blocksBehind"], 0);
    assert!(s["sync"]["stateSync"].is_null(), "no state sync in this run: {s}");

    // One more block of transfers, which anvil_reorg replaces with an empty one: the daemon
    // rolls it back and follows the new block, its root anvil's again.
    mine(&mut rpc, BLOCKS, BLOCKS + 1, &[&admin]).await;
    let n = BLOCKS + 1;
    wait_status(&admin, "daemon did not follow", |s| s["sync"]["head"]["number"] == n).await;
    let _: Value = rpc.call("anvil_reorg", json!([1, []])).await.unwrap();
    let new = rpc.block(n).await.unwrap().hash.to_string();
    let s = wait_status(&admin, "daemon did not take the new block", |s| {
        s["sync"]["head"]["hash"] == new.as_str()
    })
    .await;
    assert_head_is_els(&s, &mut rpc, n).await;
    assert_eq!(s["sync"]["follow"]["reorgs"], 1, "{s}");
    assert_eq!(s["sync"]["follow"]["blocksReverted"], 1, "{s}");
    assert_eq!(s["sync"]["follow"]["mismatchingBlocks"], 0, "{s}");
    sigterm_and_wait(&mut daemon);
}

/// A daemon pointed at an execution client of another chain (anvil, while the config names a dev
/// chain with another genesis) stops at once, both when it would bootstrap from the client's
/// genesis and when it would take its sync pivot from it, saying so and naming both hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_client_on_another_chain_is_refused() {
    let AnvilGenesis { turn: _turn, anvil, mut rpc, dir, genesis_file, .. } = anvil_genesis().await;
    let anvils = rpc.block(0).await.unwrap().hash;
    let configured = alloy_primitives::B256::repeat_byte(0x5a);
    for (name, genesis) in [("bootstrap", Some(genesis_file.as_path())), ("pivot", None)] {
        let toml = support::daemon_toml(
            &dir.path().join(name),
            &support::dev_chain(configured),
            None,
            &el_section(anvil.addr, genesis),
        );
        let (mut daemon, _lines) = start_daemon(dir.path(), name, &toml);
        let status =
            support::wait_for_exit(&mut daemon, "the daemon kept running on another chain");
        let log = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap();
        assert!(!status.success(), "{name}: {log}");
        assert!(log.contains("is on another chain"), "{name}: {log}");
        assert!(
            log.contains(&anvils.to_string()) && log.contains(&configured.to_string()),
            "{log}"
        );
    }
}

/// Issue 6's end-to-end chain, as an operator would run it, from TOML files: daemon A follows
/// anvil and serves; daemon B starts with an empty datadir, knows only A's ENR as a discv5
/// bootnode and anvil's RPC, finds A, syncs the state at anvil's head (the trusted pivot), then
/// follows anvil's new blocks. Checked through the admin RPC (`leafsync status`) and, at the
/// end, `tool verify` of B's datadir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_finds_a_follower_through_discv5_syncs_and_follows_anvil() {
    const FIRST: u64 = 6;
    const MORE: u64 = 5;
    let AnvilGenesis { turn: _turn, anvil, mut rpc, dir, genesis_file, .. } = anvil_genesis().await;
    let genesis = rpc.block(0).await.unwrap();
    let chain = support::dev_chain(genesis.hash);
    let config = |name: &str, bootnodes: &[&str], genesis: Option<&Path>| {
        let datadir = dir.path().join(name);
        support::daemon_toml(&datadir, &chain, Some(bootnodes), &el_section(anvil.addr, genesis))
    };

    // A: bootstraps from genesis, follows anvil, serves, runs discovery with no bootnodes.
    let (mut a, a_lines) = start_daemon(dir.path(), "a", &config("a", &[], Some(&genesis_file)));
    let enr = line_with(&a_lines, "enr: ");
    assert!(enr.starts_with("enr:"), "A runs discovery: {enr}");
    let a_admin = line_with(&a_lines, "admin: ");
    mine(&mut rpc, 0, FIRST, &[&a_admin]).await;
    wait_status(&a_admin, "A did not follow anvil", |s| s["sync"]["head"]["number"] == FIRST).await;

    // B: an empty datadir, A's ENR as its only bootnode, anvil for the pivot and to follow.
    let (mut b, b_lines) = start_daemon(dir.path(), "b", &config("b", &[enr.as_str()], None));
    let b_admin = line_with(&b_lines, "admin: ");
    let s = wait_synced_at(&b_admin, &mut rpc, FIRST).await;
    let synced = &s["sync"]["stateSync"];
    assert!(synced["accounts"].as_u64().unwrap() > 0, "{s}");
    // Peer churn is counted (docs/operators.md), not logged above debug.
    assert!(synced["peersJoined"].is_u64() && synced["peersBack"].is_u64(), "{s}");
    assert_eq!(s["peers"].as_array().map(Vec::len), Some(1), "B found A: {s}");

    // New blocks: both follow them, B from its synced pivot on.
    mine(&mut rpc, FIRST, FIRST + MORE, &[&a_admin, &b_admin]).await;
    both_follow_then_stop(
        (&mut a, &a_admin),
        (&mut b, &b_admin, &dir.path().join("b")),
        &mut rpc,
        FIRST + MORE,
        &["phase:   following", "sync:    done at pivot"],
    )
    .await;
}

/// A reorg deeper than the undos a follower keeps takes a daemon's state off the chain, and the
/// daemon repairs it from a peer: B follows anvil from genesis through blocks of transfers, then
/// anvil replaces the last 17 of them with empty blocks (`UNDO_DEPTH` is 16): B cannot roll back,
/// applies the new blocks on top and its state is off the chain (no peer to repair from yet).
/// Daemon A then starts from anvil's genesis (it never saw the dropped blocks), finds B through
/// discv5, and serves; B stops following, syncs the state at anvil's head over its leafdb, and
/// follows on with anvil's roots. Then B is stopped and its leafdb given a progress record
/// beside its head, as a crash at the end of a repair leaves it: the next start finishes the
/// repair before it follows. Checked through `leafsync status` and, at the end, `tool verify` of
/// B's datadir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_taken_off_the_chain_by_a_deep_reorg_is_repaired_from_a_peer() {
    const BLOCKS: u64 = 20;
    const DEPTH: u64 = 17;
    const MORE: u64 = 3;
    let AnvilGenesis { turn: _turn, anvil, mut rpc, dir, genesis_file, .. } = anvil_genesis().await;
    let genesis = rpc.block(0).await.unwrap();
    let chain = support::dev_chain(genesis.hash);
    let config = |name: &str, bootnodes: &[&str]| {
        let datadir = dir.path().join(name);
        let el = el_section(anvil.addr, Some(&genesis_file));
        support::daemon_toml(&datadir, &chain, Some(bootnodes), &el)
    };

    // B follows anvil through the blocks and the deep reorg, alone.
    let (mut b, b_lines) = start_daemon(dir.path(), "b", &config("b", &[]));
    let b_enr = line_with(&b_lines, "enr: ");
    let b_admin = line_with(&b_lines, "admin: ");
    mine(&mut rpc, 0, BLOCKS, &[&b_admin]).await;
    wait_status(&b_admin, "B did not follow", |s| s["sync"]["head"]["number"] == BLOCKS).await;
    let _: Value = rpc.call("anvil_reorg", json!([DEPTH, []])).await.unwrap();
    let new = rpc.block(BLOCKS).await.unwrap();
    // The mismatch counter is stored just after the head: wait for both.
    let s = wait_status(&b_admin, "B did not take the new chain off the chain", |s| {
        s["sync"]["head"]["hash"] == new.hash.to_string().as_str()
            && s["sync"]["follow"]["mismatchingBlocks"].as_u64().is_some_and(|n| n > 0)
    })
    .await;
    // The head is anvil's block, its header root anvil's, but the blocks did not reach it
    // (mismatching blocks, waited for above).
    assert_eq!(s["sync"]["follow"]["blocksReverted"], 0, "too deep to roll back: {s}");
    assert_eq!(s["sync"]["repairs"], 0, "{s}");

    // A: a new node from anvil's genesis, with B's ENR as its bootnode. B repairs from it.
    let (mut a, a_lines) = start_daemon(dir.path(), "a", &config("a", &[b_enr.as_str()]));
    let a_enr = line_with(&a_lines, "enr: ");
    let a_admin = line_with(&a_lines, "admin: ");
    let s = wait_status(&b_admin, "B did not repair its state", |s| {
        s["sync"]["repairs"] == 1 && s["sync"]["phase"] == "following"
    })
    .await;
    let pivot = s["sync"]["stateSync"]["pivot"]["number"].as_u64().unwrap();
    assert!(pivot >= BLOCKS, "the repair's pivot is anvil's head: {s}");
    assert!(s["sync"]["stateSync"]["healedNodes"].as_u64().unwrap() > 0, "{s}");

    let mismatches = s["sync"]["follow"]["mismatchingBlocks"].clone();

    // Both follow new blocks with anvil's roots; B's blocks match again.
    mine(&mut rpc, BLOCKS, BLOCKS + MORE, &[&a_admin, &b_admin]).await;
    let end = BLOCKS + MORE;
    support::wait_followed_to(&[("A", &a_admin)], &mut rpc, end).await;
    let s =
        wait_status(&b_admin, "B did not follow on", |s| s["sync"]["head"]["number"] == end).await;
    assert_head_is_els(&s, &mut rpc, end).await;
    assert_eq!(s["sync"]["follow"]["mismatchingBlocks"], mismatches, "none since: {s}");
    let text = support::status_text(&b_admin);
    assert!(text.contains("phase:   following") && text.contains("repairs: 1"), "{text}");
    sigterm_and_wait(&mut b);

    // A crash between a repair's last write (the head) and the removal of its progress record
    // leaves both: the next start finishes the repair (at the record's pivot, still near
    // anvil's head) before it follows.
    let leafdb = dir.path().join("b").join("leafdb");
    let db = LeafDb::open(&leafdb, &DbOptions::default(), LeafDbConfig::default()).unwrap();
    let head = db.head().unwrap().unwrap();
    let pivot = ChainHead { number: head.number, hash: head.hash, state_root: head.state_root };
    let record = SyncProgress {
        pivot,
        depth: 0,
        heal_roots: Vec::new(),
        bytes_down: 0,
        requests: 0,
        marked: true,
    };
    db.put_sync_progress(&record.encode()).unwrap();
    drop(db);
    let (mut b, b_lines) = start_daemon(dir.path(), "b2", &config("b", &[a_enr.as_str()]));
    let b_admin = line_with(&b_lines, "admin: ");
    let s = wait_status(&b_admin, "B did not finish the repair", |s| {
        s["sync"]["repairs"] == 1 && s["sync"]["phase"] == "following"
    })
    .await;
    assert_eq!(s["sync"]["stateSync"]["pivot"]["number"], end, "the record's pivot: {s}");
    mine(&mut rpc, end, end + 1, &[&a_admin, &b_admin]).await;
    let end = end + 1;
    support::wait_followed_to(&[("A", &a_admin), ("B", &b_admin)], &mut rpc, end).await;
    sigterm_and_wait(&mut b);
    sigterm_and_wait(&mut a);
    let root = rpc.block(end).await.unwrap().state_root.to_string();
    support::verify_clean(&dir.path().join("b"), &root);
}

/// The `[el]` section: anvil's WebSocket at `addr`, and the genesis file to bootstrap from.
/// A follower stuck at a block its execution client cannot trace (a geth that no longer keeps
/// the block's parent state) is repaired from a peer, past that block: A follows anvil and
/// serves; B follows anvil through a proxy that answers every `debug_traceBlockByHash` with an
/// error while told to (`el.stuck_after_secs = 1`). After two blocks B cannot trace, B syncs
/// the state at anvil's head from A over its leafdb, follows on once the traces come again,
/// and `tool verify` finds its state exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stuck_at_a_block_it_cannot_trace_is_repaired_from_a_peer() {
    let AnvilGenesis { turn: _turn, anvil, mut rpc, dir, genesis_file, .. } = anvil_genesis().await;
    let genesis = rpc.block(0).await.unwrap();
    let chain = support::dev_chain(genesis.hash);
    let fail = Arc::new(AtomicBool::new(false));
    let proxy = trace_failing_proxy(anvil.addr, Arc::clone(&fail)).await;

    let a_toml = support::daemon_toml(
        &dir.path().join("a"),
        &chain,
        Some(&[]),
        &el_section(anvil.addr, Some(&genesis_file)),
    );
    let (mut a, a_lines) = start_daemon(dir.path(), "a", &a_toml);
    let a_enr = line_with(&a_lines, "enr: ");
    let a_admin = line_with(&a_lines, "admin: ");
    let b_el = format!(
        "[el]\nrpc = \"http://{proxy}\"\ngenesis = {genesis_file:?}\nstuck_after_secs = 1\n"
    );
    let b_toml =
        support::daemon_toml(&dir.path().join("b"), &chain, Some(&[a_enr.as_str()]), &b_el);
    let (mut b, b_lines) = start_daemon(dir.path(), "b", &b_toml);
    let b_admin = line_with(&b_lines, "admin: ");
    mine(&mut rpc, 0, 3, &[&a_admin, &b_admin]).await;

    // Traces fail: B is stuck at block 3 and repairs from A at anvil's head (block 5).
    fail.store(true, Ordering::Relaxed);
    mine(&mut rpc, 3, 5, &[&a_admin]).await;
    let s = wait_status(&b_admin, "B did not repair past the blocks it cannot trace", |s| {
        s["sync"]["repairs"] == 1 && s["sync"]["phase"] == "following"
    })
    .await;
    assert_eq!(s["sync"]["stateSync"]["pivot"]["number"], 5, "anvil's head: {s}");
    assert_eq!(s["sync"]["head"]["number"], 5, "{s}");

    // Traces again: both follow, B's blocks matching anvil's roots.
    fail.store(false, Ordering::Relaxed);
    mine(&mut rpc, 5, 6, &[&a_admin, &b_admin]).await;
    both_follow_then_stop(
        (&mut a, &a_admin),
        (&mut b, &b_admin, &dir.path().join("b")),
        &mut rpc,
        6,
        &["phase:   following"],
    )
    .await;
}

/// An HTTP JSON-RPC proxy in front of `upstream` (anvil) that answers `debug_traceBlockByHash`
/// with geth's error for a state it no longer keeps while `fail` is set; returns its address.
async fn trace_failing_proxy(upstream: SocketAddr, fail: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(proxy_requests(client, upstream, Arc::clone(&fail)));
        }
    });
    addr
}

/// Answers the requests of one client connection, each forwarded on a connection of its own.
async fn proxy_requests(mut client: TcpStream, upstream: SocketAddr, fail: Arc<AtomicBool>) {
    let mut buf = Vec::new();
    loop {
        let Some(body) = workload::read_http_request(&mut client, &mut buf).await else { return };
        let call: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let answer = if fail.load(Ordering::Relaxed) && call["method"] == "debug_traceBlockByHash" {
            let error = json!({"jsonrpc": "2.0", "id": call["id"], "error":
                {"code": -32000, "message": "historical state unavailable"}})
            .to_string();
            let len = error.len();
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n{error}")
                .into_bytes()
        } else {
            let Ok(mut anvil) = TcpStream::connect(upstream).await else { return };
            let request = format!(
                "POST / HTTP/1.1\r\nHost: {upstream}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let mut answer = Vec::new();
            if anvil.write_all(request.as_bytes()).await.is_err()
                || anvil.write_all(&body).await.is_err()
                || anvil.read_to_end(&mut answer).await.is_err()
            {
                return;
            }
            answer
        };
        if client.write_all(&answer).await.is_err() {
            return;
        }
    }
}

fn el_section(addr: impl std::fmt::Display, genesis: Option<&Path>) -> String {
    let genesis = genesis.map_or_else(String::new, |g| format!("genesis = {g:?}"));
    format!("[el]\nrpc = \"ws://{addr}\"\n{genesis}")
}
