//! Shared helpers of the `net_*` tests: nodes on 127.0.0.1:0, a test request handler, and hostile
//! peers built from the lower layers (ECIES stream + p2p stream, leaf messages by hand).

#![allow(dead_code, unreachable_pub)]

use alloy_primitives::{B256, Bytes};
use leafsync_p2p::{
    CapabilityMessage, EncodedResponse, P2PError, PeerId,
    chain::ChainSpec,
    discovery::DiscoveryConfig,
    leaf::{Codes, GetCodes, LeafMessage, Nodes, RequestPair, Status},
    p2pstream::DisconnectReason,
    peers::{LocalHead, NetworkConfig, NetworkEvent, NetworkHandle, NodeRecord, RequestHandler},
    requests::{LeafRequest, LeafResponse, RequestError},
    test_utils,
};
use secp256k1::SecretKey;
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::sync::watch;

#[allow(unused_imports)] // each test binary uses a part
pub use leafsync_p2p::test_utils::{
    TestNode as Node, WAIT,
    raw::{
        RawP2P, disconnect_after, disconnect_of, next_raw, raw_connect, raw_connect_from,
        raw_connect_offering, raw_connect_with, raw_handshake, send_raw, tcp_from,
    },
    wait_connected, wait_event,
};

pub fn chain() -> ChainSpec {
    test_utils::test_chain()
}

pub fn key() -> (SecretKey, PeerId) {
    test_utils::test_key()
}

pub fn local_head(number: u64) -> LocalHead {
    test_utils::test_head(number, B256::repeat_byte(0xaa))
}

/// The status a well-behaved peer at head 0 sends.
pub fn good_status() -> Status {
    local_head(0).status(&chain())
}

/// Answers `GetCodes` with each hash's bytes as the "code" (so a response proves which request it
/// answers), everything else empty. With a gate, every call blocks until the gate opens (bounded
/// by `WAIT`, so blocking threads never outlive the test).
#[derive(Default)]
pub struct TestHandler {
    pub calls: AtomicUsize,
    gate: Option<(Mutex<bool>, Condvar)>,
}

impl TestHandler {
    pub fn gated() -> Self {
        Self { calls: AtomicUsize::new(0), gate: Some((Mutex::new(false), Condvar::new())) }
    }

    pub fn open(&self) {
        if let Some((lock, cv)) = &self.gate {
            if let Ok(mut open) = lock.lock() {
                *open = true;
            }
            cv.notify_all();
        }
    }
}

impl RequestHandler for TestHandler {
    fn handle(&self, _peer: PeerId, request: &LeafRequest) -> EncodedResponse {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some((lock, cv)) = &self.gate
            && let Ok(guard) = lock.lock()
        {
            let _ = cv.wait_timeout_while(guard, WAIT, |open| !*open);
        }
        match request {
            LeafRequest::GetCodes(r) => LeafResponse::Codes(Codes {
                codes: r.hashes.iter().map(|h| Bytes::copy_from_slice(h.as_slice())).collect(),
            }),
            other => other.empty_response(),
        }
        .encoded()
    }
}

pub fn config(handler: Arc<dyn RequestHandler>) -> (NetworkConfig, watch::Sender<LocalHead>) {
    test_utils::test_config(handler, local_head(0))
}

pub fn discovery_config(bootnodes: Vec<leafsync_p2p::chain::Enr>) -> DiscoveryConfig {
    DiscoveryConfig {
        listen_addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        lookup_interval: Duration::from_millis(200),
        bootnodes,
        // Every node is on 127.0.0.1.
        allow_local_addresses: true,
        ip_limit: false,
        packet_filter: false,
        ..DiscoveryConfig::default()
    }
}

pub async fn start(config: NetworkConfig, head: watch::Sender<LocalHead>) -> Node {
    Node::with_config(config, head).await
}

pub async fn node(handler: Arc<dyn RequestHandler>) -> Node {
    let (config, head) = config(handler);
    start(config, head).await
}

