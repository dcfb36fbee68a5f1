//! `eth/69` wire: the `Status` bytes field by field against EIP-7642's layout (expected RLP built
//! by hand), round trips, geth's validation order and errors, the message ids beside `snap/1`
//! and `leaf/1`, `GetBlockHeaders` decoding, the empty answers, and bad inputs refused.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use alloy_eip2124::{ForkHash, ForkId, ValidationError};
use alloy_primitives::{B256, b256, hex};
use leafsync_p2p::{
    MessageFault,
    chain::ChainSpec,
    eth::{
        BlockRangeError, BlockRangeUpdate, EthError, EthForkCheck, EthMessage, EthStatusError,
        GetBlockHeaders, HashOrNumber, HeadersRequest, RequestIds, Status,
        protocol::{self as eth, MAX_STATUS_SIZE, ids},
    },
    leaf::protocol as leaf,
    p2pstream::{Capability, DisconnectReason, Protocol, SharedCapabilities},
    snap::protocol as snap,
};

const MAINNET_GENESIS: B256 =
    b256!("d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3");
const LATEST_HASH: B256 = b256!("1111111111111111111111111111111111111111111111111111111111111111");

fn sample() -> Status {
    Status {
        version: 69,
        network_id: 1,
        genesis: MAINNET_GENESIS,
        fork_id: ForkId { hash: ForkHash([0xc3, 0x76, 0xcf, 0x8b]), next: 0 },
        earliest: 0,
        latest: 22_431_084,
        latest_hash: LATEST_HASH,
    }
}

/// EIP-7642: `[version, networkid, genesis, [forkHash, forkNext], earliest, latest, latestHash]`,
/// exactly seven fields, each in its canonical RLP.
#[test]
fn status_bytes_field_by_field() {
    let bytes = alloy_rlp::encode(sample());
    let expected = hex!(
        // list header: payload 81 bytes (> 55, so 0xf8 and one length byte)
        "f851"
        // version 69: one byte below 0x80 is its own encoding
        "45"
        // network id 1
        "01"
        // genesis: 32-byte string
        "a0d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"
        // fork id: list of [4-byte hash, next = 0 (empty string)]
        "c684c376cf8b80"
        // earliest 0: the empty string
        "80"
        // latest 22_431_084 = 0x0156456c: 4-byte string
        "840156456c"
        // latest hash
        "a01111111111111111111111111111111111111111111111111111111111111111"
    );
    assert_eq!(hex::encode(&bytes), hex::encode(expected));
    // Seven fields, no more: a decoder that counts them sees exactly seven.
    let mut payload = &bytes[2..];
    let mut fields = 0;
    while !payload.is_empty() {
        let h = alloy_rlp::Header::decode(&mut payload).unwrap();
        payload = &payload[h.payload_length..];
        fields += 1;
    }
    assert_eq!(fields, 7);
    assert_eq!(EthMessage::decode(ids::STATUS, &bytes), Ok(EthMessage::Status(sample())));
}

#[test]
fn status_round_trips_and_refuses_other_shapes() {
    for s in [
        sample(),
        Status { earliest: 5, latest: 5, ..sample() },
        Status { fork_id: ForkId { hash: ForkHash([0; 4]), next: u64::MAX }, ..sample() },
    ] {
        let bytes = alloy_rlp::encode(s);
        assert_eq!(EthMessage::decode(ids::STATUS, &bytes), Ok(EthMessage::Status(s)));
        for cut in 0..bytes.len() {
            assert!(EthMessage::decode(ids::STATUS, &bytes[..cut]).is_err());
        }
    }
    // An eth/68 status (total difficulty and head hash instead of the range) does not decode.
    let eth68 = hex!(
        "f85644018a0123456789abcdef0123"
        "a0d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"
        "a0d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"
        "c684c376cf8b80"
    );
    assert!(matches!(
        EthMessage::decode(ids::STATUS, &eth68),
        Err(EthError::Malformed { id: 0, .. })
    ));
    // An oversized status is refused before decoding.
    let huge = vec![0xc0; MAX_STATUS_SIZE + 1];
    assert!(matches!(
        EthMessage::decode(ids::STATUS, &huge),
        Err(EthError::MessageTooLarge { id: 0, .. })
    ));
}

