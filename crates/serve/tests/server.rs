//! [`LeafServer`] end to end: extreme but legal requests stay within budget, random input that
//! decodes never panics the server; the chunk cache hits (handing out the same bytes), misses,
//! evicts by bytes and is invalidated when the head moves or a block is reverted; the p2p request-handler glue answers
//! like [`LeafServer::answer`]. Hostile input is refused by p2p's decoder and session before the
//! server sees it (p2p's `tests/net_hostile.rs`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;

use alloy_primitives::{B256, B512};
use common::*;
use leafsync_leafdb::generate::SplitMix;
use leafsync_p2p::{
    leaf::{
        AccountPiece, Chunk, ChunkContent, GetChunk, GetCodes, GetNodes, GetStorageChunk,
        LeafMessage, LeafRequest, LeafResponse, NodeRequest, StorageChunk, StoragePrefix,
        TrieOwner, WirePath,
        protocol::{MAX_RESPONSE_BYTES, ids},
    },
    peers::RequestHandler,
};
use leafsync_serve::{LeafServer, ServeConfig};

fn server(db: &Arc<Db>, config: ServeConfig) -> LeafServer<leafsync_leafdb::RocksStore> {
    LeafServer::new(Arc::clone(db), config)
}

const PEER: B512 = B512::repeat_byte(1);

fn get_chunk(prefix: WirePath, max_bytes: u64) -> LeafRequest {
    GetChunk { prefixes: vec![prefix], max_bytes }.into()
}

/// The server's answer as a client decodes it (with the protocol's limits).
fn answer(s: &LeafServer<leafsync_leafdb::RocksStore>, request: &LeafRequest) -> LeafResponse {
    let encoded = s.answer(request);
    let message = LeafMessage::decode(encoded.id, &encoded.payload(7)).unwrap();
    let pair = message.into_response().unwrap();
    assert_eq!(pair.request_id, 7);
    assert!(request.is_answered_by(&pair.message));
    pair.message
}

/// The one piece answering a `GetChunk` of `prefix` alone.
fn chunk(
    s: &LeafServer<leafsync_leafdb::RocksStore>,
    prefix: WirePath,
    max_bytes: u64,
) -> AccountPiece {
    let mut chunk = Chunk::try_from(answer(s, &get_chunk(prefix, max_bytes))).unwrap();
    assert_eq!(chunk.pieces.len(), 1);
    chunk.pieces.remove(0)
}

#[test]
fn extreme_but_legal_requests_are_answered_within_budget() {
    let fx = shared();
    let s = server(&fx.db, ServeConfig::default());
    for max_bytes in [0, 1, u64::MAX] {
        let c = chunk(&s, prefix(1, 3), max_bytes);
        if max_bytes == u64::MAX {
            assert!(
                !c.content.is_empty(),
                "u64::MAX is capped at 2 MiB, which fits a depth-1 chunk"
            );
        } else {
            assert_eq!(c.content, ChunkContent::TooLarge);
        }
    }
    // The whole state asked at once: "too large" under the 2 MiB cap, never 2+ MiB sent.
    let r = s.answer(&get_chunk(WirePath::root(), u64::MAX));
    assert!(r.fields.len() < 64);
    // A 64-nibble prefix of no account, a storage chunk of no account, 384 unknown nodes.
    let none = WirePath::from_nibbles(&[0xf; 64]).unwrap();
    assert_eq!(chunk(&s, none.clone(), 1).content, ChunkContent::Items(Vec::new()));
    let sc = GetStorageChunk {
        chunks: vec![StoragePrefix { account: B256::ZERO, prefix: none }; 256],
        max_bytes: u64::MAX,
    };
    let LeafResponse::StorageChunk(c) = answer(&s, &sc.into()) else { panic!() };
    assert_eq!(c.pieces.len(), 256);
    assert!(c.pieces.iter().all(|p| p.content == ChunkContent::Items(Vec::new())));
    let nodes: Vec<NodeRequest> = (0..384u32)
        .map(|i| NodeRequest {
            owner: TrieOwner::Storage(B256::left_padding_from(&i.to_be_bytes())),
            path: WirePath::from_nibbles(&[0xa; 64]).unwrap(),
            hash: B256::repeat_byte(3),
        })
        .collect();
    let LeafResponse::Nodes(n) = answer(&s, &GetNodes { nodes, max_bytes: 0 }.into()) else {
        panic!()
    };
    assert_eq!(n.nodes.len(), 384);
    assert!(n.nodes.iter().all(|b| b.is_empty()));
}

