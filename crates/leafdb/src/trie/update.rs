//! Incremental trie updates over a path-keyed node store.
//!
//! A [`TrieUpdate`] starts from a root hash, loads only the nodes on the paths of the changed
//! keys (checking each against the hash its parent holds), applies inserts and deletes in memory
//! and, on [`TrieUpdate::commit`], re-hashes the changed part and returns the nodes to write by
//! path, the paths whose nodes vanished, and the old encodings that are no longer current (for
//! the recent-node cache). Untouched subtrees stay references and never move: only leaves and
//! extensions change paths, and those are always loaded before they change. A large trie's
//! update can be split under its root branch and its parts committed apart (`split.rs`).

use alloy_primitives::{
    B256, keccak256,
    map::{HashMap, HashSet},
};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, nodes::RlpNode};

use super::{
    KnownLeaf, NodeSource,
    node::{DecodedNode, encode_branch, encode_extension, encode_leaf},
};
use crate::error::{LeafDbError, Result};

/// An in-memory node of a trie being updated. Keys are boxed (a `Nibbles` is 40 bytes) so that
/// a node is 40 bytes, not 64: a loaded branch holds sixteen, and a mainnet-sized block loads
/// thousands of branches, each in memory the block takes fresh (docs/benchmarks.md).
#[derive(Debug, Clone, Default)]
enum TNode {
    #[default]
    Empty,
    /// A stored node not loaded (its path is implied by its position).
    Hash(B256),
    Leaf {
        key: Box<Nibbles>,
        value: Vec<u8>,
    },
    Ext {
        key: Box<Nibbles>,
        child: Box<TNode>,
    },
    Branch {
        children: Box<[TNode; 16]>,
        value: Option<Vec<u8>>,
    },
}

impl TNode {
    fn take(&mut self) -> Self {
        std::mem::replace(self, Self::Empty)
    }

    fn from_ref(r: &RlpNode) -> Result<Self> {
        match r.as_hash() {
            Some(h) => Ok(Self::Hash(h)),
            None => Self::from_decoded(DecodedNode::decode(r)?),
        }
    }

    fn from_decoded(node: DecodedNode) -> Result<Self> {
        Ok(match node {
            DecodedNode::Leaf { key, value } => Self::Leaf { key: Box::new(key), value },
            DecodedNode::Extension { key, child } => {
                Self::Ext { key: Box::new(key), child: Box::new(Self::from_ref(&child)?) }
            }
            DecodedNode::Branch { children, value } => {
                let mut out: Box<[TNode; 16]> = Box::default();
                for (slot, c) in out.iter_mut().zip(children.iter()) {
                    if let Some(c) = c {
                        *slot = Self::from_ref(c)?;
                    }
                }
                Self::Branch { children: out, value }
            }
        })
    }
}

/// The result of committing an update.
#[derive(Debug, Default, Clone)]
pub struct TrieCommit {
    /// The new root hash.
    pub root: B256,
    /// Nodes to store: `(path, hash, rlp)`; unchanged nodes are left out.
    pub writes: Vec<(Nibbles, B256, Vec<u8>)>,
    /// Paths whose stored node no longer exists.
    pub deletes: Vec<Nibbles>,
    /// What a store that keeps no leaves deletes (a leafdb: it rebuilds leaves from its flat
    /// tables and puts only the writes that are no leaf, `node::is_leaf`): the paths of
    /// `deletes` where a node was stored (not rebuilt; see
    /// [`NodeSource::load_verified_stored`]), and the paths where a leaf of `writes` takes the
    /// place of a stored node.
    pub store_deletes: Vec<Nibbles>,
    /// Encodings that were current before and are not any more (replaced or deleted), with
    /// their hashes (known from loading, so not hashed again).
    pub replaced: Vec<(B256, Vec<u8>)>,
}

