//! snap/1 ranges at a root other than the head's: a syncing geth asks for its pivot's state,
//! 64 to ~120 blocks behind the chain's head, and a server holding only the head's flat state
//! would answer every such range empty (geth then takes it for a peer without state). The
//! leaves of a recent root are read by walking its trie from the root, each node checked
//! against the hash its parent names: the head's nodes from the node store (leaves rebuilt from
//! the flat tables), the nodes replaced since from the recent-node cache. A walk stops at the
//! first node neither has (after a restart the cache is empty; nodes of a wiped storage never
//! enter it), and what it gave so far stays a valid range: its leaves are every leaf from the
//! origin up to the last one, in order.

use alloy_primitives::B256;
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};

use super::{Cursor, SnapReader, path_key_nibbles};
use crate::{
    error::{LeafDbError, Result},
    kv::KvStore,
    nodes::TrieNodes,
    trie::{DecodedNode, KnownLeaf, NodeSource, prove, verified},
};

/// Leaves of the trie of one owner at one root, from an origin on, in key order: see the module
/// docs. Yields `(key, leaf value)`; ends after the last leaf, or at the first node that cannot
/// be resolved ([`Self::cut`] then says so).
pub struct LeavesAt<'v, 'a, S: KvStore> {
    view: &'v SnapReader<'a, S>,
    owner: Option<B256>,
    origin: Nibbles,
    /// Subtrees still to visit, the next on top: each one's path (one nibble a byte) and node.
    stack: Vec<(Vec<u8>, Cursor)>,
    cut: bool,
    loads: usize,
}

impl<S: KvStore> std::fmt::Debug for LeavesAt<'_, '_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeavesAt")
            .field("owner", &self.owner)
            .field("cut", &self.cut)
            .field("loads", &self.loads)
            .finish_non_exhaustive()
    }
}

impl<S: KvStore> LeavesAt<'_, '_, S> {
    /// Whether the walk stopped at a node it could not resolve (rather than at the trie's end).
    pub const fn cut(&self) -> bool {
        self.cut
    }

    /// Nodes loaded from the store or the recent-node cache so far.
    pub const fn loads(&self) -> usize {
        self.loads
    }

    /// Whether the subtree at `path` holds only keys before the origin.
    fn before_origin(&self, path: &[u8]) -> bool {
        for (i, nibble) in path.iter().enumerate() {
            let o = self.origin.get(i).unwrap_or(0);
            if *nibble != o {
                return *nibble < o;
            }
        }
        false
    }

    fn push(&mut self, path: Vec<u8>, child: &alloy_trie::nodes::RlpNode) -> Result<()> {
        if !self.before_origin(&path) {
            self.stack.push((path, Cursor::of(child)?));
        }
        Ok(())
    }

    /// The next leaf, `None` at the end (or the cut).
    fn step(&mut self) -> Result<Option<(B256, Vec<u8>)>> {
        while let Some((path, at)) = self.stack.pop() {
            let node = match at {
                Cursor::Value => continue,
                Cursor::Inline(node) => node,
                Cursor::Hash(hash) => {
                    let owner = self.owner;
                    match self.view.resolve_counted(
                        owner.as_ref(),
                        &path,
                        &hash,
                        &mut self.loads,
                    )? {
                        Some(rlp) => DecodedNode::decode(&rlp)?,
                        None => {
                            self.cut = true;
                            self.stack.clear();
                            return Ok(None);
                        }
                    }
                }
            };
            match node {
                DecodedNode::Leaf { key, value } => {
                    let mut full = path;
                    full.extend(key.to_vec());
                    let Some(packed) = path_key_nibbles(&full).filter(|n| n.len() == 64) else {
                        return Err(LeafDbError::BadKey {
                            table: "trie leaf",
                            len: full.len() / 2,
                        });
                    };
                    if packed >= self.origin {
                        return Ok(Some((B256::from_slice(&packed.pack()), value)));
                    }
                }
                DecodedNode::Extension { key, child } => {
                    let mut below = path;
                    below.extend(key.to_vec());
                    self.push(below, &child)?;
                }
                DecodedNode::Branch { children, .. } => {
                    for nibble in (0..16u8).rev() {
                        if let Some(child) = &children[usize::from(nibble)] {
                            let mut below = path.clone();
                            below.push(nibble);
                            self.push(below, child)?;
                        }
                    }
                }
            }
        }
        Ok(None)
    }
}

impl<S: KvStore> Iterator for LeavesAt<'_, '_, S> {
    type Item = Result<(B256, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(leaf) => leaf.map(Ok),
            Err(error) => {
                self.stack.clear();
                Some(Err(error))
            }
        }
    }
}

/// What an account looked up at some root is there ([`SnapReader::account_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAt {
    /// The account.
    Found(TrieAccount),
    /// No such account at that root.
    Absent,
    /// A node on its path does not resolve: whether it is there cannot be told.
    Unresolved,
}

/// A trie of one owner as the [`NodeSource`] of a proof at an older root: every node by the hash
/// its parent names (see [`SnapReader::resolve`]).
struct AtRoot<'v, 'a, S: KvStore> {
    view: &'v SnapReader<'a, S>,
    owner: Option<B256>,
}

