//! snap/1 as a source of the syncer: simulated snap/1 servers (serve's snap/1 server over a
//! source leafdb, through the wire encoding) behind `SnapPeer`, alone, with misbehaving ones,
//! beside `leaf/1` peers, and with the pivot moving. Every scenario ends with the client's
//! tables equal to the source's.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use common::{
    Behaviour, SimPeer, assert_synced,
    chain::{ACCOUNTS as CHAIN_ACCOUNTS, at, chain},
    dyn_peers, raw_leaf_bytes,
    snap::{SimSnap, SnapBehaviour, probed_snap_peers, snap_peers},
    source,
};
use leafsync_leafdb::{LeafDb, MemStore};
use leafsync_p2p::PenaltyClass;
use leafsync_sync::{SyncConfig, SyncOutcome, SyncPeer, Syncer};

/// Accounts of the generated state: ~300 contracts, a few with large storage.
const ACCOUNTS: u64 = 3000;
const SEED: u64 = 7;
/// Small chunks so that the state spreads over many chunks and all peers.
const TEST_CHUNK_BYTES: u64 = 16 * 1024;

/// One unit a request, as before batching: stops, silence and empty servers land between many
/// requests.
fn config() -> SyncConfig {
    SyncConfig { chunk_target_bytes: TEST_CHUNK_BYTES, chunk_batch_bytes: 0, ..Default::default() }
}

/// Syncs `src` from `peers` and asserts the exact state.
async fn sync_from(
    src: &Arc<LeafDb<MemStore>>,
    peers: Vec<Arc<dyn SyncPeer>>,
    config: SyncConfig,
    label: &str,
) -> SyncOutcome {
    let client = Arc::new(LeafDb::in_memory());
    let out = Syncer::new(Arc::clone(&client), config, peers).run().await.unwrap();
    let root = src.account_root().unwrap();
    assert_synced(&out, &client, src, root);
    let s = &out.stats;
    println!(
        "{label}: raw_leaf_bytes={} bytes_down={} requests={} chunks={} split={} healed_chunks={} healed_nodes={} skeleton_nodes={} codes={} empty={} no_state={} junk={} banned={} dropped={}",
        raw_leaf_bytes(src),
        s.bytes_down,
        s.requests,
        s.chunks_done,
        s.chunks_split,
        s.chunks_healed,
        s.healed_nodes,
        s.skeleton_nodes,
        s.codes,
        s.empty_answers,
        s.no_state_answers,
        s.junk_answers,
        out.banned.len(),
        out.dropped.len(),
    );
    out
}

fn servers(src: &Arc<LeafDb<MemStore>>, behaviours: &[SnapBehaviour]) -> Vec<Arc<SimSnap>> {
    behaviours
        .iter()
        .enumerate()
        .map(|(i, b)| SimSnap::new(i as u8 + 1, Arc::clone(src), *b))
        .collect()
}

fn requests(servers: &[Arc<SimSnap>]) -> u64 {
    servers.iter().map(|s| s.requests.load(Ordering::Relaxed)).sum()
}

fn unpenalised(server: &SimSnap) -> bool {
    server.penalties.lock().unwrap().is_empty()
}

/// Syncs from an honest server (the first) and one of `behaviour` (the second), and asserts
/// that the latter was banned and the honest one never penalised.
async fn liar_is_banned(
    behaviour: SnapBehaviour,
    config: SyncConfig,
) -> (SyncOutcome, Vec<Arc<SimSnap>>) {
    let src = source(ACCOUNTS, SEED);
    let snaps = servers(&src, &[SnapBehaviour::Honest, behaviour]);
    let label = format!("snap {behaviour:?}");
    let out = sync_from(&src, probed_snap_peers(&snaps).await, config, &label).await;
    assert!(out.banned.contains(&snaps[1].id), "{behaviour:?} server not banned");
    assert!(unpenalised(&snaps[0]), "the honest server was penalised");
    (out, snaps)
}

