//! [`SyncStats`]: counters of a sync, logged as a structured line every few seconds and returned
//! at the end; the crate's `Reporter` keeps them and publishes them.

use std::time::Duration;

use leafsync_p2p::leaf::ChainHead;
use tokio::{sync::watch, time::Instant};
use tracing::info;

use crate::config::PUBLISH_INTERVAL;

/// What the syncer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Fetching the skeleton and chunks (and large storage, codes).
    #[default]
    Chunks,
    /// Only heal requests remain.
    Heal,
    /// Done.
    Done,
}

/// Counters of one sync.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncStats {
    /// Current phase.
    pub phase: Phase,
    /// The pivot being synced to.
    pub pivot: ChainHead,
    /// Peers the sync is using.
    pub peers: u64,
    /// Chunk units (account and storage) created so far.
    pub chunks_total: u64,
    /// Chunk units imported (verified or handed to heal).
    pub chunks_done: u64,
    /// Chunks whose subtrie equalled the skeleton hash.
    pub chunks_verified: u64,
    /// Chunks that differed and were marked for heal.
    pub chunks_healed: u64,
    /// Chunks found complete in the leafdb (a restart, or unchanged since an earlier pivot).
    pub chunks_resumed: u64,
    /// Chunks not imported because their server was banned or benched for stale chunks (its
    /// further pieces and answers in flight), asked again elsewhere. A benched server's pieces
    /// that equal their skeleton hash are still imported and not counted here.
    pub chunks_passed: u64,
    /// Chunks answered "too large" and split.
    pub chunks_split: u64,
    /// "Too large" claims that the units they split into belied: less than half the bytes the
    /// claimant was asked for (`MAX_IMPLAUSIBLE_SPLITS` of a server's and it gets no chunks).
    pub implausible_splits: u64,
    /// Chunk units asked of a peer other than their rendezvous home (work stealing); with
    /// several clients on the same servers each one may cost a server's chunk cache a hit.
    pub chunks_stolen: u64,
    /// Accounts imported from chunks.
    pub accounts: u64,
    /// Storage slots imported from chunks.
    pub slots: u64,
    /// Codes written.
    pub codes: u64,
    /// Table files the chunk and code writes made (each costs about a millisecond of CPU beyond its
    /// bytes: docs/sync.md "Writing chunks"); 0 on a store without files.
    pub table_files: u64,
    /// Skeleton nodes fetched.
    pub skeleton_nodes: u64,
    /// Trie nodes fetched and committed by heal.
    pub healed_nodes: u64,
    /// Heal tasks (nodes) waiting or in flight.
    pub heal_queue: u64,
    /// Requests sent.
    pub requests: u64,
    /// Encoded bytes of all answers received.
    pub bytes_down: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// Empty answers.
    pub empty_answers: u64,
    /// Empty answers of peers without state for the pivot's root (snap/1), not held against
    /// them.
    pub no_state_answers: u64,
    /// Answers that provably lied (counted against their server).
    pub junk_answers: u64,
    /// Items the final check found wrong or missing and sent back to be fetched.
    pub final_repairs: u64,
    /// Accounts whose flat entries were re-derived from the stored trie (a resumed unit, a
    /// heal's subtrie, a repair): every account such a re-derivation walks, written or not.
    pub rederived_accounts: u64,
    /// Flat leaves (accounts and slots) the final check hashed again after their import had
    /// verified them: 0 when nothing in the run could have set the flat state apart from the
    /// trie (no resume, heal, re-pivot or repair), else the whole flat state per pass.
    pub final_rehashed: u64,
    /// Peers banned (junk, wrong nodes, malformed answers).
    pub peers_banned: u64,
    /// Peers dropped (silence, disconnects, nothing to give).
    pub peers_dropped: u64,
    /// Peers new to the sync that joined it while it ran (not those it started with, nor one
    /// turned away by a full table).
    pub peers_joined: u64,
    /// New sessions of peers the sync already had (a reconnect; a dropped peer is revived);
    /// banned ones, which stay out, are not counted.
    pub peers_back: u64,
    /// Pivot moves during the sync.
    pub repivots: u64,
    /// Wall time so far.
    pub elapsed: Duration,
    /// When each kind of work was first and last done, from the sync's start.
    pub phases: PhaseTimes,
}

