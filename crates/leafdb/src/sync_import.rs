//! Writing what a state sync downloads in bulk: a chunk's leaves with the subtrie they determine,
//! codes, and at the end the skeleton with the head. Healing is in [`crate::sync_heal`].
//!
//! Every write replaces what was stored under its prefix, so importing the same chunk twice (a
//! retry, a restart) gives the same tables. A stored node always has its complete subtree:
//! chunk subtries are written whole, healed nodes only once their children are stored (the
//! caller commits bottom-up), skeleton nodes last.

use std::sync::{Condvar, Mutex};

use alloy_primitives::{B256, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};

use crate::{
    db::LeafDb,
    error::{LeafDbError, Result},
    keys::{account_range, node_range, range_bound, storage_key, storage_range},
    kv::{Durability, KvRead, KvStore, SortedWriter, Table, WriteBatch},
    schema::{self, BlockHeader, encode_account, encode_slot_value, meta, slot_leaf_value},
    trie::{NoLeaves, StackBuilder, nibbles_hex},
};

/// Nodes whose RLP is shorter than a hash are embedded in their parent, never stored alone.
const HASH_LEN: usize = 32;

/// The tables a chunk import writes, in the order they are made visible (see
/// `ChunkWrites::into_runs`).
const COMMIT_ORDER: [Table; 4] =
    [Table::Storage, Table::StorageNodes, Table::Accounts, Table::AccountNodes];

/// One table's new entries of a chunk import, in key order once staged, and where its files
/// are cut: before the storage of an account that follows a large storage (one fetched by
/// storage chunks of its own), so that no file of this chunk spans that storage's keys and the
/// storage chunks' files fit beside it. Keys and values live in one buffer: a chunk has
/// thousands of entries, and one allocation each (and their frees) cost more than the hashing
/// of small ones.
#[derive(Debug, Default)]
struct Run {
    bytes: Vec<u8>,
    /// Per entry: where its key starts, where its value starts, where its value ends.
    entries: Vec<(usize, usize, usize)>,
    cuts: Vec<usize>,
}

impl Run {
    /// Makes room for `entries` more entries of `bytes` in all, so that staging a chunk does
    /// not copy its buffers again each time they fill.
    fn reserve(&mut self, entries: usize, bytes: usize) {
        self.entries.reserve(entries);
        self.bytes.reserve(bytes);
    }

    fn push(&mut self, key: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        self.push_value(start, value);
    }

    /// Adds the node at `path` of the trie of `owner` (its key as [`crate::keys::node_key`] makes it).
    fn push_node(&mut self, owner: Option<&B256>, path: &Nibbles, rlp: &[u8]) {
        let start = self.bytes.len();
        if let Some(owner) = owner {
            self.bytes.extend_from_slice(owner.as_slice());
        }
        self.bytes.extend(path.iter());
        self.push_value(start, rlp);
    }

