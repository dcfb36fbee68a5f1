//! Trie-node answers: skeleton nodes expand into chunks; heal nodes walk down where the local
//! trie differs and are committed bottom-up, so a stored node always has its whole subtree.

use std::collections::HashMap;

use alloy_primitives::{B256, keccak256};
use alloy_trie::Nibbles;
use leafsync_leafdb::{
    KvStore,
    trie::{DecodedNode, checked_join, checked_push},
};
use leafsync_p2p::leaf::Nodes;

use crate::{
    error::SyncError,
    syncer::Syncer,
    tasks::{Attempts, NodeTask, Owner, Purpose},
};

/// A fetched node waiting for `missing` children before it is written.
#[derive(Debug)]
struct Pending {
    rlp: Vec<u8>,
    missing: usize,
    parent: Option<Nibbles>,
}

/// Heal bookkeeping: fetched nodes not yet written, and the roots of healed subtries.
#[derive(Debug, Default)]
pub(crate) struct HealState {
    pending: HashMap<(Owner, Nibbles), Pending>,
    roots: HashMap<(Owner, Nibbles), B256>,
}

impl HealState {
    pub(crate) fn add_root(&mut self, owner: Owner, path: Nibbles, hash: B256) {
        self.roots.insert((owner, path), hash);
    }

    pub(crate) fn has_root(&self, owner: Owner, path: Nibbles) -> bool {
        self.roots.contains_key(&(owner, path))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.roots.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

/// `path` extended by `suffix` (the leafdb's checked join): a hash-verified node of a malformed
/// (attacker-chosen) pivot trie can reach past 64 nibbles, and must end the sync, not the
/// process.
fn child_path(path: &Nibbles, suffix: &Nibbles) -> Result<Nibbles, SyncError> {
    checked_join(path, suffix).map_err(|_| SyncError::PathTooLong)
}

/// `path` extended by one nibble; see [`child_path`].
fn child_at(path: &Nibbles, nibble: u8) -> Result<Nibbles, SyncError> {
    checked_push(path, nibble).map_err(|_| SyncError::PathTooLong)
}

/// The hashed children of a node with their paths.
fn hashed_children(path: &Nibbles, node: &DecodedNode) -> Result<Vec<(Nibbles, B256)>, SyncError> {
    match node {
        DecodedNode::Leaf { .. } => Ok(Vec::new()),
        DecodedNode::Extension { key, child } => match child.as_hash() {
            Some(h) => Ok(vec![(child_path(path, key)?, h)]),
            None => Ok(Vec::new()),
        },
        DecodedNode::Branch { children, .. } => {
            let mut out = Vec::new();
            for (i, c) in children.iter().enumerate() {
                if let Some(h) = c.as_ref().and_then(|c| c.as_hash()) {
                    out.push((child_at(path, i as u8)?, h));
                }
            }
            Ok(out)
        }
    }
}

impl<S: KvStore + 'static> Syncer<S> {
    /// A `Nodes` answer to `tasks`.
    pub(crate) async fn on_nodes(
        &mut self,
        peer: usize,
        tasks: Vec<NodeTask>,
        nodes: Nodes,
    ) -> Result<(), SyncError> {
        let mut delivered = 0usize;
        let mut wrong = false;
        let mut retry = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match nodes.nodes.get(i) {
                Some(rlp) if !wrong && !rlp.is_empty() => {
                    if keccak256(rlp) != task.hash {
                        wrong = true;
                        retry.push(task);
                        continue;
                    }
                    delivered += 1;
                    self.on_node(&task, rlp.to_vec())?;
                }
                _ => retry.push(task),
            }
        }
        if wrong {
            self.ban(peer, "node with the wrong hash").await;
        } else if delivered == 0 {
            self.on_empty(peer).await;
        } else {
            self.peers[peer].empties = 0;
        }
        for mut t in retry {
            t.attempts.tried.push(peer);
            self.nodes.push_back(t);
        }
        Ok(())
    }

    fn on_node(&mut self, task: &NodeTask, rlp: Vec<u8>) -> Result<(), SyncError> {
        let node =
            DecodedNode::decode(&rlp).map_err(|_| SyncError::BadPivotNode { hash: task.hash })?;
        match task.purpose {
            Purpose::Expand => self.expand(task, &node, rlp),
            Purpose::Heal { parent } => self.heal_node(task, &node, rlp, parent),
        }
    }

