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
    LeafWalk::new(src, root, skip).collect()
}

/// [`walk_leaves_except`] one leaf at a time: what it holds is bounded by the trie's depth, not
/// by its leaves (a whole mainnet trie has hundreds of millions). A node that fails to load or
/// decode ends the walk with its error.
pub struct LeafWalk<'a, S: ?Sized> {
    src: &'a S,
    skip: &'a [Nibbles],
    /// What is left to visit, the next on top.
    stack: Vec<Pending>,
}

/// The root to load, a node to visit, or the children of a branch from index `next` on.
enum Pending {
    Root(B256),
    Node(Nibbles, DecodedNode),
    Children { path: Nibbles, children: Box<[Option<RlpNode>; 16]>, next: usize },
}

impl<'a, S: NodeSource + ?Sized> LeafWalk<'a, S> {
    /// A walk of the trie with root `root` in `src`, past the subtries at `skip` (sorted).
    pub fn new(src: &'a S, root: B256, skip: &'a [Nibbles]) -> Self {
        let stack = if root == EMPTY_ROOT_HASH { Vec::new() } else { vec![Pending::Root(root)] };
        Self { src, skip, stack }
    }

    /// The next leaf, or `None` when the walk is over.
    fn step(&mut self) -> Result<Option<(Nibbles, Vec<u8>)>> {
        while let Some(pending) = self.stack.pop() {
            match pending {
                Pending::Root(root) => {
                    let node = load(self.src, Nibbles::new(), root)?;
                    self.stack.push(Pending::Node(Nibbles::new(), node));
                }
                Pending::Node(path, DecodedNode::Leaf { key, value }) => {
                    return Ok(Some((super::checked_join(&path, &key)?, value)));
                }
                Pending::Node(path, DecodedNode::Extension { key, child }) => {
                    self.child(super::checked_join(&path, &key)?, &child)?;
                }
                Pending::Node(path, DecodedNode::Branch { children, value }) => {
                    self.stack.push(Pending::Children { path, children, next: 0 });
                    if let Some(value) = value {
                        return Ok(Some((path, value)));
                    }
                }
                Pending::Children { path, mut children, next } => {
                    let Some(i) = (next..16).find(|i| children[*i].is_some()) else { continue };
                    let child = children[i].take();
                    let at = super::checked_push(&path, i as u8)?;
                    self.stack.push(Pending::Children { path, children, next: i + 1 });
                    if let Some(child) = child {
                        self.child(at, &child)?;
                    }
                }
            }
        }
        Ok(None)
    }

    /// Queues the child `r` at `path`, unless it is a subtrie to skip.
    fn child(&mut self, path: Nibbles, r: &RlpNode) -> Result<()> {
        let node = match r.as_hash() {
            Some(_) if self.skip.binary_search(&path).is_ok() => return Ok(()),
            Some(h) => load(self.src, path, h)?,
            None => DecodedNode::decode(r)?,
        };
        self.stack.push(Pending::Node(path, node));
        Ok(())
    }
}

impl<S: NodeSource + ?Sized> Iterator for LeafWalk<'_, S> {
    type Item = Result<(Nibbles, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let step = self.step();
        if step.is_err() {
            self.stack.clear();
        }
        step.transpose()
    }
}

fn load<S: NodeSource + ?Sized>(src: &S, path: Nibbles, expected: B256) -> Result<DecodedNode> {
    DecodedNode::decode(&src.load_verified(&path, expected)?)
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
