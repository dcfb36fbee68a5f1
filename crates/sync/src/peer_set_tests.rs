#![allow(clippy::unwrap_used)]

use alloy_primitives::{B256, B512};
use leafsync_p2p::requests::LeafRequest;

use super::*;
use crate::{peer::PeerFuture, test_log::Captured};

/// A peer that is never asked: only its id and head matter here.
struct Idle(PeerId);

/// The idle peer whose id is the byte `n` repeated.
fn idle(n: u8) -> Arc<dyn SyncPeer> {
    Arc::new(Idle(B512::repeat_byte(n)))
}

impl SyncPeer for Idle {
    fn id(&self) -> PeerId {
        self.0
    }
    fn head(&self) -> ChainHead {
        ChainHead::default()
    }
    fn account_estimate(&self) -> u64 {
        0
    }
    fn request(&self, _: LeafRequest) -> PeerFuture {
        Box::pin(futures::future::pending())
    }
    fn penalise(&self, _: PenaltyClass) {}
}

fn set(n: u8) -> PeerSet {
    PeerSet::new((1..=n).map(idle).collect(), 3)
}

#[test]
fn junk_costs_high_penalties_until_the_threshold_bans() {
    let mut peers = set(1);
    let mut stats = SyncStats::default();
    assert_eq!(peers.record(0, Verdict::Junk("j"), &mut stats), Some(PenaltyClass::High));
    assert_eq!(peers.record(0, Verdict::Junk("j"), &mut stats), Some(PenaltyClass::High));
    assert_eq!(peers.record(0, Verdict::Junk("j"), &mut stats), Some(PenaltyClass::Fatal));
    // Answers still in flight after the ban cost nothing more.
    assert_eq!(peers.record(0, Verdict::Junk("j"), &mut stats), None);
    assert_eq!(peers.record(0, Verdict::Invalid("i"), &mut stats), None);
    assert_eq!(peers.ids(Standing::Banned), vec![B512::repeat_byte(1)]);
    assert_eq!((stats.junk_answers, stats.peers_banned), (4, 1));
}

#[test]
fn silence_drops_with_a_low_penalty_and_a_rest_not_a_ban() {
    let mut peers = set(2);
    let mut stats = SyncStats::default();
    assert_eq!(peers.record(0, Verdict::Timeout, &mut stats), None);
    assert_eq!(peers.record(0, Verdict::Timeout, &mut stats), Some(PenaltyClass::Low));
    assert_eq!(peers.active(), vec![1]);
    assert!(peers.any_resting());
    // An answer in between forgives a timeout.
    assert_eq!(peers.record(1, Verdict::Timeout, &mut stats), None);
    peers.answered(1);
    assert_eq!(peers.record(1, Verdict::Timeout, &mut stats), None);
    // A disconnect drops without a penalty; a busy peer is no fault.
    assert_eq!(peers.record(1, Verdict::Busy, &mut stats), None);
    assert_eq!(peers.record(1, Verdict::Disconnected, &mut stats), None);
    assert!(peers.active().is_empty());
    assert_eq!(stats.peers_dropped, 2);
}

#[test]
fn empty_answers_drop_only_when_consecutive() {
    let mut peers = set(1);
    let mut stats = SyncStats::default();
    for _ in 1..MAX_CONSECUTIVE_EMPTIES {
        assert_eq!(peers.record(0, Verdict::Empty, &mut stats), None);
    }
    assert_eq!(peers.record(0, Verdict::Delivered, &mut stats), None);
    for _ in 1..MAX_CONSECUTIVE_EMPTIES {
        assert_eq!(peers.record(0, Verdict::Empty, &mut stats), None);
    }
    assert_eq!(peers.record(0, Verdict::Empty, &mut stats), Some(PenaltyClass::Low));
    // A new session of a dropped peer brings it back; a banned one stays out.
    peers.add(idle(1), &mut stats);
    assert_eq!(peers.active(), vec![0]);
    peers.record(0, Verdict::Invalid("i"), &mut stats);
    peers.add(idle(1), &mut stats);
    assert!(peers.active().is_empty());
}

#[test]
fn a_stale_server_is_benched_from_chunks_while_its_head_stays() {
    let mut peers = set(2);
    for _ in 0..MAX_STALE_HEALS {
        peers.stale_chunk(0, ChainHead::default());
    }
    // Benched: no chunks, and its pieces still coming are imported only where they verify.
    let roster = peers.roster(&ChainHead::default());
    assert_eq!(roster.chunks, vec![1]);
    assert_eq!(roster.active.len(), 2);
    assert_eq!(roster.serving.len(), 2);
    assert!(!peers.takes_chunks(0) && peers.takes_chunks(1));
    // Alone, it gets the chunks again, and they are imported whatever they hold (and healed).
    let mut alone = set(1);
    for _ in 0..MAX_STALE_HEALS {
        alone.stale_chunk(0, ChainHead::default());
    }
    assert_eq!(alone.roster(&ChainHead::default()).chunks, vec![0]);
    assert!(alone.takes_chunks(0));
}

