//! Three leafsync nodes on loopback: two find the third (the bootnode) through discv5 and connect
//! over RLPx because of their `leaf` ENR entry, exchanging Status; a discv5 node without the entry
//! (but with a TCP port in its record) is never dialed.

mod support;

use discv5::{Discv5, Enr};
use leafsync_p2p::test_utils::plain_discv5_node;
use leafsync_p2p::{PeerId, peers::NetworkHandle};
use std::{collections::HashSet, sync::Arc, time::Duration};
use support::*;
use tokio::net::TcpListener;

/// Hard limit for the whole scenario.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(30);

/// Poll interval while waiting for the mesh (bounded by the deadline).
const POLL: Duration = Duration::from_millis(100);

/// Lets `plain` look up random ids through the bootnode (a bounded number of times), so that the
/// bootnode learns of it and hands it out to the other nodes' lookups.
fn keep_looking_up(plain: Arc<Discv5>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..100 {
            let _ = plain.find_node(enr::NodeId::random()).await;
            tokio::time::sleep(POLL).await;
        }
    })
}

async fn discovering_node(bootnodes: Vec<Enr>) -> Node {
    let (mut cfg, head) = config(Arc::new(TestHandler::default()));
    cfg.discovery = Some(discovery_config(bootnodes));
    start(cfg, head).await
}

