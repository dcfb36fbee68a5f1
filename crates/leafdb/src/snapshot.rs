//! [`LeafSnapshot`]: a consistent, read-only view of the leafdb at one head, for serving and for
//! anything else that must not see a block half-applied (it never blocks block application).

use alloy_primitives::{B256, U256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};

use crate::{
    db::{LeafDb, read_account_root},
    error::{LeafDbError, Result},
    keys::{account_range, storage_range},
    kv::{Cursor, KvRead, KvStore, Reading, Table, serve_range},
    nodes::{NodeReader, TrieNodes},
    schema::{
        BlockHeader, decode_account, decode_account_row, decode_head, decode_slot_value, meta,
        split_storage_key,
    },
    trie::NodeSource,
};

/// A read-only view of the state at the moment [`LeafDb::snapshot`] was called.
pub struct LeafSnapshot<'a, S: KvStore> {
    snap: S::Snapshot<'a>,
    db: &'a LeafDb<S>,
    head: Option<BlockHeader>,
    account_root: B256,
    reverts: u64,
}

impl<S: KvStore> std::fmt::Debug for LeafSnapshot<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafSnapshot").field("head", &self.head).finish_non_exhaustive()
    }
}

/// The storage of accounts read in key order on one cursor ([`LeafSnapshot::storage_walk`]).
pub struct StorageWalk<'s> {
    cursor: Box<dyn Cursor + 's>,
}

impl std::fmt::Debug for StorageWalk<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageWalk").finish_non_exhaustive()
    }
}

impl<'s> StorageWalk<'s> {
    /// The slots of `account`, in key order. Accounts must be asked in increasing order: the
    /// walk never goes back, so an earlier account's slots are not found again.
    pub fn slots(&mut self, account: &B256) -> Result<AccountSlots<'_, 's>> {
        self.cursor.skip_to(account.as_slice())?;
        Ok(AccountSlots { cursor: &mut self.cursor, account: *account })
    }
}

/// One account's slots in a [`StorageWalk`], read as they are iterated.
pub struct AccountSlots<'w, 's> {
    cursor: &'w mut Box<dyn Cursor + 's>,
    account: B256,
}

impl std::fmt::Debug for AccountSlots<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSlots").field("account", &self.account).finish_non_exhaustive()
    }
}

impl Iterator for AccountSlots<'_, '_> {
    type Item = Result<(B256, U256)>;

    fn next(&mut self) -> Option<Self::Item> {
        let slot = {
            let (key, value) =
                self.cursor.current().filter(|(k, _)| k.starts_with(self.account.as_slice()))?;
            storage_slot(key, value)
        };
        Some(self.cursor.next().and(slot))
    }
}

/// A storage row's hashed slot and value.
fn storage_slot(key: &[u8], value: &[u8]) -> Result<(B256, U256)> {
    let (_, slot) = split_storage_key(key)?;
    Ok((slot, decode_slot_value(value)?))
}

/// Most snapshots [`LeafDb::snapshot`] takes to get one that belongs to a single count of
/// reverts (8): a snapshot is taken again only when a revert completed while it was taken, and
/// reverts come one block at a time from the one thread that follows the chain, each a whole
/// block application long, so a second attempt all but always succeeds; eight bound the loop
/// (and the wait of a serving thread) should a deep reorg's reverts race a slow snapshot.
pub const SNAPSHOT_ATTEMPTS: usize = 8;

/// `take()` run until the `count` read before it equals the one read after it, at most
/// `attempts` times: what it took and that count, or `None` when the count moved every time.
fn between_equal_counts<T>(
    count: impl Fn() -> u64,
    mut take: impl FnMut() -> T,
    attempts: usize,
) -> Option<(T, u64)> {
    for _ in 0..attempts {
        let before = count();
        let taken = take();
        if count() == before {
            return Some((taken, before));
        }
    }
    None
}

/// Nibbles of the key-space slice [`LeafDb::estimate_accounts`] samples: 2 nibbles are 1/256 of
/// the accounts (hashed addresses are uniform), which it counts whole on states of up to about
/// 1M accounts; on larger ones it reads only [`ESTIMATE_MAX_ACCOUNTS`] of them.
pub const ESTIMATE_SAMPLE_NIBBLES: usize = 2;

