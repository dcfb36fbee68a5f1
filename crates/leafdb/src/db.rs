//! [`LeafDb`]: the flat state and its trie over a [`KvStore`], with atomic block application.

use std::{collections::BTreeMap, path::Path, sync::RwLock};

use tokio::sync::watch;

use alloy_primitives::{Address, B256, Bytes, KECCAK256_EMPTY, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};
use tracing::{debug, warn};

use crate::{
    diff::{AccountChange, BlockDiff},
    error::{LeafDbError, Result},
    kv::{
        Durability, KvRead, KvStore, Table, WriteBatch,
        mem::MemStore,
        prefix_end,
        rocks::{DbOptions, RocksStore},
    },
    recent::RecentNodes,
    schema::{
        self, BlockHeader, SCHEMA_VERSION, decode_account, decode_head, encode_account,
        encode_slot_value, meta, path_key, slot_leaf_value, storage_key, storage_node_key,
    },
    trie::{NodeSource, TrieCommit, TrieUpdate, prove},
};

/// Default number of blocks for which replaced trie nodes stay findable by hash: 128, as
/// go-ethereum keeps the last 128 states, so a syncing peer's pivot a few minutes old is served.
pub const DEFAULT_RECENT_BLOCKS: u64 = 128;

/// Threads that update storage tries in parallel during `apply_block`: storage tries are
/// independent, and beyond 4 threads a mainnet-sized block (a few hundred tries) gains little.
pub const MAX_TRIE_WORKERS: usize = 4;

/// One storage trie to update: the owner, its root before the block (empty when wiped) and the
/// hashed slots with their new values (zero deletes).
struct StorageJob {
    owner: B256,
    root: B256,
    slots: Vec<(B256, U256)>,
}

/// Updates the storage tries of `jobs`, reading nodes from `kv` (nothing is written).
/// A storage job's slots with the commit of its trie, by owner.
type StorageCommits = Vec<(B256, (Vec<(B256, U256)>, TrieCommit))>;

fn commit_storage_jobs<R: KvRead + Sync + ?Sized>(
    kv: &R,
    jobs: &[StorageJob],
) -> Result<StorageCommits> {
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let src = StorageNodes { kv, owner: job.owner };
        let mut up = TrieUpdate::new(&src, job.root);
        for (hslot, value) in &job.slots {
            if value.is_zero() {
                up.delete(&Nibbles::unpack(hslot))?;
            } else {
                up.insert(&Nibbles::unpack(hslot), slot_leaf_value(value))?;
            }
        }
        out.push((job.owner, (job.slots.clone(), up.commit()?)));
    }
    Ok(out)
}

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

/// What applying a block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The state root computed after the block.
    pub root: B256,
    /// Whether it equals the header's state root.
    pub root_matches: bool,
    /// Accounts written or deleted.
    pub accounts: usize,
    /// Storage slots written or deleted.
    pub slots: usize,
    /// Trie nodes written.
    pub nodes_written: usize,
    /// Trie nodes deleted.
    pub nodes_deleted: usize,
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
    /// The head, sent after every write that moves it ([`Self::subscribe_head`]).
    head_tx: watch::Sender<Option<BlockHeader>>,
}

/// Reads account-trie nodes.
pub(crate) struct AccountNodes<'a, R: ?Sized>(pub(crate) &'a R);

impl<R: KvRead + ?Sized> NodeSource for AccountNodes<'_, R> {
    fn node(&self, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        self.0.get(Table::AccountNodes, &path_key(path))
    }
    fn owner(&self) -> B256 {
        B256::ZERO
    }
}

/// Reads the nodes of one storage trie.
pub(crate) struct StorageNodes<'a, R: ?Sized> {
    pub(crate) kv: &'a R,
    pub(crate) owner: B256,
}

impl<R: KvRead + ?Sized> NodeSource for StorageNodes<'_, R> {
    fn node(&self, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        self.kv.get(Table::StorageNodes, &storage_node_key(&self.owner, path))
    }
    fn owner(&self) -> B256 {
        self.owner
    }
}

impl LeafDb<RocksStore> {
    /// Opens (or creates) the leafdb in `dir`.
    pub fn open(dir: &Path, options: &DbOptions, config: LeafDbConfig) -> Result<Self> {
        Self::with_store(RocksStore::open(dir, options)?, config)
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
        }
        if let Some(what) = store.get(Table::Meta, meta::IMPORT)? {
            return Err(LeafDbError::IncompleteImport {
                what: String::from_utf8_lossy(&what).into_owned(),
            });
        }
        let head = store.get(Table::Meta, meta::HEAD)?.map(|b| decode_head(&b)).transpose()?;
        Ok(Self { store, config, recent: RwLock::default(), head_tx: watch::Sender::new(head) })
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

    /// The head block, if any state was loaded.
    pub fn head(&self) -> Result<Option<BlockHeader>> {
        self.store.get(Table::Meta, meta::HEAD)?.map(|b| decode_head(&b)).transpose()
    }

