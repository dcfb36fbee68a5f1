//! The Status order is per capability: a client hosting `leaf/1` beside geth's `eth/69` runs one
//! goroutine per capability, so its eth handler may announce transactions or ask for headers
//! before its `leaf/1` Status. Such messages (and `snap/1`'s, which has no Status) are kept,
//! bounded, and handled once the session is established; a capability's message before its own
//! Status is still a breach, and early messages never hold the handshake past its timeout.

mod support;

use alloy_primitives::B256;
use futures::SinkExt;
use leafsync_p2p::{
    CapabilityMessage, PenaltyClass, UnauthedP2PStream,
    eth::{
        BlockRangeUpdate, GetBlockHeaders, HashOrNumber, HeadersRequest, protocol::ids as eth_ids,
    },
    leaf::LeafMessage,
    p2pstream::{DisconnectReason, HelloMessageWithProtocols},
    peers::{EthHead, NetworkEvent, PenaltyReason},
    session::{
        LocalStatus, MAX_EARLY_MESSAGES, SessionError, Subprotocol, UnauthedPeerStream,
        hello_protocols,
    },
    snap::{GetByteCodes, SnapMessage},
    test_utils::{ecies_pair, test_eth},
};
use std::{sync::Arc, time::Duration};
use support::*;

/// Capability indexes on a raw peer offering eth/69, leaf/1 and snap/1 (sorted by name).
const ETH: usize = 0;
const LEAF: usize = 1;
const SNAP: usize = 2;

/// A node with eth/69 and snap/1 (headers and snap/1 answered empty).
async fn eth_node() -> Node {
    let (mut config, head) = config(Arc::new(TestHandler::default()));
    config.eth = Some(test_eth(None).0);
    start(config, head).await
}

/// A geth-hosted `leaf/1` peer of `node` after Hello (all three capabilities), nothing more.
async fn all_caps_peer(node: &Node) -> (RawP2P, leafsync_p2p::PeerId) {
    raw_connect_offering(node.enode(), hello_protocols(true, true)).await.expect("hello")
}

fn eth_status() -> leafsync_p2p::eth::Status {
    EthHead::genesis(&chain()).status(&chain())
}

async fn send_cap(p2p: &mut RawP2P, cap: usize, id: u8, payload: Vec<u8>) {
    p2p.send(CapabilityMessage { cap, id, payload: payload.into() }).await.expect("raw send");
}

async fn send_eth_status(p2p: &mut RawP2P) {
    send_cap(p2p, ETH, eth_ids::STATUS, alloy_rlp::encode(eth_status())).await;
}

async fn send_leaf_status(p2p: &mut RawP2P) {
    send_cap(p2p, LEAF, 0, LeafMessage::Status(good_status()).encoded()).await;
}

fn get_headers(request_id: u64) -> Vec<u8> {
    let query =
        HeadersRequest { origin: HashOrNumber::Number(0), amount: 1, skip: 0, reverse: false };
    alloy_rlp::encode(GetBlockHeaders { request_id, query })
}

/// An eth/68+ `NewPooledTransactionHashes`: `[types, [sizes], [hashes]]`, here empty.
const TX_HASHES: [u8; 4] = [0xc3, 0x80, 0xc0, 0xc0];