/// Mainnet at a head just after Prague (block 22_431_084, 2025-05-07).
const HEAD: (u64, u64) = (22_431_084, 1_746_612_400);

fn ours() -> (ChainSpec, alloy_eip2124::ForkFilter, Status) {
    let chain = ChainSpec::preset("mainnet").unwrap();
    let filter = chain.fork_filter(HEAD.0, HEAD.1);
    let range = BlockRangeUpdate { earliest: 0, latest: HEAD.0, latest_hash: LATEST_HASH };
    let status = Status::ours(&chain, HEAD.0, HEAD.1, range);
    assert_eq!(status.fork_id, filter.current());
    assert_eq!(status.version, 69);
    assert_eq!(status.genesis, MAINNET_GENESIS);
    (chain, filter, status)
}

/// geth's `readStatus` order: network id, version, genesis, fork id, block range.
#[test]
fn status_validated_as_geth_does() {
    let (chain, filter, good) = ours();
    let forks = EthForkCheck::new(filter.clone(), good.fork_id);
    assert_eq!(good.validate(&chain, &forks), Ok(()));

    let bad = Status { network_id: 11_155_111, version: 68, ..good };
    let err = bad.validate(&chain, &forks).unwrap_err();
    assert_eq!(err, EthStatusError::NetworkIdMismatch { ours: 1, theirs: 11_155_111 });
    assert_eq!(err.disconnect_reason(), DisconnectReason::UselessPeer);

    let bad = Status { version: 68, genesis: B256::ZERO, ..good };
    let err = bad.validate(&chain, &forks).unwrap_err();
    assert_eq!(err, EthStatusError::VersionMismatch { ours: 69, theirs: 68 });
    assert_eq!(err.disconnect_reason(), DisconnectReason::SubprotocolSpecific);

    let bad = Status { genesis: B256::ZERO, ..good };
    assert!(matches!(bad.validate(&chain, &forks), Err(EthStatusError::GenesisMismatch { .. })));

    let bad = Status { fork_id: ForkId { hash: ForkHash([1, 2, 3, 4]), next: 0 }, ..good };
    assert!(matches!(
        bad.validate(&chain, &forks),
        Err(EthStatusError::ForkId(ValidationError::LocalIncompatibleOrStale { .. }))
    ));

    // A fork id the preset's schedule does not know (a fork activated after this build) passes
    // when it is the one we announce: the execution client's, from its `eth_config`.
    let unknown = ForkId { hash: ForkHash([1, 2, 3, 4]), next: 0 };
    let peer = Status { fork_id: unknown, ..good };
    let announced = EthForkCheck::new(filter, unknown);
    assert_eq!(peer.validate(&chain, &announced), Ok(()));
    let other = Status { fork_id: ForkId { hash: ForkHash([5, 6, 7, 8]), next: 0 }, ..good };
    assert!(other.validate(&chain, &announced).is_err(), "another unknown one still fails");

    let bad = Status { earliest: 10, latest: 9, ..good };
    assert_eq!(
        bad.validate(&chain, &forks),
        Err(EthStatusError::BlockRange(BlockRangeError::EarliestAfterLatest {
            earliest: 10,
            latest: 9
        }))
    );
    let bad = Status { latest_hash: B256::ZERO, ..good };
    assert_eq!(
        bad.validate(&chain, &forks),
        Err(EthStatusError::BlockRange(BlockRangeError::ZeroLatestHash))
    );
    // The latest block becomes the peer's head: as a `leaf/1` Status head, no number above
    // `MAX_HEAD_NUMBER` (u64::MAX here would reach the sync as a snap/1 peer's head).
    let bad = Status { latest: u64::MAX, ..good };
    let err = bad.validate(&chain, &forks).unwrap_err();
    assert_eq!(err, EthStatusError::BlockRange(BlockRangeError::Implausible(u64::MAX)));
    assert_eq!(err.disconnect_reason(), DisconnectReason::SubprotocolSpecific);
    let edge = Status { latest: leafsync_p2p::peers::MAX_HEAD_NUMBER, ..good };
    assert_eq!(edge.validate(&chain, &forks), Ok(()));
}

