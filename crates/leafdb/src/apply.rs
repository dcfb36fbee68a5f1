//! [`LeafDb::apply_block`]: one block's diff, the trie nodes it changes and the new head in one
//! atomic write, in four steps:
//!
//! 1. **plan**: read the old records of the accounts whose storage changes and list their
//!    storage tries; beside it and step 2, a thread of its own (the paths thread) loads the
//!    account trie one root child's part at a time, reading each part's changed accounts' old
//!    records and loading the paths to them (an existing account's record is its leaf, so the
//!    leaf is not looked for in the flat table);
//! 2. **storage tries**, in parallel on up to [`MAX_TRIE_WORKERS`] less one threads (one core
//!    left to the paths thread), started as soon as their tries are listed, then staged (flat slots and
//!    trie nodes) while the paths still load;
//! 3. **accounts**: each loaded part of the account trie changed (flat accounts staged, leaves
//!    set), committed and staged on this thread once the storage roots are known, and on the
//!    paths thread too once it has loaded the last; then the root joined over the parts
//!    (`accounts.rs`);
//! 4. **write** the batch with the head while another thread feeds the top-node and recent-node
//!    caches, then tell head subscribers.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::Ordering,
        mpsc::{Sender, channel},
    },
    time::{Duration, Instant},
};

use alloy_primitives::{B256, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};
use tracing::{debug, warn};

use accounts::{AccountTrie, stage_accounts, stage_parts};

use crate::{
    db::LeafDb,
    diff::{AccountChange, AccountUpdate, BlockDiff},
    error::{LeafDbError, Result},
    keys::{node_key, node_table, prefix_end, storage_key},
    kv::{KvRead, KvStore, Table, WriteBatch},
    nodes::TrieNodes,
    schema::{self, BlockHeader, decode_account, encode_slot_value, meta},
    top_nodes::AccountNodes,
    trie::{TrieCommit, TrieUpdate, node::is_leaf},
};

mod accounts;

/// Threads that update storage tries in parallel during `apply_block`: storage tries are
/// independent, and beyond 4 threads a mainnet-sized block (a few hundred tries) gains little.
pub const MAX_TRIE_WORKERS: usize = 4;

/// The threads `apply_block` hashes tries on: one per core, at most [`MAX_TRIE_WORKERS`].
fn trie_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_TRIE_WORKERS)
}

/// The threads the storage tries are updated on: [`trie_workers`] less the core the
/// account-paths thread runs on beside them, at least one. That thread is what the block waits
/// for; with a worker per core it shared its core with one (on two cores the time before the
/// write fell 1.5–4.7 ms a block with one worker instead of two, docs/benchmarks.md).
fn storage_workers() -> usize {
    trie_workers().saturating_sub(1).max(1)
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

impl ApplyOutcome {
    /// Adds the nodes a [`stage_commit`] staged: `(written, deleted)`.
    const fn count_nodes(&mut self, (written, deleted): (usize, usize)) {
        self.nodes_written += written;
        self.nodes_deleted += deleted;
    }
}

/// One storage trie to update: the owner, its root before the block (empty when wiped), whether
/// a stored storage is wiped first, and the hashed slots with their new values (zero deletes),
/// sorted.
struct StorageJob {
    owner: B256,
    root: B256,
    wipe: bool,
    slots: Vec<(B256, U256)>,
}

/// A changed account: its hashed address, the change and its old record.
type PlannedAccount<'d> = (B256, &'d AccountChange, Option<TrieAccount>);

/// Node encodings a block made stale, with their hashes (for the recent-node cache).
type Replaced = Vec<(B256, Vec<u8>)>;

/// The updated storage tries' commits by owner.
type StorageCommits = BTreeMap<B256, TrieCommit>;

/// Steps 1 and 2's result: the account trie, and the storage side already staged: the updated
/// accounts' new storage roots and the encodings their tries replaced.
struct Loaded<'d, 'n, N: ?Sized> {
    account_trie: AccountTrie<'d, 'n, N>,
    storage_roots: Arc<BTreeMap<B256, B256>>,
    replaced: Replaced,
}

