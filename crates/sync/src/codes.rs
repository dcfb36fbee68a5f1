//! [`CodeQueue`]: the codes a sync fetches, each hash asked once per sync (codes do not depend
//! on the pivot, so the queue survives a re-pivot).
//!
//! Codes are asked in hash order, so that the held codes can be written as table files of
//! disjoint hash ranges ([`CodeQueue::watermark`]): each then goes to the code table's last
//! level, as chunks do, and nothing compacts them again (a file of codes from all over the hash
//! space overlaps every other and lands in level 0, whose compaction rewrote 346 MB of code at 4M
//! accounts; docs/benchmarks.md). A peer takes codes when it has no chunk of its own, so most
//! are asked late in the account chunks or after them, when most hashes are known; a code found
//! below a written file makes one file that overlaps it (at 4M accounts all ten went to the
//! last level).
//!
//! Memory is what the queue costs at mainnet size (millions of distinct codes, nearly all
//! queued before they are asked): each code is held once in a hash map (asked once, and where
//! it stands) and, until it is asked, once more in a heap of bare hashes. Codes asked
//! and not delivered, the only ordered set, are a request window's worth.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap, HashMap, VecDeque},
};

use alloy_primitives::B256;
use leafsync_leafdb::EMPTY_CODE_HASH;

use crate::{
    config::{
        CODE_BATCH_BYTES, CODE_SIZE_SAMPLE, CODES_PER_REQUEST, MAX_CODES_PER_BATCH,
        QUEUE_SCAN_LIMIT,
    },
    error::SyncError,
    tasks::{Attempts, CodeTask, queue_again, requeue, take_for},
};

/// Where a code of [`CodeQueue`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CodeState {
    /// Queued: to ask, asked, or put back.
    Queued,
    /// Delivered and verified; its write has not returned yet.
    Delivered,
    /// In the code table: a write that holds it returned, or it was stored before.
    Written,
}

/// The codes of a sync; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct CodeQueue {
    /// Codes tried and put back (an empty or failed answer, a dropped peer, or left out of an
    /// answer at its budget), asked before the fresh ones.
    again: VecDeque<CodeTask>,
    /// Codes not asked yet, lowest hash on top.
    fresh: BinaryHeap<Reverse<B256>>,
    /// Codes taken from [`Self::fresh`] and not delivered yet (in [`Self::again`] or in flight),
    /// in hash order: with the top of `fresh`, the watermark.
    asked: BTreeSet<B256>,
    /// Every code queued in this run (or found stored), each once, and where it stands.
    seen: HashMap<B256, CodeState>,
    /// Codes of [`Self::seen`] not written yet: what the end of a clean sync checks instead of
    /// scanning the code table ([`Self::unwritten`]).
    unwritten: usize,
    /// Codes delivered so far and their bytes, which size the batches.
    delivered: (u64, u64),
}

impl CodeQueue {
    /// Codes to ask.
    pub(crate) fn len(&self) -> usize {
        self.again.len() + self.fresh.len()
    }

    /// Whether no code is left to ask.
    pub(crate) fn is_empty(&self) -> bool {
        self.again.is_empty() && self.fresh.is_empty()
    }

    /// Up to `max` codes for `peer` (see [`take_for`]): those put back first, then the fresh
    /// ones, lowest hashes first. Enough fresh ones join those put back to fill a batch past the
    /// ones `peer` tried (counted among the first [`QUEUE_SCAN_LIMIT`], as `take_for` looks).
    pub(crate) fn take(
        &mut self,
        peer: usize,
        active: &[usize],
        max: usize,
    ) -> Result<Vec<CodeTask>, SyncError> {
        let scanned = self.again.iter().take(QUEUE_SCAN_LIMIT);
        let tried = scanned.filter(|t| t.attempts.tried.contains(&peer)).count();
        while self.again.len() < max.saturating_add(tried) {
            let Some(Reverse(hash)) = self.fresh.pop() else { break };
            self.asked.insert(hash);
            self.again.push_back(CodeTask { hash, attempts: Attempts::default() });
        }
        // The heap held every code at its peak: its memory goes as it empties.
        if self.fresh.len() < self.fresh.capacity() / 4 {
            self.fresh.shrink_to(self.fresh.len() * 2);
        }
        take_for(&mut self.again, peer, active, max)
    }

