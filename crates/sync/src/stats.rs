//! [`SyncStats`]: counters of a sync, logged as a structured line every few seconds and returned
//! at the end.

use std::time::Duration;

use leafsync_p2p::leaf::ChainHead;

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
    /// Chunks answered "too large" and split.
    pub chunks_split: u64,
    /// Accounts imported from chunks.
    pub accounts: u64,
    /// Storage slots imported from chunks.
    pub slots: u64,
    /// Codes written.
    pub codes: u64,
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
    /// Answers that provably lied (counted against their server).
    pub junk_answers: u64,
    /// Items the final check found wrong or missing and sent back to be fetched.
    pub final_repairs: u64,
    /// Peers banned (junk, wrong nodes, malformed answers).
    pub peers_banned: u64,
    /// Peers dropped (silence, disconnects, nothing to give).
    pub peers_dropped: u64,
    /// Pivot moves during the sync.
    pub repivots: u64,
    /// Wall time so far.
    pub elapsed: Duration,
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
