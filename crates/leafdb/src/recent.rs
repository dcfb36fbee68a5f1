//! The recent-node cache: trie nodes that stopped being current in the last K blocks, by hash,
//! so that a server a few blocks past a client's pivot still answers GetNodes for them.
//!
//! It lives in memory, as go-ethereum's recent diff layers do: it is a cache of
//! content-addressed nodes, not state, so writing it to RocksDB with every block (15k entries per
//! mainnet-sized block) cost more than a third of `apply_block` for nothing a crash could lose.
//! After a restart it starts empty; GetNodes then answers empty for nodes replaced before the
//! restart (never wrongly), and clients ask other peers.

use std::{collections::VecDeque, sync::Arc};

use alloy_primitives::{B256, map::B256Map};

/// Default byte budget of the cache: 512 MiB, past which the oldest blocks leave early. It holds
/// 128 blocks of a 1M-account state, where a block replaces ~3–4 MiB of nodes (measured); on
/// mainnet a block replaces ~8–12 MB (deeper tries; an estimate), so it holds ~45–65 blocks and
/// docs/operators.md recommends `leafdb.recent_cache_mib = 1536` there.
pub const DEFAULT_RECENT_CACHE_BYTES: usize = 512 << 20;

/// Per-entry overhead counted against the byte budget (the index entry and its share of the
/// index's spare room).
const ENTRY_OVERHEAD: usize = 96;

/// The nodes one block replaced: their encodings end to end in one buffer, found by hash.
///
/// One small index a block, not one index for the whole window: a block then costs a few
/// thousand inserts into an index that fits the CPU's caches, and expiring it is dropping two
/// buffers. One index for a full window (~1M nodes) cost a cache miss for each insert and for
/// each removal of an expired node: 4.5–8 ms of a mainnet-sized block's write step (see
/// docs/leafdb.md, "Recent-node cache", for what lookups pay instead).
#[derive(Debug)]
struct BlockNodes {
    block: u64,
    /// Where each node's encoding lies in `encodings`.
    index: B256Map<std::ops::Range<usize>>,
    encodings: Vec<u8>,
}

impl BlockNodes {
    fn new(block: u64, replaced: Vec<(B256, Vec<u8>)>) -> Self {
        let total = replaced.iter().map(|(_, rlp)| rlp.len()).sum();
        let mut index = B256Map::with_capacity_and_hasher(replaced.len(), Default::default());
        let mut encodings = Vec::with_capacity(total);
        for (hash, rlp) in replaced {
            // The same node replaced twice in a block is one node.
            index.entry(hash).or_insert_with(|| {
                let start = encodings.len();
                encodings.extend_from_slice(&rlp);
                start..encodings.len()
            });
        }
        Self { block, index, encodings }
    }

    /// Bytes counted against the budget.
    fn bytes(&self) -> usize {
        self.encodings.len() + self.index.len() * ENTRY_OVERHEAD
    }

    fn get(&self, hash: &B256) -> Option<&[u8]> {
        self.index.get(hash).and_then(|range| self.encodings.get(range.clone()))
    }
}

/// Nodes by hash, a block at a time; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct RecentNodes {
    /// Blocks in increasing order (shared with the windows taken of them).
    blocks: VecDeque<Arc<BlockNodes>>,
    bytes: usize,
    /// Blocks dropped by the byte budget before they expired.
    dropped_early: u64,
}

/// What the recent-node cache holds ([`crate::LeafDb::recent_cache_size`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentCacheSize {
    /// Nodes held (a node replaced in two blocks of the window counts twice).
    pub nodes: usize,
    /// Bytes held, overhead included.
    pub bytes: usize,
    /// Blocks held: fewer than [`crate::LeafDbConfig::recent_blocks`] once the byte budget binds.
    pub blocks: usize,
    /// Blocks the byte budget dropped before they expired, since the start.
    pub dropped_early: u64,
}

/// The cache's blocks at one moment ([`RecentNodes::window`]): a reader that takes one sees the
/// same nodes for as long as it keeps it, whatever blocks are added or expire meanwhile (a
/// range walked at an older root and its proof must see the same nodes).
#[derive(Debug, Clone, Default)]
pub(crate) struct RecentWindow(Vec<Arc<BlockNodes>>);

impl RecentWindow {
    /// The node with `hash`, if the window holds it (the newest blocks are looked in first).
    pub(crate) fn get(&self, hash: &B256) -> Option<Vec<u8>> {
        newest_first(self.0.iter(), hash)
    }
}

/// The node with `hash` in `blocks` (oldest first), looked for from the newest.
fn newest_first<'b>(
    blocks: impl DoubleEndedIterator<Item = &'b Arc<BlockNodes>>,
    hash: &B256,
) -> Option<Vec<u8>> {
    blocks.rev().find_map(|b| b.get(hash)).map(<[u8]>::to_vec)
}