#[tokio::test(start_paused = true)]
async fn one_snap_server_gives_the_exact_state() {
    let src = source(ACCOUNTS, SEED);
    let snaps = servers(&src, &[SnapBehaviour::Honest]);
    let out = sync_from(&src, probed_snap_peers(&snaps).await, config(), "snap x1").await;
    assert!(out.banned.is_empty() && out.dropped.is_empty());
    assert_eq!(out.stats.chunks_healed, 0, "honest ranges at the pivot all verify");
    assert_eq!(out.stats.healed_nodes, 0);
    assert!(out.stats.chunks_done > 16, "the state was spread over many chunks");
    assert!(unpenalised(&snaps[0]));
    println!("snap x1: snap requests={}", requests(&snaps));
}

/// A geth answers one peer's snap/1 requests one at a time, and a `leaf/1` request becomes a
/// chain of snap/1 rounds queued behind the others': behind a slow link (64 kbit/s: a round of
/// the 64 KiB minimum budget takes 8 s) a request takes far longer than the sync's 12 s guard
/// while every round is answered. The guard counts from the peer's last answer
/// (`SyncPeer::last_answer`), so a server answering steadily is never timed out: no timeout,
/// no penalty, the exact state. (Counted from each request's start, this sync timed out.)
#[tokio::test(start_paused = true)]
async fn a_slow_snap_server_answering_steadily_is_not_timed_out() {
    let src = source(ACCOUNTS, SEED);
    let link = Arc::new(leafsync_sync::link::Link::new(std::time::Duration::ZERO, 64 * 1024));
    let snap = SimSnap::with(1, Arc::clone(&src), SnapBehaviour::Honest, Some(link), None);
    let peers = probed_snap_peers(std::slice::from_ref(&snap)).await;
    let out = sync_from(&src, peers, config(), "slow snap").await;
    assert_eq!(out.stats.timeouts, 0, "{:?}", out.stats);
    assert!(out.banned.is_empty() && out.dropped.is_empty());
    assert!(unpenalised(&snap));
}

