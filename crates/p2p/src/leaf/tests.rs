//! Tests of the `leaf/1` messages: RLP round trips (property tests), hostile input, and agreement
//! of the message ids with `docs/leaf-protocol.md`.

use super::{protocol::*, *};
use crate::{MessageFault, PenaltyClass};
use alloy_eip2124::{ForkHash, ForkId};
use alloy_primitives::{B256, Bytes, U256};
use proptest::prelude::*;

fn b256() -> impl Strategy<Value = B256> {
    any::<[u8; 32]>().prop_map(B256::from)
}

fn u256() -> impl Strategy<Value = U256> {
    any::<[u64; 4]>().prop_map(U256::from_limbs)
}

fn nibbles() -> impl Strategy<Value = WirePath> {
    proptest::collection::vec(0u8..16, 0..=MAX_PREFIX_NIBBLES)
        .prop_map(|n| WirePath::from_nibbles(&n).expect("strategy yields valid nibbles"))
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn chain_head() -> impl Strategy<Value = ChainHead> {
    (any::<u64>(), b256(), b256()).prop_map(|(number, hash, state_root)| ChainHead {
        number,
        hash,
        state_root,
    })
}

fn status() -> impl Strategy<Value = Status> {
    (any::<u8>(), any::<u64>(), b256(), any::<[u8; 4]>(), any::<u64>(), chain_head(), any::<u64>())
        .prop_flat_map(|(version, network_id, genesis_hash, hash, next, head, estimate)| {
            any::<u64>().prop_map(move |serves| Status {
                version,
                network_id,
                genesis_hash,
                fork_id: ForkId { hash: ForkHash(hash), next },
                head,
                account_estimate: estimate,
                serves: ServeFlags(serves),
            })
        })
}

fn slot() -> impl Strategy<Value = StorageSlot> {
    (b256(), u256()).prop_map(|(hashed_slot, value)| StorageSlot { hashed_slot, value })
}

fn account_storage() -> impl Strategy<Value = AccountStorage> {
    prop_oneof![
        proptest::collection::vec(slot(), 0..8).prop_map(AccountStorage::Inline),
        any::<u64>().prop_map(|slot_count| AccountStorage::Large { slot_count }),
    ]
}

fn account_leaf() -> impl Strategy<Value = AccountLeaf> {
    (b256(), any::<u64>(), u256(), b256(), b256(), account_storage()).prop_map(
        |(hashed_address, nonce, balance, storage_root, code_hash, storage)| AccountLeaf {
            hashed_address,
            nonce,
            balance,
            storage_root,
            code_hash,
            storage,
        },
    )
}

fn content<T: std::fmt::Debug + Clone>(
    item: impl Strategy<Value = T>,
) -> impl Strategy<Value = ChunkContent<T>> {
    prop_oneof![
        proptest::collection::vec(item, 0..6).prop_map(ChunkContent::Items),
        Just(ChunkContent::TooLarge),
    ]
}

fn account_piece() -> impl Strategy<Value = AccountPiece> {
    (any::<u64>(), content(account_leaf()))
        .prop_map(|(head_number, content)| AccountPiece { head_number, content })
}

fn storage_prefix() -> impl Strategy<Value = StoragePrefix> {
    (b256(), nibbles()).prop_map(|(account, prefix)| StoragePrefix { account, prefix })
}

fn storage_piece() -> impl Strategy<Value = StoragePiece> {
    (any::<u64>(), content(slot()))
        .prop_map(|(head_number, content)| StoragePiece { head_number, content })
}

fn trie_owner() -> impl Strategy<Value = TrieOwner> {
    prop_oneof![Just(TrieOwner::Accounts), b256().prop_map(TrieOwner::Storage)]
}

fn node_request() -> impl Strategy<Value = NodeRequest> {
    (trie_owner(), nibbles(), b256()).prop_map(|(owner, path, hash)| NodeRequest {
        owner,
        path,
        hash,
    })
}

/// `message` with an arbitrary request id, as the `LeafMessage` variant `variant`.
fn with_id<T: std::fmt::Debug + Clone>(
    message: impl Strategy<Value = T>,
    variant: fn(RequestPair<T>) -> LeafMessage,
) -> impl Strategy<Value = LeafMessage> {
    (any::<u64>(), message)
        .prop_map(move |(request_id, message)| variant(RequestPair { request_id, message }))
}

/// A request of fewer than `max_items` items and an arbitrary `max_bytes`, built by `build`.
fn request<T: std::fmt::Debug, M: std::fmt::Debug>(
    item: impl Strategy<Value = T>,
    max_items: usize,
    build: fn(Vec<T>, u64) -> M,
) -> impl Strategy<Value = M> {
    (proptest::collection::vec(item, 0..max_items), any::<u64>())
        .prop_map(move |(items, max_bytes)| build(items, max_bytes))
}

/// A response of fewer than `max_items` items, built by `build`.
fn response<T: std::fmt::Debug, M: std::fmt::Debug>(
    item: impl Strategy<Value = T>,
    max_items: usize,
    build: fn(Vec<T>) -> M,
) -> impl Strategy<Value = M> {
    proptest::collection::vec(item, 0..max_items).prop_map(build)
}

/// Any message of any kind, within the protocol's limits.
fn message() -> impl Strategy<Value = LeafMessage> {
    prop_oneof![
        status().prop_map(LeafMessage::Status),
        chain_head().prop_map(LeafMessage::NewHead),
        with_id(
            request(nibbles(), 6, |prefixes, max_bytes| GetChunk { prefixes, max_bytes }),
            LeafMessage::GetChunk
        ),
        with_id(response(account_piece(), 4, |pieces| Chunk { pieces }), LeafMessage::Chunk),
        with_id(
            request(storage_prefix(), 6, |chunks, max_bytes| GetStorageChunk { chunks, max_bytes }),
            LeafMessage::GetStorageChunk
        ),
        with_id(
            response(storage_piece(), 5, |pieces| StorageChunk { pieces }),
            LeafMessage::StorageChunk
        ),
        with_id(
            request(node_request(), 8, |nodes, max_bytes| GetNodes { nodes, max_bytes }),
            LeafMessage::GetNodes
        ),
        with_id(response(bytes(80), 8, |nodes| Nodes { nodes }), LeafMessage::Nodes),
        with_id(
            request(b256(), 8, |hashes, max_bytes| GetCodes { hashes, max_bytes }),
            LeafMessage::GetCodes
        ),
        with_id(response(bytes(200), 8, |codes| Codes { codes }), LeafMessage::Codes),
    ]
}

proptest! {
    /// Every message survives encode → decode unchanged, its declared RLP length is right, and
    /// the id it reports is the one it decodes under.
    #[test]
    fn every_message_roundtrips(msg in message()) {
        let payload = msg.encoded();
        let decoded = LeafMessage::decode(msg.id(), &payload);
        prop_assert_eq!(decoded.as_ref(), Ok(&msg));
        prop_assert!(payload.len() <= max_payload_size(msg.id()).unwrap_or(0));
    }

    /// Arbitrary bytes under any id never panic the decoder; they either decode to a message that
    /// re-encodes to exactly the same bytes (canonical RLP) or give an error.
    #[test]
    fn arbitrary_bytes_never_panic(
        id in 0u8..16,
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        if let Ok(msg) = LeafMessage::decode(id, &payload) {
            prop_assert_eq!(msg.encoded(), payload);
        }
    }

    /// Truncating or extending a valid payload never panics and is never silently accepted as the
    /// same message.
    #[test]
    fn mutated_payloads_are_refused(msg in message(), cut in 1usize..40, extra in any::<u8>()) {
        let payload = msg.encoded();
        let truncated = &payload[..payload.len().saturating_sub(cut)];
        prop_assert!(LeafMessage::decode(msg.id(), truncated) != Ok(msg.clone()));
        let mut extended = payload.clone();
        extended.push(extra);
        let err = LeafMessage::decode(msg.id(), &extended);
        prop_assert!(matches!(err, Err(LeafError::Malformed { .. })), "got {:?}", err);
    }
}

fn malformed(id: u8, payload: &[u8]) -> LeafError {
    match LeafMessage::decode(id, payload) {
        Ok(msg) => panic!("hostile payload {payload:02x?} decoded as {msg:?}"),
        Err(err) => err,
    }
}

/// `[request_id, [prefix], max_bytes]` with a raw prefix string.
fn get_chunk_with_raw_prefix(prefix: &[u8]) -> Vec<u8> {
    use alloy_rlp::Encodable;
    let mut prefixes = Vec::new();
    prefix.encode(&mut prefixes);
    let mut body = Vec::new();
    7u64.encode(&mut body);
    body.extend(rlp_list(prefixes));
    1000u64.encode(&mut body);
    rlp_list(body)
}

/// `body` (encoded items) with a list header in front.
fn rlp_list(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    alloy_rlp::Header { list: true, payload_length: body.len() }.encode(&mut out);
    out.extend(body);
    out
}

#[test]
fn hostile_prefixes_are_protocol_breaches() {
    // Odd flag with 32 more bytes: 65 nibbles.
    let mut long = vec![0x11];
    long.extend([0xab; 32]);
    // Even flag with 33 more bytes: 66 nibbles.
    let mut longer = vec![0x00];
    longer.extend([0xab; 33]);
    for prefix in [&long[..], &longer[..], &[0x20], &[0x05], &[], &[0xff, 0xff]] {
        let err = malformed(ids::GET_CHUNK, &get_chunk_with_raw_prefix(prefix));
        assert!(matches!(err, LeafError::Malformed { id: ids::GET_CHUNK, .. }), "{err:?}");
        assert!(err.is_protocol_breach());
        assert_eq!(err.penalty(), PenaltyClass::Fatal);
    }
    // The same layout with a legal 64-nibble prefix decodes.
    let mut max = vec![0x00];
    max.extend([0xab; 32]);
    assert!(LeafMessage::decode(ids::GET_CHUNK, &get_chunk_with_raw_prefix(&max)).is_ok());
}

#[test]
fn nibbles_above_fifteen_cannot_be_built() {
    assert!(matches!(
        WirePath::from_nibbles(&[3, 16]),
        Err(WirePathError::NibbleOutOfRange { index: 1, value: 16 })
    ));
    assert!(matches!(
        WirePath::from_nibbles(&[0; MAX_PREFIX_NIBBLES + 1]),
        Err(WirePathError::TooLong { len: 65 })
    ));
}

#[test]
fn too_many_items_are_refused() {
    let nodes =
        vec![
            NodeRequest { owner: TrieOwner::Accounts, path: WirePath::root(), hash: B256::ZERO };
            MAX_NODES_PER_REQUEST + 1
        ];
    let msg = LeafMessage::GetNodes(RequestPair {
        request_id: 1,
        message: GetNodes { nodes, max_bytes: 1 },
    });
    let err = malformed(ids::GET_NODES, &msg.encoded());
    assert_eq!(
        err,
        LeafError::TooManyItems {
            id: ids::GET_NODES,
            what: "nodes",
            count: MAX_NODES_PER_REQUEST + 1,
            limit: MAX_NODES_PER_REQUEST
        }
    );
    assert!(err.is_protocol_breach());

    let hashes = vec![B256::ZERO; MAX_CODES_PER_REQUEST + 1];
    let msg = LeafMessage::GetCodes(RequestPair {
        request_id: 1,
        message: GetCodes { hashes, max_bytes: 1 },
    });
    assert!(matches!(malformed(ids::GET_CODES, &msg.encoded()), LeafError::TooManyItems { .. }));

    let codes = vec![Bytes::new(); MAX_CODES_PER_REQUEST + 1];
    let msg = LeafMessage::Codes(RequestPair { request_id: 1, message: Codes { codes } });
    assert!(matches!(malformed(ids::CODES, &msg.encoded()), LeafError::TooManyItems { .. }));

    let slots = vec![
        StorageSlot { hashed_slot: B256::ZERO, value: U256::from(1) };
        MAX_INLINE_STORAGE_SLOTS + 1
    ];
    let leaf = AccountLeaf {
        hashed_address: B256::ZERO,
        nonce: 0,
        balance: U256::ZERO,
        storage_root: B256::ZERO,
        code_hash: B256::ZERO,
        storage: AccountStorage::Inline(slots),
    };
    // In the second piece of a batch as in the first.
    let piece = |content| AccountPiece { head_number: 1, content };
    let msg = LeafMessage::Chunk(RequestPair {
        request_id: 1,
        message: Chunk {
            pieces: vec![piece(ChunkContent::TooLarge), piece(ChunkContent::Items(vec![leaf]))],
        },
    });
    assert!(matches!(
        malformed(ids::CHUNK, &msg.encoded()),
        LeafError::TooManyItems { what: "inline storage slots", .. }
    ));

    let get_chunk = |prefixes: usize| {
        let message = GetChunk { prefixes: vec![WirePath::root(); prefixes], max_bytes: 1 };
        LeafMessage::GetChunk(RequestPair { request_id: 1, message })
    };
    assert!(matches!(
        malformed(ids::GET_CHUNK, &get_chunk(MAX_CHUNKS_PER_REQUEST + 1).encoded()),
        LeafError::TooManyItems { what: "account chunks", .. }
    ));
    let pieces = vec![AccountPiece::default(); MAX_CHUNKS_PER_REQUEST + 1];
    let msg = LeafMessage::Chunk(RequestPair { request_id: 1, message: Chunk { pieces } });
    assert!(matches!(
        malformed(ids::CHUNK, &msg.encoded()),
        LeafError::TooManyItems { what: "account pieces", .. }
    ));
    let msg = get_chunk(MAX_CHUNKS_PER_REQUEST);
    assert_eq!(LeafMessage::decode(ids::GET_CHUNK, &msg.encoded()), Ok(msg));

    let chunk = StoragePrefix { account: B256::ZERO, prefix: WirePath::root() };
    let msg = LeafMessage::GetStorageChunk(RequestPair {
        request_id: 1,
        message: GetStorageChunk {
            chunks: vec![chunk.clone(); MAX_STORAGE_CHUNKS_PER_REQUEST + 1],
            max_bytes: 1,
        },
    });
    assert!(matches!(
        malformed(ids::GET_STORAGE_CHUNK, &msg.encoded()),
        LeafError::TooManyItems { what: "storage chunks", .. }
    ));
    let pieces = vec![StoragePiece::default(); MAX_STORAGE_CHUNKS_PER_REQUEST + 1];
    let msg =
        LeafMessage::StorageChunk(RequestPair { request_id: 1, message: StorageChunk { pieces } });
    assert!(matches!(
        malformed(ids::STORAGE_CHUNK, &msg.encoded()),
        LeafError::TooManyItems { what: "storage pieces", .. }
    ));
    let msg = LeafMessage::GetStorageChunk(RequestPair {
        request_id: 1,
        message: GetStorageChunk {
            chunks: vec![chunk; MAX_STORAGE_CHUNKS_PER_REQUEST],
            max_bytes: 1,
        },
    });
    assert_eq!(LeafMessage::decode(ids::GET_STORAGE_CHUNK, &msg.encoded()), Ok(msg));

    // Exactly at the limit is fine.
    let nodes =
        vec![
            NodeRequest { owner: TrieOwner::Accounts, path: WirePath::root(), hash: B256::ZERO };
            MAX_NODES_PER_REQUEST
        ];
    let msg = LeafMessage::GetNodes(RequestPair {
        request_id: 1,
        message: GetNodes { nodes, max_bytes: 1 },
    });
    assert_eq!(LeafMessage::decode(ids::GET_NODES, &msg.encoded()), Ok(msg));
}

/// `[1, [item; count], ...tail]`: a list of `count` copies of the raw RLP `item` as field 1.
fn with_raw_list(count: usize, item: &[u8], tail: &[u8]) -> Vec<u8> {
    use alloy_rlp::Encodable;
    let mut body = Vec::new();
    1u64.encode(&mut body);
    body.extend(rlp_list(item.repeat(count)));
    body.extend(tail);
    rlp_list(body)
}

#[test]
fn storage_batches_are_counted_before_anything_is_decoded() {
    // Items that are not even `[account, prefix]` lists: the count is refused first, from the
    // list headers alone.
    let too_many = MAX_STORAGE_CHUNKS_PER_REQUEST + 1;
    for (id, what, tail) in [
        (ids::GET_STORAGE_CHUNK, "storage chunks", &[0x01][..]),
        (ids::STORAGE_CHUNK, "storage pieces", &[][..]),
    ] {
        let payload = with_raw_list(too_many, &[0x01], tail);
        assert_eq!(
            malformed(id, &payload),
            LeafError::TooManyItems {
                id,
                what,
                count: too_many,
                limit: MAX_STORAGE_CHUNKS_PER_REQUEST
            }
        );
        // At the limit the same junk items are malformed, found only by decoding.
        let payload = with_raw_list(MAX_STORAGE_CHUNKS_PER_REQUEST, &[0x01], tail);
        assert!(matches!(malformed(id, &payload), LeafError::Malformed { .. }));
    }
    // A piece's content that is a non-empty string is neither slots nor "too large".
    let piece = [0xc3, 0x01, 0x81, 0x05];
    assert!(matches!(
        malformed(ids::STORAGE_CHUNK, &with_raw_list(1, &piece, &[])),
        LeafError::Malformed { .. }
    ));
}

#[test]
fn account_batches_are_counted_before_anything_is_decoded() {
    // Items that are neither prefixes (0x01 is no compact path) nor `[head_number, content]`
    // pieces: the count is refused first, from the list headers alone.
    let too_many = MAX_CHUNKS_PER_REQUEST + 1;
    for (id, what, tail) in
        [(ids::GET_CHUNK, "account chunks", &[0x01][..]), (ids::CHUNK, "account pieces", &[][..])]
    {
        let payload = with_raw_list(too_many, &[0x01], tail);
        assert_eq!(
            malformed(id, &payload),
            LeafError::TooManyItems { id, what, count: too_many, limit: MAX_CHUNKS_PER_REQUEST }
        );
        // At the limit the same junk items are malformed, found only by decoding.
        let payload = with_raw_list(MAX_CHUNKS_PER_REQUEST, &[0x01], tail);
        assert!(matches!(malformed(id, &payload), LeafError::Malformed { .. }));
    }
    // A piece's content that is a non-empty string is neither leaves nor "too large"; a piece
    // cut short after its head number is malformed too.
    for piece in [&[0xc3, 0x01, 0x81, 0x05][..], &[0xc1, 0x01]] {
        assert!(matches!(
            malformed(ids::CHUNK, &with_raw_list(1, piece, &[])),
            LeafError::Malformed { .. }
        ));
    }
}

#[test]
fn oversized_payloads_are_refused_before_decoding() {
    // A request-sized limit for requests: 64 KiB + 1 of zeros is refused by size, not by RLP.
    let payload = vec![0u8; MAX_REQUEST_MESSAGE_SIZE + 1];
    for id in [
        ids::STATUS,
        ids::NEW_HEAD,
        ids::GET_CHUNK,
        ids::GET_STORAGE_CHUNK,
        ids::GET_NODES,
        ids::GET_CODES,
    ] {
        assert_eq!(
            malformed(id, &payload),
            LeafError::MessageTooLarge { id, size: payload.len(), limit: MAX_REQUEST_MESSAGE_SIZE }
        );
    }
    let payload = vec![0u8; MAX_RESPONSE_MESSAGE_SIZE + 1];
    for id in [ids::CHUNK, ids::STORAGE_CHUNK, ids::NODES, ids::CODES] {
        assert!(matches!(malformed(id, &payload), LeafError::MessageTooLarge { .. }));
    }
    // A legal response of 3 MiB (above the request limit) is accepted as a response.
    let codes = vec![Bytes::from(vec![0x60u8; 3 * 1024]); 1024];
    let msg = LeafMessage::Codes(RequestPair { request_id: 9, message: Codes { codes } });
    assert_eq!(LeafMessage::decode(ids::CODES, &msg.encoded()), Ok(msg));
}

#[test]
fn malformed_rlp_is_a_breach_and_unknown_ids_are_not() {
    let cases: [(u8, &[u8]); 7] = [
        (ids::STATUS, &[]),
        (ids::STATUS, &[0xc0]),
        (ids::NEW_HEAD, &[0xc3, 0x01, 0x02]),
        (ids::GET_CHUNK, &[0xf8]),
        (ids::NODES, &[0xc2, 0x01, 0x01]),
        // A `Chunk` whose pieces are an integer (2), not a list of pieces.
        (ids::CHUNK, &[0xc3, 0x01, 0x02, 0x05]),
        // Trie owner of 3 bytes.
        (ids::GET_NODES, &[0xcb, 0x01, 0xc7, 0xc6, 0x83, 1, 2, 3, 0x00, 0x80, 0x01]),
    ];
    for (id, payload) in cases {
        let err = malformed(id, payload);
        assert!(matches!(err, LeafError::Malformed { .. }), "{id:#x} {payload:02x?}: {err:?}");
        assert!(err.is_protocol_breach());
    }
    for id in [MESSAGE_COUNT, 0x0f, 0xff] {
        let err = malformed(id, &[0xc0]);
        assert_eq!(err, LeafError::UnknownMessageId(id));
        assert!(!err.is_protocol_breach());
        assert_eq!(err.penalty(), PenaltyClass::Mid);
    }
}

#[test]
fn fork_id_encoding_matches_geth_vectors() {
    // go-ethereum core/forkid/forkid_test.go TestEncoding, via
    // ../shared/testdata/forkid/forkid-vectors.json "encoding".
    let cases: [([u8; 4], u64, &str); 3] = [
        ([0, 0, 0, 0], 0, "c6840000000080"),
        ([0xde, 0xad, 0xbe, 0xef], 0xbaddcafe, "ca84deadbeef84baddcafe"),
        ([0xff; 4], u64::MAX, "ce84ffffffff88ffffffffffffffff"),
    ];
    for (hash, next, rlp) in cases {
        let id = ForkId { hash: ForkHash(hash), next };
        assert_eq!(hex::encode(alloy_rlp::encode(id)), rlp);
    }
}

/// The `Status` of the documented layout and of the appendix's vector.
fn documented_status() -> Status {
    Status {
        version: 1,
        network_id: 1,
        genesis_hash: B256::repeat_byte(0x11),
        fork_id: ForkId { hash: ForkHash([1, 2, 3, 4]), next: 5 },
        head: ChainHead { number: 6, hash: B256::repeat_byte(0x22), state_root: B256::ZERO },
        account_estimate: 7,
        serves: ServeFlags::ALL,
    }
}

#[test]
fn status_layout_is_the_documented_one() {
    let status = documented_status();
    let rlp = alloy_rlp::encode(status);
    let mut expected = String::from("f8");
    let body = format!(
        "0101a0{}c6840102030405f84306a0{}a0{}070f",
        "11".repeat(32),
        "22".repeat(32),
        "00".repeat(32)
    );
    expected.push_str(&format!("{:02x}", body.len() / 2));
    expected.push_str(&body);
    assert_eq!(hex::encode(rlp), expected);
}

/// The message table of `docs/leaf-protocol.md` ("| 0x.. | Name |" rows) must list exactly the ids
/// of `protocol::ids`, the limits it quotes must be the constants', and its appendix's `Status`
/// vector must be the encoder's.
#[test]
fn ids_and_limits_match_the_spec_document() {
    let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/leaf-protocol.md"));
    let expected = [
        (ids::STATUS, "Status"),
        (ids::NEW_HEAD, "NewHead"),
        (ids::GET_CHUNK, "GetChunk"),
        (ids::CHUNK, "Chunk"),
        (ids::GET_STORAGE_CHUNK, "GetStorageChunk"),
        (ids::STORAGE_CHUNK, "StorageChunk"),
        (ids::GET_NODES, "GetNodes"),
        (ids::NODES, "Nodes"),
        (ids::GET_CODES, "GetCodes"),
        (ids::CODES, "Codes"),
    ];
    let mut rows = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() > 3 && cells[1].starts_with("0x") && cells[2].starts_with('`') {
            let id = u8::from_str_radix(&cells[1][2..], 16).expect("doc id is hex");
            rows.push((id, cells[2].trim_matches('`').to_owned()));
        }
    }
    let expected: Vec<(u8, String)> =
        expected.iter().map(|(id, name)| (*id, (*name).to_owned())).collect();
    assert_eq!(rows, expected, "message table of docs/leaf-protocol.md");
    assert_eq!(rows.len(), usize::from(MESSAGE_COUNT));

    // Every limit constant appears in the doc with its value, as `NAME = value`.
    let limits = [
        ("MAX_RESPONSE_BYTES", MAX_RESPONSE_BYTES.to_string()),
        ("MAX_RESPONSE_MESSAGE_SIZE", MAX_RESPONSE_MESSAGE_SIZE.to_string()),
        ("MAX_REQUEST_MESSAGE_SIZE", MAX_REQUEST_MESSAGE_SIZE.to_string()),
        ("MAX_PREFIX_NIBBLES", MAX_PREFIX_NIBBLES.to_string()),
        ("MAX_NODES_PER_REQUEST", MAX_NODES_PER_REQUEST.to_string()),
        ("MAX_CODES_PER_REQUEST", MAX_CODES_PER_REQUEST.to_string()),
        ("MAX_CHUNKS_PER_REQUEST", MAX_CHUNKS_PER_REQUEST.to_string()),
        ("MAX_STORAGE_CHUNKS_PER_REQUEST", MAX_STORAGE_CHUNKS_PER_REQUEST.to_string()),
        ("MAX_INLINE_STORAGE_SLOTS", MAX_INLINE_STORAGE_SLOTS.to_string()),
        ("MAX_IN_FLIGHT_REQUESTS", MAX_IN_FLIGHT_REQUESTS.to_string()),
        ("REQUEST_TIMEOUT", format!("{}s", REQUEST_TIMEOUT.as_secs())),
        ("STATUS_TIMEOUT", format!("{}s", STATUS_TIMEOUT.as_secs())),
        ("MAX_PIECE_AGE_BLOCKS", MAX_PIECE_AGE_BLOCKS.to_string()),
        ("MAX_HEAD_NUMBER", MAX_HEAD_NUMBER.to_string()),
        ("MAX_HEAD_REWIND", MAX_HEAD_REWIND.to_string()),
    ];
    for (name, value) in limits {
        let needle = format!("`{name} = {value}`");
        assert!(doc.contains(&needle), "docs/leaf-protocol.md must state {needle}");
    }
    assert!(doc.contains(&format!("`{PROTOCOL_NAME}/{PROTOCOL_VERSION}`")));

    // The appendix's `Status` vector (`{xx}`: 32 bytes of 0xxx) is this status's encoding; the
    // status is `status_layout_is_the_documented_one`'s.
    let vector = "f8710101a0{11}c6840102030405f84306a0{22}a0{00}070f";
    assert!(doc.contains(&format!("`{vector}`")), "docs/leaf-protocol.md must give {vector}");
    let status = documented_status();
    let mut expanded = vector.to_owned();
    for b in ["11", "22", "00"] {
        expanded = expanded.replace(&format!("{{{b}}}"), &b.repeat(32));
    }
    assert_eq!(hex::encode(alloy_rlp::encode(status)), expanded, "the appendix's Status vector");
}

