//! Hostile peers built from the lower layers (ECIES + p2p streams, `leaf/1` by hand) against a
//! real node: each case ends with the Disconnect reason and the penalty `docs/leaf-protocol.md`
//! prescribes, never a panic.

mod support;

use alloy_eip2124::{ForkHash, ForkId};
use alloy_primitives::B256;
use leafsync_p2p::{
    P2PError,
    leaf::{
        LeafMessage, PenaltyClass, Status,
        protocol::{MAX_IN_FLIGHT_REQUESTS, ids},
    },
    p2pstream::DisconnectReason,
    peers::{NetworkEvent, PenaltyReason, score::BAN_DURATION},
};
use std::{sync::Arc, time::Duration};
use support::*;

/// Connects, sends `status`, and returns the Disconnect reason the node answers with.
async fn handshake_with(node: &Node, status: Status) -> DisconnectReason {
    let (mut p2p, _) = raw_connect(node.handle.local_enode()).await.expect("hello");
    send_leaf(&mut p2p, LeafMessage::Status(status)).await;
    assert!(matches!(next_leaf(&mut p2p).await, Ok(LeafMessage::Status(_))), "node's Status");
    expect_disconnect(&mut p2p).await
}

/// The next penalty event of the node: (class, reason).
async fn next_penalty(node: &mut Node) -> (PenaltyClass, PenaltyReason) {
    wait_event(&mut node.events, |e| match e {
        NetworkEvent::PeerPenalised { class, reason, .. } => Some((*class, *reason)),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn status_mismatches_disconnect_with_their_reasons() {
    let mut node = node(Arc::new(TestHandler::default())).await;

    let wrong_genesis = Status { genesis_hash: B256::repeat_byte(0x42), ..good_status() };
    assert_eq!(handshake_with(&node, wrong_genesis).await, DisconnectReason::UselessPeer);
    assert_eq!(next_penalty(&mut node).await, (PenaltyClass::Fatal, PenaltyReason::Handshake));

    let wrong_fork = Status {
        fork_id: ForkId { hash: ForkHash([0xde, 0xad, 0xbe, 0xef]), next: 0 },
        ..good_status()
    };
    assert_eq!(handshake_with(&node, wrong_fork).await, DisconnectReason::SubprotocolSpecific);
    assert_eq!(next_penalty(&mut node).await, (PenaltyClass::High, PenaltyReason::Handshake));

    let wrong_version = Status { version: 2, ..good_status() };
    assert_eq!(handshake_with(&node, wrong_version).await, DisconnectReason::SubprotocolSpecific);
    assert!(node.handle.peers().await.is_empty());
    node.handle.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn wrong_network_is_banned_until_the_ban_expires() {
    let mut node = node(Arc::new(TestHandler::default())).await;
    let record = node.handle.local_enode();
    let (sk, id) = key();

    // Same key each time: the ban is by node id.
    let connect = |status: Status| async move {
        let (mut p2p, _) = raw_connect_with(record, sk).await?;
        send_leaf(&mut p2p, LeafMessage::Status(status)).await;
        Ok::<_, P2PError>(p2p)
    };
    let wrong_network = Status { network_id: 999, ..good_status() };
    let mut p2p = connect(wrong_network).await.expect("hello before the ban");
    assert!(matches!(next_leaf(&mut p2p).await, Ok(LeafMessage::Status(_))));
    assert_eq!(expect_disconnect(&mut p2p).await, DisconnectReason::UselessPeer);
    wait_event(&mut node.events, |e| match e {
        NetworkEvent::PeerBanned { peer } if *peer == id => Some(()),
        _ => None,
    })
    .await;

    // Refused before Hello while banned, even with a good Status.
    match connect(good_status()).await {
        Err(P2PError::Disconnected(reason)) => assert_eq!(reason, DisconnectReason::UselessPeer),
        Err(other) => panic!("expected a Disconnect before Hello, got {other:?}"),
        Ok(_) => panic!("a banned peer got through Hello"),
    }

    // After the ban (paused time, advanced past it) the peer is accepted again.
    tokio::time::pause();
    tokio::time::advance(BAN_DURATION + Duration::from_secs(1)).await;
    tokio::time::resume();
    let mut p2p = connect(good_status()).await.expect("hello after the ban");
    assert!(matches!(next_leaf(&mut p2p).await, Ok(LeafMessage::Status(_))));
    wait_event(&mut node.events, |e| match e {
        NetworkEvent::PeerConnected { peer, .. } if *peer == id => Some(()),
        _ => None,
    })
    .await;
    node.handle.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn malformed_messages_and_a_missing_status_are_breaches() {
    let mut node = node(Arc::new(TestHandler::default())).await;

    // A malformed GetCodes after a good handshake.
    let (mut p2p, _) = connected_peer(&mut node).await;
    send_raw(&mut p2p, ids::GET_CODES, vec![0xc2, 0x01]).await;
    assert_eq!(expect_disconnect(&mut p2p).await, DisconnectReason::ProtocolBreach);
    assert_eq!(next_penalty(&mut node).await, (PenaltyClass::Fatal, PenaltyReason::Breach));

    // A request instead of Status.
    let (mut p2p, _) = raw_connect(node.handle.local_enode()).await.expect("hello");
    send_leaf(&mut p2p, LeafMessage::GetCodes(get_codes(&[]))).await;
    assert!(matches!(next_leaf(&mut p2p).await, Ok(LeafMessage::Status(_))));
    assert_eq!(expect_disconnect(&mut p2p).await, DisconnectReason::ProtocolBreach);
    assert_eq!(next_penalty(&mut node).await, (PenaltyClass::Fatal, PenaltyReason::Handshake));

    // A second Status after the handshake.
    let (mut p2p, _) = connected_peer(&mut node).await;
    send_leaf(&mut p2p, LeafMessage::Status(good_status())).await;
    assert_eq!(expect_disconnect(&mut p2p).await, DisconnectReason::ProtocolBreach);
    node.handle.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn silence_instead_of_status_times_out() {
    let mut node = node(Arc::new(TestHandler::default())).await;
    let (mut p2p, _) = raw_connect(node.handle.local_enode()).await.expect("hello");
    tokio::time::pause();
    assert!(matches!(next_leaf(&mut p2p).await, Ok(LeafMessage::Status(_))));
    // Nothing sent: after STATUS_TIMEOUT (virtual) the node gives up with 0x0b.
    assert_eq!(expect_disconnect(&mut p2p).await, DisconnectReason::PingTimeout);
    tokio::time::resume();
    assert_eq!(next_penalty(&mut node).await, (PenaltyClass::High, PenaltyReason::Handshake));
    node.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_flood_beyond_the_in_flight_limit_is_a_breach() {
    let handler = Arc::new(TestHandler::gated());
    let mut node = node(handler.clone()).await;
    let (mut p2p, id) = connected_peer(&mut node).await;
    // The handler holds every request, so none is answered while the flood arrives.
    for request_id in 0..=MAX_IN_FLIGHT_REQUESTS as u64 {
        let mut request = get_codes(&[B256::ZERO]);
        request.request_id = request_id;
        send_leaf(&mut p2p, LeafMessage::GetCodes(request)).await;
    }
    assert_eq!(expect_disconnect(&mut p2p).await, DisconnectReason::ProtocolBreach);
    assert_eq!(next_penalty(&mut node).await, (PenaltyClass::Fatal, PenaltyReason::RequestFlood));
    wait_event(&mut node.events, |e| match e {
        NetworkEvent::PeerBanned { peer } if *peer == id => Some(()),
        _ => None,
    })
    .await;
    handler.open();
    node.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_within_the_in_flight_limit_are_all_answered() {
    let handler = Arc::new(TestHandler::gated());
    let mut node = node(handler.clone()).await;
    let (mut p2p, _) = connected_peer(&mut node).await;
    for request_id in 0..MAX_IN_FLIGHT_REQUESTS as u64 {
        let mut request = get_codes(&[B256::repeat_byte(request_id as u8)]);
        request.request_id = request_id;
        send_leaf(&mut p2p, LeafMessage::GetCodes(request)).await;
    }
    handler.open();
    let mut answered = Vec::new();
    while answered.len() < MAX_IN_FLIGHT_REQUESTS {
        match next_leaf(&mut p2p).await {
            Ok(LeafMessage::Codes(codes)) => {
                assert_eq!(codes.codes[0].as_ref(), &[codes.request_id as u8; 32]);
                answered.push(codes.request_id);
            }
            other => panic!("expected Codes, got {other:?}"),
        }
    }
    answered.sort_unstable();
    assert_eq!(answered, (0..MAX_IN_FLIGHT_REQUESTS as u64).collect::<Vec<_>>());
    assert_eq!(node.handle.peers().await.len(), 1, "no penalty within the limit");
    node.handle.shutdown().await;
}