/// Capabilities sort by name and take consecutive ids after 0x10: eth/69 0x10..=0x21, then
/// snap/1 at 0x22 (a geth peer), or leaf/1 at 0x22 and snap/1 at 0x2c (a leafsync peer).
#[test]
fn message_ids_beside_snap_and_leaf() {
    assert_eq!(eth::MESSAGE_COUNT, 18);
    assert_eq!(ids::BLOCK_RANGE_UPDATE + 1, eth::MESSAGE_COUNT);
    let ours = [
        Protocol::new(eth::PROTOCOL_NAME, eth::PROTOCOL_VERSION, eth::MESSAGE_COUNT),
        Protocol::new(snap::PROTOCOL_NAME, snap::PROTOCOL_VERSION, snap::MESSAGE_COUNT),
        Protocol::new(leaf::PROTOCOL_NAME, u64::from(leaf::PROTOCOL_VERSION), leaf::MESSAGE_COUNT),
    ];
    let geth = [Capability::new("eth", 69), Capability::new("eth", 70), Capability::new("snap", 1)];
    let shared = SharedCapabilities::new(&ours, &geth);
    let got: Vec<_> = shared.iter().map(|c| (c.cap.to_string(), c.offset)).collect();
    assert_eq!(got, vec![("eth/69".to_string(), 0x10), ("snap/1".to_string(), 0x22)]);

    let leafsync =
        [Capability::new("eth", 69), Capability::new("leaf", 1), Capability::new("snap", 1)];
    let shared = SharedCapabilities::new(&ours, &leafsync);
    let got: Vec<_> = shared.iter().map(|c| (c.cap.to_string(), c.offset)).collect();
    assert_eq!(
        got,
        vec![
            ("eth/69".to_string(), 0x10),
            ("leaf/1".to_string(), 0x22),
            ("snap/1".to_string(), 0x2c)
        ]
    );
}

#[test]
fn get_block_headers_decodes_by_number_and_by_hash() {
    // [5, [0x0156456c, 16, 0, false]]: 0xca list of 10 bytes, the query 0xc8 of 8
    let by_number = hex!("ca05c8840156456c108080");
    let want = GetBlockHeaders {
        request_id: 5,
        query: HeadersRequest {
            origin: HashOrNumber::Number(22_431_084),
            amount: 16,
            skip: 0,
            reverse: false,
        },
    };
    assert_eq!(
        EthMessage::decode(ids::GET_BLOCK_HEADERS, &by_number),
        Ok(EthMessage::GetBlockHeaders(want))
    );
    let by_hash = GetBlockHeaders {
        request_id: 6,
        query: HeadersRequest {
            origin: HashOrNumber::Hash(LATEST_HASH),
            amount: 1,
            skip: 2,
            reverse: true,
        },
    };
    let bytes = alloy_rlp::encode(by_hash);
    assert_eq!(
        EthMessage::decode(ids::GET_BLOCK_HEADERS, &bytes),
        Ok(EthMessage::GetBlockHeaders(by_hash))
    );
    // A 9-byte number is neither a hash nor a u64.
    let bad = hex!("cf05cd89010203040506070809018080");
    assert!(matches!(
        EthMessage::decode(ids::GET_BLOCK_HEADERS, &bad),
        Err(EthError::Malformed { .. })
    ));
}