#[tokio::test(start_paused = true)]
async fn without_an_estimate_the_whole_state_is_one_range() {
    // Unprobed snap/1 peers announce no account estimate: chunk depth 0, the state is asked as
    // one range (continued), still exact.
    let src = source(ACCOUNTS, SEED);
    let snaps = servers(&src, &[SnapBehaviour::Honest]);
    let out = sync_from(&src, snap_peers(&snaps), config(), "snap x1 unprobed").await;
    assert_eq!(out.stats.skeleton_nodes, 0);
    assert!(out.banned.is_empty() && out.dropped.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_probe_estimates_the_accounts() {
    let src = source(ACCOUNTS, SEED);
    let snaps = servers(&src, &[SnapBehaviour::Honest]);
    let peer = leafsync_sync::SnapPeer::new(Arc::clone(&snaps[0]) as _);
    let estimate = peer.probe_accounts(src.account_root().unwrap()).await.unwrap();
    println!("probe: {estimate} accounts estimated for {ACCOUNTS}");
    assert!(estimate.abs_diff(ACCOUNTS) < ACCOUNTS / 5, "{estimate}");
    assert_eq!(leafsync_sync::SyncPeer::account_estimate(&peer), estimate);
}

#[tokio::test(start_paused = true)]
async fn four_snap_servers_give_the_exact_state() {
    let src = source(ACCOUNTS, SEED);
    let snaps = servers(&src, &[SnapBehaviour::Honest; 4]);
    let out = sync_from(&src, probed_snap_peers(&snaps).await, config(), "snap x4").await;
    assert!(out.banned.is_empty() && out.dropped.is_empty());
    assert_eq!(out.stats.chunks_healed, 0);
    assert!(snaps.iter().all(|s| s.requests.load(Ordering::Relaxed) > 0), "work was spread");
    assert!(snaps.iter().all(|s| unpenalised(s)));
}

#[tokio::test(start_paused = true)]
async fn large_chunks_and_storages_are_split_through_the_skeleton() {
    // One skeleton level and chunks capped at 20 KiB: ranges over the cap come back "too large"
    // and are split via their trie nodes (GetTrieNodes).
    let src = source(ACCOUNTS, SEED);
    let snaps = servers(&src, &[SnapBehaviour::Honest; 2]);
    let config = SyncConfig {
        chunk_target_bytes: 1 << 30,
        chunk_max_bytes: 20 * 1024,
        ..Default::default()
    };
    let out = sync_from(&src, probed_snap_peers(&snaps).await, config, "snap split").await;
    assert!(out.stats.chunks_split > 1, "{:?}", out.stats);
    assert_eq!(out.stats.chunks_healed, 0);
    // Honest "too large": no claim belied by its units.
    assert_eq!(out.stats.implausible_splits, 0, "{:?}", out.stats);
}

#[tokio::test(start_paused = true)]
async fn servers_without_state_for_the_root_are_skipped_unpenalised() {
    let src = source(ACCOUNTS, SEED);
    // Two honest servers, so that the median account estimate (the empty ones have none) is
    // theirs and the state spreads over many chunks.
    let snaps = servers(
        &src,
        &[
            SnapBehaviour::EmptyRanges,
            SnapBehaviour::EmptyRanges,
            SnapBehaviour::Honest,
            SnapBehaviour::Honest,
        ],
    );
    let out =
        sync_from(&src, probed_snap_peers(&snaps).await, config(), "snap empty-for-root").await;
    assert!(out.banned.is_empty() && out.dropped.is_empty(), "{out:?}");
    assert!(snaps.iter().all(|s| unpenalised(s)), "a server without the state was penalised");
    assert!(out.stats.no_state_answers >= 2, "{:?}", out.stats);
    assert_eq!(out.stats.empty_answers, 0, "no-state answers are not counted as empty");
    // Once they said so, they got no more chunks (a window of range requests each at most),
    // but still trie nodes and codes, which they serve (a geth generating its snapshot).
    let window = leafsync_sync::config::MAX_IN_FLIGHT_PER_PEER as u64;
    for s in &snaps[..2] {
        let ranges = s.range_requests.load(Ordering::Relaxed);
        assert!(ranges <= window, "kept asking an empty server for ranges: {ranges}");
    }
    let others: u64 = snaps[..2]
        .iter()
        .map(|s| s.requests.load(Ordering::Relaxed) - s.range_requests.load(Ordering::Relaxed))
        .sum();
    assert!(others > 0, "servers without ranges were asked for nothing they serve");
}

/// geth answers `GetTrieNodes` for a root it cannot open with no node at all: the peer is marked
/// without the root's trie nodes (no node work until the pivot moves), not counted as answering
/// empty (eight of those in a row drop a peer) nor penalised; ranges are marked apart.
#[tokio::test(start_paused = true)]
async fn trie_nodes_answered_with_no_node_mark_the_peer_without_state() {
    use leafsync_p2p::{
        leaf::{GetNodes, NodeRequest, TrieOwner},
        requests::{LeafRequest, LeafResponse},
    };
    use leafsync_sync::{SnapPeer, SnapTransport, SyncPeer};
    let src = source(ACCOUNTS, SEED);
    let snaps = servers(&src, &[SnapBehaviour::Stateless]);
    let peer = SnapPeer::new(Arc::clone(&snaps[0]) as _);
    let pivot = snaps[0].head();
    let root = NodeRequest {
        owner: TrieOwner::Accounts,
        path: Default::default(),
        hash: pivot.state_root,
    };
    let req = LeafRequest::GetNodes(GetNodes { nodes: vec![root], max_bytes: 4096 });
    assert!(!peer.lacks_nodes(&pivot.state_root));
    let answer = peer.request_at(&pivot, req).await.unwrap();
    assert!(matches!(&answer, LeafResponse::Nodes(n) if n.nodes.is_empty()), "{answer:?}");
    assert!(peer.lacks_nodes(&pivot.state_root), "marked without the pivot's nodes");
    assert!(!peer.lacks_state(&pivot.state_root), "its ranges were not asked");
    assert!(unpenalised(&snaps[0]));
}

#[tokio::test(start_paused = true)]
async fn only_servers_without_state_stall_the_sync_without_penalty() {
    let src = source(300, SEED);
    let snaps = servers(&src, &[SnapBehaviour::EmptyRanges; 2]);
    let config =
        SyncConfig { stall_timeout: std::time::Duration::from_secs(5), ..Default::default() };
    let client = Arc::new(LeafDb::in_memory());
    let err = Syncer::new(client, config, probed_snap_peers(&snaps).await).run().await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(snaps.iter().all(|s| unpenalised(s)));
}

#[tokio::test(start_paused = true)]
async fn a_junk_range_server_is_detected_and_banned() {
    let (out, snaps) = liar_is_banned(SnapBehaviour::Junk, config()).await;
    assert!(snaps[1].penalties.lock().unwrap().contains(&PenaltyClass::Fatal));
    // A range read at the pivot's root that differs from it is a lie at its first chunk:
    // nothing of it is written or healed (a junk chunk was healed node by node, three per
    // identity, before the ban).
    assert_eq!((out.stats.chunks_healed, out.stats.healed_nodes), (0, 0), "{:?}", out.stats);
    assert!(!out.dropped.contains(&snaps[0].id));
}

#[tokio::test(start_paused = true)]
async fn a_server_sending_accounts_out_of_order_is_banned() {
    let (_, snaps) = liar_is_banned(SnapBehaviour::Unordered, config()).await;
    assert!(snaps[1].penalties.lock().unwrap().contains(&PenaltyClass::Fatal));
}

#[tokio::test(start_paused = true)]
async fn a_starving_server_is_cut_off_and_banned() {
    // One account per answer: a chunk takes more rounds than an honest server needs, and what
    // came by then fails the skeleton hash.
    let config = SyncConfig { chunk_target_bytes: 256 * 1024, ..Default::default() };
    liar_is_banned(SnapBehaviour::OneAtATime, config).await;
}

#[tokio::test(start_paused = true)]
async fn wrong_trie_nodes_and_silence_are_handled() {
    let src = source(ACCOUNTS, SEED);
    let snaps =
        servers(&src, &[SnapBehaviour::Honest, SnapBehaviour::WrongNodes, SnapBehaviour::Silent]);
    let out =
        sync_from(&src, probed_snap_peers(&snaps).await, config(), "snap wrong-nodes+silent").await;
    assert!(out.banned.contains(&snaps[1].id), "wrong-node server not banned");
    assert!(out.dropped.contains(&snaps[2].id), "silent server not dropped");
    assert!(unpenalised(&snaps[0]));
}

#[tokio::test(start_paused = true)]
async fn leaf_and_snap_peers_serve_one_sync_together() {
    let src = source(ACCOUNTS, SEED);
    let snaps = servers(&src, &[SnapBehaviour::Honest; 2]);
    let leafs: Vec<_> = (10..12u8)
        .map(|n| SimPeer::new(n, Arc::clone(&src), Behaviour::Honest, ACCOUNTS))
        .collect();
    let mut peers = dyn_peers(&leafs);
    peers.extend(probed_snap_peers(&snaps).await);
    let out = sync_from(&src, peers, config(), "leaf x2 + snap x2").await;
    assert!(out.banned.is_empty() && out.dropped.is_empty());
    assert_eq!(out.stats.chunks_healed, 0);
    let leaf_requests: u64 = leafs.iter().map(|p| p.requests.load(Ordering::Relaxed)).sum();
    println!("leaf requests={leaf_requests} snap requests={}", requests(&snaps));
    assert!(leaf_requests > 0 && requests(&snaps) > 0, "both sources served");
    assert!(snaps.iter().all(|s| unpenalised(s)));
    assert!(leafs.iter().all(|p| p.penalties.lock().unwrap().is_empty()));
}

/// The servers start here; it becomes the first pivot.
const START: u64 = 2;
/// The servers jump here after [`JUMP_AFTER`] snap requests together.
const JUMP_TO: u64 = 14;
const JUMP_AFTER: u64 = 60;

#[tokio::test(start_paused = true)]
async fn the_pivot_moves_mid_sync_to_the_servers_new_head() {
    let chain = chain(JUMP_TO);
    let counter = Arc::new(AtomicU64::new(0));
    let snaps: Vec<Arc<SimSnap>> = (0..3u8)
        .map(|i| {
            let counter = Arc::clone(&counter);
            let blocks = Mutex::new(chain[START as usize..JUMP_TO as usize].to_vec());
            let before: common::snap::BeforeHook = Box::new(move |db| {
                if counter.fetch_add(1, Ordering::Relaxed) >= JUMP_AFTER {
                    for (header, diff) in blocks.lock().unwrap().drain(..) {
                        assert!(db.apply_block(&header, &diff).unwrap().root_matches);
                    }
                }
            });
            let db = at(&chain, START);
            SimSnap::with(i + 1, db, SnapBehaviour::Honest, None, Some(before))
        })
        .collect();
    let config =
        SyncConfig { chunk_target_bytes: 16 * 1024, repivot_distance: 8, ..Default::default() };
    let target = at(&chain, JUMP_TO);
    let out = sync_from(&target, probed_snap_peers(&snaps).await, config, "snap repivot").await;
    assert_eq!(out.stats.repivots, 1);
    assert_eq!(out.pivot.number, JUMP_TO);
    assert!(out.banned.is_empty() && out.dropped.is_empty(), "{out:?}");
    // The servers answered the old root empty once they moved: skipped, not penalised.
    assert!(snaps.iter().all(|s| unpenalised(s)));
    println!("snap repivot: no_state answers before the move={}", out.stats.no_state_answers);
    let _ = CHAIN_ACCOUNTS;
}

#[tokio::test(start_paused = true)]
async fn a_stopped_snap_sync_resumes_without_starting_over() {
    // The snap/1 servers go away after 150 requests (as if the client were killed between two
    // atomic writes); a new syncer on the same leafdb resumes from the record and the tables.
    let src = source(ACCOUNTS, SEED);
    let root = src.account_root().unwrap();
    let full = sync_from(
        &src,
        probed_snap_peers(&servers(&src, &[SnapBehaviour::Honest])).await,
        config(),
        "snap full",
    )
    .await;
    let client = Arc::new(LeafDb::in_memory());
    let limited = servers(&src, &[SnapBehaviour::Limited(150); 2]);
    let err = Syncer::new(Arc::clone(&client), config(), probed_snap_peers(&limited).await)
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, leafsync_sync::SyncError::NoPeers), "{err}");
    let record =
        leafsync_sync::SyncProgress::decode(&client.sync_progress().unwrap().unwrap()).unwrap();
    assert_eq!(record.pivot.state_root, root);
    let honest = servers(&src, &[SnapBehaviour::Honest]);
    let resumed = Syncer::new(Arc::clone(&client), config(), probed_snap_peers(&honest).await)
        .run()
        .await
        .unwrap();
    assert_synced(&resumed, &client, &src, root);
    println!(
        "snap resume: full_bytes={} bytes_before_stop={} resumed_bytes={} resumed_chunks={}",
        full.stats.bytes_down,
        record.bytes_down,
        resumed.stats.bytes_down,
        resumed.stats.chunks_resumed
    );
    assert!(resumed.stats.bytes_down < full.stats.bytes_down - record.bytes_down / 2);
}