/// A kind of work of a sync, for [`PhaseTimes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkKind {
    /// An account-trie skeleton node (above the chunk depth) applied.
    Skeleton,
    /// An account chunk imported.
    Chunks,
    /// A storage chunk (`GetStorageChunk`) imported, or a skeleton node of a storage trie too
    /// large for one chunk applied.
    Storage,
    /// Codes written.
    Codes,
    /// A heal node applied.
    Heal,
    /// The final check of the flat state started (every item was in), or the sync recorded its
    /// head.
    Finish,
}

/// From the sync's start until a kind of work was first and last done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseSpan {
    /// The first time (`None`: never).
    pub first: Option<Duration>,
    /// The last time so far.
    pub last: Option<Duration>,
}

impl PhaseSpan {
    fn mark(&mut self, at: Duration) {
        self.first.get_or_insert(at);
        self.last = Some(at);
    }
}

/// When each [`WorkKind`] was first and last done, counted from the sync's start. The kinds
/// overlap (chunks, storage, codes and heal are fetched side by side), so a span is not the
/// time the kind took alone: its `last` is how long the sync took until that work was over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseTimes {
    /// Account-trie skeleton nodes applied.
    pub skeleton: PhaseSpan,
    /// Account chunks imported.
    pub chunks: PhaseSpan,
    /// Storage chunks imported and storage skeleton nodes applied.
    pub storage: PhaseSpan,
    /// Codes written.
    pub codes: PhaseSpan,
    /// Heal nodes applied.
    pub heal: PhaseSpan,
    /// From the (first) final check's start to the head recorded: the end of the sync.
    pub finish: PhaseSpan,
}

impl PhaseTimes {
    /// The span of `kind`.
    pub fn span(&self, kind: WorkKind) -> &PhaseSpan {
        match kind {
            WorkKind::Skeleton => &self.skeleton,
            WorkKind::Chunks => &self.chunks,
            WorkKind::Storage => &self.storage,
            WorkKind::Codes => &self.codes,
            WorkKind::Heal => &self.heal,
            WorkKind::Finish => &self.finish,
        }
    }

    fn span_mut(&mut self, kind: WorkKind) -> &mut PhaseSpan {
        match kind {
            WorkKind::Skeleton => &mut self.skeleton,
            WorkKind::Chunks => &mut self.chunks,
            WorkKind::Storage => &mut self.storage,
            WorkKind::Codes => &mut self.codes,
            WorkKind::Heal => &mut self.heal,
            WorkKind::Finish => &mut self.finish,
        }
    }
}

impl SyncStats {
    /// Fraction of chunk units that needed heal.
    pub fn heal_fraction(&self) -> f64 {
        if self.chunks_done == 0 {
            0.0
        } else {
            self.chunks_healed as f64 / self.chunks_done as f64
        }
    }

    /// Bytes per second so far.
    pub fn rate(&self) -> f64 {
        self.bytes_down as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    /// Estimated time left from the chunk fraction done (`None` before the first chunk).
    pub fn eta(&self) -> Option<Duration> {
        if self.chunks_done == 0 || self.chunks_total == 0 {
            return None;
        }
        let done = self.chunks_done as f64 / self.chunks_total as f64;
        Some(self.elapsed.mul_f64(((1.0 - done) / done).max(0.0)))
    }
}

/// Owns the counters of a sync and publishes them on the progress channel (at most every
/// [`PUBLISH_INTERVAL`], and at once from [`Self::log_progress`]).
#[derive(Debug)]
pub(crate) struct Reporter {
    pub(crate) stats: SyncStats,
    started: Instant,
    progress: Option<watch::Sender<SyncStats>>,
    last_publish: Option<Instant>,
    /// [`SyncStats::peers_banned`] at the last progress line: the next one names the bans since.
    banned_logged: u64,
}

impl Default for Reporter {
    fn default() -> Self {
        Self {
            stats: SyncStats::default(),
            started: Instant::now(),
            progress: None,
            last_publish: None,
            banned_logged: 0,
        }
    }
}

impl Reporter {
    /// Publishes to `progress` from now on.
    pub(crate) fn publish_to(&mut self, progress: watch::Sender<SyncStats>) {
        self.progress = Some(progress);
    }

