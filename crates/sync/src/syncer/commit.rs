//! Verified chunks written off the loop. The pieces of an answer that equal their skeleton
//! hashes are staged (hashed) by the loop, then written together on a thread of their own
//! ([`LeafDb::commit_chunks`]: table files built side by side and ingested), while the loop
//! goes on with the next answers. Once written they are taken in ([`Syncer::take_in`]), in
//! the order they were started. At most [`MAX_WRITES`] answers' writes run at once: a write
//! spends much of its time waiting for file and manifest syncs, which the next one overlaps.
//!
//! Nothing else depends on a write still running: the next pieces' prefixes are disjoint from
//! its own (so staging them reads nothing it writes, and two writes never touch the same
//! keys), and whatever follows from its pieces
//! (a storage closed and its skeleton written above its chunks, large storages and codes
//! queued, a lie judged) happens only once it is written. A re-pivot, the end of the loop and
//! a failed run wait for it.
//!
//! [`LeafDb::commit_chunks`]: leafsync_leafdb::LeafDb::commit_chunks

use std::{collections::VecDeque, sync::Arc};

use alloy_primitives::B256;
use leafsync_leafdb::{ChunkSet, KvStore, LeafDbError, StagedChunk};
use tokio::sync::oneshot;

use super::Syncer;
use crate::{error::SyncError, import::Leaves, peer_set::Verdict, tasks::Unit};

/// A verified piece: its unit, its leaves and, for an account chunk, its accounts' computed
/// storage roots.
type Piece = (Unit, Leaves, Vec<Option<B256>>);

/// The verified pieces of one answer, staged to be written together.
#[derive(Debug, Default)]
pub(super) struct Verified {
    set: ChunkSet,
    pieces: Vec<Piece>,
}

impl Verified {
    /// Adds a staged chunk and returns what it computed.
    pub(super) fn add<T>(&mut self, staged: StagedChunk<T>) -> T {
        self.set.add(staged)
    }

    /// Records the piece whose chunk was just added.
    pub(super) fn push(&mut self, unit: Unit, leaves: Leaves, storage_roots: Vec<Option<B256>>) {
        self.pieces.push((unit, leaves, storage_roots));
    }
}

/// An answer's verified pieces being written: the write's result arrives on `done`.
#[derive(Debug)]
pub(super) struct Committing {
    done: oneshot::Receiver<Result<(), LeafDbError>>,
    peer: usize,
    pieces: Vec<Piece>,
}

/// Answers' writes running at once, at most: two keep one building files while the other
/// waits for its syncs, on the two cores the benchmarks run on.
pub(super) const MAX_WRITES: usize = 2;

/// The result of the oldest write in `committing`, when it ends (never, without one).
pub(super) async fn committed(committing: &mut VecDeque<Committing>) -> CommitResult {
    match committing.front_mut() {
        Some(c) => (&mut c.done).await,
        None => std::future::pending().await,
    }
}

/// What a write's thread sent, or that it ended without sending (a panic).
pub(super) type CommitResult = Result<Result<(), LeafDbError>, oneshot::error::RecvError>;

/// Blocks the loop's thread until the write's thread sends its result. Unconstrained: inside a
/// tokio task whose budget is spent, the receiver would answer "not yet" and leave its wake-up
/// to the scheduler, which never runs while this blocks.
fn wait(done: &mut oneshot::Receiver<Result<(), LeafDbError>>) -> CommitResult {
    futures::executor::block_on(tokio::task::unconstrained(done))
}

impl<S: KvStore + 'static> Syncer<S> {
    /// Starts writing the verified pieces staged from one answer from `peer` (once fewer than
    /// [`MAX_WRITES`] are running: the oldest is waited for and taken in first).
    pub(super) fn take_in(&mut self, peer: usize, verified: Verified) -> Result<(), SyncError> {
        if verified.pieces.is_empty() {
            return Ok(());
        }
        while self.committing.len() >= MAX_WRITES {
            self.settle_oldest()?;
        }
        let (tx, done) = oneshot::channel();
        let (db, set) = (Arc::clone(&self.db), verified.set);
        std::thread::Builder::new()
            .name("sync-commit".into())
            .spawn(move || {
                let _ = tx.send(db.commit_chunks(set));
            })
            .map_err(|e| SyncError::ChunkWriter(format!("cannot start: {e}")))?;
        self.committing.push_back(Committing { done, peer, pieces: verified.pieces });
        Ok(())
    }

    /// Waits for every write still running and takes their pieces in, oldest first.
    pub(super) fn settle(&mut self) -> Result<(), SyncError> {
        while !self.committing.is_empty() {
            self.settle_oldest()?;
        }
        Ok(())
    }

    /// Waits for the oldest write, if any, and takes its pieces in.
    fn settle_oldest(&mut self) -> Result<(), SyncError> {
        let Some(oldest) = self.committing.front_mut() else { return Ok(()) };
        let result = wait(&mut oldest.done);
        self.on_committed(result)
    }

    /// The oldest write ended with `result` ([`committed`]): takes its pieces in.
    pub(super) fn on_committed(&mut self, result: CommitResult) -> Result<(), SyncError> {
        let Some(committing) = self.committing.pop_front() else { return Ok(()) };
        self.written(committing.peer, committing.pieces, result)
    }

    /// Waits for the writes still running without taking their pieces in (the run failed: a
    /// resumed run finds them in the tables).
    pub(super) fn abandon_commit(&mut self) {
        for mut committing in self.committing.drain(..) {
            let _ = wait(&mut committing.done);
        }
    }

    /// A write ended with `result`: takes its pieces in. A storage chunk closes
    /// its storage (if it was the last); an account chunk's accounts are checked (storage roots
    /// against their inline storage, large storages and codes queued). A storage root that
    /// lies is junk for `peer`.
    fn written(
        &mut self,
        peer: usize,
        pieces: Vec<Piece>,
        result: CommitResult,
    ) -> Result<(), SyncError> {
        match result {
            Ok(written) => written?,
            Err(_) => return Err(SyncError::ChunkWriter("ended without a result".into())),
        }
        for (unit, leaves, storage_roots) in pieces {
            self.count_import(&unit, &leaves);
            self.reporter.stats.chunks_verified += 1;
            let Leaves::Accounts { accounts, large } = leaves else {
                self.close(unit.owner)?;
                continue;
            };
            for (account, slot_count) in large {
                self.work.sizes.record(account, slot_count);
            }
            let mut lied = None;
            for (a, computed) in accounts.iter().zip(storage_roots) {
                self.reporter.stats.slots += a.storage.as_ref().map_or(0, |s| s.len() as u64);
                if let Some(lie) =
                    self.after_verified_account(a.hashed_address, &a.account, computed)?
                {
                    lied = Some(lie);
                }
            }
            if let Some(why) = lied {
                self.judge(peer, Verdict::Junk(why));
            }
        }
        Ok(())
    }
}