/// Most accounts [`LeafDb::estimate_accounts`] reads: 4,096, a few milliseconds at every daemon
/// start and `tool verify`. The whole sample slice would be ~1.05M rows on mainnet (~270M
/// accounts); 4,096 uniform keys put the estimate within about 1.6% (one standard deviation,
/// 1/√4096) of the total.
pub const ESTIMATE_MAX_ACCOUNTS: usize = 4096;
const _: () = assert!(ESTIMATE_MAX_ACCOUNTS >= 2, "the scaled estimate divides by reads - 1");

/// The number of accounts estimated from `keys`, the hashed addresses of the sample slice
/// ([`ESTIMATE_SAMPLE_NIBBLES`]) in key order, of which it reads at most `max` (at least 2).
/// Fewer than `max`: the slice's count times the number of slices. Otherwise the `max` read are
/// the accounts before the last one's place in the key space, which uniform keys fill evenly:
/// `n` keys up to the share `u` of the key space estimate `(n - 1) / u` accounts (for the `n`-th
/// of `N` uniform keys, the mean of `1/u` is `N / (n - 1)`).
fn estimate_from_sample(keys: impl Iterator<Item = Result<B256>>, max: usize) -> Result<u64> {
    let mut read = 0u64;
    let mut last = B256::ZERO;
    for key in keys.take(max) {
        last = key?;
        read += 1;
    }
    if read < max as u64 {
        return Ok(read << (4 * ESTIMATE_SAMPLE_NIBBLES));
    }
    // The key's place as a share of 2^64: its first 8 bytes, plus one so that it is never 0.
    let mut place = [0u8; 8];
    place.copy_from_slice(&last[..8]);
    let covered = u128::from(u64::from_be_bytes(place)) + 1;
    let estimate = (u128::from(read - 1) << 64) / covered;
    Ok(u64::try_from(estimate).unwrap_or(u64::MAX))
}

impl<S: KvStore> LeafDb<S> {
    /// Takes a consistent snapshot, with the count of reverts ([`Self::reverts`]) of the state
    /// it holds; [`LeafDbError::RevertsRacing`] if reverts kept completing while it was taken.
    pub fn snapshot(&self) -> Result<LeafSnapshot<'_, S>> {
        // A revert writes its state, then counts itself (`revert_block`); the thread that
        // reverts applies the next block only after that. The count `k`, read equal before and
        // after the store's snapshot, puts the snapshot after the k-th revert's write (its count
        // was seen first) and before the (k+1)-th revert's count, so before any block applied
        // after that revert: every state a snapshot counted `k` can hold lies on one line of the
        // chain (the (k+1)-th revert's write restores a block of that line), and a piece cached
        // under `k` is true for all of them. Read only before, a revert and the new fork's block
        // could both land before the snapshot: the new fork under `k`, beside the abandoned
        // fork's pieces. Read only after, a state from before a revert could carry the count
        // after it. A count that moved in between means a revert completed meanwhile: take
        // another snapshot.
        let (snap, reverts) =
            between_equal_counts(|| self.reverts(), || self.store().snapshot(), SNAPSHOT_ATTEMPTS)
                .ok_or(LeafDbError::RevertsRacing { attempts: SNAPSHOT_ATTEMPTS })?;
        let head = snap.get(Table::Meta, meta::HEAD)?.map(|b| decode_head(&b)).transpose()?;
        let account_root = read_account_root(&snap)?;
        Ok(LeafSnapshot { snap, db: self, head, account_root, reverts })
    }

    /// An estimate of the number of accounts: those under the prefix `00` (see
    /// [`ESTIMATE_SAMPLE_NIBBLES`]) times the number of such slices, or, past
    /// [`ESTIMATE_MAX_ACCOUNTS`] of them, scaled from the share of the key space those cover.
    pub fn estimate_accounts(&self) -> Result<u64> {
        let snap = self.snapshot()?;
        estimate_from_sample(sample_keys(&snap, &sample_prefix()), ESTIMATE_MAX_ACCOUNTS)
    }
}