/// Random and mutated payloads go through p2p's decoder as in a session; whatever decodes as a
/// request is answered with a response of its kind that a client accepts, and nothing panics.
#[test]
fn random_requests_that_decode_are_answered_without_panic() {
    let fx = shared();
    let s = server(&fx.db, ServeConfig::default());
    let mut rng = SplitMix::new(99);
    let mut seen = [0usize; 2];
    for round in 0..4000u64 {
        let id = (rng.below(12)) as u8;
        // Half random garbage, half mutated valid requests.
        let mut payload = if round % 2 == 0 {
            let len = rng.below(80) as usize;
            (0..len).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>()
        } else {
            let request = get_chunk(prefix(2, rng.below(256) as usize), rng.next_u64());
            let mut p = LeafMessage::from(leafsync_p2p::RequestPair {
                request_id: rng.next_u64(),
                message: request,
            })
            .encoded();
            let at = rng.below(p.len() as u64) as usize;
            p[at] ^= 1 << rng.below(8);
            p
        };
        if round % 7 == 0 {
            payload.truncate(rng.below(payload.len() as u64 + 1) as usize);
        }
        match LeafMessage::decode(id, &payload).map(LeafMessage::into_request) {
            Ok(Some(request)) => {
                seen[0] += 1;
                answer(&s, &request.message);
            }
            Ok(None) | Err(_) => seen[1] += 1,
        }
    }
    assert!(seen[0] > 10 && seen[1] > 1000, "{seen:?}");
}

#[test]
fn cache_hits_hand_out_the_same_bytes() {
    let fx = shared();
    let s = server(&fx.db, ServeConfig::default());
    let p = prefix(2, 0x7c);
    let a = s.answer(&get_chunk(p.clone(), 1 << 20));
    let b = s.answer(&get_chunk(p.clone(), 600_000));
    // The second answer is the cached piece, copied behind the batch's list headers without a
    // decode or encode (the session frames it with the client's request id).
    assert_eq!(a, b);
    let stats = s.stats().cache;
    assert_eq!((stats.hits, stats.misses, stats.inserts), (1, 1, 1), "same 1 MiB class");
    let a = chunk(&s, p.clone(), 1 << 20);
    assert!(!a.content.is_empty());
    // A client whose max_bytes is below the cached chunk's size gets "too large" from the
    // same class... and a smaller class is its own entry.
    let size = alloy_rlp::encode(&a.content).len() as u64;
    assert_eq!(chunk(&s, p.clone(), size - 1).content, ChunkContent::TooLarge);
    assert_eq!(chunk(&s, p, size).content, a.content);
    assert_eq!(s.stats().cache.hits + s.stats().cache.misses, 5);
}

/// Two clients ask `ask` for overlapping batches of pieces, [0, 1, 2, 3, 4] then [3, 1, 6, 0, 7]
/// (the indices name chunks): the second takes pieces 3, 1 and 0 from the server's cache, and
/// each piece is what a batch of one gives. Returns the first batch.
fn second_client_shares_pieces<P: PartialEq + std::fmt::Debug + Clone>(
    s: &LeafServer<leafsync_leafdb::RocksStore>,
    ask: impl Fn(&[usize]) -> Vec<P>,
) -> Vec<P> {
    let first = ask(&[0, 1, 2, 3, 4]);
    assert_eq!(first.len(), 5);
    let after_first = s.stats().cache;
    assert_eq!((after_first.hits, after_first.misses, after_first.inserts), (0, 5, 5));
    let second = ask(&[3, 1, 6, 0, 7]);
    let stats = s.stats().cache;
    assert_eq!((stats.hits, stats.misses), (3, 7), "pieces 3, 1, 0 came from the cache");
    assert_eq!([&second[0], &second[1], &second[3]], [&first[3], &first[1], &first[0]]);
    // Each piece is what a batch of one gives (now all from the cache).
    for (i, piece) in [3, 1, 6, 0, 7].into_iter().zip(&second) {
        assert_eq!(ask(&[i]), vec![piece.clone()]);
    }
    assert_eq!(s.stats().cache.misses, 7);
    first
}

