//! The sync's final flat-state check: the flat tables measured against themselves by
//! merge-scans (account root, every storage root, storage without an account, missing code),
//! without reading a trie node; its findings are what a sync repairs. A sync runs it when
//! something in the run may have left the flat state apart from the trie (docs/sync.md).

use std::{
    collections::BTreeSet,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use alloy_primitives::{B256, KECCAK256_EMPTY, keccak256};
use alloy_trie::{Nibbles, nodes::RlpNode};
use tracing::info;

use crate::{
    db::LeafDb,
    error::{LeafDbError, Result},
    kv::{KvRead, KvStore, Reading, Table},
    schema::{decode_account_row, decode_slot_value, slot_leaf_value, split_storage_key},
    trie::{builder::root_builder, node::encode_branch},
};

/// Problem items [`LeafDb::check_flat_state`] lists at most (the counts go on): enough to repair
/// what a few hostile peers can leave, bounded in memory whatever the state holds.
pub const MAX_FLAT_REPAIRS: usize = 65_536;

/// What [`LeafDb::check_flat_state`] found: the flat tables measured against themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlatCheck {
    /// Root of the account trie built from the flat accounts.
    pub accounts_root: B256,
    /// Accounts in the flat table.
    pub accounts: u64,
    /// Storage slots in the flat table.
    pub slots: u64,
    /// Accounts whose flat storage does not hash to their storage root: `(account, expected
    /// storage root)`; at most [`MAX_FLAT_REPAIRS`].
    pub bad_storage: Vec<(B256, B256)>,
    /// Owners of flat storage that has no account; at most [`MAX_FLAT_REPAIRS`].
    pub orphan_storage: Vec<B256>,
    /// Code hashes that accounts name but the code table lacks; at most [`MAX_FLAT_REPAIRS`].
    pub missing_code: Vec<B256>,
    /// All problems, including those past the listed ones.
    pub problems: u64,
}

impl FlatCheck {
    /// Whether the flat state is complete and agrees with itself and `root`.
    pub fn ok(&self, root: B256) -> bool {
        self.accounts_root == root && self.problems == 0
    }

    /// Accounts and slots the check hashed: all of them.
    pub fn hashed_leaves(&self) -> u64 {
        self.accounts + self.slots
    }

    fn note<T>(list: &mut Vec<T>, problems: &mut u64, item: T) {
        *problems += 1;
        if list.len() < MAX_FLAT_REPAIRS {
            list.push(item);
        }
    }
}

impl<S: KvStore> LeafDb<S> {
    /// Checks the flat state by merge-scans on one snapshot, without reading a trie node: the
    /// account root of the flat accounts, every account's flat storage against its storage root
    /// (the storage table scanned beside the accounts, in owner ranges on several threads),
    /// storage without an account, and every named code present (the distinct hashes sorted,
    /// then one pass over the code table). A sync runs it before it records its head when its
    /// imports alone do not prove the flat state (docs/sync.md); `verify` is the full, slower
    /// check, which reads the trie too.
    ///
    /// Every scan looks at `stop` as it goes: once it is set the check ends within a row with
    /// [`LeafDbError::Stopped`] (on mainnet's state it runs for minutes, and a node shutting down
    /// should not wait for it).
    pub fn check_flat_state(&self, stop: &AtomicBool) -> Result<FlatCheck> {
        let snap = self.store().snapshot();
        let stop = Stop(stop);
        let (mut out, code_hashes, children) = check_owners_in_parallel(&snap, stop)?;
        out.accounts_root = match root_of_children(&children) {
            Some(root) => root,
            // The accounts share their first nibble (a state of a few): the root is no branch.
            None => account_root(&snap, stop)?,
        };
        let mut codes = snap.range_from(Table::Code, &[], Reading::Scan).fuse();
        let mut current: Option<B256> = None;
        for wanted in code_hashes {
            stop.check()?;
            while current.is_none_or(|c| c < wanted) {
                match codes.next() {
                    Some(row) => current = B256::try_from(row?.0.as_ref()).ok(),
                    None => {
                        current = None;
                        break;
                    }
                }
            }
            if current != Some(wanted) {
                FlatCheck::note(&mut out.missing_code, &mut out.problems, wanted);
            }
        }
        Ok(out)
    }
}

/// The flag a flat check's scans look at: see [`LeafDb::check_flat_state`].
#[derive(Clone, Copy)]
struct Stop<'a>(&'a AtomicBool);

impl Stop<'_> {
    fn check(self) -> Result<()> {
        if self.0.load(Ordering::Relaxed) { Err(LeafDbError::Stopped) } else { Ok(()) }
    }
}