/// Mixes of two to four hostile snap/1 servers drawn from every behaviour, beside one honest
/// server, with and without batching (a fixed stream of draws: a failure names its round and
/// mix): every sync ends in the exact state, the honest server never penalised. The chunks of a
/// request are read side by side, so a liar's answers now land between the honest server's
/// reads of the same request.
#[tokio::test(start_paused = true)]
async fn any_mix_of_hostile_snap_servers_leaves_the_exact_state() {
    use SnapBehaviour::*;
    const KINDS: [SnapBehaviour; 8] =
        [EmptyRanges, Junk, OneAtATime, Unordered, WrongNodes, Silent, Limited(3), Stateless];
    let src = source(ACCOUNTS, SEED);
    let (mut draw, rounds) = common::drawn_rounds(45, 10);
    let mut pick = |n: usize| draw.below(n as u64) as usize;
    for round in 0..rounds {
        let mut behaviours = vec![Honest];
        behaviours.extend((0..2 + pick(3)).map(|_| KINDS[pick(KINDS.len())]));
        let batched = pick(2) == 0;
        let config = match batched {
            true => SyncConfig { chunk_target_bytes: TEST_CHUNK_BYTES, ..Default::default() },
            false => config(),
        };
        let snaps = servers(&src, &behaviours);
        let label = format!("round {round}: {behaviours:?}, batched: {batched}");
        sync_from(&src, probed_snap_peers(&snaps).await, config, &label).await;
        assert!(unpenalised(&snaps[0]), "{label}: the honest server was penalised");
    }
}

