//! [`MemNodes`]: a trie's nodes by path in memory, the in-memory [`NodeSource`] for tests and
//! tools (the database's are in `db.rs`).

use std::{
    collections::BTreeMap,
    sync::{PoisonError, RwLock},
};

use alloy_primitives::B256;
use alloy_trie::Nibbles;

use super::{NodeSource, TrieCommit};
use crate::error::Result;

/// Nodes of one trie by path, applying commits like the database does.
#[derive(Debug, Default)]
pub struct MemNodes {
    owner: B256,
    nodes: RwLock<BTreeMap<Nibbles, Vec<u8>>>,
}

impl MemNodes {
    /// An empty store of the trie of `owner` (zero for the account trie).
    pub fn new(owner: B256) -> Self {
        Self { owner, nodes: RwLock::default() }
    }

    /// Applies a commit: its deletions, then its writes.
    pub fn apply(&self, commit: &TrieCommit) {
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        for path in &commit.deletes {
            nodes.remove(path);
        }
        for (path, _, rlp) in &commit.writes {
            nodes.insert(*path, rlp.clone());
        }
    }

    /// Stores `rlp` at `path` (replacing what was there).
    pub fn insert(&self, path: Nibbles, rlp: Vec<u8>) {
        self.nodes.write().unwrap_or_else(PoisonError::into_inner).insert(path, rlp);
    }

    /// A copy of every stored node, by path.
    pub fn nodes(&self) -> BTreeMap<Nibbles, Vec<u8>> {
        self.nodes.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Number of stored nodes.
    pub fn len(&self) -> usize {
        self.nodes.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no node is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FromIterator<(Nibbles, Vec<u8>)> for MemNodes {
    fn from_iter<I: IntoIterator<Item = (Nibbles, Vec<u8>)>>(iter: I) -> Self {
        Self { owner: B256::ZERO, nodes: RwLock::new(iter.into_iter().collect()) }
    }
}

impl NodeSource for MemNodes {
    fn node(&self, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        Ok(self.nodes.read().unwrap_or_else(PoisonError::into_inner).get(path).cloned())
    }

    fn owner(&self) -> B256 {
        self.owner
    }
}
