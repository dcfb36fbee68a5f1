//! The whole connection sequence over TCP: ECIES → Hello (with `leaf/1`, and `eth/69` with
//! `snap/1` when enabled) → the Status handshakes.

use super::{LocalStatus, PeerStatus, PeerStream, SessionError, Subprotocol, UnauthedPeerStream};
use crate::{
    chain::ChainSpec,
    ecies::{EciesStream, PeerId},
    eth,
    leaf::protocol::MAX_RESPONSE_MESSAGE_SIZE,
    p2pstream::{
        HelloMessage, HelloMessageWithProtocols, Protocol, UnauthedP2PStream, hello::MAX_HELLO_SIZE,
    },
};
use secp256k1::SecretKey;
use std::{net::SocketAddr, time::Duration};
use tokio::net::TcpStream;

/// Time a TCP connect may take. Loopback and LAN connects take milliseconds and a transatlantic
/// one ~100 ms; a peer that does not complete the three-way handshake in 5 s is unreachable (geth
/// uses 15 s for the whole dial; the ECIES and Hello steps have their own timeouts after this).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest RLPx frame body of an established `leaf/1` session, accepted and sent: the message id
/// byte plus snappy's worst case for the largest `leaf/1` payload
/// (`max_compress_len(MAX_RESPONSE_MESSAGE_SIZE)` = 32 + n + n/6). Before Hello the frame limit is
/// `MAX_HELLO_SIZE`, so a peer that has not even said Hello cannot make us buffer more than 2 KiB;
/// afterwards no honest frame exceeds this (~4.7 MiB instead of the 24-bit 16 MiB), and the
/// codec refuses a larger one at its header, before buffering the body.
pub const MAX_SESSION_FRAME_SIZE: usize = frame_size(MAX_RESPONSE_MESSAGE_SIZE);

/// Largest RLPx frame body of a session that speaks `eth/69` (and `snap/1`): the same worst
/// case for geth's 10 MiB `maxMessageSize` (~11.7 MiB, still below the 24-bit 16 MiB), so that
/// every message geth may send is accepted.
pub const MAX_ETH_SESSION_FRAME_SIZE: usize = frame_size(eth::protocol::MAX_MESSAGE_SIZE);

/// The id byte plus snappy's worst case for a payload of `n` bytes.
const fn frame_size(n: usize) -> usize {
    1 + 32 + n + n / 6
}

/// A session over TCP.
pub type TcpPeerStream = PeerStream<EciesStream<TcpStream>>;

/// An established session: the stream, the remote's Hello and its Status of each subprotocol.
#[derive(Debug)]
pub struct Established {
    /// The session.
    pub stream: TcpPeerStream,
    /// The remote's Hello (its node id, client version, capabilities).
    pub hello: HelloMessage,
    /// The remote's Statuses: which subprotocols the session speaks.
    pub status: PeerStatus,
}

/// What a node needs to establish sessions.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// Our node key.
    pub secret_key: SecretKey,
    /// Our Hello (its protocols from [`super::hello_protocols`]).
    pub hello: HelloMessageWithProtocols,
    /// Our chain, to check the remote's Status.
    pub chain: ChainSpec,
}

/// The `leaf/1` protocol entry for our Hello.
pub fn leaf_protocol() -> Protocol {
    Subprotocol::Leaf.protocol()
}

/// Dials `addr`, expecting node `peer_id`, and runs ECIES → Hello → Status.
pub async fn establish_outbound(
    addr: SocketAddr,
    peer_id: PeerId,
    params: &SessionParams,
    status: &LocalStatus,
) -> Result<Established, SessionError> {
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| SessionError::DialTimeout)??;
    tcp.set_nodelay(true)?;
    let ecies = EciesStream::connect(tcp, params.secret_key, peer_id).await?;
    establish_authenticated(ecies, params, status).await
}

/// Runs ECIES → Hello → Status on an accepted connection.
pub async fn establish_inbound(
    tcp: TcpStream,
    params: &SessionParams,
    status: &LocalStatus,
) -> Result<Established, SessionError> {
    tcp.set_nodelay(true)?;
    let ecies = EciesStream::incoming(tcp, params.secret_key).await?;
    establish_authenticated(ecies, params, status).await
}

/// Hello and Status on an authenticated ECIES stream (public so that the peer manager can check
/// the remote id between the two steps, see `crate::peers`).
pub async fn establish_authenticated(
    ecies: EciesStream<TcpStream>,
    params: &SessionParams,
    status: &LocalStatus,
) -> Result<Established, SessionError> {
    let mut ecies = ecies;
    let remote = ecies.remote_id();
    // Before Hello only a Hello (or a Disconnect) may come: refuse bigger frames at the header.
    ecies.codec_mut().set_max_frame_size(MAX_HELLO_SIZE);
    // Boxed: the Hello exchange holds the whole stream, and keeping it out of the enclosing
    // futures keeps those small.
    let (mut p2p, hello) = Box::pin(
        UnauthedP2PStream::new(ecies).with_remote_id(remote).handshake(params.hello.clone()),
    )
    .await?;
    // No frame has been decoded past the Hello yet, so the next header meets the new limit:
    // leaf/1's largest message, or geth's when eth/69 is shared.
    let eth = status.eth.is_some() && p2p.capability(Subprotocol::Eth.name()).is_some();
    let (frame, message) = if eth {
        (MAX_ETH_SESSION_FRAME_SIZE, eth::protocol::MAX_MESSAGE_SIZE)
    } else {
        (MAX_SESSION_FRAME_SIZE, MAX_RESPONSE_MESSAGE_SIZE)
    };
    p2p.inner_mut().codec_mut().set_max_frame_size(frame);
    p2p.set_max_message_size(message);
    let (stream, status) =
        UnauthedPeerStream::new(p2p).await?.handshake(status, &params.chain).await?;
    Ok(Established { stream, hello, status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_frame_limit_is_snappys_worst_case_for_the_largest_message() {
        assert_eq!(
            MAX_SESSION_FRAME_SIZE,
            1 + snap::raw::max_compress_len(MAX_RESPONSE_MESSAGE_SIZE)
        );
        assert_eq!(
            MAX_ETH_SESSION_FRAME_SIZE,
            1 + snap::raw::max_compress_len(eth::protocol::MAX_MESSAGE_SIZE)
        );
        const { assert!(MAX_ETH_SESSION_FRAME_SIZE < 1 << 24) };
    }
}