impl<S: KvStore> NodeSource for AtRoot<'_, '_, S> {
    fn node(&self, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        TrieNodes::of(&self.view.snap, self.owner.as_ref()).node(path)
    }

    fn owner(&self) -> B256 {
        self.owner.unwrap_or_default()
    }

    fn load_verified_stored(
        &self,
        path: &Nibbles,
        expected: B256,
        _leaf: Option<KnownLeaf<'_>>,
    ) -> Result<(Vec<u8>, bool)> {
        let found = self.view.resolve(self.owner.as_ref(), &path.to_vec(), &expected)?;
        Ok((verified(self.owner(), path, expected, found)?, true))
    }
}

impl<'a, S: KvStore> SnapReader<'a, S> {
    /// Whether the trie of `owner` with root `root` can be read: its root node resolves (the
    /// head's, or one the recent-node cache still holds).
    pub fn resolves_root(&self, owner: Option<&B256>, root: B256) -> Result<bool> {
        Ok(root == EMPTY_ROOT_HASH || self.resolve(owner, &[], &root)?.is_some())
    }

    /// The leaves of the trie of `owner` (`None`: the account trie) with root `root`, from
    /// `origin` on, in key order, by walking the trie (see the module docs).
    pub fn leaves_at<'v>(
        &'v self,
        owner: Option<&B256>,
        root: B256,
        origin: &B256,
    ) -> LeavesAt<'v, 'a, S> {
        // The empty trie has no node to resolve, and no leaf.
        let stack = if root == EMPTY_ROOT_HASH {
            Vec::new()
        } else {
            vec![(Vec::new(), Cursor::Hash(root))]
        };
        LeavesAt {
            view: self,
            owner: owner.copied(),
            origin: Nibbles::unpack(origin),
            stack,
            cut: false,
            loads: 0,
        }
    }

    /// The nodes proving `key` (present or absent) in the trie of `owner` with root `root`,
    /// any root whose nodes on that path resolve; an error names the first that does not.
    pub fn prove_at(&self, owner: Option<&B256>, root: B256, key: &B256) -> Result<Vec<Vec<u8>>> {
        prove(&AtRoot { view: self, owner: owner.copied() }, root, &Nibbles::unpack(key))
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::keccak256;
    use alloy_trie::proof::verify_proof;

    use super::*;
    use crate::{GenParams, LeafDb};

    /// At the head root the walk gives exactly the flat accounts (from any origin); at the root of
    /// blocks before, it gives that block's accounts, whose proofs verify against that root,
    /// from the nodes the blocks since replaced.
    #[test]
    fn a_walk_at_an_older_root_gives_that_roots_leaves_with_proofs() {
        let params = GenParams { accounts: 400, seed: 11 };
        let db = LeafDb::in_memory();
        db.generate(params).unwrap();
        let view = db.snap_reader().unwrap();
        let old_root = view.root();
        let old: Vec<(B256, Vec<u8>)> =
            view.leaves_at(None, old_root, &B256::ZERO).map(Result::unwrap).collect();
        let flat: Vec<B256> = view.accounts_from(&B256::ZERO).map(|a| a.unwrap().0).collect();
        assert_eq!(old.iter().map(|(k, _)| *k).collect::<Vec<_>>(), flat);
        let origin = flat[100];
        let mut from = origin;
        from.0[31] = from.0[31].wrapping_sub(1); // just before the 101st account
        let tail: Vec<B256> = view.leaves_at(None, old_root, &from).map(|l| l.unwrap().0).collect();
        assert_eq!(tail, flat[100..]);
        drop(view);

        for n in 1..=3 {
            let (header, diff) = params.block(n, 40);
            db.apply_generated_block(&header, &diff).unwrap();
        }
        let view = db.snap_reader().unwrap();
        assert_ne!(view.root(), old_root);
        assert!(view.resolves_root(None, old_root).unwrap());
        let walked = view.leaves_at(None, old_root, &B256::ZERO);
        let again: Vec<(B256, Vec<u8>)> = walked.map(Result::unwrap).collect();
        assert_eq!(again, old, "the older root's leaves, not the head's");
        for (key, value) in [&old[0], &old[200], &old[old.len() - 1]] {
            let proof = view.prove_at(None, old_root, key).unwrap();
            let nodes: Vec<alloy_primitives::Bytes> = proof.into_iter().map(Into::into).collect();
            verify_proof(old_root, Nibbles::unpack(key), Some(value.clone()), &nodes).unwrap();
        }
        // A root no store nor cache holds resolves nothing: the walk ends at once, cut.
        let unknown = keccak256(b"no such root");
        assert!(!view.resolves_root(None, unknown).unwrap());
        let mut walk = view.leaves_at(None, unknown, &B256::ZERO);
        assert!(walk.next().is_none() && walk.cut());
        let mut empty = view.leaves_at(None, EMPTY_ROOT_HASH, &B256::ZERO);
        assert!(empty.next().is_none() && !empty.cut(), "the empty trie ends, uncut");
    }
}
