//! Verified chunks and codes written off the loop (codes as table files of disjoint hash ranges,
//! [`HeldCodes`]). The pieces of an answer that equal their skeleton
//! hashes are staged (hashed) by the loop and held back ([`Holding`]) until enough of them are
//! held that their writes share table files; then a batch of them is written together on a
//! thread of their own ([`LeafDb::commit_chunks`]: table files built side by side and
//! ingested), while the loop goes on with the next answers. Once written they are taken in
//! ([`Syncer::take_in`]), in the order their writes were started. At most [`MAX_WRITES`]
//! writes run at once: a write spends much of its time waiting for file and manifest syncs,
//! which the next one overlaps.
//!
//! Nothing else depends on a piece held or being written: the next pieces' prefixes are
//! disjoint from its own (so staging them reads nothing it writes, and two writes never touch
//! the same keys), and whatever follows from its pieces (a storage closed and its skeleton
//! written above its chunks, large storages and codes queued, a lie judged) happens only once
//! it is written. Once no chunk is left to hand out, what the pieces bring may be all the peers
//! can be given next, so nothing is held back any more. A re-pivot, the end of the loop and a
//! failed run wait for the writes; a failed run drops what is held (a resumed run asks for it
//! again).
//!
//! [`LeafDb::commit_chunks`]: leafsync_leafdb::LeafDb::commit_chunks

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};

use alloy_primitives::B256;
use alloy_trie::{Nibbles, TrieAccount};
use leafsync_leafdb::{
    ChunkSet, KvStore, LeafDb, LeafDbError,
    keys::{account_range, range_bound, storage_range},
};
use tokio::sync::oneshot;

use super::Syncer;
use crate::{
    SyncConfig,
    error::SyncError,
    holding::Holding,
    import::{Leaves, leaves_work},
    peer_set::{Sender, Verdict},
    tasks::Unit,
};

/// A verified piece: the peer that sent it (its slot and id: the slot may have a newcomer by
/// the time the piece is taken in), its unit, and what taking it in needs of its leaves.
type Piece = (Sender, Unit, Kept);

/// What taking in a written piece needs of its leaves. The slots are in the tables by then, and
/// they are most of a chunk's memory: a held piece keeps only their count. So are the accounts
/// that leave nothing to do (no code, storage complete inline): most accounts of a state.
#[derive(Debug)]
pub(super) enum Kept {
    /// The piece's account count; per account that has a code or whose storage is not complete
    /// inline, its hashed address, its record and the storage root computed from its inline
    /// storage (`None`: a large storage, fetched apart); the inline slots' count; the announced
    /// slot count of each large storage.
    Accounts {
        count: u64,
        accounts: Vec<(B256, TrieAccount, Option<B256>)>,
        slots: u64,
        large: Vec<(B256, u64)>,
    },
    /// A storage chunk's slot count.
    Slots(u64),
}

/// Verified pieces held back, each with its staged chunk.
type Held = Holding<(ChunkSet, Piece)>;

/// The verified pieces of one answer, each with its staged chunk.
#[derive(Debug, Default)]
pub(super) struct Verified {
    pieces: Vec<(ChunkSet, Piece)>,
}

impl Verified {
    /// Adds the piece from `peer` for `unit` with its staged `chunk`: its leaves and, for an
    /// account chunk, its accounts' storage roots as the staging computed them.
    pub(super) fn push(
        &mut self,
        chunk: ChunkSet,
        peer: Sender,
        unit: Unit,
        leaves: Leaves,
        storage_roots: Vec<Option<B256>>,
    ) {
        let kept = match leaves {
            Leaves::Accounts { accounts, large } => {
                let slots: usize =
                    accounts.iter().filter_map(|a| a.storage.as_ref()).map(Vec::len).sum();
                let count = accounts.len() as u64;
                let accounts = accounts
                    .into_iter()
                    .zip(storage_roots)
                    .filter(|(a, root)| leaves_work(&a.account, *root))
                    .map(|(a, root)| (a.hashed_address, a.account, root))
                    .collect();
                Kept::Accounts { count, accounts, slots: slots as u64, large }
            }
            Leaves::Slots { slots, .. } => Kept::Slots(slots.len() as u64),
        };
        self.pieces.push((chunk, (peer, unit, kept)));
    }
}

