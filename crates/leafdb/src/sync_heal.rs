//! Healing writes of a state sync: forgetting stale nodes above a heal, writing verified nodes
//! with the stale nodes below them pruned, and re-deriving the flat tables from a healed subtrie
//! (flat reconciliation). Bulk chunk import is in [`crate::sync_import`].

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
    kv::{Durability, KvStore, Table, WriteBatch},
    schema::{decode_account, encode_slot_value},
    trie::{DecodedNode, checked_join, walk_leaves_except},
};

/// Keys deleted one by one at most where a range of them goes (flat slots a storage's
/// reconciliation finds stale, stored nodes a heal's nodes no longer reach); more are cleared
/// as a range, whose tombstone costs every later read of the memtable.
const MAX_POINT_DELETES: usize = 256;

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
        // The key ranges below the nodes that their encodings no longer reach.
        let mut unreachable = Vec::new();
        for (path, rlp) in nodes {
            match DecodedNode::decode(rlp)? {
                DecodedNode::Leaf { .. } => unreachable.push(child_range(owner, path, 0, 16)),
                DecodedNode::Branch { children, .. } => {
                    for (i, c) in (0u8..).zip(children.iter()) {
                        if c.as_ref().is_none_or(|r| r.as_hash().is_none()) {
                            unreachable.push(child_range(owner, path, i, i + 1));
                        }
                    }
                }
                DecodedNode::Extension { key, child } => {
                    checked_join(path, &key)?;
                    // Below each level of the extension only the nibble it continues with.
                    let mut at = *path;
                    for i in 0..key.len() {
                        let k = key.get_unchecked(i);
                        unreachable.push(child_range(owner, &at, 0, k));
                        unreachable.push(child_range(owner, &at, k + 1, 16));
                        at.push(k);
                        if i + 1 < key.len() {
                            batch.delete(table, node_key(owner, &at));
                        }
                    }
                    if child.as_hash().is_none() {
                        unreachable.push(node_range(owner, &at));
                    }
                }
            }
            batch.put(table, node_key(owner, path), rlp.clone());
        }
        // A range tombstone costs every later read of the memtable (RocksDB re-fragments all of
        // them after each write that adds one, which made heal quadratic), so a range that
        // holds no key gets none, and one that holds a few (a removed leaf's parent, a small
        // subtrie) gets point deletes. No node of the batch lies in another's ranges (they are
        // the unreachable parts of one verified trie), so reading the stored state is exact.
        // The ranges are disjoint: in key order one cursor reads them all (a cursor each cost
        // most of a heal's writes).
        unreachable.sort_unstable();
        if let Some((first, _)) = unreachable.first() {
            let mut cursor = self.store().cursor(table, first)?;
            for (lo, hi) in unreachable {
                cursor.skip_to(&lo)?;
                let mut keys = Vec::new();
                while let Some((key, _)) = cursor.current().filter(|(k, _)| *k < hi.as_slice()) {
                    if keys.len() == MAX_POINT_DELETES {
                        break;
                    }
                    keys.push(key.to_vec());
                    cursor.next()?;
                }
                if keys.len() == MAX_POINT_DELETES {
                    batch.delete_range(table, lo, hi);
                } else {
                    for key in keys {
                        batch.delete(table, key);
                    }
                }
            }
        }
        self.store().write(batch, Durability::Logged)
    }

    /// The hash of the stored top node of `owner`'s storage trie (the empty root if none).
    pub fn stored_storage_root(&self, owner: &B256) -> Result<B256> {
        Ok(self.node(Some(owner), &Nibbles::new())?.map_or(EMPTY_ROOT_HASH, keccak256))
    }

    /// Rewrites the flat accounts under `prefix` from the stored subtrie there (hash `hash`):
    /// accounts the trie no longer has are deleted with their storage, and only entries that
    /// differ are written (a heal of a state that was mostly right, as a repair's, changes few).
    /// Returns every account of the subtrie, each with whether its flat entry was written (it
    /// was missing or differed).
    ///
    /// `kept`: full paths of subtries below `prefix` whose flat entries are known to agree with
    /// their stored nodes (a heal over a complete state found them unchanged): they are neither
    /// walked nor scanned, and their accounts are not returned.
    pub fn reconcile_accounts(
        &self,
        prefix: &Nibbles,
        hash: B256,
        kept: &[Nibbles],
    ) -> Result<Vec<(B256, TrieAccount, bool)>> {
        let src = TrieNodes::account(self.store()).below(*prefix);
        let (skip, holes) = kept_below(prefix, kept, account_range)?;
        let leaves = walk_leaves_except(&src, hash, &skip)?;
        let mut batch = WriteBatch::default();
        let mut out = Vec::with_capacity(leaves.len());
        let mut derived = Vec::with_capacity(leaves.len());
        for (i, (suffix, value)) in leaves.into_iter().enumerate() {
            // The walk goes in path order: keys ascend.
            let key = leaf_key(None, &checked_join(prefix, &suffix)?)?;
            out.push((key, decode_account(&value)?, true));
            derived.push((i, key, value));
        }
        let mut derived = derived.into_iter().peekable();
        let range = account_range(prefix);
        // A deleted account's storage gets a range delete only where it has any: each range
        // tombstone costs every later read of the memtable (an account is deleted in a sync
        // over a state off the chain, for each one the chain never had). Accounts ascend, so
        // one cursor a table finds them.
        let mut storage = self.store().cursor(Table::Storage, &range.0)?;
        let mut storage_nodes = self.store().cursor(Table::StorageNodes, &range.0)?;
        scan_outside(self.store(), Table::Accounts, range, &holes, |k, v| {
            let key = B256::try_from(k)
                .map_err(|_| LeafDbError::BadKey { table: Table::Accounts.name(), len: k.len() })?;
            while let Some((_, new, value)) = derived.next_if(|(_, d, _)| *d < key) {
                batch.put(Table::Accounts, new.as_slice(), value);
            }
            match derived.next_if(|(_, d, _)| *d == key) {
                Some((i, _, value)) if value.as_slice() == v => out[i].2 = false,
                Some((_, _, value)) => batch.put(Table::Accounts, key.as_slice(), value),
                None => {
                    batch.delete(Table::Accounts, key.as_slice());
                    for (table, cursor) in
                        [(Table::Storage, &mut storage), (Table::StorageNodes, &mut storage_nodes)]
                    {
                        cursor.skip_to(key.as_slice())?;
                        if cursor.current().is_some_and(|(k, _)| k.starts_with(key.as_slice())) {
                            batch.delete_range(table, key.to_vec(), prefix_end(key.as_slice()));
                        }
                    }
                }
            }
            Ok(())
        })?;
        for (_, new, value) in derived {
            batch.put(Table::Accounts, new.as_slice(), value);
        }
        self.store().write(batch, Durability::Logged)?;
        Ok(out)
    }

    /// Rewrites the flat storage of `owner` under `prefix` from the stored subtrie there.
    /// Returns the number of slots walked in the trie (all of them outside `kept`).
    /// Only slots that differ are written, and slots the trie no longer has deleted one by one
    /// (with more than `MAX_POINT_DELETES`, 256, of them and nothing `kept`, the range is
    /// cleared and every slot written). `kept` as in [`Self::reconcile_accounts`].
    pub fn reconcile_storage(
        &self,
        owner: &B256,
        prefix: &Nibbles,
        hash: B256,
        kept: &[Nibbles],
    ) -> Result<u64> {
        let src = TrieNodes::storage(self.store(), *owner).below(*prefix);
        let (skip, holes) = kept_below(prefix, kept, |p| storage_range(owner, p))?;
        let mut derived = Vec::new();
        for (suffix, value) in walk_leaves_except(&src, hash, &skip)? {
            // The walk goes in path order: keys ascend.
            let slot = leaf_key(Some(owner), &checked_join(prefix, &suffix)?)?;
            let v = U256::decode(&mut value.as_slice())
                .map_err(|e| LeafDbError::corrupt("storage_nodes", "slot value", e))?;
            derived.push((storage_key(owner, &slot), encode_slot_value(&v)));
        }
        let range = storage_range(owner, prefix);
        let (mut writes, mut stale) = (Vec::new(), Vec::new());
        let mut next = 0;
        scan_outside(self.store(), Table::Storage, range.clone(), &holes, |k, v| {
            while derived.get(next).is_some_and(|(d, _)| d.as_slice() < k) {
                writes.push(next);
                next += 1;
            }
            match derived.get(next) {
                Some((d, value)) if d.as_slice() == k => {
                    if value.as_slice() != v {
                        writes.push(next);
                    }
                    next += 1;
                }
                _ => stale.push(k.to_vec()),
            }
            Ok(())
        })?;
        writes.extend(next..derived.len());
        let mut batch = WriteBatch::default();
        if stale.len() > MAX_POINT_DELETES && holes.is_empty() {
            // The scan found keys in the range, so its one range delete is not wasted (each
            // costs every later iterator over the table: RocksDB fragments a memtable's range
            // deletes anew for each, and reads of leaves from the flat tables open many).
            batch.delete_range(Table::Storage, range.0, range.1);
            writes = (0..derived.len()).collect();
        } else {
            for key in stale {
                batch.delete(Table::Storage, key);
            }
        }
        for i in writes {
            let (key, value) = &derived[i];
            batch.put(Table::Storage, key.to_vec(), value.clone());
        }
        if !batch.is_empty() {
            self.store().write(batch, Durability::Logged)?;
        }
        Ok(derived.len() as u64)
    }
}

