//! A streaming trie builder: it takes leaves in strictly increasing key order, all keys of one
//! length, and emits every node that a path-keyed store holds (each node whose RLP is 32 bytes or
//! more, and the root) with its path, children first, soon after the node is final. Memory stays
//! bounded by the key length (one open branch per level) and two small batches, so it serves
//! bulk loads of any size and the subtrie of a downloaded chunk alike.
//!
//! Hashing is batched (`keccak.rs` hashes independent nodes eight at a time). A leaf's node
//! depends on the key after it (the longer common prefix with either neighbour fixes its depth),
//! so leaves wait in a short queue; a batch of them is encoded and hashed together, then walked
//! through the stack one by one. A closed branch waits in a table (`closed.rs`) with its
//! closed siblings and descendants, and the table is encoded and hashed level by level once it
//! holds 256 nodes (and at the end). The sink sees the same nodes in the same order as
//! if each were built at once, only later.

use alloy_primitives::{B256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, nodes::RlpNode};

use super::{
    closed::{Child, Closed, Emitter},
    keccak::hash_spans,
    node::{append_leaf, encode_leaf},
};
use crate::error::{LeafDbError, Result};

/// Leaves built together (encoded, then hashed as one batch). Large enough to keep the
/// eight-way hash full, small enough that the queue's values stay a few KiB.
const LEAF_BATCH: usize = 64;
/// Closed nodes kept before they are encoded and hashed together: enough for full batches at
/// every level of a few subtries, about 200 KiB of table.
const SETTLE_AT: usize = 256;

/// A branch whose children are not all known yet.
struct OpenBranch {
    /// Length of the branch's path.
    depth: usize,
    children: [Option<Child>; 16],
}

impl OpenBranch {
    fn new(depth: usize) -> Self {
        Self { depth, children: Default::default() }
    }
}

/// Receives the nodes a builder emits: `(path, rlp)` for every node a store keeps (RLP of 32
/// bytes or more, and the root). Closures `FnMut(&Nibbles, &[u8]) -> Result<()>` are sinks.
pub trait NodeSink {
    /// Whether [`Self::leaf`] wants leaves at all: a sink that drops them says `false`, and the
    /// builder does not keep them for it.
    const TAKES_LEAVES: bool = true;

