//! eth/69 and snap/1 on real sessions: two loopback nodes with eth enabled negotiate all three
//! capabilities; a node without eth still connects over leaf/1; and a hand-driven geth-like
//! peer (eth/69 + snap/1, no leaf/1) is accepted, served (snap/1 from a `SnapHandler`, headers
//! from a `HeaderSource`, the rest empty), asked snap/1 requests through
//! `NetworkHandle::snap_request`, and refused or penalised where geth's rules say so.

mod support;

use alloy_primitives::{B256, Bytes};
use futures::{SinkExt, future::BoxFuture};
use leafsync_p2p::{
    CapabilityMessage, PeerId, PenaltyClass,
    eth::{
        self, BlockRangeUpdate, EthMessage, GetBlockHeaders, HashOrNumber, HeadersRequest,
        RequestIds,
    },
    p2pstream::DisconnectReason,
    peers::{
        EMPTY_ANSWER_COST_BYTES, EthHead, GOSSIP_BURST_BYTES, HeaderSource, HeaderSourceError,
        NetworkEvent, PenaltyReason, SnapHandler,
    },
    requests::{RequestError, ResponseViolation},
    session::Subprotocol,
    snap::{
        AccountData, AccountRange, ByteCodes, GetAccountRange, GetByteCodes, SlimAccount,
        SnapMessage, TrieNodes,
    },
    test_utils::test_eth,
};
use std::sync::Arc;
use support::*;
use tokio::sync::watch;

/// Capability indexes on a raw peer offering eth/69 and snap/1 (sorted by name).
const ETH: usize = 0;
const SNAP: usize = 1;

/// Answers every `GetAccountRange` with one account (nonce = the request's byte budget, so an
/// answer shows which request it answers); everything else empty.
struct TestSnap;

impl SnapHandler for TestSnap {
    fn handle(&self, _peer: PeerId, request: &SnapMessage) -> SnapMessage {
        match request {
            SnapMessage::GetAccountRange(r) => SnapMessage::AccountRange(AccountRange {
                request_id: 0,
                accounts: vec![AccountData {
                    hash: B256::repeat_byte(7),
                    account: SlimAccount::new(
                        r.bytes,
                        Default::default(),
                        leafsync_p2p::snap::EMPTY_ROOT_HASH,
                        alloy_primitives::KECCAK256_EMPTY,
                    ),
                }],
                proof: Vec::new(),
            }),
            other => other.empty_answer().unwrap_or_else(|| other.clone()),
        }
    }
}

/// Headers `[number]` (a one-field RLP list) for a query by number, forwards; a query by hash
/// fails (as a JSON-RPC call to the execution client may).
struct TestHeaders;

impl HeaderSource for TestHeaders {
    fn headers(
        &self,
        query: HeadersRequest,
    ) -> BoxFuture<'static, Result<Vec<Bytes>, HeaderSourceError>> {
        Box::pin(async move {
            let HashOrNumber::Number(first) = query.origin else {
                return Err(HeaderSourceError::new(std::io::Error::other("no such block")));
            };
            Ok((first..first + query.amount).map(|n| alloy_rlp::encode(vec![n]).into()).collect())
        })
    }
}

/// A node with eth/69 + snap/1 enabled (snap served by [`TestSnap`], headers by
/// [`TestHeaders`]), dialing `peers`.
async fn eth_node(peers: Vec<leafsync_p2p::peers::NodeRecord>) -> (Node, watch::Sender<EthHead>) {
    let (mut config, head) = config(Arc::new(TestHandler::default()));
    let (mut eth, eth_head) = test_eth(Some(Arc::new(TestSnap)));
    eth.headers = Arc::new(TestHeaders);
    config.eth = Some(eth);
    config.static_peers = peers;
    (start(config, head).await, eth_head)
}

/// Our eth/69 Status at the test chain's genesis, as a well-behaved peer sends it.
fn eth_status() -> eth::Status {
    EthHead::genesis(&chain()).status(&chain())
}

fn geth_protocols() -> Vec<leafsync_p2p::p2pstream::Protocol> {
    vec![Subprotocol::Eth.protocol(), Subprotocol::Snap.protocol()]
}

async fn send_cap(p2p: &mut RawP2P, cap: usize, id: u8, payload: Vec<u8>) {
    p2p.send(CapabilityMessage { cap, id, payload: payload.into() }).await.expect("raw send");
}