impl<'a, S: KvStore> LeafSnapshot<'a, S> {
    /// The head block the snapshot belongs to.
    pub const fn head(&self) -> Option<BlockHeader> {
        self.head
    }

    /// [`LeafDb::reverts`] when the snapshot was taken.
    pub const fn reverts(&self) -> u64 {
        self.reverts
    }

    /// Root of the stored account trie.
    pub const fn account_root(&self) -> B256 {
        self.account_root
    }

    /// An account by hashed address.
    pub fn account(&self, hashed: &B256) -> Result<Option<TrieAccount>> {
        self.snap.get(Table::Accounts, hashed.as_slice())?.map(|b| decode_account(&b)).transpose()
    }

    /// Accounts whose hashed address starts with `prefix`, in key order, with their encoded
    /// size (the RLP stored, which is also the trie leaf value).
    pub fn accounts_with_prefix<'s>(
        &'s self,
        prefix: &Nibbles,
    ) -> impl Iterator<Item = Result<(B256, TrieAccount)>> + 's {
        serve_range(&self.snap, Table::Accounts, account_range(prefix)).map(|item| {
            let (k, v) = item?;
            decode_account_row(&k, &v)
        })
    }

    /// Storage slots of `account` whose hashed slot starts with `prefix`, in key order.
    pub fn storage_with_prefix<'s>(
        &'s self,
        account: &B256,
        prefix: &Nibbles,
    ) -> impl Iterator<Item = Result<(B256, U256)>> + 's {
        serve_range(&self.snap, Table::Storage, storage_range(account, prefix)).map(|item| {
            let (k, v) = item?;
            storage_slot(&k, &v)
        })
    }

    /// A walk through the storage of the accounts under `prefix`, account after account in key
    /// order, on one cursor ([`StorageWalk::slots`]): a chunk's storages without an iterator
    /// each.
    pub fn storage_walk(&self, prefix: &Nibbles) -> Result<StorageWalk<'_>> {
        let (start, _) = account_range(prefix);
        Ok(StorageWalk { cursor: self.snap.range_cursor(Table::Storage, &start, Reading::Serve)? })
    }

    /// The node at `path` of the account trie (`owner` `None`) or of a storage trie: the stored
    /// one, else the leaf rebuilt from the one flat entry under `path` (leaves are mostly not
    /// stored). That leaf is the trie's node only if `path` is a leaf position: check the result
    /// against the hash the parent holds, as every caller does.
    pub fn node(&self, owner: Option<&B256>, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        TrieNodes::of(&self.snap, owner).node(path)
    }

    /// A reader for many node lookups in a row on this snapshot; see [`NodeReader`].
    pub fn node_reader(&self) -> NodeReader<'_, S::Snapshot<'a>> {
        NodeReader::new(&self.snap)
    }

    /// A node replaced in a recent block, by hash. The cache is shared, not snapshotted: a
    /// node is content-addressed, so whatever it returns for a hash is that node.
    pub fn recent_node(&self, hash: &B256) -> Result<Option<Vec<u8>>> {
        self.db.recent_node(hash)
    }

    /// Bytecode by hash.
    pub fn code(&self, hash: &B256) -> Result<Option<Vec<u8>>> {
        self.snap.get(Table::Code, hash.as_slice())
    }

    /// The storage root of an account (the empty root when it has none or does not exist).
    pub fn storage_root(&self, account: &B256) -> Result<B256> {
        Ok(self.account(account)?.map_or(EMPTY_ROOT_HASH, |a| a.storage_root))
    }
}

/// The prefix of the key-space slice [`LeafDb::estimate_accounts`] samples.
fn sample_prefix() -> Nibbles {
    Nibbles::from_nibbles([0; ESTIMATE_SAMPLE_NIBBLES])
}

