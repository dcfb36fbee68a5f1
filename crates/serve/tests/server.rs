//! [`LeafServer`] end to end: hostile input earns the documented penalty and never panics; the
//! chunk cache hits, misses, evicts by bytes and is invalidated when the head moves; the p2p
//! request-handler glue answers like `handle`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;

use alloy_primitives::{B256, B512};
use common::*;
use leafsync_leafdb::generate::SplitMix;
use leafsync_p2p::{
    DisconnectReason,
    leaf::{
        ChunkContent, GetChunk, GetCodes, GetNodes, GetStorageChunk, LeafError, LeafMessage,
        Nibbles, NodeRequest, PenaltyClass, TrieOwner,
        protocol::{MAX_REQUEST_MESSAGE_SIZE, MAX_RESPONSE_BYTES, ids},
    },
    peers::RequestHandler,
    requests::{LeafRequest, LeafResponse},
};
use leafsync_serve::{LeafServer, Outcome, Refusal, ServeConfig};

fn server(db: &Arc<Db>, config: ServeConfig) -> LeafServer<leafsync_leafdb::RocksStore> {
    LeafServer::new(Arc::clone(db), config)
}

const PEER: B512 = B512::repeat_byte(1);

fn get_chunk(request_id: u64, prefix: Nibbles, max_bytes: u64) -> LeafMessage {
    LeafMessage::GetChunk(GetChunk { request_id, prefix, max_bytes })
}

fn respond(outcome: Outcome) -> LeafMessage {
    match outcome {
        Outcome::Respond(r) => r.decode().unwrap(),
        other => panic!("expected a response, got {other:?}"),
    }
}

fn assert_penalty(outcome: &Outcome, class: PenaltyClass, disconnect: Option<DisconnectReason>) {
    match outcome {
        Outcome::Penalty { class: c, disconnect: d, .. } => {
            assert_eq!((*c, *d), (class, disconnect), "{outcome:?}");
        }
        other => panic!("expected a penalty, got {other:?}"),
    }
}

#[test]
fn hostile_messages_earn_the_documented_penalty() {
    let fx = shared();
    let s = server(&fx.db, ServeConfig::default());
    let breach = Some(DisconnectReason::ProtocolBreach);
    // Oversize payload (not even decoded).
    let big = vec![0xc0; MAX_REQUEST_MESSAGE_SIZE + 1];
    assert_penalty(&s.handle_raw(&PEER, ids::GET_NODES, &big), PenaltyClass::Fatal, breach);
    // Malformed RLP, trailing bytes, bad nibbles (flag 2), bad owner length.
    assert_penalty(
        &s.handle_raw(&PEER, ids::GET_CHUNK, &[0xc3, 0x01]),
        PenaltyClass::Fatal,
        breach,
    );
    let mut ok = get_chunk(1, Nibbles::root(), 100).encoded();
    ok.push(0x00);
    assert_penalty(&s.handle_raw(&PEER, ids::GET_CHUNK, &ok), PenaltyClass::Fatal, breach);
    assert_penalty(
        &s.handle_raw(&PEER, ids::GET_CHUNK, &[0xc4, 0x01, 0x81, 0x20, 0x01]),
        PenaltyClass::Fatal,
        breach,
    );
    // Too many items: through the decoder and as a decoded message.
    let nodes: Vec<NodeRequest> = (0..385)
        .map(|_| NodeRequest {
            owner: TrieOwner::Accounts,
            path: Nibbles::root(),
            hash: B256::ZERO,
        })
        .collect();
    let flood = LeafMessage::GetNodes(GetNodes { request_id: 1, nodes, max_bytes: 1 });
    let outcome = s.handle_raw(&PEER, ids::GET_NODES, &flood.encoded());
    assert_penalty(&outcome, PenaltyClass::Fatal, breach);
    assert_penalty(&s.handle(&PEER, flood), PenaltyClass::Fatal, breach);
    let codes = LeafMessage::GetCodes(GetCodes {
        request_id: 1,
        hashes: vec![B256::ZERO; 1025],
        max_bytes: 1,
    });
    match s.handle(&PEER, codes) {
        Outcome::Penalty {
            reason: Refusal::TooManyItems { count: 1025, limit: 1024, .. }, ..
        } => {}
        other => panic!("{other:?}"),
    }
    // Unknown message id: dropped, mid, no disconnect.
    let outcome = s.handle_raw(&PEER, 0x0a, &[0xc0]);
    assert_penalty(&outcome, PenaltyClass::Mid, None);
    assert!(matches!(
        outcome,
        Outcome::Penalty { reason: Refusal::Decode(LeafError::UnknownMessageId(0x0a)), .. }
    ));
    // Responses and Status are not requests: handed back to the session.
    let chunk_msg = LeafMessage::Chunk(leafsync_p2p::leaf::Chunk {
        request_id: 1,
        head_number: 0,
        content: ChunkContent::TooLarge,
    });
    assert!(matches!(s.handle(&PEER, chunk_msg), Outcome::NotARequest(_)));
    assert_eq!(s.stats().penalties, 8);
}

