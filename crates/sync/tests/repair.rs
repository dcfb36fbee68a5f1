//! A leafdb that followed a chain and went off it (a block applied from a diff that lies, as a
//! faulty trace or a reorg that could not be rolled back leave it) is synced to the chain's head
//! over what it holds, from `leaf/1` peers and from snap/1 peers: it ends with exactly the head's
//! state and downloads only what differs, a small part of what a fresh sync downloads. Cut
//! short, it resumes from its progress record.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{
    Behaviour, SimPeer, assert_same_tries_and_flat_state,
    chain::{SEED, random_diff},
    dyn_peers,
    snap::{SimSnap, SnapBehaviour, probed_snap_peers},
    source,
};
use leafsync_leafdb::{BlockHeader, GenParams, LeafDb, MemStore};
use leafsync_sync::{SyncConfig, SyncError, SyncOutcome, SyncPeer, Syncer};
use tokio::sync::watch;

/// Accounts of the state: enough that one block's changes touch a small part of it.
const ACCOUNTS: u64 = 20_000;

type Db = Arc<LeafDb<MemStore>>;

/// The chain (the generated state and its block 1) at block 1, and a leafdb that applied block 1
/// from a diff that lies (another block's changes: ~40 accounts changed or deleted, a contract
/// created): its head is block 1, its state off the chain.
fn chain_and_a_state_off_it() -> (Db, Db, BlockHeader) {
    let params = GenParams { accounts: ACCOUNTS, seed: SEED };
    let server = source(ACCOUNTS, SEED);
    let genesis = server.head().unwrap().unwrap();
    let diff = random_diff(&server, params, 1);
    let mut block = BlockHeader {
        number: 1,
        hash: [1; 32].into(),
        parent_hash: genesis.hash,
        ..Default::default()
    };
    block.state_root = source(ACCOUNTS, SEED).apply_block(&block, &diff).unwrap().root;
    assert!(server.apply_block(&block, &diff).unwrap().root_matches);
    let client = source(ACCOUNTS, SEED);
    let lie = random_diff(&client, params, 1000);
    assert!(!client.apply_block(&block, &lie).unwrap().root_matches);
    (server, client, block)
}

/// Syncs `client` from `peers` with the chain's head as the trusted pivot.
async fn sync(client: &Db, peers: Vec<Arc<dyn SyncPeer>>, head: &BlockHeader) -> SyncOutcome {
    let (_feed, pivot) = watch::channel(common::chain_head(head));
    let config = SyncConfig { chunk_target_bytes: 16 * 1024, ..Default::default() };
    Syncer::new(Arc::clone(client), config, peers).with_pivot_feed(pivot).run().await.unwrap()
}

