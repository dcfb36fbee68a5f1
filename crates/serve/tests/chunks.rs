//! Chunks and storage chunks against a generated 20k-account state and an independent model of
//! it: exact leaves per prefix, partitions, "too large" and subdivision, and verification of
//! every chunk against the stored trie.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use alloy_primitives::{B256, keccak256};
use alloy_trie::TrieAccount;
use common::*;
use leafsync_leafdb::{
    schema::{encode_account, slot_leaf_value},
    trie::StackBuilder,
};
use leafsync_p2p::leaf::{
    AccountLeaf, AccountStorage, ChunkContent, GetChunk, GetStorageChunk, StoragePrefix,
    StorageSlot, WirePath, protocol::MAX_RESPONSE_BYTES,
};
use leafsync_serve::{
    ServeConfig, config::SLOT_COUNT_SCAN_LIMIT, serve_chunk, serve_storage_chunk,
};

fn chunk(prefix: &WirePath, max_bytes: u64) -> (u64, ChunkContent<AccountLeaf>) {
    chunk_with(prefix, max_bytes, &ServeConfig::default())
}

fn chunk_with(
    prefix: &WirePath,
    max_bytes: u64,
    config: &ServeConfig,
) -> (u64, ChunkContent<AccountLeaf>) {
    let fx = shared();
    let snap = fx.db.snapshot().unwrap();
    let request = GetChunk { prefixes: vec![prefix.clone()], max_bytes };
    let mut c = serve_chunk(&snap, &request, config).unwrap();
    assert_eq!(c.pieces.len(), 1);
    let piece = c.pieces.remove(0);
    (piece.head_number, piece.content)
}

/// Every prefix of one depth, in key order.
fn prefixes(depth: usize) -> Vec<WirePath> {
    (0..16usize.pow(depth as u32)).map(|i| prefix(depth, i)).collect()
}

fn encoded_len(leaves: &[AccountLeaf]) -> u64 {
    alloy_rlp::encode(leaves.to_vec()).len() as u64
}

#[test]
fn chunks_of_depth_0_to_4_are_exactly_the_leaves_under_their_prefix() {
    let fx = shared();
    let mut too_large = 0;
    for depth in 0..=4 {
        let mut seen = Vec::new();
        for p in prefixes(depth) {
            let expected: Vec<AccountLeaf> =
                model_under(&fx.model, &p).into_iter().map(expected_leaf).collect();
            match chunk(&p, MAX_RESPONSE_BYTES).1 {
                ChunkContent::Items(leaves) => {
                    assert_eq!(leaves, expected, "prefix {p:?}");
                    seen.extend(leaves.into_iter().map(|l| l.hashed_address));
                }
                ChunkContent::TooLarge => {
                    too_large += 1;
                    assert!(expected.len() > 1 && encoded_len(&expected) > MAX_RESPONSE_BYTES);
                    // The 16 children together are the chunk.
                    let mut children = Vec::new();
                    for n in 0..16 {
                        match chunk(&p.child(n).unwrap(), MAX_RESPONSE_BYTES).1 {
                            ChunkContent::Items(l) => children.extend(l),
                            ChunkContent::TooLarge => panic!("child of {p:?} too large"),
                        }
                    }
                    assert_eq!(children, expected);
                    seen.extend(children.into_iter().map(|l| l.hashed_address));
                }
            }
        }
        // All prefixes of this depth: together the whole state, in order, nothing twice.
        let all: Vec<B256> = fx.model.iter().map(|a| a.hashed).collect();
        assert_eq!(seen, all, "depth {depth}");
    }
    assert_eq!(too_large, 1, "only the root chunk (~2.5 MiB) exceeds 2 MiB");
}

/// With an inline limit under the fixture's largest storages (the default 256 KiB holds them
/// all), some leaves carry the large mark, with a slot count exact up to the scan limit.
#[test]
fn inline_storage_matches_the_storage_root_and_large_marks_count_slots() {
    let fx = shared();
    let config = ServeConfig { inline_storage_bytes: 16 * 1024, ..Default::default() };
    let (mut inline, mut large) = (0, 0);
    for p in prefixes(1) {
        let ChunkContent::Items(leaves) = chunk_with(&p, MAX_RESPONSE_BYTES, &config).1 else {
            panic!()
        };
        for leaf in leaves {
            let model = fx.model.iter().find(|a| a.hashed == leaf.hashed_address).unwrap();
            match leaf.storage {
                AccountStorage::Inline(slots) => {
                    let pairs: Vec<_> = slots.iter().map(|s| (s.hashed_slot, s.value)).collect();
                    assert_eq!(storage_root(&pairs), leaf.storage_root);
                    inline += usize::from(!slots.is_empty());
                }
                AccountStorage::Large { slot_count } => {
                    large += 1;
                    let exact = model.slots.len() as u64;
                    if exact <= SLOT_COUNT_SCAN_LIMIT as u64 {
                        assert_eq!(slot_count, exact);
                    } else {
                        assert!(slot_count.abs_diff(exact) * 10 < exact, "{slot_count} {exact}");
                    }
                }
            }
        }
    }
    assert!(inline > 1000 && large > 5, "inline {inline} large {large}");
}

