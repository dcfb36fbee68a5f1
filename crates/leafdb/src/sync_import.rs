//! Writing what a state sync downloads in bulk: a chunk's leaves with the subtrie they determine,
//! codes, and at the end the skeleton with the head. Healing is in [`crate::sync_heal`].
//!
//! Every write replaces what was stored under its prefix, so importing the same chunk twice (a
//! retry, a restart) gives the same tables. A stored node always has its complete subtree:
//! chunk subtries are written whole, healed nodes only once their children are stored (the
//! caller commits bottom-up), skeleton nodes last.

use alloy_primitives::{B256, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};

use crate::{
    db::LeafDb,
    error::{LeafDbError, Result},
    keys::{account_range, node_key, node_range, node_table, storage_key, storage_range},
    kv::{Durability, KvRead, KvStore, Table, WriteBatch},
    schema::{self, BlockHeader, encode_account, encode_slot_value, meta, slot_leaf_value},
    trie::{StackBuilder, nibbles_hex},
};

/// Nodes whose RLP is shorter than a hash are embedded in their parent, never stored alone.
const HASH_LEN: usize = 32;

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
    batch: &mut WriteBatch,
    owner: Option<&B256>,
    prefix: &Nibbles,
    leaves: impl Iterator<Item = (Nibbles, Vec<u8>)>,
) -> Result<B256> {
    let table = node_table(owner);
    let mut builder = StackBuilder::new(|rel: &Nibbles, rlp: &[u8]| {
        if rel.is_empty() && rlp.len() < HASH_LEN && !prefix.is_empty() {
            return Ok(());
        }
        batch.put(table, node_key(owner, &prefix.join(rel)), rlp.to_vec());
        Ok(())
    });
    for (key, value) in leaves {
        if !key.starts_with(prefix) {
            return Err(LeafDbError::UnsortedInput { key: nibbles_hex(&key) });
        }
        builder.add_leaf(key.slice(prefix.len()..), value)?;
    }
    Ok(builder.finish()?.root)
}

/// Builds a storage trie over sorted slots, staging its nodes and flat entries.
fn stage_storage(
    batch: &mut WriteBatch,
    owner: &B256,
    prefix: &Nibbles,
    slots: &[(B256, U256)],
) -> Result<B256> {
    for (slot, value) in slots {
        batch.put(Table::Storage, storage_key(owner, slot), encode_slot_value(value));
    }
    let leaves = slots.iter().map(|(s, v)| (Nibbles::unpack(s), slot_leaf_value(v)));
    stage_subtrie(batch, Some(owner), prefix, leaves)
}

