//! The Merkle-Patricia trie engine: node codec, streaming builder, incremental updates, proofs.

pub mod builder;
pub mod node;
pub mod update;
pub mod walk;

pub use builder::{BuildOutcome, NodeSink, StackBuilder, VecSink, nibbles_hex, root_of_sorted};
pub use node::DecodedNode;
pub use update::{NodeSource, TrieCommit, TrieUpdate, prove};
pub use walk::walk_leaves;

use alloy_trie::Nibbles;

use crate::error::{LeafDbError, Result};

/// `path` followed by `suffix`, refused past 64 nibbles (a key is 32 bytes). Paths built from
/// nodes a peer sent can be longer when the trie is malformed; `Nibbles` must never be asked to
/// hold them.
pub fn checked_join(path: &Nibbles, suffix: &Nibbles) -> Result<Nibbles> {
    if path.len() + suffix.len() > 64 {
        return Err(LeafDbError::BadNode("trie path longer than 64 nibbles"));
    }
    Ok(path.join(suffix))
}

/// `path` followed by one nibble, refused past 64 nibbles (see [`checked_join`]).
pub fn checked_push(path: &Nibbles, nibble: u8) -> Result<Nibbles> {
    if path.len() >= 64 {
        return Err(LeafDbError::BadNode("trie path longer than 64 nibbles"));
    }
    let mut out = *path;
    out.push(nibble);
    Ok(out)
}
