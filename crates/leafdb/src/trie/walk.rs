//! In-order traversal of a stored trie's leaves.

use alloy_primitives::B256;
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, nodes::RlpNode};

use super::{NodeSource, node::DecodedNode};
use crate::error::Result;

/// Every `(key, value)` of the trie with root `root`, in key order (a key before the keys it is
/// a prefix of), read from `src` with each node checked against its parent's hash.
pub fn walk_leaves<S: NodeSource + ?Sized>(src: &S, root: B256) -> Result<Vec<(Nibbles, Vec<u8>)>> {
    walk_leaves_except(src, root, &[])
}

/// [`walk_leaves`] past the subtries referenced by hash at the paths `skip` (sorted): their
/// nodes are not read and their leaves not returned.
pub fn walk_leaves_except<S: NodeSource + ?Sized>(
    src: &S,
    root: B256,
    skip: &[Nibbles],
) -> Result<Vec<(Nibbles, Vec<u8>)>> {
    let mut walk = Walk { src, skip, out: Vec::new() };
    if root != EMPTY_ROOT_HASH {
        let node = load(src, Nibbles::new(), root)?;
        walk.visit(Nibbles::new(), node)?;
    }
    Ok(walk.out)
}

fn load<S: NodeSource + ?Sized>(src: &S, path: Nibbles, expected: B256) -> Result<DecodedNode> {
    DecodedNode::decode(&src.load_verified(&path, expected)?)
}

struct Walk<'a, S: ?Sized> {
    src: &'a S,
    skip: &'a [Nibbles],
    out: Vec<(Nibbles, Vec<u8>)>,
}

impl<S: NodeSource + ?Sized> Walk<'_, S> {
    /// Visits the child `r` at `path`, unless it is a subtrie to skip.
    fn child(&mut self, path: Nibbles, r: &RlpNode) -> Result<()> {
        let node = match r.as_hash() {
            Some(_) if self.skip.binary_search(&path).is_ok() => return Ok(()),
            Some(h) => load(self.src, path, h)?,
            None => DecodedNode::decode(r)?,
        };
        self.visit(path, node)
    }

    fn visit(&mut self, path: Nibbles, node: DecodedNode) -> Result<()> {
        match node {
            DecodedNode::Leaf { key, value } => {
                self.out.push((super::checked_join(&path, &key)?, value));
            }
            DecodedNode::Extension { key, child } => {
                self.child(super::checked_join(&path, &key)?, &child)?;
            }
            DecodedNode::Branch { children, value } => {
                if let Some(v) = value {
                    self.out.push((path, v));
                }
                for (i, c) in children.iter().enumerate() {
                    if let Some(c) = c {
                        self.child(super::checked_push(&path, i as u8)?, c)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::keccak256;
    use alloy_trie::nodes::RlpNode;

    use super::*;
    use crate::trie::{MemNodes, node::encode_branch};

    #[test]
    fn a_trie_deeper_than_64_nibbles_is_an_error_not_a_panic() {
        // 66 one-child branches, each hash-linked to the next: every node checks out, but the
        // path runs past 64 nibbles.
        let mut rlps = Vec::new();
        let mut child = keccak256(b"bottom");
        for _ in 0..66 {
            let mut children: [Option<RlpNode>; 16] = Default::default();
            children[0] = Some(RlpNode::word_rlp(&child));
            let mut rlp = Vec::new();
            encode_branch(&children, None, &mut rlp);
            child = keccak256(&rlp);
            rlps.push(rlp);
        }
        let mut nodes = Vec::new();
        let mut path = Nibbles::new();
        for rlp in rlps.into_iter().rev() {
            nodes.push((path, rlp));
            if path.len() == 64 {
                break;
            }
            path.push(0);
        }
        let err = walk_leaves(&nodes.into_iter().collect::<MemNodes>(), child).unwrap_err();
        assert!(err.to_string().contains("longer than 64"), "{err}");
    }
}