async fn peer_ids(handle: &NetworkHandle) -> HashSet<PeerId> {
    handle.peers().await.into_iter().map(|p| p.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_find_the_bootnode_and_each_other_and_skip_nodes_without_leaf() {
    let a = discovering_node(Vec::new()).await;
    let bootnode = a.handle.local_enr().await.expect("discovery runs");
    let plain_tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let plain =
        plain_discv5_node(bootnode.clone(), plain_tcp.local_addr().expect("addr").port()).await;
    let lookups = keep_looking_up(Arc::new(plain));
    let b = discovering_node(vec![bootnode.clone()]).await;
    let c = discovering_node(vec![bootnode]).await;
    let (ida, idb, idc) = (a.handle.local_id(), b.handle.local_id(), c.handle.local_id());

    // Full mesh: b and c know a from their config, but each other only from discv5 lookups,
    // which meet the plain node the same way.
    let mesh = async {
        loop {
            let (pa, pb, pc) =
                (peer_ids(&a.handle).await, peer_ids(&b.handle).await, peer_ids(&c.handle).await);
            if pa == HashSet::from([idb, idc])
                && pb == HashSet::from([ida, idc])
                && pc == HashSet::from([ida, idb])
            {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::time::timeout(SCENARIO_DEADLINE, mesh).await.expect("mesh within the deadline");
    // b and c did meet the plain node in discv5 lookups, and dropped it as incompatible.
    let met = async {
        for handle in [&b.handle, &c.handle] {
            while handle.discovery_counters().await.is_none_or(|c| c.incompatible == 0) {
                tokio::time::sleep(POLL).await;
            }
        }
    };
    tokio::time::timeout(SCENARIO_DEADLINE, met).await.expect("plain node seen in discv5");

    // The Status exchange happened: each side holds the other's chain and head.
    for peer in b.handle.peers().await {
        assert_eq!(peer.leaf, Some(good_status()));
        assert_eq!(peer.head, local_head(0).head);
    }

    // Nobody ever dialed the node without the `leaf` entry.
    let dialed = tokio::time::timeout(Duration::from_millis(200), plain_tcp.accept()).await;
    assert!(dialed.is_err(), "a node without the leaf entry was dialed");

    lookups.abort();
    for node in [a, b, c] {
        node.handle.shutdown().await;
    }
}

/// L8: without `allow_local_addresses`, a record pointing at a loopback address is neither
/// dialed nor contacted: discv5's table filter drops it, so no lookup sends it a datagram (a
/// hostile node answering lookups with records of the operator's network cannot make us send
/// packets there). B, public only, has A's loopback record as its bootnode: A never hears of
/// B, and nobody dials anybody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_with_local_addresses_are_neither_dialed_nor_contacted_by_default() {
    let (mut cfg, head) = config(Arc::new(TestHandler::default()));
    cfg.discovery = Some(discovery_config(Vec::new()));
    let a = start(cfg, head).await;
    let bootnode = a.handle.local_enr().await.expect("discovery runs");
    let (mut cfg, head) = config(Arc::new(TestHandler::default()));
    let mut public_only = discovery_config(vec![bootnode]);
    public_only.allow_local_addresses = false;
    cfg.discovery = Some(public_only);
    let b = start(cfg, head).await;

    // B's lookups run (on an empty table) and end.
    let looked = async {
        while b.handle.discovery_counters().await.is_none_or(|c| c.lookups < 2) {
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::time::timeout(SCENARIO_DEADLINE, looked).await.expect("B's lookups ran");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (a_seen, b_seen) =
        (a.handle.discovery_counters().await, b.handle.discovery_counters().await);
    assert_eq!(a_seen.map(|c| c.seen), Some(0), "B contacted A: {a_seen:?}");
    assert_eq!(b_seen.map(|c| c.seen), Some(0), "B took in A's record: {b_seen:?}");
    assert!(a.handle.peers().await.is_empty() && b.handle.peers().await.is_empty());
    for node in [a, b] {
        node.handle.shutdown().await;
    }
}

/// Answers every snap/1 request empty (a server without the state; enough to advertise `snap`).
struct NoState;

impl leafsync_p2p::peers::SnapHandler for NoState {
    fn handle(
        &self,
        _peer: PeerId,
        request: &leafsync_p2p::snap::SnapMessage,
    ) -> leafsync_p2p::snap::SnapMessage {
        request.empty_answer().unwrap_or_else(|| request.clone())
    }
}

/// With eth enabled, a node also dials discv5 records with a `snap` entry and a compatible `eth`
/// entry (a geth serving snap/1: here a node that offers only eth/69 and snap/1); a node without
/// eth does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_eth_a_node_finds_and_dials_snap_servers() {
    let (mut cfg, head) = config(Arc::new(TestHandler::default()));
    cfg.discovery = Some(discovery_config(Vec::new()));
    cfg.eth = Some(leafsync_p2p::test_utils::test_eth(Some(Arc::new(NoState))).0);
    cfg.leaf = false;
    let server = start(cfg, head).await;
    let bootnode = server.handle.local_enr().await.expect("discovery runs");
    assert_eq!(bootnode.get_raw_rlp("snap"), Some(&[0xc0][..]), "geth's snap entry");
    assert!(bootnode.get_raw_rlp("leaf").is_none(), "no leaf/1, no leaf entry");

    let (mut cfg, head) = config(Arc::new(TestHandler::default()));
    cfg.discovery = Some(discovery_config(vec![bootnode.clone()]));
    cfg.eth = Some(leafsync_p2p::test_utils::test_eth(None).0);
    let client = start(cfg, head).await;
    let leaf_only = discovering_node(vec![bootnode]).await;

    let dialed = async {
        loop {
            let peers = client.handle.peers().await;
            if let Some(p) = peers.iter().find(|p| p.id == server.handle.local_id()) {
                return (p.leaf, p.eth.is_some(), p.snap);
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let info = tokio::time::timeout(SCENARIO_DEADLINE, dialed).await.expect("snap server dialed");
    assert_eq!(info, (None, true, true));
    // The node without eth met the snap server's record and dropped it as incompatible (it may
    // connect to the client, a leaf/1 node).
    let met = async {
        while leaf_only.handle.discovery_counters().await.is_none_or(|c| c.incompatible == 0) {
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::time::timeout(SCENARIO_DEADLINE, met).await.expect("record seen");
    let server_id = server.handle.local_id();
    assert!(peer_ids(&leaf_only.handle).await.iter().all(|id| *id != server_id), "not dialed");
    let emitted = leaf_only.handle.discovery_counters().await.map(|c| c.emitted);
    assert!(emitted.is_some_and(|n| n <= 1), "only the client is a candidate: {emitted:?}");
    for node in [server, client, leaf_only] {
        node.handle.shutdown().await;
    }
}