/// Verified pieces being written: the write's result arrives on `done`.
#[derive(Debug)]
pub(super) struct Committing {
    done: oneshot::Receiver<Result<u64, LeafDbError>>,
    pieces: Vec<Piece>,
    /// The hashes of the codes it writes.
    codes: Vec<B256>,
}

/// Writes running at once, at most: two keep one building files while the other waits for its
/// syncs, on the two cores the benchmarks run on.
pub(super) const MAX_WRITES: usize = 2;

/// Verified codes not yet written, by hash, and their bytes.
///
/// Codes are asked in hash order ([`crate::codes::CodeQueue`]), and a file is written of the
/// codes below the watermark, the lowest hash not delivered yet: no code asked later falls into
/// its range, so each file goes to the code table's last level beside the others.
#[derive(Debug)]
struct HeldCodes {
    codes: BTreeMap<B256, Vec<u8>>,
    bytes: usize,
    file_bytes: usize,
}

impl HeldCodes {
    /// Holds codes for files of `file_bytes` ([`crate::SyncConfig::code_file_bytes`]).
    fn new(file_bytes: usize) -> Self {
        Self { codes: BTreeMap::new(), bytes: 0, file_bytes }
    }

    /// Holds `codes`. Takes out, to be written, the codes below `watermark` (`None`: all) once
    /// a file's bytes of them are held, or every code once twice that is held (a code below
    /// them is slow to come: the file may overlap the next).
    fn hold(
        &mut self,
        codes: Vec<(B256, Vec<u8>)>,
        watermark: Option<B256>,
    ) -> Option<Vec<(B256, Vec<u8>)>> {
        for (hash, code) in codes {
            self.bytes += code.len();
            if let Some(old) = self.codes.insert(hash, code) {
                self.bytes -= old.len();
            }
        }
        let below = match watermark {
            Some(watermark) => self.codes.range(..watermark).map(|(_, code)| code.len()).sum(),
            None => self.bytes,
        };
        if below >= self.file_bytes {
            let above = watermark.map(|w| self.codes.split_off(&w)).unwrap_or_default();
            self.bytes -= below;
            return Some(std::mem::replace(&mut self.codes, above).into_iter().collect());
        }
        (self.bytes >= self.file_bytes.saturating_mul(2)).then(|| self.take())
    }

    /// Takes every code held, in hash order.
    fn take(&mut self) -> Vec<(B256, Vec<u8>)> {
        self.bytes = 0;
        std::mem::take(&mut self.codes).into_iter().collect()
    }

    fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
}

/// Verified chunks and codes on their way to the tables: held back, then written on threads of
/// their own, oldest first.
#[derive(Debug)]
pub(super) struct Writes {
    /// Verified chunks held back to be written together.
    held: Held,
    /// Writes running, oldest first.
    pub(super) running: VecDeque<Committing>,
    /// Verified codes not yet written.
    codes: HeldCodes,
}

impl Writes {
    pub(super) fn new(config: &SyncConfig) -> Self {
        Self {
            held: Held::new(config.hold_bytes, config.hold_bytes / 4),
            running: VecDeque::new(),
            codes: HeldCodes::new(config.code_file_bytes),
        }
    }

    /// The result of the oldest write running, when it ends (never, without one).
    pub(super) async fn committed(&mut self) -> CommitResult {
        match self.running.front_mut() {
            Some(c) => (&mut c.done).await,
            None => std::future::pending().await,
        }
    }
}

/// What a write's thread sent, or that it ended without sending (a panic).
pub(super) type CommitResult = Result<Result<u64, LeafDbError>, oneshot::error::RecvError>;

/// Blocks the loop's thread until the write's thread sends its result. Unconstrained: inside a
/// tokio task whose budget is spent, the receiver would answer "not yet" and leave its wake-up
/// to the scheduler, which never runs while this blocks.
fn wait(done: &mut oneshot::Receiver<Result<u64, LeafDbError>>) -> CommitResult {
    futures::executor::block_on(tokio::task::unconstrained(done))
}