/// A storage batch is assembled from per-(account, prefix) cached pieces: a second client asking
/// a different batch that overlaps the first is answered from the pieces the first one's read,
/// with the same piece bytes, and each batch equals its pieces asked one by one.
#[test]
fn storage_batches_share_cached_pieces_between_clients() {
    let fx = shared();
    let s = server(&fx.db, ServeConfig::default());
    // Storages large enough to be cached (`MIN_CACHED_CHUNK_BYTES`: ~70 bytes a slot).
    let mut contracts: Vec<_> = fx.model.iter().filter(|a| a.slots.len() > 100).collect();
    contracts.truncate(8);
    assert_eq!(contracts.len(), 8);
    let chunk = |i: usize| StoragePrefix { account: contracts[i].hashed, prefix: WirePath::root() };
    let batch = |ids: &[usize]| -> LeafRequest {
        GetStorageChunk { chunks: ids.iter().map(|&i| chunk(i)).collect(), max_bytes: 1 << 20 }
            .into()
    };
    let storage = |r: &LeafRequest| StorageChunk::try_from(answer(&s, r)).unwrap().pieces;
    let first = second_client_shares_pieces(&s, |ids| storage(&batch(ids)));
    // The cached piece bodies go out as they are: the wire answer holds each piece's cached
    // bytes (list header + head number + content) in order.
    let wire = s.answer(&batch(&[3, 1]));
    let mut expected = Vec::new();
    for piece in [&first[3], &first[1]] {
        expected.extend(alloy_rlp::encode(piece));
    }
    assert!(wire.fields.ends_with(&expected));
}

/// Account chunks are batched as storage chunks are: a batch is assembled from per-(prefix,
/// byte class) cached pieces, so a second client asking a different, overlapping batch is
/// answered from the pieces the first one's read; each piece is what a batch of one gives, and
/// the answer stops before the piece that would take it over `max_bytes`.
#[test]
fn account_batches_share_cached_pieces_between_clients() {
    let fx = shared();
    let s = server(&fx.db, ServeConfig::default());
    let batch = |ids: &[usize], max_bytes: u64| -> LeafRequest {
        GetChunk { prefixes: ids.iter().map(|&i| prefix(2, i)).collect(), max_bytes }.into()
    };
    let chunk = |r: &LeafRequest| Chunk::try_from(answer(&s, r)).unwrap();
    let first = second_client_shares_pieces(&s, |ids| chunk(&batch(ids, 1 << 20)).pieces);
    assert!(first.iter().all(|p| !p.content.is_empty()));
    // The cached piece bodies go out as they are, in order.
    let wire = s.answer(&batch(&[3, 1], 1 << 20));
    let expected: Vec<u8> =
        [&first[3], &first[1]].into_iter().flat_map(alloy_rlp::encode).collect();
    assert!(wire.fields.ends_with(&expected));
    // Room for two pieces: the answer stops before the third; a tiny budget still gets one.
    let pieces_3_1 = vec![first[3].clone(), first[1].clone()];
    let two: usize = pieces_3_1.iter().map(alloy_rlp::Encodable::length).sum();
    let cut = chunk(&batch(&[3, 1, 6, 0, 7], two as u64));
    assert_eq!(cut.pieces, pieces_3_1);
    let tiny = chunk(&batch(&[3, 1, 6], 1));
    assert_eq!(tiny.pieces.len(), 1, "the first piece is always sent");
    assert_eq!(tiny.pieces[0].content, ChunkContent::TooLarge);
}

