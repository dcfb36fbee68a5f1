//! Requests end to end through `NetworkHandle::request`: two real nodes on loopback, and a node
//! against a silent or sloppy hostile peer (paused tokio time for the timeouts).

mod support;

use alloy_primitives::{B256, Bytes};
use futures::{StreamExt, future::join_all};
use leafsync_p2p::{
    PenaltyClass,
    leaf::{
        LeafMessage, RequestPair,
        protocol::{MAX_IN_FLIGHT_REQUESTS, REQUEST_TIMEOUT},
    },
    p2pstream::DisconnectReason,
    peers::{Direction, MAX_CONCURRENT_HANDLER_CALLS_PER_PEER, NetworkEvent, PenaltyReason},
    requests::{LeafRequest, LeafResponse, RequestError},
};
use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_connect_exchange_status_and_answer_requests() {
    let server_handler = Arc::new(TestHandler::default());
    let mut server = node(server_handler.clone()).await;
    let (mut cfg, head) = config(Arc::new(TestHandler::default()));
    cfg.static_peers = vec![server.handle.local_enode()];
    let mut client = start(cfg, head).await;
    let server_id = server.handle.local_id();
    let client_id = client.handle.local_id();

    let status = wait_event(&mut client.events, |e| match e {
        NetworkEvent::PeerConnected { peer, direction: Direction::Outbound, leaf, .. }
            if *peer == server_id =>
        {
            Some(*leaf)
        }
        _ => None,
    })
    .await;
    assert_eq!(status, Some(good_status()), "the server's Status arrived");
    wait_connected(&server.handle, client_id).await;

    // Many requests at once: every response carries exactly its own request's hashes.
    let requests = (0..MAX_IN_FLIGHT_REQUESTS as u8).map(|i| {
        let hashes = [B256::repeat_byte(i), B256::repeat_byte(i.wrapping_add(100))];
        let handle = client.handle.clone();
        async move { (hashes, request_codes(&handle, server_id, &hashes).await) }
    });
    // (Each request got a fresh id: the tracker's unit tests show it; ids are the session's.)
    for (hashes, result) in join_all(requests).await {
        let codes = result.expect("answered");
        let expected: Vec<Bytes> =
            hashes.iter().map(|h| Bytes::copy_from_slice(h.as_slice())).collect();
        assert_eq!(codes.codes, expected);
    }
    assert_eq!(server_handler.calls.load(std::sync::atomic::Ordering::SeqCst), 16);

    // Other kinds get the handler's (empty) answer of the right type.
    let nodes = client
        .handle
        .request(
            server_id,
            LeafRequest::GetNodes(leafsync_p2p::leaf::GetNodes {
                nodes: Vec::new(),
                max_bytes: 1000,
            }),
        )
        .await;
    assert!(matches!(nodes, Ok(LeafResponse::Nodes(_))), "{nodes:?}");

    // Head announcements reach the peer, and `peers()` reflects them.
    let new_head = local_head(7);
    server.head.send(new_head).expect("head watch");
    let announced = wait_event(&mut client.events, |e| match e {
        NetworkEvent::NewHead { peer, head } if *peer == server_id => Some(*head),
        _ => None,
    })
    .await;
    assert_eq!(announced, new_head.head);
    let peers = client.handle.peers().await;
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].id, server_id);
    assert_eq!(peers[0].head, new_head.head);
    assert_eq!(peers[0].score, 0.0);

    // Unknown peers are refused without waiting.
    let unknown = request_codes(&client.handle, key().1, &[]).await;
    assert_eq!(unknown.map(|_| ()), Err(RequestError::UnknownPeer));

    client.handle.shutdown().await;
    let reason = wait_event(&mut server.events, |e| match e {
        NetworkEvent::PeerDisconnected { peer, reason } if *peer == client_id => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, Some(DisconnectReason::ClientQuitting));
    server.handle.shutdown().await;
}

