//! Healing writes of a state sync: forgetting stale nodes above a heal, writing verified nodes
//! with the stale nodes below them pruned, and re-deriving the flat tables from a healed subtrie
//! (flat reconciliation). Bulk chunk import is in [`crate::sync_import`].

use std::collections::HashSet;

use alloy_primitives::{B256, U256, keccak256};
use alloy_rlp::Decodable;
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};

use crate::{
    db::{LeafDb, TrieNodes},
    error::{LeafDbError, Result},
    keys::{
        account_range, child_range, key_of_path, node_key, node_range, node_table, prefix_end,
        storage_key, storage_range,
    },
    kv::{Durability, KvStore, Table, WriteBatch, scan_range},
    schema::{decode_account, encode_slot_value},
    sync_import::clear_range,
    trie::{DecodedNode, checked_join, walk_leaves},
};

/// The 32-byte key a leaf of the trie of `owner` at `path` stands for.
fn leaf_key(owner: Option<&B256>, path: &Nibbles) -> Result<B256> {
    key_of_path(path)
        .ok_or(LeafDbError::BadKey { table: node_table(owner).name(), len: path.len().div_ceil(2) })
}

impl<S: KvStore> LeafDb<S> {
    /// Deletes the stored node at `path` and at every path above it in the trie of `owner`, in
    /// one write. A heal calls it when it starts at `path`: the nodes there and above are stale,
    /// and the heal will replace nodes below them one by one, so a stale ancestor left in place
    /// would claim a subtree it no longer has (were its hash ever wanted again, as after a
    /// pivot move, it would be taken as complete).
    /// Only stored nodes get a delete: a tombstone for a key that is not there would cost every
    /// later iterator passing it (a heal-only sync forgets the absent root of every storage trie).
    pub fn forget_path(&self, owner: Option<&B256>, path: &Nibbles) -> Result<()> {
        let mut batch = WriteBatch::default();
        let table = node_table(owner);
        for len in 0..=path.len() {
            let key = node_key(owner, &path.slice(..len));
            if self.store().get(table, &key)?.is_some() {
                batch.delete(table, key);
            }
        }
        if !batch.is_empty() {
            self.store().write(batch, Durability::Logged)?;
        }
        Ok(())
    }

    /// Writes verified nodes (each `(path, rlp)`, children already stored) and deletes every
    /// stored node below each of them that its new encoding no longer reaches, in one write.
    pub fn write_trie_nodes(
        &self,
        owner: Option<&B256>,
        nodes: &[(Nibbles, Vec<u8>)],
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        let table = node_table(owner);
        // A range tombstone costs every later read of the memtable (RocksDB re-fragments all of
        // them after each write that adds one, which made heal quadratic), so only a range that
        // holds a key gets one. Deleting an empty range does nothing, and no node of the batch
        // lies in another's ranges (they are the unreachable parts of one verified trie), so
        // checking the stored state is exact.
        let store = self.store();
        let prune = |batch: &mut WriteBatch, (lo, hi): (Vec<u8>, Vec<u8>)| -> Result<()> {
            if let Some(item) = store.iter_from(table, &lo).next() {
                let (key, _) = item?;
                if key.as_ref() < hi.as_slice() {
                    batch.delete_range(table, lo, hi);
                }
            }
            Ok(())
        };
        for (path, rlp) in nodes {
            match DecodedNode::decode(rlp)? {
                DecodedNode::Leaf { .. } => prune(&mut batch, child_range(owner, path, 0, 16))?,
                DecodedNode::Branch { children, .. } => {
                    for (i, c) in (0u8..).zip(children.iter()) {
                        if c.as_ref().is_none_or(|r| r.as_hash().is_none()) {
                            prune(&mut batch, child_range(owner, path, i, i + 1))?;
                        }
                    }
                }
                DecodedNode::Extension { key, child } => {
                    checked_join(path, &key)?;
                    // Below each level of the extension only the nibble it continues with.
                    let mut at = *path;
                    for i in 0..key.len() {
                        let k = key.get_unchecked(i);
                        prune(&mut batch, child_range(owner, &at, 0, k))?;
                        prune(&mut batch, child_range(owner, &at, k + 1, 16))?;
                        at.push(k);
                        if i + 1 < key.len() {
                            batch.delete(table, node_key(owner, &at));
                        }
                    }
                    if child.as_hash().is_none() {
                        prune(&mut batch, node_range(owner, &at))?;
                    }
                }
            }
            batch.put(table, node_key(owner, path), rlp.clone());
        }
        self.store().write(batch, Durability::Logged)
    }

    /// The hash of the stored top node of `owner`'s storage trie (the empty root if none).
    pub fn stored_storage_root(&self, owner: &B256) -> Result<B256> {
        Ok(self.node(Some(owner), &Nibbles::new())?.map_or(EMPTY_ROOT_HASH, keccak256))
    }