    /// Takes one branch or extension node.
    fn node(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()>;

    /// Takes one leaf node. A leafdb does not store leaves (they are rebuilt from the flat
    /// tables, see `nodes::TrieNodes`); sinks that write the database skip them.
    fn leaf(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()> {
        self.node(path, rlp)
    }
}

/// A sink that passes on only branches and extensions: what a leafdb stores.
#[derive(Debug)]
pub struct NoLeaves<F>(pub F);

impl<F: NodeSink> NodeSink for NoLeaves<F> {
    const TAKES_LEAVES: bool = false;

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

/// The sink as the closed-node table hands over to it, counting the nodes.
struct Handover<'a, F> {
    sink: &'a mut F,
    stored_nodes: &'a mut u64,
}

impl<F: NodeSink> Emitter for Handover<'_, F> {
    fn node(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()> {
        *self.stored_nodes += 1;
        self.sink.node(path, rlp)
    }

    /// Leaves are counted when they are built (a sink that takes none never sees them).
    fn leaf(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()> {
        self.sink.leaf(path, rlp)
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
    /// The leaf batch and the closed-node table, from this thread's spares.
    scratch: Scratch,
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
    spans: Vec<std::ops::Range<usize>>,
    hashes: Vec<B256>,
    splits: Vec<usize>,
}

/// A builder's working space: the batch of leaves being built (their encodings end to end,
/// each one's span, hash and common-prefix length with its successor) and the closed nodes not
/// yet encoded (with what waits to be emitted after them).
///
/// A builder is made for every account's storage, most of a few slots: allocating these
/// vectors afresh for each cost more than hashing saved, so a finished builder leaves its
/// space (emptied, capacity kept) to the next builder on its thread.
struct Scratch((LeafBatch, Closed));

/// Spares kept per thread: a leaf batch of 64 and a table of 256 nodes are ~200 KiB, and a
/// thread builds at most an account trie and one storage trie at once.
const SPARE_SCRATCH: usize = 2;

thread_local! {
    static SPARES: std::cell::RefCell<Vec<(LeafBatch, Closed)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Scratch {
    fn take() -> Self {
        let spare = SPARES.with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()));
        Self(spare.unwrap_or_default())
    }

    fn parts(&mut self) -> &mut (LeafBatch, Closed) {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let mut space = std::mem::take(&mut self.0);
        space.1.clear();
        let _ = SPARES.with(|s| {
            s.try_borrow_mut().map(|mut s| {
                if s.len() < SPARE_SCRATCH {
                    s.push(space);
                }
            })
        });
    }
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
            scratch: Scratch::take(),
            batch_size: batch_size.max(1),
            sink,
            buf: Vec::new(),
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
        let (LeafBatch { nodes, spans, hashes, splits }, _) = self.scratch.parts();
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
            let (batch, closed) = self.scratch.parts();
            let split = batch.splits[i];
            if self.stack.last().is_none_or(|top| split > top.depth) {
                self.stack.push(OpenBranch::new(split));
            }
            let depth = self.stack.last().map_or(0, |b| b.depth);
            let rlp = &batch.nodes[batch.spans[i].clone()];
            let node = if rlp.len() < 32 {
                RlpNode::from_rlp(rlp)
            } else {
                let (sink, stored_nodes) = (&mut self.sink, &mut self.stored_nodes);
                hand_leaf(sink, stored_nodes, closed, key.slice(..depth + 1), rlp)?;
                RlpNode::word_rlp(&batch.hashes[i])
            };
            if let Some(top) = self.stack.last_mut() {
                top.children[key.get_unchecked(depth) as usize] = Some(Child::Ready(node));
            }
            self.close_above(&key, split);
            if self.scratch.parts().1.len() >= SETTLE_AT {
                self.settle(false)?;
            }
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
                // A trie of one leaf: nothing is closed, so the leaf goes straight to the sink.
                encode_leaf(&key, &value, &mut self.buf);
                self.stored_nodes += 1;
                self.sink.leaf(&Nibbles::new(), &self.buf)?;
                keccak256(&self.buf)
            }
            Some((key, value)) => {
                self.attach_last(&key, &value)?;
                // Fold every branch into its parent until only the shallowest is open.
                while self.stack.len() > 1 {
                    let parent_depth = self.stack[self.stack.len() - 2].depth;
                    self.close_above(&key, parent_depth);
                }
                let top = self.stack.pop().ok_or(LeafDbError::Invariant("builder stack empty"))?;
                let closed = &mut self.scratch.parts().1;
                let branch = closed.branch(key.slice(..top.depth), top.children);
                if top.depth > 0 {
                    closed.extension(Nibbles::new(), key.slice(..top.depth), branch);
                }
                self.settle(true)?.ok_or(LeafDbError::Invariant("builder root not hashed"))?
            }
        };
        let outcome = BuildOutcome { root, leaves: self.leaves, stored_nodes: self.stored_nodes };
        Ok((outcome, self.sink))
    }

    /// Hangs the last leaf (which has no successor) from the top open branch.
    fn attach_last(&mut self, key: &Nibbles, value: &[u8]) -> Result<()> {
        let depth = self.stack.last().map_or(0, |b| b.depth);
        encode_leaf(&key.slice(depth + 1..), value, &mut self.buf);
        let node = RlpNode::from_rlp(&self.buf);
        if node.is_hash() {
            let closed = &mut self.scratch.parts().1;
            let (sink, stored_nodes) = (&mut self.sink, &mut self.stored_nodes);
            hand_leaf(sink, stored_nodes, closed, key.slice(..depth + 1), &self.buf)?;
        }
        if let Some(top) = self.stack.last_mut() {
            top.children[key.get_unchecked(depth) as usize] = Some(Child::Ready(node));
        }
        Ok(())
    }

