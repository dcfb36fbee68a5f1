//! A streaming trie builder: it takes leaves in strictly increasing key order, all keys of one
//! length, and emits every node that a path-keyed store holds (each node whose RLP is 32 bytes or
//! more, and the root) with its path, as soon as the node is final. Memory stays bounded by the
//! key length (one open branch per level), so it serves bulk loads of any size and the subtrie
//! of a downloaded chunk alike.
//!
//! A leaf's node depends on the key after it (the longer common prefix with either neighbour
//! fixes its depth), so leaves wait in a short queue; a batch of them is encoded and hashed
//! together ([`super::keccak`]), then walked through the stack one by one. The sink sees the
//! same nodes in the same order as if each leaf were built on arrival, only up to a batch later.

use std::ops::Range;

use alloy_primitives::{B256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, nodes::RlpNode};

use super::{
    keccak::hash_spans,
    node::{append_leaf, encode_branch, encode_extension, encode_leaf},
};
use crate::error::{LeafDbError, Result};

/// Leaves built together (encoded, then hashed as one batch). Large enough to keep the
/// eight-way hash full, small enough that the queue's values stay a few KiB.
const LEAF_BATCH: usize = 64;

/// A branch whose children are not all known yet.
struct OpenBranch {
    /// Length of the branch's path.
    depth: usize,
    children: [Option<RlpNode>; 16],
}

impl OpenBranch {
    fn new(depth: usize) -> Self {
        Self { depth, children: Default::default() }
    }
}