mod status_validation {
    use super::*;
    use crate::{chain::ChainSpec, leaf::InvalidHead, p2pstream::DisconnectReason};
    use alloy_eip2124::ValidationError;

    /// Mainnet at a head just after Prague (block 22_431_084, 2025-05-07).
    const HEAD: (u64, u64) = (22_431_084, 1_746_612_400);

    fn ours() -> (ChainSpec, alloy_eip2124::ForkFilter, Status) {
        let chain = ChainSpec::preset("mainnet").expect("preset parses");
        let filter = chain.fork_filter(HEAD.0, HEAD.1);
        let head = ChainHead {
            number: HEAD.0,
            hash: B256::repeat_byte(1),
            state_root: B256::repeat_byte(2),
        };
        let status = Status::ours(&chain, head, HEAD.1, 300_000_000, ServeFlags::ALL);
        assert_eq!(status.fork_id, filter.current());
        assert_eq!(status.fork_id.hash, ForkHash([0xc3, 0x76, 0xcf, 0x8b]), "mainnet Prague");
        (chain, filter, status)
    }

    #[test]
    fn a_matching_status_is_accepted() {
        let (chain, filter, status) = ours();
        assert_eq!(status.validate(&chain, &filter), Ok(()));
    }

    #[test]
    fn each_mismatch_has_its_error_and_disconnect_reason() {
        let (chain, filter, good) = ours();

        let status = Status { version: 2, ..good };
        let err = status.validate(&chain, &filter).expect_err("version mismatch");
        assert_eq!(err, StatusError::VersionMismatch { ours: 1, theirs: 2 });
        assert_eq!(err.disconnect_reason(), DisconnectReason::SubprotocolSpecific);
        assert!(!err.should_ban());

        let status = Status { network_id: 11_155_111, ..good };
        let err = status.validate(&chain, &filter).expect_err("network mismatch");
        assert_eq!(err, StatusError::NetworkIdMismatch { ours: 1, theirs: 11_155_111 });
        assert_eq!(err.disconnect_reason(), DisconnectReason::UselessPeer);
        assert!(err.should_ban());

        let status = Status { genesis_hash: B256::repeat_byte(9), ..good };
        let err = status.validate(&chain, &filter).expect_err("genesis mismatch");
        assert!(matches!(err, StatusError::GenesisMismatch { .. }));
        assert_eq!(err.disconnect_reason(), DisconnectReason::UselessPeer);

        // A peer still on Cancun that knows Prague is coming is merely behind: accepted.
        let cancun = chain.fork_id(HEAD.0, 1_710_338_135);
        assert_eq!(cancun.next, 1_746_612_311);
        let status = Status { fork_id: cancun, ..good };
        assert_eq!(status.validate(&chain, &filter), Ok(()), "syncing peer accepted");
        // One on Cancun that does not know Prague (or expects another fork) is stale software.
        let status = Status { fork_id: ForkId { next: 0, ..cancun }, ..good };
        let err = status.validate(&chain, &filter).expect_err("stale fork id");
        assert!(matches!(err, StatusError::ForkId(ValidationError::RemoteStale { .. })));
        let status = Status { fork_id: ForkId { next: 1_746_000_000, ..cancun }, ..good };
        let err = status.validate(&chain, &filter).expect_err("stale fork id");
        assert!(matches!(err, StatusError::ForkId(ValidationError::RemoteStale { .. })));
        assert_eq!(err.disconnect_reason(), DisconnectReason::SubprotocolSpecific);

        // A fork hash we have never heard of: incompatible chain.
        let status = Status { fork_id: ForkId { hash: ForkHash([1, 2, 3, 4]), next: 0 }, ..good };
        let err = status.validate(&chain, &filter).expect_err("unknown fork hash");
        assert!(matches!(
            err,
            StatusError::ForkId(ValidationError::LocalIncompatibleOrStale { .. })
        ));

        // A head that fails the `NewHead` checks that need no previous head.
        let implausible = [
            (ChainHead { hash: B256::ZERO, ..good.head }, InvalidHead::ZeroHash),
            (ChainHead { state_root: B256::ZERO, ..good.head }, InvalidHead::ZeroHash),
            (ChainHead { number: u64::MAX, ..good.head }, InvalidHead::Implausible(u64::MAX)),
        ];
        for (head, why) in implausible {
            let err = Status { head, ..good }.validate(&chain, &filter).expect_err("implausible");
            assert_eq!(err, StatusError::ImplausibleHead(why));
            assert_eq!(err.disconnect_reason(), DisconnectReason::SubprotocolSpecific);
            assert!(!err.should_ban());
        }
        // Block 0 is taken as it comes: a node without a head yet announces it with a zero hash.
        let no_head = ChainHead { number: 0, hash: B256::ZERO, state_root: B256::ZERO };
        let status = Status { head: no_head, ..good };
        assert!(!matches!(status.validate(&chain, &filter), Err(StatusError::ImplausibleHead(_))));
    }
}

