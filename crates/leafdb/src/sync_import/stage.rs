//! A chunk import staged: its subtrie hashed and its writes built as sorted runs, reading
//! nothing from the store, so that a sync can stage answers on any thread and write them later
//! ([`crate::LeafDb::commit_chunks`]).

use alloy_primitives::{B256, U256};
use alloy_trie::{Nibbles, TrieAccount};

use crate::{
    error::{LeafDbError, Result},
    keys::{account_range, node_range, range_bound, storage_key, storage_range},
    kv::{SortedWriter, Table},
    schema::{encode_account, encode_slot_value, slot_leaf_value},
    trie::{NoLeaves, StackBuilder, nibbles_hex},
};

/// A table's key range `[lo, hi)`, deleted before a chunk's writes where it holds keys.
pub(super) type ClearRange = (Table, (Vec<u8>, Vec<u8>));

/// Nodes whose RLP is shorter than a hash are embedded in their parent, never stored alone.
const HASH_LEN: usize = 32;

/// The tables a chunk import writes, in the order they are made visible (see
/// `ChunkWrites::into_runs`).
pub(super) const COMMIT_ORDER: [Table; 4] =
    [Table::Storage, Table::StorageNodes, Table::Accounts, Table::AccountNodes];

/// One table's new entries of a chunk import, in key order once staged, and where its files
/// are cut: before the storage of an account that follows a large storage (one fetched by
/// storage chunks of its own), so that no file of this chunk spans that storage's keys and the
/// storage chunks' files fit beside it. Keys and values live in one buffer: a chunk has
/// thousands of entries, and one allocation each (and their frees) cost more than the hashing
/// of small ones.
#[derive(Debug, Default)]
pub(super) struct Run {
    pub(super) bytes: Vec<u8>,
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

    /// Adds the node at `path` of the trie of `owner` (its key as [`crate::keys::node_key`]
    /// makes it).
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

    pub(super) fn is_empty(&self) -> bool {
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
    pub(super) fn write(&self, file: &mut dyn SortedWriter) -> Result<()> {
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
pub(super) struct ChunkWrites {
    /// The chunk's flat key range `[lo, hi)` ([`account_range`], [`storage_range`], each bound
    /// as [`range_bound`] writes it): every key it writes, in each table, lies within the range
    /// its prefix spans there.
    pub(super) span: (Vec<u8>, Vec<u8>),
    /// The ranges to delete first where they hold keys (read at the commit: a chunk imported
    /// again replaces what an earlier import wrote).
    pub(super) clears: Vec<ClearRange>,
    pub(super) storage: Run,
    pub(super) storage_nodes: Run,
    pub(super) accounts: Run,
    pub(super) account_nodes: Run,
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
            clears: Vec::new(),
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
    pub(super) fn into_runs(self) -> [(Table, Run); 4] {
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

/// The ranges of every flat and node entry of the account trie under `prefix`, including the
/// storage of those accounts.
pub(super) fn account_prefix_ranges(prefix: &Nibbles) -> Vec<ClearRange> {
    let (lo, hi) = account_range(prefix);
    vec![
        (Table::Accounts, (lo.clone(), hi.clone())),
        (Table::Storage, (lo.clone(), hi.clone())),
        (Table::StorageNodes, (lo, hi)),
        (Table::AccountNodes, node_range(None, prefix)),
    ]
}

/// A chunk import computed but not yet written ([`stage_account_chunk`],
/// [`stage_storage_chunk`]): what it computed, and the writes that import it
/// ([`crate::LeafDb::commit_chunk`]). Dropped, it imports nothing, so a caller can look at the
/// subtrie's hash before it lets the chunk replace what is stored.
#[must_use = "a staged chunk imports nothing until it is committed"]
#[derive(Debug)]
pub struct StagedChunk<T> {
    pub(super) outcome: T,
    pub(super) writes: ChunkWrites,
}

impl<T> StagedChunk<T> {
    /// What the import computed (the subtrie's hash, and for accounts their storage roots).
    pub const fn outcome(&self) -> &T {
        &self.outcome
    }
}

/// [`crate::LeafDb::import_account_chunk`] without the write: the subtrie hashed and the writes
/// built, reading nothing (it may run on any thread); nothing changes until
/// [`crate::LeafDb::commit_chunk`].
pub fn stage_account_chunk(
    prefix: &Nibbles,
    accounts: &[ChunkAccount],
) -> Result<StagedChunk<AccountChunkOutcome>> {
    let slots = accounts.iter().filter_map(|a| a.storage.as_ref()).map(Vec::len).sum();
    let mut writes = ChunkWrites::new(account_range(prefix), accounts.len(), slots);
    writes.clears = account_prefix_ranges(prefix);
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

/// [`crate::LeafDb::import_storage_chunk`] without the write (see [`stage_account_chunk`]).
pub fn stage_storage_chunk(
    owner: &B256,
    prefix: &Nibbles,
    slots: &[(B256, U256)],
) -> Result<StagedChunk<B256>> {
    let mut writes = ChunkWrites::new(storage_range(owner, prefix), 0, slots.len());
    writes.clears = vec![
        (Table::Storage, storage_range(owner, prefix)),
        (Table::StorageNodes, node_range(Some(owner), prefix)),
    ];
    let root = stage_storage(&mut writes, owner, prefix, slots)?;
    Ok(StagedChunk { outcome: root, writes })
}
