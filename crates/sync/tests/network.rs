//! The `NetworkHandle` adapter end to end: two real servers on loopback (RLPx, `leaf/1`) serve a
//! generated state through `LeafServer`; a client syncs it through `network_peers` and rebuilds
//! exactly the source's state.
#![allow(clippy::unwrap_used)]

mod common;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy_primitives::B256;
use alloy_trie::EMPTY_ROOT_HASH;
use common::{assert_same_state, assert_synced, source};
use leafsync_leafdb::{LeafDb, MemStore};
use leafsync_p2p::{
    chain::ChainSpec,
    leaf::{ChainHead, ServeFlags},
    peers::{
        EmptyHandler, LocalHead, Network, NetworkConfig, NetworkHandle, NodeRecord, RequestHandler,
    },
};
use leafsync_serve::{LeafServer, ServeConfig};
use leafsync_sync::{PeerSources, SyncConfig, Syncer, network_peers, watch_network_peers};
use secp256k1::SecretKey;
use tokio::sync::watch;

/// Bound on waiting for the nodes to connect.
const CONNECT_WAIT: Duration = Duration::from_secs(20);
const ACCOUNTS: u64 = 1500;

/// A running node and the sender of its announced head.
type Server = (NetworkHandle, watch::Sender<LocalHead>);

async fn start(
    handler: Arc<dyn RequestHandler>,
    state_root: B256,
    peers: Vec<NodeRecord>,
) -> Server {
    let head = LocalHead {
        head: ChainHead { number: 0, hash: B256::ZERO, state_root },
        timestamp: 0,
        account_estimate: ACCOUNTS,
        serves: ServeFlags::ALL,
    };
    let (tx, rx) = watch::channel(head);
    let chain = ChainSpec::preset("sepolia").unwrap();
    let mut config = NetworkConfig::new(SecretKey::new(&mut rand::rng()), chain, rx, handler);
    config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.dial_interval = Duration::from_millis(100);
    config.static_peers = peers;
    (Network::start(config).await.unwrap(), tx)
}

/// A generated state (seed `seed`) served by two loopback servers.
async fn two_servers(seed: u64) -> (Arc<LeafDb<MemStore>>, B256, Vec<Server>) {
    let src = source(ACCOUNTS, seed);
    let root = src.account_root().unwrap();
    let mut servers = Vec::new();
    for _ in 0..2 {
        let handler = Arc::new(LeafServer::new(Arc::clone(&src), ServeConfig::default()));
        servers.push(start(handler, root, Vec::new()).await);
    }
    (src, root, servers)
}

/// A client node dialing `peers`, once it is connected to all of them.
async fn client(peers: Vec<NodeRecord>) -> Server {
    let n = peers.len();
    let client = start(Arc::new(EmptyHandler), EMPTY_ROOT_HASH, peers).await;
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    while client.0.peers().await.len() < n {
        assert!(tokio::time::Instant::now() < deadline, "nodes did not connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_from_two_servers_over_rlpx() {
    let (src, root, servers) = two_servers(17).await;
    let (client, _head) = client(servers.iter().map(|(h, _)| h.local_enode()).collect()).await;
    let db = Arc::new(LeafDb::in_memory());
    let config = SyncConfig { chunk_target_bytes: 16 * 1024, ..Default::default() };
    let out =
        Syncer::new(Arc::clone(&db), config, network_peers(&client).await).run().await.unwrap();
    assert_synced(&out, &db, &src, root);
    assert!(out.banned.is_empty() && out.dropped.is_empty());
    println!("over rlpx: bytes_down={} requests={}", out.stats.bytes_down, out.stats.requests);
}

/// `watch_network_peers`: a server that connects after the watch started is handed over on the
/// channel, and a `NewHead` of a known server shows in its head; a sync fed by the watch takes
/// both servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_watch_sees_new_peers_and_new_heads() {
    let (src, root, servers) = two_servers(18).await;
    let first = servers[0].0.local_enode();
    let (client, _head) = client(vec![first]).await;
    let (now, mut later) = watch_network_peers(&client, &PeerSources::default()).await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].id(), first.id);

    // The first server announces a new head: the watched peer's head follows.
    let moved = ChainHead { number: 7, hash: B256::repeat_byte(7), state_root: root };
    servers[0].1.send_modify(|h| h.head = moved);
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    while now[0].head() != moved {
        assert!(tokio::time::Instant::now() < deadline, "the new head did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The second server connects later and comes out of the channel.
    client.add_peer(servers[1].0.local_enode()).await.unwrap();
    let joined = tokio::time::timeout(CONNECT_WAIT, later.recv()).await.unwrap().unwrap();
    assert_eq!(joined.id(), servers[1].0.local_id());

    let db = Arc::new(LeafDb::in_memory());
    let config = SyncConfig { chunk_target_bytes: 16 * 1024, ..Default::default() };
    let out = Syncer::new(Arc::clone(&db), config, now).with_new_peers(later).run().await.unwrap();
    assert_eq!(out.root, root);
    assert_eq!(out.pivot, moved, "the pivot is the announced head");
    assert_same_state(&db, &src, root);
}
