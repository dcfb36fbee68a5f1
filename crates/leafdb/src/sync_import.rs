//! Writing what a state sync downloads in bulk: a chunk's leaves with the subtrie they determine,
//! codes, and at the end the skeleton with the head. Healing is in [`crate::sync_heal`].
//!
//! Every write replaces what was stored under its prefix, so importing the same chunk twice (a
//! retry, a restart) gives the same tables. A stored node always has its complete subtree:
//! chunk subtries are written whole, healed nodes only once their children are stored (the
//! caller commits bottom-up), skeleton nodes last.

use std::sync::{Condvar, Mutex};

use alloy_primitives::{B256, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles};

pub use self::stage::{
    AccountChunkOutcome, ChunkAccount, StagedChunk, stage_account_chunk, stage_storage_chunk,
};
use self::stage::{COMMIT_ORDER, ChunkWrites, Run};
use crate::{
    db::LeafDb,
    error::{LeafDbError, Result},
    kv::{Durability, KvRead, KvStore, SortedWriter, Table, WriteBatch},
    schema::{self, BlockHeader, meta},
};

/// Stages a range delete of `[lo, hi)` in `table` only if a key is there: a first import (the
/// common case) finds its ranges empty, and a range tombstone costs a write, and every later
/// read that crosses it, while one iterator seek is cheap. Runs in the commit of the
/// batch: no other write into the range may land between the two (a sync never writes one
/// prefix twice at once).
pub(crate) fn clear_range<S: KvRead>(
    kv: &S,
    batch: &mut WriteBatch,
    table: Table,
    (lo, hi): (Vec<u8>, Vec<u8>),
) -> Result<()> {
    let occupied = match kv.iter_from(table, &lo).next() {
        Some(item) => item?.0.as_ref() < hi.as_slice(),
        None => false,
    };
    if occupied {
        batch.delete_range(table, lo, hi);
    }
    Ok(())
}

/// Staged chunks of disjoint prefixes to be written together ([`LeafDb::commit_chunks`]).
#[must_use = "staged chunks import nothing until they are committed"]
#[derive(Debug, Default)]
pub struct ChunkSet {
    writes: Vec<ChunkWrites>,
}

impl ChunkSet {
    /// A set of one staged chunk, and what it computed.
    pub fn of<T>(staged: StagedChunk<T>) -> (Self, T) {
        (Self { writes: vec![staged.writes] }, staged.outcome)
    }

    /// Adds a staged chunk (its prefix disjoint from the others') and returns what it computed.
    pub fn add<T>(&mut self, staged: StagedChunk<T>) -> T {
        self.writes.push(staged.writes);
        staged.outcome
    }

    /// Whether no chunk was added.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Moves `other`'s chunks (their prefixes disjoint from these) into this set.
    pub fn append(&mut self, mut other: Self) {
        self.writes.append(&mut other.writes);
    }

    /// The key range the chunks span, from the lowest start to the highest end (`None` when
    /// empty). A set of one chunk spans its prefix's flat range ([`crate::keys::account_range`],
    /// [`crate::keys::storage_range`]).
    pub fn span(&self) -> Option<(&[u8], &[u8])> {
        let lo = self.writes.iter().map(|w| w.span.0.as_slice()).min()?;
        let hi = self.writes.iter().map(|w| w.span.1.as_slice()).max()?;
        Some((lo, hi))
    }

    /// Bytes of keys and values the chunks write.
    pub fn bytes(&self) -> usize {
        let runs = self.writes.iter().flat_map(|w| {
            [&w.storage, &w.storage_nodes, &w.accounts, &w.account_nodes].map(|r| r.bytes.len())
        });
        runs.sum()
    }
}

/// Whose ingestion is next in a [`LeafDb::commit_chunks`], by table position, or that one
/// failed (then none further is ingested).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    Next(usize),
    Failed,
}

/// Waits until table position `i` may ingest (every earlier table has), ingests `written` (if
/// there is anything), and passes the turn on. Every position takes its turn, also one with
/// nothing to write, so that the later ones do not wait for it forever.
fn ingest_in_turn(
    (lock, ready): &(Mutex<Turn>, Condvar),
    i: usize,
    written: Result<Option<Box<dyn SortedWriter + '_>>>,
) -> Result<u64> {
    let mut turn = lock.lock().unwrap_or_else(|e| e.into_inner());
    while matches!(*turn, Turn::Next(n) if n < i) {
        turn = ready.wait(turn).unwrap_or_else(|e| e.into_inner());
    }
    let result = match *turn {
        Turn::Failed => Err(LeafDbError::Invariant("an earlier table of the chunks failed")),
        Turn::Next(_) => written.and_then(|file| file.map_or(Ok(0), |file| file.finish())),
    };
    *turn = if result.is_ok() { Turn::Next(i + 1) } else { Turn::Failed };
    ready.notify_all();
    result
}