#[test]
fn subdivision_from_the_root_with_small_max_bytes_yields_the_whole_state_once() {
    let fx = shared();
    let mut stack = vec![WirePath::root()];
    let mut leaves = Vec::new();
    let mut splits = 0;
    while let Some(p) = stack.pop() {
        match chunk(&p, 64 * 1024).1 {
            ChunkContent::Items(l) => {
                assert!(l.len() <= 1 || encoded_len(&l) <= 64 * 1024);
                leaves.push((p, l));
            }
            ChunkContent::TooLarge => {
                splits += 1;
                stack.extend((0..16).rev().map(|n| p.child(n).unwrap()));
            }
        }
    }
    let got: Vec<B256> =
        leaves.iter().flat_map(|(_, l)| l.iter().map(|l| l.hashed_address)).collect();
    let all: Vec<B256> = fx.model.iter().map(|a| a.hashed).collect();
    assert_eq!(got, all);
    assert!(splits >= 17, "root and its 16 children are too large at 64 KiB: {splits}");
}

/// The node a chunk proves: hash of the subtrie built from the chunk's leaves, keyed by the
/// nibbles after the prefix (the node at the prefix path in the full trie).
fn subtrie_hash(prefix_len: usize, leaves: impl IntoIterator<Item = (B256, Vec<u8>)>) -> B256 {
    let mut builder = StackBuilder::new(|_: &alloy_trie::Nibbles, _: &[u8]| Ok(()));
    for (key, value) in leaves {
        let suffix = alloy_trie::Nibbles::unpack(key).slice(prefix_len..);
        builder.add_leaf(suffix, value).unwrap();
    }
    builder.finish().unwrap().root
}

fn leaf_value(leaf: &AccountLeaf) -> Vec<u8> {
    encode_account(&TrieAccount {
        nonce: leaf.nonce,
        balance: leaf.balance,
        storage_root: leaf.storage_root,
        code_hash: leaf.code_hash,
    })
}

#[test]
fn every_chunk_hashes_to_the_stored_node_at_its_prefix() {
    let fx = shared();
    let snap = fx.db.snapshot().unwrap();
    let mut checked = 0;
    for depth in 1..=4 {
        for p in prefixes(depth) {
            let ChunkContent::Items(leaves) = chunk(&p, MAX_RESPONSE_BYTES).1 else { panic!() };
            if leaves.is_empty() {
                continue;
            }
            // The nearest stored node at or above the prefix: the prefix itself, or (inside an
            // extension or a leaf's key) an ancestor whose chunk must then be this very chunk.
            let mut at = p.len();
            let node = loop {
                let path = alloy_trie::Nibbles::from_nibbles(&p.as_slice()[..at]);
                if let Some(node) = snap.node(None, &path).unwrap() {
                    break node;
                }
                at -= 1;
            };
            if at < p.len() {
                let ancestor = WirePath::from_nibbles(&p.as_slice()[..at]).unwrap();
                let ChunkContent::Items(up) = chunk(&ancestor, MAX_RESPONSE_BYTES).1 else {
                    panic!()
                };
                assert_eq!(up, leaves, "{p:?} is inside a node at {ancestor:?}");
            }
            let hash = subtrie_hash(at, leaves.iter().map(|l| (l.hashed_address, leaf_value(l))));
            assert_eq!(hash, keccak256(&node), "prefix {p:?}");
            checked += 1;
        }
    }
    assert!(checked > 5000, "{checked}");
}

