//! The recent-node cache: trie nodes that stopped being current in the last K blocks, by hash,
//! so that a server a few blocks past a client's pivot still answers GetNodes for them.
//!
//! It lives in memory, as go-ethereum's recent diff layers do: it is a cache of
//! content-addressed nodes, not state, so writing it to RocksDB with every block (15k entries per
//! mainnet-sized block) cost more than a third of `apply_block` for nothing a crash could lose.
//! After a restart it starts empty; GetNodes then answers empty for nodes replaced before the
//! restart (never wrongly), and clients ask other peers.

use std::collections::VecDeque;

use alloy_primitives::{B256, map::B256Map};

/// Default byte budget of the cache: 512 MiB holds 128 mainnet-sized blocks of replaced nodes
/// (~3–4 MiB each); past it the oldest blocks leave early.
pub const DEFAULT_RECENT_CACHE_BYTES: usize = 512 << 20;

/// Per-entry overhead counted against the byte budget (hash-map slot, index entry, allocation).
const ENTRY_OVERHEAD: usize = 96;

/// Nodes by hash, with the block that replaced them; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct RecentNodes {
    by_hash: B256Map<(u64, Box<[u8]>)>,
    /// Blocks in increasing order with the hashes each added.
    blocks: VecDeque<(u64, Vec<B256>)>,
    bytes: usize,
}

impl RecentNodes {
    /// Records the nodes `block` replaced, then drops blocks at or before `last_expired` and,
    /// while over `max_bytes`, the oldest blocks.
    pub(crate) fn add_block(
        &mut self,
        block: u64,
        replaced: Vec<(B256, Vec<u8>)>,
        last_expired: Option<u64>,
        max_bytes: usize,
    ) {
        let mut hashes = Vec::with_capacity(replaced.len());
        for (hash, rlp) in replaced {
            self.bytes += rlp.len() + ENTRY_OVERHEAD;
            if let Some((_, old)) = self.by_hash.insert(hash, (block, rlp.into_boxed_slice())) {
                self.bytes = self.bytes.saturating_sub(old.len() + ENTRY_OVERHEAD);
            }
            hashes.push(hash);
        }
        self.blocks.push_back((block, hashes));
        while let Some((oldest, _)) = self.blocks.front() {
            let expired = last_expired.is_some_and(|e| *oldest <= e);
            if !expired && (self.bytes <= max_bytes || self.blocks.len() == 1) {
                break;
            }
            if let Some((oldest, hashes)) = self.blocks.pop_front() {
                for hash in hashes {
                    // A node replaced again later belongs to that later block now.
                    if self.by_hash.get(&hash).is_some_and(|(b, _)| *b == oldest)
                        && let Some((_, rlp)) = self.by_hash.remove(&hash)
                    {
                        self.bytes = self.bytes.saturating_sub(rlp.len() + ENTRY_OVERHEAD);
                    }
                }
            }
        }
    }

    /// The node with `hash`, if it was replaced within the window.
    pub(crate) fn get(&self, hash: &B256) -> Option<Vec<u8>> {
        self.by_hash.get(hash).map(|(_, rlp)| rlp.to_vec())
    }

    /// Bytes held, overhead included.
    pub(crate) const fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of nodes held.
    pub(crate) fn len(&self) -> usize {
        self.by_hash.len()
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
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }

    #[test]
    fn byte_budget_drops_oldest_blocks_first() {
        let mut c = RecentNodes::default();
        let budget = 3 * (100 + ENTRY_OVERHEAD);
        for b in 0..5u8 {
            c.add_block(u64::from(b), vec![(h(b), vec![b; 100])], None, budget);
        }
        assert!(c.bytes() <= budget);
        assert!(c.get(&h(0)).is_none() && c.get(&h(1)).is_none());
        assert!(c.get(&h(4)).is_some());
    }
}
