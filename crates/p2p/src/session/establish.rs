//! The whole connection sequence over TCP: ECIES → Hello (with `leaf/1`) → Status.

use super::{LeafStream, SessionError, UnauthedLeafStream};
use crate::{
    chain::ChainSpec,
    ecies::{EciesStream, PeerId},
    leaf::{
        Status,
        protocol::{MAX_RESPONSE_MESSAGE_SIZE, MESSAGE_COUNT, PROTOCOL_NAME, PROTOCOL_VERSION},
    },
    p2pstream::{
        HelloMessage, HelloMessageWithProtocols, Protocol, UnauthedP2PStream, hello::MAX_HELLO_SIZE,
    },
};
use alloy_eip2124::ForkFilter;
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
pub const MAX_SESSION_FRAME_SIZE: usize =
    1 + 32 + MAX_RESPONSE_MESSAGE_SIZE + MAX_RESPONSE_MESSAGE_SIZE / 6;

/// A `leaf/1` session over TCP.
pub type TcpLeafStream = LeafStream<EciesStream<TcpStream>>;

/// An established session: the stream, the remote's Hello and its Status.
#[derive(Debug)]
pub struct Established {
    /// The session.
    pub stream: TcpLeafStream,
    /// The remote's Hello (its node id, client version, capabilities).
    pub hello: HelloMessage,
    /// The remote's Status.
    pub status: Status,
}

/// What a node needs to establish sessions.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// Our node key.
    pub secret_key: SecretKey,
    /// Our Hello (with `leaf/1` in its protocols, see [`leaf_protocol`]).
    pub hello: HelloMessageWithProtocols,
    /// Our chain, to check the remote's Status.
    pub chain: ChainSpec,
}

/// The `leaf/1` protocol entry for our Hello.
pub fn leaf_protocol() -> Protocol {
    Protocol::new(PROTOCOL_NAME, u64::from(PROTOCOL_VERSION), MESSAGE_COUNT)
}

/// Dials `addr`, expecting node `peer_id`, and runs ECIES → Hello → Status.
pub async fn establish_outbound(
    addr: SocketAddr,
    peer_id: PeerId,
    params: &SessionParams,
    status: Status,
    filter: &ForkFilter,
) -> Result<Established, SessionError> {
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| SessionError::DialTimeout)??;
    tcp.set_nodelay(true)?;
    let ecies = EciesStream::connect(tcp, params.secret_key, peer_id).await?;
    establish_authenticated(ecies, params, status, filter).await
}

/// Runs ECIES → Hello → Status on an accepted connection.
pub async fn establish_inbound(
    tcp: TcpStream,
    params: &SessionParams,
    status: Status,
    filter: &ForkFilter,
) -> Result<Established, SessionError> {
    tcp.set_nodelay(true)?;
    let ecies = EciesStream::incoming(tcp, params.secret_key).await?;
    establish_authenticated(ecies, params, status, filter).await
}

/// Hello and Status on an authenticated ECIES stream (public so that the peer manager can check
/// the remote id between the two steps, see `crate::peers`).
pub async fn establish_authenticated(
    ecies: EciesStream<TcpStream>,
    params: &SessionParams,
    status: Status,
    filter: &ForkFilter,
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
    // No frame has been decoded past the Hello yet, so the next header meets the new limit.
    p2p.inner_mut().codec_mut().set_max_frame_size(MAX_SESSION_FRAME_SIZE);
    p2p.set_max_message_size(MAX_RESPONSE_MESSAGE_SIZE);
    let (stream, status) =
        UnauthedLeafStream::new(p2p).await?.handshake(status, &params.chain, filter).await?;
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
    }
}