    /// Rewrites the flat accounts under `prefix` from the stored subtrie there (hash `hash`):
    /// accounts the trie no longer has are deleted with their storage. Returns the accounts.
    pub fn reconcile_accounts(
        &self,
        prefix: &Nibbles,
        hash: B256,
    ) -> Result<Vec<(B256, TrieAccount)>> {
        let src = TrieNodes::account(self.store()).below(*prefix);
        let leaves = walk_leaves(&src, hash)?;
        let mut batch = WriteBatch::default();
        let mut out = Vec::with_capacity(leaves.len());
        let mut keep = HashSet::with_capacity(leaves.len());
        for (suffix, value) in leaves {
            let key = leaf_key(None, &checked_join(prefix, &suffix)?)?;
            let account = decode_account(&value)?;
            keep.insert(key);
            batch.put(Table::Accounts, key.as_slice(), value);
            out.push((key, account));
        }
        for item in scan_range(self.store(), Table::Accounts, account_range(prefix)) {
            let (k, _) = item?;
            let key = B256::try_from(k.as_ref())
                .map_err(|_| LeafDbError::BadKey { table: Table::Accounts.name(), len: k.len() })?;
            if !keep.contains(&key) {
                batch.delete(Table::Accounts, key.as_slice());
                batch.delete_range(Table::Storage, key.to_vec(), prefix_end(key.as_slice()));
                batch.delete_range(Table::StorageNodes, key.to_vec(), prefix_end(key.as_slice()));
            }
        }
        self.store().write(batch, Durability::Logged)?;
        Ok(out)
    }

    /// Rewrites the flat storage of `owner` under `prefix` from the stored subtrie there.
    /// Returns the number of slots.
    pub fn reconcile_storage(&self, owner: &B256, prefix: &Nibbles, hash: B256) -> Result<u64> {
        let src = TrieNodes::storage(self.store(), *owner).below(*prefix);
        let leaves = walk_leaves(&src, hash)?;
        let mut batch = WriteBatch::default();
        // A range delete only where the range holds a key: each one costs every later iterator
        // over the table (RocksDB fragments a memtable's range deletes anew for each), and
        // reads of leaves from the flat tables open many.
        clear_range(self.store(), &mut batch, Table::Storage, storage_range(owner, prefix))?;
        let count = leaves.len() as u64;
        for (suffix, value) in leaves {
            let slot = leaf_key(Some(owner), &checked_join(prefix, &suffix)?)?;
            let v = U256::decode(&mut value.as_slice())
                .map_err(|e| LeafDbError::corrupt("storage_nodes", "slot value", e))?;
            batch.put(Table::Storage, storage_key(owner, &slot), encode_slot_value(&v));
        }
        self.store().write(batch, Durability::Logged)?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        schema::{BlockHeader, encode_account, slot_leaf_value},
        sync_import::ChunkAccount,
    };

    #[test]
    fn chunk_import_matches_full_build_and_reconcile_prunes() {
        let db = LeafDb::in_memory();
        let mut accounts: Vec<ChunkAccount> = (0u64..200)
            .map(|i| ChunkAccount {
                hashed_address: keccak256(i.to_be_bytes()),
                account: TrieAccount { nonce: i, ..Default::default() },
                storage: Some(if i % 7 == 0 {
                    vec![(keccak256([i as u8]), U256::from(i + 1))]
                } else {
                    vec![]
                }),
            })
            .collect();
        accounts.sort_by_key(|a| a.hashed_address);
        for a in &mut accounts {
            if let Some(s) = &a.storage
                && let Some((k, v)) = s.first()
            {
                a.account.storage_root =
                    crate::trie::root_of_sorted([(Nibbles::unpack(k), slot_leaf_value(v))])
                        .unwrap();
            }
        }
        let mut skeleton = Vec::new();
        let mut children: [Option<alloy_trie::nodes::RlpNode>; 16] = Default::default();
        for n in 0u8..16 {
            let prefix = Nibbles::from_nibbles([n]);
            let part: Vec<_> = accounts
                .iter()
                .filter(|a| Nibbles::unpack(a.hashed_address).get_unchecked(0) == n)
                .cloned()
                .collect();
            let out = db.import_account_chunk(&prefix, &part).unwrap();
            if !part.is_empty() {
                children[n as usize] = Some(alloy_trie::nodes::RlpNode::word_rlp(&out.root));
            }
        }
        let mut rlp = Vec::new();
        crate::trie::node::encode_branch(&children, None, &mut rlp);
        let head = BlockHeader { state_root: keccak256(&rlp), ..Default::default() };
        skeleton.push((Nibbles::new(), rlp));
        assert_eq!(db.write_sync_skeleton(&skeleton).unwrap(), head.state_root);
        // A head whose root the trie does not have is refused, and nothing is recorded.
        let wrong = BlockHeader { state_root: keccak256(b"another root"), ..head };
        assert!(matches!(
            db.record_synced_head(wrong),
            Err(LeafDbError::SyncedRootMismatch { .. })
        ));
        assert_eq!(db.head().unwrap(), None);
        assert_eq!(db.record_synced_head(head).unwrap(), head.state_root);
        assert_eq!(db.head().unwrap(), Some(head));
        let report = db.verify().unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.accounts, 200);
        // Junk account under prefix 0: reconcile from the (correct) trie deletes it.
        let prefix = Nibbles::from_nibbles([0]);
        let good = db.node(None, &prefix).unwrap().unwrap();
        let mut junk = WriteBatch::default();
        let mut k = [0u8; 32];
        k[0] = 0x01;
        junk.put(Table::Accounts, k.to_vec(), encode_account(&TrieAccount::default()));
        db.store().write(junk, Durability::Logged).unwrap();
        assert!(!db.verify().unwrap().ok());
        db.reconcile_accounts(&prefix, keccak256(&good)).unwrap();
        assert!(db.verify().unwrap().ok());
    }
}
