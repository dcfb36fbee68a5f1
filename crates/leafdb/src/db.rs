//! [`LeafDb`]: the flat state and its trie over a [`KvStore`], with atomic block application.

use std::{
    path::Path,
    sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use alloy_primitives::{Address, B256, Bytes, KECCAK256_EMPTY, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};
use tokio::sync::watch;

use crate::{
    error::{LeafDbError, Result},
    keys::{account_range, node_key, node_table, storage_key, storage_range},
    kv::{
        Cursor, Durability, KvRead, KvStore, Reading, Table, WriteBatch,
        mem::MemStore,
        rocks::{DbOptions, RocksStore},
    },
    recent::{RecentCacheSize, RecentNodes},
    schema::{self, BlockHeader, SCHEMA_VERSION, decode_account, decode_head, meta},
    top_nodes::TopNodes,
    trie::{
        KnownLeaf, NodeSource, checked_join,
        node::{encode_leaf, is_leaf},
        prove, verified,
    },
};

/// Default number of blocks for which replaced trie nodes stay findable by hash: 128, as
/// go-ethereum keeps the last 128 states, so a syncing peer's pivot a few minutes old is served.
pub const DEFAULT_RECENT_BLOCKS: u64 = 128;

/// Settings of a [`LeafDb`] beyond RocksDB tuning.
#[derive(Debug, Clone)]
pub struct LeafDbConfig {
    /// Blocks for which replaced nodes stay in the recent-node cache
    /// ([`DEFAULT_RECENT_BLOCKS`]).
    pub recent_blocks: u64,
    /// Byte budget of the recent-node cache ([`crate::recent::DEFAULT_RECENT_CACHE_BYTES`]).
    pub recent_cache_bytes: usize,
    /// How durable each block's write is (default [`Durability::Logged`]: a killed process loses
    /// nothing; a power cut may lose the last blocks, which ingest then applies again).
    pub block_durability: Durability,
}

impl Default for LeafDbConfig {
    fn default() -> Self {
        Self {
            recent_blocks: DEFAULT_RECENT_BLOCKS,
            recent_cache_bytes: crate::recent::DEFAULT_RECENT_CACHE_BYTES,
            block_durability: Durability::Logged,
        }
    }
}

/// A Merkle proof of an account and, optionally, storage slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountProof {
    /// The account, if it exists.
    pub account: Option<TrieAccount>,
    /// Stored nodes from the state root to the account.
    pub proof: Vec<Bytes>,
}

/// The state store; see the crate docs.
#[derive(Debug)]
pub struct LeafDb<S = RocksStore> {
    store: S,
    config: LeafDbConfig,
    /// Nodes replaced in recent blocks (in memory; see [`crate::recent`]).
    recent: RwLock<RecentNodes>,
    /// Whether the operator was told that the recent-node cache's byte budget binds (once).
    pub(crate) recent_budget_told: std::sync::atomic::AtomicBool,
    /// The account trie's top levels, for block application ([`crate::top_nodes`]).
    top_nodes: TopNodes,
    /// The head, sent after every write that moves it ([`Self::subscribe_head`]).
    head_tx: watch::Sender<Option<BlockHeader>>,
    /// Blocks reverted and synced heads recorded by this process; see [`Self::reverts`].
    pub(crate) reverts: std::sync::atomic::AtomicU64,
}

/// Reads the nodes of one trie (the account trie, or the storage trie of `owner`), or of the
/// subtrie at `base` as if it were a whole trie (node encodings are relative to their own path,
/// so a subtrie is position-independent).
///
/// Branches and extensions are stored; leaves mostly are not (schema 3): a leaf is the one flat
/// entry under its path, so a node missing from the node table is rebuilt from the flat table
/// when exactly one key lies under its path (see [`Self::leaf_from_flat`]). Every reader checks
/// what it gets against the hash its parent holds (or, serving a peer, the hash asked for), so a
/// path that is no leaf position yields nothing that passes.
pub(crate) struct TrieNodes<'a, R: ?Sized> {
    kv: &'a R,
    owner: Option<B256>,
    base: Nibbles,
    /// The flat table's cursor of the last leaf rebuilt, kept open for the next.
    flat: Mutex<Option<FlatCursor<'a>>>,
}