    fn push_value(&mut self, start: usize, value: &[u8]) {
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.entries.push((start, key_end, self.bytes.len()));
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sorts the entries from `first` on by key, comparing from byte `skip` of each key (a
    /// prefix they share). One trie's nodes at a time: a storage trie holds a few nodes, so its
    /// sort costs next to nothing, where one sort of a chunk's whole run compares every key's
    /// 32-byte owner again.
    fn sort_from(&mut self, first: usize, skip: usize) {
        let bytes = &self.bytes;
        self.entries[first..]
            .sort_unstable_by(|a, b| bytes[a.0 + skip..a.1].cmp(&bytes[b.0 + skip..b.1]));
    }

    /// Ends the file before the next entry. A cut before the first entry or after the last
    /// one still counts: the run may share its files with a neighbouring chunk's
    /// (`LeafDb::commit_chunks`), and a large storage at either end of the chunk must not be
    /// spanned by them.
    fn cut(&mut self) {
        if self.cuts.last() != Some(&self.entries.len()) {
            self.cuts.push(self.entries.len());
        }
    }

    /// Puts the entries into `file`, cutting its files where staged.
    fn write(&self, file: &mut dyn SortedWriter) -> Result<()> {
        let mut cuts = self.cuts.iter().peekable();
        for (i, &(start, key_end, end)) in self.entries.iter().enumerate() {
            if cuts.next_if_eq(&&i).is_some() {
                file.cut()?;
            }
            file.put(&self.bytes[start..key_end], &self.bytes[key_end..end])?;
        }
        if cuts.next_if_eq(&&self.entries.len()).is_some() {
            file.cut()?;
        }
        Ok(())
    }
}

/// What a chunk import writes: range deletes where its prefix held keys, then one sorted run
/// of new entries per table, written as table files and ingested ([`KvStore::sorted_writer`])
/// instead of passing through the write-ahead log, the memtables and their later flushes and
/// compactions: a sync's chunks are disjoint key ranges, so their files go straight to the
/// bottom level.
#[derive(Debug)]
struct ChunkWrites {
    /// The chunk's flat key range `[lo, hi)` ([`account_range`], [`storage_range`], each bound
    /// as [`range_bound`] writes it): every key it writes, in each table, lies within the range
    /// its prefix spans there.
    span: (Vec<u8>, Vec<u8>),
    clear: WriteBatch,
    storage: Run,
    storage_nodes: Run,
    accounts: Run,
    account_nodes: Run,
}

impl ChunkWrites {
    /// Writes over `span` for a chunk of `accounts` accounts and `slots` slots, its runs sized
    /// for them: a slot takes its 64-byte key and a value of up to 33 bytes, an account its
    /// 32-byte key and a record of up to ~110; a trie's nodes take about 50 bytes a leaf in the
    /// account trie and 58–76 in a storage trie, whose keys carry the owner (a 33-byte
    /// reference for each leaf and branch, a branch for every two or three leaves, and their
    /// keys). Reserved at the mean, half of the storage runs outgrew their buffers, which then
    /// doubled: a held storage chunk's node run took twice its bytes (56 MB of a 4M-account
    /// sync's memory peak).
    fn new((lo, hi): (Vec<u8>, Vec<u8>), accounts: usize, slots: usize) -> Self {
        let mut writes = Self {
            span: (range_bound(lo), range_bound(hi)),
            clear: WriteBatch::default(),
            storage: Run::default(),
            storage_nodes: Run::default(),
            accounts: Run::default(),
            account_nodes: Run::default(),
        };
        writes.storage.reserve(slots, slots * 97);
        writes.storage_nodes.reserve(slots / 2, slots * 80);
        writes.accounts.reserve(accounts, accounts * 142);
        writes.account_nodes.reserve(accounts / 2, accounts * 64);
        writes
    }

    fn nodes(&mut self, owner: Option<&B256>) -> &mut Run {
        if owner.is_some() { &mut self.storage_nodes } else { &mut self.account_nodes }
    }

    /// The runs in the order they are made visible: an account's storage before the account,
    /// each trie's nodes after the flat entries they are built from, the account subtrie's
    /// nodes last. Every run is in key order: the flat runs are staged so, and each trie's
    /// nodes are sorted once it is built ([`stage_subtrie`]), the tries staged in owner order.
    fn into_runs(self) -> [(Table, Run); 4] {
        let [storage, storage_nodes, accounts, account_nodes] = COMMIT_ORDER;
        [
            (storage, self.storage),
            (storage_nodes, self.storage_nodes),
            (accounts, self.accounts),
            (account_nodes, self.account_nodes),
        ]
    }
}

/// One account of a downloaded chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkAccount {
    /// Hashed address.
    pub hashed_address: B256,
    /// The account record.
    pub account: TrieAccount,
    /// Its complete storage, sorted by hashed slot (values non-zero), or `None` when the storage
    /// is fetched separately (large storage): nothing is written for it then.
    pub storage: Option<Vec<(B256, U256)>>,
}

/// What importing an account chunk computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChunkOutcome {
    /// Hash of the subtrie's top node (the node at the chunk prefix).
    pub root: B256,
    /// Per account, in input order, the storage root computed from its inline storage (`None`
    /// for storage fetched separately).
    pub storage_roots: Vec<Option<B256>>,
}

/// Builds the subtrie of `leaves` (full keys under `prefix`, sorted) and stages its nodes.
fn stage_subtrie(
    writes: &mut ChunkWrites,
    owner: Option<&B256>,
    prefix: &Nibbles,
    leaves: impl Iterator<Item = (Nibbles, Vec<u8>)>,
) -> Result<B256> {
    let run = writes.nodes(owner);
    let first = run.entries.len();
    // Leaves are not stored: they are rebuilt from the flat entries staged beside them.
    let mut builder = StackBuilder::new(NoLeaves(|rel: &Nibbles, rlp: &[u8]| {
        if rel.is_empty() && rlp.len() < HASH_LEN && !prefix.is_empty() {
            return Ok(());
        }
        run.push_node(owner, &prefix.join(rel), rlp);
        Ok(())
    }));
    for (key, value) in leaves {
        if !key.starts_with(prefix) {
            return Err(LeafDbError::UnsortedInput { key: nibbles_hex(&key) });
        }
        builder.add_leaf(key.slice(prefix.len()..), value)?;
    }
    let root = builder.finish()?.root;
    // The builder emits children before their parents; the table files take keys in order.
    run.sort_from(first, owner.map_or(0, |_| HASH_LEN));
    Ok(root)
}