/// The `leaf/1` wire bytes of every request and response, frozen when the request id moved out of
/// the message structs into [`RequestPair`] (the flat layout `[request_id, fields...]` must not
/// change; `GetStorageChunk`/`StorageChunk`, then `GetChunk`/`Chunk`, frozen again when they became
/// batched). The hex was
/// computed by an independent RLP encoder from the layouts of `docs/leaf-protocol.md`; a 32-byte
/// word is written `{aa}` for 32 bytes of `0xaa`.
#[test]
fn wire_bytes_of_every_request_and_response_are_frozen() {
    fn pair<T>(request_id: u64, message: T) -> RequestPair<T> {
        RequestPair { request_id, message }
    }
    let word = |b: u8| B256::repeat_byte(b);
    let path = |n: &[u8]| WirePath::from_nibbles(n).expect("valid nibbles");
    let leaf = |nonce, balance, storage| AccountLeaf {
        hashed_address: word(0xaa),
        nonce,
        balance,
        storage_root: word(0xbb),
        code_hash: word(0xcc),
        storage,
    };
    let slot = StorageSlot { hashed_slot: word(0xdd), value: U256::from(5) };
    let cases: Vec<(LeafMessage, &str)> = vec![
        (
            LeafMessage::GetChunk(pair(
                258,
                GetChunk { prefixes: vec![path(&[1, 2, 3]), WirePath::root()], max_bytes: 1 << 21 },
            )),
            "cc820102c48211230083200000",
        ),
        (
            LeafMessage::Chunk(pair(
                258,
                Chunk {
                    pieces: vec![
                        AccountPiece {
                            head_number: 7,
                            content: ChunkContent::Items(vec![
                                leaf(1, U256::ZERO, AccountStorage::Inline(vec![slot])),
                                leaf(
                                    2,
                                    U256::from(10u64.pow(18)),
                                    AccountStorage::Large { slot_count: 5000 },
                                ),
                            ]),
                        },
                        AccountPiece { head_number: 3, content: ChunkContent::TooLarge },
                    ],
                },
            )),
            "f9010c820102f90106f9010007f8fdf889a0{aa}0180a0{bb}a0{cc}e3e2a0{dd}05f870a0{aa}02880de0\
             b6b3a7640000a0{bb}a0{cc}821388c20380",
        ),
        (
            LeafMessage::Chunk(pair(
                3,
                Chunk {
                    pieces: vec![AccountPiece { head_number: 0, content: ChunkContent::TooLarge }],
                },
            )),
            "c503c3c28080",
        ),
        (LeafMessage::Chunk(pair(4, Chunk::default())), "c204c0"),
        (
            LeafMessage::GetStorageChunk(pair(
                1,
                GetStorageChunk {
                    chunks: vec![
                        StoragePrefix { account: word(0xaa), prefix: WirePath::root() },
                        StoragePrefix { account: word(0xbb), prefix: path(&[1, 2, 3]) },
                    ],
                    max_bytes: 1024,
                },
            )),
            "f84e01f848e2a0{aa}00e4a0{bb}821123820400",
        ),
        (
            LeafMessage::StorageChunk(pair(
                1,
                StorageChunk {
                    pieces: vec![
                        StoragePiece { head_number: 9, content: ChunkContent::Items(vec![slot]) },
                        StoragePiece { head_number: 3, content: ChunkContent::TooLarge },
                    ],
                },
            )),
            "eb01e9e509e3e2a0{dd}05c20380",
        ),
        (LeafMessage::StorageChunk(pair(4, StorageChunk::default())), "c204c0"),
        (
            LeafMessage::GetNodes(pair(
                2,
                GetNodes {
                    nodes: vec![
                        NodeRequest {
                            owner: TrieOwner::Accounts,
                            path: WirePath::root(),
                            hash: word(0xee),
                        },
                        NodeRequest {
                            owner: TrieOwner::Storage(word(0xaa)),
                            path: path(&[0xf]),
                            hash: word(0xef),
                        },
                    ],
                    max_bytes: 100,
                },
            )),
            "f86d02f869e38000a0{ee}f843a0{aa}1fa0{ef}64",
        ),
        (
            LeafMessage::Nodes(pair(
                2,
                Nodes { nodes: vec![Bytes::from_static(&[1, 2, 3]), Bytes::new()] },
            )),
            "c702c58301020380",
        ),
        (
            LeafMessage::GetCodes(pair(0, GetCodes { hashes: vec![word(0xcc)], max_bytes: 0 })),
            "e480e1a0{cc}80",
        ),
        (
            LeafMessage::Codes(pair(
                0,
                Codes { codes: vec![Bytes::from_static(&[0x60, 0x00]), Bytes::new()] },
            )),
            "c680c482600080",
        ),
    ];
    for (message, frozen) in cases {
        let mut expected = frozen.to_string();
        for b in ["aa", "bb", "cc", "dd", "ee", "ef"] {
            expected = expected.replace(&format!("{{{b}}}"), &b.repeat(32));
        }
        let id = message.id();
        assert_eq!(hex::encode(message.encoded()), expected, "{id:#04x}");
        let decoded = LeafMessage::decode(id, &message.encoded()).expect("decodes");
        assert_eq!(decoded, message, "{id:#04x}");
        // A response encoded by the serving side and framed with its id is the same bytes.
        if let Some(response) = message.clone().into_response() {
            let framed = response.message.encoded().payload(response.request_id);
            assert_eq!(hex::encode(framed), expected, "{id:#04x} framed");
        }
    }
}

#[test]
fn wire_paths_convert_to_and_from_trie_nibbles_and_owners_to_options() {
    let p = WirePath::from_nibbles(&[0xa, 0x3, 0xf]).expect("valid");
    let trie = alloy_trie::Nibbles::from(&p);
    assert_eq!(trie.to_vec(), vec![0xa, 0x3, 0xf]);
    assert_eq!(WirePath::try_from(&trie), Ok(p));
    assert_eq!(alloy_trie::Nibbles::from(WirePath::root()).len(), 0);
    let full = alloy_trie::Nibbles::from_nibbles([0x7; 64]);
    assert!(WirePath::try_from(full).is_ok());
    assert_eq!(Option::<B256>::from(TrieOwner::Accounts), None);
    let owner = B256::repeat_byte(4);
    assert_eq!(Option::<B256>::from(TrieOwner::Storage(owner)), Some(owner));
    assert_eq!(TrieOwner::from(Some(owner)), TrieOwner::Storage(owner));
    assert_eq!(TrieOwner::from(None), TrieOwner::Accounts);
}