/// A key range `[lo, hi)` of a table.
type KeyRange = (Vec<u8>, Vec<u8>);

/// The `kept` paths below `prefix` as a walk from `prefix` skips them (relative, sorted), and
/// as the flat key ranges a scan passes over (`range` of each full path, ascending).
fn kept_below(
    prefix: &Nibbles,
    kept: &[Nibbles],
    range: impl Fn(&Nibbles) -> KeyRange,
) -> Result<(Vec<Nibbles>, Vec<KeyRange>)> {
    let mut skip = Vec::with_capacity(kept.len());
    for path in kept {
        if path.len() <= prefix.len() || !path.starts_with(prefix) {
            return Err(LeafDbError::Invariant("a kept subtrie not below the reconciled one"));
        }
        skip.push(path.slice(prefix.len()..));
    }
    skip.sort_unstable();
    let mut holes: Vec<_> = kept.iter().map(range).collect();
    holes.sort_unstable();
    Ok((skip, holes))
}

/// Calls `f` with each pair of `table` in `[lo, hi)` outside the `holes` (ascending, disjoint
/// key ranges), in key order: one cursor, one seek past each hole.
fn scan_outside<S: KvStore>(
    store: &S,
    table: Table,
    (lo, hi): KeyRange,
    holes: &[KeyRange],
    mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    let mut cursor = store.cursor(table, &lo)?;
    let mut holes = holes.iter().peekable();
    loop {
        let past_hole = match cursor.current() {
            Some((k, v)) if k < hi.as_slice() => {
                while holes.next_if(|(_, end)| end.as_slice() <= k).is_some() {}
                match holes.peek() {
                    Some((start, end)) if start.as_slice() <= k => Some(end),
                    _ => {
                        f(k, v)?;
                        None
                    }
                }
            }
            _ => break,
        };
        match past_hole {
            Some(end) => cursor.skip_to(end)?,
            None => cursor.next()?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        kv::{KvRead, scan_range},
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
        // Junk accounts under prefix 0, one with storage (a slot and a node): reconcile from the
        // (correct) trie deletes them with that storage, and says that no account's flat entry
        // had to be written.
        let prefix = Nibbles::from_nibbles([0]);
        let good = db.node(None, &prefix).unwrap().unwrap();
        let mut junk = WriteBatch::default();
        let (mut k, mut with_storage) = ([0u8; 32], [0u8; 32]);
        (k[0], with_storage[0]) = (0x01, 0x02);
        for key in [k, with_storage] {
            junk.put(Table::Accounts, key.to_vec(), encode_account(&TrieAccount::default()));
        }
        let owner = B256::from(with_storage);
        junk.put(Table::Storage, storage_key(&owner, &B256::repeat_byte(9)).to_vec(), vec![1]);
        let node = crate::keys::storage_node_key(&owner, &Nibbles::from_nibbles([3]));
        junk.put(Table::StorageNodes, node, vec![0xc0]);
        db.store().write(junk, Durability::Logged).unwrap();
        assert!(!db.verify().unwrap().ok());
        let accounts = db.reconcile_accounts(&prefix, keccak256(&good), &[]).unwrap();
        assert!(db.verify().unwrap().ok());
        assert!(!accounts.is_empty() && accounts.iter().all(|a| !a.2 && a.0 != B256::from(k)));
        for table in [Table::Storage, Table::StorageNodes] {
            let left = db.store().iter_from(table, owner.as_slice()).next().transpose().unwrap();
            assert!(left.is_none_or(|(key, _)| !key.starts_with(owner.as_slice())), "{table:?}");
        }
    }

    /// Slots under a storage that its trie does not have are deleted, a few one by one and many
    /// as a range, and the storage's own slots stay as they were.
    #[test]
    fn reconcile_storage_deletes_stray_slots_a_few_or_many() {
        use crate::GenParams;
        let db = LeafDb::in_memory();
        db.generate(GenParams { accounts: 300, seed: 3 }).unwrap();
        let (first, _) = db.store().iter_from(Table::Storage, &[]).next().unwrap().unwrap();
        let owner = B256::from_slice(&first[..32]);
        let root = db.stored_storage_root(&owner).unwrap();
        let slots = |db: &LeafDb<_>| -> Vec<_> {
            let (lo, hi) = storage_range(&owner, &Nibbles::new());
            scan_range(db.store(), Table::Storage, (lo, hi)).map(Result::unwrap).collect()
        };
        let own = slots(&db);
        for stray in [3u64, 300] {
            let mut batch = WriteBatch::default();
            for i in 0..stray {
                let slot = keccak256(format!("stray {i}"));
                batch.put(Table::Storage, storage_key(&owner, &slot).to_vec(), vec![1]);
            }
            db.store().write(batch, Durability::Logged).unwrap();
            assert_eq!(slots(&db).len(), own.len() + stray as usize);
            let count = db.reconcile_storage(&owner, &Nibbles::new(), root, &[]).unwrap();
            assert_eq!(count, own.len() as u64);
            assert_eq!(slots(&db), own, "{stray} stray slots");
        }
        assert!(db.verify().unwrap().ok());
    }

    /// With `kept` subtries, a reconciliation walks and scans only the rest: a stray account in
    /// the rest is deleted, one inside a kept subtrie is left (kept means trusted, not looked
    /// at), and only the rest's accounts are returned.
    #[test]
    fn reconcile_passes_over_kept_subtries() {
        use crate::GenParams;
        let db = LeafDb::in_memory();
        db.generate(GenParams { accounts: 3000, seed: 5 }).unwrap();
        let prefix = Nibbles::from_nibbles([7]);
        let rlp = db.node(None, &prefix).unwrap().unwrap();
        let DecodedNode::Branch { children, .. } = DecodedNode::decode(&rlp).unwrap() else {
            panic!("no branch at [7]")
        };
        let by_hash: Vec<u8> = (0..16u8)
            .filter(|i| children[*i as usize].as_ref().is_some_and(|c| c.is_hash()))
            .collect();
        assert!(by_hash.len() > 4, "{by_hash:?}");
        let rest = by_hash[3];
        let kept: Vec<Nibbles> = by_hash
            .iter()
            .filter(|i| **i != rest)
            .map(|i| Nibbles::from_nibbles([7, *i]))
            .collect();
        let key_in = |nibble: u8| {
            let mut k = [0xee; 32];
            k[0] = 0x70 | nibble;
            B256::from(k)
        };
        let (stray_rest, stray_kept) = (key_in(rest), key_in(by_hash[0]));
        let mut batch = WriteBatch::default();
        for key in [stray_rest, stray_kept] {
            let junk = TrieAccount { nonce: 99, ..Default::default() };
            batch.put(Table::Accounts, key.to_vec(), encode_account(&junk));
        }
        db.store().write(batch, Durability::Logged).unwrap();
        let accounts = db.reconcile_accounts(&prefix, keccak256(&rlp), &kept).unwrap();
        let (lo, hi) = account_range(&Nibbles::from_nibbles([7, rest]));
        let under_rest = scan_range(db.store(), Table::Accounts, (lo, hi)).count();
        assert_eq!(accounts.len(), under_rest, "the rest's accounts returned");
        assert!(accounts.iter().all(|(k, _, changed)| k[0] == 0x70 | rest && !changed));
        let flat = |key: B256| db.store().get(Table::Accounts, key.as_slice()).unwrap();
        assert!(flat(stray_rest).is_none(), "the stray account in the rest is deleted");
        assert!(flat(stray_kept).is_some(), "a kept subtrie is not scanned");
        let mut batch = WriteBatch::default();
        batch.delete(Table::Accounts, stray_kept.as_slice());
        db.store().write(batch, Durability::Logged).unwrap();
        assert!(db.verify().unwrap().ok());
        let outside = Nibbles::from_nibbles([8, 1]);
        assert!(db.reconcile_accounts(&prefix, keccak256(&rlp), &[outside]).is_err());
    }
}
