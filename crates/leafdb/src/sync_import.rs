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
    kv::{Durability, KvStore, Table, WriteBatch},
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

/// Stages deletion of every flat and node entry of the account trie under `prefix`, including
/// the storage of those accounts.
fn clear_account_prefix(batch: &mut WriteBatch, prefix: &Nibbles) {
    let (lo, hi) = account_range(prefix);
    batch.delete_range(Table::Accounts, lo.clone(), hi.clone());
    batch.delete_range(Table::Storage, lo.clone(), hi.clone());
    batch.delete_range(Table::StorageNodes, lo, hi);
    let (lo, hi) = node_range(None, prefix);
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
        let (lo, hi) = storage_range(owner, prefix);
        batch.delete_range(Table::Storage, lo, hi);
        let (lo, hi) = node_range(Some(owner), prefix);
        batch.delete_range(Table::StorageNodes, lo, hi);
        let root = stage_storage(&mut batch, owner, prefix, slots)?;
        self.store().write(batch, Durability::Logged)?;
        Ok(root)
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