/// One to three snap/1 servers that change answers at random (`SnapBehaviour::Mutant`: each at
/// its own rate, from a change of any account field, slot key or body, of either's encoding, of
/// a proof node, code or trie node, to cut, doubled or reordered lists), beside one honest
/// server, with and without batching: every sync ends in the exact state within an hour of
/// (virtual) time, the honest server never penalised, and every mutant that told a lie the
/// client can prove (`common::snap_lies::provable`) penalised, unless it also claimed to have
/// no state for the root (which voids the read it ends). A failure names its round and seeds.
#[tokio::test(start_paused = true)]
async fn snap_servers_lying_at_random_cost_only_themselves() {
    let src = source(ACCOUNTS, SEED);
    let (mut draw, rounds) = common::drawn_rounds(46, ROUNDS_OF_MUTANTS);
    let mut changed = 0;
    for round in 0..rounds {
        let mut behaviours = vec![SnapBehaviour::Honest];
        let mutants = 1 + draw.below(3);
        behaviours.extend((0..mutants).map(|_| SnapBehaviour::Mutant {
            seed: draw.next_u64(),
            rate: [1, 4, 8][draw.below(3) as usize],
        }));
        let batched = draw.next_u64().is_multiple_of(2);
        let config = match batched {
            true => SyncConfig { chunk_target_bytes: TEST_CHUNK_BYTES, ..Default::default() },
            false => config(),
        };
        let snaps = servers(&src, &behaviours);
        let label = format!("round {round}: {behaviours:?}, batched: {batched}");
        let hour = std::time::Duration::from_secs(3600);
        let sync = sync_from(&src, probed_snap_peers(&snaps).await, config, &label);
        tokio::time::timeout(hour, sync)
            .await
            .unwrap_or_else(|_| panic!("{label}: the sync did not end within an hour"));
        assert!(unpenalised(&snaps[0]), "{label}: the honest server was penalised");
        common::assert_liars_paid(&snaps, &label);
        changed += snaps[1..]
            .iter()
            .filter_map(|s| s.mutator.as_ref())
            .map(|m| m.lock().unwrap().changed)
            .sum::<u64>();
    }
    // The mutants were asked and lied, not left idle.
    assert!(changed >= rounds, "{changed} answers changed");
}

/// Rounds of [`snap_servers_lying_at_random_cost_only_themselves`] (unless soaked).
const ROUNDS_OF_MUTANTS: u64 = 10;
