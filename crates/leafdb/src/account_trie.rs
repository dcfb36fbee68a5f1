//! The account trie of one block, split at its root branch into up to 16 subtries that load,
//! change and hash independently, so `apply_block` commits them on several threads and then
//! re-encodes only the root. A trie whose root is not a plain branch of hashed children (small
//! states), or a block that would leave a subtrie empty or inline, takes the whole-trie path:
//! one [`TrieUpdate`] over every change, with the same result.

use alloy_primitives::{B256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, nodes::RlpNode};
use tracing::debug;

use crate::{
    error::{LeafDbError, Result},
    trie::{DecodedNode, NodeSource, TrieCommit, TrieUpdate, node::encode_branch},
};

/// A leaf change of the account trie: the new leaf value, or `None` to delete the leaf.
pub(crate) type LeafChange = (Nibbles, Option<Vec<u8>>);

/// Children of a branch: the subtries of a split root.
const SUBTRIES: usize = 16;

/// The root branch and the subtries below it that the block touches.
pub(crate) struct SplitRoot<'n, N> {
    /// The root's hash and encoding before the block.
    root: (B256, Vec<u8>),
    /// The root's child references (before the block, then as committed).
    children: Box<[Option<RlpNode>; 16]>,
    /// One update per child nibble, created when a key below it is first touched.
    subs: Vec<Option<TrieUpdate<'n, N>>>,
    /// The sources of the 16 subtries (the account trie below each one-nibble path).
    sources: &'n [N],
}