impl TrieCommit {
    /// Adds `other`'s nodes, deletions and replaced encodings to this commit (whose root stays).
    pub fn append(&mut self, other: Self) {
        self.writes.extend(other.writes);
        self.deletes.extend(other.deletes);
        self.store_deletes.extend(other.store_deletes);
        self.replaced.extend(other.replaced);
    }
}

/// A batch of changes to one trie; see the module docs.
pub struct TrieUpdate<'a, S: ?Sized> {
    src: &'a S,
    /// The path of `root`: empty, or a root child's for a part of [`Self::split_root`].
    base: Nibbles,
    root: TNode,
    /// Old encodings (and their hashes) of the stored nodes loaded so far, by path.
    loaded: HashMap<Nibbles, (B256, Vec<u8>)>,
    /// The paths of `loaded` whose node was not stored but rebuilt.
    rebuilt: HashSet<Nibbles>,
}

impl<S: ?Sized> std::fmt::Debug for TrieUpdate<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrieUpdate").field("loaded", &self.loaded.len()).finish_non_exhaustive()
    }
}

impl<'a, S: NodeSource + ?Sized> TrieUpdate<'a, S> {
    /// An update of the trie with root `root` whose nodes are in `src`.
    pub fn new(src: &'a S, root: B256) -> Self {
        let root = if root == EMPTY_ROOT_HASH { TNode::Empty } else { TNode::Hash(root) };
        Self {
            src,
            base: Nibbles::new(),
            root,
            loaded: HashMap::default(),
            rebuilt: HashSet::default(),
        }
    }

    /// The path of this update's root: empty, or the root child's of a part.
    pub const fn path(&self) -> &Nibbles {
        &self.base
    }

    /// Sets `key` to `value`; an empty value deletes the key.
    pub fn insert(&mut self, key: &Nibbles, value: Vec<u8>) -> Result<()> {
        if value.is_empty() {
            return self.delete(key);
        }
        let root = self.root.take();
        self.root = self.insert_at(root, key, self.base.len(), value)?;
        Ok(())
    }

    /// Loads the nodes on the path to `key` without changing anything, so that a later
    /// [`Self::insert`] or [`Self::delete`] of it reads nothing (lets loading overlap other work).
    /// `value`, when given, is the key's current value: its leaf is then a [`KnownLeaf`] to the
    /// source, which need not look for it.
    pub fn touch(&mut self, key: &Nibbles, value: Option<&[u8]>) -> Result<()> {
        let root = self.root.take();
        let leaf = value.map(|value| KnownLeaf { key, value });
        self.root = self.touch_at(root, key, self.base.len(), leaf)?;
        Ok(())
    }

    fn touch_at(
        &mut self,
        node: TNode,
        key: &Nibbles,
        depth: usize,
        leaf: Option<KnownLeaf<'_>>,
    ) -> Result<TNode> {
        Ok(match node {
            TNode::Hash(h) => {
                let n = self.resolve_with(key.slice(..depth), h, leaf)?;
                self.touch_at(n, key, depth, leaf)?
            }
            TNode::Ext { key: k, child } if key.slice(depth..).starts_with(&k) => {
                let child = self.touch_at(*child, key, depth + k.len(), leaf)?;
                TNode::Ext { key: k, child: Box::new(child) }
            }
            TNode::Branch { mut children, value } if depth < key.len() => {
                let i = key.get_unchecked(depth) as usize;
                let child = children[i].take();
                children[i] = self.touch_at(child, key, depth + 1, leaf)?;
                TNode::Branch { children, value }
            }
            other => other,
        })
    }

    /// Removes `key` (nothing happens if it is absent).
    pub fn delete(&mut self, key: &Nibbles) -> Result<()> {
        let root = self.root.take();
        self.root = self.delete_at(root, key, self.base.len())?;
        Ok(())
    }

    /// Loads the stored node at `path`, checked against `expected`, and remembers its old
    /// encoding.
    fn resolve(&mut self, path: Nibbles, expected: B256) -> Result<TNode> {
        self.resolve_with(path, expected, None)
    }

