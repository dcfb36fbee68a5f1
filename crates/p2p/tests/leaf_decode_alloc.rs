//! Review finding M1: `LeafMessage::decode` must refuse a list beyond its item limit from the RLP
//! headers, before allocating the list; `SnapMessage::decode` likewise for every bounded list of
//! `snap/1` (what the snap/1 server and the snap/1 sync source read from peers); a Disconnect
//! must not be decompressed beyond its few bytes. A counting global allocator measures the peak
//! heap use of one decode call (this binary holds only these tests, which take turns, so no other
//! thread allocates meanwhile).

use alloy_primitives::Bytes;
use alloy_rlp::{BufMut, Header};
use leafsync_p2p::{
    leaf::{
        Codes, LeafError, LeafMessage, Nodes, RequestPair,
        protocol::{MAX_CODES_PER_REQUEST, MAX_NODES_PER_REQUEST, MAX_RESPONSE_MESSAGE_SIZE, ids},
    },
    p2pstream::{
        DisconnectReason,
        stream::{MAX_DISCONNECT_SIZE, decode_disconnect},
    },
    snap::{self, SnapError, SnapMessage},
    test_utils::CountingAlloc,
};
use std::sync::Mutex;

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc::new();

/// Peak heap growth above the current live bytes while `f` runs.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATOR.peak_during(f)
}

/// What a decode may allocate at most for a refused payload: far below the 128-256 MiB that
/// decoding the whole list cost before the fix.
const PEAK_LIMIT: usize = 8 * 1024 * 1024;

/// Held by each test while it measures: the tests of this binary must not allocate at once.
static MEASURING: Mutex<()> = Mutex::new(());

#[test]
fn oversized_lists_are_refused_before_they_are_allocated() {
    let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    // ~4 MiB of one-byte entries (0x80, the empty string): 4 million list items.
    let entries = 4_000_000;
    let nodes = LeafMessage::Nodes(RequestPair {
        request_id: 0,
        message: Nodes { nodes: vec![Bytes::new(); entries] },
    });
    let payload = nodes.encoded();
    drop(nodes);
    assert!(payload.len() <= MAX_RESPONSE_MESSAGE_SIZE, "within the size limit: {}", payload.len());
    let (result, peak) = peak_during(|| LeafMessage::decode(ids::NODES, &payload));
    eprintln!("Nodes of {entries} empty entries: peak allocation {peak} bytes during decode");
    assert_eq!(
        result,
        Err(LeafError::TooManyItems {
            id: ids::NODES,
            what: "nodes",
            count: entries,
            limit: MAX_NODES_PER_REQUEST
        })
    );
    assert!(peak < PEAK_LIMIT, "decoding allocated {peak} bytes");

    // One-byte codes: each would be a heap allocation of its own.
    let codes = LeafMessage::Codes(RequestPair {
        request_id: 0,
        message: Codes { codes: vec![Bytes::from_static(&[1]); entries] },
    });
    let payload = codes.encoded();
    drop(codes);
    let (result, peak) = peak_during(|| LeafMessage::decode(ids::CODES, &payload));
    eprintln!("Codes of {entries} one-byte entries: peak allocation {peak} bytes during decode");
    assert!(
        matches!(result, Err(LeafError::TooManyItems { limit: MAX_CODES_PER_REQUEST, .. })),
        "{result:?}"
    );
    assert!(peak < PEAK_LIMIT, "decoding allocated {peak} bytes");
}

/// A `snap/1` payload `[0, before..., [item × n], after...]`: request id 0, the encoded fields
/// `before`, a list of `n` copies of the encoded `item`, then the encoded fields `after`.
fn snap_payload(before: &[&[u8]], item: &[u8], n: usize, after: &[&[u8]]) -> Vec<u8> {
    let list_len = item.len() * n;
    let others: usize = before.iter().chain(after).map(|f| f.len()).sum();
    let fields = 1 + Header { list: true, payload_length: list_len }.length() + list_len + others;
    let mut out = Vec::with_capacity(fields + 9);
    Header { list: true, payload_length: fields }.encode(&mut out);
    out.put_u8(0x80);
    before.iter().for_each(|f| out.put_slice(f));
    Header { list: true, payload_length: list_len }.encode(&mut out);
    (0..n).for_each(|_| out.put_slice(item));
    after.iter().for_each(|f| out.put_slice(f));
    out
}