impl<S: KvStore> LeafDb<S> {
    /// Replaces everything under the account prefix `prefix` with `accounts` (sorted, all under
    /// `prefix`): flat accounts, inline storage with its tries, and the account subtrie, durable
    /// (it survives a killed process) when this returns; see [`Self::commit_chunk`] for the
    /// order its tables become visible in. Returns the subtrie's hash and the computed storage
    /// roots. Must not run concurrently with another write under `prefix`: whether to write its
    /// range deletes is read before the write.
    pub fn import_account_chunk(
        &self,
        prefix: &Nibbles,
        accounts: &[ChunkAccount],
    ) -> Result<AccountChunkOutcome> {
        self.commit_chunk(stage_account_chunk(prefix, accounts)?)
    }

    /// Replaces the storage of `owner` under `prefix` with `slots` (sorted, under `prefix`) and
    /// its subtrie, durable when this returns (see [`Self::commit_chunk`]); returns the
    /// subtrie's hash. Must not run concurrently with another write under `prefix`.
    pub fn import_storage_chunk(
        &self,
        owner: &B256,
        prefix: &Nibbles,
        slots: &[(B256, U256)],
    ) -> Result<B256> {
        self.commit_chunk(stage_storage_chunk(owner, prefix, slots)?)
    }

    /// Writes a staged chunk and returns what it computed; see [`Self::commit_chunks`].
    pub fn commit_chunk<T>(&self, staged: StagedChunk<T>) -> Result<T> {
        let (set, outcome) = ChunkSet::of(staged);
        self.commit_chunks(set)?;
        Ok(outcome)
    }

