//! [`IngestStats`]: the follower's counters, shared with whoever exports metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Declares [`IngestStats`]: one relaxed `AtomicU64` and one getter per counter.
macro_rules! ingest_stats {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Counters of the follower, shared with whoever exports metrics.
        #[derive(Debug, Default)]
        pub struct IngestStats {
            $(pub(super) $name: AtomicU64,)*
        }

        impl IngestStats {
            $(
                $(#[doc = $doc])*
                pub fn $name(&self) -> u64 {
                    self.$name.load(Ordering::Relaxed)
                }
            )*
        }
    };
}

ingest_stats! {
    /// The execution client's head number, as last seen.
    el_head,
    /// The leafdb head number (as last applied or read).
    head,
    /// Blocks applied by this process.
    blocks_applied,
    /// Applied blocks whose computed root differed from the header's.
    mismatching_blocks,
    /// Reorgs detected.
    reorgs,
    /// Blocks rolled back by reorgs (each undone onto its parent, root checked).
    blocks_reverted,
    /// Failures retried after a backoff.
    retries,
    /// Time to fold and apply the last block, in microseconds.
    last_apply_micros,
    /// Total fold-and-apply time of all applied blocks, in microseconds.
    total_apply_micros,
    /// The block whose trace (or its application) has failed for at least
    /// [`FollowerConfig::stuck_after`](super::FollowerConfig::stuck_after) while the execution client answered for the block
    /// itself: following is stuck there (0: it is not).
    stuck_block,
    /// When the execution client last answered a whole step, in seconds since the Unix epoch
    /// (0: not yet in this run).
    el_answered_at,
}

/// Seconds since the Unix epoch, now (0 on a clock before it).
pub(super) fn unix_secs() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_secs())
}

impl IngestStats {
    /// Blocks the leafdb is behind the execution client's head (as last seen).
    pub fn blocks_behind(&self) -> u64 {
        self.el_head().saturating_sub(self.head())
    }

    /// Seconds since the execution client last answered a step, `None` before its first
    /// answer in this run.
    pub fn el_silent_secs(&self) -> Option<u64> {
        let at = self.el_answered_at();
        (at > 0).then(|| unix_secs().saturating_sub(at))
    }
}