/// A cursor over a flat table, kept open between leaf rebuilds: a seek on an open RocksDB
/// iterator costs about 2 µs, a new iterator 4–20 µs (docs/benchmarks.md), and a block's or a
/// walk's leaves come mostly in key order.
struct FlatCursor<'a> {
    cursor: Box<dyn Cursor + 'a>,
    /// Every key below this one has been passed: the cursor can move on to any key at or after
    /// it (it never moves back).
    passed: Vec<u8>,
}

impl<R: ?Sized> std::fmt::Debug for TrieNodes<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrieNodes")
            .field("owner", &self.owner)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl<'a, R: KvRead + ?Sized> TrieNodes<'a, R> {
    /// The account trie.
    pub(crate) const fn account(kv: &'a R) -> Self {
        Self { kv, owner: None, base: Nibbles::new(), flat: Mutex::new(None) }
    }

    /// The storage trie of `owner`.
    pub(crate) const fn storage(kv: &'a R, owner: B256) -> Self {
        Self { kv, owner: Some(owner), base: Nibbles::new(), flat: Mutex::new(None) }
    }

    /// The trie of `owner` (`None`: the account trie).
    pub(crate) const fn of(kv: &'a R, owner: Option<&B256>) -> Self {
        match owner {
            None => Self::account(kv),
            Some(o) => Self::storage(kv, *o),
        }
    }

    /// The subtrie at `base` of this trie.
    pub(crate) fn below(self, base: Nibbles) -> Self {
        Self { base, ..self }
    }

    /// The storage trie of `owner` read through this reader's open flat cursor (storage tries
    /// taken in owner order then share one cursor).
    pub(crate) fn into_storage(self, owner: B256) -> Self {
        Self { owner: Some(owner), base: Nibbles::new(), ..self }
    }

    /// The leaf at the full path `path`, rebuilt from the flat table. With `want` `None`: the
    /// leaf of the one key under `path`, or `None` when none or several are there. With a hash:
    /// the leaf, among the first [`MAX_LEAF_CANDIDATES`] keys under `path`, that hashes to it
    /// (flat entries the trie does not have, as a heal leaves them until its flat rewrite, are
    /// passed over). `None` too when the leaf would be shorter than a hash below the root (its
    /// parent holds it inline; it is no node of its own).
    /// Whether `path` is a leaf position is not known here: callers check the result against
    /// the hash that the parent holds.
    fn leaf_from_flat(&self, path: &Nibbles, want: Option<&B256>) -> Result<Option<Vec<u8>>> {
        let (table, owner_len, (lo, hi)) = match &self.owner {
            None => (Table::Accounts, 0, account_range(path)),
            Some(owner) => (Table::Storage, 32, storage_range(owner, path)),
        };
        let mut slot = self.flat.lock().unwrap_or_else(PoisonError::into_inner);
        let flat = match slot.as_mut() {
            Some(flat) if flat.passed <= lo => {
                flat.cursor.skip_to(&lo)?;
                flat
            }
            _ => {
                slot.insert(FlatCursor { cursor: self.kv.cursor(table, &lo)?, passed: Vec::new() })
            }
        };
        flat.passed = lo;
        let mut found = None;
        for _ in 0..MAX_LEAF_CANDIDATES {
            let Some((key, value)) = flat.cursor.current().filter(|(k, _)| *k < hi.as_slice())
            else {
                break;
            };
            if found.is_some() {
                // A second key under `path`: no leaf position.
                return Ok(None);
            }
            let Some(full) = key.get(owner_len..).filter(|k| k.len() == 32) else {
                return Err(LeafDbError::corrupt(
                    table.name(),
                    "key",
                    "not 32 bytes after its owner",
                ));
            };
            let full = Nibbles::unpack(full);
            let value = match self.owner {
                None => value.to_vec(),
                Some(_) => schema::slot_leaf_value(&schema::decode_slot_value(value)?),
            };
            let mut rlp = Vec::with_capacity(value.len() + 40);
            encode_leaf(&full.slice(path.len()..), &value, &mut rlp);
            flat.passed = [key, &[0]].concat();
            flat.cursor.next()?;
            if rlp.len() < 32 && !path.is_empty() {
                return Ok(None);
            }
            match want {
                Some(hash) if keccak256(&rlp) == *hash => return Ok(Some(rlp)),
                Some(_) => {}
                None => found = Some(rlp),
            }
        }
        Ok(found)
    }
}