impl<S: KvStore> LeafDb<S> {
    /// Applies one block's changes in one atomic write together with the new head.
    ///
    /// A parent-hash mismatch is logged and the block applied anyway (the leafdb is eventually
    /// consistent); a reorg is rolled back by whoever follows the chain, with
    /// [`Self::undo_of`] and [`Self::revert_block`]. A root that differs from the header's is
    /// counted and returned, not treated as an error.
    pub fn apply_block(&self, header: &BlockHeader, diff: &BlockDiff) -> Result<ApplyOutcome> {
        self.warn_unless_child(header)?;
        self.apply_unchecked(*header, diff, WriteBatch::default())
    }

    /// [`Self::apply_block`] without the parent check ([`Self::revert_block`] applies an undo
    /// onto the parent's header), written in one batch with what `batch` already holds.
    pub(crate) fn apply_unchecked(
        &self,
        header: BlockHeader,
        diff: &BlockDiff,
        batch: WriteBatch,
    ) -> Result<ApplyOutcome> {
        self.apply(header, diff, false, batch).map(|(outcome, _)| outcome)
    }

    /// Applies a block of a generated chain, whose header cannot know its state root before the
    /// block is applied: the computed root completes `header` (its `state_root` is ignored)
    /// before it is stored as the head. Returns the outcome and the completed header, which
    /// [`Self::apply_block`] then applies to other copies of the same state.
    pub fn apply_generated_block(
        &self,
        header: &BlockHeader,
        diff: &BlockDiff,
    ) -> Result<(ApplyOutcome, BlockHeader)> {
        self.warn_unless_child(header)?;
        self.apply(*header, diff, true, WriteBatch::default())
    }

    /// [`Self::apply_block`]; with `complete_root`, the header takes the computed root. The
    /// block's writes join `batch`'s in one atomic write.
    fn apply(
        &self,
        mut header: BlockHeader,
        diff: &BlockDiff,
        complete_root: bool,
        mut batch: WriteBatch,
    ) -> Result<(ApplyOutcome, BlockHeader)> {
        let header = &mut header;
        let started = Instant::now();
        for code in &diff.codes {
            batch.put(Table::Code, keccak256(code).as_slice(), code.to_vec());
        }
        let account_nodes = AccountNodes::new(self.store(), self.top_nodes());
        let mut outcome = ApplyOutcome {
            root: B256::ZERO,
            root_matches: false,
            // One per address: their hashes, the keys below, are as distinct.
            accounts: diff.accounts.len(),
            slots: 0,
            nodes_written: 0,
            nodes_deleted: 0,
        };
        let account_root = self.account_root()?;
        let (loaded, reads_done, storage_done) = self.load_and_update_storage(
            diff,
            &account_nodes,
            account_root,
            &mut batch,
            &mut outcome,
            started,
        )?;

        let (commit, replaced) =
            stage_accounts(loaded, &account_nodes, account_root, &mut batch, &mut outcome)?;
        let tries_done = started.elapsed();

        outcome.root = commit.root;
        if complete_root {
            header.state_root = commit.root;
        }
        outcome.root_matches = commit.root == header.state_root;
        batch.put(Table::Meta, meta::ACCOUNT_ROOT, commit.root.as_slice());
        schema::stage_head(&mut batch, header);
        if !outcome.root_matches {
            let count = self.root_mismatches()? + 1;
            batch.put(Table::Meta, meta::ROOT_MISMATCHES, count.to_be_bytes());
            // The caller tells the operator (the follower: once per run of such blocks).
            debug!(
                number = header.number,
                computed = %commit.root,
                header = %header.state_root,
                mismatches = count,
                "state root mismatch after block"
            );
        }
        let staged = started.elapsed();
        let batch_bytes = batch.size_bytes();
        self.write_and_remember(batch, commit, header.number, replaced)?;
        self.publish_head(*header);
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
        Ok((outcome, *header))
    }

