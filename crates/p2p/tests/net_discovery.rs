//! Three leafsync nodes on loopback: two find the third (the bootnode) through discv5 and connect
//! over RLPx because of their `leaf` ENR entry, exchanging Status; a discv5 node without the entry
//! (but with a TCP port in its record) is never dialed.

mod support;

use alloy_eip2124::{EnrForkIdEntry, ForkId};
use alloy_primitives::B256;
use discv5::{Discv5, Enr};
use leafsync_p2p::test_utils::{plain_discv5_node, test_eth};
use leafsync_p2p::{
    PeerId,
    discovery::{ETH_ENR_KEY, LeafEnrEntry, dial_candidate},
    peers::{EthHead, LocalHead, NetworkEvent, NetworkHandle},
};
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

/// The fork id in `enr`'s `eth` entry, if it has one.
fn eth_entry(enr: &Enr) -> Option<ForkId> {
    enr.get_decodable::<EnrForkIdEntry>(ETH_ENR_KEY).and_then(Result::ok).map(ForkId::from)
}

/// A node without eth/69 (leaf/1 only) puts no `eth` entry in its record: geth dials any record
/// with a compatible `eth` entry, and each such dial would cost us a handshake ending in "no
/// shared capability". The record keeps what leafsync peers dial by (`leaf`, ip, tcp, udp), and
/// our head crossing a fork does not add the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_eth_has_no_eth_entry_in_its_record() {
    let node = discovering_node(Vec::new()).await;
    let enr = node.handle.local_enr().await.expect("discovery runs");
    assert_eq!(eth_entry(&enr), None, "an eth entry without eth/69");
    assert!(enr.get_raw_rlp(ETH_ENR_KEY).is_none());
    let candidate = dial_candidate(&enr, &LeafEnrEntry::for_chain(&chain())).expect("leaf/1");
    assert_eq!(candidate.tcp_addr, node.handle.local_addr());
    assert!(enr.udp4_socket().is_some_and(|udp| udp.port() != 0));

    // Our head crosses a fork; once a peer has its announcement, the manager has handled it.
    let peer = Node::start(Arc::new(TestHandler::default()), local_head(0), vec![node.enode()]);
    let mut peer = peer.await;
    wait_connected(&peer.handle, node.id()).await;
    let past_fork = LocalHead { timestamp: 1_761_607_008, ..local_head(2_000_000) };
    assert_ne!(chain().fork_id(2_000_000, 1_761_607_008), chain().fork_id(0, 0));
    node.head.send_replace(past_fork);
    let id = node.id();
    wait_event(&mut peer.events, |event| match event {
        NetworkEvent::NewHead { peer, head } if *peer == id && *head == past_fork.head => Some(()),
        _ => None,
    })
    .await;
    let after = node.handle.local_enr().await.expect("discovery runs");
    assert!(after.get_raw_rlp(ETH_ENR_KEY).is_none(), "the fork added an eth entry");
    assert_eq!(after.seq(), enr.seq(), "the record did not change");
    for node in [node, peer] {
        node.handle.shutdown().await;
    }
}

/// An eth/69 node with snap/1 (leaf/1 off) and discovery, whose execution client is at `head`.
async fn snap_server(
    bootnodes: Vec<Enr>,
    head: EthHead,
) -> (Node, tokio::sync::watch::Sender<EthHead>) {
    let (mut cfg, local) = config(Arc::new(TestHandler::default()));
    cfg.discovery = Some(discovery_config(bootnodes));
    let (eth, el) = test_eth(Some(Arc::new(NoState)));
    el.send_replace(head);
    cfg.eth = Some(eth);
    cfg.leaf = false;
    (start(cfg, local).await, el)
}

/// A snap/1 server still syncing (geth announces its own head's fork id: a fresh one the
/// genesis's) has no state at our pivot: once our execution client's head is known, only snap
/// servers on our fork (the same fork hash) are dial candidates, though EIP-2124 accepts nodes
/// behind. The filter follows the execution client's head as it moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_servers_behind_our_fork_are_not_dialed() {
    let chain = chain();
    let synced = EthHead {
        number: 2_000_000,
        hash: B256::repeat_byte(7),
        timestamp: 1_761_607_008,
        ..EthHead::genesis(&chain)
    };
    assert_ne!(synced.fork_id(&chain).hash, chain.fork_id(0, 0).hash);
    let (mut cfg, head) = config(Arc::new(TestHandler::default()));
    cfg.discovery = Some(discovery_config(Vec::new()));
    let (eth, client_el) = test_eth(None);
    cfg.eth = Some(eth);
    let client = start(cfg, head).await;
    // The execution client answers after the start: the record (and the snap/1 filter with it)
    // moves to its fork.
    client_el.send_replace(synced);
    let moved = async {
        loop {
            let enr = client.handle.local_enr().await.expect("discovery runs");
            if eth_entry(&enr) == Some(synced.fork_id(&chain)) {
                return enr;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let bootnode = tokio::time::timeout(SCENARIO_DEADLINE, moved).await.expect("record moved");

    let (on_our_fork, _on_our_fork_el) = snap_server(vec![bootnode.clone()], synced).await;
    let (syncing, _syncing_el) = snap_server(vec![bootnode], EthHead::genesis(&chain)).await;
    wait_connected(&client.handle, on_our_fork.id()).await;
    // The syncing server's record was met and dropped (it is the only incompatible one).
    let met = async {
        while client.handle.discovery_counters().await.is_none_or(|c| c.incompatible == 0) {
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::time::timeout(SCENARIO_DEADLINE, met).await.expect("syncing server's record seen");
    let counters = client.handle.discovery_counters().await.expect("discovery runs");
    assert_eq!(counters.emitted, 1, "only the server on our fork is a candidate: {counters:?}");
    let syncing_id = syncing.id();
    assert!(peer_ids(&client.handle).await.iter().all(|id| *id != syncing_id), "dialed");
    for node in [client, on_our_fork, syncing] {
        node.handle.shutdown().await;
    }
}