    /// [`Self::resolve`], passing the source a leaf known to lie on `path`'s key.
    fn resolve_with(
        &mut self,
        path: Nibbles,
        expected: B256,
        leaf: Option<KnownLeaf<'_>>,
    ) -> Result<TNode> {
        let (rlp, stored) = self.src.load_verified_stored(&path, expected, leaf)?;
        let node = TNode::from_decoded(DecodedNode::decode(&rlp)?)?;
        if !stored {
            self.rebuilt.insert(path);
        }
        self.loaded.insert(path, (expected, rlp));
        Ok(node)
    }

    fn insert_at(
        &mut self,
        node: TNode,
        key: &Nibbles,
        depth: usize,
        value: Vec<u8>,
    ) -> Result<TNode> {
        Ok(match node {
            TNode::Empty => TNode::Leaf { key: Box::new(key.slice(depth..)), value },
            TNode::Hash(h) => {
                let n = self.resolve(key.slice(..depth), h)?;
                self.insert_at(n, key, depth, value)?
            }
            TNode::Leaf { key: k, value: v } => {
                let rest = key.slice(depth..);
                if *k == rest {
                    return Ok(TNode::Leaf { key: k, value });
                }
                let c = k.common_prefix_length(&rest);
                // The old leaf continues below the fork like the new one: as a leaf, or as the
                // branch's value when its key ends there.
                let old = if k.len() == c {
                    Below::Value(v)
                } else {
                    Below::Child(
                        k.get_unchecked(c),
                        TNode::Leaf { key: Box::new(k.slice(c + 1..)), value: v },
                    )
                };
                split_at(k.slice(..c), old, &rest, c, value)
            }
            TNode::Ext { key: k, child } => {
                let rest = key.slice(depth..);
                let c = k.common_prefix_length(&rest);
                if c == k.len() {
                    let child = self.insert_at(*child, key, depth + c, value)?;
                    return Ok(TNode::Ext { key: k, child: Box::new(child) });
                }
                // The extension continues below the fork with what is left of its key.
                let below = if k.len() == c + 1 {
                    *child
                } else {
                    TNode::Ext { key: Box::new(k.slice(c + 1..)), child }
                };
                split_at(k.slice(..c), Below::Child(k.get_unchecked(c), below), &rest, c, value)
            }
            TNode::Branch { mut children, value: bvalue } => {
                if depth == key.len() {
                    return Ok(TNode::Branch { children, value: Some(value) });
                }
                let i = key.get_unchecked(depth) as usize;
                let child = children[i].take();
                children[i] = self.insert_at(child, key, depth + 1, value)?;
                TNode::Branch { children, value: bvalue }
            }
        })
    }

    fn delete_at(&mut self, node: TNode, key: &Nibbles, depth: usize) -> Result<TNode> {
        Ok(match node {
            TNode::Empty => TNode::Empty,
            TNode::Hash(h) => {
                let n = self.resolve(key.slice(..depth), h)?;
                self.delete_at(n, key, depth)?
            }
            TNode::Leaf { key: k, value } => {
                if *k == key.slice(depth..) {
                    TNode::Empty
                } else {
                    TNode::Leaf { key: k, value }
                }
            }
            TNode::Ext { key: k, child } => {
                if !key.slice(depth..).starts_with(&k) {
                    return Ok(TNode::Ext { key: k, child });
                }
                let child = self.delete_at(*child, key, depth + k.len())?;
                merge_into_ext(*k, child)
            }
            TNode::Branch { mut children, value } => {
                let value = if depth == key.len() {
                    None
                } else {
                    let i = key.get_unchecked(depth) as usize;
                    let child = children[i].take();
                    children[i] = self.delete_at(child, key, depth + 1)?;
                    value
                };
                self.normalize_branch(children, value, key.slice(..depth))?
            }
        })
    }

