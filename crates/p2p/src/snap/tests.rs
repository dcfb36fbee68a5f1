use super::{
    path::{TERMINATOR, compact_to_hex, group_path_sets, hex_to_compact},
    protocol::{MAX_REQUEST_MESSAGE_SIZE, MAX_STORAGE_ACCOUNTS_PER_REQUEST, ids},
    *,
};
use crate::MessageFault;
use alloy_primitives::{B256, Bytes, KECCAK256_EMPTY, U256, hex};

/// Hex/compact pairs from go-ethereum's `trie/encoding_test.go` (`TestHexCompact`).
#[test]
fn compact_encoding_matches_geth_vectors() {
    let cases: [(&[u8], &[u8]); 6] = [
        (&[], &[0x00]),
        (&[16], &[0x20]),
        (&[1, 2, 3, 4, 5], &[0x11, 0x23, 0x45]),
        (&[0, 1, 2, 3, 4, 5], &[0x00, 0x01, 0x23, 0x45]),
        (&[15, 1, 12, 11, 8, 16], &[0x3f, 0x1c, 0xb8]),
        (&[0, 15, 1, 12, 11, 8, 16], &[0x20, 0x0f, 0x1c, 0xb8]),
    ];
    for (hex, compact) in cases {
        let leaf = hex.last() == Some(&TERMINATOR);
        let nibbles = if leaf { &hex[..hex.len() - 1] } else { hex };
        assert_eq!(hex_to_compact(nibbles, leaf), compact, "{hex:?}");
        assert_eq!(compact_to_hex(compact), hex, "{compact:?}");
    }
    // geth reads the empty compact path as the root, like [0x00], and flag 0x01 as even.
    assert!(compact_to_hex(&[]).is_empty());
    assert!(compact_to_hex(&[0x01]).is_empty());
}

#[test]
fn path_sets_group_per_account() {
    let a = B256::repeat_byte(0xaa);
    let b = B256::repeat_byte(0xbb);
    let sets = group_path_sets([
        (None, &[][..]),
        (Some(a), &[1][..]),
        (Some(a), &[1, 2][..]),
        (Some(b), &[][..]),
        (None, &[3][..]),
        (Some(a), &[4][..]),
    ]);
    let want = vec![
        TrieNodePathSet(vec![Bytes::from_static(&[0x00])]),
        TrieNodePathSet(vec![
            Bytes::copy_from_slice(a.as_slice()),
            Bytes::from_static(&[0x11]),
            Bytes::from_static(&[0x00, 0x12]),
        ]),
        TrieNodePathSet(vec![Bytes::copy_from_slice(b.as_slice()), Bytes::from_static(&[0x00])]),
        TrieNodePathSet(vec![Bytes::from_static(&[0x13])]),
        TrieNodePathSet(vec![Bytes::copy_from_slice(a.as_slice()), Bytes::from_static(&[0x14])]),
    ];
    assert_eq!(sets, want);
    assert_eq!(sets[1].node_count(), 2);
    assert_eq!(sets[0].node_count(), 1);
}

#[test]
fn slim_accounts_drop_empty_root_and_code() {
    let empty = SlimAccount::new(0, U256::ZERO, messages_empty_root(), KECCAK256_EMPTY);
    assert_eq!(alloy_rlp::encode(&empty), hex!("c480808080"));
    assert_eq!(empty.storage_root(), Some(messages_empty_root()));
    assert_eq!(empty.code_hash(), Some(KECCAK256_EMPTY));
    let full = SlimAccount::new(1, U256::from(2), B256::repeat_byte(3), B256::repeat_byte(4));
    assert_eq!(full.storage_root(), Some(B256::repeat_byte(3)));
    assert_eq!(alloy_rlp::encode(&full).len(), 2 + 1 + 1 + 33 + 33);
}

fn messages_empty_root() -> B256 {
    super::types::EMPTY_ROOT_HASH
}

