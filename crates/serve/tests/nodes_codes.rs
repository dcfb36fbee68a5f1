//! Trie nodes by path and hash, including nodes replaced within the recent window, and codes.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use alloy_primitives::{B256, Bytes, keccak256};
use common::*;
use leafsync_leafdb::{KvRead, Table, trie::DecodedNode};
use leafsync_p2p::leaf::{
    GetCodes, GetNodes, NodeRequest, TrieOwner, protocol::MAX_RESPONSE_BYTES,
};
use leafsync_serve::{ServeConfig, serve_codes, serve_nodes};

/// Stored nodes of the account trie at depth <= 2, and of one storage trie at depth <= 1.
fn some_stored_nodes(db: &Db, owner: Option<&B256>) -> Vec<NodeRequest> {
    let snap = db.snapshot().unwrap();
    let mut out = Vec::new();
    let max_depth = if owner.is_some() { 1 } else { 2 };
    for depth in 0..=max_depth {
        for i in 0..16usize.pow(depth) {
            let p = prefix(depth as usize, i);
            if let Some(node) =
                snap.node(owner, &alloy_trie::Nibbles::from_nibbles(p.as_slice())).unwrap()
            {
                let owner = owner.map_or(TrieOwner::Accounts, |o| TrieOwner::Storage(*o));
                out.push(NodeRequest { owner, path: p, hash: keccak256(&node) });
            }
        }
    }
    out
}

#[test]
fn nodes_by_path_and_hash_verify_and_stale_hashes_get_empty_entries() {
    let fx = shared();
    let snap = fx.db.snapshot().unwrap();
    let config = ServeConfig::default();
    let mut requests = some_stored_nodes(&fx.db, None);
    assert_eq!(requests[0].hash, snap.account_root(), "the root node is at the empty path");
    let big = fx.model.iter().max_by_key(|a| a.slots.len()).unwrap();
    let storage = some_stored_nodes(&fx.db, Some(&big.hashed));
    assert_eq!(storage[0].hash, big.account.storage_root);
    requests.extend(storage);
    assert!(requests.len() > 200);
    // Stale: a right path with a wrong hash; wrong path with a right hash; unknown owner.
    let stale = NodeRequest { hash: B256::repeat_byte(0xee), ..requests[3].clone() };
    let moved = NodeRequest { path: prefix(1, 0), ..requests[0].clone() };
    let unknown = NodeRequest {
        owner: TrieOwner::Storage(B256::repeat_byte(5)),
        ..requests.last().unwrap().clone()
    };
    let mut all = requests.clone();
    all.extend([stale, moved, unknown]);
    let n = all.len();
    let answer =
        serve_nodes(&snap, &GetNodes { nodes: all, max_bytes: MAX_RESPONSE_BYTES }, &config)
            .unwrap();
    assert_eq!(answer.nodes.len(), n);
    for (r, node) in requests.iter().zip(&answer.nodes) {
        assert_eq!(keccak256(node), r.hash);
        DecodedNode::decode(node).unwrap();
    }
    assert_eq!(&answer.nodes[n - 3..], &[Bytes::new(), Bytes::new(), Bytes::new()]);

    // The byte budget stops the list after the node that crosses it.
    let answer =
        serve_nodes(&snap, &GetNodes { nodes: requests.clone(), max_bytes: 2000 }, &config)
            .unwrap();
    let sizes: Vec<usize> = answer.nodes.iter().map(|b| b.len()).collect();
    assert!(sizes.len() < requests.len());
    assert!(sizes[..sizes.len() - 1].iter().sum::<usize>() <= 2000);
    assert!(sizes.iter().sum::<usize>() > 2000);
}