    /// Closes every open branch deeper than `depth`, attaching each to its parent (through an
    /// extension where levels are skipped). `key` is any key below the branches being closed.
    fn close_above(&mut self, key: &Nibbles, depth: usize) {
        while let Some(top) = self.stack.last() {
            if top.depth <= depth {
                break;
            }
            let Some(branch) = self.stack.pop() else { break };
            let closed = &mut self.scratch.parts().1;
            let mut r = closed.branch(key.slice(..branch.depth), branch.children);
            let parent_depth = match self.stack.last() {
                Some(p) if p.depth >= depth => p.depth,
                _ => {
                    self.stack.push(OpenBranch::new(depth));
                    depth
                }
            };
            if branch.depth > parent_depth + 1 {
                let (path, ext) =
                    (key.slice(..parent_depth + 1), key.slice(parent_depth + 1..branch.depth));
                r = closed.extension(path, ext, r);
            }
            if let Some(parent) = self.stack.last_mut() {
                parent.children[key.get_unchecked(parent_depth) as usize] = Some(r);
            }
        }
    }

    /// Encodes and hashes the closed nodes and hands them to the sink; with `root`, the last
    /// one is the root and its hash is returned.
    fn settle(&mut self, root: bool) -> Result<Option<B256>> {
        let open = self.stack.iter_mut().map(|b| &mut b.children);
        let out = &mut Handover { sink: &mut self.sink, stored_nodes: &mut self.stored_nodes };
        self.scratch.parts().1.settle(open, root, out)
    }
}

/// Counts a hashed leaf and hands it to `sink` if the sink takes leaves: at once, or queued
/// behind the closed nodes waiting in `closed`.
fn hand_leaf<F: NodeSink>(
    sink: &mut F,
    stored_nodes: &mut u64,
    closed: &mut Closed,
    path: Nibbles,
    rlp: &[u8],
) -> Result<()> {
    *stored_nodes += 1;
    if F::TAKES_LEAVES {
        closed.leaf(path, rlp, &mut Handover { sink, stored_nodes })?;
    }
    Ok(())
}

/// Hex digits of a nibble path, for messages.
pub fn nibbles_hex(n: &Nibbles) -> String {
    n.to_vec().iter().map(|d| char::from_digit(u32::from(*d), 16).unwrap_or('?')).collect()
}

/// A trie builder that keeps no node: only its root is wanted.
pub(crate) type RootBuilder = StackBuilder<NoLeaves<fn(&Nibbles, &[u8]) -> Result<()>>>;

/// A [`RootBuilder`].
pub(crate) fn root_builder() -> RootBuilder {
    StackBuilder::new(NoLeaves(|_, _| Ok(())))
}

