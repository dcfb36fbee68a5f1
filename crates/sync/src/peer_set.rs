//! [`PeerSet`]: the peers of a sync, what it measured of each, and where each stands. Every
//! outcome of a request is recorded as a [`Verdict`]; [`PeerSet::record`] applies the rules of
//! docs/sync.md "Penalties" and returns the penalty the peer earned, which the loop sends
//! without waiting.

use std::{collections::VecDeque, sync::Arc};

use leafsync_leafdb::DEFAULT_RECENT_BLOCKS;
use leafsync_p2p::PenaltyClass;
use leafsync_p2p::{PeerId, leaf::ChainHead, requests::RequestError};
use tokio::time::Instant;
use tracing::debug;

use crate::{
    config::{
        BUSY_REST, HEAD_CLAIM_SLACK, MAX_CONSECUTIVE_EMPTIES, MAX_CONSECUTIVE_TIMEOUTS,
        MAX_IMPLAUSIBLE_SPLITS, MAX_PLAUSIBLE_ACCOUNTS, MAX_STALE_HEALS, MAX_SYNC_PEERS,
        SILENT_REVIVE_AFTER,
    },
    peer::SyncPeer,
    rendezvous::{Rendezvous, peer_key},
    stats::SyncStats,
    window::PeerWindow,
};

/// Where a peer stands with this sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    Active,
    Dropped,
    Banned,
}

/// A peer as a verdict reached after its answer names it: its slot and its id (a dropped
/// peer's slot may have a newcomer by then: [`PeerSet::holds`]).
pub(crate) type Sender = (usize, PeerId);

