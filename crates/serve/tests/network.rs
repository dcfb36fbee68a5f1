//! The serve crate wired into a running p2p node: a second node fetches chunks, storage chunks,
//! trie nodes and codes over RLPx on loopback, and every answer equals the direct query on the
//! server's snapshot and verifies against the server's trie.
#![allow(clippy::unwrap_used)] // a test fails loudly on bad fixtures

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy_primitives::{B256, keccak256};
use alloy_trie::EMPTY_ROOT_HASH;
use leafsync_leafdb::{DbOptions, GenParams, LeafDb, LeafDbConfig};
use leafsync_p2p::{
    PeerId,
    chain::ChainSpec,
    leaf::{
        ChainHead, ChunkContent, GetChunk, GetCodes, GetNodes, GetStorageChunk, Nibbles,
        NodeRequest, ServeFlags, TrieOwner,
    },
    peers::{EmptyHandler, LocalHead, Network, NetworkConfig, NetworkHandle, RequestHandler},
};
use leafsync_serve::{LeafServer, ServeConfig, serve_chunk, serve_storage_chunk};
use secp256k1::SecretKey;
use tokio::sync::watch;

/// Bound on waiting for the two nodes to connect.
const CONNECT_WAIT: Duration = Duration::from_secs(20);

fn head(state_root: B256) -> LocalHead {
    LocalHead {
        head: ChainHead { number: 0, hash: B256::repeat_byte(1), state_root },
        timestamp: 0,
        account_estimate: 5_000,
        serves: ServeFlags::ALL,
    }
}

async fn start(
    handler: Arc<dyn RequestHandler>,
    state_root: B256,
    peers: Vec<leafsync_p2p::peers::NodeRecord>,
) -> (NetworkHandle, watch::Sender<LocalHead>) {
    let sk = SecretKey::new(&mut rand::rng());
    let (tx, rx) = watch::channel(head(state_root));
    let chain = ChainSpec::preset("sepolia").unwrap();
    let mut config = NetworkConfig::new(sk, chain, rx, handler);
    config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.dial_interval = Duration::from_millis(100);
    config.static_peers = peers;
    (Network::start(config).await.unwrap(), tx)
}

async fn wait_connected(client: &NetworkHandle, server: PeerId) {
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    while !client.peers().await.iter().any(|p| p.id == server) {
        assert!(tokio::time::Instant::now() < deadline, "nodes did not connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let (server, _server_head) = start(server_handler.clone(), root, Vec::new()).await;
    let (client, _client_head) =
        start(Arc::new(EmptyHandler), EMPTY_ROOT_HASH, vec![server.local_enode()]).await;
    let server_id = server.local_id();
    wait_connected(&client, server_id).await;

    // Chunks: the 16 prefixes of depth 1 equal the direct query and together hold every account.
    let snap = db.snapshot().unwrap();
    let mut accounts = 0;
    let mut contract = None;
    let mut code_hash = None;
    for n in 0..16u8 {
        let request = GetChunk {
            request_id: 0,
            prefix: Nibbles::from_nibbles(&[n]).unwrap(),
            max_bytes: 2 << 20,
        };
        let got = client.get_chunk(server_id, request.clone()).await.unwrap();
        let direct = serve_chunk(&snap, &request, &ServeConfig::default()).unwrap();
        assert_eq!(got.content, direct.content, "prefix {n:x}");
        assert_eq!(got.head_number, 0);
        let ChunkContent::Items(leaves) = got.content else { panic!("prefix {n:x} too large") };
        for leaf in &leaves {
            assert_eq!(leaf.hashed_address.0[0] >> 4, n);
            if leaf.storage_root != EMPTY_ROOT_HASH && contract.is_none() {
                contract = Some(leaf.hashed_address);
                code_hash = Some(leaf.code_hash);
            }
        }
        accounts += leaves.len();
    }
    assert_eq!(accounts, 5_000);

    // A storage chunk of a contract, over the wire and directly.
    let account = contract.unwrap();
    let request = GetStorageChunk {
        request_id: 0,
        account,
        prefix: Nibbles::from_nibbles(&[]).unwrap(),
        max_bytes: 2 << 20,
    };
    let got = client.get_storage_chunk(server_id, request.clone()).await.unwrap();
    let direct = serve_storage_chunk(&snap, &request, &ServeConfig::default()).unwrap();
    assert_eq!(got.content, direct.content);
    assert!(matches!(&got.content, ChunkContent::Items(slots) if !slots.is_empty()));

    // The root node by path and hash; a wrong expected hash gets an empty entry.
    let root_path = Nibbles::from_nibbles(&[]).unwrap();
    let nodes = client
        .get_nodes(
            server_id,
            GetNodes {
                request_id: 0,
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
        .await
        .unwrap();
    assert_eq!(nodes.nodes.len(), 2);
    assert_eq!(keccak256(&nodes.nodes[0]), root);
    assert!(nodes.nodes[1].is_empty());

    // Code by hash; an unknown hash gets an empty entry.
    let code_hash = code_hash.unwrap();
    let codes = client
        .get_codes(
            server_id,
            GetCodes {
                request_id: 0,
                hashes: vec![code_hash, B256::repeat_byte(9)],
                max_bytes: 2 << 20,
            },
        )
        .await
        .unwrap();
    assert_eq!(keccak256(&codes.codes[0]), code_hash);
    assert!(codes.codes[1].is_empty());

    assert!(server_handler.stats().served >= 19, "{:?}", server_handler.stats());
    client.shutdown().await;
    server.shutdown().await;
}
