//! A raw peer: a devp2p connection to a node run by hand, through the ECIES and p2p streams,
//! for tests that send what no well-behaved peer sends (hostile frames, a geth-like Hello, leaf
//! or eth messages by hand) and read exactly what the node answers.

use futures::{SinkExt, StreamExt};
use secp256k1::{PublicKey, SECP256K1, SecretKey};
use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::TcpStream;

use super::{WAIT, test_key};
use crate::{
    CapabilityMessage, EciesError, EciesStream, P2PError, P2PStream, PeerId, UnauthedP2PStream,
    ecies::id_from_pk,
    p2pstream::{DisconnectReason, HelloMessageWithProtocols, Protocol},
    peers::NodeRecord,
    session::leaf_protocol,
};

/// The raw side of a hostile peer after Hello.
pub type RawP2P = P2PStream<EciesStream<TcpStream>>;

/// A hostile peer: connects to `node`, runs ECIES and Hello (with leaf/1), nothing more.
pub async fn raw_connect(node: NodeRecord) -> Result<(RawP2P, PeerId), P2PError> {
    raw_connect_with(node, test_key().0).await
}

/// [`raw_connect`] with a given node key.
pub async fn raw_connect_with(
    node: NodeRecord,
    sk: SecretKey,
) -> Result<(RawP2P, PeerId), P2PError> {
    let tcp = TcpStream::connect(node.addr).await.map_err(EciesError::from)?;
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
    let tcp = tcp_from(source, node.addr).await.map_err(EciesError::from)?;
    raw_handshake(tcp, node, test_key().0).await
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
pub async fn handshake_offering(
    tcp: TcpStream,
    node: NodeRecord,
    sk: SecretKey,
    client: &str,
    protocols: Vec<Protocol>,
) -> Result<(RawP2P, PeerId), P2PError> {
    let id = id_from_pk(&PublicKey::from_secret_key(SECP256K1, &sk));
    let ecies = EciesStream::connect(tcp, sk, node.id).await?;
    let hello = HelloMessageWithProtocols::new(client, protocols, 0, id);
    let (p2p, _) = UnauthedP2PStream::new(ecies).with_remote_id(node.id).handshake(hello).await?;
    Ok((p2p, id))
}

/// Sends message `id` of the first capability with `payload`, as given (nothing checked).
pub async fn send_raw(p2p: &mut RawP2P, id: u8, payload: Vec<u8>) {
    p2p.send(CapabilityMessage { cap: 0, id, payload: payload.into() }).await.expect("raw send");
}

/// ECIES and a Hello offering `protocols` as a fresh peer, on a new connection to `node`.
pub async fn raw_connect_offering(
    node: NodeRecord,
    protocols: Vec<Protocol>,
) -> Result<(RawP2P, PeerId), P2PError> {
    let tcp = TcpStream::connect(node.addr).await.map_err(EciesError::from)?;
    handshake_offering(tcp, node, test_key().0, "geth-like/0", protocols).await
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
pub async fn disconnect_after(p2p: &mut RawP2P, check: fn(&CapabilityMessage)) -> DisconnectReason {
    loop {
        match next_raw(p2p).await {
            Ok(msg) => check(&msg),
            Err(P2PError::Disconnected(reason)) => return reason,
            Err(other) => panic!("expected a Disconnect, got {other:?}"),
        }
    }
}