/// Receives the nodes a builder emits: `(path, rlp)` for every node a store keeps (RLP of 32
/// bytes or more, and the root). Closures `FnMut(&Nibbles, &[u8]) -> Result<()>` are sinks.
pub trait NodeSink {
    /// Takes one branch or extension node.
    fn node(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()>;

    /// Takes one leaf node. A leafdb does not store leaves (they are rebuilt from the flat
    /// tables, see [`crate::db::TrieNodes`]); sinks that write the database skip them.
    fn leaf(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()> {
        self.node(path, rlp)
    }
}

/// A sink that passes on only branches and extensions: what a leafdb stores.
#[derive(Debug)]
pub struct NoLeaves<F>(pub F);

impl<F: NodeSink> NodeSink for NoLeaves<F> {
    fn node(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()> {
        self.0.node(path, rlp)
    }

    fn leaf(&mut self, _: &Nibbles, _: &[u8]) -> Result<()> {
        Ok(())
    }
}

impl<F: FnMut(&Nibbles, &[u8]) -> Result<()>> NodeSink for F {
    fn node(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()> {
        self(path, rlp)
    }
}

/// A sink that collects nodes, to be drained by its owner.
#[derive(Debug, Default)]
pub struct VecSink(pub Vec<(Nibbles, Vec<u8>)>);

impl NodeSink for VecSink {
    fn node(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()> {
        self.0.push((*path, rlp.to_vec()));
        Ok(())
    }
}

/// Streams sorted leaves into trie nodes; see the module docs.
pub struct StackBuilder<F> {
    stack: Vec<OpenBranch>,
    /// Leaves added and not yet built, in key order. The last always waits for its successor.
    queue: Vec<(Nibbles, Vec<u8>)>,
    /// Common-prefix length of the last built leaf's key with the first queued one (0 before
    /// any leaf is built).
    built_split: usize,
    /// The batch being built: leaf nodes end to end, each one's span, hash and split.
    batch: LeafBatch,
    /// How many leaves are built together ([`LEAF_BATCH`]; tests vary it).
    batch_size: usize,
    sink: F,
    buf: Vec<u8>,
    leaves: u64,
    stored_nodes: u64,
}

/// Scratch space for building a batch of leaves, kept between batches.
#[derive(Default)]
struct LeafBatch {
    nodes: Vec<u8>,
    spans: Vec<Range<usize>>,
    hashes: Vec<B256>,
    /// Each leaf's common-prefix length with its successor.
    splits: Vec<usize>,
}

impl<F> std::fmt::Debug for StackBuilder<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackBuilder")
            .field("leaves", &self.leaves)
            .field("stored_nodes", &self.stored_nodes)
            .finish_non_exhaustive()
    }
}

/// What a finished build produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildOutcome {
    /// The trie root hash.
    pub root: B256,
    /// Number of leaves added.
    pub leaves: u64,
    /// Number of nodes handed to the sink (leaves included).
    pub stored_nodes: u64,
}

impl<F: NodeSink> StackBuilder<F> {
    /// A builder handing stored nodes to `sink`.
    pub fn new(sink: F) -> Self {
        Self::with_batch(sink, LEAF_BATCH)
    }

    /// A builder building `batch_size` leaves at a time (at least one).
    fn with_batch(sink: F, batch_size: usize) -> Self {
        Self {
            // Empty until the first branch opens, then grown by doubling: a builder is made for
            // every account's storage (most hold a few slots, one or two levels), and room for
            // all 65 levels up front (~36 KiB) cost a large allocation and its page faults on
            // each of them (in a sync at 4M accounts ~1 s of CPU).
            stack: Vec::new(),
            queue: Vec::new(),
            built_split: 0,
            batch: LeafBatch::default(),
            batch_size: batch_size.max(1),
            sink,
            buf: Vec::with_capacity(600),
            leaves: 0,
            stored_nodes: 0,
        }
    }

    /// The sink, e.g. to drain collected nodes between leaves.
    pub fn sink_mut(&mut self) -> &mut F {
        &mut self.sink
    }

    /// Adds the next leaf. Keys must strictly increase and all have one length; values must not
    /// be empty (an empty value is a deletion, which a fresh build has no use for).
    pub fn add_leaf(&mut self, key: Nibbles, value: Vec<u8>) -> Result<()> {
        if value.is_empty() {
            return Err(LeafDbError::UnsortedInput { key: nibbles_hex(&key) });
        }
        if let Some((prev, _)) = self.queue.last()
            && (key.len() != prev.len() || key <= *prev)
        {
            return Err(LeafDbError::UnsortedInput { key: nibbles_hex(&key) });
        }
        self.leaves += 1;
        self.queue.push((key, value));
        if self.queue.len() > self.batch_size {
            self.build_queued(self.batch_size)?;
        }
        Ok(())
    }

    /// Builds the first `n` queued leaves, each of which has its successor in the queue: their
    /// nodes are encoded and hashed as one batch, then each hangs from the stack in turn.
    fn build_queued(&mut self, n: usize) -> Result<()> {
        let LeafBatch { nodes, spans, hashes, splits } = &mut self.batch;
        nodes.clear();
        spans.clear();
        splits.clear();
        // A leaf hangs from the deeper of the branches it shares with either neighbour.
        let mut prev_split = self.built_split;
        for pair in self.queue[..=n].windows(2) {
            let ((key, value), (next, _)) = (&pair[0], &pair[1]);
            let split = key.common_prefix_length(next);
            let start = nodes.len();
            append_leaf(&key.slice(prev_split.max(split) + 1..), value, nodes);
            spans.push(start..nodes.len());
            splits.push(split);
            prev_split = split;
        }
        hash_spans(nodes, spans, hashes);
        for i in 0..n {
            let key = self.queue[i].0;
            let split = self.batch.splits[i];
            if self.stack.last().is_none_or(|top| split > top.depth) {
                self.stack.push(OpenBranch::new(split));
            }
            let depth = self.stack.last().map_or(0, |b| b.depth);
            let span = self.batch.spans[i].clone();
            let rlp = &self.batch.nodes[span];
            let node = if rlp.len() < 32 {
                RlpNode::from_rlp(rlp)
            } else {
                self.stored_nodes += 1;
                self.sink.leaf(&key.slice(..depth + 1), rlp)?;
                RlpNode::word_rlp(&self.batch.hashes[i])
            };
            if let Some(top) = self.stack.last_mut() {
                top.children[key.get_unchecked(depth) as usize] = Some(node);
            }
            self.close_above(&key, split)?;
        }
        self.built_split = prev_split;
        self.queue.drain(..n);
        Ok(())
    }

    /// Finishes the trie, emits the remaining nodes and returns the root.
    pub fn finish(self) -> Result<BuildOutcome> {
        self.finish_into().map(|(outcome, _)| outcome)
    }

    /// Like [`Self::finish`], also handing back the sink (with what it collected).
    pub fn finish_into(mut self) -> Result<(BuildOutcome, F)> {
        if self.queue.len() > 1 {
            self.build_queued(self.queue.len() - 1)?;
        }
        let root = match self.queue.pop() {
            None => EMPTY_ROOT_HASH,
            Some((key, value)) if self.stack.is_empty() => {
                encode_leaf(&key, &value, &mut self.buf);
                self.emit_root(true)?
            }
            Some((key, value)) => {
                self.attach_leaf(&key, &value)?;
                // Fold every branch into its parent until only the shallowest is open.
                while self.stack.len() > 1 {
                    let parent_depth = self.stack[self.stack.len() - 2].depth;
                    self.close_above(&key, parent_depth)?;
                }
                let top = self.stack.pop().ok_or(LeafDbError::Invariant("builder stack empty"))?;
                encode_branch(&top.children, None, &mut self.buf);
                if top.depth == 0 {
                    self.emit_root(false)?
                } else {
                    let child = self.emit(&key.slice(..top.depth), false)?;
                    encode_extension(&key.slice(..top.depth), &child, &mut self.buf);
                    self.emit_root(false)?
                }
            }
        };
        let outcome = BuildOutcome { root, leaves: self.leaves, stored_nodes: self.stored_nodes };
        Ok((outcome, self.sink))
    }

    /// Hangs the leaf for `key` from the top open branch (the last leaf, which has no successor).
    fn attach_leaf(&mut self, key: &Nibbles, value: &[u8]) -> Result<()> {
        let depth = self.stack.last().map_or(0, |b| b.depth);
        encode_leaf(&key.slice(depth + 1..), value, &mut self.buf);
        let r = self.emit(&key.slice(..depth + 1), true)?;
        if let Some(top) = self.stack.last_mut() {
            top.children[key.get_unchecked(depth) as usize] = Some(r);
        }
        Ok(())
    }

    /// Closes every open branch deeper than `depth`, attaching each to its parent (through an
    /// extension where levels are skipped). `key` is any key below the branches being closed.
    fn close_above(&mut self, key: &Nibbles, depth: usize) -> Result<()> {
        while let Some(top) = self.stack.last() {
            if top.depth <= depth {
                break;
            }
            let Some(branch) = self.stack.pop() else { break };
            encode_branch(&branch.children, None, &mut self.buf);
            let mut r = self.emit(&key.slice(..branch.depth), false)?;
            let parent_depth = match self.stack.last() {
                Some(p) if p.depth >= depth => p.depth,
                _ => {
                    self.stack.push(OpenBranch::new(depth));
                    depth
                }
            };
            if branch.depth > parent_depth + 1 {
                encode_extension(&key.slice(parent_depth + 1..branch.depth), &r, &mut self.buf);
                r = self.emit(&key.slice(..parent_depth + 1), false)?;
            }
            if let Some(parent) = self.stack.last_mut() {
                parent.children[key.get_unchecked(parent_depth) as usize] = Some(r);
            }
        }
        Ok(())
    }

    /// Turns the node in `self.buf` (a leaf if `leaf`) into a reference, handing it to the
    /// sink when it is hashed.
    fn emit(&mut self, path: &Nibbles, leaf: bool) -> Result<RlpNode> {
        let r = RlpNode::from_rlp(&self.buf);
        if r.is_hash() {
            self.hand_over(path, leaf)?;
        }
        Ok(r)
    }

    /// Hands the node in `self.buf` to the sink as the root, whatever its size, and returns
    /// its hash.
    fn emit_root(&mut self, leaf: bool) -> Result<B256> {
        self.hand_over(&Nibbles::new(), leaf)?;
        Ok(keccak256(&self.buf))
    }

    fn hand_over(&mut self, path: &Nibbles, leaf: bool) -> Result<()> {
        self.stored_nodes += 1;
        if leaf { self.sink.leaf(path, &self.buf) } else { self.sink.node(path, &self.buf) }
    }
}

/// Hex digits of a nibble path, for messages.
pub fn nibbles_hex(n: &Nibbles) -> String {
    n.to_vec().iter().map(|d| char::from_digit(u32::from(*d), 16).unwrap_or('?')).collect()
}

/// Root of a trie over already sorted leaves, storing nothing.
pub fn root_of_sorted<I>(leaves: I) -> Result<B256>
where
    I: IntoIterator<Item = (Nibbles, Vec<u8>)>,
{
    let mut b = StackBuilder::new(|_: &Nibbles, _: &[u8]| Ok(()));
    for (k, v) in leaves {
        b.add_leaf(k, v)?;
    }
    Ok(b.finish()?.root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_trie::HashBuilder;
    use proptest::prelude::*;

    fn alloy_root(leaves: &[(Nibbles, Vec<u8>)]) -> B256 {
        let mut hb = HashBuilder::default();
        for (k, v) in leaves {
            hb.add_leaf(*k, v);
        }
        hb.root()
    }

    /// The root and every node handed to the sink, in order, building `batch` leaves at a time.
    fn built(
        leaves: &[(Nibbles, Vec<u8>)],
        batch: usize,
    ) -> (BuildOutcome, Vec<(Nibbles, Vec<u8>)>) {
        let mut b = StackBuilder::with_batch(VecSink::default(), batch);
        for (k, v) in leaves {
            b.add_leaf(*k, v.clone()).unwrap();
        }
        let (outcome, sink) = b.finish_into().unwrap();
        (outcome, sink.0)
    }

    proptest! {
        /// The root is alloy-trie's, and batching changes when nodes are built, not which or in
        /// what order: one leaf at a time (the builder without batches) is the reference. Values
        /// up to 200 bytes make leaves inline (under 32 bytes), one hash block and several.
        #[test]
        fn root_equals_hash_builder_at_every_batch_size(
            keys in proptest::collection::btree_set(proptest::collection::vec(0u8..16, 8), 0..300),
            vlen in 1usize..200,
        ) {
            let leaves: Vec<_> = keys
                .iter()
                .map(|k| (Nibbles::from_nibbles(k), vec![k[1]; 1 + (vlen + k[0] as usize * 13) % 200]))
                .collect();
            let one = built(&leaves, 1);
            prop_assert_eq!(one.0.root, alloy_root(&leaves));
            prop_assert_eq!(root_of_sorted(leaves.clone()).unwrap(), one.0.root);
            for batch in [2, 3, 9, 64] {
                prop_assert_eq!(&built(&leaves, batch), &one);
            }
        }

        /// The same over 32-byte keys, as every Ethereum trie has.
        #[test]
        fn hashed_keys_build_the_same_in_batches(
            keys in proptest::collection::btree_set(proptest::array::uniform32(0u8..), 0..400),
        ) {
            let leaves: Vec<_> = keys
                .iter()
                .map(|k| (Nibbles::unpack(k), k[..1 + k[0] as usize % 32].to_vec()))
                .collect();
            let one = built(&leaves, 1);
            prop_assert_eq!(one.0.root, alloy_root(&leaves));
            prop_assert_eq!(&built(&leaves, LEAF_BATCH), &one);
        }
    }

    #[test]
    fn rejects_unsorted_and_mixed_lengths() {
        let mut b = StackBuilder::new(|_: &Nibbles, _: &[u8]| Ok(()));
        b.add_leaf(Nibbles::from_nibbles([2, 2]), vec![1]).unwrap();
        assert!(b.add_leaf(Nibbles::from_nibbles([1, 1]), vec![1]).is_err());
        let mut b = StackBuilder::new(|_: &Nibbles, _: &[u8]| Ok(()));
        b.add_leaf(Nibbles::from_nibbles([2, 2]), vec![1]).unwrap();
        assert!(b.add_leaf(Nibbles::from_nibbles([2, 2, 3]), vec![1]).is_err());
    }
}
