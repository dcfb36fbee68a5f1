//! Hostile peers next to one honest peer: junk chunks, empty answers, silence, disconnects
//! mid-response, wrong nodes. The client still rebuilds the exact state; the hostile peers are
//! banned or dropped, the honest one never.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, atomic::Ordering};

use alloy_primitives::B256;
use common::{
    Behaviour, Hook, Hooked, SimPeer, assert_same_state, assert_synced, dyn_peers,
    sim_serve_config, source,
};
use leafsync_leafdb::LeafDb;
use leafsync_p2p::{PenaltyClass, leaf::ChainHead, requests::LeafResponse};
use leafsync_serve::ServeConfig;
use leafsync_sync::{PeerFuture, SyncConfig, SyncMode, SyncPeer, Syncer, config};

const ACCOUNTS: u64 = 2000;
const TEST_CHUNK_BYTES: u64 = 16 * 1024;

/// Syncs from one honest peer (id 1) plus one peer per hostile behaviour; returns the outcome
/// and the peers.
async fn run(
    hostile: &[Behaviour],
    mode: SyncMode,
) -> (leafsync_sync::SyncOutcome, Vec<Arc<SimPeer>>) {
    // One unit a request, as before batching, so that every hostile peer gets its own units
    // (a batch stolen whole would leave it none); the batch tests below use `run_with`.
    let config = SyncConfig {
        chunk_target_bytes: TEST_CHUNK_BYTES,
        chunk_batch_bytes: 0,
        mode,
        ..Default::default()
    };
    run_with(hostile, config).await
}

/// [`run`] with `config`.
async fn run_with(
    hostile: &[Behaviour],
    config: SyncConfig,
) -> (leafsync_sync::SyncOutcome, Vec<Arc<SimPeer>>) {
    run_serving(hostile, config, sim_serve_config()).await
}

/// [`run_with`], every peer serving with `serve`.
async fn run_serving(
    hostile: &[Behaviour],
    config: SyncConfig,
    serve: ServeConfig,
) -> (leafsync_sync::SyncOutcome, Vec<Arc<SimPeer>>) {
    let src = source(ACCOUNTS, 11);
    let peer = |n: u8, b: Behaviour| {
        let mut peer = SimPeer::new(n, Arc::clone(&src), b, ACCOUNTS);
        Arc::get_mut(&mut peer).expect("not shared yet").serve = serve.clone();
        peer
    };
    let mut peers = vec![peer(1, Behaviour::Honest)];
    for (i, b) in hostile.iter().enumerate() {
        peers.push(peer(i as u8 + 2, *b));
    }
    let client = Arc::new(LeafDb::in_memory());
    let outcome = Syncer::new(Arc::clone(&client), config, dyn_peers(&peers)).run().await.unwrap();
    let root = src.account_root().unwrap();
    assert_synced(&outcome, &client, &src, root);
    let honest = peers[0].id;
    assert!(!outcome.banned.contains(&honest) && !outcome.dropped.contains(&honest));
    assert!(peers[0].penalties.lock().unwrap().is_empty(), "the honest peer was penalised");
    println!("hostile={hostile:?} stats={:?}", outcome.stats);
    (outcome, peers)
}

/// Syncs beside one peer of `behaviour` and asserts that it was banned with a fatal penalty.
async fn liar_is_banned(behaviour: Behaviour, mode: SyncMode) -> leafsync_sync::SyncOutcome {
    let (out, peers) = run(&[behaviour], mode).await;
    assert!(out.banned.contains(&peers[1].id), "{behaviour:?} peer not banned");
    assert!(peers[1].penalties.lock().unwrap().contains(&PenaltyClass::Fatal));
    out
}

/// At most `allowed` chunks of the hostile server plus one window of its requests were healed.
fn assert_heals_within(out: &leafsync_sync::SyncOutcome, allowed: u32) {
    let bound = u64::from(allowed) + leafsync_sync::config::MAX_IN_FLIGHT_PER_PEER as u64;
    assert!(out.stats.chunks_healed <= bound, "{:?}", out.stats);
}

/// Batches (account or storage) the hostile peers (all but the first) cut or poisoned.
fn tampered(peers: &[Arc<SimPeer>]) -> u64 {
    peers[1..].iter().map(|p| p.batches_tampered.load(Ordering::Relaxed)).sum()
}

/// Chunk target for the storage batch tests: a one-level skeleton (16 account chunks), so that
/// the large storages of this state are queued together and share `GetStorageChunk`s.
const BATCH_CHUNK_BYTES: u64 = 256 * 1024;

