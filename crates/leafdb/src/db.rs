//! [`LeafDb`]: the flat state and its trie over a [`KvStore`], with atomic block application.

use std::{
    path::Path,
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use alloy_primitives::{Address, B256, Bytes, KECCAK256_EMPTY, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};
use tokio::sync::watch;

use crate::{
    error::{LeafDbError, Result},
    keys::storage_key,
    kv::{
        Durability, KvRead, KvStore, Reading, Table, WriteBatch,
        mem::MemStore,
        rocks::{DbOptions, RocksStore},
    },
    nodes::{NodeReader, TrieNodes},
    recent::{RecentCacheSize, RecentNodes},
    schema::{self, BlockHeader, SCHEMA_VERSION, decode_account, decode_head, meta},
    top_nodes::TopNodes,
    trie::{NodeSource, node::is_leaf, prove},
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