/// Reads nodes of any trie by path, many in a row (the children a heal step compares, the
/// nodes of one served `GetNodes`), through one open flat cursor for the account trie and one
/// for the storage tries: a leaf rebuilt from the flat tables then costs a seek, not a new
/// iterator. Paths in key order (and owners in order) use the cursors best.
pub struct NodeReader<'a, R: ?Sized> {
    accounts: TrieNodes<'a, R>,
    storage: Option<TrieNodes<'a, R>>,
}

impl<R: ?Sized> std::fmt::Debug for NodeReader<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeReader").finish_non_exhaustive()
    }
}

impl<'a, R: KvRead + ?Sized> NodeReader<'a, R> {
    pub(crate) const fn new(kv: &'a R) -> Self {
        Self { accounts: TrieNodes::account(kv), storage: None }
    }

    /// The reader of the trie of `owner` (`None`: the account trie).
    fn trie(&mut self, owner: Option<&B256>) -> &TrieNodes<'a, R> {
        let Some(owner) = owner else { return &self.accounts };
        let storage = match self.storage.take() {
            Some(t) if t.owner.as_ref() == Some(owner) => t,
            Some(t) => t.into_storage(*owner),
            None => TrieNodes::storage(self.accounts.kv, *owner),
        };
        self.storage.insert(storage)
    }

    /// The node at `path` of the trie of `owner`: as [`LeafDb::node`].
    pub fn node(&mut self, owner: Option<&B256>, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        self.trie(owner).node(path)
    }

    /// The node at `path` of the trie of `owner` if it hashes to `hash`: the stored one, or else
    /// a leaf rebuilt from a flat entry under `path` (stray entries beside it passed over).
    pub fn node_hashing_to(
        &mut self,
        owner: Option<&B256>,
        path: &Nibbles,
        hash: &B256,
    ) -> Result<Option<Vec<u8>>> {
        self.trie(owner).node_hashing_to(path, hash)
    }
}

/// Flat keys under one path that [`TrieNodes`] tries, looking for the leaf a parent's hash names:
/// more than a stray entry or two under a leaf's path means the path is no leaf position.
const MAX_LEAF_CANDIDATES: usize = 16;

impl<R: KvRead + ?Sized> TrieNodes<'_, R> {
    /// `path` of this reader's (sub)trie as a path of the whole trie.
    fn full_path(&self, path: &Nibbles) -> Result<Nibbles> {
        if self.base.is_empty() { Ok(*path) } else { checked_join(&self.base, path) }
    }

    /// The node stored at the full path `path`.
    fn stored(&self, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        let owner = self.owner.as_ref();
        self.kv.get(node_table(owner), &node_key(owner, path))
    }

    /// The node at the full path `path` if it hashes to `hash`: the stored one, or else a leaf
    /// rebuilt from a flat entry under `path`.
    fn node_hashing_to(&self, path: &Nibbles, hash: &B256) -> Result<Option<Vec<u8>>> {
        match self.stored(path)? {
            Some(rlp) => Ok((keccak256(&rlp) == *hash).then_some(rlp)),
            None => self.leaf_from_flat(path, Some(hash)),
        }
    }
}

