//! The account trie's top levels in memory, for [`crate::LeafDb::apply_block`].
//!
//! Every block loads the account-trie paths to its changed accounts: at 1M accounts a
//! mainnet-sized block (~2,000 accounts) loads ~8,000 nodes, about half of them in the top
//! four levels, and each was a RocksDB read and a keccak. A node at level four changes in about
//! one block in thirty, so most of those are found here the next time.
//!
//! Entries are keyed by path and hold the node's hash beside its encoding: a lookup hits only
//! when that hash is the one the parent names, so the cache never needs invalidating. A node
//! written by anything else (a sync, a heal) or a block whose write failed can only leave
//! entries that no longer match, never a wrong answer.

use std::sync::Mutex;

use alloy_primitives::{B256, map::HashMap};
use alloy_trie::Nibbles;

use crate::{
    error::Result,
    kv::KvRead,
    nodes::TrieNodes,
    trie::{KnownLeaf, NodeSource, TrieCommit},
};

/// Account-trie nodes at paths of at most this many nibbles are kept: 69,905 paths at most,
/// ~37 MiB when all are full branch nodes (a state of a million accounts or more).
pub const TOP_DEPTH: usize = 4;

/// The account trie's nodes at paths of at most [`TOP_DEPTH`] nibbles, each with its hash.
#[derive(Debug, Default)]
pub(crate) struct TopNodes {
    nodes: Mutex<HashMap<Nibbles, (B256, Vec<u8>)>>,
}

impl TopNodes {
    fn get(&self, path: &Nibbles, expected: B256) -> Option<Vec<u8>> {
        let nodes = self.nodes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        nodes.get(path).filter(|(hash, _)| *hash == expected).map(|(_, rlp)| rlp.clone())
    }

    fn insert(&self, path: Nibbles, hash: B256, rlp: &[u8]) {
        let mut nodes = self.nodes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        nodes.insert(path, (hash, rlp.to_vec()));
    }

    /// Takes in a written commit of the account trie: its new top nodes (moved, not copied:
    /// the commit is done with), and its deletions.
    pub(crate) fn update(&self, commit: TrieCommit) {
        let mut nodes = self.nodes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for path in commit.deletes.iter().filter(|p| p.len() <= TOP_DEPTH) {
            nodes.remove(path);
        }
        for (path, hash, rlp) in commit.writes.into_iter().filter(|(p, _, _)| p.len() <= TOP_DEPTH)
        {
            nodes.insert(path, (hash, rlp));
        }
    }

    /// How many nodes are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nodes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}

/// The stored account trie, its top levels read through [`TopNodes`].
#[derive(Debug)]
pub(crate) struct AccountNodes<'a, R: ?Sized> {
    stored: TrieNodes<'a, R>,
    top: &'a TopNodes,
}

impl<'a, R: KvRead + ?Sized> AccountNodes<'a, R> {
    pub(crate) const fn new(kv: &'a R, top: &'a TopNodes) -> Self {
        Self { stored: TrieNodes::account(kv), top }
    }
}