impl RecentNodes {
    /// Records the nodes `block` replaced, then drops blocks at or before `last_expired` and,
    /// while over `max_bytes`, the oldest blocks. Returns whether the budget dropped a block
    /// before it expired.
    pub(crate) fn add_block(
        &mut self,
        block: u64,
        replaced: Vec<(B256, Vec<u8>)>,
        last_expired: Option<u64>,
        max_bytes: usize,
    ) -> bool {
        let dropped_before = self.dropped_early;
        let nodes = BlockNodes::new(block, replaced);
        self.bytes += nodes.bytes();
        self.blocks.push_back(Arc::new(nodes));
        while let Some(oldest) = self.blocks.front() {
            let expired = last_expired.is_some_and(|e| oldest.block <= e);
            if !expired && (self.bytes <= max_bytes || self.blocks.len() == 1) {
                break;
            }
            if let Some(oldest) = self.blocks.pop_front() {
                self.bytes = self.bytes.saturating_sub(oldest.bytes());
                self.dropped_early += u64::from(!expired);
            }
        }
        self.dropped_early > dropped_before
    }

    /// The node with `hash`, if it was replaced within the window (the newest blocks are
    /// looked in first).
    pub(crate) fn get(&self, hash: &B256) -> Option<Vec<u8>> {
        newest_first(self.blocks.iter(), hash)
    }

    /// The blocks held now, shared: see [`RecentWindow`].
    pub(crate) fn window(&self) -> RecentWindow {
        RecentWindow(self.blocks.iter().cloned().collect())
    }

    /// Number of nodes held (a node replaced in two blocks of the window counts twice).
    pub(crate) fn len(&self) -> usize {
        self.blocks.iter().map(|b| b.index.len()).sum()
    }

    /// What the cache holds.
    pub(crate) fn size(&self) -> RecentCacheSize {
        RecentCacheSize {
            nodes: self.len(),
            bytes: self.bytes,
            blocks: self.blocks.len(),
            dropped_early: self.dropped_early,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u8) -> B256 {
        B256::repeat_byte(i)
    }

    #[test]
    fn expires_by_block_and_keeps_re_replaced_nodes() {
        let mut c = RecentNodes::default();
        c.add_block(1, vec![(h(1), vec![1; 10]), (h(2), vec![2; 10])], None, usize::MAX);
        c.add_block(2, vec![(h(1), vec![1; 10])], None, usize::MAX);
        // Block 1 expires; node 1 was replaced again in block 2 and stays.
        c.add_block(3, vec![], Some(1), usize::MAX);
        assert!(c.get(&h(1)).is_some());
        assert!(c.get(&h(2)).is_none());
        c.add_block(4, vec![], Some(2), usize::MAX);
        assert!(c.get(&h(1)).is_none());
        assert_eq!((c.len(), c.size().bytes), (0, 0));
    }

    #[test]
    fn a_node_replaced_twice_in_one_block_is_held_once() {
        let mut c = RecentNodes::default();
        let replaced = vec![(h(1), vec![1; 10]), (h(2), vec![2; 20]), (h(1), vec![1; 10])];
        c.add_block(1, replaced, None, usize::MAX);
        assert_eq!((c.len(), c.size().bytes), (2, 30 + 2 * ENTRY_OVERHEAD));
        assert_eq!(c.get(&h(1)), Some(vec![1; 10]));
        assert_eq!(c.get(&h(2)), Some(vec![2; 20]));
        assert_eq!(c.get(&h(3)), None);
    }

    /// A window taken before blocks expire still finds their nodes (a query's walk and its
    /// proof see the same nodes); a window taken after does not.
    #[test]
    fn a_window_keeps_the_blocks_it_was_taken_with() {
        let mut c = RecentNodes::default();
        c.add_block(1, vec![(h(1), vec![1; 10])], None, usize::MAX);
        let before = c.window();
        c.add_block(2, vec![(h(2), vec![2; 10])], Some(1), usize::MAX);
        assert!(c.get(&h(1)).is_none(), "expired in the cache");
        assert_eq!(before.get(&h(1)), Some(vec![1; 10]), "still in the window taken before");
        assert!(before.get(&h(2)).is_none(), "a window does not see later blocks");
        assert!(c.window().get(&h(1)).is_none());
    }

    #[test]
    fn byte_budget_drops_oldest_blocks_first() {
        let mut c = RecentNodes::default();
        let budget = 3 * (100 + ENTRY_OVERHEAD);
        for b in 0..5u8 {
            let dropped = c.add_block(u64::from(b), vec![(h(b), vec![b; 100])], None, budget);
            assert_eq!(dropped, b >= 3, "block {b}: the budget holds three");
        }
        assert!(c.size().bytes <= budget);
        assert!(c.get(&h(0)).is_none() && c.get(&h(1)).is_none());
        assert!(c.get(&h(4)).is_some());
        let size = c.size();
        assert_eq!((size.blocks, size.dropped_early), (3, 2));
        // Expiry is not counted as dropped early.
        assert!(!c.add_block(5, vec![], Some(4), budget));
        assert_eq!(c.size().dropped_early, 2);
    }
}