#[test]
fn extreme_but_legal_requests_are_answered_within_budget() {
    let fx = shared();
    let s = server(&fx.db, ServeConfig::default());
    for max_bytes in [0, 1, u64::MAX] {
        let LeafMessage::Chunk(c) = respond(s.handle(&PEER, get_chunk(7, prefix(1, 3), max_bytes)))
        else {
            panic!()
        };
        assert_eq!(c.request_id, 7);
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
    let r = s.handle(&PEER, get_chunk(8, Nibbles::root(), u64::MAX));
    assert!(r.response().unwrap().payload.len() < 64);
    // A 64-nibble prefix of no account, a storage chunk of no account, 384 unknown nodes.
    let none = Nibbles::from_nibbles(&[0xf; 64]).unwrap();
    let LeafMessage::Chunk(c) = respond(s.handle(&PEER, get_chunk(9, none.clone(), 1))) else {
        panic!()
    };
    assert_eq!(c.content, ChunkContent::Items(Vec::new()));
    let sc = LeafMessage::GetStorageChunk(GetStorageChunk {
        request_id: 10,
        account: B256::ZERO,
        prefix: none,
        max_bytes: u64::MAX,
    });
    let LeafMessage::StorageChunk(c) = respond(s.handle(&PEER, sc)) else { panic!() };
    assert_eq!(c.content, ChunkContent::Items(Vec::new()));
    let nodes: Vec<NodeRequest> = (0..384u32)
        .map(|i| NodeRequest {
            owner: TrieOwner::Storage(B256::left_padding_from(&i.to_be_bytes())),
            path: Nibbles::from_nibbles(&[0xa; 64]).unwrap(),
            hash: B256::repeat_byte(3),
        })
        .collect();
    let LeafMessage::Nodes(n) = respond(
        s.handle(&PEER, LeafMessage::GetNodes(GetNodes { request_id: 11, nodes, max_bytes: 0 })),
    ) else {
        panic!()
    };
    assert_eq!(n.nodes.len(), 384);
    assert!(n.nodes.iter().all(|b| b.is_empty()));
}

#[test]
fn random_bytes_never_panic_and_map_to_the_decoder_penalty() {
    let fx = shared();
    let s = server(&fx.db, ServeConfig::default());
    let mut rng = SplitMix::new(99);
    let mut seen = [0usize; 3];
    for round in 0..4000u64 {
        let id = (rng.below(12)) as u8;
        // Half random garbage, half mutated valid requests.
        let mut payload = if round % 2 == 0 {
            let len = rng.below(80) as usize;
            (0..len).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>()
        } else {
            let mut p =
                get_chunk(rng.next_u64(), prefix(2, rng.below(256) as usize), rng.next_u64())
                    .encoded();
            let at = rng.below(p.len() as u64) as usize;
            p[at] ^= 1 << rng.below(8);
            p
        };
        if round % 7 == 0 {
            payload.truncate(rng.below(payload.len() as u64 + 1) as usize);
        }
        match s.handle_raw(&PEER, id, &payload) {
            Outcome::Respond(r) => {
                seen[0] += 1;
                r.decode().unwrap();
            }
            Outcome::Penalty { class, reason, .. } => {
                seen[1] += 1;
                assert_eq!(class, reason.penalty());
                let Refusal::Decode(e) = reason else { panic!("{reason:?}") };
                assert_eq!(class, e.penalty());
            }
            Outcome::NotARequest(_) => seen[2] += 1,
        }
    }
    assert!(seen[0] > 10 && seen[1] > 1000, "{seen:?}");
}

#[test]
fn cache_hits_share_the_body_and_echo_each_request_id() {
    let fx = shared();
    let s = server(&fx.db, ServeConfig::default());
    let p = prefix(2, 0x7c);
    let a = s.handle(&PEER, get_chunk(1, p.clone(), 1 << 20));
    let b = s.handle(&B512::repeat_byte(2), get_chunk(u64::MAX, p.clone(), 600_000));
    let (LeafMessage::Chunk(a), LeafMessage::Chunk(b)) = (respond(a), respond(b)) else { panic!() };
    assert_eq!((a.request_id, b.request_id), (1, u64::MAX));
    assert_eq!(a.content, b.content);
    assert!(!a.content.is_empty());
    let stats = s.stats().cache;
    assert_eq!((stats.hits, stats.misses, stats.inserts), (1, 1, 1), "same 1 MiB class");
    // A client whose max_bytes is below the cached chunk's size gets "too large" from the
    // same class... and a smaller class is its own entry.
    let size = alloy_rlp::encode(&a.content).len() as u64;
    let LeafMessage::Chunk(c) = respond(s.handle(&PEER, get_chunk(3, p.clone(), size - 1))) else {
        panic!()
    };
    assert_eq!(c.content, ChunkContent::TooLarge);
    let LeafMessage::Chunk(c) = respond(s.handle(&PEER, get_chunk(3, p, size))) else { panic!() };
    assert_eq!(c.content, a.content);
    assert_eq!(s.stats().cache.hits + s.stats().cache.misses, 4);
}

#[test]
fn cache_evicts_by_bytes() {
    let fx = shared();
    // Room for about three depth-2 chunks (~12 KiB each).
    let s = server(&fx.db, ServeConfig { cache_bytes: 40_000, ..ServeConfig::default() });
    for i in 0..20 {
        respond(s.handle(&PEER, get_chunk(i, prefix(2, i as usize), MAX_RESPONSE_BYTES)));
    }
    let stats = s.stats().cache;
    assert_eq!((stats.misses, stats.inserts), (20, 20));
    assert!(stats.bytes <= 40_000 && stats.entries >= 2, "{stats:?}");
    assert_eq!(stats.evictions as usize, 20 - stats.entries);
    // The most recent entry is still there, the first one is gone.
    respond(s.handle(&PEER, get_chunk(0, prefix(2, 19), MAX_RESPONSE_BYTES)));
    respond(s.handle(&PEER, get_chunk(0, prefix(2, 0), MAX_RESPONSE_BYTES)));
    let after = s.stats().cache;
    assert_eq!((after.hits, after.misses), (1, 21));
}

#[test]
fn cache_is_invalidated_after_the_head_moves_n_blocks() {
    let fx = generated(2_000, 5);
    let s = server(&fx.db, ServeConfig { cache_reuse_blocks: 2, ..ServeConfig::default() });
    let ask = |id| {
        let LeafMessage::Chunk(c) = respond(s.handle(&PEER, get_chunk(id, prefix(1, 4), 1 << 20)))
        else {
            panic!()
        };
        c
    };
    let first = ask(1);
    assert_eq!(first.head_number, 0);
    for number in 1..=2 {
        fx.db.apply_block(&header(number), &marker_block(fx.params, number, 200)).unwrap();
        let c = ask(number + 1);
        assert_eq!((c.head_number, &c.content), (0, &first.content), "reused at head {number}");
    }
    fx.db.apply_block(&header(3), &marker_block(fx.params, 3, 200)).unwrap();
    let fresh = ask(9);
    assert_eq!(fresh.head_number, 3);
    assert_ne!(fresh.content, first.content, "200 changed accounts, some under prefix 4");
    let stats = s.stats().cache;
    assert_eq!((stats.hits, stats.misses, stats.stale), (2, 2, 1));
}

#[test]
fn request_handler_glue_answers_like_handle() {
    let fx = shared();
    let s = server(&fx.db, ServeConfig::default());
    let request = GetChunk { request_id: 5, prefix: prefix(2, 0x11), max_bytes: 1 << 20 };
    let direct = respond(s.handle(&PEER, LeafMessage::GetChunk(request.clone())));
    let via_trait = RequestHandler::handle(&s, PEER, LeafRequest::GetChunk(request));
    assert_eq!(
        LeafMessage::Chunk(match via_trait {
            LeafResponse::Chunk(c) => c,
            other => panic!("{other:?}"),
        }),
        direct
    );
    let codes = GetCodes { request_id: 6, hashes: vec![B256::ZERO; 2000], max_bytes: 1 };
    // Over the limit: the trait cannot penalise, so the peer gets the empty answer.
    let r = RequestHandler::handle(&s, PEER, LeafRequest::GetCodes(codes));
    assert_eq!(r, LeafResponse::Codes(leafsync_p2p::leaf::Codes { request_id: 6, codes: vec![] }));
}