    /// Collapses a branch left with fewer than two entries.
    fn normalize_branch(
        &mut self,
        mut children: Box<[TNode; 16]>,
        value: Option<Vec<u8>>,
        path: Nibbles,
    ) -> Result<TNode> {
        let mut present = children.iter().enumerate().filter(|(_, c)| !matches!(c, TNode::Empty));
        let first = present.next().map(|(i, _)| i);
        let more = present.next().is_some();
        Ok(match (first, more, value) {
            (None, _, None) => TNode::Empty,
            (None, _, Some(v)) => TNode::Leaf { key: Box::default(), value: v },
            (Some(i), false, None) => {
                let mut child = children[i].take();
                if let TNode::Hash(h) = child {
                    let mut child_path = path;
                    child_path.push(i as u8);
                    child = self.resolve(child_path, h)?;
                }
                merge_into_ext(Nibbles::from_nibbles([i as u8]), child)
            }
            (_, _, value) => TNode::Branch { children, value },
        })
    }

    /// Hashes the changed nodes and returns what to store; see [`TrieCommit`]. A part of
    /// [`Self::split_root`] commits with [`Self::commit_subtrie`].
    pub fn commit(mut self) -> Result<TrieCommit> {
        if !self.base.is_empty() {
            return Err(LeafDbError::Invariant("a part of a split trie committed as a whole"));
        }
        let root = self.root.take();
        let mut enc = Encoder::new(self.loaded, &self.rebuilt);
        enc.out.root = match root {
            TNode::Empty => EMPTY_ROOT_HASH,
            TNode::Hash(h) => h,
            node => {
                let leaf = matches!(node, TNode::Leaf { .. });
                let rlp = enc.encode(node, Nibbles::new())?;
                let hash = keccak256(&rlp);
                enc.store(Nibbles::new(), hash, rlp, leaf);
                hash
            }
        };
        Ok(enc.finish())
    }
}

/// The commit of a [`TrieUpdate`]: encodes the changed nodes bottom-up and sorts every path
/// into written, unchanged or vanished.
struct Encoder<'r> {
    /// Old encodings of the nodes loaded by the update, by path. Each is taken out when a node
    /// is stored at its path again; those left at the end vanished. (A path that keeps an
    /// unloaded node, [`TNode::Hash`], was never loaded: loading a node replaces its hash, and
    /// an unloaded node never moves.)
    loaded: HashMap<Nibbles, (B256, Vec<u8>)>,
    /// Paths of loaded nodes that were rebuilt, not stored.
    rebuilt: &'r HashSet<Nibbles>,
    out: TrieCommit,
    buf: Vec<u8>,
}

impl<'r> Encoder<'r> {
    fn new(loaded: HashMap<Nibbles, (B256, Vec<u8>)>, rebuilt: &'r HashSet<Nibbles>) -> Self {
        Self { loaded, rebuilt, out: TrieCommit::default(), buf: Vec::with_capacity(600) }
    }

    /// Encodes `node` (children first) and returns its RLP; stores hashed children.
    fn encode(&mut self, node: TNode, path: Nibbles) -> Result<Vec<u8>> {
        match node {
            TNode::Empty | TNode::Hash(_) => {
                return Err(LeafDbError::Invariant("encode of an unloaded or empty node"));
            }
            TNode::Leaf { key, value } => encode_leaf(&key, &value, &mut self.buf),
            TNode::Ext { key, child } => {
                let r = self.child_ref(*child, path.join(&key))?;
                encode_extension(&key, &r, &mut self.buf);
            }
            TNode::Branch { children, value } => {
                let mut refs: [Option<RlpNode>; 16] = Default::default();
                let children: [TNode; 16] = *children;
                for (i, child) in (0u8..).zip(children) {
                    if !matches!(child, TNode::Empty) {
                        let mut child_path = path;
                        child_path.push(i);
                        refs[i as usize] = Some(self.child_ref(child, child_path)?);
                    }
                }
                encode_branch(&refs, value.as_deref(), &mut self.buf);
            }
        }
        Ok(self.buf.clone())
    }