/// A geth-like peer of `node` that completed the eth handshake; returns it with the node's
/// eth Status.
async fn snap_peer(node: &mut Node) -> (RawP2P, PeerId) {
    let (mut p2p, id) = raw_connect_offering(node.enode(), geth_protocols()).await.expect("hello");
    send_cap(&mut p2p, ETH, 0, alloy_rlp::encode(eth_status())).await;
    let msg = next_raw(&mut p2p).await.expect("the node's eth Status");
    assert_eq!((msg.cap, msg.id), (ETH, 0));
    assert_eq!(EthMessage::decode(0, &msg.payload), Ok(EthMessage::Status(eth_status())));
    let (leaf, eth, snap) = connected_protocols(&mut node.events, id).await;
    assert_eq!((leaf, eth.map(|e| e.status), snap), (None, Some(eth_status()), true));
    (p2p, id)
}

/// Our snap/1 `GetByteCodes` for `hashes` to the raw peer `raw_id`, asked in the background
/// (`request_id` is a placeholder: the session chooses the id); returns the pending answer and
/// the request as the raw peer received it.
async fn ask_byte_codes(
    node: &Node,
    raw: &mut RawP2P,
    raw_id: PeerId,
    request_id: u64,
    hashes: Vec<B256>,
) -> (tokio::task::JoinHandle<Result<SnapMessage, RequestError>>, GetByteCodes) {
    let handle = node.handle.clone();
    let asked = tokio::spawn(async move {
        let request = GetByteCodes { request_id, hashes, bytes: 100 };
        handle.snap_request(raw_id, SnapMessage::GetByteCodes(request)).await
    });
    let msg = next_raw(raw).await.expect("our GetByteCodes");
    assert_eq!(msg.cap, SNAP);
    let Ok(SnapMessage::GetByteCodes(request)) = SnapMessage::decode(msg.id, &msg.payload) else {
        panic!("expected GetByteCodes, got id {}", msg.id)
    };
    (asked, request)
}