/// A peer that said it lacks the flat state of the root `ranges`, or its trie nodes (`nodes`).
struct Lacking {
    id: PeerId,
    ranges: bool,
    nodes: bool,
}

impl SyncPeer for Lacking {
    fn id(&self) -> PeerId {
        self.id
    }
    fn head(&self) -> ChainHead {
        ChainHead::default()
    }
    fn account_estimate(&self) -> u64 {
        0
    }
    fn request(&self, _: LeafRequest) -> PeerFuture {
        Box::pin(futures::future::pending())
    }
    fn lacks_state(&self, _: &B256) -> bool {
        self.ranges
    }
    fn lacks_nodes(&self, _: &B256) -> bool {
        self.nodes
    }
    fn penalise(&self, _: PenaltyClass) {}
}

/// A peer without the pivot's flat state (a geth generating its snapshot) gets no chunks but
/// still trie nodes and codes; one without its trie nodes gets no nodes but chunks and codes;
/// one without either, codes only (they name no root).
#[test]
fn a_peer_lacking_ranges_or_nodes_gets_the_other_work() {
    let lacking = |n: u8, ranges, nodes| {
        Arc::new(Lacking { id: B512::repeat_byte(n), ranges, nodes }) as Arc<dyn SyncPeer>
    };
    let peers =
        vec![idle(1), lacking(2, true, false), lacking(3, false, true), lacking(4, true, true)];
    let roster = PeerSet::new(peers, 3).roster(&ChainHead::default());
    let sorted = |mut v: Vec<usize>| {
        v.sort_unstable();
        v
    };
    assert_eq!(sorted(roster.chunks), vec![0, 2]);
    assert_eq!(sorted(roster.serving), vec![0, 1]);
    assert_eq!(sorted(roster.active), vec![0, 1, 2, 3], "codes go to every active peer");
}

#[test]
fn a_peer_that_times_out_is_left_one_request() {
    let mut peers = set(2);
    let mut stats = SyncStats::default();
    assert_eq!(peers.slot(0).window.window(), crate::window::INITIAL_WINDOW);
    // Peer 0 answers 1 MB in 10 ms, twice: measured, its window opens.
    for _ in 0..2 {
        peers.sent(0, false);
        assert!(peers.slot(0).has_room());
        peers.sent(0, false);
        peers.finished(0, Some((1 << 20, std::time::Duration::from_millis(10))));
        peers.finished(0, Some((1 << 20, std::time::Duration::from_millis(10))));
    }
    assert_eq!(peers.slot(0).in_flight, 0);
    // Peer 1 stalls: its requests finish without an answer, as timeouts.
    peers.sent(1, false);
    peers.sent(1, false);
    assert!(!peers.slot(1).has_room());
    peers.finished(1, None);
    peers.record(1, Verdict::Timeout, &mut stats);
    assert_eq!(peers.slot(1).window.window(), 1);
    assert!(!peers.slot(1).has_room());
    peers.finished(1, None);
    assert!(peers.slot(1).has_room());
    // The roster puts the peer that delivered first, and a new one before both.
    peers.add(idle(9), &mut stats);
    assert_eq!(peers.roster(&ChainHead::default()).active, vec![2, 0, 1]);
}

/// A busy answer (the session holds as many of our requests unanswered as it may) rests the
/// peer until one of its requests finishes or `BUSY_REST` passes: without the rest the syncer
/// would ask it again at once, in a loop, for as long as its timed-out requests go unanswered.
#[tokio::test(start_paused = true)]
async fn a_busy_peer_rests_until_a_request_finishes_or_a_short_while() {
    let mut peers = set(1);
    let mut stats = SyncStats::default();
    peers.sent(0, false);
    peers.finished(0, None);
    assert_eq!(peers.record(0, Verdict::Busy, &mut stats), None);
    assert!(peers.slot(0).in_flight < peers.slot(0).window.window());
    assert!(!peers.slot(0).has_room(), "resting after a busy answer");
    tokio::time::advance(BUSY_REST).await;
    assert!(peers.slot(0).has_room(), "the rest is short");
    peers.sent(0, false);
    peers.finished(0, None);
    peers.record(0, Verdict::Busy, &mut stats);
    assert!(!peers.slot(0).has_room());
    // Another request of the peer finishes: a slot may be free again.
    peers.sent(0, false);
    peers.finished(0, Some((1000, std::time::Duration::from_millis(10))));
    assert!(peers.slot(0).has_room(), "a finished request ends the rest");
    assert_eq!(stats.peers_dropped, 0, "busy is no fault");
}