    /// The sync starts now (the elapsed time counts from here).
    pub(crate) fn start(&mut self) {
        self.started = Instant::now();
    }

    /// Time since the start, unless the sync is done (then it stopped there).
    pub(crate) fn tick(&mut self) {
        if self.stats.phase != Phase::Done {
            self.stats.elapsed = self.started.elapsed();
        }
    }

    /// Whether someone listens and the counters were last published [`PUBLISH_INTERVAL`] ago
    /// or more.
    pub(crate) fn publish_due(&self) -> bool {
        self.progress.is_some() && self.last_publish.is_none_or(|t| t.elapsed() >= PUBLISH_INTERVAL)
    }

    /// Publishes the counters (the caller has refreshed them).
    pub(crate) fn publish(&mut self) {
        self.last_publish = Some(Instant::now());
        if let Some(tx) = &self.progress {
            tx.send_replace(self.stats.clone());
        }
    }

    /// Work of `kind` was done now.
    pub(crate) fn mark(&mut self, kind: WorkKind) {
        let at = self.started.elapsed();
        self.stats.phases.span_mut(kind).mark(at);
    }

    /// The sync is done: the phase and the elapsed time stop here.
    pub(crate) fn done(&mut self) {
        self.stats.phase = Phase::Done;
        self.stats.elapsed = self.started.elapsed();
        self.stats.phases.finish.mark(self.stats.elapsed);
    }

    /// Publishes the counters (the caller has refreshed them) and logs the structured
    /// progress line. Peers coming, going and banned are logged only here (each at debug
    /// where it happens): peers choose how often they connect, the timer how often this logs.
    pub(crate) fn log_progress(&mut self) {
        if self.progress.is_some() {
            self.publish();
        }
        let s = &self.stats;
        let new_bans = s.peers_banned.saturating_sub(self.banned_logged);
        self.banned_logged = s.peers_banned;
        info!(
            target: "leafsync::sync",
            phase = ?s.phase,
            chunks_done = s.chunks_done,
            chunks_total = s.chunks_total,
            accounts = s.accounts,
            slots = s.slots,
            codes = s.codes,
            bytes = s.bytes_down,
            rate_bps = s.rate() as u64,
            eta_s = s.eta().map(|d| d.as_secs()),
            peers = s.peers,
            peers_joined = s.peers_joined,
            peers_back = s.peers_back,
            peers_dropped = s.peers_dropped,
            peers_banned = s.peers_banned,
            new_bans,
            heal_queue = s.heal_queue,
            "sync progress"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_log::Captured;

    /// The progress line carries the peer counters (peers come and go at debug only) and the
    /// bans since the line before.
    #[test]
    fn the_progress_line_reports_peer_churn_and_the_bans_since_the_last_line() {
        let ((), events) = Captured::run(|| {
            let mut reporter = Reporter::default();
            let s = &mut reporter.stats;
            (s.peers_joined, s.peers_back, s.peers_dropped, s.peers_banned) = (7, 30, 31, 2);
            reporter.log_progress();
            reporter.stats.peers_banned = 5;
            reporter.log_progress();
            reporter.log_progress();
        });
        let lines: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(events.iter().all(|e| e.level == tracing::Level::INFO));
        for field in ["peers_joined=7", "peers_back=30", "peers_dropped=31", "peers_banned=2"] {
            assert!(lines[0].contains(field), "{field} in {}", lines[0]);
        }
        assert!(lines[0].contains("new_bans=2"), "{}", lines[0]);
        assert!(lines[1].contains("peers_banned=5 new_bans=3"), "{}", lines[1]);
        assert!(lines[2].contains("new_bans=0"), "{}", lines[2]);
    }
}