/// The storage batch tests: servers inline no storage over 200 bytes (a few slots), so this
/// state has hundreds of large storages and every peer is the rendezvous home of many.
async fn run_batches(hostile: &[Behaviour]) -> (leafsync_sync::SyncOutcome, Vec<Arc<SimPeer>>) {
    let config = SyncConfig { chunk_target_bytes: BATCH_CHUNK_BYTES, ..Default::default() };
    let serve = ServeConfig { inline_storage_bytes: 200, ..Default::default() };
    run_serving(hostile, config, serve).await
}

#[tokio::test(start_paused = true)]
async fn a_lie_in_one_storage_piece_costs_its_server_and_spares_the_other_pieces() {
    let (out, peers) = run_batches(&[Behaviour::PoisonFirstPiece]).await;
    let liar = &peers[1];
    let penalties = liar.penalties.lock().unwrap().clone();
    assert!(tampered(&peers) > 0, "the liar got no storage batch of two or more");
    assert!(penalties.contains(&PenaltyClass::High), "the poisoned piece is junk: {penalties:?}");
    // Only the poisoned pieces were healed: the honest pieces of its batches verified.
    let s = &out.stats;
    assert!(s.junk_answers >= 1, "{s:?}");
    assert_eq!(s.chunks_healed, s.junk_answers, "{s:?}");
    assert_eq!(s.chunks_verified + s.chunks_healed, s.chunks_done, "{s:?}");
    assert_eq!(s.final_repairs, 0, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn storage_batches_answered_in_part_are_finished_without_penalty() {
    // The partial server alone: every batch comes back with its first piece only, and the
    // rest is asked again until the whole state is there.
    let (out, peers) = run_batches(&[Behaviour::FirstPieceOnly]).await;
    let partial = &peers[1];
    assert!(tampered(&peers) > 0, "the partial server got no storage batch of two or more");
    assert!(partial.penalties.lock().unwrap().is_empty(), "an honest partial answer");
    assert!(!out.banned.contains(&partial.id) && !out.dropped.contains(&partial.id));
    assert_eq!(out.stats.chunks_healed, 0);
    assert_eq!(out.stats.final_repairs, 0, "no unit of a cut batch was lost: {:?}", out.stats);
}

#[tokio::test(start_paused = true)]
async fn junk_server_is_banned_after_the_threshold_and_its_chunks_healed() {
    let out = liar_is_banned(Behaviour::Junk, SyncMode::Leaf).await;
    // It got its first chunks before the ban; they failed verification and were healed.
    assert!(
        out.stats.chunks_healed >= u64::from(leafsync_sync::config::DEFAULT_JUNK_BAN_THRESHOLD)
    );
    assert!(out.stats.healed_nodes > 0);
}

#[tokio::test(start_paused = true)]
async fn empty_silent_and_disconnecting_peers_are_dropped() {
    let hostile = [Behaviour::Empty, Behaviour::Silent, Behaviour::Disconnects];
    let (out, peers) = run(&hostile, SyncMode::Leaf).await;
    let gone = |i: usize| out.banned.contains(&peers[i].id) || out.dropped.contains(&peers[i].id);
    assert!(out.dropped.contains(&peers[1].id), "empty peer kept");
    assert!(out.dropped.contains(&peers[2].id), "silent peer kept");
    assert!(out.dropped.contains(&peers[3].id), "disconnecting peer kept");
    assert!((1..=3).all(gone));
    assert!(out.stats.timeouts >= 1 && out.stats.empty_answers >= 1);
}

#[tokio::test(start_paused = true)]
async fn many_honest_servers_bound_the_junk_of_one() {
    // The seed's premise: with four honest servers beside a junk one, the junk server is banned
    // after at most the threshold of chunks, so at most that many chunks need heal.
    let (out, peers) = run(
        &[Behaviour::Honest, Behaviour::Honest, Behaviour::Honest, Behaviour::Junk],
        SyncMode::Leaf,
    )
    .await;
    assert!(out.banned.contains(&peers[4].id));
    assert!(out.banned.len() == 1 && out.dropped.is_empty());
    assert_heals_within(&out, leafsync_sync::config::DEFAULT_JUNK_BAN_THRESHOLD);
}

#[tokio::test(start_paused = true)]
async fn wrong_node_peer_is_banned_in_heal() {
    // Heal-only: every request is a GetNodes, so the wrong-node peer gets some and is caught by
    // the hash check on its first answer.
    liar_is_banned(Behaviour::WrongNodes, SyncMode::HealOnly).await;
}

#[tokio::test(start_paused = true)]
async fn a_peer_answering_codes_that_hash_to_something_else_is_banned() {
    // Codes are checked in batches (eight at a time where the CPU allows): a wrong one is still
    // caught, costs its server, and the codes come from the honest peer. Chunks are written as
    // they come: held back, this small state's codes would all be queued at its end, as one
    // batch that the first peer in line takes.
    let config = SyncConfig {
        chunk_target_bytes: TEST_CHUNK_BYTES,
        chunk_batch_bytes: 0,
        hold_bytes: 0,
        ..Default::default()
    };
    let (out, peers) = run_with(&[Behaviour::WrongCodes], config).await;
    assert!(out.banned.contains(&peers[1].id), "WrongCodes peer not banned");
    assert!(peers[1].penalties.lock().unwrap().contains(&PenaltyClass::Fatal));
}

#[tokio::test(start_paused = true)]
async fn forged_inline_storage_on_an_empty_account_is_junk_and_never_wedges() {
    // The confirmed wedge: one forged slot on an account whose storage root is the empty root
    // used to become a heal request for the empty root, which no honest peer can answer.
    let out = liar_is_banned(Behaviour::PoisonInline, SyncMode::Leaf).await;
    assert!(out.stats.junk_answers >= 1);
}

#[tokio::test(start_paused = true)]
async fn large_mark_on_empty_storage_is_junk() {
    liar_is_banned(Behaviour::LargeEmpty, SyncMode::Leaf).await;
}

#[tokio::test(start_paused = true)]
async fn inline_storage_contradicting_its_account_is_junk_and_refetched() {
    let out = liar_is_banned(Behaviour::InlineJunk, SyncMode::Leaf).await;
    assert!(out.stats.junk_answers >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_head_claim_far_from_the_announced_head_is_junk() {
    // Junk chunks claiming a head 5 blocks past the one their server announced: the claim is
    // checked against the announcement, so the lie does not excuse the junk.
    let out = liar_is_banned(Behaviour::LyingHead(5), SyncMode::Leaf).await;
    assert_heals_within(&out, leafsync_sync::config::DEFAULT_JUNK_BAN_THRESHOLD);
}

#[tokio::test(start_paused = true)]
async fn a_plausible_head_claim_costs_its_server_the_chunk_work_not_the_sync() {
    // Claiming the next block (within the announcement slack) is not provably a lie: the server
    // is treated as stale, its chunks are healed, and after a few it gets no more chunks while
    // the honest peer can take them, so it cannot turn the sync into a heal.
    let (out, _peers) = run(&[Behaviour::LyingHead(1)], SyncMode::Leaf).await;
    assert_heals_within(&out, leafsync_sync::config::MAX_STALE_HEALS);
}

/// Announces its inner peer's head and the block after it by turns, one a request.
#[derive(Clone, Default)]
struct FlipHead(Arc<std::sync::atomic::AtomicU64>);

impl Hook for FlipHead {
    fn head(&self, inner: &SimPeer) -> ChainHead {
        let head = inner.head();
        let next = self.0.load(Ordering::Relaxed) % 2;
        ChainHead { number: head.number + next, hash: B256::repeat_byte(next as u8), ..head }
    }
    fn before(&self, _inner: &SimPeer) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Syncs with `config` at the honest peer's head (whatever heads the others announce) from one
/// honest peer and the hooked liars `make` builds (one per peer number from 2 on); asserts the
/// exact state and that the honest peer was never penalised.
async fn beside_hooked_liars(
    liars: u8,
    make: impl Fn(Arc<SimPeer>) -> Arc<dyn SyncPeer>,
    behaviour: Behaviour,
    config: SyncConfig,
) -> leafsync_sync::SyncOutcome {
    let src = source(ACCOUNTS, 11);
    let honest = SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, ACCOUNTS);
    let mut peers: Vec<Arc<dyn SyncPeer>> = vec![honest.clone()];
    for n in 2..2 + liars {
        peers.push(make(SimPeer::new(n, Arc::clone(&src), behaviour, ACCOUNTS)));
    }
    let config = SyncConfig { pivot: Some(honest.head()), ..config };
    let client = Arc::new(LeafDb::in_memory());
    let out = Syncer::new(Arc::clone(&client), config, peers).run().await.unwrap();
    assert_synced(&out, &client, &src, src.account_root().unwrap());
    assert!(honest.penalties.lock().unwrap().is_empty(), "the honest peer was penalised");
    out
}

/// Syncs beside a server of junk claiming the block after its own, whose announced head `hook`
/// moves: it is benched for stale chunks after a few, and `hook`'s moves do not lift it.
async fn a_stale_server_stays_benched<H: Hook + Clone>(hook: H) {
    let config = SyncConfig {
        chunk_target_bytes: TEST_CHUNK_BYTES,
        chunk_batch_bytes: 0,
        ..Default::default()
    };
    let hooked = |inner| Arc::new(Hooked { inner, hook: hook.clone() }) as Arc<dyn SyncPeer>;
    let out = beside_hooked_liars(1, hooked, Behaviour::LyingHead(1), config).await;
    assert_heals_within(&out, config::MAX_STALE_HEALS);
}

#[tokio::test(start_paused = true)]
async fn a_stale_server_flipping_its_head_stays_benched() {
    // A head that moves to and fro is no sign of catching up.
    a_stale_server_stays_benched(FlipHead::default()).await;
}

#[tokio::test(start_paused = true)]
async fn a_stale_server_running_ahead_of_the_others_stays_benched() {
    // Nor is a head ahead of every other peer's.
    a_stale_server_stays_benched(Advancing::default()).await;
}

/// Announces a block further past its inner peer's head at every request (of any peer sharing
/// its counter), and has its pieces claim the block after the one announced.
#[derive(Clone, Default)]
struct Advancing(Arc<std::sync::atomic::AtomicU64>);

impl Hook for Advancing {
    fn head(&self, inner: &SimPeer) -> ChainHead {
        let head = inner.head();
        let ahead = self.0.load(Ordering::Relaxed);
        ChainHead { number: head.number + ahead, hash: B256::with_last_byte(ahead as u8), ..head }
    }
    fn before(&self, _inner: &SimPeer) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn around(&self, request: PeerFuture) -> PeerFuture {
        let ahead = Arc::clone(&self.0);
        Box::pin(async move {
            let mut answer = request.await?;
            let claim = ahead.load(Ordering::Relaxed) + 1;
            match &mut answer {
                LeafResponse::Chunk(c) => c.pieces.iter_mut().for_each(|p| p.head_number = claim),
                LeafResponse::StorageChunk(c) => {
                    c.pieces.iter_mut().for_each(|p| p.head_number = claim)
                }
                _ => {}
            }
            Ok(answer)
        })
    }
}

/// Syncs with chunks capped at 20 KiB, so that the honest server calls most units too large,
/// truly, beside three liars `make` builds that answer as `behaviour` says; asserts that the
/// honest server split more than one unit and that none of its splits was judged implausible.
async fn honest_splits_beside_liars(
    make: impl Fn(Arc<SimPeer>) -> Arc<dyn SyncPeer>,
    behaviour: Behaviour,
) -> leafsync_sync::SyncOutcome {
    let config = SyncConfig {
        chunk_target_bytes: 1 << 30,
        chunk_max_bytes: 20 * 1024,
        chunk_batch_bytes: 0,
        ..Default::default()
    };
    let out = beside_hooked_liars(3, make, behaviour, config).await;
    assert!(out.stats.chunks_split > 1, "{:?}", out.stats);
    assert_eq!(out.stats.implausible_splits, 0, "{:?}", out.stats);
    out
}

#[tokio::test(start_paused = true)]
async fn a_liars_short_pieces_do_not_make_an_honest_split_implausible() {
    // Chunks capped at 20 KiB: the honest server calls most units too large, truly, and their
    // units go to the other peers first, three colluding liars that answer each with its first
    // leaf claiming the next block (and move their heads on together, a majority, so they are
    // never benched for it). Those pieces are healed; their size says nothing of the truth, so
    // they cannot make the honest claims look implausible and bench the one honest server.
    let colluding = Advancing::default();
    let hooked = |inner| Arc::new(Hooked { inner, hook: colluding.clone() }) as Arc<dyn SyncPeer>;
    let out = honest_splits_beside_liars(hooked, Behaviour::ShortStale).await;
    assert!(out.stats.chunks_healed > 0, "{:?}", out.stats);
}

/// A server answering "too large" for everything: the units it splits go to the other peers
/// first, so it meets a single leaf only where a unit it called too large was one. With units
/// of about one account (a chunk target of 1 KiB) that is most of them: junk, and it is banned.
#[tokio::test(start_paused = true)]
async fn too_large_for_a_single_leaf_is_junk() {
    let config =
        SyncConfig { chunk_target_bytes: 1024, chunk_batch_bytes: 0, ..Default::default() };
    let (out, peers) = run_with(&[Behaviour::TooLarge], config).await;
    assert!(out.banned.contains(&peers[1].id), "the liar was not banned");
    assert!(peers[1].penalties.lock().unwrap().contains(&PenaltyClass::Fatal));
}

/// "Too large" for a single leaf read a block past the pivot proves nothing (the prefix may
/// have gained a leaf since, and an honest server out of time between two leaves says so).
/// Two such quick servers beside a slow honest one: the units one of them splits turn out
/// leaves, which the other, idle while the honest server is busy, is asked next and calls too
/// large as well. Neither is penalised; each such claim counts as an implausible split (after
/// `MAX_IMPLAUSIBLE_SPLITS` no more chunks), and the sync ends exact from the honest server.
/// The same claims at the pivot's head are junk (`too_large_for_a_single_leaf_is_junk`).
#[tokio::test(start_paused = true)]
async fn too_large_for_a_single_leaf_a_block_ahead_costs_no_penalty() {
    let src = source(ACCOUNTS, 11);
    let servers: Vec<_> = [Behaviour::Honest, Behaviour::TooLargeAhead, Behaviour::TooLargeAhead]
        .into_iter()
        .zip(1..)
        .map(|(behaviour, i)| SimPeer::new(i, Arc::clone(&src), behaviour, ACCOUNTS))
        .collect();
    let mut peers = dyn_peers(&servers[1..]);
    let slow = Wait::Each(std::time::Duration::from_millis(500));
    peers.push(Arc::new(common::Hooked { inner: Arc::clone(&servers[0]), hook: slow }));
    let client = Arc::new(LeafDb::in_memory());
    let config =
        SyncConfig { chunk_target_bytes: 1024, chunk_batch_bytes: 0, ..Default::default() };
    let out = Syncer::new(Arc::clone(&client), config, peers).run().await.unwrap();
    assert_synced(&out, &client, &src, src.account_root().unwrap());
    for server in &servers {
        assert!(!out.banned.contains(&server.id), "an unprovable claim banned its server");
        let penalties = server.penalties.lock().unwrap().clone();
        assert!(
            !penalties.iter().any(|p| matches!(p, PenaltyClass::High | PenaltyClass::Fatal)),
            "{penalties:?}"
        );
    }
    // Each split is one implausible claim at most: more are claims on units known to be a
    // single leaf (the other server's splits).
    assert!(
        out.stats.implausible_splits > out.stats.chunks_split,
        "no single leaf was called too large: {:?}",
        out.stats
    );
}

/// With chunks of `target` bytes, one a request: the units of an honest sync, and a sync beside
/// a server calling every chunk of two or more leaves too large.
async fn beside_a_too_large_liar(target: u64) -> (u64, leafsync_sync::SyncOutcome) {
    let config =
        SyncConfig { chunk_target_bytes: target, chunk_batch_bytes: 0, ..Default::default() };
    let (honest, _) = run_with(&[Behaviour::Honest; 3], config.clone()).await;
    let hostile = [Behaviour::Honest, Behaviour::Honest, Behaviour::TooLargeAboveOne];
    let (out, _) = run_with(&hostile, config).await;
    (honest.stats.chunks_total, out)
}

/// A server calling chunks too large whose units then hold far less than it was asked for
/// (here 256 units of ~8 accounts, a few KiB, against 2 MiB) gets no more chunks after
/// `MAX_IMPLAUSIBLE_SPLITS` such claims are judged: it splits 26 units, where it split every
/// unit it was the home of (64, a quarter of them). The bound: an eighth of the units.
#[tokio::test(start_paused = true)]
async fn a_server_calling_small_chunks_too_large_gets_no_more_chunks() {
    let (units, out) = beside_a_too_large_liar(TEST_CHUNK_BYTES).await;
    assert!(out.stats.implausible_splits >= u64::from(config::MAX_IMPLAUSIBLE_SPLITS));
    assert!(
        out.stats.chunks_split <= units / 8,
        "{} splits of {units} units: the server kept getting chunks",
        out.stats.chunks_split
    );
}

/// A server answering "too large" for every chunk of more than one leaf (never provably: a
/// chunk can be too large for an honest server's time budget) splits each unit it is asked
/// once: the children of its splits go to the other peers first, where they came back to it
/// and were split again down to single leaves (with 16 units of ~125 accounts: 47 splits, 246
/// chunks and 348 requests a unit a request, against 4, 76 and 92 now).
#[tokio::test(start_paused = true)]
async fn too_large_for_every_chunk_splits_each_unit_once() {
    let (units, out) = beside_a_too_large_liar(4 * TEST_CHUNK_BYTES).await;
    assert!(out.stats.chunks_split > 0, "the liar was asked");
    assert!(
        out.stats.chunks_split <= units,
        "{} splits for {units} units: a liar's splits were split again",
        out.stats.chunks_split
    );
}

/// Answers honestly, but only after a wait (of virtual time).
#[derive(Clone, Copy)]
enum Wait {
    /// Nothing until this moment: a fast honest server hit by a long pause.
    Until(tokio::time::Instant),
    /// This long for every request: a slow honest server (a congested link).
    Each(std::time::Duration),
}

impl common::Hook for Wait {
    fn around(&self, request: leafsync_sync::PeerFuture) -> leafsync_sync::PeerFuture {
        let wait = *self;
        Box::pin(async move {
            match wait {
                Wait::Until(until) => tokio::time::sleep_until(until).await,
                Wait::Each(delay) => tokio::time::sleep(delay).await,
            }
            request.await
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_honest_peer_is_asked_again_not_banned() {
    // The only server stalls for 25 s (every request times out, twice): it is dropped for
    // silence, rests, and is asked again; the sync finishes from it and it is never banned.
    let src = source(ACCOUNTS, 11);
    let inner = SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, ACCOUNTS);
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(25);
    let peer: Arc<dyn leafsync_sync::SyncPeer> =
        Arc::new(common::Hooked { inner: Arc::clone(&inner), hook: Wait::Until(until) });
    let client = Arc::new(LeafDb::in_memory());
    let config = SyncConfig { chunk_target_bytes: TEST_CHUNK_BYTES, ..Default::default() };
    let out = Syncer::new(Arc::clone(&client), config, vec![peer]).run().await.unwrap();
    let root = src.account_root().unwrap();
    assert_same_state(&client, &src, root);
    assert!(out.stats.timeouts >= 2, "{:?}", out.stats);
    assert!(out.banned.is_empty());
    let penalties = inner.penalties.lock().unwrap();
    assert!(penalties.iter().all(|p| *p == PenaltyClass::Low), "{penalties:?}");
}

/// Syncs from three quick honest servers and one of `behaviour` that answers each request
/// `delay` late, within the request timeout, with `config`: the exact state, nobody dropped or
/// penalised; returns the outcome and the virtual time the sync took.
async fn beside_a_slow_server(
    behaviour: Behaviour,
    delay: std::time::Duration,
    config: SyncConfig,
) -> (leafsync_sync::SyncOutcome, std::time::Duration) {
    let src = source(ACCOUNTS, 11);
    let servers: Vec<_> = (1..=4)
        .map(|i| {
            let behaviour = if i == 4 { behaviour } else { Behaviour::Honest };
            SimPeer::new(i, Arc::clone(&src), behaviour, ACCOUNTS)
        })
        .collect();
    let mut peers = dyn_peers(&servers[..3]);
    peers
        .push(Arc::new(common::Hooked { inner: Arc::clone(&servers[3]), hook: Wait::Each(delay) }));
    let client = Arc::new(LeafDb::in_memory());
    let start = tokio::time::Instant::now();
    let out = Syncer::new(Arc::clone(&client), config, peers).run().await.unwrap();
    let elapsed = start.elapsed();
    assert_same_state(&client, &src, src.account_root().unwrap());
    assert!(out.banned.is_empty() && out.dropped.is_empty(), "{out:?}");
    for peer in &servers {
        assert!(peer.penalties.lock().unwrap().is_empty(), "peer {} penalised", peer.id);
    }
    (out, elapsed)
}

#[tokio::test(start_paused = true)]
async fn a_slow_honest_peer_does_not_hold_the_sync_back() {
    // The chunks whose rendezvous home is the slow one (8 s late) wait for it `steal_after` (1
    // s) at most, then a quick server takes them: the sync ends within a few of its late
    // answers (with stealing off it took 64 s).
    let delay = std::time::Duration::from_secs(8);
    let config = SyncConfig {
        chunk_target_bytes: TEST_CHUNK_BYTES,
        chunk_batch_bytes: 0,
        ..Default::default()
    };
    let (out, elapsed) = beside_a_slow_server(Behaviour::Honest, delay, config).await;
    assert!(out.stats.chunks_stolen > 0, "{:?}", out.stats);
    assert!(elapsed < 3 * delay, "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_server_answering_one_piece_a_batch_does_not_hold_the_rest() {
    // Batches of many units, answered 8 s late with their first piece only: the units left out
    // of so small an answer go to another peer first, where before they went back to the slow
    // server (their home) at once, a piece a request.
    let delay = std::time::Duration::from_secs(8);
    let config = SyncConfig { chunk_target_bytes: TEST_CHUNK_BYTES, ..Default::default() };
    let (out, elapsed) = beside_a_slow_server(Behaviour::FirstPieceOnly, delay, config).await;
    assert!(out.stats.chunks_done > 16, "{:?}", out.stats);
    assert!(elapsed < 3 * delay, "{elapsed:?}");
}

/// The hostile behaviours the drawn mixes take from.
const DRAWN_KINDS: [Behaviour; 16] = {
    use Behaviour::*;
    [
        Junk,
        Empty,
        Silent,
        Disconnects,
        Limited(3),
        WrongNodes,
        WrongCodes,
        PoisonInline,
        LargeEmpty,
        InlineJunk,
        LyingHead(5),
        TooLarge,
        FirstPieceOnly,
        PoisonFirstPiece,
        ShortStale,
        MarkLarge,
    ]
};

/// Mixes of two to four hostile peers drawn from every behaviour, beside one honest peer, with
/// and without batching (a fixed stream of draws: a failure names its round and mix): every
/// sync ends in the exact state, the honest peer never penalised (`run_serving` asserts both).
/// The scenarios above take one behaviour at a time; a liar's verdict must not depend on who
/// else lies beside it.
#[tokio::test(start_paused = true)]
async fn any_mix_of_hostile_peers_leaves_the_exact_state() {
    let (mut draw, rounds) = common::drawn_rounds(44, 16);
    let mut pick = |n: usize| draw.below(n as u64) as usize;
    for round in 0..rounds {
        let mix: Vec<Behaviour> =
            (0..2 + pick(3)).map(|_| DRAWN_KINDS[pick(DRAWN_KINDS.len())]).collect();
        let batched = pick(2) == 0;
        println!("round {round}: {mix:?}, batched: {batched}");
        let (config, serve) = configs(batched);
        run_serving(&mix, config, serve).await;
    }
}

/// The client's and the servers' settings of a drawn sync: batched (a one-level skeleton, many
/// large storages sharing requests) or one unit a request.
fn configs(batched: bool) -> (SyncConfig, ServeConfig) {
    if batched {
        let config = SyncConfig { chunk_target_bytes: BATCH_CHUNK_BYTES, ..Default::default() };
        (config, ServeConfig { inline_storage_bytes: 200, ..Default::default() })
    } else {
        let config = SyncConfig {
            chunk_target_bytes: TEST_CHUNK_BYTES,
            chunk_batch_bytes: 0,
            ..Default::default()
        };
        (config, sim_serve_config())
    }
}

/// One to three peers that change answers at random (`Behaviour::Mutant`: each at its own
/// rate, from a change of any field of a leaf, slot, piece, node or code to cut, doubled or
/// reordered lists), beside one honest peer, with and without batching: every sync ends in the
/// exact state within an hour of (virtual) time, the honest peer never penalised, and every
/// mutant that told a lie the client can prove penalised (`Mutator::provable`). The drawn
/// stream is fixed: a failure names its round and its mutants' seeds.
#[tokio::test(start_paused = true)]
async fn peers_lying_at_random_cost_only_themselves() {
    let (mut draw, rounds) = common::drawn_rounds(45, ROUNDS_OF_MUTANTS);
    let mut changed = 0;
    for round in 0..rounds {
        let mutants = 1 + draw.below(3);
        let mix: Vec<Behaviour> = (0..mutants)
            .map(|_| Behaviour::Mutant {
                seed: draw.next_u64(),
                rate: [1, 4, 8][draw.below(3) as usize],
            })
            .collect();
        let batched = draw.next_u64().is_multiple_of(2);
        println!("round {round}: {mix:?}, batched: {batched}");
        let (config, serve) = configs(batched);
        let hour = std::time::Duration::from_secs(3600);
        let (out, peers) = tokio::time::timeout(hour, run_serving(&mix, config, serve))
            .await
            .unwrap_or_else(|_| panic!("round {round}: the sync did not end within an hour"));
        let round_changed = common::answers_changed(&peers);
        println!(
            "round {round}: {round_changed} answers changed, banned {}, dropped {}",
            out.banned.len(),
            out.dropped.len()
        );
        common::assert_liars_paid(&peers, &format!("round {round}"));
        changed += round_changed;
    }
    // The mutants were asked and lied, not left idle.
    assert!(changed >= rounds, "{changed} answers changed");
}

/// Rounds of [`peers_lying_at_random_cost_only_themselves`] (unless soaked).
const ROUNDS_OF_MUTANTS: u64 = 24;

/// The drawn syncs above run on a current-thread runtime, where each answer is prepared in the
/// loop as it arrives. A daemon's runtime has worker threads: there a chunk answer is checked
/// and hashed on a blocking thread while the loop applies others (`prepare.rs`), and verdicts
/// reach the loop in the order their hashing ends. Liars that answer at once (this runs in real
/// time: no silence, no timeouts), drawn as above and mutants among them, with and without
/// batching: every sync ends in the exact state, the honest peer never penalised, every
/// provable lie penalised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liars_cost_only_themselves_with_answers_prepared_on_other_threads() {
    use Behaviour::*;
    // Those that answer at once.
    let kinds: Vec<Behaviour> = DRAWN_KINDS
        .into_iter()
        .filter(|kind| !matches!(kind, Silent | Disconnects | Limited(_)))
        .collect();
    let (mut draw, rounds) = common::drawn_rounds(47, 8);
    let mut changed = 0;
    for round in 0..rounds {
        let mut mix: Vec<Behaviour> = (0..1 + draw.below(2))
            .map(|_| kinds[draw.below(kinds.len() as u64) as usize])
            .collect();
        mix.push(Mutant { seed: draw.next_u64(), rate: [1, 4, 8][draw.below(3) as usize] });
        let batched = draw.next_u64().is_multiple_of(2);
        println!("round {round}: {mix:?}, batched: {batched}");
        let (config, serve) = configs(batched);
        let minutes = std::time::Duration::from_secs(300);
        let (_, peers) = tokio::time::timeout(minutes, run_serving(&mix, config, serve))
            .await
            .unwrap_or_else(|_| panic!("round {round}: the sync did not end within 5 minutes"));
        common::assert_liars_paid(&peers, &format!("round {round}"));
        changed += common::answers_changed(&peers);
    }
    // The mutants were asked and lied, not left idle.
    assert!(changed >= rounds, "{changed} answers changed");
}

/// Syncs from `estimates.len()` honest servers of a 20,000-account state, each announcing its
/// estimate; returns the requests the sync took.
async fn requests_with_estimates(estimates: &[u64]) -> u64 {
    const STATE: u64 = 20_000;
    let src = source(STATE, 12);
    let peers: Vec<Arc<SimPeer>> = estimates
        .iter()
        .enumerate()
        .map(|(i, e)| SimPeer::new(i as u8 + 1, Arc::clone(&src), Behaviour::Honest, *e))
        .collect();
    let client = Arc::new(LeafDb::in_memory());
    let config = SyncConfig { chunk_target_bytes: TEST_CHUNK_BYTES, ..Default::default() };
    let out = Syncer::new(Arc::clone(&client), config, dyn_peers(&peers)).run().await.unwrap();
    assert_synced(&out, &client, &src, src.account_root().unwrap());
    println!("estimates={estimates:?} requests={}", out.stats.requests);
    out.stats.requests
}

/// A peer's account estimate is its word. One announcing `u64::MAX` beside an honest one chose
/// the skeleton depth (the upper of two estimates: the deepest, 6) and sized every unit as a
/// whole answer: one request per unit, 20,060 requests here against 10 (~16M on mainnet). The
/// lower median is taken (14 requests), each estimate at most `MAX_PLAUSIBLE_ACCOUNTS`; alone,
/// the liar still deepens the skeleton (bounded by the trie itself), but the sizes of the
/// verified pieces correct the batching (158 requests; on mainnet's scale about the honest
/// count, the units 16 times smaller and batched).
#[tokio::test]
async fn an_inflated_account_estimate_neither_deepens_the_skeleton_nor_unbatches_the_units() {
    let honest = requests_with_estimates(&[20_000]).await;
    let beside = requests_with_estimates(&[20_000, u64::MAX]).await;
    assert!(beside <= honest * 2, "{beside} requests beside the liar, {honest} without");
    let alone = requests_with_estimates(&[u64::MAX]).await;
    assert!(alone <= honest * 20, "{alone} requests from the liar alone, {honest} honest");
}

/// An honest server calls units too large, truly, because of their inline storage; their units
/// go to three liars first, which answer each with every inline storage marked "large". Those
/// pieces verify (an account's hash does not cover its storage) and hold only the leaves, so the
/// claims looked implausible by their size and benched the one honest server from chunks. A
/// claim whose piece marks a storage large is left unjudged.
#[tokio::test(start_paused = true)]
async fn large_marks_on_small_storages_do_not_make_an_honest_split_implausible() {
    let plain = |inner| inner as Arc<dyn SyncPeer>;
    honest_splits_beside_liars(plain, Behaviour::MarkLarge).await;
}
