//! Writing what a state sync downloads: a chunk's leaves with the subtrie they determine, healed
//! trie nodes (with the stale nodes below them pruned), flat tables re-derived from a healed
//! subtrie, and the final skeleton with the head.
//!
//! Every write replaces what was stored under its prefix, so importing the same chunk twice (a
//! retry, a restart) gives the same tables. A stored node always has its complete subtree:
//! chunk subtries are written whole, healed nodes only once their children are stored (the
//! caller commits bottom-up), skeleton nodes last.

use alloy_primitives::{B256, U256, keccak256};
use alloy_rlp::Decodable;
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};

use crate::{
    db::LeafDb,
    error::{LeafDbError, Result},
    kv::{Durability, KvRead, KvStore, Table, WriteBatch, prefix_end},
    schema::{
        BlockHeader, decode_account, encode_account, encode_slot_value, meta, path_key,
        slot_leaf_value, storage_key, storage_node_key,
    },
    trie::{DecodedNode, NodeSource, StackBuilder, nibbles_hex, walk_leaves},
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

/// Packs nibbles into bytes, the last byte's low nibble zero for odd lengths.
pub fn pack_nibbles(n: &Nibbles) -> Vec<u8> {
    let mut out = vec![0u8; n.len().div_ceil(2)];
    for i in 0..n.len() {
        let v = n.get_unchecked(i);
        out[i / 2] |= if i.is_multiple_of(2) { v << 4 } else { v };
    }
    out
}

/// The key range `[lo, hi)` of the keys `base ‖ k` where the packed key `k` starts with the
/// nibble `prefix` (flat accounts and storage, whose keys are packed hashes).
pub fn packed_range(base: &[u8], prefix: &Nibbles) -> (Vec<u8>, Vec<u8>) {
    let packed = pack_nibbles(prefix);
    let mut lo = base.to_vec();
    lo.extend_from_slice(&packed);
    let mut inc = packed;
    let mut i = prefix.len();
    let mut carry = true;
    while carry && i > 0 {
        i -= 1;
        let byte = &mut inc[i / 2];
        let v = if i.is_multiple_of(2) { *byte >> 4 } else { *byte & 0x0f };
        let (next, c) = if v == 0x0f { (0, true) } else { (v + 1, false) };
        *byte =
            if i.is_multiple_of(2) { (*byte & 0x0f) | (next << 4) } else { (*byte & 0xf0) | next };
        carry = c;
    }
    let hi = if carry {
        if base.is_empty() { vec![0xff; 65] } else { prefix_end(base) }
    } else {
        let mut hi = base.to_vec();
        hi.extend_from_slice(&inc);
        hi
    };
    (lo, hi)
}

/// The key range of node paths (one byte per nibble) at or below `base ‖ prefix`.
pub fn path_range(base: &[u8], prefix: &Nibbles) -> (Vec<u8>, Vec<u8>) {
    let mut lo = base.to_vec();
    lo.extend(prefix.to_vec());
    let hi = match lo.last().copied() {
        Some(last) if !prefix.is_empty() => {
            let mut hi = lo.clone();
            if let Some(l) = hi.last_mut() {
                *l = last.saturating_add(1);
            }
            hi
        }
        _ if base.is_empty() => vec![0xff; 65],
        _ => prefix_end(base),
    };
    (lo, hi)
}

/// The node table and key base of a trie.
fn node_table(owner: Option<&B256>) -> (Table, Vec<u8>) {
    match owner {
        None => (Table::AccountNodes, Vec::new()),
        Some(o) => (Table::StorageNodes, o.to_vec()),
    }
}

/// The node key of `path` in a trie.
fn node_key(owner: Option<&B256>, path: &Nibbles) -> Vec<u8> {
    match owner {
        None => path_key(path),
        Some(o) => storage_node_key(o, path),
    }
}

/// Reads the subtrie stored at `base` as if it were a whole trie (node encodings are relative to
/// their own path, so a subtrie is position-independent).
struct Below<'a, R: ?Sized> {
    kv: &'a R,
    owner: Option<B256>,
    base: Nibbles,
}

impl<R: KvRead + ?Sized> NodeSource for Below<'_, R> {
    fn node(&self, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        let (table, _) = node_table(self.owner.as_ref());
        self.kv.get(
            table,
            &node_key(self.owner.as_ref(), &crate::trie::checked_join(&self.base, path)?),
        )
    }
    fn owner(&self) -> B256 {
        self.owner.unwrap_or_default()
    }
}

