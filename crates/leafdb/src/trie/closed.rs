//! The streaming builder's closed nodes: branches and extensions whose children are all known
//! but whose encodings and hashes wait, so that many can be hashed together.
//!
//! A closed node may hold other closed nodes, so the table is settled in levels: first the
//! nodes with no closed child, then those whose closed children are all in the first level, and
//! so on. Each level is one batch for [`hash_spans`]. Nodes are closed children first (a
//! post-order), so a node's closed children always stand before it in the table.

use std::ops::Range;

use alloy_primitives::B256;
use alloy_trie::{Nibbles, nodes::RlpNode};

use super::{
    keccak::hash_spans,
    node::{append_branch, append_extension},
};
use crate::error::{LeafDbError, Result};

/// A child's reference in an open or closed parent.
#[derive(Debug, Clone)]
pub(super) enum Child {
    Ready(RlpNode),
    /// A closed node, by its index in the table.
    Closed(usize),
}

/// A closed node's contents.
#[allow(clippy::large_enum_variant, reason = "nearly every closed node is a branch")]
enum ClosedNode {
    Branch([Option<Child>; 16]),
    Extension { key: Nibbles, child: Child },
}

impl ClosedNode {
    fn closed_children(&self) -> impl Iterator<Item = usize> + '_ {
        let closed = |c: &Child| match c {
            Child::Closed(i) => Some(*i),
            Child::Ready(_) => None,
        };
        let (branch, extension) = match self {
            Self::Branch(children) => (Some(children.iter().flatten().filter_map(closed)), None),
            Self::Extension { child, .. } => (None, closed(child)),
        };
        branch.into_iter().flatten().chain(extension)
    }
}

/// What goes to the sink once the table is settled, in the order it was built.
enum Emit {
    /// A closed node, by index: handed over when its encoding is hashed (32 bytes or more).
    Node(usize),
    /// A leaf built while closed nodes were waiting, its encoding in `Closed::leaves`.
    Leaf { path: Nibbles, span: Range<usize> },
}

/// The closed nodes waiting to be encoded and hashed, and the emissions queued behind them.
#[derive(Default)]
pub(super) struct Closed {
    nodes: Vec<(Nibbles, ClosedNode)>,
    emits: Vec<Emit>,
    /// Encodings of the leaves in `emits`.
    leaves: Vec<u8>,
    // Scratch space of `settle`, kept between calls:
    /// Each closed node's level: 0 without closed children, else one above its highest child.
    levels: Vec<u32>,
    /// The closed nodes' encodings end to end, and where each one stands.
    rlp: Vec<u8>,
    spans: Vec<Range<usize>>,
    /// Each settled node's reference in its parent.
    refs: Vec<Option<RlpNode>>,
    /// One level's encodings to hash (32 bytes or more, or the root), whose they are, and
    /// their hashes.
    batch: Vec<Range<usize>>,
    batch_nodes: Vec<usize>,
    hashes: Vec<B256>,
}