/// Owner ranges a flat check splits the accounts and storage into (by the first nibble of the
/// owner's hash), so that threads can share the work: each range's accounts are the subtrie
/// below one child of the account trie's root.
const FLAT_CHECK_RANGES: u8 = 16;
// A range's accounts are one child of the root's branch only as long as ranges are nibbles.
const _: () = assert!(FLAT_CHECK_RANGES == 16);

/// Threads a flat check scans owner ranges on at most (fewer on a machine with fewer cores): at
/// the end of a sync it is all the node does, and the scan is as much waiting for the disk as
/// hashing. Each holds two cursors reading ahead ([`Reading::Scan`]), freed with the scan.
const FLAT_CHECK_THREADS: usize = 8;

/// Flat accounts and storage whose owner's first byte is in `first..end` (`end: None`: to the
/// end of the tables).
#[derive(Debug, Clone, Copy)]
struct OwnerRange {
    first: u8,
    end: Option<u8>,
}

impl OwnerRange {
    /// Range `i` of [`FLAT_CHECK_RANGES`].
    fn part(i: u8) -> Self {
        let width = u8::MAX / FLAT_CHECK_RANGES + 1;
        Self { first: i * width, end: (i + 1 < FLAT_CHECK_RANGES).then(|| (i + 1) * width) }
    }

    fn holds(self, key: &[u8]) -> bool {
        self.end.is_none_or(|end| key.first().is_some_and(|b| *b < end))
    }
}

/// What [`check_owners`] found in its range, the code hashes the range's accounts name, and the
/// hash of the range's account subtrie (`None`: no account in it).
type OwnersFound = (FlatCheck, BTreeSet<B256>, Option<B256>);

/// What [`check_owners_in_parallel`] found: the findings joined, every code hash named, and the
/// account subtrie hash of each range (the root's children).
type AllOwnersFound = (FlatCheck, BTreeSet<B256>, [Option<B256>; FLAT_CHECK_RANGES as usize]);