    /// Logs a block that does not extend the head (a reorg the leafdb does not roll back).
    fn warn_unless_child(&self, header: &BlockHeader) -> Result<()> {
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
        Ok(())
    }

    /// Steps 1 and 2: a thread reads every changed account's old record and loads its
    /// account-trie path (so step 3 reads nothing) from the start, one root child's part at a
    /// time, while this one reads the records of the accounts with storage changes, updates
    /// their storage tries on worker threads and stages them in `batch` (their flat slots and
    /// trie nodes). Then both threads change, commit and stage the account trie's parts: this
    /// one from when the storage roots are known (the parts loaded by then wait for it), the
    /// paths thread once it has loaded the last (docs/benchmarks.md). Returns what was loaded
    /// and staged, when the storage tries could start and when they were staged.
    fn load_and_update_storage<'d, 'n, 's>(
        &self,
        diff: &'d BlockDiff,
        account_nodes: &'n AccountNodes<'s, S>,
        account_root: B256,
        batch: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
        started: Instant,
    ) -> Result<(Loaded<'d, 'n, AccountNodes<'s, S>>, Duration, Duration)> {
        let hashed: BTreeMap<B256, &AccountChange> =
            diff.accounts.iter().map(|(a, c)| (keccak256(a), c)).collect();
        let (parts_tx, parts_rx) = channel();
        let parts_rx = Mutex::new(parts_rx);
        let (roots_tx, roots_rx) = channel();
        std::thread::scope(|scope| {
            // Dropped when this closure returns, early or not: the paths thread stops waiting.
            let roots_tx: Sender<Arc<BTreeMap<B256, B256>>> = roots_tx;
            let parts = &parts_rx;
            let paths = scope.spawn(|| {
                let roots_rx = roots_rx;
                let split = TrieUpdate::new(account_nodes, account_root).split_root()?;
                self.load_account_paths(&hashed, split, parts_tx, &roots_rx, parts, started)
            });
            // The storage tries need only their own accounts' old records (~200 of a
            // mainnet-sized block's 2,000 accounts): they start on those at once.
            let jobs = self.plan_storage(&hashed)?;
            let reads_done = started.elapsed();
            // Staged here, while the paths are still loading (they take longer).
            let commits = self.update_storage_tries(&jobs)?;
            let (storage_roots, replaced) = stage_storage(&jobs, commits, batch, outcome)?;
            let storage_done = started.elapsed();
            let storage_roots = Arc::new(storage_roots);
            // The paths thread is gone only if it failed; its join says why.
            let _ = roots_tx.send(Arc::clone(&storage_roots));
            let staged = stage_parts(parts, &storage_roots)?;
            let staged_here = staged.len();
            let (paths_outcome, paths_loaded) =
                paths.join().map_err(|_| LeafDbError::WorkerPanicked)??;
            let account_trie = paths_outcome.with_parts(staged);
            debug!(
                account_paths_ms = paths_loaded.as_secs_f64() * 1e3,
                storage_tries_ms = (storage_done - reads_done).as_secs_f64() * 1e3,
                parts_staged_here = staged_here,
                "account-trie paths loaded beside the storage tries"
            );
            Ok((Loaded { account_trie, storage_roots, replaced }, reads_done, storage_done))
        })
    }

    /// Step 1 for the storage tries: the old records of the updated accounts with slots or a
    /// wiped storage (one batched read) and their storage jobs, in owner order. A wipe with no
    /// slot set after is a job too (its trie ends empty), so wipes are staged in one place.
    fn plan_storage(&self, hashed: &BTreeMap<B256, &AccountChange>) -> Result<Vec<StorageJob>> {
        let owners: Vec<(&B256, &AccountUpdate)> = hashed
            .iter()
            .filter_map(|(haddr, change)| match change {
                AccountChange::Updated(u) if !u.storage.is_empty() || u.storage_wiped => {
                    Some((haddr, u))
                }
                _ => None,
            })
            .collect();
        let keys: Vec<&[u8]> = owners.iter().map(|(k, _)| k.as_slice()).collect();
        let olds = self.store().multi_get(Table::Accounts, &keys)?;
        let mut jobs = Vec::with_capacity(owners.len());
        for ((&haddr, u), old) in owners.into_iter().zip(olds) {
            let old = old.map(|b| decode_account(&b)).transpose()?;
            let old_root = old.map_or(EMPTY_ROOT_HASH, |a| a.storage_root);
            let wipe = u.storage_wiped && old_root != EMPTY_ROOT_HASH;
            let root = if u.storage_wiped { EMPTY_ROOT_HASH } else { old_root };
            let slots: BTreeMap<B256, U256> =
                u.storage.iter().map(|(s, v)| (keccak256(s), *v)).collect();
            let slots = slots.into_iter().collect();
            jobs.push(StorageJob { owner: haddr, root, wipe, slots });
        }
        Ok(jobs)
    }

    /// Step 2: the storage tries on [`storage_workers`] threads.
    fn update_storage_tries(&self, jobs: &[StorageJob]) -> Result<StorageCommits> {
        storage_tries_on(self.store(), jobs, storage_workers())
    }

    /// Step 4: writes the block's batch while another thread takes the block into the caches
    /// (the account trie's new top nodes, the encodings it replaced), ~2 ms that no longer wait
    /// for the write (docs/benchmarks.md). Both caches are keyed by hash, so a write that fails
    /// leaves nothing wrong in them: top nodes that no parent names, and replaced encodings that
    /// are still current.
    fn write_and_remember(
        &self,
        batch: WriteBatch,
        commit: TrieCommit,
        number: u64,
        replaced: Replaced,
    ) -> Result<()> {
        std::thread::scope(|scope| {
            let caches = scope.spawn(move || {
                self.top_nodes().update(commit);
                self.remember_replaced(number, replaced);
            });
            let written = self.store().write(batch, self.config().block_durability);
            caches.join().map_err(|_| LeafDbError::WorkerPanicked)?;
            written
        })
    }

    /// Step 4's cache half: nodes the block replaced stay findable by hash for
    /// [`crate::LeafDbConfig::recent_blocks`] blocks.
    fn remember_replaced(&self, number: u64, replaced: Replaced) {
        let config = self.config();
        if config.recent_blocks > 0 {
            let last_expired = number.checked_sub(config.recent_blocks);
            let mut cache = self.recent_cache_mut();
            if cache.add_block(number, replaced, last_expired, config.recent_cache_bytes)
                && !self.recent_budget_told.swap(true, Ordering::Relaxed)
            {
                let blocks = cache.size().blocks;
                warn!(
                    blocks,
                    recent_blocks = config.recent_blocks,
                    budget_mib = config.recent_cache_bytes >> 20,
                    "the recent-node cache holds fewer blocks than leafdb.recent_blocks asks: \
                     nodes of older pivots are not served (raise leafdb.recent_cache_mib; \
                     leafsync_recent_blocks shows what it holds; told once)"
                );
            }
        }
    }
}

