//! Lighthouse-style peer scoring: a score per peer that decays exponentially towards 0, penalties
//! by severity class, and thresholds below which the peer is disconnected or banned; plus the
//! ban list with expiry.

use crate::{PeerId, PenaltyClass};
use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};
use tokio::time::Instant;

/// Lowest possible score; a fatal offence sets the score here. Scores live in
/// `[MIN_SCORE, MAX_SCORE]`.
pub const MIN_SCORE: f64 = -100.0;

/// Highest possible score. Good behaviour is not rewarded in `leaf/1` (the sync layer measures
/// throughput separately), so 0 is the neutral best, as a fresh peer's score.
pub const MAX_SCORE: f64 = 0.0;

/// At or below this score a peer is disconnected. With the deltas below: 5 high, 10 mid or 40 low
/// offences in a short time (decay in between makes it a few more), as `docs/leaf-protocol.md`
/// "Penalties" says.
pub const MIN_SCORE_BEFORE_DISCONNECT: f64 = -20.0;

/// At or below this score a peer is also banned for [`BAN_DURATION`]. Only a fatal offence, or offences
/// continuing while the disconnect is under way, reach it: a misbehaving-but-honest peer is
/// disconnected long before.
pub const MIN_SCORE_BEFORE_BAN: f64 = -50.0;

/// Score delta of a high-severity offence (a timed-out request, an incompatible fork id): 5 in a
/// short time reach [`MIN_SCORE_BEFORE_DISCONNECT`] (5 x -4 = -20).
pub const HIGH_PENALTY: f64 = -4.0;

/// Score delta of a mid-severity offence (unsolicited or late response, unknown message id):
/// 10 in a short time disconnect.
pub const MID_PENALTY: f64 = -2.0;

/// Score delta of a low-severity offence (empty answer where data was expected): 40 in a short
/// time disconnect (a power of two, so that the sum is exact).
pub const LOW_PENALTY: f64 = -0.5;

/// Half-life of a score: every `SCORE_HALF_LIFE` a score moves halfway back to 0. Ten minutes,
/// as lighthouse: a peer that timed out a burst of requests under load is forgiven within the
/// hour, while a steady offender stays below the threshold.
pub const SCORE_HALF_LIFE: Duration = Duration::from_secs(600);

/// How long a ban lasts. Thirty minutes: long enough that a junk or hostile peer cannot come back
/// at once through discovery, short enough that a peer banned by a transient fault (or a chain
/// that has since forked back) is retried the same hour; after it, a fatal score has decayed from
/// -100 to -12.5, above the disconnect threshold.
pub const BAN_DURATION: Duration = Duration::from_secs(30 * 60);

/// Most peers whose score (or ban) is remembered while they are not connected. When exceeded the
/// entries closest to neutral are dropped; 4096 entries are ~200 KiB.
pub const MAX_REMEMBERED_SCORES: usize = 4096;

/// Scores kept after a prune: a quarter below [`MAX_REMEMBERED_SCORES`], so that the linear pass
/// of a prune happens once per 1024 new peers, not on every penalty.
pub const SCORES_AFTER_PRUNE: usize = MAX_REMEMBERED_SCORES / 4 * 3;

/// Most bans remembered. Throw-away identities cost an attacker nothing, so the ban list must not
/// grow with them; beyond this the bans closest to expiry are forgotten first (such an identity
/// could come back early, but it could as well have made a new key). 4096 entries are ~400 KiB.
pub const MAX_BANS: usize = 4096;

/// The score delta of a penalty class (fatal is handled by setting [`MIN_SCORE`]).
pub fn penalty_delta(class: PenaltyClass) -> f64 {
    match class {
        PenaltyClass::Fatal => MIN_SCORE,
        PenaltyClass::High => HIGH_PENALTY,
        PenaltyClass::Mid => MID_PENALTY,
        PenaltyClass::Low => LOW_PENALTY,
    }
}

/// What a score means for its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreState {
    /// Above the disconnect threshold.
    Healthy,
    /// At or below [`MIN_SCORE_BEFORE_DISCONNECT`]: disconnect.
    Disconnect,
    /// At or below [`MIN_SCORE_BEFORE_BAN`]: disconnect and ban.
    Ban,
}

/// One peer's score, decayed lazily on each read or update.
#[derive(Debug, Clone, Copy)]
pub struct Score {
    value: f64,
    updated: Instant,
}

impl Score {
    /// A fresh, neutral score.
    pub fn new(now: Instant) -> Self {
        Self { value: 0.0, updated: now }
    }

    /// The score at `now`, after decay.
    pub fn value(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.value * 0.5f64.powf(elapsed / SCORE_HALF_LIFE.as_secs_f64())
    }