impl<R: KvRead + ?Sized> NodeSource for TrieNodes<'_, R> {
    fn node(&self, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        let path = self.full_path(path)?;
        match self.stored(&path)? {
            Some(rlp) => Ok(Some(rlp)),
            None => self.leaf_from_flat(&path, None),
        }
    }

    fn load_verified_stored(
        &self,
        path: &Nibbles,
        expected: B256,
        leaf: Option<KnownLeaf<'_>>,
    ) -> Result<(Vec<u8>, bool)> {
        let full = self.full_path(path)?;
        if let Some(rlp) = self.stored(&full)? {
            return Ok((verified(self.owner(), path, expected, Some(rlp))?, true));
        }
        // Nothing stored: a leaf position (or a missing node). A known leaf that hashes right
        // is the node, without a seek in the flat table. Either leaf is taken only if it hashes
        // to `expected`, so it is not hashed again; `verified` names a missing one.
        match leaf.and_then(|leaf| leaf.at(path, &expected)) {
            Some(rlp) => Ok((rlp, false)),
            None => match self.leaf_from_flat(&full, Some(&expected))? {
                Some(rlp) => Ok((rlp, false)),
                None => Ok((verified(self.owner(), path, expected, None)?, false)),
            },
        }
    }

    fn owner(&self) -> B256 {
        self.owner.unwrap_or_default()
    }
}

impl LeafDb<RocksStore> {
    /// Opens (or creates) the leafdb in `dir`.
    pub fn open(dir: &Path, options: &DbOptions, config: LeafDbConfig) -> Result<Self> {
        Self::with_store(RocksStore::open(dir, options)?, config)
    }

    /// Writes a copy of this leafdb, at its current head, to the new directory `dir`
    /// ([`RocksStore::checkpoint`]); [`Self::open`] opens it. The recent-node cache is not
    /// copied: the copy serves replaced nodes of the blocks it applies itself.
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        self.store.checkpoint(dir)
    }
}

impl LeafDb<MemStore> {
    /// An empty in-memory leafdb, for tests.
    pub fn in_memory() -> Self {
        match Self::with_store(MemStore::new(), LeafDbConfig::default()) {
            Ok(db) => db,
            // An empty memory store has no schema to reject and no import marker.
            Err(e) => unreachable!("fresh in-memory store rejected: {e}"),
        }
    }
}

