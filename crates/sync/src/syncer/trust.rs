//! What a sync run can vouch for in the tables beyond what it wrote and verified itself:
//! whether its final check must scan and hash the flat state, and what it may trust at a
//! re-pivot ([`Trust`]).

use crate::stats::SyncStats;

/// What the run can vouch for in the tables (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Trust {
    /// Whether this run can vouch for everything stored besides what the [`Carry`] holds: the
    /// tables held a complete state at the start, or nothing, or what a run that marked what it
    /// left open wrote ([`SyncProgress::marked`]). It then trusts them at its start and at a
    /// re-pivot ([`Self::tables_complete`]). A run over an unmarked record cannot (each of its
    /// re-pivots re-derives every stored unit it meets, as its start does).
    ///
    /// [`Carry`]: crate::carry::Carry
    /// [`SyncProgress::marked`]: crate::progress::SyncProgress::marked
    pub(super) vouched: bool,
    /// Why the final check must scan and hash the flat state: the first thing in this run that
    /// wrote flat entries without an import hashing them against the trie, or that leaves
    /// entries this run did not write. `None`: every flat entry was written by a verified
    /// import. Not persisted: a resumed run always hashes again.
    pub(super) rehash: Option<&'static str>,
    /// Set once a final check of this run scanned the flat state and found it whole, to the
    /// chunk counters then: what the run writes after it (a catch-up's heals) starts from a
    /// proved state.
    pub(super) scanned: Option<ChunkCounts>,
    /// Whether the tables held a complete state at the start (a head and no progress record: a
    /// synced or followed state, maybe off the chain, as a repair starts from), whose flat
    /// entries agree with its stored tries and accounts with their storage and code: a subtrie
    /// found complete then needs no re-derivation, and an account a heal leaves as it was no
    /// storage check. Set by a re-pivot too where the run is [`Self::vouched`] for, which
    /// carries what that rule does not cover; cleared once the final check finds anything.
    pub(super) tables_complete: bool,
}

impl Trust {
    /// Notes that the final check must hash the flat state again, and why (the first reason
    /// stays).
    pub(super) fn must_rehash(&mut self, why: &'static str) {
        self.rehash.get_or_insert(why);
    }

    /// [`Self::must_rehash`] for flat entries this run wrote without an import hashing them (a
    /// heal's, a re-derivation's, what a re-pivot keeps), unless a final check of this run has
    /// scanned the flat state and found it whole ([`Self::scanned`]): each such write is then a
    /// reconciliation from verified nodes over a proved state, as a repair's.
    pub(super) fn wrote_unhashed(&mut self, why: &'static str) {
        if self.scanned.is_none() {
            self.must_rehash(why);
        }
    }

    /// The final check's scan found the flat state whole at the counters of `stats`: the run
    /// vouches for the tables, and writes after it need no second scan unless the operator
    /// asked for every check to scan (`full_final_check`).
    pub(super) fn proved_whole(&mut self, stats: &SyncStats, full_final_check: bool) {
        self.scanned = Some(ChunkCounts::of(stats));
        self.vouched = true;
        self.rehash = full_final_check.then_some("sync.full_final_check");
    }
}

/// The chunk counters the final check weighs (see [`SyncStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ChunkCounts {
    total: u64,
    done: u64,
    verified: u64,
    healed: u64,
}

impl ChunkCounts {
    pub(super) fn of(stats: &SyncStats) -> Self {
        Self {
            total: stats.chunks_total,
            done: stats.chunks_done,
            verified: stats.chunks_verified,
            healed: stats.chunks_healed,
        }
    }

    /// What was counted after `base`.
    pub(super) fn since(self, base: Self) -> Self {
        Self {
            total: self.total.wrapping_sub(base.total),
            done: self.done.wrapping_sub(base.done),
            verified: self.verified.wrapping_sub(base.verified),
            healed: self.healed.wrapping_sub(base.healed),
        }
    }

    /// Whether every unit created was done, each either verified on import or healed.
    pub(super) fn closed(self) -> bool {
        self.done == self.total && self.verified.wrapping_add(self.healed) == self.total
    }
}