/// Reads the node's two Statuses (it sends them at once, before reading ours).
async fn expect_node_statuses(p2p: &mut RawP2P) {
    let mut got = Vec::new();
    for _ in 0..2 {
        let msg = next_raw(p2p).await.expect("the node's Statuses");
        got.push((msg.cap, msg.id));
    }
    got.sort_unstable();
    assert_eq!(got, [(ETH, 0), (LEAF, 0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eth_and_snap_messages_before_the_leaf_status_wait_for_the_session() {
    let mut node = eth_node().await;
    let (mut raw, id) = all_caps_peer(&node).await;
    // snap/1 has no Status: its request may come first.
    let codes = GetByteCodes { request_id: 3, hashes: vec![B256::ZERO], bytes: 100 };
    send_cap(&mut raw, SNAP, 0x04, alloy_rlp::encode(&codes)).await;
    // geth's eth handshake is done: its handler announces its pool (more announcements than
    // the early bound, which they do not count against), asks for headers and sends its range.
    send_eth_status(&mut raw).await;
    for _ in 0..=MAX_EARLY_MESSAGES {
        send_cap(&mut raw, ETH, eth_ids::NEW_POOLED_TRANSACTION_HASHES, TX_HASHES.to_vec()).await;
    }
    send_cap(&mut raw, ETH, eth_ids::TRANSACTIONS, vec![0xc0]).await;
    send_cap(&mut raw, ETH, eth_ids::GET_BLOCK_HEADERS, get_headers(8)).await;
    let range = BlockRangeUpdate { earliest: 0, latest: 77, latest_hash: B256::repeat_byte(7) };
    send_cap(&mut raw, ETH, eth_ids::BLOCK_RANGE_UPDATE, alloy_rlp::encode(range)).await;
    expect_node_statuses(&mut raw).await;
    // Only now the leaf/1 goroutine's Status.
    send_leaf_status(&mut raw).await;

    let connected = wait_event(&mut node.events, |e| match e {
        NetworkEvent::PeerConnected { peer, leaf, eth, snap, .. } if *peer == id => {
            Some((*leaf, eth.map(|e| e.status), *snap))
        }
        NetworkEvent::PeerPenalised { peer, .. } if *peer == id => panic!("penalised: {e:?}"),
        _ => None,
    })
    .await;
    assert_eq!(connected, (Some(good_status()), Some(eth_status()), true));
    // Both early requests are answered (empty: no state, no headers), with their ids.
    let mut answers = Vec::new();
    for _ in 0..2 {
        let msg = next_raw(&mut raw).await.expect("an answer");
        answers.push((msg.cap, msg.id, msg.payload.to_vec()));
    }
    answers.sort_unstable();
    let byte_codes = SnapMessage::GetByteCodes(codes).empty_answer().expect("a request");
    assert_eq!(
        answers,
        [
            (ETH, eth_ids::BLOCK_HEADERS, vec![0xc2, 8, 0xc0]),
            (SNAP, byte_codes.id(), byte_codes.encoded()),
        ]
    );
    // The early range was handled too.
    let got = wait_event(&mut node.events, |e| match e {
        NetworkEvent::BlockRange { peer, range } if *peer == id => Some(*range),
        NetworkEvent::PeerPenalised { peer, .. } if *peer == id => panic!("penalised: {e:?}"),
        _ => None,
    })
    .await;
    assert_eq!(got, range);
    assert!(node.handle.peers().await.iter().any(|p| p.id == id));
}

/// Sends `first` (Statuses and messages, in order) and expects Disconnect `0x02` and a fatal
/// handshake penalty.
async fn breach_in_handshake(first: Vec<(usize, u8, Vec<u8>)>) {
    let mut node = eth_node().await;
    let (mut raw, id) = all_caps_peer(&node).await;
    for (cap, msg_id, payload) in first {
        send_cap(&mut raw, cap, msg_id, payload).await;
    }
    assert_eq!(disconnect_of(&mut raw).await, DisconnectReason::ProtocolBreach);
    let why = next_penalty_of(&mut node.events, id, PenaltyClass::Fatal).await;
    assert_eq!(why, PenaltyReason::Handshake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_message_before_the_leaf_status_is_still_a_breach() {
    let status = alloy_rlp::encode(eth_status());
    let get_codes = get_codes_message(1, &[B256::ZERO]);
    let request = (LEAF, get_codes.id(), get_codes.encoded());
    breach_in_handshake(vec![(ETH, eth_ids::STATUS, status), request]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eth_message_before_the_eth_status_is_still_a_breach() {
    let status = (LEAF, 0, LeafMessage::Status(good_status()).encoded());
    let headers = (ETH, eth_ids::GET_BLOCK_HEADERS, get_headers(1));
    breach_in_handshake(vec![status.clone(), headers]).await;
    // An announcement as well: the eth Status comes first.
    let announcement = (ETH, eth_ids::NEW_POOLED_TRANSACTION_HASHES, TX_HASHES.to_vec());
    breach_in_handshake(vec![announcement]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_early_messages_than_the_bound_are_a_breach() {
    let mut first = vec![(ETH, eth_ids::STATUS, alloy_rlp::encode(eth_status()))];
    for n in 0..=MAX_EARLY_MESSAGES as u64 {
        first.push((ETH, eth_ids::GET_BLOCK_HEADERS, get_headers(n)));
    }
    breach_in_handshake(first).await;
}

/// Announcements are dropped without counting against the early bound, but they do not hold the
/// handshake: without the last Status it times out at its deadline however busy the peer is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_messages_do_not_hold_the_handshake_past_its_timeout() {
    let ((our_key, our_id), (their_key, their_id)) = (key(), key());
    let (ours, theirs) = ecies_pair(our_key, their_key).await;
    let hello = |id| HelloMessageWithProtocols::new("early/0", hello_protocols(true, true), 0, id);
    let (ours, theirs) = tokio::join!(
        UnauthedP2PStream::new(ours).handshake(hello(our_id)),
        UnauthedP2PStream::new(theirs).handshake(hello(their_id)),
    );
    let ((ours, _), (mut theirs, _)) = (ours.expect("our Hello"), theirs.expect("their Hello"));
    let head = EthHead::genesis(&chain());
    let local = LocalStatus {
        leaf: good_status(),
        leaf_filter: chain().fork_filter(0, 0),
        eth: Some((head.status(&chain()), head.fork_check(&chain()))),
    };
    let ours = UnauthedPeerStream::new(ours).await.expect("shared capabilities");
    assert!(ours.speaks(Subprotocol::Eth) && ours.speaks(Subprotocol::Leaf));
    let timeout = Duration::from_millis(300);
    let busy = async {
        send_eth_status(&mut theirs).await;
        loop {
            let announcement = CapabilityMessage {
                cap: ETH,
                id: eth_ids::NEW_POOLED_TRANSACTION_HASHES,
                payload: TX_HASHES.to_vec().into(),
            };
            if theirs.send(announcement).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let chain = chain();
    let result = tokio::time::timeout(WAIT, async {
        tokio::select! {
            result = ours.handshake_with_timeout(&local, &chain, timeout) => result,
            () = busy => unreachable!("the busy peer never stops"),
        }
    })
    .await
    .expect("the handshake ends at its timeout, not at the wait limit");
    let err = result.map(|_| ()).expect_err("no leaf Status: no session");
    assert!(matches!(err, SessionError::StatusTimeout), "{err}");
    assert_eq!(err.disconnect_reason(), Some(DisconnectReason::PingTimeout));
}
