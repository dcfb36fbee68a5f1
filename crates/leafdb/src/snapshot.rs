//! [`LeafSnapshot`]: a consistent, read-only view of the leafdb at one head, for serving and for
//! anything else that must not see a block half-applied (it never blocks block application).

use alloy_primitives::{B256, U256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};

use crate::{
    db::{LeafDb, NodeReader, TrieNodes, read_account_root},
    error::Result,
    keys::{account_range, storage_range},
    kv::{Cursor, KvRead, KvStore, Table, scan_range},
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

/// Nibbles of the key-space slice [`LeafDb::estimate_accounts`] counts: 2 nibbles are 1/256 of
/// the accounts, a few thousand reads on mainnet (cheap at start-up) and within about 10% of the
/// total on large states (hashed addresses are uniform).
pub const ESTIMATE_SAMPLE_NIBBLES: usize = 2;

impl<S: KvStore> LeafDb<S> {
    /// Takes a consistent snapshot.
    pub fn snapshot(&self) -> Result<LeafSnapshot<'_, S>> {
        // Read before the store's snapshot, and counted after a revert's write: a snapshot of a
        // state before a revert never carries the count after it.
        let reverts = self.reverts();
        let snap = self.store().snapshot();
        let head = snap.get(Table::Meta, meta::HEAD)?.map(|b| decode_head(&b)).transpose()?;
        let account_root = read_account_root(&snap)?;
        Ok(LeafSnapshot { snap, db: self, head, account_root, reverts })
    }

    /// An estimate of the number of accounts: those under the prefix `00` (see
    /// [`ESTIMATE_SAMPLE_NIBBLES`]) times the number of such slices.
    pub fn estimate_accounts(&self) -> Result<u64> {
        let snap = self.snapshot()?;
        let prefix = Nibbles::from_nibbles([0; ESTIMATE_SAMPLE_NIBBLES]);
        let mut slice = 0u64;
        for item in snap.accounts_with_prefix(&prefix) {
            item?;
            slice += 1;
        }
        Ok(slice << (4 * ESTIMATE_SAMPLE_NIBBLES))
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
        scan_range(&self.snap, Table::Accounts, account_range(prefix)).map(|item| {
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
        scan_range(&self.snap, Table::Storage, storage_range(account, prefix)).map(|item| {
            let (k, v) = item?;
            storage_slot(&k, &v)
        })
    }

    /// A walk through the storage of the accounts under `prefix`, account after account in key
    /// order, on one cursor ([`StorageWalk::slots`]): a chunk's storages without an iterator
    /// each.
    pub fn storage_walk(&self, prefix: &Nibbles) -> Result<StorageWalk<'_>> {
        let (start, _) = account_range(prefix);
        Ok(StorageWalk { cursor: self.snap.cursor(Table::Storage, &start)? })
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
