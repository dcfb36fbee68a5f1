//! The Merkle-Patricia trie engine: node codec, streaming builder, incremental updates, proofs.
//!
//! Every engine reads stored nodes through a [`NodeSource`] (RocksDB or memory: [`MemNodes`]),
//! and [`NodeSource::load_verified`] is the one place a loaded node is checked against the hash
//! its parent holds.

pub mod builder;
mod closed;
mod keccak;
pub mod mem;
pub mod node;
pub mod proof;
pub mod update;
pub mod walk;

pub use builder::{
    BuildOutcome, NoLeaves, NodeSink, StackBuilder, VecSink, nibbles_hex, root_of_sorted,
};
pub use keccak::{keccak_lanes, keccak256_batch};
pub use mem::MemNodes;
pub use node::DecodedNode;
pub use proof::prove;
pub use update::{RootBranch, TrieCommit, TrieUpdate};
pub use walk::{LeafWalk, walk_leaves, walk_leaves_except};

use alloy_primitives::{B256, keccak256};
use alloy_trie::Nibbles;

use crate::error::{LeafDbError, Result};

/// Where a trie's nodes are read from, by path.
pub trait NodeSource {
    /// The stored node at `path`, if any.
    fn node(&self, path: &Nibbles) -> Result<Option<Vec<u8>>>;
    /// The trie's owner (zero for the account trie), for error messages.
    fn owner(&self) -> B256;

    /// [`Self::load_verified`], also telling whether the node is stored at `path` (`false`: it
    /// was rebuilt, as a leaf from a leafdb's flat tables, and no stored node is there to
    /// delete or overwrite). Sources that cannot tell say `true`. Sources that rebuild nodes
    /// override this one; [`Self::load_verified`] follows. Such sources take `leaf`, when the
    /// caller knows the leaf that may lie at `path`, in place of a rebuild (see [`KnownLeaf`]);
    /// others ignore it.
    fn load_verified_stored(
        &self,
        path: &Nibbles,
        expected: B256,
        leaf: Option<KnownLeaf<'_>>,
    ) -> Result<(Vec<u8>, bool)> {
        let _ = leaf;
        Ok((verified(self.owner(), path, expected, self.node(path)?)?, true))
    }

    /// The node at `path`, which its parent refers to by `expected`: missing or hashing to
    /// anything else is an error naming the trie and the path.
    fn load_verified(&self, path: &Nibbles, expected: B256) -> Result<Vec<u8>> {
        Ok(self.load_verified_stored(path, expected, None)?.0)
    }
}

/// A leaf the caller already knows, by its whole key (from the trie's root) and its value: an
/// account whose record `apply_block` has just read. A source that keeps no leaves and finds no
/// node stored at a path on that key takes the leaf if it hashes to what the parent names,
/// instead of looking for it in its flat table; any other node there cannot hash the same.
#[derive(Debug, Clone, Copy)]
pub struct KnownLeaf<'a> {
    /// The leaf's whole key.
    pub key: &'a Nibbles,
    /// Its value.
    pub value: &'a [u8],
}

impl KnownLeaf<'_> {
    /// The leaf's encoding as the node at `path`, if `path` lies on its key and the encoding
    /// hashes to `expected`.
    pub(crate) fn at(&self, path: &Nibbles, expected: &B256) -> Option<Vec<u8>> {
        if !self.key.starts_with(path) {
            return None;
        }
        let mut rlp = Vec::with_capacity(self.value.len() + 40);
        node::encode_leaf(&self.key.slice(path.len()..), self.value, &mut rlp);
        (keccak256(&rlp) == *expected).then_some(rlp)
    }
}

/// `rlp`, the node found at `path` of the trie of `owner` (`None`: nothing found), if it hashes
/// to `expected`, the hash its parent holds; else the error naming the trie and the path.
pub(crate) fn verified(
    owner: B256,
    path: &Nibbles,
    expected: B256,
    rlp: Option<Vec<u8>>,
) -> Result<Vec<u8>> {
    let rlp =
        rlp.ok_or_else(|| LeafDbError::MissingNode { owner, path: nibbles_hex(path), expected })?;
    let got = keccak256(&rlp);
    if got != expected {
        return Err(LeafDbError::NodeHashMismatch {
            owner,
            path: nibbles_hex(path),
            got,
            expected,
        });
    }
    Ok(rlp)
}

/// `path` followed by `suffix`, refused past 64 nibbles (a key is 32 bytes). Paths built from
/// nodes a peer sent can be longer when the trie is malformed; `Nibbles` must never be asked to
/// hold them.
pub fn checked_join(path: &Nibbles, suffix: &Nibbles) -> Result<Nibbles> {
    if path.len() + suffix.len() > 64 {
        return Err(LeafDbError::PathTooLong);
    }
    Ok(path.join(suffix))
}

/// `path` followed by one nibble, refused past 64 nibbles (see [`checked_join`]).
pub fn checked_push(path: &Nibbles, nibble: u8) -> Result<Nibbles> {
    if path.len() >= 64 {
        return Err(LeafDbError::PathTooLong);
    }
    let mut out = *path;
    out.push(nibble);
    Ok(out)
}