#[test]
fn cache_evicts_by_bytes() {
    let fx = shared();
    // Room for a few depth-2 chunks (~12–32 KiB each).
    let s = server(&fx.db, ServeConfig { cache_bytes: 100_000, ..ServeConfig::default() });
    for i in 0..20 {
        chunk(&s, prefix(2, i), MAX_RESPONSE_BYTES);
    }
    let stats = s.stats().cache;
    assert_eq!((stats.misses, stats.inserts), (20, 20));
    assert!(stats.bytes <= 100_000 && stats.entries >= 2, "{stats:?}");
    assert_eq!(stats.evictions as usize, 20 - stats.entries);
    // The most recent entry is still there, the first one is gone.
    chunk(&s, prefix(2, 19), MAX_RESPONSE_BYTES);
    chunk(&s, prefix(2, 0), MAX_RESPONSE_BYTES);
    let after = s.stats().cache;
    assert_eq!((after.hits, after.misses), (1, 21));
}

/// A chunk "too large" only because the time budget ran out is answered so but never cached:
/// cached, one load spike would tell every client "too large" for it for the whole reuse window
/// (and clients bench a server whose "too large" chunks turn out small). A chunk too large for its
/// byte class still is cached.
#[test]
fn a_chunk_out_of_time_is_not_cached_but_one_too_large_for_its_size_is() {
    let fx = shared();
    let hurried = server(
        &fx.db,
        ServeConfig { request_time_budget: std::time::Duration::ZERO, ..ServeConfig::default() },
    );
    let late = chunk(&hurried, prefix(1, 4), MAX_RESPONSE_BYTES);
    assert_eq!(late.content, ChunkContent::TooLarge, "no time for a 1.2k-leaf chunk");
    let stats = hurried.stats().cache;
    assert_eq!((stats.entries, stats.inserts), (0, 0), "a time-out was cached: {stats:?}");

    let s = server(&fx.db, ServeConfig::default());
    let big = chunk(&s, WirePath::root(), 16 * 1024);
    assert_eq!(big.content, ChunkContent::TooLarge, "20k leaves in 16 KiB");
    assert_eq!(chunk(&s, WirePath::root(), 16 * 1024), big);
    let stats = s.stats().cache;
    assert_eq!((stats.entries, stats.hits, stats.misses), (1, 1, 1), "{stats:?}");
}

/// A client flooding the server with storage chunks of unknown accounts under 64-nibble prefixes
/// (256 a request, each a different cache key) makes no cache entry: an empty chunk costs less
/// to read again than to keep. Kept, 16k such entries (charged ~130 bytes each before) pushed
/// every honest chunk out of a small cache.
#[test]
fn an_honest_cached_chunk_survives_a_flood_of_unknown_account_storage_requests() {
    let mut rng = SplitMix::new(11);
    survives_a_flood(|s| {
        for _ in 0..64 {
            let chunks: Vec<StoragePrefix> = (0..256)
                .map(|_| {
                    let account = B256::from(alloy_primitives::U256::from_limbs([
                        rng.next_u64(),
                        rng.next_u64(),
                        rng.next_u64(),
                        rng.next_u64(),
                    ]));
                    StoragePrefix { account, prefix: full_path(&account) }
                })
                .collect();
            let request = GetStorageChunk { chunks, max_bytes: MAX_RESPONSE_BYTES };
            let flood = StorageChunk::try_from(answer(s, &request.into())).unwrap();
            assert_eq!(flood.pieces.len(), 256, "every unknown account answered (empty)");
        }
    });
}