/// What one answer (or its absence) says about its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Something useful came.
    Delivered,
    /// Nothing in it.
    Empty,
    /// Provably a lie that honest servers cannot tell (a junk chunk at the pivot head, a false
    /// head claim, storage contradicting its verified account, "too large" for one leaf).
    Junk(&'static str),
    /// An answer no honest peer sends (a node or code with the wrong hash, a malformed chunk,
    /// an answer of another kind): a ban.
    Invalid(&'static str),
    /// No answer in time.
    Timeout,
    /// The session is gone; the network layer has dealt with it.
    Disconnected,
    /// The peer's queue was full: no fault.
    Busy,
    /// An empty answer from a peer that said it has no state for the pivot's root (snap/1):
    /// no fault; it gets no such work until the next pivot ([`SyncPeer::lacks_state`],
    /// [`SyncPeer::lacks_nodes`]).
    NoState,
}

impl From<&RequestError> for Verdict {
    fn from(error: &RequestError) -> Self {
        match error {
            RequestError::Timeout => Self::Timeout,
            RequestError::InvalidResponse(_) => Self::Invalid("invalid response"),
            RequestError::PeerBusy | RequestError::TooManyInFlight => Self::Busy,
            _ => Self::Disconnected,
        }
    }
}

/// A peer and what the syncer measured of it.
pub(crate) struct PeerSlot {
    pub(crate) peer: Arc<dyn SyncPeer>,
    /// Its rendezvous key ([`peer_key`] of its id).
    key: u64,
    /// Its pipe as measured: sizes how many requests it gets at once.
    pub(crate) window: PeerWindow,
    pub(crate) in_flight: usize,
    junk: u32,
    timeouts: u32,
    empties: u32,
    /// Chunks from this server at another head that failed verification (no penalty).
    stale_heals: u32,
    /// The highest head number this server was benched at for reaching [`MAX_STALE_HEALS`]:
    /// it gets chunks again once it announces a block past it that another peer has reached
    /// too ([`PeerSet::chunks_benched`]).
    stale_at: Option<u64>,
    /// Its "too large" claims that the units they split into belied
    /// ([`PeerSet::implausible_split`]); at [`MAX_IMPLAUSIBLE_SPLITS`] it gets no more chunks
    /// in this sync.
    implausible_splits: u32,
    pub(crate) standing: Standing,
    /// When a peer dropped for silence may be asked again (a stall is not a lie).
    revive_at: Option<Instant>,
    /// Set by a [`Verdict::Busy`] answer (the network layer holds as many of our requests to
    /// the peer unanswered as it may: timed-out ones keep their slots until answered late): no
    /// new request until one of the peer's requests finishes or [`BUSY_REST`] passes, so that a
    /// busy peer is not asked again and again in a loop.
    busy_until: Option<Instant>,
}

impl PeerSlot {
    /// A peer new to this sync: unmeasured, active.
    fn new(peer: Arc<dyn SyncPeer>) -> Self {
        Self {
            key: peer_key(&peer.id()),
            peer,
            window: PeerWindow::default(),
            in_flight: 0,
            junk: 0,
            timeouts: 0,
            empties: 0,
            stale_heals: 0,
            stale_at: None,
            implausible_splits: 0,
            standing: Standing::Active,
            revive_at: None,
            busy_until: None,
        }
    }

    /// Whether the peer may get one more request now: fewer in flight than its window, and not
    /// resting after a busy answer.
    pub(crate) fn has_room(&self) -> bool {
        self.in_flight < self.window.window()
            && self.busy_until.is_none_or(|until| Instant::now() >= until)
    }
}

/// Which peers may get which work now, fastest first.
#[derive(Debug, Default)]
pub(crate) struct Roster {
    /// Every active peer, fastest first.
    pub(crate) active: Vec<usize>,
    /// Active peers that have the pivot's trie nodes.
    pub(crate) serving: Vec<usize>,
    /// Active peers that may get chunks.
    pub(crate) chunks: Vec<usize>,
    /// The rendezvous over [`Self::chunks`]: which of them is each unit's home.
    pub(crate) rendezvous: Rendezvous,
}

/// The peers of a sync; see the module docs.
pub(crate) struct PeerSet {
    slots: Vec<PeerSlot>,
    junk_ban_threshold: u32,
    /// Banned peers whose slot went to a newcomer, oldest first, at most
    /// [`MAX_SYNC_PEERS`] × 16: they stay out.
    evicted_bans: VecDeque<PeerId>,
}

impl PeerSet {
    pub(crate) fn new(peers: Vec<Arc<dyn SyncPeer>>, junk_ban_threshold: u32) -> Self {
        let slots = peers.into_iter().map(PeerSlot::new).collect();
        Self { slots, junk_ban_threshold, evicted_bans: VecDeque::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn slot(&self, i: usize) -> &PeerSlot {
        &self.slots[i]
    }

    /// Peer `i` as a later verdict names it.
    pub(crate) fn sender(&self, i: usize) -> Sender {
        (i, self.slots[i].peer.id())
    }

    /// Whether `sender`'s slot is still its own: a verdict reached after its answer (a held
    /// piece taken in, a split's node) is its only while it is, since a dropped peer's slot
    /// may have a newcomer by then.
    pub(crate) fn holds(&self, (i, id): Sender) -> bool {
        self.slots[i].peer.id() == id
    }

    /// Every peer's announced head.
    pub(crate) fn heads(&self) -> Vec<ChainHead> {
        self.slots.iter().map(|p| p.peer.head()).collect()
    }

    /// The lower median of the account estimates of the peers that give one (not 0), each
    /// taken at most at [`MAX_PLAUSIBLE_ACCOUNTS`] (0 without any). Lower: of two peers, a liar
    /// announcing more than the honest one does not choose (an estimate too low costs only
    /// splits, which verified chunks settle; one too high costs a deeper skeleton and many more
    /// requests).
    pub(crate) fn median_estimate(&self) -> u64 {
        let mut estimates: Vec<u64> = self
            .slots
            .iter()
            .map(|p| p.peer.account_estimate().min(MAX_PLAUSIBLE_ACCOUNTS))
            .filter(|e| *e > 0)
            .collect();
        estimates.sort_unstable();
        estimates.get(estimates.len().saturating_sub(1) / 2).copied().unwrap_or(0)
    }

    /// Adds a peer, or revives one dropped earlier (a new session of it); banned peers stay out.
    /// Counted in `stats` (`peers_joined`, `peers_back`) and logged at debug only: how often
    /// this runs is the peers' choice (a reconnect every few seconds, throwaway identities), so
    /// the periodic progress line reports it ([`crate::stats`]).
    pub(crate) fn add(&mut self, peer: Arc<dyn SyncPeer>, stats: &mut SyncStats) {
        let id = peer.id();
        if self.evicted_bans.contains(&id) {
            return;
        }
        let full = self.slots.len() >= MAX_SYNC_PEERS;
        match self.slots.iter_mut().find(|p| p.peer.id() == id) {
            Some(slot) if slot.standing == Standing::Banned => {}
            Some(slot) => {
                slot.peer = peer;
                slot.timeouts = 0;
                slot.empties = 0;
                stats.peers_back += 1;
                if slot.standing == Standing::Dropped {
                    slot.standing = Standing::Active;
                    debug!(peer = %id, "sync peer is back");
                }
            }
            None if !full => {
                debug!(peer = %id, head = peer.head().number, "sync peer joined");
                stats.peers_joined += 1;
                self.slots.push(PeerSlot::new(peer));
            }
            None => {
                // Full: a dropped peer's slot is reused, else a banned one's (its id is kept
                // apart, so it stays out: else banned throwaway identities would fill the table
                // and turn every honest newcomer away). Its index may still be in items' tried
                // lists, which only skips the newcomer for those items this round; the slot
                // must have no request in flight: their answers or timeouts, when they come,
                // would be judged as the newcomer's.
                let idle =
                    |standing| move |p: &&mut PeerSlot| p.standing == standing && p.in_flight == 0;
                let slot = match self.slots.iter_mut().find(idle(Standing::Dropped)) {
                    Some(slot) => Some(slot),
                    None => self.slots.iter_mut().find(idle(Standing::Banned)),
                };
                let Some(slot) = slot else {
                    debug!(peer = %id, "sync peer table full; not used");
                    return;
                };
                if slot.standing == Standing::Banned {
                    if self.evicted_bans.len() >= MAX_SYNC_PEERS * 16 {
                        self.evicted_bans.pop_front();
                    }
                    self.evicted_bans.push_back(slot.peer.id());
                }
                debug!(peer = %id, head = peer.head().number, "sync peer joined");
                stats.peers_joined += 1;
                *slot = PeerSlot::new(peer);
            }
        }
    }

    /// The active peers' indices.
    pub(crate) fn active(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|i| self.slots[*i].standing == Standing::Active).collect()
    }

    /// Whether a dropped peer waits to be asked again.
    pub(crate) fn any_resting(&self) -> bool {
        self.slots.iter().any(|p| p.revive_at.is_some())
    }

    /// The active peers and which work each may get for `pivot`, fastest first (unmeasured
    /// peers before all: [`PeerWindow::rank`]). Servers benched for stale chunks get chunks
    /// only when no other peer can take them; peers without flat state for the pivot's root
    /// get no chunks, those without its trie nodes no nodes ([`SyncPeer::lacks_state`],
    /// [`SyncPeer::lacks_nodes`]); codes name no root and go to every active peer.
    pub(crate) fn roster(&self, pivot: &ChainHead) -> Roster {
        let root = &pivot.state_root;
        let mut active = self.active();
        active.sort_by(|a, b| {
            let rank = |i: &usize| self.slots[*i].window.rank();
            rank(b).total_cmp(&rank(a))
        });
        let peer = |i: &usize| &self.slots[*i].peer;
        let serving = active
            .iter()
            .copied()
            .filter(|i| self.has_pivot_nodes(*i, pivot) && !peer(i).lacks_nodes(root))
            .collect();
        let ranges: Vec<usize> =
            active.iter().copied().filter(|i| !peer(i).lacks_state(root)).collect();
        let chunks: Vec<usize> =
            ranges.iter().copied().filter(|i| !self.chunks_benched(*i)).collect();
        let chunks = if chunks.is_empty() { ranges } else { chunks };
        let rendezvous = Rendezvous::new(chunks.iter().map(|i| (*i, self.slots[*i].key)).collect());
        Roster { active, serving, chunks, rendezvous }
    }

    /// Whether peer `i` can be asked for the pivot's trie nodes: a server keeps the nodes of its
    /// last [`DEFAULT_RECENT_BLOCKS`] heads, so its head must be at the pivot or at most that far
    /// past it. Chunks and codes go to every peer (a chunk read at another head is healed).
    /// A server on another block at the pivot's height (a sibling) does not have them.
    fn has_pivot_nodes(&self, i: usize, pivot: &ChainHead) -> bool {
        let head = self.slots[i].peer.head();
        if head.number == pivot.number && head.hash != pivot.hash {
            return false;
        }
        head.number >= pivot.number && head.number - pivot.number < DEFAULT_RECENT_BLOCKS
    }

    /// A request goes out to peer `i`: a probe ([`PeerWindow::probe_sent`]) or any other.
    pub(crate) fn sent(&mut self, i: usize, probe: bool) {
        let slot = &mut self.slots[i];
        if probe {
            slot.window.probe_sent();
        } else {
            slot.window.sent(Instant::now(), slot.in_flight);
        }
        slot.in_flight += 1;
    }

    /// Whether peer `i`'s next request should be a probe ([`PeerWindow::probe_due`]).
    pub(crate) fn probe_due(&self, i: usize) -> bool {
        let slot = &self.slots[i];
        slot.window.probe_due(slot.in_flight)
    }

    /// A probe of peer `i` finished: with its round trip when it was answered.
    pub(crate) fn probed(&mut self, i: usize, rtt: Option<std::time::Duration>) {
        let slot = &mut self.slots[i];
        slot.in_flight = slot.in_flight.saturating_sub(1);
        slot.busy_until = None;
        slot.window.probed(Instant::now(), rtt);
    }

    /// A request of peer `i` finished: with `answer`, its size and round trip, or without one
    /// (timeout, disconnect). Its window learns from every request, whatever the answer says.
    pub(crate) fn finished(&mut self, i: usize, answer: Option<(u64, std::time::Duration)>) {
        let slot = &mut self.slots[i];
        slot.in_flight = slot.in_flight.saturating_sub(1);
        slot.busy_until = None;
        slot.window.finished(Instant::now(), answer, slot.in_flight);
    }

    /// Peer `i` answered: it is no longer silent.
    pub(crate) fn answered(&mut self, i: usize) {
        self.slots[i].timeouts = 0;
    }

    /// Records what an answer of peer `i` showed, counting it in `stats`; returns the penalty
    /// it earned, to be sent to the peer's source.
    pub(crate) fn record(
        &mut self,
        i: usize,
        verdict: Verdict,
        stats: &mut SyncStats,
    ) -> Option<PenaltyClass> {
        let slot = &mut self.slots[i];
        match verdict {
            Verdict::Delivered => {
                slot.empties = 0;
                None
            }
            Verdict::Busy => {
                slot.busy_until = Some(Instant::now() + BUSY_REST);
                None
            }
            Verdict::NoState => {
                stats.no_state_answers += 1;
                None
            }
            Verdict::Empty => {
                stats.empty_answers += 1;
                slot.window.penalise();
                slot.empties += 1;
                if slot.empties >= MAX_CONSECUTIVE_EMPTIES {
                    return self.drop_peer(i, "answers empty", Some(PenaltyClass::Low), stats);
                }
                None
            }
            Verdict::Timeout => {
                stats.timeouts += 1;
                slot.window.penalise();
                slot.timeouts += 1;
                if slot.timeouts < MAX_CONSECUTIVE_TIMEOUTS {
                    return None;
                }
                let penalty = self.drop_peer(i, "silent", Some(PenaltyClass::Low), stats);
                // A stall is not a lie: the peer is asked again later (one request, as its
                // window restarts small).
                self.slots[i].revive_at = Some(Instant::now() + SILENT_REVIVE_AFTER);
                penalty
            }
            Verdict::Junk(why) => {
                stats.junk_answers += 1;
                slot.junk += 1;
                debug!(peer = %slot.peer.id(), why, junk = slot.junk, "junk answer");
                if slot.junk >= self.junk_ban_threshold {
                    self.ban(i, why, stats)
                } else {
                    Some(PenaltyClass::High)
                }
            }
            Verdict::Invalid(why) => self.ban(i, why, stats),
            Verdict::Disconnected => self.drop_peer(i, "disconnected", None, stats),
        }
    }

    fn ban(&mut self, i: usize, why: &'static str, stats: &mut SyncStats) -> Option<PenaltyClass> {
        let slot = &mut self.slots[i];
        if slot.standing == Standing::Banned {
            return None;
        }
        // Debug, not warn: fresh identities can earn bans as fast as they connect; the
        // progress line names the bans since the last one (`new_bans`).
        debug!(peer = %slot.peer.id(), why, "banning sync peer");
        slot.standing = Standing::Banned;
        stats.peers_banned += 1;
        Some(PenaltyClass::Fatal)
    }

    /// Stops asking a peer that is useless now but not shown dishonest: at most a minor
    /// penalty, never a ban.
    fn drop_peer(
        &mut self,
        i: usize,
        why: &'static str,
        penalty: Option<PenaltyClass>,
        stats: &mut SyncStats,
    ) -> Option<PenaltyClass> {
        let slot = &mut self.slots[i];
        if slot.standing != Standing::Active {
            return None;
        }
        debug!(peer = %slot.peer.id(), why, "dropping sync peer");
        slot.standing = Standing::Dropped;
        slot.revive_at = None;
        stats.peers_dropped += 1;
        penalty
    }

    /// Whether peer `i` is banned from this sync.
    pub(crate) fn is_banned(&self, i: usize) -> bool {
        self.slots[i].standing == Standing::Banned
    }

    /// Whether chunks of peer `i` are still imported: it is not banned, and not benched for
    /// chunks from another head while an active peer is not (when every one is, benched peers
    /// get the chunks, as in [`Self::roster`]). A piece that bans its server stops the rest of
    /// its batch (and its answers still in flight) from being imported; one that benches it
    /// lets through only further pieces that equal their skeleton hash. Either way one request
    /// cannot carry more lies or stale chunks past the ban or bench than a single chunk could.
    pub(crate) fn takes_chunks(&self, i: usize) -> bool {
        let slot = &self.slots[i];
        let others_take = || {
            (0..self.slots.len())
                .any(|j| self.slots[j].standing == Standing::Active && !self.chunks_benched(j))
        };
        slot.standing != Standing::Banned && (!self.chunks_benched(i) || !others_take())
    }

    /// Whether server `i` is benched from chunks: it made too many implausible "too large"
    /// claims, or sent too many stale chunks ([`Self::stale_chunk`]) and has not moved on since.
    /// It gets no chunks, and its pieces still coming (the rest of a batch, answers in flight)
    /// are imported only where they verify.
    fn chunks_benched(&self, i: usize) -> bool {
        let slot = &self.slots[i];
        slot.implausible_splits >= MAX_IMPLAUSIBLE_SPLITS
            || slot.stale_at.is_some_and(|top| !self.moved_on(i, top, slot.peer.head().number))
    }

    /// Whether server `i`, benched for stale chunks at head number `top`, has moved on by
    /// announcing `head`: a block past `top`, and not past where most other peers stand (their
    /// lower median head, within [`HEAD_CLAIM_SLACK`]). Another block at the same height, or
    /// an older one, is no sign of catching up (a liar flipping between two heads would lift
    /// the bench at every turn), nor is a head ahead of most peers (a liar announcing ever
    /// higher heads would, and a few colluding identities cannot move the median); with no
    /// other peer, any head past `top` is.
    fn moved_on(&self, i: usize, top: u64, head: u64) -> bool {
        // Most often it has not (a benched server asked on every piece and dispatch): answered
        // before the other peers' heads are gathered and sorted.
        if head <= top {
            return false;
        }
        let mut others: Vec<u64> = (0..self.slots.len())
            .filter(|j| *j != i && self.slots[*j].standing == Standing::Active)
            .map(|j| self.slots[j].peer.head().number)
            .collect();
        others.sort_unstable();
        let median = others.get(others.len().saturating_sub(1) / 2);
        median.is_none_or(|m| head <= m.saturating_add(HEAD_CLAIM_SLACK))
    }

    /// Peer `i` called a unit "too large" that split into less than half the bytes it was
    /// asked for. Not provably a lie (an honest server out of time answers so too), but a
    /// server that keeps doing it is no source of chunks: after [`MAX_IMPLAUSIBLE_SPLITS`] it
    /// gets none for the rest of the sync (nodes and codes still), unless no other peer can
    /// take them.
    pub(crate) fn implausible_split(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.implausible_splits += 1;
        if slot.implausible_splits == MAX_IMPLAUSIBLE_SPLITS {
            debug!(peer = %slot.peer.id(), "server calls small chunks too large; no more chunks");
        }
    }

    /// A chunk of peer `i` failed verification and is not provably a lie: its server is stale
    /// at `announced`. After [`MAX_STALE_HEALS`] such chunks it gets no more chunks until it
    /// announces a block past every one it was benched at, and its pieces still coming are
    /// imported only where they verify.
    pub(crate) fn stale_chunk(&mut self, i: usize, announced: ChainHead) {
        let benched =
            self.slots[i].stale_at.is_some_and(|top| !self.moved_on(i, top, announced.number));
        let slot = &mut self.slots[i];
        if slot.stale_at.is_some() && !benched {
            slot.stale_heals = 0;
        }
        slot.stale_heals += 1;
        if slot.stale_heals >= MAX_STALE_HEALS && !benched {
            debug!(peer = %slot.peer.id(), head = announced.number,
                "server's chunks are from another head; no more chunks until it moves on");
            slot.stale_at = Some(announced.number);
        }
    }

    /// Peers dropped for silence whose pause is over are asked again.
    pub(crate) fn revive_silent(&mut self) {
        let now = Instant::now();
        for slot in &mut self.slots {
            if slot.standing == Standing::Dropped && slot.revive_at.is_some_and(|t| t <= now) {
                debug!(peer = %slot.peer.id(), "asking a silent sync peer again");
                slot.standing = Standing::Active;
                slot.revive_at = None;
                slot.timeouts = 0;
            }
        }
    }

    /// The peers of `standing` (banned ones include those whose slot went to a newcomer).
    pub(crate) fn ids(&self, standing: Standing) -> Vec<PeerId> {
        let evicted = self.evicted_bans.iter().filter(|_| standing == Standing::Banned);
        let in_slots = self.slots.iter().filter(|p| p.standing == standing).map(|p| p.peer.id());
        evicted.copied().chain(in_slots).collect()
    }
}

#[cfg(test)]
#[path = "peer_set_tests.rs"]
mod tests;