/// [`check_owners`] over each of the [`FLAT_CHECK_RANGES`] ranges, split into contiguous runs
/// of ranges on up to [`FLAT_CHECK_THREADS`] threads (hashes spread evenly, so the runs weigh
/// alike), the findings joined in key order.
fn check_owners_in_parallel<R: KvRead + Sync + ?Sized>(
    snap: &R,
    stop: Stop<'_>,
) -> Result<AllOwnersFound> {
    let threads =
        std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, FLAT_CHECK_THREADS);
    let ranges: Vec<u8> = (0..FLAT_CHECK_RANGES).collect();
    let per_thread = ranges.len().div_ceil(threads);
    let progress = RangeProgress::new();
    let parts = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .chunks(per_thread)
            .map(|run| {
                let progress = &progress;
                scope.spawn(move || {
                    let parts = run.iter().map(|i| {
                        let part = check_owners(snap, OwnerRange::part(*i), stop);
                        progress.range_done();
                        part
                    });
                    parts.collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut parts = Vec::new();
        for h in handles {
            parts.extend(h.join().map_err(|_| LeafDbError::WorkerPanicked)??);
        }
        Ok::<_, LeafDbError>(parts)
    })?;
    let mut out = FlatCheck::default();
    let mut code_hashes = BTreeSet::new();
    let mut children = [None; FLAT_CHECK_RANGES as usize];
    // A range finds wrong storage and storage of no account; codes are checked after.
    for (i, (part, codes, child)) in parts.into_iter().enumerate() {
        children[i] = child;
        out.accounts += part.accounts;
        out.slots += part.slots;
        out.problems += part.problems;
        let room = MAX_FLAT_REPAIRS.saturating_sub(out.orphan_storage.len());
        out.orphan_storage.extend(part.orphan_storage.into_iter().take(room));
        let room = MAX_FLAT_REPAIRS.saturating_sub(out.bad_storage.len());
        out.bad_storage.extend(part.bad_storage.into_iter().take(room));
        code_hashes.extend(codes);
    }
    Ok((out, code_hashes, children))
}

/// The account trie's root from the hashes of the subtries below its 16 children, when at least
/// two hold accounts (the root is then a branch; else `None`). Each child is referred to by its
/// hash: an account leaf's node is longer than 32 bytes (a 63-nibble key and the account's RLP,
/// two 32-byte hashes among it), so no child is inlined.
fn root_of_children(children: &[Option<B256>; FLAT_CHECK_RANGES as usize]) -> Option<B256> {
    if children.iter().flatten().count() < 2 {
        return None;
    }
    let refs: [Option<RlpNode>; 16] =
        std::array::from_fn(|i| children[i].map(|hash| RlpNode::word_rlp(&hash)));
    let mut rlp = Vec::with_capacity(16 * 33 + 4);
    encode_branch(&refs, None, &mut rlp);
    Some(keccak256(&rlp))
}

/// Least time between two progress lines of a flat check (on mainnet's state it takes minutes).
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The owner ranges a flat check has finished, logged at most every [`PROGRESS_LOG_INTERVAL`].
struct RangeProgress {
    started: Instant,
    /// Ranges done, and when the last line was logged.
    done: Mutex<(usize, Instant)>,
}

impl RangeProgress {
    fn new() -> Self {
        let now = Instant::now();
        Self { started: now, done: Mutex::new((0, now)) }
    }

    fn range_done(&self) {
        let mut guard = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let (done, last_log) = &mut *guard;
        *done += 1;
        if last_log.elapsed() >= PROGRESS_LOG_INTERVAL {
            *last_log = Instant::now();
            let secs = self.started.elapsed().as_secs();
            info!(
                done = *done,
                of = FLAT_CHECK_RANGES,
                secs,
                "flat state check: owner ranges done"
            );
        }
    }
}

/// The root of the account trie built from every flat account, in order, on one thread: for a
/// state whose accounts all share their first nibble ([`root_of_children`]).
fn account_root<R: KvRead + ?Sized>(snap: &R, stop: Stop<'_>) -> Result<B256> {
    let mut accounts = root_builder();
    let mut rows = snap.range_cursor(Table::Accounts, &[], Reading::Scan)?;
    while let Some((key, value)) = rows.current() {
        stop.check()?;
        let (owner, _) = decode_account_row(key, value)?;
        accounts.add_leaf(Nibbles::unpack(owner), value.to_vec())?;
        rows.next()?;
    }
    Ok(accounts.finish()?.root)
}

/// Merge-scans the flat accounts and storage of `range`: counts them, builds the range's account
/// subtrie (keys past the first nibble, which the range shares), notes storage that does not
/// hash to its account's storage root and storage without an account. Returns the findings, the
/// code hashes the accounts name and the subtrie's hash.
fn check_owners<R: KvRead + ?Sized>(
    snap: &R,
    range: OwnerRange,
    stop: Stop<'_>,
) -> Result<OwnersFound> {
    let mut out = FlatCheck::default();
    let mut code_hashes = BTreeSet::new();
    let mut subtrie = root_builder();
    let start = [range.first];
    // Cursors lend their rows: millions of them, none allocated.
    let mut accounts = snap.range_cursor(Table::Accounts, &start, Reading::Scan)?;
    let mut storage = snap.range_cursor(Table::Storage, &start, Reading::Scan)?;
    while let Some((key, value)) = accounts.current().filter(|(k, _)| range.holds(k)) {
        stop.check()?;
        let (owner, account) = decode_account_row(key, value)?;
        out.accounts += 1;
        subtrie.add_leaf(Nibbles::unpack(owner).slice(1..), value.to_vec())?;
        let mut slots = root_builder();
        // Rows sort by owner, as accounts do: those before this account have none.
        while let Some((k, v)) = storage.current().filter(|(k, _)| range.holds(k)) {
            stop.check()?;
            let (row_owner, _) = split_storage_key(k)?;
            if row_owner > owner {
                break;
            }
            if row_owner < owner {
                if out.orphan_storage.last() != Some(&row_owner) {
                    FlatCheck::note(&mut out.orphan_storage, &mut out.problems, row_owner);
                }
            } else {
                out.slots += 1;
                let value = decode_slot_value(v)?;
                slots.add_leaf(Nibbles::unpack(&k[32..]), slot_leaf_value(&value))?;
            }
            storage.next()?;
        }
        let storage_root = slots.finish()?.root;
        if storage_root != account.storage_root {
            let item = (owner, account.storage_root);
            FlatCheck::note(&mut out.bad_storage, &mut out.problems, item);
        }
        if account.code_hash != KECCAK256_EMPTY {
            code_hashes.insert(account.code_hash);
        }
        accounts.next()?;
    }
    // Storage after the range's last account belongs to no account.
    while let Some((k, _)) = storage.current().filter(|(k, _)| range.holds(k)) {
        stop.check()?;
        let (orphan, _) = split_storage_key(k)?;
        if out.orphan_storage.last() != Some(&orphan) {
            FlatCheck::note(&mut out.orphan_storage, &mut out.problems, orphan);
        }
        storage.next()?;
    }
    let child = (out.accounts > 0).then(|| subtrie.finish()).transpose()?.map(|b| b.root);
    Ok((out, code_hashes, child))
}