    /// Root of the stored account trie.
    pub fn account_root(&self) -> Result<B256> {
        read_account_root(&self.store)
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

    /// The stored node at `path` of the account trie (`owner` `None`) or of a storage trie.
    pub fn node(&self, owner: Option<&B256>, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        match owner {
            None => AccountNodes(&self.store).node(path),
            Some(owner) => StorageNodes { kv: &self.store, owner: *owner }.node(path),
        }
    }

    /// A node replaced within the last [`LeafDbConfig::recent_blocks`] blocks, by hash.
    pub fn recent_node(&self, hash: &B256) -> Result<Option<Vec<u8>>> {
        Ok(self.recent_cache().get(hash))
    }

    /// Size of the recent-node cache: `(nodes, bytes)`.
    pub fn recent_cache_size(&self) -> (usize, usize) {
        let cache = self.recent_cache();
        (cache.len(), cache.bytes())
    }

    pub(crate) fn recent_cache(&self) -> std::sync::RwLockReadGuard<'_, RecentNodes> {
        self.recent.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The account and its Merkle proof against the stored account root.
    pub fn account_proof(&self, address: &Address) -> Result<AccountProof> {
        let hashed = keccak256(address);
        let nodes =
            prove(&AccountNodes(&self.store), self.account_root()?, &Nibbles::unpack(hashed))?;
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
            prove(&StorageNodes { kv: &self.store, owner }, root, &Nibbles::unpack(hashed_slot))?;
        Ok((self.storage(&owner, &hashed_slot)?, nodes.into_iter().map(Bytes::from).collect()))
    }

    /// Applies one block's changes in one atomic write together with the new head.
    ///
    /// Reorgs are not handled: a parent-hash mismatch is logged and the block applied anyway
    /// (the leafdb is eventually consistent). A root that differs from the header's is counted
    /// and returned, not treated as an error.
    pub fn apply_block(&self, header: &BlockHeader, diff: &BlockDiff) -> Result<ApplyOutcome> {
        if let Some(head) = self.head()?
            && head.hash != header.parent_hash
        {
            warn!(
                number = header.number,
                parent = %header.parent_hash,
                head = %head.hash,
                head_number = head.number,
                "block does not extend our head (reorg?); applying it anyway"
            );
        }
        let started = std::time::Instant::now();
        let mut batch = WriteBatch::default();
        for code in &diff.codes {
            batch.put(Table::Code, keccak256(code).as_slice(), code.to_vec());
        }
        let hashed: BTreeMap<B256, &AccountChange> =
            diff.accounts.iter().map(|(a, c)| (keccak256(a), c)).collect();
        let mut outcome = ApplyOutcome {
            root: B256::ZERO,
            root_matches: false,
            accounts: hashed.len(),
            slots: 0,
            nodes_written: 0,
            nodes_deleted: 0,
        };
        // Plan each account: its old state and, for updates with slots, a storage job.
        let mut plans = Vec::with_capacity(hashed.len());
        let mut jobs = Vec::new();
        let keys: Vec<&[u8]> = hashed.keys().map(|k| k.as_slice()).collect();
        let olds = self.store.multi_get(Table::Accounts, &keys)?;
        for ((haddr, change), old) in hashed.iter().zip(olds) {
            let (haddr, change) = (*haddr, *change);
            let old = old.map(|b| decode_account(&b)).transpose()?;
            if let AccountChange::Updated(u) = change {
                let old_root = old.map_or(EMPTY_ROOT_HASH, |a| a.storage_root);
                let wipe = u.storage_wiped && old_root != EMPTY_ROOT_HASH;
                if !u.storage.is_empty() {
                    let slots: Vec<(B256, U256)> = u
                        .storage
                        .iter()
                        .map(|(s, v)| (keccak256(s), *v))
                        .collect::<BTreeMap<_, _>>()
                        .into_iter()
                        .collect();
                    outcome.slots += slots.len();
                    let root = if wipe { EMPTY_ROOT_HASH } else { old_root };
                    jobs.push(StorageJob { owner: haddr, root, slots });
                }
            }
            plans.push((haddr, change, old));
        }
        let reads_done = started.elapsed();
        // Storage tries on worker threads while this thread loads the account-trie paths.
        let account_root = self.account_root()?;
        let account_nodes = AccountNodes(&self.store);
        let (account_update, storage_commits) = std::thread::scope(|scope| {
            let workers =
                std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_TRIE_WORKERS);
            let per_worker = jobs.len().div_ceil(workers).max(1);
            let handles: Vec<_> = jobs
                .chunks(per_worker)
                .map(|chunk| scope.spawn(move || commit_storage_jobs(&self.store, chunk)))
                .collect();
            let mut up = TrieUpdate::new(&account_nodes, account_root);
            let touched =
                plans.iter().try_for_each(|(haddr, _, _)| up.touch(&Nibbles::unpack(haddr)));
            let mut commits = BTreeMap::new();
            for h in handles {
                let part = h
                    .join()
                    .map_err(|_| LeafDbError::BadNode("storage trie worker panicked"))??;
                commits.extend(part);
            }
            touched.map(|()| (up, commits))
        })?;
        let storage_done = started.elapsed();

        let mut replaced = Vec::new();
        let mut up = account_update;
        let mut storage_commits = storage_commits;
        for (haddr, change, old) in plans {
            let AccountChange::Updated(u) = change else {
                if old.is_some() {
                    wipe_storage(&mut batch, &haddr);
                    batch.delete(Table::Accounts, haddr.as_slice());
                }
                up.delete(&Nibbles::unpack(haddr))?;
                continue;
            };
            let old_root = old.map_or(EMPTY_ROOT_HASH, |a| a.storage_root);
            let mut storage_root = old_root;
            if u.storage_wiped && old_root != EMPTY_ROOT_HASH {
                wipe_storage(&mut batch, &haddr);
                storage_root = EMPTY_ROOT_HASH;
            }
            if let Some((slots, commit)) = storage_commits.remove(&haddr) {
                for (hslot, value) in slots {
                    let key = storage_key(&haddr, &hslot);
                    if value.is_zero() {
                        batch.delete(Table::Storage, key);
                    } else {
                        batch.put(Table::Storage, key, encode_slot_value(&value));
                    }
                }
                storage_root = commit.root;
                stage_commit(&mut batch, Some(&haddr), &commit, &mut outcome);
                replaced.extend(commit.replaced);
            }
            let account = TrieAccount {
                nonce: u.nonce,
                balance: u.balance,
                storage_root,
                code_hash: u.code_hash,
            };
            let value = encode_account(&account);
            batch.put(Table::Accounts, haddr.as_slice(), value.clone());
            up.insert(&Nibbles::unpack(haddr), value)?;
        }
        let commit = up.commit()?;
        stage_commit(&mut batch, None, &commit, &mut outcome);
        replaced.extend(commit.replaced);
        let tries_done = started.elapsed();

        outcome.root = commit.root;
        outcome.root_matches = commit.root == header.state_root;
        batch.put(Table::Meta, meta::ACCOUNT_ROOT, commit.root.as_slice());
        schema::stage_head(&mut batch, header);
        if !outcome.root_matches {
            let count = self.root_mismatches()? + 1;
            batch.put(Table::Meta, meta::ROOT_MISMATCHES, count.to_be_bytes());
            warn!(
                number = header.number,
                computed = %commit.root,
                header = %header.state_root,
                mismatches = count,
                "state root mismatch after block"
            );
        }
        let staged = started.elapsed();
        let batch_bytes = batch.size_bytes();
        self.store.write(batch, self.config.block_durability)?;
        self.publish_head(*header);
        if self.config.recent_blocks > 0 {
            let last_expired = header.number.checked_sub(self.config.recent_blocks);
            let mut cache = self.recent.write().unwrap_or_else(|e| e.into_inner());
            cache.add_block(header.number, replaced, last_expired, self.config.recent_cache_bytes);
        }
        debug!(
            number = header.number,
            accounts = outcome.accounts,
            slots = outcome.slots,
            nodes_written = outcome.nodes_written,
            batch_bytes,
            reads_ms = reads_done.as_secs_f64() * 1e3,
            storage_ms = (storage_done - reads_done).as_secs_f64() * 1e3,
            account_trie_ms = (tries_done - storage_done).as_secs_f64() * 1e3,
            stage_ms = (staged - tries_done).as_secs_f64() * 1e3,
            write_ms = (started.elapsed() - staged).as_secs_f64() * 1e3,
            "applied block"
        );
        Ok(outcome)
    }
}