/// Root of a trie over already sorted leaves, storing nothing.
pub fn root_of_sorted<I>(leaves: I) -> Result<B256>
where
    I: IntoIterator<Item = (Nibbles, Vec<u8>)>,
{
    let mut b = root_builder();
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

    /// A plain recursive build of the trie below `path` (its first `depth` nibbles shared by all
    /// `leaves`), pushing every node of 32 bytes or more onto `out` children first: the
    /// reference for what and in what order a sink must see. Returns the node's encoding.
    fn reference(
        leaves: &[(Nibbles, Vec<u8>)],
        path: Nibbles,
        out: &mut Vec<(Nibbles, Vec<u8>)>,
    ) -> Vec<u8> {
        let depth = path.len();
        let mut rlp = Vec::new();
        let (first, last) = (&leaves[0].0, &leaves[leaves.len() - 1].0);
        if leaves.len() == 1 {
            encode_leaf(&first.slice(depth..), &leaves[0].1, &mut rlp);
            return rlp;
        }
        let shared = first.common_prefix_length(last);
        if shared > depth {
            let below = first.slice(..shared);
            let child = reference_of(reference(leaves, below, out), below, out);
            super::super::node::encode_extension(&first.slice(depth..shared), &child, &mut rlp);
            return rlp;
        }
        let mut children: [Option<RlpNode>; 16] = Default::default();
        for (nibble, child) in (0u8..16).zip(children.iter_mut()) {
            let group: Vec<_> =
                leaves.iter().filter(|(k, _)| k.get_unchecked(depth) == nibble).cloned().collect();
            if !group.is_empty() {
                let mut below = path;
                below.push(nibble);
                *child = Some(reference_of(reference(&group, below, out), below, out));
            }
        }
        super::super::node::encode_branch(&children, None, &mut rlp);
        rlp
    }

    /// A node's reference in its parent, pushing it onto `out` when it is hashed.
    fn reference_of(rlp: Vec<u8>, path: Nibbles, out: &mut Vec<(Nibbles, Vec<u8>)>) -> RlpNode {
        let r = RlpNode::from_rlp(&rlp);
        if r.is_hash() {
            out.push((path, rlp));
        }
        r
    }

    /// What the reference emits, and the root, for non-empty `leaves`.
    fn referenced(leaves: &[(Nibbles, Vec<u8>)]) -> (B256, Vec<(Nibbles, Vec<u8>)>) {
        let mut out = Vec::new();
        let root = reference(leaves, Nibbles::new(), &mut out);
        let hash = keccak256(&root);
        out.push((Nibbles::new(), root));
        (hash, out)
    }

    proptest! {
        /// The root is alloy-trie's, and the sink sees exactly the nodes of a plain recursive
        /// build, children first, whatever the batch size. Values up to 200 bytes make leaves
        /// inline (under 32 bytes), one hash block and several.
        #[test]
        fn root_equals_hash_builder_at_every_batch_size(
            keys in proptest::collection::btree_set(proptest::collection::vec(0u8..16, 8), 1..300),
            vlen in 1usize..200,
        ) {
            let leaves: Vec<_> = keys
                .iter()
                .map(|k| (Nibbles::from_nibbles(k), vec![k[1]; 1 + (vlen + k[0] as usize * 13) % 200]))
                .collect();
            let (root, nodes) = referenced(&leaves);
            prop_assert_eq!(root, alloy_root(&leaves));
            prop_assert_eq!(root_of_sorted(leaves.clone()).unwrap(), root);
            for batch in [1, 2, 3, 9, 64] {
                let (outcome, emitted) = built(&leaves, batch);
                prop_assert_eq!(outcome.root, root);
                prop_assert_eq!(outcome.stored_nodes, nodes.len() as u64);
                prop_assert_eq!(&emitted, &nodes);
            }
        }

        /// The same over 32-byte keys, as every Ethereum trie has, enough of them that closed
        /// nodes are settled several times on the way.
        #[test]
        fn hashed_keys_build_the_same_in_batches(
            keys in proptest::collection::btree_set(proptest::array::uniform32(0u8..), 1..1500),
        ) {
            let leaves: Vec<_> = keys
                .iter()
                .map(|k| (Nibbles::unpack(k), k[..1 + k[0] as usize % 32].to_vec()))
                .collect();
            let (root, nodes) = referenced(&leaves);
            prop_assert_eq!(root, alloy_root(&leaves));
            let (outcome, emitted) = built(&leaves, LEAF_BATCH);
            prop_assert_eq!(outcome.root, root);
            prop_assert_eq!(&emitted, &nodes);
        }
    }

    #[test]
    fn the_empty_trie_has_the_empty_root() {
        assert_eq!(built(&[], LEAF_BATCH).0.root, EMPTY_ROOT_HASH);
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
