//! Splitting a [`TrieUpdate`] under its root branch, so that each root child's part is changed
//! and committed apart (on another thread, or as soon as its keys are loaded), and joining the
//! root over the parts again.

use alloy_primitives::{
    B256, keccak256,
    map::{HashMap, HashSet},
};
use alloy_trie::{Nibbles, nodes::RlpNode};

use super::{Encoder, NodeSource, TNode, TrieCommit, TrieUpdate};
use crate::{
    error::{LeafDbError, Result},
    trie::node::encode_branch,
};

impl<S: NodeSource + ?Sized> TrieUpdate<'_, S> {
    /// Splits an update whose root is a branch into one update per root child (sixteen, in
    /// nibble order), each changed and committed apart ([`Self::commit_subtrie`], on any
    /// thread, as soon as its keys are known), and the root, which [`RootBranch::join`] encodes
    /// from the parts' references. Keys below different root children touch disjoint paths, so
    /// each part owns the old encodings of its subtrie. Loads the root if it is not loaded.
    /// Another root (empty, a leaf, an extension) comes back as it is, in `Err`.
    pub fn split_root(mut self) -> Result<std::result::Result<(RootBranch, Vec<Self>), Self>> {
        if !self.base.is_empty() {
            return Err(LeafDbError::Invariant("a part of a trie split again"));
        }
        if let TNode::Hash(h) = self.root {
            self.root = self.resolve(Nibbles::new(), h)?;
        }
        let (children, value) = match self.root.take() {
            TNode::Branch { children, value } => (children, value),
            other => {
                self.root = other;
                return Ok(Err(self));
            }
        };
        let src = self.src;
        let mut parts: Vec<Self> = (0u8..)
            .zip(*children)
            .map(|(nibble, root)| Self {
                src,
                base: Nibbles::from_nibbles([nibble]),
                root,
                loaded: HashMap::default(),
                rebuilt: HashSet::default(),
            })
            .collect();
        let mut old = None;
        for (path, entry) in self.loaded {
            match path.first() {
                None => old = Some(entry),
                Some(nibble) => {
                    parts[usize::from(nibble)].loaded.insert(path, entry);
                }
            }
        }
        let mut rebuilt = false;
        for path in self.rebuilt {
            match path.first() {
                None => rebuilt = true,
                Some(nibble) => {
                    parts[usize::from(nibble)].rebuilt.insert(path);
                }
            }
        }
        Ok(Ok((RootBranch { old, rebuilt, value }, parts)))
    }

    /// Commits a part of [`Self::split_root`]: its reference in the root (`None` when the
    /// subtrie is empty now) and the commit of everything below the root (its `root` unset).
    pub fn commit_subtrie(mut self) -> Result<(Option<RlpNode>, TrieCommit)> {
        let root = self.root.take();
        let mut enc = Encoder::new(self.loaded, &self.rebuilt);
        let reference = match root {
            TNode::Empty => None,
            node => Some(enc.child_ref(node, self.base)?),
        };
        Ok((reference, enc.finish()))
    }
}

/// The root branch of a trie split by [`TrieUpdate::split_root`]: what it held before the
/// update besides its children.
#[derive(Debug)]
pub struct RootBranch {
    /// Its hash and encoding before the update, when it was loaded (not a new root).
    old: Option<(B256, Vec<u8>)>,
    /// Whether that encoding was rebuilt, not stored.
    rebuilt: bool,
    value: Option<Vec<u8>>,
}

impl RootBranch {
    /// The root over the parts' references (by nibble) and its commit (the root's write or
    /// nothing if unchanged, and its old encoding among the replaced), to which the caller adds
    /// the parts' commits ([`TrieCommit::append`]). `None` when the root would not stay a
    /// branch (fewer than two children left and no value): such a trie is updated whole.
    pub fn join(self, refs: &[Option<RlpNode>; 16]) -> Result<Option<TrieCommit>> {
        let children = refs.iter().flatten().count();
        if children < 2 && !(children == 1 && self.value.is_some()) {
            return Ok(None);
        }
        let mut loaded = HashMap::default();
        let mut rebuilt = HashSet::default();
        if let Some(old) = self.old {
            loaded.insert(Nibbles::new(), old);
            if self.rebuilt {
                rebuilt.insert(Nibbles::new());
            }
        }
        let mut enc = Encoder::new(loaded, &rebuilt);
        encode_branch(refs, self.value.as_deref(), &mut enc.buf);
        let rlp = enc.buf.clone();
        let hash = keccak256(&rlp);
        enc.store(Nibbles::new(), hash, rlp, false);
        let mut out = enc.finish();
        out.root = hash;
        Ok(Some(out))
    }
}