/// `BlockHeaders`, `BlockBodies`, `PooledTransactions`, `Receipts`: `[request_id, []]`.
#[test]
fn requests_are_answered_empty() {
    let hashes = RequestIds { request_id: 0x1234, hashes: vec![LATEST_HASH] };
    let cases = [
        (ids::GET_BLOCK_BODIES, ids::BLOCK_BODIES),
        (ids::GET_POOLED_TRANSACTIONS, ids::POOLED_TRANSACTIONS),
        (ids::GET_RECEIPTS, ids::RECEIPTS),
    ];
    for (req, res) in cases {
        let msg = EthMessage::decode(req, &alloy_rlp::encode(&hashes)).unwrap();
        assert_eq!(msg.empty_answer(), Some((res, hex!("c4821234c0").to_vec())));
    }
    let headers =
        EthMessage::decode(ids::GET_BLOCK_HEADERS, &hex!("ca05c8840156456c108080")).unwrap();
    assert_eq!(headers.empty_answer(), Some((ids::BLOCK_HEADERS, hex!("c205c0").to_vec())));
    assert_eq!(EthMessage::Status(sample()).empty_answer(), None);
}

#[test]
fn broadcasts_are_ignored_and_block_ranges_checked() {
    // Transactions are not decoded: any payload within the size limit is an announcement.
    assert_eq!(
        EthMessage::decode(ids::TRANSACTIONS, &[0xff, 0x00]),
        Ok(EthMessage::Announcement { id: ids::TRANSACTIONS, size: 2 })
    );
    let update = BlockRangeUpdate { earliest: 1, latest: 2, latest_hash: LATEST_HASH };
    assert_eq!(
        EthMessage::decode(ids::BLOCK_RANGE_UPDATE, &alloy_rlp::encode(update)),
        Ok(EthMessage::BlockRangeUpdate(update))
    );
    let bad = BlockRangeUpdate { earliest: 3, ..update };
    assert_eq!(
        EthMessage::decode(ids::BLOCK_RANGE_UPDATE, &alloy_rlp::encode(bad)),
        Err(EthError::BlockRange(BlockRangeError::EarliestAfterLatest { earliest: 3, latest: 2 }))
    );
    // A response we never asked for: its request id is read for the caller.
    assert_eq!(
        EthMessage::decode(ids::BLOCK_HEADERS, &hex!("c207c0")),
        Ok(EthMessage::Response { id: ids::BLOCK_HEADERS, request_id: 7, size: 3 })
    );
}

#[test]
fn bad_inputs_are_refused_with_named_errors() {
    assert_eq!(EthMessage::decode(ids::NEW_BLOCK, &[0xc0]), Err(EthError::Disallowed(0x07)));
    assert_eq!(EthMessage::decode(ids::NEW_BLOCK_HASHES, &[0xc0]), Err(EthError::Disallowed(0x01)));
    let unknown = EthMessage::decode(0x0b, &[0xc0]).unwrap_err();
    assert_eq!(unknown, EthError::UnknownMessageId(0x0b));
    assert!(!unknown.is_protocol_breach());
    assert_eq!(EthMessage::decode(0x12, &[0xc0]), Err(EthError::UnknownMessageId(0x12)));
    let big = vec![0u8; eth::MAX_REQUEST_SIZE + 1];
    let err = EthMessage::decode(ids::GET_RECEIPTS, &big).unwrap_err();
    assert!(matches!(err, EthError::MessageTooLarge { .. }));
    assert_eq!(err.disconnect_reason(), Some(DisconnectReason::ProtocolBreach));
    // Trailing bytes after a request.
    assert!(matches!(
        EthMessage::decode(ids::GET_BLOCK_HEADERS, &hex!("ca05c8840156456c10808000")),
        Err(EthError::Malformed { .. })
    ));
    // A response whose list length lies.
    assert!(matches!(
        EthMessage::decode(ids::RECEIPTS, &hex!("c507c0")),
        Err(EthError::Malformed { .. })
    ));
}