/// With the table full and no dropped slot, a newcomer takes a banned peer's idle slot (else
/// banned throwaway identities would fill the table and turn every honest newcomer away); the
/// banned id stays out and is still reported banned.
#[test]
fn a_full_table_of_banned_peers_still_takes_newcomers_and_keeps_the_banned_out() {
    let mut peers = PeerSet::new((0..MAX_SYNC_PEERS).map(|i| idle(i as u8)).collect(), 3);
    let mut stats = SyncStats::default();
    for i in 0..MAX_SYNC_PEERS {
        peers.record(i, Verdict::Invalid("test"), &mut stats);
    }
    assert_eq!(peers.ids(Standing::Banned).len(), MAX_SYNC_PEERS);
    let newcomer = B512::with_last_byte(7);
    peers.add(Arc::new(Idle(newcomer)), &mut stats);
    assert_eq!(peers.active().len(), 1, "the newcomer has a slot");
    assert_eq!(peers.slots.len(), MAX_SYNC_PEERS);
    let evicted = B512::repeat_byte(0);
    assert_eq!(peers.slot(0).peer.id(), newcomer);
    peers.add(Arc::new(Idle(evicted)), &mut stats);
    assert_eq!(peers.active().len(), 1, "a banned peer whose slot was taken stays out");
    let banned = peers.ids(Standing::Banned);
    assert_eq!(banned.len(), MAX_SYNC_PEERS, "{} banned", banned.len());
    assert!(banned.contains(&evicted));
}

/// With the table full, a newcomer takes a dropped peer's slot only once none of that peer's
/// requests is in flight: the answer or timeout of one still out would be judged as the
/// newcomer's. Verdicts reached after an answer check the slot still holds its sender.
#[test]
fn a_full_table_reuses_a_dropped_slot_once_its_requests_are_done() {
    let mut peers = PeerSet::new((0..MAX_SYNC_PEERS).map(|i| idle(i as u8)).collect(), 3);
    assert_eq!(peers.slots.len(), MAX_SYNC_PEERS, "full, with ids of one byte each");
    let mut stats = SyncStats::default();
    peers.sent(0, false);
    peers.record(0, Verdict::Disconnected, &mut stats);
    let newcomer = B512::with_last_byte(7);
    peers.add(Arc::new(Idle(newcomer)), &mut stats);
    assert_eq!(peers.slot(0).peer.id(), B512::repeat_byte(0), "its request is still out");
    peers.finished(0, None);
    peers.add(Arc::new(Idle(newcomer)), &mut stats);
    assert_eq!(peers.slot(0).peer.id(), newcomer);
    assert_eq!(peers.active().len(), MAX_SYNC_PEERS);
    // A verdict reached later on the old peer's answer (a held piece, a split) is not the
    // newcomer's.
    assert!(!peers.holds((0, B512::repeat_byte(0))) && peers.holds((0, newcomer)));
}

/// How often peers arrive is theirs to choose (a reconnect every few seconds, fresh throwaway
/// identities), and so is how often they earn a ban: those are counted for the periodic progress
/// line and logged at debug only, never at info or warn, so they cannot fill the operator's log.
#[test]
fn peer_churn_is_counted_not_logged_above_debug() {
    let (stats, events) = Captured::run(|| {
        let mut peers = set(1);
        let mut stats = SyncStats::default();
        // The same peer disconnects and comes back with a new session, 100 times.
        for _ in 0..100 {
            peers.record(0, Verdict::Disconnected, &mut stats);
            peers.add(idle(1), &mut stats);
        }
        assert_eq!(peers.active(), vec![0]);
        // 100 fresh identities join.
        for n in 2..=101 {
            peers.add(idle(n), &mut stats);
        }
        assert_eq!(peers.active().len(), 101);
        // Banned, a peer stays out: its new sessions are not counted.
        peers.record(1, Verdict::Invalid("test"), &mut stats);
        peers.add(idle(2), &mut stats);
        stats
    });
    assert_eq!(
        (stats.peers_back, stats.peers_joined, stats.peers_dropped, stats.peers_banned),
        (100, 100, 100, 1)
    );
    assert!(events.iter().any(|e| e.text.contains("sync peer joined")), "{events:?}");
    let loud: Vec<_> = events.iter().filter(|e| e.is_loud()).collect();
    assert!(loud.is_empty(), "logged above debug: {loud:?}");
}
