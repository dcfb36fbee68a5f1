//! Peer limits, trusted and static peers, and reports through the handle.

mod support;

use leafsync_p2p::{
    P2PError, PenaltyClass,
    leaf::LeafMessage,
    p2pstream::DisconnectReason,
    peers::{NetworkEvent, NodeRecord, PenaltyReason},
};
use std::sync::Arc;
use support::*;

/// An address nothing listens on (a listener bound and dropped).
async fn dead_addr() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

#[tokio::test(flavor = "current_thread")]
async fn inbound_limit_refuses_extra_peers_but_not_trusted_ones() {
    let (trusted_sk, trusted_id) = key();
    let (mut cfg, head) = config(Arc::new(TestHandler::default()));
    cfg.max_inbound = 1;
    cfg.trusted_peers = vec![NodeRecord { id: trusted_id, addr: dead_addr().await }];
    let mut node = start(cfg, head).await;

    let (_first, _) = connected_peer(&mut node).await;
    match raw_connect(node.handle.local_enode()).await {
        Err(P2PError::Disconnected(reason)) => assert_eq!(reason, DisconnectReason::TooManyPeers),
        Err(other) => panic!("expected TooManyPeers, got {other:?}"),
        Ok(_) => panic!("second inbound peer admitted beyond the limit"),
    }

    let (mut trusted, _) =
        raw_connect_with(node.handle.local_enode(), trusted_sk).await.expect("trusted admitted");
    send_leaf(&mut trusted, LeafMessage::Status(good_status())).await;
    assert!(matches!(next_leaf(&mut trusted).await, Ok(LeafMessage::Status(_))));
    wait_connected(&node.handle, trusted_id).await;
    let peers = node.handle.peers().await;
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().any(|p| p.id == trusted_id && p.trusted));
    node.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_peers_are_dialed_and_reports_ban_them() {
    let mut server = node(Arc::new(TestHandler::default())).await;
    let mut client = node(Arc::new(TestHandler::default())).await;
    let server_id = server.handle.local_id();
    let enode: NodeRecord =
        server.handle.local_enode().to_string().parse().expect("our enode parses");
    client.handle.add_peer(enode).await.expect("command");
    wait_connected(&client.handle, server_id).await;

    // The sync layer found junk: a fatal report disconnects and bans.
    client.handle.report(server_id, PenaltyClass::Fatal).await.expect("command");
    let (class, reason) = wait_event(&mut client.events, |e| match e {
        NetworkEvent::PeerPenalised { peer, class, reason, .. } if *peer == server_id => {
            Some((*class, *reason))
        }
        _ => None,
    })
    .await;
    assert_eq!((class, reason), (PenaltyClass::Fatal, PenaltyReason::Reported));
    let reason = wait_event(&mut server.events, |e| match e {
        NetworkEvent::PeerDisconnected { reason, .. } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, Some(DisconnectReason::UselessPeer));
    // Banned: the static peer is not redialed (several dial intervals pass).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(client.handle.peers().await.is_empty());
    client.handle.shutdown().await;
    server.handle.shutdown().await;
}

/// Item 12 (review M6): `add_peer` cannot grow the static peer set beyond its cap. Observed from
/// outside: static peers are dialed, so a listener standing in for all of them counts one
/// connection per static peer held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_peers_are_capped() {
    const CAP: usize = 4;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (mut cfg, head) = config(Arc::new(TestHandler::default()));
    cfg.max_static_peers = CAP;
    let node = start(cfg, head).await;
    for _ in 0..10 * CAP {
        node.handle.add_peer(NodeRecord { id: key().1, addr }).await.expect("command");
    }
    // Each dial is one connection (which we never answer; the dial fails after ECIES times out,
    // long after this test).
    let mut dialed = Vec::new();
    while let Ok(Ok((socket, _))) =
        tokio::time::timeout(std::time::Duration::from_secs(1), listener.accept()).await
    {
        // Kept open, so that no dial fails and is retried within the test.
        dialed.push(socket);
    }
    let dialed = dialed.len();
    assert_eq!(dialed, CAP, "one dial per static peer held");
    node.handle.shutdown().await;
}

/// A node whose RLPx port is taken does not start, and its error names the address.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_rlpx_port_is_refused_naming_the_address() {
    let busy = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = busy.local_addr().expect("addr");
    let (mut cfg, _head) = config(Arc::new(TestHandler::default()));
    cfg.listen_addr = addr;
    let Err(e) = leafsync_p2p::peers::Network::start(cfg).await else {
        panic!("started on a busy port")
    };
    assert!(matches!(e, leafsync_p2p::peers::NetworkError::Bind { .. }), "{e}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}