/// The settled table's emissions, handed to a sink by [`Closed::settle`]'s caller.
pub(super) trait Emitter {
    /// Takes a hashed branch or extension.
    fn node(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()>;
    /// Takes a leaf.
    fn leaf(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()>;
}

impl Closed {
    /// Empties the table (a builder that failed or was dropped midway leaves nodes behind),
    /// keeping its capacity.
    pub(super) fn clear(&mut self) {
        self.nodes.clear();
        self.emits.clear();
        self.leaves.clear();
    }

    /// Closed nodes waiting.
    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Closes a branch with `children` at `path`; returns its reference for its parent.
    pub(super) fn branch(&mut self, path: Nibbles, children: [Option<Child>; 16]) -> Child {
        self.close(path, ClosedNode::Branch(children))
    }

    /// Closes an extension of `key` over `child` at `path`; returns its reference.
    pub(super) fn extension(&mut self, path: Nibbles, key: Nibbles, child: Child) -> Child {
        self.close(path, ClosedNode::Extension { key, child })
    }

    fn close(&mut self, path: Nibbles, node: ClosedNode) -> Child {
        self.nodes.push((path, node));
        self.emits.push(Emit::Node(self.nodes.len() - 1));
        Child::Closed(self.nodes.len() - 1)
    }

    /// Queues a leaf for the sink behind the closed nodes, or, with none waiting, hands it over
    /// at once.
    pub(super) fn leaf(&mut self, path: Nibbles, rlp: &[u8], out: &mut impl Emitter) -> Result<()> {
        if self.nodes.is_empty() {
            return out.leaf(&path, rlp);
        }
        let start = self.leaves.len();
        self.leaves.extend_from_slice(rlp);
        self.emits.push(Emit::Leaf { path, span: start..self.leaves.len() });
        Ok(())
    }

    /// Encodes and hashes every closed node, level by level, replaces the references to them
    /// in `open` (the open branches' children) and hands everything queued to `out` in order.
    /// With `root`, the last closed node is the trie's root: it is handed over and hashed
    /// whatever its size, and its hash returned.
    pub(super) fn settle<'a>(
        &mut self,
        open: impl Iterator<Item = &'a mut [Option<Child>; 16]>,
        root: bool,
        out: &mut impl Emitter,
    ) -> Result<Option<B256>> {
        let n = self.nodes.len();
        let root_index = if root { n.checked_sub(1) } else { None };
        self.levels.clear();
        for (_, node) in &self.nodes {
            let level = node.closed_children().map(|j| self.levels[j] + 1).max().unwrap_or(0);
            self.levels.push(level);
        }
        self.rlp.clear();
        self.spans.clear();
        self.spans.resize(n, 0..0);
        self.refs.clear();
        self.refs.resize(n, None);
        let mut root_hash = None;
        let top = self.levels.iter().copied().max().unwrap_or(0);
        for level in 0..=top {
            self.batch.clear();
            self.batch_nodes.clear();
            for i in (0..n).filter(|&i| self.levels[i] == level) {
                let start = self.rlp.len();
                match &self.nodes[i].1 {
                    ClosedNode::Branch(children) => {
                        let mut refs: [Option<RlpNode>; 16] = Default::default();
                        for (r, child) in refs.iter_mut().zip(children) {
                            if let Some(child) = child {
                                *r = Some(resolved(child, &self.refs)?);
                            }
                        }
                        append_branch(&refs, None, &mut self.rlp);
                    }
                    ClosedNode::Extension { key, child } => {
                        let child = resolved(child, &self.refs)?;
                        append_extension(key, &child, &mut self.rlp);
                    }
                }
                let span = start..self.rlp.len();
                if span.len() >= 32 || root_index == Some(i) {
                    self.batch.push(span.clone());
                    self.batch_nodes.push(i);
                } else {
                    self.refs[i] = Some(RlpNode::from_rlp(&self.rlp[span.clone()]));
                }
                self.spans[i] = span;
            }
            hash_spans(&self.rlp, &self.batch, &mut self.hashes);
            for (&i, hash) in self.batch_nodes.iter().zip(&self.hashes) {
                self.refs[i] = Some(RlpNode::word_rlp(hash));
                if root_index == Some(i) {
                    root_hash = Some(*hash);
                }
            }
        }
        for children in open {
            for child in children.iter_mut().flatten() {
                if let Child::Closed(i) = *child {
                    *child = Child::Ready(resolved(&Child::Closed(i), &self.refs)?);
                }
            }
        }
        for emit in &self.emits {
            match emit {
                Emit::Node(i) => {
                    let rlp = &self.rlp[self.spans[*i].clone()];
                    if rlp.len() >= 32 || root_index == Some(*i) {
                        out.node(&self.nodes[*i].0, rlp)?;
                    }
                }
                Emit::Leaf { path, span } => out.leaf(path, &self.leaves[span.clone()])?,
            }
        }
        self.clear();
        Ok(root_hash)
    }
}

/// `child`'s reference, a closed one's from the levels settled so far.
fn resolved(child: &Child, refs: &[Option<RlpNode>]) -> Result<RlpNode> {
    match child {
        Child::Ready(r) => Ok(r.clone()),
        Child::Closed(j) => refs
            .get(*j)
            .and_then(Clone::clone)
            .ok_or(LeafDbError::Invariant("closed node settled before its child")),
    }
}