    /// Puts codes back, marked as tried by `peer`.
    pub(crate) fn requeue(&mut self, tasks: impl IntoIterator<Item = CodeTask>, peer: usize) {
        requeue(&mut self.again, tasks, peer);
    }

    /// Puts codes back untried, first in line (a server left them out at its byte budget).
    pub(crate) fn queue_again(&mut self, tasks: impl IntoIterator<Item = CodeTask>) {
        queue_again(&mut self.again, tasks);
    }

    /// Counts `codes` delivered (verified) and their bytes.
    pub(crate) fn delivered(&mut self, codes: &[(B256, Vec<u8>)]) {
        self.delivered.0 += codes.len() as u64;
        for (hash, code) in codes {
            self.delivered.1 += code.len() as u64;
            self.asked.remove(hash);
            if let Some(state @ CodeState::Queued) = self.seen.get_mut(hash) {
                *state = CodeState::Delivered;
            }
        }
    }

    /// The lowest hash of a code queued and not delivered yet (`None`: every one came). Codes
    /// below it make a table file that no code asked later falls into, unless an account found
    /// later brings a lower one (then that file overlaps, and is compacted as before).
    pub(crate) fn watermark(&self) -> Option<B256> {
        let fresh = self.fresh.peek().map(|Reverse(hash)| *hash);
        match (fresh, self.asked.first().copied()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Codes to ask in one `GetCodes`: [`CODES_PER_REQUEST`] until [`CODE_SIZE_SAMPLE`] codes
    /// came, then as many of their average size as fill [`CODE_BATCH_BYTES`], between
    /// [`CODES_PER_REQUEST`] and [`MAX_CODES_PER_BATCH`].
    pub(crate) fn batch_size(&self) -> usize {
        let (count, bytes) = self.delivered;
        if count < CODE_SIZE_SAMPLE {
            return CODES_PER_REQUEST;
        }
        let average = (bytes / count).max(1);
        usize::try_from(CODE_BATCH_BYTES / average)
            .unwrap_or(usize::MAX)
            .clamp(CODES_PER_REQUEST, MAX_CODES_PER_BATCH)
    }

    /// Queues the code `hash` unless it is the empty code, already seen, or `stored`; returns
    /// whether it was queued.
    pub(crate) fn want(
        &mut self,
        hash: B256,
        stored: impl FnOnce(&B256) -> Result<bool, SyncError>,
    ) -> Result<bool, SyncError> {
        if hash == EMPTY_CODE_HASH || self.seen.contains_key(&hash) {
            return Ok(false);
        }
        if stored(&hash)? {
            // Stored already: remembered as written, so that the next account naming it asks
            // the tables no more.
            self.seen.insert(hash, CodeState::Written);
            return Ok(false);
        }
        self.seen.insert(hash, CodeState::Queued);
        self.unwritten += 1;
        self.fresh.push(Reverse(hash));
        Ok(true)
    }

    /// Notes `hashes` written to the code table (their write returned).
    pub(crate) fn written(&mut self, hashes: &[B256]) {
        for hash in hashes {
            if let Some(state) = self.seen.get_mut(hash)
                && *state != CodeState::Written
            {
                *state = CodeState::Written;
                self.unwritten -= 1;
            }
        }
    }

    /// Codes queued in this run that no finished write has stored: 0 once the queue is done
    /// and every write has returned, unless a code went astray between its answer and its
    /// write (which the end of a sync then looks for in the tables).
    pub(crate) fn unwritten(&self) -> usize {
        self.unwritten
    }

    /// Forgets a code delivered or written (the final check found it missing), so that
    /// [`Self::want`] queues it again; a code still queued stays as it is (it is asked anyway).
    pub(crate) fn forget(&mut self, hash: &B256) {
        match self.seen.get(hash) {
            Some(CodeState::Queued) | None => {}
            Some(CodeState::Delivered) => {
                self.seen.remove(hash);
                self.unwritten -= 1;
            }
            Some(CodeState::Written) => {
                self.seen.remove(hash);
            }
        }
    }
}

#[cfg(test)]
#[path = "codes_tests.rs"]
mod tests;