/// A client flooding the server with chunks of one account each (256 64-nibble prefixes of real
/// accounts a request, in every byte class, each class its own cache key) makes no cache entry:
/// a chunk of a few hundred bytes costs less to read again than to keep. Kept, each was charged
/// ~900 bytes for ~110 downloaded, and a few dozen requests pushed every honest chunk out.
#[test]
fn an_honest_cached_chunk_survives_a_flood_of_single_account_chunks() {
    let plain: Vec<B256> = reference(shared().params)
        .into_iter()
        .filter(|a| a.slots.is_empty())
        .map(|a| a.hashed)
        .take(1024)
        .collect();
    survives_a_flood(|s| {
        for (round, batch) in plain.chunks(256).cycle().enumerate().take(32) {
            let prefixes = batch.iter().map(full_path).collect();
            let max_bytes = (16 * 1024) << (round % 8);
            let request = GetChunk { prefixes, max_bytes };
            let flood = Chunk::try_from(answer(s, &request.into())).unwrap();
            assert!(!flood.pieces.is_empty());
        }
    });
}

/// The 64-nibble path of `key`.
fn full_path(key: &B256) -> WirePath {
    let nibbles: Vec<u8> = key.iter().flat_map(|b| [b >> 4, b & 0xf]).collect();
    WirePath::from_nibbles(&nibbles).unwrap()
}

/// Caches an honest chunk in a server with a 256 KiB cache, runs `flood` against that server,
/// and asserts that the flood made no cache entry and evicted nothing: the honest chunk is
/// still there, and hit.
fn survives_a_flood(flood: impl FnOnce(&LeafServer<leafsync_leafdb::RocksStore>)) {
    let fx = shared();
    let s = server(&fx.db, ServeConfig { cache_bytes: 256 * 1024, ..ServeConfig::default() });
    let honest = chunk(&s, prefix(2, 0x42), MAX_RESPONSE_BYTES);
    assert_eq!(s.stats().cache.entries, 1);
    flood(&s);
    assert_eq!(chunk(&s, prefix(2, 0x42), MAX_RESPONSE_BYTES), honest);
    let stats = s.stats().cache;
    assert_eq!((stats.entries, stats.evictions, stats.hits), (1, 0, 1), "{stats:?}");
}

#[test]
fn cache_is_invalidated_after_the_head_moves_n_blocks() {
    let fx = generated(2_000, 5);
    let s = server(&fx.db, ServeConfig { cache_reuse_blocks: 2, ..ServeConfig::default() });
    let ask = || chunk(&s, prefix(1, 4), 1 << 20);
    let first = ask();
    assert_eq!(first.head_number, 0);
    for number in 1..=2 {
        fx.db
            .apply_generated_block(&header(number), &marker_block(fx.params, number, 200))
            .unwrap();
        let c = ask();
        assert_eq!((c.head_number, &c.content), (0, &first.content), "reused at head {number}");
    }
    fx.db.apply_generated_block(&header(3), &marker_block(fx.params, 3, 200)).unwrap();
    let fresh = ask();
    assert_eq!(fresh.head_number, 3);
    assert_ne!(fresh.content, first.content, "200 changed accounts, some under prefix 4");
    let stats = s.stats().cache;
    assert_eq!((stats.hits, stats.misses, stats.stale), (2, 2, 1));
}

/// A chunk cached at a block that a reorg then rolled back is not served for the block that
/// replaced it at the same height (the cache key holds the leafdb's reverts): served as read at
/// that height, it would be a lie about the new block, and cost us as junk.
#[test]
fn a_chunk_cached_before_a_rollback_is_not_served_after_it() {
    let fx = generated(2_000, 5);
    let s = server(&fx.db, ServeConfig::default());
    let genesis = fx.db.head().unwrap().unwrap();
    let ask = |s: &LeafServer<_>| chunk(s, prefix(1, 4), 1 << 20);
    let block_1 = |hash: u8| leafsync_leafdb::BlockHeader {
        hash: B256::repeat_byte(hash),
        parent_hash: genesis.hash,
        ..header(1)
    };
    let dropped = marker_block(fx.params, 1, 200);
    let undo = fx.db.undo_of(&dropped).unwrap().unwrap();
    fx.db.apply_generated_block(&block_1(0xa1), &dropped).unwrap();
    let before = ask(&s);
    assert_eq!(before.head_number, 1);
    fx.db.revert_block(&genesis, &undo).unwrap();
    fx.db.apply_generated_block(&block_1(0xb1), &marker_block(fx.params, 2, 200)).unwrap();
    let after = ask(&s);
    assert_eq!(after.head_number, 1);
    let changed = after.content != before.content;
    assert!(changed, "the chunk of the dropped block was served for the new one");
    let uncached = ask(&server(&fx.db, ServeConfig::default()));
    assert!(after.content == uncached.content, "the new block's chunk differs from a fresh read");
    let stats = s.stats().cache;
    assert_eq!((stats.hits, stats.misses), (0, 2));
}