/// The hashed addresses under `prefix` ([`sample_prefix`]), in key order.
fn sample_keys<'s, S: KvStore>(
    snap: &'s LeafSnapshot<'_, S>,
    prefix: &'s Nibbles,
) -> impl Iterator<Item = Result<B256>> + 's {
    snap.accounts_with_prefix(prefix).map(|item| item.map(|(key, _)| key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{cell::Cell, sync::Arc};

    use super::*;
    use crate::{
        GenParams, LeafDbConfig,
        test_utils::{HookAt, HookStore},
    };

    /// A reorg rolled back and its new block applied while a serving thread takes a snapshot:
    /// the snapshot holds the new block, so it must carry the count of reverts after the
    /// rollback. With the count of before it, a piece cached from the dropped block at the same
    /// height would be handed out as the new block's (serve's cache keys pieces by the count).
    #[test]
    fn a_snapshot_taken_across_a_revert_carries_the_count_after_it() {
        let params = GenParams { accounts: 300, seed: 3 };
        let db = Arc::new(LeafDb::with_store(HookStore::new(), LeafDbConfig::default()).unwrap());
        db.generate(params).unwrap();
        let genesis = db.head().unwrap().unwrap();
        let (dropped, dropped_diff) = params.block(1, 20);
        let undo = db.undo_of(&dropped_diff).unwrap().unwrap();
        db.apply_block(&dropped, &dropped_diff).unwrap();
        let (_, new_diff) = params.block(2, 20);
        let new = BlockHeader { hash: B256::repeat_byte(0xb1), ..dropped };
        let follower = Arc::clone(&db);
        db.store().set_hook(
            HookAt::Snapshot,
            Box::new(move || {
                follower.revert_block(&genesis, &undo).unwrap();
                follower.apply_block(&new, &new_diff).unwrap();
            }),
        );
        let snap = db.snapshot().unwrap();
        assert_eq!(snap.head().map(|h| h.hash), Some(new.hash), "the hook ran");
        assert_eq!(snap.reverts(), 1, "the new block's state under the count of the dropped one");
        assert_eq!(db.reverts(), 1);
    }

    /// Past its bound the estimate reads no more rows and scales what it read: on a state whose
    /// sample slice holds ~390 accounts, a bound of 256 stops the read and still lands near the
    /// total (the standard error is 1/√256, ~6%; this seed's is fixed, the bound allows 25%).
    #[test]
    fn the_estimate_stops_at_its_bound_and_scales_what_it_read() {
        const ACCOUNTS: u64 = 100_000;
        const BOUND: usize = 256;
        let db = LeafDb::in_memory();
        db.generate(GenParams { accounts: ACCOUNTS, seed: 11 }).unwrap();
        let snap = db.snapshot().unwrap();
        let prefix = sample_prefix();
        assert!(sample_keys(&snap, &prefix).count() > BOUND, "the slice is larger than the bound");
        let reads = Cell::new(0usize);
        let keys = sample_keys(&snap, &prefix).inspect(|_| reads.set(reads.get() + 1));
        let estimate = estimate_from_sample(keys, BOUND).unwrap();
        assert_eq!(reads.get(), BOUND);
        let error = estimate.abs_diff(ACCOUNTS) as f64 / ACCOUNTS as f64;
        assert!(error < 0.25, "{estimate} for {ACCOUNTS} accounts");
        // Under the bound the count is the slice's, times 256, as before.
        let slice = sample_keys(&snap, &prefix).count() as u64;
        assert_eq!(estimate_from_sample(sample_keys(&snap, &prefix), 4096).unwrap(), slice * 256);
        assert_eq!(db.estimate_accounts().unwrap(), slice * 256);
    }

    #[test]
    fn a_count_that_moves_while_taking_retakes_and_a_count_that_keeps_moving_gives_up() {
        let count = Cell::new(0u64);
        let mut taken = 0;
        // The count moves during the first two takes.
        let got = between_equal_counts(
            || count.get(),
            || {
                taken += 1;
                if taken <= 2 {
                    count.set(count.get() + 1);
                }
                taken
            },
            SNAPSHOT_ATTEMPTS,
        );
        assert_eq!(got, Some((3, 2)), "the third take, between two reads of 2");
        let moving = between_equal_counts(|| count.get(), || count.set(count.get() + 1), 3);
        assert_eq!(moving, None);
        assert_eq!(count.get(), 5, "three attempts, no more");
    }
}
