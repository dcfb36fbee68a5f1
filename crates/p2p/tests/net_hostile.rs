//! Hostile peers built from the lower layers (ECIES + p2p streams, `leaf/1` by hand) against a
//! real node: each case ends with the Disconnect reason and the penalty `docs/leaf-protocol.md`
//! prescribes, never a panic.

mod support;

use alloy_eip2124::{ForkHash, ForkId};
use alloy_primitives::B256;
use leafsync_p2p::{
    P2PError, PeerId, PenaltyClass, ecies,
    leaf::{
        GetNodes, LeafMessage, NodeRequest, RequestPair, Status, TrieOwner, WirePath,
        protocol::{
            MAX_CODES_PER_REQUEST, MAX_IN_FLIGHT_REQUESTS, MAX_NODES_PER_REQUEST,
            MAX_REQUEST_MESSAGE_SIZE, ids,
        },
    },
    p2pstream::DisconnectReason,
    peers::{NetworkEvent, NodeRecord, PenaltyReason, score::BAN_DURATION},
};
use secp256k1::SECP256K1;
use std::{sync::Arc, time::Duration};
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

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

/// A `Status` head gets the `NewHead` checks that need no previous head: one with a zero hash or
/// an impossible number ends the handshake with a low penalty (as an implausible `NewHead`), and
/// never reaches the peer list that the sync reads heads from.
#[tokio::test(flavor = "current_thread")]
async fn a_status_with_an_implausible_head_is_refused() {
    let mut node = node(Arc::new(TestHandler::default())).await;
    let head = leafsync_p2p::leaf::ChainHead {
        number: 5,
        hash: B256::repeat_byte(5),
        state_root: B256::repeat_byte(0xaa),
    };
    let implausible = [
        leafsync_p2p::leaf::ChainHead { number: u64::MAX, hash: B256::ZERO, ..head },
        leafsync_p2p::leaf::ChainHead { number: u64::MAX, ..head },
        leafsync_p2p::leaf::ChainHead { hash: B256::ZERO, ..head },
        leafsync_p2p::leaf::ChainHead { state_root: B256::ZERO, ..head },
    ];
    for head in implausible {
        let status = Status { head, ..good_status() };
        assert_eq!(handshake_with(&node, status).await, DisconnectReason::SubprotocolSpecific);
        assert_eq!(next_penalty(&mut node).await, (PenaltyClass::Low, PenaltyReason::Handshake));
        assert!(node.handle.peers().await.is_empty(), "{head:?} shown as a peer's head");
    }
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
    wait_connected(&node.handle, id).await;
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
    send_leaf(&mut p2p, get_codes_message(0, &[])).await;
    assert!(matches!(next_leaf(&mut p2p).await, Ok(LeafMessage::Status(_))));
    assert_eq!(expect_disconnect(&mut p2p).await, DisconnectReason::ProtocolBreach);
    assert_eq!(next_penalty(&mut node).await, (PenaltyClass::Fatal, PenaltyReason::Handshake));

    // A second Status after the handshake.
    let (mut p2p, _) = connected_peer(&mut node).await;
    send_leaf(&mut p2p, LeafMessage::Status(good_status())).await;
    assert_eq!(expect_disconnect(&mut p2p).await, DisconnectReason::ProtocolBreach);
    node.handle.shutdown().await;
}