/// A state off the chain (its computed root is not its head's: a wrong trace, a reorg the
/// leafdb could not roll back) is no block's state: its chunks and storage chunks are answered
/// as by a server without the state (no piece) and nothing of them is cached, so nothing of it
/// is handed out once a repair (here: a block whose root is the computed one) puts the state
/// back on the chain. Nodes are still served: each is sent only if it hashes as asked.
#[test]
fn a_state_off_the_chain_is_answered_as_no_state_and_nothing_of_it_is_cached() {
    let fx = generated(2_000, 5);
    let s = server(&fx.db, ServeConfig::default());
    let applied = fx.db.apply_block(&header(1), &marker_block(fx.params, 1, 200)).unwrap();
    assert!(!applied.root_matches, "the header's root is zero");
    let chunks = GetChunk { prefixes: vec![prefix(1, 4), prefix(1, 5)], max_bytes: 1 << 20 };
    let chunks = Chunk::try_from(answer(&s, &chunks.into())).unwrap();
    assert_eq!(chunks.pieces.len(), 0, "account chunks of a state off the chain");
    let contract = fx.model.iter().find(|a| !a.slots.is_empty()).unwrap();
    let storage = StoragePrefix { account: contract.hashed, prefix: WirePath::root() };
    let storage = GetStorageChunk { chunks: vec![storage], max_bytes: 1 << 20 };
    let storage = StorageChunk::try_from(answer(&s, &storage.into())).unwrap();
    assert_eq!(storage.pieces.len(), 0, "storage chunks of a state off the chain");
    let stats = s.stats();
    assert_eq!((stats.off_chain, stats.cache.inserts, stats.cache.entries), (2, 0, 0), "{stats:?}");

    let root = fx.db.snapshot().unwrap().account_root();
    let root_node = NodeRequest { owner: TrieOwner::Accounts, path: WirePath::root(), hash: root };
    let nodes = GetNodes { nodes: vec![root_node], max_bytes: 1 << 20 };
    let LeafResponse::Nodes(nodes) = answer(&s, &nodes.into()) else { panic!() };
    assert_eq!(alloy_primitives::keccak256(&nodes.nodes[0]), root, "nodes are still served");

    fx.db.apply_generated_block(&header(2), &marker_block(fx.params, 2, 200)).unwrap();
    let back = chunk(&s, prefix(1, 4), 1 << 20);
    assert_eq!(back.head_number, 2);
    assert!(matches!(back.content, ChunkContent::Items(ref leaves) if !leaves.is_empty()));
    assert_eq!(s.stats().cache.inserts, 1);
}

#[test]
fn request_handler_glue_answers_like_answer() {
    let fx = shared();
    let s = server(&fx.db, ServeConfig::default());
    let request = get_chunk(prefix(2, 0x11), 1 << 20);
    assert_eq!(RequestHandler::handle(&s, PEER, &request), s.answer(&request));
    // More hashes than the protocol allows cannot arrive (the decoder refuses them); the server
    // still serves at most the limit.
    let codes: LeafRequest = GetCodes { hashes: vec![B256::ZERO; 2000], max_bytes: 1 }.into();
    let r = RequestHandler::handle(&s, PEER, &codes);
    assert_eq!(r.id, ids::CODES);
    let LeafResponse::Codes(c) = answer(&s, &codes) else { panic!() };
    assert!(c.codes.len() <= 1024);
}