    /// Applies a penalty at `now` and returns the new state.
    pub fn apply(&mut self, class: PenaltyClass, now: Instant) -> ScoreState {
        let decayed = self.value(now);
        self.value = match class {
            PenaltyClass::Fatal => MIN_SCORE,
            other => (decayed + penalty_delta(other)).clamp(MIN_SCORE, MAX_SCORE),
        };
        self.updated = now;
        self.state(now)
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> ScoreState {
        let value = self.value(now);
        if value <= MIN_SCORE_BEFORE_BAN {
            ScoreState::Ban
        } else if value <= MIN_SCORE_BEFORE_DISCONNECT {
            ScoreState::Disconnect
        } else {
            ScoreState::Healthy
        }
    }
}

/// Scores of every peer met recently, and bans with expiry, both bounded.
#[derive(Debug, Default)]
pub struct PeerScores {
    scores: HashMap<PeerId, Score>,
    bans: HashMap<PeerId, Instant>,
    /// Bans in the order they were recorded, which is their expiry order (every ban lasts
    /// [`BAN_DURATION`]). An entry whose peer was banned again later, or unbanned, is stale and
    /// skipped; stale entries are compacted away before they outnumber the bans.
    ban_order: VecDeque<(PeerId, Instant)>,
}

impl PeerScores {
    /// Penalises `peer`; returns the resulting state. A `Ban` state records a ban until
    /// `now + BAN_DURATION`.
    pub fn penalise(&mut self, peer: PeerId, class: PenaltyClass, now: Instant) -> ScoreState {
        let state = self.scores.entry(peer).or_insert_with(|| Score::new(now)).apply(class, now);
        if state == ScoreState::Ban {
            self.ban(peer, now);
        }
        self.prune_scores(now);
        state
    }

    /// Bans `peer` until `now + BAN_DURATION`. Beyond [`MAX_BANS`] the bans closest to their
    /// expiry are forgotten first. Amortised O(1).
    pub fn ban(&mut self, peer: PeerId, now: Instant) {
        let until = now + BAN_DURATION;
        self.bans.insert(peer, until);
        self.ban_order.push_back((peer, until));
        self.prune_bans(now);
    }

    /// Whether `peer` is banned at `now`; an expired ban is removed.
    pub fn is_banned(&mut self, peer: &PeerId, now: Instant) -> bool {
        match self.bans.get(peer) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.bans.remove(peer);
                false
            }
            None => false,
        }
    }

    /// When `peer`'s ban expires, if it is banned.
    pub fn banned_until(&self, peer: &PeerId) -> Option<Instant> {
        self.bans.get(peer).copied()
    }

    /// The decayed score of `peer` (0 for an unknown peer).
    pub fn score(&self, peer: &PeerId, now: Instant) -> f64 {
        self.scores.get(peer).map_or(0.0, |s| s.value(now))
    }

    /// Number of bans remembered (at most [`MAX_BANS`]).
    pub fn ban_count(&self) -> usize {
        self.bans.len()
    }

    /// Number of scores remembered (at most [`MAX_REMEMBERED_SCORES`]).
    pub fn score_count(&self) -> usize {
        self.scores.len()
    }

    /// Drops expired bans, and the oldest ones beyond [`MAX_BANS`], from the front of the order.
    fn prune_bans(&mut self, now: Instant) {
        while let Some(&(peer, until)) = self.ban_order.front() {
            let current = self.bans.get(&peer) == Some(&until);
            if current && until > now && self.bans.len() <= MAX_BANS {
                break;
            }
            self.ban_order.pop_front();
            if current {
                self.bans.remove(&peer);
            }
        }
        if self.ban_order.len() > 2 * MAX_BANS {
            let bans = &self.bans;
            self.ban_order.retain(|(peer, until)| bans.get(peer) == Some(until));
        }
    }

    /// Keeps the scores bounded by [`MAX_REMEMBERED_SCORES`]: once over it, drops the scores
    /// nearest to neutral (those carry no information) down to [`SCORES_AFTER_PRUNE`] in one
    /// linear pass, so that the work is amortised over many penalties instead of a sort on each.
    fn prune_scores(&mut self, now: Instant) {
        if self.scores.len() <= MAX_REMEMBERED_SCORES {
            return;
        }
        let mut by_value: Vec<(PeerId, f64)> =
            self.scores.iter().map(|(id, s)| (*id, s.value(now))).collect();
        let excess = self.scores.len() - SCORES_AFTER_PRUNE;
        // Highest (nearest 0) first: the `excess` first entries go.
        by_value.select_nth_unstable_by(excess - 1, |a, b| b.1.total_cmp(&a.1));
        for (id, _) in &by_value[..excess] {
            self.scores.remove(id);
        }
    }
}