/// The storage tries of `jobs` updated on `workers` threads, each a run of consecutive jobs (one
/// worker: this thread).
fn storage_tries_on<R: KvRead + Sync + ?Sized>(
    kv: &R,
    jobs: &[StorageJob],
    workers: usize,
) -> Result<StorageCommits> {
    if workers <= 1 {
        return commit_storage_jobs(kv, jobs);
    }
    std::thread::scope(|scope| {
        let per_worker = jobs.len().div_ceil(workers).max(1);
        let handles: Vec<_> = jobs
            .chunks(per_worker)
            .map(|chunk| scope.spawn(move || commit_storage_jobs(kv, chunk)))
            .collect();
        let mut commits = BTreeMap::new();
        for h in handles {
            commits.extend(h.join().map_err(|_| LeafDbError::WorkerPanicked)??);
        }
        Ok(commits)
    })
}

/// Updates the storage tries of `jobs`, reading nodes from `kv` (nothing is written).
fn commit_storage_jobs<R: KvRead + Sync + ?Sized>(
    kv: &R,
    jobs: &[StorageJob],
) -> Result<StorageCommits> {
    let mut out = BTreeMap::new();
    // The jobs come in owner order: one reader moves from trie to trie, its flat cursor (for
    // leaves rebuilt from the flat storage) with it.
    let mut reader: Option<TrieNodes<'_, R>> = None;
    for job in jobs {
        let src = match reader.take() {
            Some(r) => r.into_storage(job.owner),
            None => TrieNodes::storage(kv, job.owner),
        };
        let mut up = TrieUpdate::new(&src, job.root);
        for (hslot, value) in &job.slots {
            if value.is_zero() {
                up.delete(&Nibbles::unpack(hslot))?;
            } else {
                up.insert(&Nibbles::unpack(hslot), schema::slot_leaf_value(value))?;
            }
        }
        out.insert(job.owner, up.commit()?);
        reader = Some(src);
    }
    Ok(out)
}