    /// Writes staged chunks of disjoint prefixes together. The range deletes (only where a
    /// prefix held keys: a chunk imported again) go first, in one logged write; then, table by
    /// table in the order of `ChunkWrites::into_runs`, the chunks' new entries as table files
    /// (neighbouring chunks sharing them, none spanning another chunk's keys or a large storage
    /// fetched apart) ingested in one step: each
    /// step appears whole and durable, and the subtries' top nodes last. A process killed in
    /// between leaves a prefix without that node, which a sync takes for a chunk not yet
    /// imported: it imports it again, clearing the prefix first. Each ingestion step costs a
    /// few manifest writes and syncs, and each file about a millisecond of CPU, so a caller
    /// with several chunks at hand writes them together (the sync holds them back until runs of
    /// neighbours can share files). Returns the table files written (0 without files: the
    /// in-memory store).
    pub fn commit_chunks(&self, set: ChunkSet) -> Result<u64> {
        let mut chunks = set.writes;
        chunks.sort_unstable_by(|a, b| a.span.0.cmp(&b.span.0));
        // Disjoint, checked before anything is written: files of one ingestion may overlap,
        // and the later would silently win where two chunks share keys.
        for pair in chunks.windows(2) {
            if pair[1].span.0 < pair[0].span.1 {
                let key = alloy_primitives::hex::encode(&pair[1].span.0);
                return Err(LeafDbError::UnsortedInput { key });
            }
        }
        // Per table, the chunks' runs in key order, each with the number of its neighbourhood:
        // chunks whose ranges meet (one's end is the next one's start) have no other chunk's
        // keys between them, so they share files. Each table file costs a sync and a manifest
        // entry, and a large state's account chunks are small (~400 KB at 4M accounts).
        let mut clear = WriteBatch::default();
        let mut tables: [Vec<(usize, Run)>; 4] = Default::default();
        let (mut neighbourhood, mut end) = (0, None);
        for mut writes in chunks {
            if end.as_ref() != Some(&writes.span.0) {
                neighbourhood += 1;
            }
            end = Some(std::mem::take(&mut writes.span.1));
            for (table, range) in std::mem::take(&mut writes.clears) {
                clear_range(self.store(), &mut clear, table, range)?;
            }
            for (i, (_, run)) in writes.into_runs().into_iter().enumerate() {
                if !run.is_empty() {
                    tables[i].push((neighbourhood, run));
                }
            }
        }
        if !clear.is_empty() {
            self.store().write(clear, Durability::Logged)?;
        }
        // The tables' files are written side by side (building them is most of the work), and
        // ingested one after the other in their order; after a failure none further is.
        let turn = (Mutex::new(Turn::Next(0)), Condvar::new());
        let store = self.store();
        std::thread::scope(|scope| {
            let tables = COMMIT_ORDER.into_iter().zip(tables).enumerate();
            let writers: Vec<_> = tables
                .map(|(i, (table, runs))| {
                    let turn = &turn;
                    scope.spawn(move || {
                        if runs.is_empty() {
                            return ingest_in_turn(turn, i, Ok(None));
                        }
                        let write = || {
                            let mut file = store.sorted_writer(table)?;
                            let mut last = None;
                            for (neighbourhood, run) in &runs {
                                // A gap between two chunks belongs to others: no file spans it.
                                if last != Some(neighbourhood) {
                                    file.cut()?;
                                }
                                last = Some(neighbourhood);
                                run.write(file.as_mut())?;
                            }
                            file.cut()?;
                            Ok(Some(file))
                        };
                        // A panic must still pass the turn on, or the later tables would wait
                        // for it forever.
                        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(write))
                            .unwrap_or(Err(LeafDbError::Invariant("writing table files panicked")));
                        ingest_in_turn(turn, i, written)
                    })
                })
                .collect();
            let mut result = Ok(0);
            for writer in writers {
                let done = writer.join().unwrap_or(Err(LeafDbError::Invariant("writer panicked")));
                result = result.and_then(|files| done.map(|more| files + more));
            }
            result
        })
    }

    /// Whether any flat or trie-node entry is stored (codes aside: they are keyed by their hash
    /// and never wrong). A sync that starts on tables without one writes every entry itself.
    pub fn holds_state(&self) -> Result<bool> {
        for table in [Table::Accounts, Table::Storage, Table::AccountNodes, Table::StorageNodes] {
            if self.store().iter_from(table, &[]).next().transpose()?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Writes bytecodes, each keyed by its keccak-256 hash as given (the caller hashed every
    /// code to check it), as sorted table files ingested at once: durable on return, without
    /// the log or the memtable, whose flush copied a sync's codes (a quarter of what it
    /// downloads) through the page cache. Returns the files written.
    pub fn write_codes(&self, mut codes: Vec<(B256, Vec<u8>)>) -> Result<u64> {
        codes.sort_unstable_by_key(|(hash, _)| *hash);
        codes.dedup_by(|a, b| a.0 == b.0);
        let mut file = self.store().sorted_writer(Table::Code)?;
        for (hash, code) in &codes {
            file.put(hash.as_slice(), code)?;
        }
        file.finish()
    }

    /// Writes the account trie's top nodes of a sync (`skeleton`, paths above the chunks) and
    /// returns the root the stored trie now has. Records no head: see
    /// [`Self::record_synced_head`].
    pub fn write_sync_skeleton(&self, skeleton: &[(Nibbles, Vec<u8>)]) -> Result<B256> {
        self.write_trie_nodes(None, skeleton)?;
        Ok(self.node(None, &Nibbles::new())?.map_or(EMPTY_ROOT_HASH, keccak256))
    }

    /// Ends a sync: records `head` and the stored trie's root, and removes the sync's progress
    /// record, in one durable write, only if that root is `head.state_root` (otherwise nothing
    /// is written and the database stays without a head, so a restart syncs again rather than
    /// serving a wrong state). Returns the recorded root. What was written without the log is
    /// flushed to disk first. Counted as a revert ([`Self::reverts`]): a state read before
    /// (a repair's old head, or a fork it replaced) is not kept past it.
    pub fn record_synced_head(&self, head: BlockHeader) -> Result<B256> {
        let root = self.node(None, &Nibbles::new())?.map_or(EMPTY_ROOT_HASH, keccak256);
        if root != head.state_root {
            return Err(LeafDbError::SyncedRootMismatch {
                stored: root,
                expected: head.state_root,
            });
        }
        self.store().flush()?;
        let mut batch = WriteBatch::default();
        batch.put(Table::Meta, meta::ACCOUNT_ROOT, root.as_slice());
        schema::stage_head(&mut batch, &head);
        crate::progress::stage_clear_progress(&mut batch);
        self.store().write(batch, Durability::Synced)?;
        self.reverts.fetch_add(1, std::sync::atomic::Ordering::Release);
        self.publish_head(head);
        Ok(root)
    }
}

mod stage;
#[cfg(test)]
mod tests;