/// What the node's `PeerConnected` event says `peer` speaks: its leaf Status, eth info, snap.
async fn connected_protocols(
    events: &mut tokio::sync::broadcast::Receiver<NetworkEvent>,
    id: PeerId,
) -> (Option<leafsync_p2p::leaf::Status>, Option<leafsync_p2p::peers::EthPeerInfo>, bool) {
    wait_event(events, |e| match e {
        NetworkEvent::PeerConnected { peer, leaf, eth, snap, .. } if *peer == id => {
            Some((*leaf, *eth, *snap))
        }
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eth_enabled_nodes_negotiate_eth_leaf_and_snap() {
    let (a, _a_eth) = eth_node(Vec::new()).await;
    let (mut b, _b_eth) = eth_node(vec![a.enode()]).await;
    let info = connected_protocols(&mut b.events, a.id()).await;
    assert_eq!(info.0, Some(good_status()), "leaf Status");
    assert_eq!(info.1.map(|e| e.status), Some(eth_status()), "eth Status");
    assert!(info.2, "snap");
    wait_connected(&a.handle, b.id()).await;
    let listed = a.handle.peers().await;
    let peer = listed.iter().find(|p| p.id == b.id()).expect("b is listed");
    assert_eq!(
        (peer.leaf, peer.eth.map(|e| e.status), peer.snap),
        (Some(good_status()), Some(eth_status()), true)
    );
    assert_eq!(peer.eth.map(|e| e.range), Some(eth_status().block_range()));

    // Both request kinds work on the one session.
    let codes = request_codes(&b.handle, a.id(), &[B256::repeat_byte(1)]).await.expect("leaf");
    assert_eq!(codes.codes.len(), 1);
    let range = GetAccountRange {
        request_id: 99,
        root: B256::repeat_byte(1),
        origin: B256::ZERO,
        limit: B256::repeat_byte(0xff),
        bytes: 4321,
    };
    let answer = b.handle.snap_request(a.id(), SnapMessage::GetAccountRange(range)).await;
    match answer {
        Ok(SnapMessage::AccountRange(r)) => {
            assert_eq!(r.accounts.len(), 1);
            assert_eq!(r.accounts[0].account.nonce, 4321, "answered by the SnapHandler");
        }
        other => panic!("expected an AccountRange, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_eth_connects_over_leaf_only() {
    let (a, _a_eth) = eth_node(Vec::new()).await;
    let (mut config, head) = config(Arc::new(TestHandler::default()));
    config.static_peers = vec![a.enode()];
    let mut b = start(config, head).await;
    let info = connected_protocols(&mut b.events, a.id()).await;
    assert_eq!(info, (Some(good_status()), None, false));
    wait_connected(&a.handle, b.id()).await;
    let request = GetByteCodes { request_id: 0, hashes: vec![B256::ZERO], bytes: 100 };
    let answer = a.handle.snap_request(b.id(), SnapMessage::GetByteCodes(request)).await;
    assert_eq!(answer, Err(RequestError::NotSupported));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snap_peer_is_served_and_asked() {
    let (mut node, _eth_head) = eth_node(Vec::new()).await;
    let (mut raw, raw_id) = snap_peer(&mut node).await;

    // Our snap/1 request: the session chooses the id; the raw peer answers it.
    let (asked, request) =
        ask_byte_codes(&node, &mut raw, raw_id, 12345, vec![B256::ZERO; 2]).await;
    assert_ne!(request.request_id, 12345, "the session assigns the id");
    let codes = ByteCodes { request_id: request.request_id, codes: vec![Bytes::from_static(b"c")] };
    send_cap(&mut raw, SNAP, 0x05, alloy_rlp::encode(&codes)).await;
    assert_eq!(asked.await.expect("task"), Ok(SnapMessage::ByteCodes(codes)));

    // Its snap/1 request, answered by the SnapHandler with its id.
    let range = GetAccountRange {
        request_id: 5,
        root: B256::repeat_byte(1),
        origin: B256::ZERO,
        limit: B256::repeat_byte(0xff),
        bytes: 777,
    };
    send_cap(&mut raw, SNAP, 0x00, alloy_rlp::encode(range)).await;
    let msg = next_raw(&mut raw).await.expect("AccountRange");
    assert_eq!((msg.cap, msg.id), (SNAP, 0x01));
    match SnapMessage::decode(msg.id, &msg.payload) {
        Ok(SnapMessage::AccountRange(r)) => {
            assert_eq!((r.request_id, r.accounts[0].account.nonce), (5, 777))
        }
        other => panic!("expected an AccountRange, got {other:?}"),
    }

    // GetBlockHeaders from the HeaderSource, bounded by its amount.
    let headers = GetBlockHeaders {
        request_id: 8,
        query: HeadersRequest {
            origin: HashOrNumber::Number(10),
            amount: 3,
            skip: 0,
            reverse: false,
        },
    };
    send_cap(&mut raw, ETH, 0x03, alloy_rlp::encode(headers)).await;
    let msg = next_raw(&mut raw).await.expect("BlockHeaders");
    assert_eq!((msg.cap, msg.id), (ETH, 0x04));
    // [8, [[10], [11], [12]]]
    let expected = [0xc8, 8, 0xc6, 0xc1, 10, 0xc1, 11, 0xc1, 12];
    assert_eq!(msg.payload.as_ref(), &expected);

    // More than MAX_HEADERS_SERVE asked: that many answered. A failing source: empty.
    let many =
        GetBlockHeaders { request_id: 9, query: HeadersRequest { amount: 5000, ..headers.query } };
    send_cap(&mut raw, ETH, 0x03, alloy_rlp::encode(many)).await;
    let msg = next_raw(&mut raw).await.expect("BlockHeaders");
    // [9, [[n], ...]]: the outer header, the id, then the headers.
    let mut payload = msg.payload.as_ref();
    let _ = alloy_rlp::Header::decode(&mut payload).expect("outer list");
    assert_eq!(<u64 as alloy_rlp::Decodable>::decode(&mut payload), Ok(9));
    let got = <Vec<Vec<u64>> as alloy_rlp::Decodable>::decode(&mut payload).map(|h| h.len());
    assert_eq!(got, Ok(eth::protocol::MAX_HEADERS_SERVE as usize), "clamped to the serve limit");
    let by_hash = GetBlockHeaders {
        request_id: 10,
        query: HeadersRequest { origin: HashOrNumber::Hash(B256::repeat_byte(3)), ..headers.query },
    };
    send_cap(&mut raw, ETH, 0x03, alloy_rlp::encode(by_hash)).await;
    let msg = next_raw(&mut raw).await.expect("BlockHeaders");
    assert_eq!((msg.id, msg.payload.as_ref()), (0x04, &[0xc2, 10, 0xc0][..]));

    // GetBlockBodies: empty, at absolute id 0x16.
    let bodies = RequestIds { request_id: 77, hashes: vec![B256::repeat_byte(2)] };
    send_cap(&mut raw, ETH, 0x05, alloy_rlp::encode(&bodies)).await;
    let msg = next_raw(&mut raw).await.expect("BlockBodies");
    let offset = raw.shared_capabilities().iter().next().expect("eth").offset;
    assert_eq!((msg.cap, offset + u64::from(msg.id)), (ETH, 0x16));
    assert_eq!(msg.payload.as_ref(), &[0xc2, 77, 0xc0]);

    // A transaction announcement is ignored; a BlockRangeUpdate is stored and announced.
    send_cap(&mut raw, ETH, 0x08, vec![0xc3, 0x80, 0xc0, 0xc0]).await;
    let range = BlockRangeUpdate { earliest: 0, latest: 500, latest_hash: B256::repeat_byte(5) };
    send_cap(&mut raw, ETH, 0x11, alloy_rlp::encode(range)).await;
    let got = wait_event(&mut node.events, |e| match e {
        NetworkEvent::BlockRange { peer, range } if *peer == raw_id => Some(*range),
        NetworkEvent::PeerPenalised { peer, .. } if *peer == raw_id => {
            panic!("no penalty for an announcement or a range: {e:?}")
        }
        _ => None,
    })
    .await;
    assert_eq!(got, range);
    let listed = node.handle.peers().await;
    let info = listed.iter().find(|p| p.id == raw_id).expect("listed");
    assert_eq!(info.eth.map(|e| e.range), Some(range));
    assert_eq!(
        (info.head.number, info.head.hash, info.head.state_root),
        (500, range.latest_hash, B256::ZERO)
    );

    // An eth response we never asked for costs a mid penalty; the session goes on.
    send_cap(&mut raw, ETH, 0x04, vec![0xc2, 3, 0xc0]).await;
    let reason = next_penalty_of(&mut node.events, raw_id, PenaltyClass::Mid).await;
    assert_eq!(reason, PenaltyReason::UnsolicitedResponse);
    send_cap(&mut raw, ETH, 0x05, alloy_rlp::encode(&bodies)).await;
    assert_eq!(next_raw(&mut raw).await.expect("still served").id, 0x06);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snap_answer_of_the_wrong_kind_is_a_breach() {
    let (mut node, _eth_head) = eth_node(Vec::new()).await;
    let (mut raw, raw_id) = snap_peer(&mut node).await;
    let (asked, request) = ask_byte_codes(&node, &mut raw, raw_id, 0, vec![B256::ZERO]).await;
    let nodes = TrieNodes { request_id: request.request_id, nodes: Vec::new() };
    send_cap(&mut raw, SNAP, 0x07, alloy_rlp::encode(&nodes)).await;
    assert_eq!(
        asked.await.expect("task"),
        Err(RequestError::InvalidResponse(ResponseViolation::WrongType))
    );
    assert_eq!(disconnect_of(&mut raw).await, DisconnectReason::ProtocolBreach);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_without_eth_and_eth_alone_are_refused() {
    let (node, _eth_head) = eth_node(Vec::new()).await;
    let (mut raw, _) = raw_connect_offering(node.enode(), vec![Subprotocol::Snap.protocol()])
        .await
        .expect("hello");
    assert_eq!(disconnect_of(&mut raw).await, DisconnectReason::SubprotocolSpecific);
    let (mut raw, _) =
        raw_connect_offering(node.enode(), vec![Subprotocol::Eth.protocol()]).await.expect("hello");
    assert_eq!(disconnect_of(&mut raw).await, DisconnectReason::UselessPeer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eth_status_of_another_chain_or_fork_is_refused() {
    let (mut node, _eth_head) = eth_node(Vec::new()).await;
    let cases = [
        (
            eth::Status { genesis: B256::repeat_byte(9), ..eth_status() },
            DisconnectReason::UselessPeer,
            Some(PenaltyClass::Fatal),
        ),
        (
            eth::Status {
                fork_id: alloy_eip2124::ForkId {
                    hash: alloy_eip2124::ForkHash([1, 2, 3, 4]),
                    next: 0,
                },
                ..eth_status()
            },
            DisconnectReason::SubprotocolSpecific,
            Some(PenaltyClass::High),
        ),
    ];
    for (status, reason, penalty) in cases {
        let (mut raw, id) =
            raw_connect_offering(node.enode(), geth_protocols()).await.expect("hello");
        send_cap(&mut raw, ETH, 0, alloy_rlp::encode(status)).await;
        assert_eq!(disconnect_of(&mut raw).await, reason);
        if let Some(class) = penalty {
            let why = next_penalty_of(&mut node.events, id, class).await;
            assert_eq!(why, PenaltyReason::Handshake);
        }
    }
}

/// Transaction gossip is read and dropped, within a budget of bytes a second: a peer that sends
/// more than the burst at once is disconnected and banned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_gossip_beyond_its_budget_is_a_breach() {
    let (mut node, _eth_head) = eth_node(Vec::new()).await;
    let (mut raw, raw_id) = snap_peer(&mut node).await;
    // Within the burst: still served.
    send_cap(&mut raw, ETH, eth::protocol::ids::TRANSACTIONS, vec![0xff; 1 << 20]).await;
    send_cap(&mut raw, ETH, 0x05, alloy_rlp::encode(RequestIds { request_id: 1, hashes: vec![] }))
        .await;
    assert_eq!(next_raw(&mut raw).await.expect("still served").id, 0x06);
    let messages = GOSSIP_BURST_BYTES / (1 << 20) + 2;
    for _ in 0..messages {
        let payload = vec![0xff; 1 << 20];
        if raw
            .send(CapabilityMessage {
                cap: ETH,
                id: eth::protocol::ids::TRANSACTIONS,
                payload: payload.into(),
            })
            .await
            .is_err()
        {
            break;
        }
    }
    // The node hangs up while the flood is still coming (our sends then fail): its penalty
    // and the ban say why.
    banned_for_a_gossip_flood(&mut node, raw_id).await;
}

/// Waits for `peer`'s fatal `GossipFlood` penalty, then its ban.
async fn banned_for_a_gossip_flood(node: &mut Node, peer: PeerId) {
    let reason = next_penalty_of(&mut node.events, peer, PenaltyClass::Fatal).await;
    assert_eq!(reason, PenaltyReason::GossipFlood);
    wait_event(&mut node.events, |e| match e {
        NetworkEvent::PeerBanned { peer: banned } if *banned == peer => Some(()),
        _ => None,
    })
    .await;
}

/// Sends a burst of the requests `request` makes (each costing `cost` bytes of the budget for
/// requests answered empty) and four more at once, as fast as the link takes them, and checks
/// that every one is answered (with message `answer` of capability `cap`), the last ones a
/// request's worth of the budget apart (the node stops reading meanwhile), and that the peer is
/// still served after them.
async fn answered_at_the_budgets_pace(
    raw: RawP2P,
    request: impl Fn(u64) -> CapabilityMessage,
    cost: u64,
    (cap, answer): (usize, u8),
) {
    let total = GOSSIP_BURST_BYTES / cost + 4;
    let (mut tx, mut rx) = futures::StreamExt::split(raw);
    let started = std::time::Instant::now();
    let send = async {
        for request_id in 0..total {
            tx.send(request(request_id)).await.expect("the node keeps reading");
        }
    };
    let receive = async {
        for _ in 0..total {
            let message = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut rx))
                .await
                .expect("answered within the wait limit")
                .expect("still connected")
                .expect("no error");
            assert_eq!((message.cap, message.id), (cap, answer));
        }
    };
    tokio::join!(send, receive);
    // Of the four past the burst, the first overdrew it by a little; each of the next three
    // was read a request's worth of the budget after the one before.
    let per_request = std::time::Duration::from_secs_f64(cost as f64 / (1 << 20) as f64);
    let elapsed = started.elapsed();
    assert!(elapsed >= 2 * per_request, "{elapsed:?}: not slowed");
    tx.send(request(total)).await.expect("connected");
    let last = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut rx)).await;
    assert!(matches!(last, Ok(Some(Ok(ref m))) if m.id == answer), "{last:?}");
}

/// Requests we answer empty (here `GetReceipts` of 7,000 hashes each, 224,000 bytes of their
/// budget), sent as fast as the link takes them, are all answered: past the burst the node
/// reads each next one only once the budget covers it (TCP holds the rest back), so the peer is
/// slowed to the budget's rate and stays connected. A geth syncing its chain over a fast link
/// asks an idle peer for receipts that fast; it was banned for a flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_answered_empty_beyond_their_budget_are_slowed_not_refused() {
    let (mut node, _eth_head) = eth_node(Vec::new()).await;
    let (raw, _) = snap_peer(&mut node).await;
    let request = |request_id| {
        let hashes = vec![B256::repeat_byte(7); 7_000];
        let payload = alloy_rlp::encode(RequestIds { request_id, hashes });
        CapabilityMessage { cap: ETH, id: 0x0f, payload: payload.into() }
    };
    let cost = (7_000 * 32).max(EMPTY_ANSWER_COST_BYTES);
    answered_at_the_budgets_pace(raw, request, cost, (ETH, 0x10)).await;
}

/// A node without a snap/1 handler (the default) answers every snap/1 request empty at once:
/// charged to the same budget by their encoded bytes, they went free (here `GetByteCodes` of
/// 4,096 hashes, the most decoded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_requests_answered_empty_take_the_same_budget() {
    let (mut config, head) = config(Arc::new(TestHandler::default()));
    config.eth = Some(test_eth(None).0);
    let mut node = start(config, head).await;
    let (raw, _) = snap_peer(&mut node).await;
    let request = |request_id| {
        let hashes = vec![B256::repeat_byte(7); 4_096];
        let message = SnapMessage::GetByteCodes(GetByteCodes { request_id, hashes, bytes: 1 });
        let mut payload = Vec::new();
        message.encode(&mut payload);
        CapabilityMessage { cap: SNAP, id: message.id(), payload: payload.into() }
    };
    let cost = (request(0).payload.len() as u64).max(EMPTY_ANSWER_COST_BYTES);
    answered_at_the_budgets_pace(raw, request, cost, (SNAP, 0x05)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_eth_status_is_a_breach() {
    let (mut node, _eth_head) = eth_node(Vec::new()).await;
    let (mut raw, _) = snap_peer(&mut node).await;
    send_cap(&mut raw, ETH, 0, alloy_rlp::encode(eth_status())).await;
    assert_eq!(disconnect_of(&mut raw).await, DisconnectReason::ProtocolBreach);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_head_moving_32_blocks_is_announced_as_a_block_range() {
    let (mut node, eth_head) = eth_node(Vec::new()).await;
    let (mut raw, _) = snap_peer(&mut node).await;
    let at = |number: u64| EthHead {
        number,
        hash: B256::repeat_byte(number as u8),
        ..EthHead::genesis(&chain())
    };
    eth_head.send_replace(at(31));
    eth_head.send_replace(at(32));
    let msg = next_raw(&mut raw).await.expect("BlockRangeUpdate");
    assert_eq!((msg.cap, msg.id), (ETH, 0x11));
    assert_eq!(
        EthMessage::decode(msg.id, &msg.payload),
        Ok(EthMessage::BlockRangeUpdate(at(32).range())),
        "31 blocks are not announced, 32 are"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_beside_leaf_without_eth_is_not_used() {
    let (mut node, _eth_head) = eth_node(Vec::new()).await;
    let offered = vec![Subprotocol::Leaf.protocol(), Subprotocol::Snap.protocol()];
    let (raw, id) = raw_connect_offering(node.enode(), offered).await.expect("hello");
    let (_raw, _) = exchange_status(raw, id).await;
    let info = connected_protocols(&mut node.events, id).await;
    assert_eq!(info, (Some(good_status()), None, false), "a leaf/1 peer, snap/1 unused");
    let request = GetByteCodes { request_id: 0, hashes: vec![B256::ZERO], bytes: 100 };
    let answer = node.handle.snap_request(id, SnapMessage::GetByteCodes(request)).await;
    assert_eq!(answer, Err(RequestError::NotSupported));
}

/// A node speaking eth/69 beside `leaf/1` keeps a third of its inbound slots for `leaf/1` peers:
/// with three slots, two geth-like peers are taken, the third is refused as too many once its
/// Hello shows it has no `leaf/1`, and a leafsync peer still gets the kept slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_slots_are_kept_for_leaf_peers() {
    let (mut config, head) = config(Arc::new(TestHandler::default()));
    let (mut eth, _eth_head) = test_eth(Some(Arc::new(TestSnap)));
    eth.headers = Arc::new(TestHeaders);
    config.eth = Some(eth);
    config.max_inbound = 3;
    let mut node = start(config, head).await;
    let (_first, _) = snap_peer(&mut node).await;
    let (_second, _) = snap_peer(&mut node).await;
    let (mut third, _) = raw_connect_offering(node.enode(), geth_protocols()).await.expect("hello");
    send_cap(&mut third, ETH, 0, alloy_rlp::encode(eth_status())).await;
    assert_eq!(disconnect_of(&mut third).await, DisconnectReason::TooManyPeers);
    // The kept slot takes a leaf/1 peer (`connected_peer` waits for its session).
    let (_leaf, leaf_id) = connected_peer(&mut node).await;
    assert!(node.handle.peers().await.iter().any(|p| p.id == leaf_id));
}