/// Syncs the state off the chain back to it from `peers`, and a fresh leafdb from `fresh` for
/// comparison; asserts the exact state and that the repair downloaded less than a tenth.
async fn repair(
    label: &str,
    (server, client, block): (Db, Db, BlockHeader),
    peers: Vec<Arc<dyn SyncPeer>>,
    fresh: Vec<Arc<dyn SyncPeer>>,
) {
    let out = sync(&client, peers, &block).await;
    assert_eq!(out.root, block.state_root);
    // The lie's contract is gone, but not its code: codes are kept by hash, as go-ethereum
    // keeps them, and one that no account names harms nothing.
    assert_same_tries_and_flat_state(&client, &server, block.state_root);
    assert!(out.banned.is_empty() && out.dropped.is_empty(), "{label}: {out:?}");
    let full = sync(&Arc::new(LeafDb::in_memory()), fresh, &block).await;
    let (s, f) = (&out.stats, &full.stats);
    println!(
        "{label}: bytes_down={} requests={} (a fresh sync: {} in {}), chunks_resumed={} chunks_healed={} healed_nodes={} codes={}",
        s.bytes_down,
        s.requests,
        f.bytes_down,
        f.requests,
        s.chunks_resumed,
        s.chunks_healed,
        s.healed_nodes,
        s.codes,
    );
    assert!(s.bytes_down * 10 < f.bytes_down, "{label}: {s:?}");
    assert!(s.chunks_resumed > 0 && s.healed_nodes > 0, "{label}: {s:?}");
    // What the heal changed was taken in at once (the new contract's storage and code): the
    // final check, which scans a state that held other entries, found nothing left to repair.
    assert_eq!((s.final_repairs, s.codes), (0, 1), "{label}: {s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_state_off_the_chain_is_synced_back_from_leaf_peers_downloading_only_what_differs() {
    let chain = chain_and_a_state_off_it();
    let peers = || {
        dyn_peers(&[1, 2].map(|n| SimPeer::new(n, chain.0.clone(), Behaviour::Honest, ACCOUNTS)))
    };
    let (peers, fresh) = (peers(), peers());
    repair("leaf/1", chain, peers, fresh).await;
}

#[tokio::test(start_paused = true)]
async fn a_state_off_the_chain_is_synced_back_from_snap_peers_downloading_only_what_differs() {
    let chain = chain_and_a_state_off_it();
    let servers = [1, 2].map(|n| SimSnap::new(n, chain.0.clone(), SnapBehaviour::Honest));
    let (peers, fresh) = (probed_snap_peers(&servers).await, probed_snap_peers(&servers).await);
    repair("snap/1", chain, peers, fresh).await;
}

/// A repair beside peers that change answers at random (`Behaviour::Mutant`): the tables are
/// trusted to be complete only where they are the client's own, so a lie can make no subtrie
/// look complete, and it costs only the liar. Ends exact, the honest peer unpenalised, every
/// liar whose lie the client can prove penalised.
#[tokio::test(start_paused = true)]
async fn a_repair_beside_peers_lying_at_random_ends_exact_and_costs_only_the_liars() {
    let (mut draw, rounds) = common::drawn_rounds(46, 8);
    let mut lies = 0;
    for round in 0..rounds {
        let (server, client, block) = chain_and_a_state_off_it();
        let mut peers = vec![SimPeer::new(1, server.clone(), Behaviour::Honest, ACCOUNTS)];
        for n in 0..1 + draw.below(2) {
            let seed = draw.next_u64();
            let rate = [1, 4, 8][draw.below(3) as usize];
            let lie = Behaviour::Mutant { seed, rate };
            peers.push(SimPeer::new(n as u8 + 2, server.clone(), lie, ACCOUNTS));
        }
        let out = sync(&client, dyn_peers(&peers), &block).await;
        assert_eq!(out.root, block.state_root, "round {round}");
        assert_same_tries_and_flat_state(&client, &server, block.state_root);
        assert!(peers[0].penalties.lock().unwrap().is_empty(), "round {round}: honest penalised");
        let honest = peers[0].id;
        assert!(!out.banned.contains(&honest) && !out.dropped.contains(&honest), "round {round}");
        let changed = common::answers_changed(&peers);
        println!(
            "round {round}: {} liars, {changed} answers changed, banned {}, junk {}, final repairs {}",
            peers.len() - 1,
            out.banned.len(),
            out.stats.junk_answers,
            out.stats.final_repairs
        );
        common::assert_liars_paid(&peers, &format!("round {round}"));
        lies += changed;
    }
    // The liars were asked and lied (a repair asks for trie nodes: a wrong one bans its peer).
    assert!(lies >= rounds, "{lies} answers changed");
}

/// A repair cut short (its only peer gone after a few answers, as a kill between two writes
/// leaves it) resumes from its progress record over what it left. The resumed run takes no
/// subtrie as complete on trust (the record says the tables are mid-sync), re-derives what it
/// heals whole, and ends exact.
#[tokio::test(start_paused = true)]
async fn a_repair_cut_short_resumes_from_its_record_and_ends_exact() {
    for stop in [2, 5, 8] {
        let (server, client, block) = chain_and_a_state_off_it();
        let (_feed, pivot) = watch::channel(common::chain_head(&block));
        let config = SyncConfig { chunk_target_bytes: 16 * 1024, ..Default::default() };
        let limited = [SimPeer::new(1, server.clone(), Behaviour::Limited(stop), ACCOUNTS)];
        let err = Syncer::new(Arc::clone(&client), config, dyn_peers(&limited))
            .with_pivot_feed(pivot)
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, SyncError::NoPeers), "stop {stop}: {err}");
        assert!(client.sync_progress().unwrap().is_some(), "stop {stop}: no record");
        let honest = [1, 2].map(|n| SimPeer::new(n, server.clone(), Behaviour::Honest, ACCOUNTS));
        let out = sync(&client, dyn_peers(&honest), &block).await;
        assert_eq!(out.root, block.state_root, "stop {stop}");
        assert_same_tries_and_flat_state(&client, &server, block.state_root);
        assert!(client.sync_progress().unwrap().is_none(), "stop {stop}: record left");
        // Trusting the tables cut short as complete leaves the final check something to repair.
        assert_eq!(out.stats.final_repairs, 0, "stop {stop}: {:?}", out.stats);
        println!(
            "stop {stop}: resumed bytes_down={} healed_nodes={} final_repairs={}",
            out.stats.bytes_down, out.stats.healed_nodes, out.stats.final_repairs
        );
    }
}
