//! snap/1 over real RLPx sessions: a loopback node that speaks only eth/69 and snap/1 (its
//! snap/1 server is serve's, over a generated leafdb, like a geth beside its state) serves a
//! client node that syncs an empty leafdb from it, with the pivot given through the watch that
//! `PeerSources` and the sync share; the roots and tables come out equal. A node that also
//! speaks leaf/1 is taken as a leaf/1 peer.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use alloy_primitives::B256;
use common::{assert_same_state, assert_synced, source};
use leafsync_leafdb::{LeafDb, MemStore};
use leafsync_p2p::{
    leaf::ChainHead,
    peers::{EmptyHandler, EthHead, NetworkHandle, RequestHandler},
    test_utils::{TestNode, test_chain, test_config, test_eth, test_head, wait_connected},
};
use leafsync_serve::{LeafServer, ServeConfig, snap::SnapServer};
use leafsync_sync::{PeerSources, SyncConfig, Syncer, watch_network_peers};
use tokio::sync::watch;

const ACCOUNTS: u64 = 1500;

/// The source state and the pivot naming it (block 0 of the test chain, at the source's root).
fn state(seed: u64) -> (Arc<LeafDb<MemStore>>, ChainHead) {
    let src = source(ACCOUNTS, seed);
    let root = src.account_root().unwrap();
    let pivot = ChainHead { number: 0, hash: test_chain().genesis_hash, state_root: root };
    (src, pivot)
}

/// A node serving `src` over eth/69 + snap/1, and over leaf/1 too when `leaf`. Its execution
/// client's head is the pivot block.
async fn server(
    src: &Arc<LeafDb<MemStore>>,
    root: B256,
    leaf: bool,
) -> (TestNode, watch::Sender<EthHead>) {
    let handler: Arc<dyn RequestHandler> =
        Arc::new(LeafServer::new(Arc::clone(src), ServeConfig::default()));
    let (mut config, head) = test_config(handler, test_head(0, root));
    let (eth, eth_head) = test_eth(Some(Arc::new(SnapServer::new(Arc::clone(src)))));
    config.eth = Some(eth);
    config.leaf = leaf;
    (TestNode::with_config(config, head).await, eth_head)
}

/// A client node with eth enabled (it serves nothing), connected to `server`.
async fn client(server: &TestNode) -> (TestNode, watch::Sender<EthHead>) {
    client_of(&[server]).await
}

/// A client node with eth enabled, connected to every one of `servers`.
async fn client_of(servers: &[&TestNode]) -> (TestNode, watch::Sender<EthHead>) {
    let (mut config, head) = test_config(Arc::new(EmptyHandler), test_head(0, B256::ZERO));
    let (eth, eth_head) = test_eth(None);
    config.eth = Some(eth);
    config.static_peers = servers.iter().map(|s| s.enode()).collect();
    let node = TestNode::with_config(config, head).await;
    for server in servers {
        wait_connected(&node.handle, server.id()).await;
    }
    (node, eth_head)
}

/// Which protocols each peer of `handle` speaks: (leaf, eth, snap).
async fn protocols(handle: &NetworkHandle) -> Vec<(bool, bool, bool)> {
    handle.peers().await.iter().map(|p| (p.leaf.is_some(), p.eth.is_some(), p.snap)).collect()
}

async fn sync(
    handle: &NetworkHandle,
    pivot: watch::Receiver<ChainHead>,
) -> (Arc<LeafDb<MemStore>>, leafsync_sync::SyncOutcome, usize) {
    let (now, joining) = watch_network_peers(handle, &PeerSources::with_snap(pivot.clone())).await;
    let count = now.len();
    let db = Arc::new(LeafDb::in_memory());
    let config = SyncConfig { chunk_target_bytes: 16 * 1024, ..Default::default() };
    let out = Syncer::new(Arc::clone(&db), config, now)
        .with_new_peers(joining)
        .with_pivot_feed(pivot)
        .run()
        .await
        .unwrap();
    (db, out, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_from_a_snap_only_node_over_rlpx() {
    let (src, pivot) = state(31);
    let (server, _server_eth) = server(&src, pivot.state_root, false).await;
    let (client, _client_eth) = client(&server).await;
    assert_eq!(protocols(&client.handle).await, vec![(false, true, true)], "eth + snap only");

    let (_pivot_tx, pivot_rx) = watch::channel(pivot);
    let (db, out, peers) = sync(&client.handle, pivot_rx).await;
    assert_eq!(peers, 1, "the snap/1 peer is handed to the sync");
    assert_eq!(out.root, pivot.state_root);
    assert_eq!(out.pivot, pivot);
    assert_same_state(&db, &src, pivot.state_root);
    assert!(out.banned.is_empty() && out.dropped.is_empty());
    assert!(out.stats.chunks_done > 1, "the probe sized the chunks: {}", out.stats.chunks_done);
    println!("snap over rlpx: bytes_down={} requests={}", out.stats.bytes_down, out.stats.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_speaking_leaf_and_snap_is_a_leaf_peer() {
    let (src, pivot) = state(32);
    let (server, _server_eth) = server(&src, pivot.state_root, true).await;
    let (client, _client_eth) = client(&server).await;
    assert_eq!(protocols(&client.handle).await, vec![(true, true, true)]);
    let (_pivot_tx, pivot_rx) = watch::channel(pivot);
    let (now, _joining) =
        watch_network_peers(&client.handle, &PeerSources::with_snap(pivot_rx)).await;
    assert_eq!(now.len(), 1);
    // A leaf/1 peer reports the account estimate of its Status; a snap/1 peer its probe.
    assert_eq!(now[0].account_estimate(), test_head(0, B256::ZERO).account_estimate);
    assert_eq!(now[0].head(), test_head(0, pivot.state_root).head, "its leaf/1 head");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_server_and_a_snap_server_serve_one_sync_over_rlpx() {
    let (src, pivot) = state(33);
    let (leaf, _leaf_eth) = server(&src, pivot.state_root, true).await;
    let (snap, _snap_eth) = server(&src, pivot.state_root, false).await;
    let (client, _client_eth) = client_of(&[&leaf, &snap]).await;
    let (_pivot_tx, pivot_rx) = watch::channel(pivot);
    let (db, out, peers) = sync(&client.handle, pivot_rx).await;
    assert_eq!(peers, 2, "one leaf/1 peer and one snap/1 peer");
    assert_synced(&out, &db, &src, pivot.state_root);
    assert!(out.banned.is_empty() && out.dropped.is_empty());
}