/// Hostile requests after a good handshake (moved here from serve's tests when the server's own
/// penalty path was removed: the decoder and the session are where these rules live). Each is a
/// fatal breach, answered by Disconnect 0x02 and never handed to the handler. (An unknown id
/// inside `leaf/1`'s range cannot be sent: all ten are known; the decoder's mid penalty for one is
/// tested in `leaf::tests`.)
#[tokio::test(flavor = "current_thread")]
async fn hostile_requests_are_breaches_before_the_handler() {
    let handler = Arc::new(TestHandler::default());
    let mut node = node(handler.clone()).await;
    let get_chunk = |tail: &[u8]| {
        // [request_id 1, prefix (empty, even), max_bytes 100] plus `tail`.
        let mut payload = vec![0xc3 + tail.len() as u8, 0x01, 0x00, 0x64];
        payload.extend_from_slice(tail);
        payload
    };
    let nodes = LeafMessage::GetNodes(RequestPair {
        request_id: 1,
        message: GetNodes {
            nodes: vec![
                NodeRequest {
                    owner: TrieOwner::Accounts,
                    path: WirePath::root(),
                    hash: B256::ZERO
                };
                MAX_NODES_PER_REQUEST + 1
            ],
            max_bytes: 1,
        },
    })
    .encoded();
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("oversize", ids::GET_NODES, vec![0xc0; MAX_REQUEST_MESSAGE_SIZE + 1]),
        ("malformed", ids::GET_CHUNK, vec![0xc3, 0x01]),
        ("trailing bytes", ids::GET_CHUNK, get_chunk(&[0x00])),
        ("nibble flag 2", ids::GET_CHUNK, vec![0xc4, 0x01, 0x81, 0x20, 0x01]),
        ("too many nodes", ids::GET_NODES, nodes),
        (
            "too many codes",
            ids::GET_CODES,
            get_codes_message(1, &[B256::ZERO; MAX_CODES_PER_REQUEST + 1]).encoded(),
        ),
    ];
    for (what, id, payload) in cases {
        let (mut p2p, _) = connected_peer(&mut node).await;
        send_raw(&mut p2p, id, payload).await;
        assert_eq!(expect_disconnect(&mut p2p).await, DisconnectReason::ProtocolBreach, "{what}");
        let penalty = next_penalty(&mut node).await;
        assert_eq!(penalty, (PenaltyClass::Fatal, PenaltyReason::Breach), "{what}");
    }
    // A legal request is answered.
    let (mut p2p, _) = connected_peer(&mut node).await;
    send_leaf(&mut p2p, get_codes_message(7, &[B256::ZERO])).await;
    assert!(matches!(next_leaf(&mut p2p).await, Ok(LeafMessage::Codes(c)) if c.request_id == 7));
    let calls = handler.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(calls, 1, "only the legal request reached the handler");
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