/// Sends a full window of requests to `peer` and lets them all time out (paused time); returns
/// how many failed with `Timeout` (the rest failed because the session ended).
async fn one_stall(node: &Node, hostile: &mut RawP2P, peer: leafsync_p2p::PeerId) -> usize {
    let pending: Vec<_> = (0..MAX_IN_FLIGHT_REQUESTS)
        .map(|_| {
            let handle = node.handle.clone();
            tokio::spawn(async move { request_codes(&handle, peer, &[B256::ZERO]).await })
        })
        .collect();
    // The hostile peer receives all of them and answers none (or is disconnected meanwhile).
    for _ in 0..MAX_IN_FLIGHT_REQUESTS {
        match next_leaf(hostile).await {
            Ok(LeafMessage::GetCodes(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break,
        }
    }
    tokio::time::pause();
    let mut timeouts = 0;
    for task in pending {
        match task.await.expect("task") {
            Err(RequestError::Timeout) => timeouts += 1,
            Err(RequestError::Disconnected | RequestError::UnknownPeer) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    tokio::time::resume();
    timeouts
}

#[tokio::test(flavor = "current_thread")]
async fn silent_peer_times_out_and_is_disconnected() {
    let mut node = node(Arc::new(TestHandler::default())).await;
    let (mut hostile, hostile_id) = connected_peer(&mut node).await;

    assert_eq!(one_stall(&node, &mut hostile, hostile_id).await, MAX_IN_FLIGHT_REQUESTS);
    let high = wait_event(&mut node.events, |e| match e {
        NetworkEvent::PeerPenalised { peer, class, reason: PenaltyReason::Timeout, .. }
            if *peer == hostile_id =>
        {
            Some(*class)
        }
        _ => None,
    })
    .await;
    assert_eq!(high, PenaltyClass::High);
    // The timed-out requests hold every slot until answered: nothing more is sent to the peer.
    let more = request_codes(&node.handle, hostile_id, &[B256::ZERO]).await;
    assert_eq!(more.map(|_| ()), Err(RequestError::TooManyInFlight));
    // Each window of silence costs one more high penalty (a stall's timeouts count once): a
    // peer that stays silent is disconnected after a handful of them. Its stream is read, so
    // that it answers our pings and only its silence to requests counts.
    let reader = tokio::spawn(async move { while hostile.next().await.is_some() {} });
    tokio::time::pause();
    let mut penalties = 1;
    let reason = loop {
        let ended = wait_event(&mut node.events, |e| match e {
            NetworkEvent::PeerPenalised { peer, reason: PenaltyReason::Timeout, .. }
                if *peer == hostile_id =>
            {
                Some(None)
            }
            NetworkEvent::PeerDisconnected { peer, reason } if *peer == hostile_id => {
                Some(Some(*reason))
            }
            _ => None,
        })
        .await;
        match ended {
            Some(reason) => break reason,
            None => penalties += 1,
        }
        assert!(penalties <= 10, "a silent peer must be dropped");
    };
    tokio::time::resume();
    assert_eq!(reason, Some(DisconnectReason::UselessPeer));
    assert!(penalties > 5, "6 high penalties are needed to disconnect, got {penalties}");
    reader.abort();
    node.handle.shutdown().await;
}

/// M3: one stall of an honest peer (16 requests unanswered past the timeout, then answered late,
/// then normal service) costs one timeout and one late penalty, not 16 + 16 and a ban.
#[tokio::test(flavor = "current_thread")]
async fn one_stall_of_an_honest_peer_does_not_ban_it() {
    let mut node = node(Arc::new(TestHandler::default())).await;
    let (mut peer, peer_id) = connected_peer(&mut node).await;
    let mut events = node.handle.events();
    let mut replay = node.handle.events();

    let pending: Vec<_> = (0..MAX_IN_FLIGHT_REQUESTS)
        .map(|_| {
            let handle = node.handle.clone();
            tokio::spawn(async move { request_codes(&handle, peer_id, &[B256::ZERO]).await })
        })
        .collect();
    let mut received = Vec::new();
    for _ in 0..MAX_IN_FLIGHT_REQUESTS {
        match next_leaf(&mut peer).await {
            Ok(LeafMessage::GetCodes(request)) => received.push(request.request_id),
            other => panic!("expected GetCodes, got {other:?}"),
        }
    }
    // The stall: every request times out (virtual time passes the 10 s timeout).
    tokio::time::pause();
    for task in pending {
        assert_eq!(task.await.expect("task").map(|_| ()), Err(RequestError::Timeout));
    }
    tokio::time::resume();
    // The peer recovers: it answers the 16 old requests (late), then new ones in time.
    for id in received {
        send_leaf(&mut peer, codes(id, 1)).await;
    }
    // The timed-out requests hold their slots until their late answers are read: the fresh
    // request is sent once one is (the peer below waits for it within its wait limit).
    let handle = node.handle.clone();
    let fresh = tokio::spawn(async move {
        loop {
            match request_codes(&handle, peer_id, &[B256::ZERO]).await {
                Err(RequestError::TooManyInFlight) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
    });
    let Ok(LeafMessage::GetCodes(request)) = next_leaf(&mut peer).await else {
        panic!("request expected")
    };
    send_leaf(&mut peer, codes(request.request_id, 1)).await;
    assert!(fresh.await.expect("task").is_ok(), "served normally after the stall");

    // Once the late-response penalty is out, every event so far is in the second subscription:
    // no ban, one timeout and one late penalty.
    wait_event(&mut events, |e| {
        matches!(e, NetworkEvent::PeerPenalised { reason: PenaltyReason::LateResponse, .. })
            .then_some(())
    })
    .await;
    let mut penalties = Vec::new();
    while let Ok(event) = replay.try_recv() {
        match event {
            NetworkEvent::PeerBanned { .. } => panic!("an honest peer was banned"),
            NetworkEvent::PeerPenalised { reason, .. } => penalties.push(reason),
            _ => {}
        }
    }
    let peers = node.handle.peers().await;
    let score = peers.iter().find(|p| p.id == peer_id).map(|p| p.score);
    let score = score.expect("still connected");
    assert!(score > -20.0, "score {score}");
    assert_eq!(penalties, vec![PenaltyReason::Timeout, PenaltyReason::LateResponse]);
    node.handle.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn late_and_unsolicited_responses_are_penalised_never_delivered() {
    let mut node = node(Arc::new(TestHandler::default())).await;
    let (mut hostile, hostile_id) = connected_peer(&mut node).await;

    let handle = node.handle.clone();
    let first =
        tokio::spawn(async move { request_codes(&handle, hostile_id, &[B256::ZERO]).await });
    let Ok(LeafMessage::GetCodes(request)) = next_leaf(&mut hostile).await else {
        panic!("request expected")
    };
    tokio::time::pause();
    assert_eq!(first.await.expect("task").map(|_| ()), Err(RequestError::Timeout));
    tokio::time::resume();

    // Now a second request is in flight; the late answer to the first must not satisfy it.
    let handle = node.handle.clone();
    let second =
        tokio::spawn(async move { request_codes(&handle, hostile_id, &[B256::ZERO]).await });
    let Ok(LeafMessage::GetCodes(second_request)) = next_leaf(&mut hostile).await else {
        panic!("request expected")
    };
    assert_ne!(second_request.request_id, request.request_id);
    send_leaf(&mut hostile, codes(request.request_id, 1)).await;
    let reason = next_penalty_of(&mut node.events, hostile_id, PenaltyClass::Mid).await;
    assert_eq!(reason, PenaltyReason::LateResponse);

    send_leaf(&mut hostile, codes(12345, 1)).await;
    let reason = next_penalty_of(&mut node.events, hostile_id, PenaltyClass::Mid).await;
    assert_eq!(reason, PenaltyReason::UnsolicitedResponse);

    // The real answer to the second request is delivered, with its content.
    let answer = LeafMessage::Codes(RequestPair {
        request_id: second_request.request_id,
        message: leafsync_p2p::leaf::Codes { codes: vec![Bytes::from_static(b"fresh")] },
    });
    send_leaf(&mut hostile, answer).await;
    let codes = second.await.expect("task").expect("answered");
    assert_eq!(codes.codes, vec![Bytes::from_static(b"fresh")]);

    // Still connected: one high and two mid penalties are tolerated.
    let peers = node.handle.peers().await;
    assert_eq!(peers.len(), 1);
    assert!((peers[0].score - (-8.0)).abs() < 0.1, "score {}", peers[0].score);
    node.handle.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn responses_of_the_wrong_type_or_too_long_are_breaches() {
    for (bad, violation) in [(nodes(0), "wrong type"), (codes(0, 2), "too many items")] {
        let mut node = node(Arc::new(TestHandler::default())).await;
        let (mut hostile, hostile_id) = connected_peer(&mut node).await;
        let handle = node.handle.clone();
        let request =
            tokio::spawn(async move { request_codes(&handle, hostile_id, &[B256::ZERO]).await });
        assert!(matches!(next_leaf(&mut hostile).await, Ok(LeafMessage::GetCodes(_))));
        send_leaf(&mut hostile, bad).await;
        let result = request.await.expect("task");
        assert!(matches!(result, Err(RequestError::InvalidResponse(_))), "{violation}: {result:?}");
        assert_eq!(expect_disconnect(&mut hostile).await, DisconnectReason::ProtocolBreach);
        wait_event(&mut node.events, |e| match e {
            NetworkEvent::PeerBanned { peer } if *peer == hostile_id => Some(()),
            _ => None,
        })
        .await;
        node.handle.shutdown().await;
    }
}

/// A busy server holds all 16 of a client's requests past the client's timeout. The server
/// counts them unanswered until it answers, so the client must not send a 17th: that is a
/// flood the server bans it for. The client's timed-out requests hold their slots until their
/// late answers; the server answers the requests that waited past the timeout in its queue
/// empty, without running them; then the client is served again, never banned.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_server_answering_late_is_never_sent_a_seventeenth_request() {
    let server_handler = Arc::new(TestHandler::gated());
    let mut server = node(server_handler.clone()).await;
    let (mut cfg, head) = config(Arc::new(TestHandler::default()));
    cfg.static_peers = vec![server.handle.local_enode()];
    let client = start(cfg, head).await;
    let server_id = server.handle.local_id();
    wait_connected(&client.handle, server_id).await;
    wait_connected(&server.handle, client.handle.local_id()).await;

    let pending: Vec<_> = (0..MAX_IN_FLIGHT_REQUESTS as u8)
        .map(|i| {
            let handle = client.handle.clone();
            tokio::spawn(
                async move { request_codes(&handle, server_id, &[B256::repeat_byte(i)]).await },
            )
        })
        .collect();
    // Four calls run (the per-peer cap), held at the gate; the other twelve wait in the queue.
    let deadline = tokio::time::Instant::now() + WAIT;
    while server_handler.calls.load(Ordering::SeqCst) < MAX_CONCURRENT_HANDLER_CALLS_PER_PEER {
        assert!(tokio::time::Instant::now() < deadline, "the server's calls never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    tokio::time::pause();
    tokio::time::advance(REQUEST_TIMEOUT + Duration::from_secs(1)).await;
    for task in pending {
        assert_eq!(task.await.expect("task").map(|_| ()), Err(RequestError::Timeout));
    }
    let seventeenth = request_codes(&client.handle, server_id, &[B256::ZERO]).await;
    assert_eq!(seventeenth.map(|_| ()), Err(RequestError::TooManyInFlight));
    tokio::time::resume();

    // The server catches up: the four held calls answer late, the twelve queued past the
    // timeout are answered empty without a call, and the client is served again.
    server_handler.open();
    let deadline = tokio::time::Instant::now() + WAIT;
    let fresh = loop {
        match request_codes(&client.handle, server_id, &[B256::repeat_byte(0xaa)]).await {
            Err(RequestError::TooManyInFlight) => {
                assert!(tokio::time::Instant::now() < deadline, "no slot came free");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other,
        }
    };
    let codes = fresh.expect("served again");
    assert_eq!(codes.codes, vec![Bytes::copy_from_slice(&[0xaa; 32])]);
    assert_eq!(
        server_handler.calls.load(Ordering::SeqCst),
        MAX_CONCURRENT_HANDLER_CALLS_PER_PEER + 1,
        "only the held calls and the fresh one ran"
    );
    while let Ok(event) = server.events.try_recv() {
        assert!(!matches!(event, NetworkEvent::PeerBanned { .. }), "the client was banned");
    }
    assert_eq!(server.handle.peers().await.len(), 1, "still connected");
    client.handle.shutdown().await;
    server.handle.shutdown().await;
}