#[test]
fn storage_chunks_are_exact_partition_and_verify() {
    let fx = shared();
    let snap = fx.db.snapshot().unwrap();
    let config = ServeConfig::default();
    let mut big: Vec<&RefAccount> = fx.model.iter().filter(|a| a.slots.len() > 300).collect();
    big.sort_by_key(|a| std::cmp::Reverse(a.slots.len()));
    assert!(big.len() >= 3);
    let mut too_large = 0;
    for a in big.iter().take(3) {
        for depth in 0..=2 {
            let mut seen = Vec::new();
            for i in 0..16usize.pow(depth) {
                let p = prefix(depth as usize, i);
                let request = GetStorageChunk {
                    chunks: vec![StoragePrefix { account: a.hashed, prefix: p.clone() }],
                    max_bytes: 4096,
                };
                let mut sc = serve_storage_chunk(&snap, &request, &config).unwrap();
                assert_eq!(sc.pieces.len(), 1);
                let piece = sc.pieces.remove(0);
                assert_eq!(piece.head_number, 0);
                let expected: Vec<StorageSlot> = a
                    .slots
                    .iter()
                    .filter(|(k, _)| has_prefix(k, &p))
                    .map(|(k, v)| StorageSlot { hashed_slot: *k, value: *v })
                    .collect();
                match piece.content {
                    ChunkContent::Items(slots) => {
                        assert_eq!(slots, expected);
                        if let Some(first) = slots.first() {
                            let mut at = p.len();
                            let owner = Some(&a.hashed);
                            let node = loop {
                                let path =
                                    alloy_trie::Nibbles::unpack(first.hashed_slot).slice(..at);
                                if let Some(n) = snap.node(owner, &path).unwrap() {
                                    break n;
                                }
                                at -= 1;
                            };
                            let leaves =
                                slots.iter().map(|s| (s.hashed_slot, slot_leaf_value(&s.value)));
                            assert_eq!(subtrie_hash(at, leaves), keccak256(&node));
                        }
                        seen.extend(slots);
                    }
                    ChunkContent::TooLarge => {
                        too_large += 1;
                        assert!(alloy_rlp::encode(&expected).len() > 4096);
                        seen.extend(expected);
                    }
                }
            }
            assert_eq!(seen.len(), a.slots.len());
        }
    }
    assert!(too_large > 0);
    // An unknown account has no storage: the empty list.
    let unknown = StoragePrefix { account: B256::repeat_byte(1), prefix: WirePath::root() };
    let request = GetStorageChunk { chunks: vec![unknown.clone()], max_bytes: 1 };
    let sc = serve_storage_chunk(&snap, &request, &config).unwrap();
    assert_eq!(sc.pieces.len(), 1);
    assert_eq!(sc.pieces[0].content, ChunkContent::Items(Vec::new()));

    // A batch: the pieces in request order, each exactly the single chunk, until the next piece
    // would take the answer over `max_bytes` (the first is always sent).
    let whole = |a: &RefAccount| StoragePrefix { account: a.hashed, prefix: WirePath::root() };
    let mut small: Vec<&RefAccount> =
        fx.model.iter().filter(|a| (20..200).contains(&a.slots.len())).collect();
    small.truncate(6);
    assert_eq!(small.len(), 6);
    let chunks: Vec<StoragePrefix> = small.iter().map(|a| whole(a)).chain([unknown]).collect();
    let all = GetStorageChunk { chunks: chunks.clone(), max_bytes: 1 << 20 };
    let sc = serve_storage_chunk(&snap, &all, &config).unwrap();
    assert_eq!(sc.pieces.len(), 7);
    for (piece, chunk) in sc.pieces.iter().zip(&chunks) {
        let single = GetStorageChunk { chunks: vec![chunk.clone()], max_bytes: 1 << 20 };
        assert_eq!(
            serve_storage_chunk(&snap, &single, &config).unwrap().pieces,
            vec![piece.clone()]
        );
    }
    // Room for the first three pieces only: the answer stops there.
    let three: usize = sc.pieces[..3].iter().map(alloy_rlp::Encodable::length).sum();
    let cut = GetStorageChunk { chunks: chunks.clone(), max_bytes: three as u64 };
    let got = serve_storage_chunk(&snap, &cut, &config).unwrap();
    assert_eq!(got.pieces, sc.pieces[..3].to_vec());
    let tiny = GetStorageChunk { chunks, max_bytes: 1 };
    let got = serve_storage_chunk(&snap, &tiny, &config).unwrap();
    assert_eq!(got.pieces.len(), 1, "the first piece is always sent");
}

#[test]
fn full_key_prefix_and_tiny_max_bytes() {
    let fx = shared();
    let a = &fx.model[100];
    let full = WirePath::from_nibbles(&alloy_trie::Nibbles::unpack(a.hashed).to_vec()).unwrap();
    // A 64-nibble prefix names exactly one leaf, sent even when over max_bytes.
    assert_eq!(chunk(&full, 0).1, ChunkContent::Items(vec![expected_leaf(a)]));
    assert_eq!(chunk(&prefix(2, 0x3a), 0).1, ChunkContent::TooLarge);
    let (head, _) = chunk(&WirePath::root(), u64::MAX);
    assert_eq!(head, 0, "generated state is block 0");
}

#[test]
fn an_account_batch_is_its_chunks_in_order_until_max_bytes() {
    let fx = shared();
    let snap = fx.db.snapshot().unwrap();
    let config = ServeConfig::default();
    let a = &fx.model[100];
    let full = WirePath::from_nibbles(&alloy_trie::Nibbles::unpack(a.hashed).to_vec()).unwrap();
    let mut prefixes: Vec<WirePath> = [0x12, 0x00, 0xff, 0x3a].map(|i| prefix(2, i)).to_vec();
    prefixes.push(full);
    let ask = |prefixes: &[WirePath], max_bytes| {
        let request = GetChunk { prefixes: prefixes.to_vec(), max_bytes };
        serve_chunk(&snap, &request, &config).unwrap().pieces
    };
    let all = ask(&prefixes, 1 << 20);
    assert_eq!(all.len(), prefixes.len());
    for (piece, p) in all.iter().zip(&prefixes) {
        assert_eq!((piece.head_number, piece.content.clone()), chunk(p, 1 << 20));
        assert!(!piece.content.is_empty());
    }
    // Room for the first three pieces only: the answer stops there.
    let three: usize = all[..3].iter().map(alloy_rlp::Encodable::length).sum();
    assert_eq!(ask(&prefixes, three as u64), all[..3].to_vec());
    let tiny = ask(&prefixes, 1);
    assert_eq!(tiny.len(), 1, "the first piece is always sent");
    assert_eq!(tiny[0].content, ChunkContent::TooLarge);
}