/// A node whose handler holds every request until it is opened, and a connected peer that has
/// sent it `count` `GetCodes` with request ids from 0, each asking for the hash that is its id's
/// byte repeated.
async fn held_requests(count: u64) -> (Arc<TestHandler>, Node, RawP2P, PeerId) {
    let handler = Arc::new(TestHandler::gated());
    let mut node = node(handler.clone()).await;
    let (mut p2p, id) = connected_peer(&mut node).await;
    for request_id in 0..count {
        send_leaf(&mut p2p, get_codes_message(request_id, &[B256::repeat_byte(request_id as u8)]))
            .await;
    }
    (handler, node, p2p, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_flood_beyond_the_in_flight_limit_is_a_breach() {
    // The handler holds every request, so none is answered while the flood arrives.
    let (handler, mut node, mut p2p, id) = held_requests(MAX_IN_FLIGHT_REQUESTS as u64 + 1).await;
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
    let (handler, node, mut p2p, _) = held_requests(MAX_IN_FLIGHT_REQUESTS as u64).await;
    handler.open();
    let mut answered = Vec::new();
    while answered.len() < MAX_IN_FLIGHT_REQUESTS {
        match next_leaf(&mut p2p).await {
            Ok(LeafMessage::Codes(codes)) => {
                assert_eq!(codes.message.codes[0].as_ref(), &[codes.request_id as u8; 32]);
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

/// L5: a `NewHead` flood is coalesced per peer, so event subscribers do not lag and still see
/// the peers that connect meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_head_flood_neither_lags_subscribers_nor_hides_new_peers() {
    let mut node = node(Arc::new(TestHandler::default())).await;
    let (mut flooder, flooder_id) = connected_peer(&mut node).await;
    let mut events = node.handle.events();
    let flood = 3 * leafsync_p2p::peers::EVENT_CHANNEL_CAPACITY as u64;
    for number in 1..=flood {
        let head = leafsync_p2p::leaf::ChainHead {
            number,
            hash: B256::left_padding_from(&number.to_be_bytes()),
            state_root: B256::repeat_byte(0xaa),
        };
        send_leaf(&mut flooder, LeafMessage::NewHead(head)).await;
    }
    // A request answered after the flood: the session has read every NewHead by then.
    send_leaf(&mut flooder, get_codes_message(1, &[B256::ZERO])).await;
    assert!(matches!(next_leaf(&mut flooder).await, Ok(LeafMessage::Codes(_))));

    // A new peer connects; the subscriber must see it, without having lagged.
    let (_newcomer, newcomer_id) = handshaken_peer(node.handle.local_enode()).await;
    let mut heads = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(NetworkEvent::PeerConnected { peer, .. }) if peer == newcomer_id => break,
                Ok(NetworkEvent::NewHead { peer, head }) if peer == flooder_id => {
                    heads.push(head.number)
                }
                Ok(_) => {}
                Err(e) => panic!("the subscriber lagged: {e}"),
            }
        }
    })
    .await
    .expect("the new peer's connection was seen");
    // One head per second at most (the flood takes a fraction of a second to read).
    assert!(heads.len() <= 10, "{} heads passed on: {heads:?}", heads.len());
    assert_eq!(heads.first(), Some(&1), "the first head passes at once");
    // The latest head arrives when the interval is over.
    if heads.last() != Some(&flood) {
        wait_event(&mut events, |e| match e {
            NetworkEvent::NewHead { peer, head } if *peer == flooder_id && head.number == flood => {
                Some(())
            }
            _ => None,
        })
        .await;
    }
    node.handle.shutdown().await;
}

/// L5: implausible heads are dropped with a low penalty and never reach subscribers.
#[tokio::test(flavor = "current_thread")]
async fn implausible_heads_are_dropped() {
    let mut node = node(Arc::new(TestHandler::default())).await;
    let (mut peer, id) = connected_peer(&mut node).await;
    let good = leafsync_p2p::leaf::ChainHead {
        number: 5,
        hash: B256::repeat_byte(5),
        state_root: B256::repeat_byte(0xaa),
    };
    let bad = [
        leafsync_p2p::leaf::ChainHead { hash: B256::ZERO, ..good },
        leafsync_p2p::leaf::ChainHead { state_root: B256::ZERO, ..good },
        leafsync_p2p::leaf::ChainHead { number: u64::MAX, ..good },
    ];
    for head in bad {
        send_leaf(&mut peer, LeafMessage::NewHead(head)).await;
        assert_eq!(next_penalty(&mut node).await, (PenaltyClass::Low, PenaltyReason::InvalidHead));
    }
    send_leaf(&mut peer, LeafMessage::NewHead(good)).await;
    let head = wait_event(&mut node.events, |e| match e {
        NetworkEvent::NewHead { peer, head } if *peer == id => Some(*head),
        _ => None,
    })
    .await;
    assert_eq!(head, good, "the first head passed on is the plausible one");
    node.handle.shutdown().await;
}

/// An auth that names `victim` as its sender, signed by a key of no one: any valid recoverable
/// signature is accepted, as only the first frame's MAC can show the sender holds the key.
fn forged_auth(node: &NodeRecord, victim: PeerId) -> Vec<u8> {
    let (stranger, _) = key();
    let digest = secp256k1::Message::from_digest(rand::random::<[u8; 32]>());
    let (rec, sig) = SECP256K1.sign_ecdsa_recoverable(digest, &stranger).serialize_compact();
    let mut signature = sig.to_vec();
    signature.push(i32::from(rec) as u8);
    let nonce = rand::random::<[u8; 32]>();
    let fields: [&dyn alloy_rlp::Encodable; 4] = [
        &signature.as_slice(),
        &victim.as_slice(),
        &nonce.as_slice(),
        &ecies::algorithm::HANDSHAKE_VERSION,
    ];
    let mut body = Vec::new();
    alloy_rlp::encode_list::<_, dyn alloy_rlp::Encodable>(&fields, &mut body);
    let prefix = ((body.len() + ecies::algorithm::ECIES_OVERHEAD) as u16).to_be_bytes();
    let node_key = ecies::pk_from_id(&node.id).expect("the node's id is a key");
    let mut packet = prefix.to_vec();
    packet.extend(ecies::algorithm::encrypt_message(&node_key, &body, &prefix));
    packet
}

#[tokio::test(flavor = "current_thread")]
async fn an_auth_naming_another_nodes_id_does_not_get_it_banned() {
    let mut node = node(Arc::new(TestHandler::default())).await;
    let enode = node.handle.local_enode();
    let (victim_key, victim) = key();

    // The forger completes ECIES in the victim's name, then sends a frame it cannot MAC.
    let mut tcp = TcpStream::connect(enode.addr).await.expect("connect");
    tcp.write_all(&forged_auth(&enode, victim)).await.expect("auth");
    let mut prefix = [0u8; 2];
    tcp.read_exact(&mut prefix).await.expect("the node acks");
    let mut ack = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    tcp.read_exact(&mut ack).await.expect("ack body");
    tcp.write_all(&[0u8; 32]).await.expect("a header with a wrong MAC");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the node ends the forged session");

    // The victim itself is still welcome, unpenalised.
    let (p2p, _) = raw_connect_with(enode, victim_key).await.expect("the victim's hello");
    let (_p2p, _) = exchange_status(p2p, victim).await;
    wait_event(&mut node.events, |e| match e {
        NetworkEvent::PeerPenalised { peer, class, .. } if *peer == victim => {
            panic!("the victim was penalised ({class:?}) for a forger's frame")
        }
        NetworkEvent::PeerConnected { peer, .. } if *peer == victim => Some(()),
        _ => None,
    })
    .await;
    node.handle.shutdown().await;
}
