//! The serve crate wired into a running p2p node: a second node fetches chunks, storage chunks,
//! trie nodes and codes over RLPx on loopback, and every answer equals the direct query on the
//! server's snapshot and verifies against the server's trie.
#![allow(clippy::unwrap_used)] // a test fails loudly on bad fixtures

use std::sync::Arc;

use alloy_primitives::{B256, keccak256};
use alloy_trie::EMPTY_ROOT_HASH;
use leafsync_leafdb::{DbOptions, GenParams, LeafDb, LeafDbConfig};
use leafsync_p2p::{
    PeerId,
    leaf::{
        Chunk, ChunkContent, Codes, GetChunk, GetCodes, GetNodes, GetStorageChunk, LeafRequest,
        LeafResponse, NodeRequest, Nodes, StorageChunk, StoragePrefix, TrieOwner, WirePath,
    },
    peers::{EmptyHandler, NetworkHandle},
    test_utils::{TestNode, test_head, wait_connected},
};
use leafsync_serve::{LeafServer, ServeConfig, serve_chunk, serve_storage_chunk};

/// Sends `request` to `peer` and takes the response of the kind asked for apart.
async fn ask<T>(client: &NetworkHandle, peer: PeerId, request: impl Into<LeafRequest>) -> T
where
    T: TryFrom<LeafResponse, Error = LeafResponse>,
{
    let response = client.request(peer, request.into()).await.unwrap();
    T::try_from(response).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_serves_every_request_kind_over_rlpx() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(
        LeafDb::open(
            dir.path(),
            &DbOptions::default().block_cache_bytes(16 << 20),
            LeafDbConfig::default(),
        )
        .unwrap(),
    );
    let root = db.generate(GenParams { accounts: 5_000, seed: 3 }).unwrap().root;
    let server_handler = Arc::new(LeafServer::new(db.clone(), ServeConfig::default()));
    let server = TestNode::start(server_handler.clone(), test_head(0, root), Vec::new()).await;
    let client_head = test_head(0, EMPTY_ROOT_HASH);
    let client = TestNode::start(Arc::new(EmptyHandler), client_head, vec![server.enode()]).await;
    let server_id = server.id();
    let (server, client) = (server.handle, client.handle);
    wait_connected(&client, server_id).await;

    // Chunks: the 16 prefixes of depth 1 equal the direct query and together hold every account.
    let snap = db.snapshot().unwrap();
    let mut accounts = 0;
    let mut contract = None;
    let mut code_hash = None;
    // Four batches of four prefixes.
    for batch in 0..4u8 {
        let nibbles: Vec<u8> = (4 * batch..4 * batch + 4).collect();
        let prefixes = nibbles.iter().map(|&n| WirePath::from_nibbles(&[n]).unwrap()).collect();
        let request = GetChunk { prefixes, max_bytes: 2 << 20 };
        let got: Chunk = ask(&client, server_id, request.clone()).await;
        let direct = serve_chunk(&snap, &request, &ServeConfig::default()).unwrap();
        assert_eq!(got, direct, "batch {batch}");
        assert_eq!(got.pieces.len(), 4, "batch {batch}");
        for (piece, n) in got.pieces.into_iter().zip(nibbles) {
            assert_eq!(piece.head_number, 0);
            let ChunkContent::Items(leaves) = piece.content else {
                panic!("prefix {n:x} too large")
            };
            for leaf in &leaves {
                assert_eq!(leaf.hashed_address.0[0] >> 4, n);
                if leaf.storage_root != EMPTY_ROOT_HASH && contract.is_none() {
                    contract = Some(leaf.hashed_address);
                    code_hash = Some(leaf.code_hash);
                }
            }
            accounts += leaves.len();
        }
    }
    assert_eq!(accounts, 5_000);

    // A storage chunk of a contract, over the wire and directly.
    let account = contract.unwrap();
    let request = GetStorageChunk {
        chunks: vec![
            StoragePrefix { account, prefix: WirePath::root() },
            StoragePrefix { account: B256::repeat_byte(9), prefix: WirePath::root() },
        ],
        max_bytes: 2 << 20,
    };
    let got: StorageChunk = ask(&client, server_id, request.clone()).await;
    let direct = serve_storage_chunk(&snap, &request, &ServeConfig::default()).unwrap();
    assert_eq!(got, direct);
    assert_eq!(got.pieces.len(), 2);
    assert!(matches!(&got.pieces[0].content, ChunkContent::Items(slots) if !slots.is_empty()));
    assert_eq!(got.pieces[1].content, ChunkContent::Items(Vec::new()), "an unknown account");

    // The root node by path and hash; a wrong expected hash gets an empty entry.
    let root_path = WirePath::from_nibbles(&[]).unwrap();
    let nodes: Nodes = ask(
        &client,
        server_id,
        GetNodes {
            nodes: vec![
                NodeRequest { owner: TrieOwner::Accounts, path: root_path.clone(), hash: root },
                NodeRequest {
                    owner: TrieOwner::Accounts,
                    path: root_path,
                    hash: B256::repeat_byte(7),
                },
            ],
            max_bytes: 2 << 20,
        },
    )
    .await;
    assert_eq!(nodes.nodes.len(), 2);
    assert_eq!(keccak256(&nodes.nodes[0]), root);
    assert!(nodes.nodes[1].is_empty());

    // Code by hash; an unknown hash gets an empty entry.
    let code_hash = code_hash.unwrap();
    let codes: Codes = ask(
        &client,
        server_id,
        GetCodes { hashes: vec![code_hash, B256::repeat_byte(9)], max_bytes: 2 << 20 },
    )
    .await;
    assert_eq!(keccak256(&codes.codes[0]), code_hash);
    assert!(codes.codes[1].is_empty());

    // Four chunk batches, a storage batch, nodes and codes.
    assert!(server_handler.stats().served >= 7, "{:?}", server_handler.stats());
    client.shutdown().await;
    server.shutdown().await;
}