#[test]
fn every_message_round_trips() {
    let msgs = [
        SnapMessage::GetAccountRange(GetAccountRange {
            request_id: 7,
            root: B256::repeat_byte(1),
            origin: B256::ZERO,
            limit: B256::repeat_byte(0xff),
            bytes: 4000,
        }),
        SnapMessage::AccountRange(AccountRange {
            request_id: 7,
            accounts: vec![AccountData {
                hash: B256::repeat_byte(2),
                account: SlimAccount::new(1, U256::from(5), B256::repeat_byte(3), KECCAK256_EMPTY),
            }],
            proof: vec![Bytes::from_static(&[0xc0])],
        }),
        SnapMessage::GetStorageRanges(GetStorageRanges {
            request_id: 8,
            root: B256::repeat_byte(1),
            accounts: vec![B256::repeat_byte(4)],
            origin: Bytes::new(),
            limit: Bytes::copy_from_slice(&[0xff; 32]),
            bytes: 500,
        }),
        SnapMessage::StorageRanges(StorageRanges {
            request_id: 8,
            slots: vec![vec![StorageData {
                hash: B256::repeat_byte(5),
                body: Bytes::from_static(&[2]),
            }]],
            proof: vec![],
        }),
        SnapMessage::GetByteCodes(GetByteCodes {
            request_id: 9,
            hashes: vec![KECCAK256_EMPTY],
            bytes: 1,
        }),
        SnapMessage::ByteCodes(ByteCodes { request_id: 9, codes: vec![Bytes::new()] }),
        SnapMessage::GetTrieNodes(GetTrieNodes {
            request_id: 10,
            root: B256::repeat_byte(1),
            paths: group_path_sets([(None, &[][..]), (Some(B256::repeat_byte(6)), &[1][..])]),
            bytes: 5000,
        }),
        SnapMessage::TrieNodes(TrieNodes { request_id: 10, nodes: vec![Bytes::new()] }),
    ];
    for (i, m) in msgs.into_iter().enumerate() {
        assert_eq!(usize::from(m.id()), i);
        let bytes = m.encoded();
        assert_eq!(SnapMessage::decode(m.id(), &bytes), Ok(m.clone()));
        // Truncations and a trailing byte are refused, never a panic.
        for cut in 0..bytes.len() {
            assert!(SnapMessage::decode(m.id(), &bytes[..cut]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0x80);
        assert!(matches!(SnapMessage::decode(m.id(), &long), Err(SnapError::Malformed { .. })));
    }
}

#[test]
fn bad_inputs_are_refused_with_named_errors() {
    assert_eq!(SnapMessage::decode(8, &[0xc0]), Err(SnapError::UnknownMessageId(8)));
    let huge = vec![0u8; MAX_REQUEST_MESSAGE_SIZE + 1];
    assert!(matches!(
        SnapMessage::decode(ids::GET_TRIE_NODES, &huge),
        Err(SnapError::MessageTooLarge { .. })
    ));
    // Too many accounts, counted before decoding.
    let req = GetStorageRanges {
        request_id: 1,
        root: B256::ZERO,
        accounts: vec![B256::ZERO; MAX_STORAGE_ACCOUNTS_PER_REQUEST + 1],
        origin: Bytes::new(),
        limit: Bytes::new(),
        bytes: 1,
    };
    assert!(matches!(
        SnapMessage::decode(ids::GET_STORAGE_RANGES, &alloy_rlp::encode(&req)),
        Err(SnapError::TooManyItems { what: "accounts", .. })
    ));
    // A 33-byte slot origin.
    let req = GetStorageRanges { accounts: vec![], origin: Bytes::from(vec![1; 33]), ..req };
    assert!(matches!(
        SnapMessage::decode(ids::GET_STORAGE_RANGES, &alloy_rlp::encode(&req)),
        Err(SnapError::BadLength { what: "slot origin", len: 33, .. })
    ));
    // An empty path set (geth disconnects for it).
    let req = GetTrieNodes {
        request_id: 1,
        root: B256::ZERO,
        paths: vec![TrieNodePathSet(vec![]), TrieNodePathSet::account(&[])],
        bytes: 5000,
    };
    assert_eq!(
        SnapMessage::decode(ids::GET_TRIE_NODES, &alloy_rlp::encode(&req)),
        Err(SnapError::EmptyPathSet { index: 0 })
    );
    // A slim account whose root is neither empty nor 32 bytes.
    let mut account = SlimAccount::new(0, U256::ZERO, B256::ZERO, KECCAK256_EMPTY);
    account.storage_root = Bytes::from_static(&[1, 2]);
    let res = AccountRange {
        request_id: 1,
        accounts: vec![AccountData { hash: B256::ZERO, account }],
        proof: vec![],
    };
    assert!(matches!(
        SnapMessage::decode(ids::ACCOUNT_RANGE, &alloy_rlp::encode(&res)),
        Err(SnapError::BadLength { what: "slim storage root", len: 2, .. })
    ));
    // Too many proof nodes.
    let res = AccountRange { request_id: 1, accounts: vec![], proof: vec![Bytes::new(); 129] };
    assert!(matches!(
        SnapMessage::decode(ids::ACCOUNT_RANGE, &alloy_rlp::encode(&res)),
        Err(SnapError::TooManyItems { what: "proof nodes", count: 129, .. })
    ));
    // A slot value longer than any RLP integer.
    let res = StorageRanges {
        request_id: 1,
        slots: vec![vec![StorageData { hash: B256::ZERO, body: Bytes::from(vec![1; 34]) }]],
        proof: vec![],
    };
    assert!(matches!(
        SnapMessage::decode(ids::STORAGE_RANGES, &alloy_rlp::encode(&res)),
        Err(SnapError::BadLength { what: "slot value", len: 34, .. })
    ));
    assert!(SnapError::UnknownMessageId(9).disconnect_reason().is_none());
}
