//! snap/1 and eth/69 decoding against hostile input: arbitrary payloads never panic and are
//! either refused or re-encode to exactly the bytes received; and `docs/snap.md`'s limit table
//! states the values of the constants.

use leafsync_p2p::test_utils::package_dir;
use leafsync_p2p::{
    eth::{EthMessage, protocol as eth},
    snap::{SnapMessage, protocol::*},
};
use proptest::prelude::*;

proptest! {
    #[test]
    fn snap_decode_never_panics(id in 0u8..10, payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(message) = SnapMessage::decode(id, &payload) {
            // Canonical RLP only: what decodes re-encodes to the same bytes.
            prop_assert_eq!(message.encoded(), payload);
        }
    }

    #[test]
    fn snap_decode_of_structured_lists_never_panics(
        id in 0u8..8,
        items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
    ) {
        // A list of short strings and lists: closer to real messages than random bytes.
        let mut payload = Vec::new();
        let mut body = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if i % 2 == 0 {
                alloy_rlp::encode_list::<&[u8], [u8]>(&[item.as_slice()], &mut body);
            } else {
                alloy_rlp::Encodable::encode(&item.as_slice(), &mut body);
            }
        }
        alloy_rlp::Header { list: true, payload_length: body.len() }.encode(&mut payload);
        payload.extend(body);
        let _ = SnapMessage::decode(id, &payload);
    }

    #[test]
    fn eth_decode_never_panics(id in 0u8..0x14, payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = EthMessage::decode(id, &payload);
    }
}

#[test]
fn docs_state_the_limits() {
    let doc =
        std::fs::read_to_string(package_dir(env!("CARGO_MANIFEST_DIR")).join("../../docs/snap.md"))
            .expect("docs/snap.md");
    let rows = [
        ("MAX_REQUEST_MESSAGE_SIZE", format!("{} KiB", MAX_REQUEST_MESSAGE_SIZE / 1024)),
        ("MAX_MESSAGE_SIZE", format!("{} MiB", MAX_MESSAGE_SIZE >> 20)),
        ("MAX_STORAGE_ACCOUNTS_PER_REQUEST", MAX_STORAGE_ACCOUNTS_PER_REQUEST.to_string()),
        ("MAX_CODE_HASHES_PER_REQUEST", MAX_CODE_HASHES_PER_REQUEST.to_string()),
        ("MAX_TRIE_PATHS_PER_REQUEST", MAX_TRIE_PATHS_PER_REQUEST.to_string()),
        ("MAX_TRIE_PATH_BYTES", MAX_TRIE_PATH_BYTES.to_string()),
        ("MAX_PROOF_NODES", MAX_PROOF_NODES.to_string()),
        ("MAX_SLOT_BODY_BYTES", MAX_SLOT_BODY_BYTES.to_string()),
        ("MAX_ACCOUNTS_PER_RESPONSE", "65,536".to_string()),
        ("MAX_SLOTS_PER_RESPONSE", "131,072".to_string()),
        ("SOFT_RESPONSE_LIMIT", format!("{} MiB", SOFT_RESPONSE_LIMIT >> 20)),
        ("MAX_QUERY_TIME", format!("{} s", MAX_QUERY_TIME.as_secs())),
        ("STATE_LOOKUP_SLACK_PERCENT", format!("{STATE_LOOKUP_SLACK_PERCENT} %")),
    ];
    assert_eq!(MAX_ACCOUNTS_PER_RESPONSE, 65_536);
    assert_eq!(MAX_SLOTS_PER_RESPONSE, 131_072);
    for (name, value) in rows {
        let row = format!("| `{name}` | {value} |");
        assert!(doc.contains(&row), "docs/snap.md lacks the row {row}");
    }
    assert!(doc.contains(&format!(
        "| `MAX_CODE_LOOKUPS`, `MAX_TRIE_NODE_LOOKUPS` | {MAX_CODE_LOOKUPS} |"
    )));
    assert_eq!(MAX_CODE_LOOKUPS, MAX_TRIE_NODE_LOOKUPS);
    assert!(doc.contains(&format!("{} KiB for requests", eth::MAX_REQUEST_SIZE / 1024)));
    assert!(doc.contains(&format!("{} KiB for `Status`", eth::MAX_STATUS_SIZE / 1024)));
}