/// Leaves are not stored (the leafdb rebuilds them from the flat tables): one is still served
/// by its path and hash, and nowhere else: its hash asked at its parent's path or one nibble
/// deeper (where one flat key lies too) gets an empty entry, as does a wrong hash at its path.
#[test]
fn unstored_leaves_are_served_only_at_their_path_and_hash() {
    let fx = shared();
    let db = &fx.db;
    let snap = db.snapshot().unwrap();
    // The account trie's leaf on the path of some account: walk down from the root.
    let key: Vec<u8> = alloy_trie::Nibbles::unpack(fx.model[7].hashed).to_vec();
    let mut depth = 0;
    let leaf = loop {
        let node = snap.node(None, &alloy_trie::Nibbles::from_nibbles(&key[..depth])).unwrap();
        match node.as_deref().map(DecodedNode::decode) {
            Some(Ok(DecodedNode::Leaf { .. })) => break node.unwrap(),
            Some(Ok(DecodedNode::Branch { .. })) => depth += 1,
            other => panic!("unexpected node at depth {depth}: {other:?}"),
        }
    };
    let stored = db.store().get(Table::AccountNodes, &key[..depth]).unwrap();
    assert_eq!(stored, None, "the leaf is not stored");
    let at = |path: &[u8], hash: B256| NodeRequest {
        owner: TrieOwner::Accounts,
        path: leafsync_p2p::leaf::WirePath::from_nibbles(path).unwrap(),
        hash,
    };
    let hash = keccak256(&leaf);
    let requests = vec![
        at(&key[..depth], hash),
        at(&key[..depth - 1], hash),
        at(&key[..depth + 1], hash),
        at(&key[..depth], B256::repeat_byte(0xee)),
    ];
    let answer = serve_nodes(
        &snap,
        &GetNodes { nodes: requests, max_bytes: MAX_RESPONSE_BYTES },
        &ServeConfig::default(),
    )
    .unwrap();
    assert_eq!(answer.nodes, vec![Bytes::from(leaf), Bytes::new(), Bytes::new(), Bytes::new()]);
}

#[test]
fn nodes_replaced_within_the_recent_window_are_served_by_hash() {
    let fx = generated(3_000, 11);
    let before = some_stored_nodes(&fx.db, None);
    for number in 1..=3 {
        fx.db.apply_block(&header(number), &marker_block(fx.params, number, 40)).unwrap();
    }
    let snap = fx.db.snapshot().unwrap();
    let config = ServeConfig::default();
    let current = some_stored_nodes(&fx.db, None);
    let replaced: Vec<NodeRequest> =
        before.iter().filter(|r| !current.contains(r)).cloned().collect();
    assert!(replaced.len() > 5, "the root and some depth-1 nodes changed");
    let answer = serve_nodes(
        &snap,
        &GetNodes { nodes: replaced.clone(), max_bytes: MAX_RESPONSE_BYTES },
        &config,
    )
    .unwrap();
    for (r, node) in replaced.iter().zip(&answer.nodes) {
        assert_eq!(
            keccak256(node),
            r.hash,
            "old node at {:?} served from the recent cache",
            r.path
        );
    }
    assert_eq!(answer.nodes.len(), replaced.len());
}

#[test]
fn codes_are_returned_and_unknown_ones_are_empty() {
    let fx = shared();
    let snap = fx.db.snapshot().unwrap();
    let codes: Vec<Vec<u8>> = (0..5).map(|k| fx.params.code(k)).collect();
    let mut hashes: Vec<B256> = codes.iter().map(keccak256).collect();
    hashes.insert(2, B256::repeat_byte(0x42));
    let config = ServeConfig::default();
    let answer =
        serve_codes(&snap, &GetCodes { hashes: hashes.clone(), max_bytes: 1 << 20 }, &config)
            .unwrap();
    assert_eq!(answer.codes.len(), 6);
    assert_eq!(answer.codes[2], Bytes::new());
    let sent: Vec<Vec<u8>> =
        answer.codes.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, c)| c.to_vec()).collect();
    assert_eq!(sent, codes);
    // max_bytes 1: the first code crosses it and is the only one sent.
    let answer = serve_codes(&snap, &GetCodes { hashes, max_bytes: 1 }, &config).unwrap();
    assert_eq!(answer.codes.len(), 1);
    assert_eq!(answer.codes[0].to_vec(), codes[0]);
}