impl<R: KvRead + ?Sized> NodeSource for AccountNodes<'_, R> {
    fn node(&self, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        self.stored.node(path)
    }

    fn owner(&self) -> B256 {
        self.stored.owner()
    }

    /// A node from the cache counts as stored: a leaf of the top levels (a trie of a few
    /// accounts) rebuilt from the flat table would then get a needless delete, never a stored
    /// node a missing one.
    fn load_verified_stored(
        &self,
        path: &Nibbles,
        expected: B256,
        leaf: Option<KnownLeaf<'_>>,
    ) -> Result<(Vec<u8>, bool)> {
        if path.len() > TOP_DEPTH {
            return self.stored.load_verified_stored(path, expected, leaf);
        }
        if let Some(rlp) = self.top.get(path, expected) {
            return Ok((rlp, true));
        }
        let (rlp, stored) = self.stored.load_verified_stored(path, expected, leaf)?;
        self.top.insert(*path, expected, &rlp);
        Ok((rlp, stored))
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Address, KECCAK256_EMPTY, U256, keccak256};

    use super::*;
    use crate::{
        AccountChange, AccountUpdate, BlockDiff, BlockHeader, LeafDb, LeafDbError,
        keys::node_key,
        kv::{Durability, KvStore, Table, WriteBatch},
        trie::TrieUpdate,
    };

    fn put_node<S: KvStore>(db: &LeafDb<S>, path: &Nibbles, rlp: Option<&[u8]>) {
        let mut batch = WriteBatch::default();
        match rlp {
            Some(rlp) => batch.put(Table::AccountNodes, node_key(None, path), rlp.to_vec()),
            None => batch.delete(Table::AccountNodes, node_key(None, path)),
        }
        db.store().write(batch, Durability::Logged).unwrap();
    }

    /// A top node is read from the store once and then answered from memory, but only under
    /// the hash it was read under; deeper nodes are not kept.
    #[test]
    fn a_top_node_is_kept_under_its_hash_only() {
        let db = LeafDb::in_memory();
        let top = TopNodes::default();
        let nodes = AccountNodes::new(db.store(), &top);
        let (path, rlp) = (Nibbles::from_nibbles([1, 2]), vec![0xc2, 0x80, 0x80]);
        put_node(&db, &path, Some(&rlp));
        assert_eq!(nodes.load_verified(&path, keccak256(&rlp)).unwrap(), rlp);
        assert_eq!(top.len(), 1);

        put_node(&db, &path, None);
        assert_eq!(nodes.load_verified(&path, keccak256(&rlp)).unwrap(), rlp, "from memory");
        let other = keccak256(b"another node");
        assert!(nodes.load_verified(&path, other).is_err(), "another hash is read from the store");

        let deep = Nibbles::from_nibbles([1; TOP_DEPTH + 1]);
        put_node(&db, &deep, Some(&rlp));
        assert_eq!(nodes.load_verified(&deep, keccak256(&rlp)).unwrap(), rlp);
        assert_eq!(top.len(), 1, "a deeper node is not kept");
    }

    /// Where no node is stored, a leaf the caller knows is taken in place of the flat table's,
    /// and only if it hashes to what the parent names: an account whose flat record is gone
    /// loads with its record known, and neither without it nor with another record.
    #[test]
    fn a_known_leaf_is_taken_only_if_it_hashes_right() {
        let db = LeafDb::in_memory();
        let mut diff = BlockDiff::default();
        for i in 1..=2u8 {
            let update = AccountUpdate {
                nonce: 1,
                balance: U256::from(i),
                code_hash: KECCAK256_EMPTY,
                ..Default::default()
            };
            diff.accounts.insert(Address::repeat_byte(i), AccountChange::Updated(update));
        }
        let (_, header) = db.apply_generated_block(&BlockHeader::default(), &diff).unwrap();
        let key = keccak256(Address::repeat_byte(1));
        let record = db.store().get(Table::Accounts, key.as_slice()).unwrap().unwrap();
        let mut batch = WriteBatch::default();
        batch.delete(Table::Accounts, key.as_slice());
        db.store().write(batch, Durability::Logged).unwrap();

        let path = Nibbles::unpack(key);
        let touch = |value: Option<&[u8]>| {
            let top = TopNodes::default();
            let nodes = AccountNodes::new(db.store(), &top);
            TrieUpdate::new(&nodes, header.state_root).touch(&path, value)
        };
        touch(Some(&record)).unwrap();
        let mut other = record;
        let last = other.len() - 1;
        other[last] ^= 1;
        for (value, why) in [(None, "no record"), (Some(&other[..]), "another record")] {
            let err = touch(value).unwrap_err();
            assert!(matches!(err, LeafDbError::MissingNode { .. }), "{why}: {err}");
        }
    }
}
