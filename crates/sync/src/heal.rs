//! Heal as a state machine without I/O: [`HealState::on_node`] takes a fetched heal node and
//! the local trie's hashes, and returns a [`HealStep`]: the children to fetch, the nodes now
//! complete (to write bottom-up, so a stored node always has its whole subtree) and the heal
//! roots that finished. [`children`] also serves the skeleton's expansion.

use std::collections::HashMap;

use alloy_primitives::{B256, keccak256};
use alloy_trie::Nibbles;
use leafsync_leafdb::trie::{DecodedNode, checked_join, checked_push};

use crate::{error::SyncError, tasks::Owner};

/// A child reference of a trie node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Child {
    /// The child's path.
    pub(crate) path: Nibbles,
    /// Its hash (of its RLP when it is embedded).
    pub(crate) hash: B256,
    /// Whether the parent references it by hash (else it is embedded in the parent).
    pub(crate) by_hash: bool,
}

/// The children of `node` at `path`. A hash-verified node of a malformed (attacker-chosen)
/// pivot trie can reach past 64 nibbles: that ends the sync, not the process.
pub(crate) fn children(path: &Nibbles, node: &DecodedNode) -> Result<Vec<Child>, SyncError> {
    let child = |path: Nibbles, c: &alloy_trie::nodes::RlpNode| Child {
        path,
        hash: c.as_hash().unwrap_or_else(|| keccak256(c.as_ref())),
        by_hash: c.is_hash(),
    };
    match node {
        DecodedNode::Leaf { .. } => Ok(Vec::new()),
        DecodedNode::Extension { key, child: c } => {
            let p = checked_join(path, key).map_err(|_| SyncError::PathTooLong)?;
            Ok(vec![child(p, c)])
        }
        DecodedNode::Branch { children, .. } => {
            let mut out = Vec::new();
            for (i, c) in children.iter().enumerate() {
                if let Some(c) = c {
                    let p = checked_push(path, i as u8).map_err(|_| SyncError::PathTooLong)?;
                    out.push(child(p, c));
                }
            }
            Ok(out)
        }
    }
}

/// A fetched node waiting for `missing` children before it is written.
#[derive(Debug)]
struct Pending {
    rlp: Vec<u8>,
    missing: usize,
    parent: Option<Nibbles>,
    /// Paths of the children below it (gathered from its own and, as they are written, from
    /// its descendants) that matched the local trie and were not fetched.
    kept: Vec<Nibbles>,
}

/// A heal root whose subtrie is complete.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Finished {
    pub(crate) path: Nibbles,
    pub(crate) hash: B256,
    /// Every subtrie below it that matched the local trie, so was neither fetched nor written
    /// (in no order): where the tables held a complete state, their flat entries are right.
    pub(crate) kept: Vec<Nibbles>,
}

/// What one heal node leads to.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct HealStep {
    /// Children whose local node differs or is missing: fetch them (path, hash).
    pub(crate) fetch: Vec<(Nibbles, B256)>,
    /// Nodes now complete, children before parents: write them.
    pub(crate) commit: Vec<(Nibbles, Vec<u8>)>,
    /// Heal roots whose subtrie is now complete.
    pub(crate) finished: Vec<Finished>,
}

/// Heal bookkeeping: fetched nodes not yet written, and the roots of healed subtries.
#[derive(Debug, Default)]
pub(crate) struct HealState {
    pending: HashMap<(Owner, Nibbles), Pending>,
    roots: HashMap<(Owner, Nibbles), B256>,
    /// Whether subtries found unchanged are gathered for [`Finished::kept`] (only a heal over
    /// tables that held a complete state uses them; elsewhere they would only cost memory).
    gather_kept: bool,
}

impl HealState {
    pub(crate) fn add_root(&mut self, owner: Owner, path: Nibbles, hash: B256) {
        self.roots.insert((owner, path), hash);
    }