impl<S: KvStore> LeafDb<S> {
    /// Wraps a store, checking the schema version and writing this build's (an empty store,
    /// or an older schema that this build reads as it is; see [`SCHEMA_VERSION`]).
    pub fn with_store(store: S, config: LeafDbConfig) -> Result<Self> {
        let found = match store.get(Table::Meta, meta::SCHEMA)? {
            Some(v) => {
                let arr: [u8; 4] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| LeafDbError::corrupt("meta", "schema version", "not 4 bytes"))?;
                Some(u32::from_be_bytes(arr))
            }
            None => None,
        };
        if let Some(found) = found
            && found > SCHEMA_VERSION
        {
            return Err(LeafDbError::SchemaTooNew { found, supported: SCHEMA_VERSION });
        }
        if found != Some(SCHEMA_VERSION) {
            let mut b = WriteBatch::default();
            b.put(Table::Meta, meta::SCHEMA, SCHEMA_VERSION.to_be_bytes());
            store.write(b, Durability::Synced)?;
            if let Some(found) = found {
                tracing::info!(
                    from = found,
                    to = SCHEMA_VERSION,
                    "leafdb schema raised: builds older than this one refuse this datadir now"
                );
            }
        }
        if let Some(what) = store.get(Table::Meta, meta::IMPORT)? {
            discard_import(&store, &what)?;
        }
        let head = store.get(Table::Meta, meta::HEAD)?.map(|b| decode_head(&b)).transpose()?;
        Ok(Self {
            store,
            config,
            recent: RwLock::default(),
            recent_budget_told: std::sync::atomic::AtomicBool::new(false),
            top_nodes: TopNodes::default(),
            head_tx: watch::Sender::new(head),
            reverts: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A receiver of the head: its value now, and every head written after this call
    /// ([`Self::apply_block`], [`Self::record_synced_head`], a bulk import's or genesis's
    /// [`crate::BulkImport::finish`]), so callers wait on `changed()` instead of polling
    /// [`Self::head`]. A receiver that falls behind sees only the newest head.
    pub fn subscribe_head(&self) -> watch::Receiver<Option<BlockHeader>> {
        self.head_tx.subscribe()
    }

    /// Tells head subscribers about `head`, just written.
    pub(crate) fn publish_head(&self, head: BlockHeader) {
        self.head_tx.send_replace(Some(head));
    }

    /// The underlying store.
    pub const fn store(&self) -> &S {
        &self.store
    }

    /// The configuration.
    pub const fn config(&self) -> &LeafDbConfig {
        &self.config
    }

    /// The account trie's top levels kept for block application.
    pub(crate) const fn top_nodes(&self) -> &TopNodes {
        &self.top_nodes
    }

    /// Binds this leafdb to the chain whose genesis hash is `genesis`: the first call records
    /// it, a later one with another hash is refused ([`LeafDbError::OtherChain`]) unless the
    /// leafdb is still empty (no head, no state, no sync progress: a start with the wrong chain,
    /// corrected, leaves nothing to keep). A state belongs to one chain: served as another's, it
    /// would give peers a state their pivot never had, and blocks of the other chain would be
    /// applied on top of it.
    pub fn bind_chain(&self, genesis: B256) -> Result<()> {
        match self.store().get(Table::Meta, meta::CHAIN_GENESIS)? {
            Some(stored) if stored.as_slice() == genesis.as_slice() => Ok(()),
            Some(_) if self.is_empty_of_state()? => self.record_chain(genesis),
            Some(stored) => {
                let stored = B256::try_from(stored.as_slice())
                    .map_err(|_| LeafDbError::corrupt("meta", "chain genesis", "not 32 bytes"))?;
                Err(LeafDbError::OtherChain { stored, configured: genesis })
            }
            None => self.record_chain(genesis),
        }
    }

    fn record_chain(&self, genesis: B256) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put(Table::Meta, meta::CHAIN_GENESIS, genesis.as_slice());
        self.store().write(batch, Durability::Synced)
    }

    /// Whether nothing of a chain is stored: no head, no flat or trie-node entry, no sync
    /// progress.
    fn is_empty_of_state(&self) -> Result<bool> {
        Ok(self.head()?.is_none() && !self.holds_state()? && self.sync_progress()?.is_none())
    }

    /// The head block, if any state was loaded.
    pub fn head(&self) -> Result<Option<BlockHeader>> {
        self.store.get(Table::Meta, meta::HEAD)?.map(|b| decode_head(&b)).transpose()
    }

    /// Root of the stored account trie.
    pub fn account_root(&self) -> Result<B256> {
        read_account_root(&self.store)
    }

    /// Trie nodes of the account trie and every storage trie: the nodes a sync would fetch one
    /// by one (nodes shorter than a hash are embedded in their parents and not counted). The
    /// stored branches and extensions, and one leaf per flat account and slot (leaves are
    /// rebuilt from the flat tables; one stored as well is counted once; a leaf shorter than a
    /// hash would need billions of slots in one trie). Reads every node and every flat key:
    /// seconds at a million accounts.
    pub fn trie_node_count(&self) -> Result<u64> {
        let mut count = 0u64;
        for table in [Table::AccountNodes, Table::StorageNodes] {
            let mut rows = self.store.range_cursor(table, &[], Reading::Scan)?;
            while let Some((_, rlp)) = rows.current() {
                count += u64::from(!is_leaf(rlp));
                rows.next()?;
            }
        }
        for table in [Table::Accounts, Table::Storage] {
            let mut rows = self.store.range_cursor(table, &[], Reading::Scan)?;
            while rows.current().is_some() {
                count += 1;
                rows.next()?;
            }
        }
        Ok(count)
    }

    /// Number of applied blocks whose computed root differed from the header's.
    pub fn root_mismatches(&self) -> Result<u64> {
        self.store
            .get(Table::Meta, meta::ROOT_MISMATCHES)?
            .map_or(Ok(0), |b| schema::decode_u64("root mismatches", &b))
    }

    /// An account by hashed address.
    pub fn account(&self, hashed: &B256) -> Result<Option<TrieAccount>> {
        self.store.get(Table::Accounts, hashed.as_slice())?.map(|b| decode_account(&b)).transpose()
    }

    /// An account by address.
    pub fn account_by_address(&self, address: &Address) -> Result<Option<TrieAccount>> {
        self.account(&keccak256(address))
    }

    /// A storage value by hashed account and hashed slot (zero when absent).
    pub fn storage(&self, account: &B256, slot: &B256) -> Result<U256> {
        self.store
            .get(Table::Storage, &storage_key(account, slot))?
            .map_or(Ok(U256::ZERO), |b| schema::decode_slot_value(&b))
    }

    /// Bytecode by hash.
    pub fn code(&self, hash: &B256) -> Result<Option<Vec<u8>>> {
        self.store.get(Table::Code, hash.as_slice())
    }

    /// The node at `path` of the account trie (`owner` `None`) or of a storage trie: the stored
    /// one, else the leaf rebuilt from the one flat entry under `path` (leaves are mostly not
    /// stored). That leaf is the trie's node only if `path` is a leaf position: check the result
    /// against the hash the parent holds, as every caller does.
    pub fn node(&self, owner: Option<&B256>, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        TrieNodes::of(&self.store, owner).node(path)
    }

    /// A reader for many node lookups in a row; see [`NodeReader`].
    pub fn node_reader(&self) -> NodeReader<'_, S> {
        NodeReader::new(&self.store)
    }