    /// A skeleton node: branch and extension children become chunks (or, above the chunk depth,
    /// further skeleton nodes); a leaf is a chunk by itself.
    fn expand(
        &mut self,
        task: &NodeTask,
        node: &DecodedNode,
        rlp: Vec<u8>,
    ) -> Result<(), SyncError> {
        self.stats.skeleton_nodes += 1;
        let limit = if task.owner.is_none() { self.depth } else { 0 };
        let children: Vec<(Nibbles, B256, bool)> = match node {
            DecodedNode::Leaf { .. } => {
                self.add_unit_of(task.owner, task.path, task.hash, true)?;
                return self.close(task.owner);
            }
            DecodedNode::Extension { key, child } => {
                let h = child.as_hash().unwrap_or_else(|| keccak256(child.as_ref()));
                vec![(child_path(&task.path, key)?, h, child.is_hash())]
            }
            DecodedNode::Branch { children, .. } => {
                let mut out = Vec::new();
                for (i, c) in children.iter().enumerate() {
                    if let Some(c) = c.as_ref() {
                        let h = c.as_hash().unwrap_or_else(|| keccak256(c.as_ref()));
                        out.push((child_at(&task.path, i as u8)?, h, c.is_hash()));
                    }
                }
                out
            }
        };
        self.skeleton.entry(task.owner).or_default().push((task.path, rlp));
        for (path, hash, is_hash) in children {
            if is_hash && path.len() < limit {
                self.add_expand(task.owner, path, hash);
            } else {
                self.add_unit(task.owner, path, hash)?;
            }
        }
        self.close(task.owner)
    }

    /// A heal node: children whose local node differs are fetched; once none is missing the node
    /// is written (and, recursively, parents whose last child it was).
    fn heal_node(
        &mut self,
        task: &NodeTask,
        node: &DecodedNode,
        rlp: Vec<u8>,
        parent: Option<Nibbles>,
    ) -> Result<(), SyncError> {
        let mut missing = 0;
        for (path, hash) in hashed_children(&task.path, node)? {
            let local = self.db.node(task.owner.as_ref(), &path)?;
            if local.is_some_and(|l| keccak256(l) == hash) {
                continue;
            }
            missing += 1;
            self.nodes.push_back(NodeTask {
                owner: task.owner,
                path,
                hash,
                purpose: Purpose::Heal { parent: Some(task.path) },
                attempts: Attempts::default(),
            });
        }
        self.heal.pending.insert((task.owner, task.path), Pending { rlp, missing, parent });
        if missing == 0 {
            self.commit(task.owner, task.path)?;
        }
        Ok(())
    }

    /// Writes the complete node at `path` and every ancestor it completes.
    fn commit(&mut self, owner: Owner, path: Nibbles) -> Result<(), SyncError> {
        let mut writes = Vec::new();
        let mut finished = Vec::new();
        let mut current = Some(path);
        while let Some(p) = current.take() {
            let Some(node) = self.heal.pending.remove(&(owner, p)) else { break };
            if self.heal.roots.remove(&(owner, p)).is_some() {
                finished.push((p, keccak256(&node.rlp)));
            }
            writes.push((p, node.rlp));
            if let Some(pp) = node.parent
                && let Some(parent) = self.heal.pending.get_mut(&(owner, pp))
            {
                parent.missing = parent.missing.saturating_sub(1);
                if parent.missing == 0 {
                    current = Some(pp);
                }
            }
        }
        self.stats.healed_nodes += writes.len() as u64;
        self.db.write_trie_nodes(owner.as_ref(), &writes)?;
        for (p, hash) in finished {
            self.heal_root_done(owner, p, hash)?;
        }
        Ok(())
    }

    /// A healed subtrie is complete: its flat entries are re-derived from it.
    fn heal_root_done(
        &mut self,
        owner: Owner,
        prefix: Nibbles,
        hash: B256,
    ) -> Result<(), SyncError> {
        self.resume_complete(owner, prefix, hash)?;
        // Only now: a crash before this point finds the heal root again and redoes the flat
        // rewrite (its top node is fetched once more, everything below is found complete).
        self.heal_root_finished(owner, &prefix, hash)?;
        if owner.is_some() { self.close(owner) } else { Ok(()) }
    }
}