impl<S: KvStore + 'static> Syncer<S> {
    /// Holds the verified pieces staged from one answer ([`Holding`]). Once a run of them
    /// reaches a quarter of [`SyncConfig::hold_bytes`] or all of it is held, the complete runs,
    /// those of a quarter and the largest others are written; once no chunk is left to hand
    /// out, everything held is.
    ///
    /// [`SyncConfig::hold_bytes`]: crate::SyncConfig::hold_bytes
    pub(super) fn take_in(&mut self, verified: Verified) -> Result<(), SyncError> {
        for (set, piece) in verified.pieces {
            let Some(span) = set.span().map(|(lo, hi)| (lo.to_vec(), hi.to_vec())) else {
                // A set of no chunk (not made by `ChunkSet::of`): nothing to hold it by.
                self.start_write(vec![(set, piece)])?;
                continue;
            };
            let (lo, hi) = match &piece.1.owner {
                None => account_range(&Nibbles::new()),
                Some(owner) => storage_range(owner, &Nibbles::new()),
            };
            let trie = (range_bound(lo), range_bound(hi));
            let bytes = set.bytes();
            let overlapping = self.writes.held.hold(span, trie, bytes, (set, piece));
            self.start_write(overlapping)?;
        }
        if self.work.units.is_empty() {
            self.write_held()?;
        } else if self.writes.held.due() {
            let ready = self.writes.held.take_ready();
            self.start_write(ready)?;
        }
        Ok(())
    }

    /// Starts writing `chunks` (once fewer than [`MAX_WRITES`] are running: the oldest is
    /// waited for and taken in first).
    fn start_write(&mut self, chunks: Vec<(ChunkSet, Piece)>) -> Result<(), SyncError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut set = ChunkSet::default();
        let mut pieces = Vec::with_capacity(chunks.len());
        for (chunk, piece) in chunks {
            set.append(chunk);
            if let (_, _, Kept::Accounts { accounts, .. }) = &piece {
                for (hashed, account, inline_root) in accounts {
                    self.before_write(*hashed, account, *inline_root)?;
                }
            }
            pieces.push(piece);
        }
        self.spawn_write(pieces, Vec::new(), move |db| db.commit_chunks(set))
    }

    /// Holds verified codes; once a file's bytes of them are below the watermark
    /// ([`HeldCodes`]), starts writing those. Nothing
    /// waits for a code once it is verified; a run that fails drops those held, as a kill does,
    /// and a resumed run asks for them again (its final check lists missing codes).
    pub(super) fn hold_codes(&mut self, codes: Vec<(B256, Vec<u8>)>) -> Result<(), SyncError> {
        match self.writes.codes.hold(codes, self.codes.watermark()) {
            Some(due) => self.write_codes(due),
            None => Ok(()),
        }
    }

    /// Starts writing `codes`.
    fn write_codes(&mut self, codes: Vec<(B256, Vec<u8>)>) -> Result<(), SyncError> {
        if codes.is_empty() {
            return Ok(());
        }
        let hashes = codes.iter().map(|(hash, _)| *hash).collect();
        self.spawn_write(Vec::new(), hashes, move |db| db.write_codes(codes))
    }

    /// Runs `write` on a thread of its own, its `pieces` taken in and its `codes` counted
    /// written once it is done (once fewer than [`MAX_WRITES`] are running: the oldest is
    /// waited for and taken in first). What the pieces need is marked first ([`Marks`]).
    ///
    /// [`Marks`]: crate::marks::Marks
    fn spawn_write(
        &mut self,
        pieces: Vec<Piece>,
        codes: Vec<B256>,
        write: impl FnOnce(&LeafDb<S>) -> Result<u64, LeafDbError> + Send + 'static,
    ) -> Result<(), SyncError> {
        while self.writes.running.len() >= MAX_WRITES {
            self.settle_oldest()?;
        }
        self.marks.flush(&self.db)?;
        let (tx, done) = oneshot::channel();
        let db = Arc::clone(&self.db);
        std::thread::Builder::new()
            .name("sync-commit".into())
            .spawn(move || {
                let result = write(&db);
                // Let go of the leafdb before the loop hears of the result: the loop may then
                // drop the last other handle and the process exit (a failed sync), and RocksDB
                // closed on this thread meanwhile would race the exit ("pthread lock: Invalid
                // argument", an abort after a clean end).
                drop(db);
                let _ = tx.send(result);
            })
            .map_err(|e| SyncError::ChunkWriter(format!("cannot start: {e}")))?;
        self.writes.running.push_back(Committing { done, pieces, codes });
        Ok(())
    }

    /// Starts writing every piece held back (at each progress interval: what a crash loses
    /// stays bounded in time on a slow network).
    pub(super) fn write_held(&mut self) -> Result<(), SyncError> {
        let all = self.writes.held.take_all();
        self.start_write(all)
    }

    /// Whether pieces or codes are held back or being written.
    pub(super) fn writing(&self) -> bool {
        !self.writes.held.is_empty()
            || !self.writes.codes.is_empty()
            || !self.writes.running.is_empty()
    }

    /// Writes the pieces and codes held back, waits for every write still running and takes
    /// their pieces in, oldest first.
    pub(super) fn settle(&mut self) -> Result<(), SyncError> {
        self.write_held()?;
        let codes = self.writes.codes.take();
        self.write_codes(codes)?;
        while !self.writes.running.is_empty() {
            self.settle_oldest()?;
        }
        Ok(())
    }

    /// Waits for the oldest write, if any, and takes its pieces in.
    fn settle_oldest(&mut self) -> Result<(), SyncError> {
        let Some(oldest) = self.writes.running.front_mut() else { return Ok(()) };
        let result = wait(&mut oldest.done);
        self.on_committed(result)
    }

    /// The oldest write ended with `result` ([`committed`]): takes its pieces in and counts its
    /// codes written.
    pub(super) fn on_committed(&mut self, result: CommitResult) -> Result<(), SyncError> {
        let Some(committing) = self.writes.running.pop_front() else { return Ok(()) };
        self.written(committing.pieces, result)?;
        self.codes.written(&committing.codes);
        self.marks.codes_written(&committing.codes);
        Ok(())
    }

    /// Drops the pieces held back and waits for the writes still running without taking their
    /// pieces in (the run failed: a resumed run finds what was written in the tables, and asks
    /// for the rest again).
    pub(super) fn abandon_commit(&mut self) {
        drop(self.writes.held.take_all());
        drop(self.writes.codes.take());
        for mut committing in self.writes.running.drain(..) {
            let _ = wait(&mut committing.done);
        }
    }

    /// A write ended with `result`: takes its pieces in. A storage chunk closes
    /// its storage (if it was the last); an account chunk's accounts are checked (storage roots
    /// against their inline storage, large storages and codes queued). A storage root that
    /// lies is junk for the peer that sent it.
    fn written(&mut self, pieces: Vec<Piece>, result: CommitResult) -> Result<(), SyncError> {
        match result {
            Ok(written) => self.reporter.stats.table_files += written?,
            Err(_) => return Err(SyncError::ChunkWriter("ended without a result".into())),
        }
        for (peer, unit, kept) in pieces {
            self.reporter.stats.chunks_verified += 1;
            // An import replaces its unit's flat entries and subtrie whole, and takes in every
            // account's storage below: nothing carried there is left to do.
            let settled = self.carry.settled(unit.owner, &unit.prefix);
            self.marks.settled(unit.owner, &settled)?;
            if unit.owner.is_none() {
                drop(self.carry.take_storages_under(&unit.prefix));
            }
            let (count, accounts, slots, large) = match kept {
                Kept::Accounts { count, accounts, slots, large } => (count, accounts, slots, large),
                Kept::Slots(slots) => {
                    self.count_import(&unit, (0, slots));
                    self.close(unit.owner)?;
                    continue;
                }
            };
            self.count_import(&unit, (count, 0));
            self.reporter.stats.slots += slots;
            for (account, slot_count) in large {
                self.work.sizes.record(account, slot_count);
            }
            let mut lied = None;
            for (hashed, account, computed) in &accounts {
                if let Some(lie) = self.after_verified_account(*hashed, account, *computed)? {
                    lied = Some(lie);
                }
            }
            if let Some(why) = lied
                && self.peers.holds(peer)
            {
                self.judge(peer.0, Verdict::Junk(why));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::keccak256;

    use super::*;
    use crate::{codes::CodeQueue, tasks::CodeTask};

    const FILE: usize = 1 << 20;

    fn code(i: u8, len: usize) -> (B256, Vec<u8>) {
        (B256::repeat_byte(i), vec![0; len])
    }

    fn hashes(codes: &[(B256, Vec<u8>)]) -> Vec<u8> {
        codes.iter().map(|(h, _)| h[0]).collect()
    }

    /// With every code delivered (no watermark), codes are held until a file's bytes of
    /// them are, then all taken out together, in hash order; what is held below that stays
    /// until taken.
    #[test]
    fn codes_are_held_until_a_file_is_full() {
        let mut held = HeldCodes::new(FILE);
        let half = FILE / 2;
        assert!(held.hold(vec![code(2, half)], None).is_none());
        assert!(held.hold(vec![code(1, half - 1)], None).is_none(), "one byte short");
        let due = held.hold(vec![code(3, 1)], None).expect("full");
        assert_eq!(hashes(&due), [1, 2, 3]);
        assert!(held.is_empty());
        assert!(held.hold(vec![code(4, 10)], None).is_none());
        assert_eq!(held.take().len(), 1);
        assert!(held.is_empty());
        assert!(held.hold(Vec::new(), None).is_none(), "the count starts over after a take");
    }

    /// Only the codes below the watermark make a file, once they fill one: its range then ends
    /// below every code still to come. Past twice a file's bytes everything goes.
    #[test]
    fn a_code_file_ends_below_the_watermark() {
        let mut held = HeldCodes::new(FILE);
        let half = FILE / 2;
        let mark = |i: u8| Some(B256::repeat_byte(i));
        assert!(held.hold(vec![code(1, half), code(5, half)], mark(3)).is_none());
        let due = held.hold(vec![code(2, half)], mark(6)).expect("a file is full below 6");
        // 5 is below the watermark now, and goes with 1 and 2.
        assert_eq!(hashes(&due), [1, 2, 5]);
        assert!(held.hold(vec![code(9, half), code(8, half)], mark(7)).is_none());
        assert!(held.hold(vec![code(10, half)], mark(7)).is_none(), "3 halves above 7");
        let due = held.hold(vec![code(11, half)], mark(7)).expect("the hold is full");
        assert_eq!(hashes(&due), [8, 9, 10, 11]);
        assert!(held.is_empty());
    }

    /// Delivers the codes of `tasks` (`len` bytes each) and holds them; a file due is kept.
    fn deliver(
        tasks: Vec<CodeTask>,
        len: usize,
        queue: &mut CodeQueue,
        held: &mut HeldCodes,
        files: &mut Vec<Vec<(B256, Vec<u8>)>>,
    ) {
        let got: Vec<_> = tasks.into_iter().map(|task| (task.hash, vec![0; len])).collect();
        queue.delivered(&got);
        files.extend(held.hold(got, queue.watermark()));
    }

    /// Codes asked in hash order by four peers, their answers back out of order (the last
    /// peer's first, the first peer's a round late), make files of disjoint hash ranges, each
    /// code in one: a file holds only codes below the lowest not delivered yet.
    #[test]
    fn codes_answered_out_of_order_make_files_of_disjoint_ranges() {
        let (codes, len, peers) = (400u32, FILE / 50, [0, 1, 2, 3]);
        let mut queue = CodeQueue::default();
        for i in 0..codes {
            queue.want(keccak256(i.to_be_bytes()), |_| Ok(false)).unwrap();
        }
        let (mut held, mut files, mut late) = (HeldCodes::new(FILE), Vec::new(), Vec::new());
        while !queue.is_empty() || !late.is_empty() {
            let mut batches: Vec<_> =
                peers.iter().map(|p| queue.take(*p, &peers, 10).unwrap()).collect();
            let first = batches.remove(0);
            for batch in batches.into_iter().rev() {
                deliver(batch, len, &mut queue, &mut held, &mut files);
            }
            let late_now = std::mem::replace(&mut late, first);
            deliver(late_now, len, &mut queue, &mut held, &mut files);
        }
        files.push(held.take());
        files.retain(|file| !file.is_empty());
        // A file holds a file's bytes of codes and at most twice that.
        assert!(files.len() >= codes as usize * len / (2 * FILE), "{} files", files.len());
        for pair in files.windows(2) {
            let (a, b) = (pair[0].last().unwrap().0, pair[1].first().unwrap().0);
            assert!(a < b, "a file ending at {a} overlaps the next, from {b}");
        }
        let written: Vec<B256> = files.iter().flatten().map(|(hash, _)| *hash).collect();
        assert_eq!(written.len(), codes as usize, "every code");
        assert!(written.windows(2).all(|w| w[0] < w[1]), "once each, in hash order");
    }
}