    /// Sets whether subtries found unchanged are gathered (see [`Finished::kept`]).
    pub(crate) fn gather_kept(&mut self, on: bool) {
        self.gather_kept = on;
    }

    /// The heal roots not yet complete.
    pub(crate) fn roots(&self) -> impl Iterator<Item = (Owner, Nibbles)> + '_ {
        self.roots.keys().copied()
    }

    pub(crate) fn has_root(&self, owner: Owner, path: Nibbles) -> bool {
        self.roots.contains_key(&(owner, path))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.roots.is_empty()
    }

    /// Fetched nodes waiting for their children.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// The heal node at `owner`/`path` (whose pending parent is `parent`, `None` for a heal
    /// root) arrived, decoded as `node` with encoding `rlp`. `local_hash` gives the hash of the
    /// local node at a path: children that differ are fetched; once none is missing the node
    /// is committed, and with it every pending ancestor it completes.
    pub(crate) fn on_node(
        &mut self,
        owner: Owner,
        path: Nibbles,
        parent: Option<Nibbles>,
        node: &DecodedNode,
        rlp: Vec<u8>,
        mut local_hash: impl FnMut(&Nibbles) -> Result<Option<B256>, SyncError>,
    ) -> Result<HealStep, SyncError> {
        let mut step = HealStep::default();
        let mut kept = Vec::new();
        for child in children(&path, node)?.into_iter().filter(|c| c.by_hash) {
            if local_hash(&child.path)? == Some(child.hash) {
                if self.gather_kept {
                    kept.push(child.path);
                }
            } else {
                step.fetch.push((child.path, child.hash));
            }
        }
        let missing = step.fetch.len();
        self.pending.insert((owner, path), Pending { rlp, missing, parent, kept });
        if missing == 0 {
            self.commit(owner, path, &mut step);
        }
        Ok(step)
    }

    /// Takes the complete node at `path` and every ancestor it completes into `step`.
    fn commit(&mut self, owner: Owner, path: Nibbles, step: &mut HealStep) {
        let mut current = Some(path);
        while let Some(p) = current.take() {
            let Some(mut node) = self.pending.remove(&(owner, p)) else { break };
            if self.roots.remove(&(owner, p)).is_some() {
                let (hash, kept) = (keccak256(&node.rlp), std::mem::take(&mut node.kept));
                step.finished.push(Finished { path: p, hash, kept });
            }
            step.commit.push((p, node.rlp));
            if let Some(pp) = node.parent
                && let Some(parent) = self.pending.get_mut(&(owner, pp))
            {
                parent.kept.append(&mut node.kept);
                parent.missing = parent.missing.saturating_sub(1);
                if parent.missing == 0 {
                    current = Some(pp);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use alloy_trie::nodes::RlpNode;

    use super::*;

    fn branch(children: &[(u8, B256)]) -> DecodedNode {
        let mut refs: [Option<RlpNode>; 16] = Default::default();
        for (i, h) in children {
            refs[*i as usize] = Some(RlpNode::word_rlp(h));
        }
        DecodedNode::Branch { children: Box::new(refs), value: None }
    }

    fn at(nibbles: &[u8]) -> Nibbles {
        Nibbles::from_nibbles(nibbles)
    }

    #[test]
    fn a_heal_node_with_three_differing_children_asks_for_three_nodes_and_commits_nothing() {
        let mut heal = HealState::default();
        heal.add_root(None, Nibbles::new(), B256::ZERO);
        let node = branch(&[
            (1, B256::repeat_byte(1)),
            (2, B256::repeat_byte(2)),
            (3, B256::repeat_byte(3)),
        ]);
        let step =
            heal.on_node(None, Nibbles::new(), None, &node, vec![0xc0], |_| Ok(None)).unwrap();
        assert_eq!(step.fetch.len(), 3);
        assert_eq!(step.fetch[0], (at(&[1]), B256::repeat_byte(1)));
        assert!(step.commit.is_empty() && step.finished.is_empty());
        assert_eq!(heal.len(), 1);
    }

    #[test]
    fn children_that_match_the_local_trie_are_not_fetched() {
        let mut heal = HealState::default();
        let node = branch(&[(1, B256::repeat_byte(1)), (2, B256::repeat_byte(2))]);
        let local = |p: &Nibbles| Ok((*p == at(&[1])).then(|| B256::repeat_byte(1)));
        let step = heal.on_node(None, Nibbles::new(), None, &node, vec![0xc0], local).unwrap();
        assert_eq!(step.fetch, vec![(at(&[2]), B256::repeat_byte(2))]);
    }

    #[test]
    fn the_last_child_commits_its_parents_bottom_up_and_finishes_the_root() {
        let mut heal = HealState::default();
        let root_rlp = vec![0xc1, 0x80];
        heal.add_root(None, Nibbles::new(), keccak256(&root_rlp));
        let node = branch(&[(1, B256::repeat_byte(1)), (2, B256::repeat_byte(2))]);
        heal.on_node(None, Nibbles::new(), None, &node, root_rlp.clone(), |_| Ok(None)).unwrap();
        let leaf = DecodedNode::Leaf { key: at(&[5]), value: vec![1] };
        let first =
            heal.on_node(None, at(&[1]), Some(Nibbles::new()), &leaf, vec![1], |_| Ok(None));
        assert_eq!(first.unwrap().commit, vec![(at(&[1]), vec![1])], "a leaf is complete at once");
        let last = heal.on_node(None, at(&[2]), Some(Nibbles::new()), &leaf, vec![2], |_| Ok(None));
        let last = last.unwrap();
        assert_eq!(last.commit, vec![(at(&[2]), vec![2]), (Nibbles::new(), root_rlp.clone())]);
        let root = Finished { path: Nibbles::new(), hash: keccak256(&root_rlp), kept: Vec::new() };
        assert_eq!(last.finished, vec![root]);
        assert!(heal.is_empty());
    }

    #[test]
    fn the_subtries_found_unchanged_anywhere_below_are_handed_up_to_the_finished_root() {
        let mut heal = HealState::default();
        heal.gather_kept(true);
        let root_rlp = vec![0xc1, 0x80];
        heal.add_root(None, Nibbles::new(), keccak256(&root_rlp));
        let local = |p: &Nibbles| {
            Ok([at(&[1]), at(&[2, 5])].contains(p).then(|| B256::repeat_byte(p.len() as u8)))
        };
        let top = branch(&[(1, B256::repeat_byte(1)), (2, B256::repeat_byte(2))]);
        let step = heal.on_node(None, Nibbles::new(), None, &top, root_rlp, local).unwrap();
        assert_eq!(step.fetch, vec![(at(&[2]), B256::repeat_byte(2))]);
        let mid = branch(&[(5, B256::repeat_byte(2)), (6, B256::repeat_byte(6))]);
        let step = heal.on_node(None, at(&[2]), Some(Nibbles::new()), &mid, vec![2], local);
        assert_eq!(step.unwrap().fetch, vec![(at(&[2, 6]), B256::repeat_byte(6))]);
        let leaf = DecodedNode::Leaf { key: at(&[7]), value: vec![1] };
        let last = heal.on_node(None, at(&[2, 6]), Some(at(&[2])), &leaf, vec![3], local).unwrap();
        let mut kept = last.finished.into_iter().map(|f| f.kept).next().unwrap();
        kept.sort_unstable();
        assert_eq!(kept, vec![at(&[1]), at(&[2, 5])]);
    }

    #[test]
    fn a_path_past_64_nibbles_ends_the_sync() {
        let deep = Nibbles::from_nibbles([0u8; 64]);
        let node = branch(&[(1, B256::repeat_byte(1))]);
        let mut heal = HealState::default();
        let result = heal.on_node(None, deep, None, &node, vec![0xc0], |_| Ok(None));
        assert!(matches!(result, Err(SyncError::PathTooLong)));
    }
}