/// One `snap/1` message of [`snap_payload`]'s shape, and the list `TooManyItems` must name.
struct SnapCase<'a> {
    id: u8,
    before: &'a [&'a [u8]],
    item: &'a [u8],
    n: usize,
    after: &'a [&'a [u8]],
    what: &'static str,
}

#[test]
fn oversized_snap_lists_are_refused_before_they_are_allocated() {
    use snap::protocol::ids;
    let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    // Responses of up to 10 MiB: 9 million one-byte items; requests of up to 512 KiB: 500,000.
    let (big, small) = (9_000_000, 500_000);
    let root = [&[0xa0][..], &[0x11; 32]].concat();
    let root = root.as_slice();
    let (empty, list): (&[u8], &[u8]) = (&[0x80], &[0xc0]);
    // The fields around the list: none, one empty list, one or three empty strings, the root.
    let none: &[&[u8]] = &[];
    let lists: &[&[u8]] = &[list];
    let empties: &[&[u8]] = &[empty; 3];
    let at_root: &[&[u8]] = &[root];
    let case = |id, before, item, n, after, what| SnapCase { id, before, item, n, after, what };
    let cases = [
        case(ids::ACCOUNT_RANGE, none, list, big, lists, "accounts"),
        case(ids::STORAGE_RANGES, none, list, big, lists, "slot lists"),
        case(ids::BYTE_CODES, none, &[0x01], big, none, "codes"),
        case(ids::TRIE_NODES, none, empty, big, none, "trie nodes"),
        case(ids::GET_BYTE_CODES, none, empty, small, &empties[..1], "code hashes"),
        case(ids::GET_STORAGE_RANGES, at_root, empty, small, empties, "accounts"),
        case(ids::GET_TRIE_NODES, at_root, list, small, &empties[..1], "trie paths"),
    ];
    for SnapCase { id, before, item, n, after, what } in cases {
        let payload = snap_payload(before, item, n, after);
        let limit = snap::max_payload_size(id).expect("a snap/1 id");
        assert!(payload.len() <= limit, "{what}: within the size limit: {}", payload.len());
        let (result, peak) = peak_during(|| SnapMessage::decode(id, &payload));
        eprintln!("snap/1 {id:#04x}, {n} {what}: peak allocation {peak} bytes during decode");
        assert!(
            matches!(result, Err(SnapError::TooManyItems { what: w, .. }) if w == what),
            "{what}: {result:?}"
        );
        assert!(peak < PEAK_LIMIT, "{what}: decoding allocated {peak} bytes");
    }
}

/// A Disconnect whose snappy header announces 8 MiB (`[TooManyPeers]` followed by zeros, ~400 KiB
/// compressed) is read raw, without decompressing it: as an odd Disconnect, "disconnect
/// requested" (`p2p_stream.rs::odd_disconnects_are_accepted`). Before the fix it allocated 8 MiB
/// and read `TooManyPeers`.
#[test]
fn a_disconnect_announcing_8_mib_is_read_without_decompressing_it() {
    let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let mut plain = alloy_rlp::encode(DisconnectReason::TooManyPeers);
    plain.resize(8 << 20, 0);
    let payload = ::snap::raw::Encoder::new().compress_vec(&plain).expect("compress");
    drop(plain);
    let announced = ::snap::raw::decompress_len(&payload).expect("snappy header");
    assert!(announced > MAX_DISCONNECT_SIZE, "{announced}");
    let (reason, peak) = peak_during(|| decode_disconnect(&payload));
    eprintln!(
        "Disconnect announcing {announced} bytes: peak allocation {peak} bytes during decode"
    );
    assert!(peak < 64 * 1024, "decoding allocated {peak} bytes");
    assert_eq!(reason.expect("never fails"), DisconnectReason::DisconnectRequested);
}