/// The account trie during a block: split at the root, or whole.
pub(crate) enum AccountTrie<'n, N> {
    /// Up to 16 subtries updated apart.
    Split(SplitRoot<'n, N>),
    /// One update of the whole trie.
    Whole(TrieUpdate<'n, N>),
}

impl<'n, N: NodeSource + Sync> AccountTrie<'n, N> {
    /// Opens the trie at `root` from `whole` (the account trie), split when its root is a
    /// branch without a value whose children are all referred to by hash. `sources` are the
    /// subtries below the paths `0`..`f`, in order.
    pub(crate) fn open(whole: &'n N, sources: &'n [N], root: B256) -> Result<Self> {
        if root == EMPTY_ROOT_HASH || sources.len() != SUBTRIES {
            return Ok(Self::Whole(TrieUpdate::new(whole, root)));
        }
        let rlp = whole.load_verified(&Nibbles::new(), root)?;
        let DecodedNode::Branch { children, value: None } = DecodedNode::decode(&rlp)? else {
            return Ok(Self::Whole(TrieUpdate::new(whole, root)));
        };
        if children.iter().flatten().any(|c| !c.is_hash()) {
            return Ok(Self::Whole(TrieUpdate::new(whole, root)));
        }
        let subs = (0..SUBTRIES).map(|_| None).collect();
        Ok(Self::Split(SplitRoot { root: (root, rlp), children, subs, sources }))
    }

    /// Loads the stored nodes on `key`'s path (see [`TrieUpdate::touch`]).
    pub(crate) fn touch(&mut self, key: &Nibbles) -> Result<()> {
        match self {
            Self::Whole(up) => up.touch(key),
            Self::Split(split) => {
                let (sub, rest) = split.sub(key)?;
                sub.touch(&rest)
            }
        }
    }

    /// Applies `changes` and commits, the subtries on up to `workers` threads. Falls back to
    /// one whole-trie update through `whole` when the split cannot hold the result (a subtrie
    /// left empty, or small enough to be inlined in the root).
    pub(crate) fn commit(
        self,
        whole: &'n N,
        changes: &[LeafChange],
        workers: usize,
    ) -> Result<TrieCommit> {
        let split = match self {
            Self::Whole(up) => return commit_whole(up, changes),
            Self::Split(split) => split,
        };
        let old_root = split.root.0;
        match split.commit(changes, workers)? {
            Some(commit) => Ok(commit),
            None => {
                debug!("account trie: a subtrie emptied or inlined, whole-trie commit");
                commit_whole(TrieUpdate::new(whole, old_root), changes)
            }
        }
    }
}

/// Applies `changes` to one update and commits it.
fn commit_whole<N: NodeSource + ?Sized>(
    mut up: TrieUpdate<'_, N>,
    changes: &[LeafChange],
) -> Result<TrieCommit> {
    for (key, value) in changes {
        match value {
            Some(v) => up.insert(key, v.clone())?,
            None => up.delete(key)?,
        }
    }
    up.commit()
}

impl<'n, N: NodeSource + Sync> SplitRoot<'n, N> {
    /// The update of the subtrie holding `key`, created on first use, and the rest of the key.
    fn sub(&mut self, key: &Nibbles) -> Result<(&mut TrieUpdate<'n, N>, Nibbles)> {
        let nibble = key.first().ok_or(LeafDbError::Invariant("empty account key"))?;
        let i = usize::from(nibble);
        let root = self.children[i].as_ref().and_then(RlpNode::as_hash).unwrap_or(EMPTY_ROOT_HASH);
        let source = &self.sources[i];
        let sub = self.subs[i].get_or_insert_with(|| TrieUpdate::new(source, root));
        Ok((sub, key.slice(1..)))
    }

    /// Applies `changes` to the subtries, commits them in parallel and re-encodes the root;
    /// `None` when the result does not fit the split (see [`AccountTrie::commit`]).
    fn commit(mut self, changes: &[LeafChange], workers: usize) -> Result<Option<TrieCommit>> {
        for (key, value) in changes {
            let (sub, rest) = self.sub(key)?;
            match value {
                Some(v) => sub.insert(&rest, v.clone())?,
                None => sub.delete(&rest)?,
            }
        }
        let mut subs: Vec<(u8, TrieUpdate<'n, N>)> = (0u8..)
            .zip(std::mem::take(&mut self.subs))
            .filter_map(|(i, s)| Some((i, s?)))
            .collect();
        if subs.is_empty() {
            return Ok(Some(TrieCommit { root: self.root.0, ..TrieCommit::default() }));
        }
        let per_thread = subs.len().div_ceil(workers.max(1));
        let commits = std::thread::scope(|scope| {
            let mut handles = Vec::new();
            while !subs.is_empty() {
                let part = subs.split_off(subs.len().saturating_sub(per_thread));
                handles.push(scope.spawn(move || {
                    part.into_iter()
                        .map(|(i, up)| Ok((i, up.commit()?)))
                        .collect::<Result<Vec<_>>>()
                }));
            }
            let mut out = Vec::new();
            for h in handles {
                out.extend(h.join().map_err(|_| LeafDbError::WorkerPanicked)??);
            }
            Ok::<_, LeafDbError>(out)
        })?;
        let mut out = TrieCommit::default();
        for (i, commit) in commits {
            if commit.root == EMPTY_ROOT_HASH
                || commit.writes.iter().any(|(p, rlp)| p.is_empty() && rlp.len() < 32)
            {
                return Ok(None);
            }
            self.children[usize::from(i)] = Some(RlpNode::word_rlp(&commit.root));
            let prefix = Nibbles::from_nibbles([i]);
            out.writes.extend(commit.writes.into_iter().map(|(p, rlp)| (prefix.join(&p), rlp)));
            out.deletes.extend(commit.deletes.into_iter().map(|p| prefix.join(&p)));
            out.replaced.extend(commit.replaced);
        }
        let mut rlp = Vec::with_capacity(600);
        encode_branch(&self.children, None, &mut rlp);
        out.root = keccak256(&rlp);
        if rlp != self.root.1 {
            out.replaced.push(self.root);
            out.writes.push((Nibbles::new(), rlp));
        }
        Ok(Some(out))
    }
}
