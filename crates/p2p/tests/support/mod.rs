//! Shared helpers of the `net_*` tests: nodes on 127.0.0.1:0, a test request handler, and hostile
//! peers built from the lower layers (ECIES stream + p2p stream, leaf messages by hand).

#![allow(dead_code, unreachable_pub)]

use alloy_primitives::{B256, Bytes};
use futures::{SinkExt, StreamExt};
use leafsync_p2p::{
    CapabilityMessage, EciesStream, EncodedResponse, P2PError, P2PStream, PeerId,
    UnauthedP2PStream,
    chain::ChainSpec,
    discovery::DiscoveryConfig,
    ecies::id_from_pk,
    leaf::{Codes, GetCodes, LeafMessage, Nodes, RequestPair, Status},
    p2pstream::{DisconnectReason, HelloMessageWithProtocols},
    peers::{LocalHead, NetworkConfig, NetworkEvent, NetworkHandle, NodeRecord, RequestHandler},
    requests::{LeafRequest, LeafResponse, RequestError},
    session::leaf_protocol,
    test_utils,
};
use secp256k1::{PublicKey, SECP256K1, SecretKey};
use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{net::TcpStream, sync::watch};

#[allow(unused_imports)] // each test binary uses a part
pub use leafsync_p2p::test_utils::{TestNode as Node, WAIT, wait_connected, wait_event};

/// The raw side of a hostile peer after Hello.
pub type RawP2P = P2PStream<EciesStream<TcpStream>>;

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

/// A hostile peer: connects to `node`, runs ECIES and Hello (with leaf/1), nothing more.
pub async fn raw_connect(node: NodeRecord) -> Result<(RawP2P, PeerId), P2PError> {
    raw_connect_with(node, key().0).await
}

/// [`raw_connect`] with a given node key.
pub async fn raw_connect_with(
    node: NodeRecord,
    sk: SecretKey,
) -> Result<(RawP2P, PeerId), P2PError> {
    let tcp = TcpStream::connect(node.addr).await.map_err(leafsync_p2p::EciesError::from)?;
    raw_handshake(tcp, node, sk).await
}

/// A TCP connection to `addr` from the loopback address `source` (any of 127.0.0.0/8 works as a
/// source on Linux), so that tests can have peers with distinct IPs.
pub async fn tcp_from(source: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(addr).await
}

/// [`raw_connect`] from the loopback address `source`.
pub async fn raw_connect_from(
    node: NodeRecord,
    source: Ipv4Addr,
) -> Result<(RawP2P, PeerId), P2PError> {
    let tcp = tcp_from(source, node.addr).await.map_err(leafsync_p2p::EciesError::from)?;
    raw_handshake(tcp, node, key().0).await
}

/// ECIES and Hello (with leaf/1) as a peer with key `sk` on an open connection to `node`.
pub async fn raw_handshake(
    tcp: TcpStream,
    node: NodeRecord,
    sk: SecretKey,
) -> Result<(RawP2P, PeerId), P2PError> {
    handshake_offering(tcp, node, sk, "hostile/0", vec![leaf_protocol()]).await
}

/// ECIES and a Hello as client `client` offering `protocols`, as a peer with key `sk` on an open
/// connection to `node`.
async fn handshake_offering(
    tcp: TcpStream,
    node: NodeRecord,
    sk: SecretKey,
    client: &str,
    protocols: Vec<leafsync_p2p::p2pstream::Protocol>,
) -> Result<(RawP2P, PeerId), P2PError> {
    let id = id_from_pk(&PublicKey::from_secret_key(SECP256K1, &sk));
    let ecies = EciesStream::connect(tcp, sk, node.id).await?;
    let hello = HelloMessageWithProtocols::new(client, protocols, 0, id);
    let (p2p, _) = UnauthedP2PStream::new(ecies).with_remote_id(node.id).handshake(hello).await?;
    Ok((p2p, id))
}

pub async fn send_raw(p2p: &mut RawP2P, id: u8, payload: Vec<u8>) {
    p2p.send(CapabilityMessage { cap: 0, id, payload: payload.into() }).await.expect("raw send");
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

/// ECIES and a Hello offering `protocols` as a fresh peer, on a new connection to `node`.
pub async fn raw_connect_offering(
    node: NodeRecord,
    protocols: Vec<leafsync_p2p::p2pstream::Protocol>,
) -> Result<(RawP2P, PeerId), P2PError> {
    let tcp = TcpStream::connect(node.addr).await.map_err(leafsync_p2p::EciesError::from)?;
    handshake_offering(tcp, node, key().0, "geth-like/0", protocols).await
}

/// The next capability message a raw peer receives, or the p2p error that ended its stream.
pub async fn next_raw(p2p: &mut RawP2P) -> Result<CapabilityMessage, P2PError> {
    tokio::time::timeout(WAIT, p2p.next())
        .await
        .expect("message within the wait limit")
        .ok_or(P2PError::ConnectionClosed)?
}

/// The Disconnect reason a raw peer receives next (other messages skipped).
pub async fn disconnect_of(p2p: &mut RawP2P) -> DisconnectReason {
    disconnect_after(p2p, |_| ()).await
}

/// Reads until the stream ends and returns the Disconnect reason received, handing each message
/// before it to `check`.
async fn disconnect_after(p2p: &mut RawP2P, check: fn(&CapabilityMessage)) -> DisconnectReason {
    loop {
        match next_raw(p2p).await {
            Ok(msg) => check(&msg),
            Err(P2PError::Disconnected(reason)) => return reason,
            Err(other) => panic!("expected a Disconnect, got {other:?}"),
        }
    }
}