    /// The reference to `node` at `path` in its parent, storing it when it is hashed.
    fn child_ref(&mut self, node: TNode, path: Nibbles) -> Result<RlpNode> {
        if let TNode::Hash(h) = node {
            #[cfg(test)]
            assert!(!self.loaded.contains_key(&path), "an unloaded node at a loaded path");
            return Ok(RlpNode::word_rlp(&h));
        }
        let leaf = matches!(node, TNode::Leaf { .. });
        let rlp = self.encode(node, path)?;
        let r = RlpNode::from_rlp(&rlp);
        if let Some(hash) = r.as_hash() {
            self.store(path, hash, rlp, leaf);
        }
        Ok(r)
    }

    /// Records the node `rlp` (hashing to `hash`, a leaf if `leaf`) at `path`: a write unless
    /// it is the encoding loaded there.
    fn store(&mut self, path: Nibbles, hash: B256, rlp: Vec<u8>, leaf: bool) {
        let stored_before = match self.loaded.remove(&path) {
            Some((_, old_rlp)) if old_rlp == rlp => return,
            Some(old) => {
                self.out.replaced.push(old);
                !self.rebuilt.contains(&path)
            }
            None => false,
        };
        if leaf && stored_before {
            self.out.store_deletes.push(path);
        }
        self.out.writes.push((path, hash, rlp));
    }

    /// The commit: loaded nodes not met again are deleted.
    fn finish(mut self) -> TrieCommit {
        for (path, old) in self.loaded {
            if !self.rebuilt.contains(&path) {
                self.out.store_deletes.push(path);
            }
            self.out.deletes.push(path);
            self.out.replaced.push(old);
        }
        self.out
    }
}

/// What an existing leaf or extension becomes below the point where a new key forks from it.
enum Below {
    /// The child at this nibble of the new branch.
    Child(u8, TNode),
    /// The new branch's value (the existing key ends at the fork).
    Value(Vec<u8>),
}

/// The node replacing a leaf or extension with key `common ‖ …` where the inserted key's rest
/// `rest` forks from it after `c = common.len()` nibbles: a branch holding `old` and a leaf (or
/// the branch value) for `value`, under an extension of `common` when that is not empty.
fn split_at(common: Nibbles, old: Below, rest: &Nibbles, c: usize, value: Vec<u8>) -> TNode {
    let mut children: Box<[TNode; 16]> = Box::default();
    let mut bvalue = None;
    match old {
        Below::Child(i, node) => children[i as usize] = node,
        Below::Value(v) => bvalue = Some(v),
    }
    if rest.len() == c {
        bvalue = Some(value);
    } else {
        children[rest.get_unchecked(c) as usize] =
            TNode::Leaf { key: Box::new(rest.slice(c + 1..)), value };
    }
    wrap_ext(common, TNode::Branch { children, value: bvalue })
}

fn wrap_ext(key: Nibbles, node: TNode) -> TNode {
    if key.is_empty() { node } else { TNode::Ext { key: Box::new(key), child: Box::new(node) } }
}

/// The node that replaces an extension with key `k` whose child became `child`.
fn merge_into_ext(k: Nibbles, child: TNode) -> TNode {
    match child {
        TNode::Empty => TNode::Empty,
        TNode::Leaf { mut key, value } => {
            *key = k.join(&key);
            TNode::Leaf { key, value }
        }
        TNode::Ext { mut key, child } => {
            *key = k.join(&key);
            TNode::Ext { key, child }
        }
        other => TNode::Ext { key: Box::new(k), child: Box::new(other) },
    }
}

mod split;

pub use split::RootBranch;

#[cfg(test)]
mod tests;
