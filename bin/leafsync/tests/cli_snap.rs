//! Issue 14's end-to-end bootstrap over snap/1, with processes, from TOML files: anvil runs a
//! workload (transfers, deployments, storage writes); daemon A bootstraps from anvil's genesis,
//! follows it and serves eth/69 + snap/1 from its leafdb (`serve.snap = true`) with `leaf/1`
//! off (`serve.leaf = false`: a stand-in for geth); daemon B starts empty with anvil as its
//! execution client, A as its static peer and `sync.sources = ["snap"]`, syncs the state at
//! anvil's head over snap/1, then follows anvil's new blocks. Roots equal anvil's; `tool verify`
//! is clean on B's datadir. Fails, naming the install command, when anvil is not installed.
#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

mod support;
#[path = "../../../crates/ingest/tests/common/mod.rs"]
mod workload;

use support::{
    leafsync, line_with, sigterm_and_wait, spawn_daemon, verify_clean, wait_followed_to,
    wait_status, wait_synced_at,
};
use workload::{Anvil, Workload, anvil_binary, dump_state_alloc};

/// Blocks mined before B starts: deployments every 4th block, storage writes from the second
/// deployment on.
const FIRST: u64 = 12;
/// Blocks mined while both follow.
const MORE: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_syncs_over_snap_from_a_snap_server_and_follows_anvil() {
    let anvil = Anvil::start(&anvil_binary()).await;
    let mut rpc = anvil.rpc();
    let dir = tempfile::tempdir().unwrap();
    let genesis_file = dir.path().join("genesis.json");
    dump_state_alloc(&mut rpc, &genesis_file).await;
    let genesis = rpc.block(0).await.unwrap();
    let chain = support::dev_chain(genesis.hash);
    let toml =
        |name: &str, extra: &str| support::daemon_toml(&dir.path().join(name), &chain, None, extra);

    // A: bootstraps from anvil's genesis, follows it, serves eth/69 + snap/1 and no leaf/1.
    let a_cfg = dir.path().join("a.toml");
    let a_extra = format!(
        "[el]\nrpc = \"{}\"\ngenesis = {genesis_file:?}\n\n[serve]\nsnap = true\nleaf = false\n",
        anvil.ws()
    );
    std::fs::write(&a_cfg, toml("a", &a_extra)).unwrap();
    let (mut a, a_lines) = spawn_daemon(&a_cfg, &dir.path().join("a.log"));
    let a_enode = line_with(&a_lines, "enode: ");
    let a_admin = line_with(&a_lines, "admin: ");
    let mut workload = Workload::new(&mut rpc).await;
    for _ in 0..FIRST {
        workload.mine_block(&mut rpc).await;
    }
    assert!(workload.contracts.len() >= 3, "deployments happened");
    wait_status(&a_admin, "A did not follow anvil", |s| s["sync"]["head"]["number"] == FIRST).await;

    // B: empty, anvil as its execution client (the pivot), A as its only peer, snap/1 only.
    let b_cfg = dir.path().join("b.toml");
    let b_extra = format!("[el]\nrpc = \"{}\"\n\n[sync]\nsources = [\"snap\"]\n", anvil.ws());
    let b_toml = toml("b", &b_extra).replace(
        "discovery = false",
        &format!("discovery = false\nstatic_peers = [\"{a_enode}\"]"),
    );
    std::fs::write(&b_cfg, b_toml).unwrap();
    let (mut b, b_lines) = spawn_daemon(&b_cfg, &dir.path().join("b.log"));
    let b_admin = line_with(&b_lines, "admin: ");
    let s = wait_synced_at(&b_admin, &mut rpc, FIRST).await;
    let synced = &s["sync"]["stateSync"];
    assert!(synced["slots"].as_u64().unwrap() > 0 && synced["codes"].as_u64().unwrap() > 0, "{s}");
    let peers = s["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "B's only peer is A: {s}");
    assert_eq!(peers[0]["syncsOver"], "snap", "{s}");
    assert_eq!(peers[0]["protocols"], serde_json::json!(["eth/69", "snap/1"]), "{s}");

    // New blocks: both follow them, B from its synced pivot on.
    for _ in 0..MORE {
        workload.mine_block(&mut rpc).await;
    }
    let end = FIRST + MORE;
    wait_followed_to(&[("A", &a_admin), ("B", &b_admin)], &mut rpc, end).await;
    let text = leafsync().args(["status", "--rpc", &b_admin]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("sync:    done at pivot") && text.contains(" snap "), "{text}");

    sigterm_and_wait(&mut b);
    sigterm_and_wait(&mut a);
    verify_clean(&dir.path().join("b"), &rpc.block(end).await.unwrap().state_root.to_string());
}