/// Builds the subtrie of `leaves` (full keys under `prefix`, sorted) and stages its nodes.
fn stage_subtrie(
    batch: &mut WriteBatch,
    owner: Option<&B256>,
    prefix: &Nibbles,
    leaves: impl Iterator<Item = (Nibbles, Vec<u8>)>,
) -> Result<B256> {
    let (table, _) = node_table(owner);
    let mut builder = StackBuilder::new(|rel: &Nibbles, rlp: &[u8]| {
        if rel.is_empty() && rlp.len() < HASH_LEN && !prefix.is_empty() {
            return Ok(());
        }
        batch.put(table, node_key(owner, &prefix.join(rel)), rlp.to_vec());
        Ok(())
    });
    for (key, value) in leaves {
        if key.len() < prefix.len() || key.slice(..prefix.len()) != *prefix {
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

/// Stages deletion of every flat and node entry of the account trie under `prefix`, including
/// the storage of those accounts.
fn clear_account_prefix(batch: &mut WriteBatch, prefix: &Nibbles) {
    let (lo, hi) = packed_range(&[], prefix);
    batch.delete_range(Table::Accounts, lo.clone(), hi.clone());
    batch.delete_range(Table::Storage, lo.clone(), hi.clone());
    batch.delete_range(Table::StorageNodes, lo, hi);
    let (lo, hi) = path_range(&[], prefix);
    batch.delete_range(Table::AccountNodes, lo, hi);
}

impl<S: KvStore> LeafDb<S> {
    /// Replaces everything under the account prefix `prefix` with `accounts` (sorted, all under
    /// `prefix`): flat accounts, inline storage with its tries, and the account subtrie, in one
    /// atomic write. Returns the subtrie's hash and the computed storage roots.
    pub fn import_account_chunk(
        &self,
        prefix: &Nibbles,
        accounts: &[ChunkAccount],
    ) -> Result<AccountChunkOutcome> {
        let mut batch = WriteBatch::default();
        clear_account_prefix(&mut batch, prefix);
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
        self.store().write(batch, Durability::Logged)?;
        Ok(AccountChunkOutcome { root, storage_roots })
    }

    /// Replaces the storage of `owner` under `prefix` with `slots` (sorted, under `prefix`) and
    /// its subtrie; returns the subtrie's hash.
    pub fn import_storage_chunk(
        &self,
        owner: &B256,
        prefix: &Nibbles,
        slots: &[(B256, U256)],
    ) -> Result<B256> {
        let mut batch = WriteBatch::default();
        let (lo, hi) = packed_range(owner.as_slice(), prefix);
        batch.delete_range(Table::Storage, lo, hi);
        let (lo, hi) = path_range(owner.as_slice(), prefix);
        batch.delete_range(Table::StorageNodes, lo, hi);
        let root = stage_storage(&mut batch, owner, prefix, slots)?;
        self.store().write(batch, Durability::Logged)?;
        Ok(root)
    }

    /// Deletes the stored node at `path` and at every path above it in the trie of `owner`, in
    /// one write. A heal calls it when it starts at `path`: the nodes there and above are stale,
    /// and the heal will replace nodes below them one by one, so a stale ancestor left in place
    /// would claim a subtree it no longer has (were its hash ever wanted again, as after a
    /// pivot move, it would be taken as complete).
    /// Only stored nodes get a delete: a tombstone for a key that is not there would cost every
    /// later iterator passing it (a heal-only sync forgets the absent root of every storage trie).
    pub fn forget_path(&self, owner: Option<&B256>, path: &Nibbles) -> Result<()> {
        let mut batch = WriteBatch::default();
        let table = node_table(owner).0;
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
        let (table, base) = node_table(owner);
        // A range tombstone costs every later read of the memtable (RocksDB re-fragments all of
        // them after each write that adds one, which made heal quadratic), so only a range that
        // holds a key gets one. Deleting an empty range does nothing, and no node of the batch
        // lies in another's ranges (they are the unreachable parts of one verified trie), so
        // checking the stored state is exact.
        let store = self.store();
        let del = |batch: &mut WriteBatch, lo: Vec<u8>, hi: Vec<u8>| -> Result<()> {
            if let Some(item) = store.iter_from(table, &lo).next() {
                let (key, _) = item?;
                if key.as_ref() < hi.as_slice() {
                    batch.delete_range(table, lo, hi);
                }
            }
            Ok(())
        };
        for (path, rlp) in nodes {
            let full = path_key(path);
            let child_range = |from: u8, to: u8| {
                let mut lo = base.clone();
                lo.extend_from_slice(&full);
                let mut hi = lo.clone();
                lo.push(from);
                hi.push(to);
                (lo, hi)
            };
            match DecodedNode::decode(rlp)? {
                DecodedNode::Leaf { .. } => {
                    let (lo, hi) = child_range(0, 16);
                    del(&mut batch, lo, hi)?;
                }
                DecodedNode::Branch { children, .. } => {
                    for (i, c) in children.iter().enumerate() {
                        if c.as_ref().is_none_or(|r| r.as_hash().is_none()) {
                            let (lo, hi) = child_range(i as u8, i as u8 + 1);
                            del(&mut batch, lo, hi)?;
                        }
                    }
                }
                DecodedNode::Extension { key, child } => {
                    crate::trie::checked_join(path, &key)?;
                    // Below each level of the extension only the nibble it continues with.
                    let mut at = *path;
                    for i in 0..key.len() {
                        let k = key.get_unchecked(i);
                        let mut lo = base.clone();
                        lo.extend(at.to_vec());
                        let mut hi = lo.clone();
                        lo.push(0);
                        hi.push(k);
                        del(&mut batch, lo.clone(), hi.clone())?;
                        lo.pop();
                        hi.pop();
                        lo.push(k + 1);
                        hi.push(16);
                        del(&mut batch, lo, hi)?;
                        at.push(k);
                        if i + 1 < key.len() {
                            batch.delete(table, node_key(owner, &at));
                        }
                    }
                    if child.as_hash().is_none() {
                        let (lo, hi) = path_range(&base, &at);
                        del(&mut batch, lo, hi)?;
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
        let src = Below { kv: self.store(), owner: None, base: *prefix };
        let leaves = walk_leaves(&src, hash)?;
        let mut batch = WriteBatch::default();
        let mut out = Vec::with_capacity(leaves.len());
        let (lo, hi) = packed_range(&[], prefix);
        let mut keep = std::collections::HashSet::with_capacity(leaves.len());
        for (suffix, value) in leaves {
            let key = B256::try_from(
                pack_nibbles(&crate::trie::checked_join(prefix, &suffix)?).as_slice(),
            )
            .map_err(|_| LeafDbError::BadNode("account key is not 32 bytes"))?;
            let account = decode_account(&value)?;
            keep.insert(key);
            batch.put(Table::Accounts, key.as_slice(), value);
            out.push((key, account));
        }
        for item in self.store().iter_from(Table::Accounts, &lo) {
            let (k, _) = item?;
            if k.as_ref() >= hi.as_slice() {
                break;
            }
            let key = B256::try_from(k.as_ref())
                .map_err(|_| LeafDbError::corrupt("accounts", "key", "not 32 bytes"))?;
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
        let src = Below { kv: self.store(), owner: Some(*owner), base: *prefix };
        let leaves = walk_leaves(&src, hash)?;
        let mut batch = WriteBatch::default();
        let (lo, hi) = packed_range(owner.as_slice(), prefix);
        batch.delete_range(Table::Storage, lo, hi);
        let count = leaves.len() as u64;
        for (suffix, value) in leaves {
            let slot = B256::try_from(
                pack_nibbles(&crate::trie::checked_join(prefix, &suffix)?).as_slice(),
            )
            .map_err(|_| LeafDbError::BadNode("slot key is not 32 bytes"))?;
            let v = U256::decode(&mut value.as_slice())
                .map_err(|e| LeafDbError::corrupt("storage_nodes", "slot value", e))?;
            batch.put(Table::Storage, storage_key(owner, &slot), encode_slot_value(&v));
        }
        self.store().write(batch, Durability::Logged)?;
        Ok(count)
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
        crate::schema::stage_head(&mut batch, &head);
        self.store().write(batch, Durability::Synced)?;
        self.publish_head(head);
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = Nibbles::from_nibbles([0x3, 0xf]);
        assert_eq!(packed_range(&[], &p), (vec![0x3f], vec![0x40]));
        let p = Nibbles::from_nibbles([0x3]);
        assert_eq!(packed_range(&[], &p), (vec![0x30], vec![0x40]));
        let p = Nibbles::from_nibbles([0xf, 0xf]);
        assert_eq!(packed_range(&[], &p).1, vec![0xff; 65]);
        assert_eq!(packed_range(&[1], &p).1, prefix_end(&[1]));
        let p = Nibbles::from_nibbles([0x1, 0x2]);
        assert_eq!(path_range(&[], &p), (vec![1, 2], vec![1, 3]));
        assert_eq!(path_range(&[], &Nibbles::new()).1, vec![0xff; 65]);
    }

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