pub async fn send_leaf(p2p: &mut RawP2P, message: LeafMessage) {
    send_raw(p2p, message.id(), message.encoded()).await;
}

/// The next leaf message the hostile peer receives, or the p2p error that ended its stream.
pub async fn next_leaf(p2p: &mut RawP2P) -> Result<LeafMessage, P2PError> {
    next_raw(p2p).await.map(|msg| leaf_of(&msg))
}

/// `msg` decoded as the leaf message our node sent.
fn leaf_of(msg: &CapabilityMessage) -> LeafMessage {
    LeafMessage::decode(msg.id, &msg.payload).expect("our node sends valid leaf messages")
}

/// Reads until the stream ends and returns the Disconnect reason received (every message before
/// it must be a valid leaf message).
pub async fn expect_disconnect(p2p: &mut RawP2P) -> DisconnectReason {
    disconnect_after(p2p, |msg| drop(leaf_of(msg))).await
}

/// A hostile peer that completed the Status handshake correctly (and then misbehaves).
pub async fn handshaken_peer(node: NodeRecord) -> (RawP2P, PeerId) {
    let (p2p, id) = raw_connect(node).await.expect("hello");
    exchange_status(p2p, id).await
}

/// Sends a good Status and reads the node's.
pub async fn exchange_status(mut p2p: RawP2P, id: PeerId) -> (RawP2P, PeerId) {
    send_leaf(&mut p2p, LeafMessage::Status(good_status())).await;
    match next_leaf(&mut p2p).await {
        Ok(LeafMessage::Status(_)) => {}
        other => panic!("expected the node's Status, got {other:?}"),
    }
    (p2p, id)
}

pub fn get_codes(hashes: &[B256]) -> GetCodes {
    GetCodes { hashes: hashes.to_vec(), max_bytes: 1 << 20 }
}

/// A `GetCodes` message with `request_id`, as a hostile peer sends it.
pub fn get_codes_message(request_id: u64, hashes: &[B256]) -> LeafMessage {
    LeafMessage::GetCodes(RequestPair { request_id, message: get_codes(hashes) })
}

/// Asks `peer` for codes through the handle and takes the `Codes` apart.
pub async fn request_codes(
    handle: &NetworkHandle,
    peer: PeerId,
    hashes: &[B256],
) -> Result<Codes, RequestError> {
    let response = handle.request(peer, get_codes(hashes).into()).await?;
    Ok(Codes::try_from(response).expect("the session checks the kind"))
}

pub fn codes(request_id: u64, n: usize) -> LeafMessage {
    LeafMessage::Codes(RequestPair {
        request_id,
        message: Codes { codes: vec![Bytes::from_static(b"x"); n] },
    })
}

pub fn nodes(request_id: u64) -> LeafMessage {
    LeafMessage::Nodes(RequestPair { request_id, message: Nodes { nodes: Vec::new() } })
}

/// [`handshaken_peer`], and waits until `node` has registered the session (so that requests to
/// the hostile peer find it).
pub async fn connected_peer(node: &mut Node) -> (RawP2P, PeerId) {
    let (p2p, id) = handshaken_peer(node.handle.local_enode()).await;
    wait_event(&mut node.events, |e| match e {
        NetworkEvent::PeerConnected { peer, .. } if *peer == id => Some(()),
        _ => None,
    })
    .await;
    (p2p, id)
}

/// The reason of the next penalty of `class` that `peer` earns (other penalties are skipped).
pub async fn next_penalty_of(
    events: &mut tokio::sync::broadcast::Receiver<NetworkEvent>,
    peer: PeerId,
    class: leafsync_p2p::PenaltyClass,
) -> leafsync_p2p::peers::PenaltyReason {
    wait_event(events, |e| match e {
        NetworkEvent::PeerPenalised { peer: p, class: c, reason, .. }
            if *p == peer && *c == class =>
        {
            Some(*reason)
        }
        _ => None,
    })
    .await
}