    /// A node replaced within the last [`LeafDbConfig::recent_blocks`] blocks, by hash.
    pub fn recent_node(&self, hash: &B256) -> Result<Option<Vec<u8>>> {
        Ok(self.recent_cache().get(hash))
    }

    /// What the recent-node cache holds.
    pub fn recent_cache_size(&self) -> RecentCacheSize {
        self.recent_cache().size()
    }

    pub(crate) fn recent_cache(&self) -> RwLockReadGuard<'_, RecentNodes> {
        self.recent.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn recent_cache_mut(&self) -> RwLockWriteGuard<'_, RecentNodes> {
        self.recent.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The account and its Merkle proof against the stored account root.
    pub fn account_proof(&self, address: &Address) -> Result<AccountProof> {
        let hashed = keccak256(address);
        let nodes = prove(
            &TrieNodes::account(&self.store),
            self.account_root()?,
            &Nibbles::unpack(hashed),
        )?;
        Ok(AccountProof {
            account: self.account(&hashed)?,
            proof: nodes.into_iter().map(Bytes::from).collect(),
        })
    }

    /// A storage value and its proof against the account's storage root.
    pub fn storage_proof(&self, address: &Address, slot: &B256) -> Result<(U256, Vec<Bytes>)> {
        let owner = keccak256(address);
        let root = self.account(&owner)?.map_or(EMPTY_ROOT_HASH, |a| a.storage_root);
        let hashed_slot = keccak256(slot);
        let nodes =
            prove(&TrieNodes::storage(&self.store, owner), root, &Nibbles::unpack(hashed_slot))?;
        Ok((self.storage(&owner, &hashed_slot)?, nodes.into_iter().map(Bytes::from).collect()))
    }
}

pub(crate) fn read_account_root<R: KvRead + ?Sized>(kv: &R) -> Result<B256> {
    kv.get(Table::Meta, meta::ACCOUNT_ROOT)?
        .map_or(Ok(EMPTY_ROOT_HASH), |b| schema::decode_b256(&Table::Meta, "account root", &b))
}

/// `KECCAK_EMPTY`, re-exported for diff builders.
pub const EMPTY_CODE_HASH: B256 = KECCAK256_EMPTY;

/// Empties a leafdb whose bulk import was interrupted (a crash, a kill, a stop during a genesis
/// bootstrap): its state tables hold part of the import and nothing else, since an import
/// starts only on a leafdb without head or accounts and writes its head and clears its marker
/// in one batch at its end. Emptied, the leafdb is as before the import, which can run again.
fn discard_import<S: KvStore>(store: &S, what: &[u8]) -> Result<()> {
    // Longer than any key of a state table (a storage node's: 32 + 64 bytes).
    const PAST_EVERY_KEY: [u8; 128] = [0xff; 128];
    let mut batch = WriteBatch::default();
    for table in Table::ALL.into_iter().filter(|t| *t != Table::Meta) {
        batch.delete_range(table, Vec::new(), PAST_EVERY_KEY.to_vec());
    }
    batch.delete(Table::Meta, meta::IMPORT);
    store.write(batch, Durability::Synced)?;
    tracing::warn!(
        import = %String::from_utf8_lossy(what),
        "the leafdb held an interrupted bulk import: discarded, the leafdb is empty again"
    );
    Ok(())
}