/// Builds a storage trie over sorted slots, staging its nodes and flat entries.
fn stage_storage(
    writes: &mut ChunkWrites,
    owner: &B256,
    prefix: &Nibbles,
    slots: &[(B256, U256)],
) -> Result<B256> {
    for (slot, value) in slots {
        writes.storage.push(&storage_key(owner, slot), &encode_slot_value(value));
    }
    let leaves = slots.iter().map(|(s, v)| (Nibbles::unpack(s), slot_leaf_value(v)));
    stage_subtrie(writes, Some(owner), prefix, leaves)
}

/// Stages a range delete of `[lo, hi)` in `table` only if a key is there: a first import (the
/// common case) finds its ranges empty, and a range tombstone costs a write, and every later
/// read that crosses it, while one iterator seek is cheap. The caller must not let another
/// write into the range land between this check and its batch (a sync imports its chunks from
/// one loop).
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

/// Stages deletion of every flat and node entry of the account trie under `prefix`, including
/// the storage of those accounts.
fn clear_account_prefix<S: KvRead>(kv: &S, batch: &mut WriteBatch, prefix: &Nibbles) -> Result<()> {
    let (lo, hi) = account_range(prefix);
    clear_range(kv, batch, Table::Accounts, (lo.clone(), hi.clone()))?;
    clear_range(kv, batch, Table::Storage, (lo.clone(), hi.clone()))?;
    clear_range(kv, batch, Table::StorageNodes, (lo, hi))?;
    clear_range(kv, batch, Table::AccountNodes, node_range(None, prefix))
}

/// A chunk import computed but not yet written ([`LeafDb::stage_account_chunk`],
/// [`LeafDb::stage_storage_chunk`]): what it computed, and the writes that import it
/// ([`LeafDb::commit_chunk`]). Dropped, it imports nothing, so a caller can look at the
/// subtrie's hash before it lets the chunk replace what is stored.
#[must_use = "a staged chunk imports nothing until it is committed"]
#[derive(Debug)]
pub struct StagedChunk<T> {
    outcome: T,
    writes: ChunkWrites,
}

impl<T> StagedChunk<T> {
    /// What the import computed (the subtrie's hash, and for accounts their storage roots).
    pub const fn outcome(&self) -> &T {
        &self.outcome
    }
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
    /// empty). A set of one chunk spans its prefix's flat range ([`account_range`],
    /// [`storage_range`]).
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
        self.commit_chunk(self.stage_account_chunk(prefix, accounts)?)
    }

    /// [`Self::import_account_chunk`] without the write: nothing changes until
    /// [`Self::commit_chunk`], and nothing may be written under `prefix` before it.
    pub fn stage_account_chunk(
        &self,
        prefix: &Nibbles,
        accounts: &[ChunkAccount],
    ) -> Result<StagedChunk<AccountChunkOutcome>> {
        let slots = accounts.iter().filter_map(|a| a.storage.as_ref()).map(Vec::len).sum();
        let mut writes = ChunkWrites::new(account_range(prefix), accounts.len(), slots);
        clear_account_prefix(self.store(), &mut writes.clear, prefix)?;
        let mut storage_roots = Vec::with_capacity(accounts.len());
        let mut leaves = Vec::with_capacity(accounts.len());
        for a in accounts {
            let root = match &a.storage {
                Some(slots) => {
                    Some(stage_storage(&mut writes, &a.hashed_address, &Nibbles::new(), slots)?)
                }
                None => {
                    writes.storage.cut();
                    writes.storage_nodes.cut();
                    None
                }
            };
            storage_roots.push(root);
            let value = encode_account(&a.account);
            writes.accounts.push(a.hashed_address.as_slice(), &value);
            leaves.push((Nibbles::unpack(a.hashed_address), value));
        }
        let root = stage_subtrie(&mut writes, None, prefix, leaves.into_iter())?;
        Ok(StagedChunk { outcome: AccountChunkOutcome { root, storage_roots }, writes })
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
        self.commit_chunk(self.stage_storage_chunk(owner, prefix, slots)?)
    }

    /// [`Self::import_storage_chunk`] without the write (see [`Self::stage_account_chunk`]).
    pub fn stage_storage_chunk(
        &self,
        owner: &B256,
        prefix: &Nibbles,
        slots: &[(B256, U256)],
    ) -> Result<StagedChunk<B256>> {
        let mut writes = ChunkWrites::new(storage_range(owner, prefix), 0, slots.len());
        let clear = &mut writes.clear;
        clear_range(self.store(), clear, Table::Storage, storage_range(owner, prefix))?;
        clear_range(self.store(), clear, Table::StorageNodes, node_range(Some(owner), prefix))?;
        let root = stage_storage(&mut writes, owner, prefix, slots)?;
        Ok(StagedChunk { outcome: root, writes })
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
            clear.append(std::mem::take(&mut writes.clear));
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

#[cfg(test)]
mod tests;