/// Step 2's staging: each updated storage trie's wipe (if any), flat slots and trie nodes, in
/// owner order. Returns the new storage roots and the encodings the tries replaced.
fn stage_storage(
    jobs: &[StorageJob],
    mut commits: StorageCommits,
    batch: &mut WriteBatch,
    outcome: &mut ApplyOutcome,
) -> Result<(BTreeMap<B256, B256>, Replaced)> {
    let (mut roots, mut replaced) = (BTreeMap::new(), Vec::new());
    for job in jobs {
        let commit = commits
            .remove(&job.owner)
            .ok_or(LeafDbError::Invariant("a storage job without its commit"))?;
        if job.wipe {
            wipe_storage(batch, &job.owner);
        }
        for (hslot, value) in &job.slots {
            let key = storage_key(&job.owner, hslot);
            if value.is_zero() {
                batch.delete(Table::Storage, key);
            } else {
                batch.put(Table::Storage, key, encode_slot_value(value));
            }
        }
        outcome.slots += job.slots.len();
        outcome.count_nodes(stage_commit(batch, Some(&job.owner), &commit));
        roots.insert(job.owner, commit.root);
        replaced.extend(commit.replaced);
    }
    Ok((roots, replaced))
}

/// Deletes an account's storage slots and storage trie.
fn wipe_storage(batch: &mut WriteBatch, account: &B256) {
    batch.delete_range(Table::Storage, account.to_vec(), prefix_end(account.as_slice()));
    batch.delete_range(Table::StorageNodes, account.to_vec(), prefix_end(account.as_slice()));
}

/// Stages a trie commit's node writes and deletions: every write but the leaves (a leafdb
/// rebuilds those from the flat tables), and a delete wherever a stored node vanished or a leaf
/// took its place. Returns how many nodes it writes and deletes.
fn stage_commit(
    batch: &mut WriteBatch,
    owner: Option<&B256>,
    commit: &TrieCommit,
) -> (usize, usize) {
    let table = node_table(owner);
    // In key order: RocksDB inserts a run of increasing keys into its memtable skiplist from
    // the previous insert's position instead of searching from the top.
    let mut deletes: Vec<&Nibbles> = commit.store_deletes.iter().collect();
    deletes.sort_unstable();
    for path in &deletes {
        batch.delete(table, node_key(owner, path));
    }
    let mut writes: Vec<&(Nibbles, B256, Vec<u8>)> =
        commit.writes.iter().filter(|(_, _, rlp)| !is_leaf(rlp)).collect();
    writes.sort_unstable_by_key(|(path, _, _)| *path);
    for (path, _, rlp) in &writes {
        batch.put(table, node_key(owner, path), rlp.clone());
    }
    (writes.len(), deletes.len())
}

#[cfg(test)]
mod tests;