pub(crate) fn read_account_root<R: KvRead + ?Sized>(kv: &R) -> Result<B256> {
    kv.get(Table::Meta, meta::ACCOUNT_ROOT)?
        .map_or(Ok(EMPTY_ROOT_HASH), |b| schema::decode_b256(&Table::Meta, "account root", &b))
}

/// Deletes an account's storage slots and storage trie.
fn wipe_storage(batch: &mut WriteBatch, account: &B256) {
    batch.delete_range(Table::Storage, account.to_vec(), prefix_end(account.as_slice()));
    batch.delete_range(Table::StorageNodes, account.to_vec(), prefix_end(account.as_slice()));
}

/// Stages a trie commit's node writes and deletions.
fn stage_commit(
    batch: &mut WriteBatch,
    owner: Option<&B256>,
    commit: &TrieCommit,
    outcome: &mut ApplyOutcome,
) {
    let table = if owner.is_some() { Table::StorageNodes } else { Table::AccountNodes };
    let key = |path: &Nibbles| match owner {
        None => path_key(path),
        Some(o) => storage_node_key(o, path),
    };
    for path in &commit.deletes {
        batch.delete(table, key(path));
    }
    for (path, rlp) in &commit.writes {
        batch.put(table, key(path), rlp.clone());
    }
    outcome.nodes_written += commit.writes.len();
    outcome.nodes_deleted += commit.deletes.len();
}

/// `KECCAK_EMPTY`, re-exported for diff builders.
pub const EMPTY_CODE_HASH: B256 = KECCAK256_EMPTY;