/// Stages a range delete of `[lo, hi)` in `table` only if a key is there: a first import (the
/// common case) finds its ranges empty, and a range tombstone costs a write, and every later
/// read that crosses it, while one iterator seek is cheap. The caller must not let another
/// write into the range land between this check and its batch (a sync imports its chunks from
/// one loop).
fn clear_range<S: KvRead>(
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
/// [`LeafDb::stage_storage_chunk`]): what it computed, and the write that imports it
/// ([`LeafDb::commit_chunk`]). Dropped, it imports nothing, so a caller can look at the
/// subtrie's hash before it lets the chunk replace what is stored.
#[must_use = "a staged chunk imports nothing until it is committed"]
#[derive(Debug)]
pub struct StagedChunk<T> {
    outcome: T,
    batch: WriteBatch,
}

impl<T> StagedChunk<T> {
    /// What the import computed (the subtrie's hash, and for accounts their storage roots).
    pub const fn outcome(&self) -> &T {
        &self.outcome
    }
}

impl<S: KvStore> LeafDb<S> {
    /// Replaces everything under the account prefix `prefix` with `accounts` (sorted, all under
    /// `prefix`): flat accounts, inline storage with its tries, and the account subtrie, in one
    /// atomic write, logged (it survives a killed process) when this returns. Returns the
    /// subtrie's hash and the computed storage roots. Must not run concurrently with another
    /// write under `prefix`: whether to write its range deletes is read before the write.
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
        let mut batch = WriteBatch::default();
        clear_account_prefix(self.store(), &mut batch, prefix)?;
        let mut storage_roots = Vec::with_capacity(accounts.len());
        let mut leaves = Vec::with_capacity(accounts.len());
        for a in accounts {
            let root = match &a.storage {
                Some(slots) => {
                    Some(stage_storage(&mut batch, &a.hashed_address, &Nibbles::new(), slots)?)
                }
                None => None,
            };
            storage_roots.push(root);
            let value = encode_account(&a.account);
            batch.put(Table::Accounts, a.hashed_address.as_slice(), value.clone());
            leaves.push((Nibbles::unpack(a.hashed_address), value));
        }
        let root = stage_subtrie(&mut batch, None, prefix, leaves.into_iter())?;
        Ok(StagedChunk { outcome: AccountChunkOutcome { root, storage_roots }, batch })
    }

    /// Replaces the storage of `owner` under `prefix` with `slots` (sorted, under `prefix`) and
    /// its subtrie in one atomic, logged write; returns the subtrie's hash. Must not run
    /// concurrently with another write under `prefix`.
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
        let mut batch = WriteBatch::default();
        clear_range(self.store(), &mut batch, Table::Storage, storage_range(owner, prefix))?;
        let nodes = node_range(Some(owner), prefix);
        clear_range(self.store(), &mut batch, Table::StorageNodes, nodes)?;
        let root = stage_storage(&mut batch, owner, prefix, slots)?;
        Ok(StagedChunk { outcome: root, batch })
    }

    /// Writes a staged chunk (one atomic, logged write) and returns what it computed.
    pub fn commit_chunk<T>(&self, staged: StagedChunk<T>) -> Result<T> {
        // Clearing an empty range (an account found to have no storage) writes nothing.
        if !staged.batch.is_empty() {
            self.store().write(staged.batch, Durability::Logged)?;
        }
        Ok(staged.outcome)
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

    /// Writes bytecodes (each keyed by its hash).
    pub fn write_codes(&self, codes: &[Vec<u8>]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for code in codes {
            batch.put(Table::Code, keccak256(code).as_slice(), code.clone());
        }
        self.store().write(batch, Durability::Logged)
    }

    /// Writes the account trie's top nodes of a sync (`skeleton`, paths above the chunks) and
    /// returns the root the stored trie now has. Records no head: see
    /// [`Self::record_synced_head`].
    pub fn write_sync_skeleton(&self, skeleton: &[(Nibbles, Vec<u8>)]) -> Result<B256> {
        self.write_trie_nodes(None, skeleton)?;
        Ok(self.node(None, &Nibbles::new())?.map_or(EMPTY_ROOT_HASH, keccak256))
    }

    /// Ends a sync: records `head` and the stored trie's root in one durable write, only if
    /// that root is `head.state_root` (otherwise nothing is written and the database stays
    /// without a head, so a restart syncs again rather than serving a wrong state). Returns the
    /// recorded root.
    pub fn record_synced_head(&self, head: BlockHeader) -> Result<B256> {
        let root = self.node(None, &Nibbles::new())?.map_or(EMPTY_ROOT_HASH, keccak256);
        if root != head.state_root {
            return Err(LeafDbError::SyncedRootMismatch {
                stored: root,
                expected: head.state_root,
            });
        }
        let mut batch = WriteBatch::default();
        batch.put(Table::Meta, meta::ACCOUNT_ROOT, root.as_slice());
        schema::stage_head(&mut batch, &head);
        self.store().write(batch, Durability::Synced)?;
        self.publish_head(head);
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::rocks::DbOptions;

    fn account(i: u64, slots: u64) -> ChunkAccount {
        let mut hashed = keccak256(i.to_be_bytes());
        hashed[0] = 0x30 | (hashed[0] & 0x0f);
        let storage = (0..slots).map(|s| (keccak256([i as u8, s as u8]), U256::from(s + 1)));
        let mut storage: Vec<_> = storage.collect();
        storage.sort();
        ChunkAccount {
            hashed_address: hashed,
            account: TrieAccount { nonce: i, ..Default::default() },
            storage: Some(storage),
        }
    }

    fn tables<S: KvStore>(db: &LeafDb<S>) -> Vec<(Table, crate::kv::KvPair)> {
        let mut all = Vec::new();
        for table in [Table::Accounts, Table::Storage, Table::AccountNodes, Table::StorageNodes] {
            for item in db.store().iter_from(table, &[]) {
                all.push((table, item.unwrap()));
            }
        }
        all
    }

    fn chunk(ids: &[(u64, u64)]) -> Vec<ChunkAccount> {
        let mut accounts: Vec<_> = ids.iter().map(|(i, s)| account(*i, *s)).collect();
        accounts.sort_by_key(|a| a.hashed_address);
        accounts
    }

    /// Importing over an earlier import of the same prefix (a retry with another peer's answer)
    /// leaves exactly what importing it alone leaves, also where the ranges were found
    /// occupied; and a first import into empty ranges writes no range deletes.
    #[test]
    fn a_reimported_chunk_replaces_the_earlier_one() {
        let prefix = Nibbles::from_nibbles([3]);
        let first = chunk(&[(1, 3), (2, 0), (3, 40), (4, 1)]);
        let second = chunk(&[(2, 5), (5, 0), (6, 30)]);
        let dir = tempfile::tempdir().unwrap();
        let rocks = LeafDb::open(dir.path(), &DbOptions::default(), Default::default()).unwrap();
        let mem = LeafDb::in_memory();
        let fresh = LeafDb::in_memory();
        fresh.import_account_chunk(&prefix, &second).unwrap();
        mem.import_account_chunk(&prefix, &first).unwrap();
        mem.import_account_chunk(&prefix, &second).unwrap();
        mem.import_account_chunk(&prefix, &second).unwrap();
        assert_eq!(tables(&mem), tables(&fresh));
        rocks.import_account_chunk(&prefix, &first).unwrap();
        rocks.import_account_chunk(&prefix, &second).unwrap();
        assert_eq!(tables(&rocks), tables(&fresh));

        // Storage chunks: a smaller storage under one prefix replaces a larger one.
        let owner = second[2].hashed_address;
        let slots = |n: u64| {
            let mut s: Vec<_> =
                (0..n).map(|s| (keccak256([9, s as u8]), U256::from(s + 7))).collect();
            s.retain(|(k, _)| k[0] >> 4 == 0xa);
            s.sort();
            s
        };
        let sub = Nibbles::from_nibbles([0xa]);
        fresh.import_storage_chunk(&owner, &sub, &slots(60)).unwrap();
        rocks.import_storage_chunk(&owner, &sub, &slots(200)).unwrap();
        rocks.import_storage_chunk(&owner, &sub, &slots(60)).unwrap();
        assert_eq!(tables(&rocks), tables(&fresh));
    }

    #[test]
    fn a_first_import_writes_no_range_deletes() {
        let db = LeafDb::in_memory();
        let mut batch = WriteBatch::default();
        clear_account_prefix(db.store(), &mut batch, &Nibbles::from_nibbles([3])).unwrap();
        assert!(batch.is_empty());
        db.import_account_chunk(&Nibbles::from_nibbles([3]), &chunk(&[(1, 2)])).unwrap();
        clear_account_prefix(db.store(), &mut batch, &Nibbles::from_nibbles([3])).unwrap();
        assert_eq!(batch.len(), 4);
        let mut batch = WriteBatch::default();
        clear_account_prefix(db.store(), &mut batch, &Nibbles::from_nibbles([4])).unwrap();
        assert!(batch.is_empty());
    }
}
