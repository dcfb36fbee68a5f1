//! The end of a sync: the final check of what was synced against the pivot (with a merge-scan
//! of the flat state when the run was not clean) and the commit of the synced head.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use alloy_primitives::B256;
use alloy_trie::Nibbles;
use leafsync_leafdb::{BlockHeader, KvStore, SyncMark};
use leafsync_p2p::leaf::ChainHead;
use tokio::{sync::watch, time::Instant};
use tracing::{info, warn};

use super::{SyncOutcome, Syncer, trust::ChunkCounts};
use crate::{config::MAX_CATCH_UPS, error::SyncError, peer_set::Standing, stats::WorkKind};

impl<S: KvStore + 'static> Syncer<S> {
    /// Checks the end before it is committed: the account trie's root (with the skeleton above
    /// the chunks written) against the pivot's; then, unless the run was clean, the flat state
    /// by merge-scan. Flat storage that does not hash to its account's root, storage without an
    /// account and missing codes are queued again; returns what was found (empty: complete).
    ///
    /// A clean run ([`Trust::rehash`] is `None`: no resume, no state stored at the start, no
    /// heal, no re-pivot, no repair) whose counters close needs no scan. Every flat entry was
    /// written by an import in the same atomic batch as the subtrie built from those very
    /// leaves, after clearing the prefix, and that subtrie's hash was checked against the node
    /// its parent names; the root check above then proves the flat accounts hash to the pivot's
    /// root, and the storage likewise to each account's storage root. Storage is written only
    /// under accounts of such chunks, which nothing removes in a clean run, so none is orphaned.
    /// Every code an imported account names was queued and is counted until a finished write
    /// stored it ([`CodeQueue::unwritten`]); a code unaccounted for makes the check scan. Nor
    /// does the end of a catch-up ([`Self::catch_up`]) after a scan of this run that found the
    /// state whole: its heals reconcile flat entries from verified nodes over that state.
    pub(super) async fn final_check(&mut self) -> Result<String, SyncError> {
        self.reporter.mark(WorkKind::Finish);
        let root = self.db.write_sync_skeleton(&self.work.take_account_skeleton())?;
        if root != self.pivot.state_root {
            return Err(SyncError::RootMismatch { got: root, expected: self.pivot.state_root });
        }
        let counts = ChunkCounts::of(&self.reporter.stats);
        if !counts.since(self.trust.scanned.unwrap_or_default()).closed() {
            self.trust.must_rehash("chunk counters disagree");
        }
        let storages = self.carry.storages_left();
        if storages > 0 {
            warn!(storages, "state sync: storages carried over a re-pivot were not taken up");
            self.trust.must_rehash("storages carried over a re-pivot not taken up");
        }
        if self.codes.unwritten() > 0 {
            warn!(codes = self.codes.unwritten(), "state sync: codes queued but not written");
            self.trust.must_rehash("codes unaccounted for");
        }
        let Some(why) = self.trust.rehash else {
            let s = &self.reporter.stats;
            if self.trust.scanned.is_some() {
                info!(
                    pivot = self.pivot.number,
                    codes = s.codes,
                    "state sync: caught up; what \
                    changed since the scan was healed from verified nodes, every code written"
                );
            } else {
                info!(
                    chunks = s.chunks_total,
                    codes = s.codes,
                    "state sync: all items in, each verified on import and every code written"
                );
            }
            return Ok(String::new());
        };
        let started = Instant::now();
        info!(why, "state sync: all items in; hashing the flat state again (merge-scan)");
        // The check reads the whole flat state (seconds at 4M accounts, minutes on mainnet): on
        // a blocking thread, not on a runtime worker that the node's sessions, its server and
        // its follower share (on a one-core machine they would all stop meanwhile).
        // A sync dropped meanwhile (the node stopping) stops the scan through the guard.
        let db = Arc::clone(&self.db);
        let stop = StopOnDrop::default();
        let flag = Arc::clone(&stop.0);
        let check = tokio::task::spawn_blocking(move || db.check_flat_state(&flag));
        let check = check.await.map_err(|e| SyncError::Check(e.to_string()))??;
        drop(stop);
        self.reporter.stats.final_rehashed += check.hashed_leaves();
        info!(
            secs = started.elapsed().as_secs_f64(),
            problems = check.problems,
            hashed = check.hashed_leaves(),
            "state sync: flat state checked"
        );
        if check.problems > 0 || check.accounts_root != self.pivot.state_root {
            // What the repairs write is imported and verified again, but the pass after them
            // hashes everything: a cause not understood is not trusted.
            self.trust.must_rehash("repaired");
            self.trust_tables(false);
            self.trust.scanned = None;
        }
        if check.accounts_root != self.pivot.state_root {
            let flat = check.accounts_root;
            // The flat accounts disagree with a verified trie: rewrite them from it.
            warn!(%flat, "flat accounts differ from the synced trie");
            self.trust.must_rehash("repaired");
            self.reporter.stats.final_repairs += 1;
            self.resume_complete(None, Nibbles::new(), root)?;
            return Ok(format!("flat accounts hash to {flat}"));
        }
        if check.problems == 0 {
            self.proved_whole()?;
            return Ok(String::new());
        }
        let found = format!(
            "{} accounts with wrong flat storage, {} orphan storages, {} missing codes",
            check.bad_storage.len(),
            check.orphan_storage.len(),
            check.missing_code.len()
        );
        self.reporter.stats.final_repairs += check.problems;
        for owner in check.orphan_storage {
            self.db.import_storage_chunk(&owner, &Nibbles::new(), &[])?;
        }
        for (owner, storage_root) in check.bad_storage {
            self.db.import_storage_chunk(&owner, &Nibbles::new(), &[])?;
            self.start_storage(owner);
            self.add_unit(Some(owner), Nibbles::new(), storage_root)?;
        }
        for hash in check.missing_code {
            self.codes.forget(&hash);
            self.want_code(hash)?;
        }
        self.marks.flush(&self.db)?;
        Ok(found)
    }

    /// After a final check that found nothing, re-pivots if the trusted head (or the peers'
    /// where they may choose the pivot) is `repivot_distance` past the pivot, as [`Self::drive`]
    /// does during the sync; returns whether it did, and the sync then goes on. A scan of the
    /// flat state takes minutes on mainnet (the pivot does not move meanwhile), and a head
    /// recorded that far back would leave the follower more blocks to trace than the execution
    /// client keeps states for (geth: 128): it would get stuck, and the repair that follows
    /// would scan and fall behind again. The catch-up's own end needs no second scan
    /// ([`Self::wrote_unhashed`]), so it ends within a few blocks. At most [`MAX_CATCH_UPS`].
    pub(super) fn catch_up(
        &mut self,
        feed: Option<&watch::Receiver<ChainHead>>,
        catch_ups: &mut u32,
    ) -> Result<bool, SyncError> {
        let (pivot, epoch) = (self.pivot.number, self.epoch.current());
        let trusted = feed.map(|f| *f.borrow());
        if *catch_ups == MAX_CATCH_UPS {
            let far = pivot.saturating_add(self.config.repivot_distance);
            if let Some(head) = trusted.filter(|h| h.number >= far) {
                warn!(
                    pivot,
                    head = head.number,
                    catch_ups = *catch_ups,
                    "state sync: the head moved on during every final check; recording the pivot"
                );
            }
            return Ok(false);
        }
        self.maybe_repivot(trusted)?;
        if self.epoch.current() == epoch {
            return Ok(false);
        }
        *catch_ups += 1;
        info!(
            from = pivot,
            to = self.pivot.number,
            scanned = self.trust.scanned.is_some(),
            "state sync: the head moved on during the final check; catching up"
        );
        Ok(true)
    }

    /// The final check's scan found the flat state whole at the pivot: nothing stored is
    /// suspect or carried any more, and what a catch-up writes over it needs no second scan
    /// unless the operator asked for one (`full_final_check`).
    fn proved_whole(&mut self) -> Result<(), SyncError> {
        self.trust.proved_whole(&self.reporter.stats, self.config.full_final_check);
        self.carry.clear();
        // Staged marks go to the leafdb first, or a later flush would write them back.
        self.marks.flush(&self.db)?;
        self.db.clear_sync_marks(&[SyncMark::Suspect, SyncMark::OpenStorage])?;
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<SyncOutcome, SyncError> {
        let head = BlockHeader {
            number: self.pivot.number,
            hash: self.pivot.hash,
            parent_hash: B256::ZERO,
            state_root: self.pivot.state_root,
            timestamp: 0,
        };
        // Clears the progress record in the same write.
        let root = self.db.record_synced_head(head)?;
        self.reporter.done();
        self.log_progress();
        Ok(SyncOutcome {
            pivot: self.pivot,
            root,
            banned: self.peers.ids(Standing::Banned),
            dropped: self.peers.ids(Standing::Dropped),
            stats: self.reporter.stats,
        })
    }
}

/// A flag set when it is dropped: the flat check's scan on its blocking thread stops once the
/// sync that awaits it is dropped (the node stopping), instead of running on for minutes.
#[derive(Debug, Default)]
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
