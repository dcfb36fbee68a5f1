//! The handshake tasks the peer manager spawns: [`accept`] (an inbound connection: ECIES, the
//! manager's admission check for the authenticated id, then Hello and Status) and [`dial`] (an
//! outbound one), each within its deadline, reporting to the manager as [`HandshakeEvent`]s.

use super::{events::Direction, pending::PendingSlot};
use crate::{
    PeerId,
    ecies::EciesStream,
    p2pstream::{DisconnectReason, stream::encode_message},
    peers::NodeRecord,
    session::{
        Established, LocalStatus, SessionError, SessionParams, establish_authenticated,
        establish_outbound,
    },
    util::or_on_panic,
};
use futures::SinkExt;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    net::TcpStream,
    sync::{mpsc, oneshot},
};
use tracing::debug;

/// Most inbound connections in their handshake at once; further accepted sockets are closed at
/// once. Bounds the work an attacker can cause with connections that never finish their
/// handshake (each one lasts at most [`INBOUND_HANDSHAKE_TIMEOUT`]); the per-IP share
/// (`NetworkConfig::max_pending_inbound_per_ip`) keeps one host from taking all of them.
pub const MAX_PENDING_INBOUND: usize = 32;

/// Time an inbound connection has for its whole handshake: ECIES, our admission check, Hello and
/// Status. Each step has its own timeout too, but they add up to 25 s; one deadline of 10 s
/// (honest handshakes take a few round trips, well under a second) frees a pending slot held by
/// a slow-trickling peer as early as ECIES alone would (review finding M2).
pub const INBOUND_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a dial has for TCP connect plus the whole handshake (go-ethereum's 15 s dial timeout).
/// The step timeouts add up to 30 s; a tarpit candidate that answers each step just in time
/// would hold one of our outbound slots that long (review finding M7).
pub const OUTBOUND_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// What a handshake task tells the manager.
#[derive(Debug)]
pub(crate) enum HandshakeEvent {
    /// An inbound connection passed ECIES: may it go on?
    Authenticated {
        peer: PeerId,
        addr: SocketAddr,
        reply: oneshot::Sender<Result<(), DisconnectReason>>,
    },
    /// A session is established.
    Established { direction: Direction, addr: SocketAddr, established: Box<Established> },
    /// A handshake failed.
    Failed { direction: Direction, peer: Option<PeerId>, error: SessionError },
}

/// Runs the inbound handshake of `tcp` within [`INBOUND_HANDSHAKE_TIMEOUT`], holding `slot` (a
/// pending-inbound slot) until it ends, and reports the outcome.
#[allow(clippy::result_large_err)] // the panic fallback has `inbound`'s error type
pub(crate) async fn accept(
    tcp: TcpStream,
    addr: SocketAddr,
    slot: PendingSlot,
    params: Arc<SessionParams>,
    status: LocalStatus,
    events: mpsc::Sender<HandshakeEvent>,
) {
    let handshake =
        or_on_panic(inbound(tcp, addr, &params, &status, &events), "inbound handshake", || {
            Err((None, SessionError::Panicked))
        });
    let outcome = match tokio::time::timeout(INBOUND_HANDSHAKE_TIMEOUT, handshake).await {
        Ok(outcome) => outcome,
        Err(_) => {
            debug!(%addr, "inbound handshake deadline passed; closing");
            Err((None, SessionError::HandshakeTimeout))
        }
    };
    // The slot is free from here on, whatever the manager does with the event.
    drop(slot);
    let event = match outcome {
        Ok(established) => HandshakeEvent::Established {
            direction: Direction::Inbound,
            addr,
            established: Box::new(established),
        },
        Err((peer, error)) => HandshakeEvent::Failed { direction: Direction::Inbound, peer, error },
    };
    let _ = events.send(event).await;
}

/// Dials `record` and runs the outbound handshake within [`OUTBOUND_HANDSHAKE_TIMEOUT`], and
/// reports the outcome.
pub(crate) async fn dial(
    record: NodeRecord,
    params: Arc<SessionParams>,
    status: LocalStatus,
    events: mpsc::Sender<HandshakeEvent>,
) {
    let handshake = establish_outbound(record.addr, record.id, &params, &status);
    let handshake = or_on_panic(handshake, "dial", || Err(SessionError::Panicked));
    let outcome = tokio::time::timeout(OUTBOUND_HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or(Err(SessionError::HandshakeTimeout));
    let event = match outcome {
        Ok(established) => HandshakeEvent::Established {
            direction: Direction::Outbound,
            addr: record.addr,
            established: Box::new(established),
        },
        Err(error) => {
            HandshakeEvent::Failed { direction: Direction::Outbound, peer: Some(record.id), error }
        }
    };
    let _ = events.send(event).await;
}

/// The inbound handshake: ECIES, then the manager's admission check for the authenticated id
/// (a refused peer gets a Disconnect before Hello), then Hello and Status.
async fn inbound(
    tcp: TcpStream,
    addr: SocketAddr,
    params: &SessionParams,
    status: &LocalStatus,
    events: &mpsc::Sender<HandshakeEvent>,
) -> Result<Established, (Option<PeerId>, SessionError)> {
    tcp.set_nodelay(true).map_err(|e| (None, e.into()))?;
    let mut ecies =
        EciesStream::incoming(tcp, params.secret_key).await.map_err(|e| (None, e.into()))?;
    let peer = ecies.remote_id();
    let (reply, verdict) = oneshot::channel();
    let refused = |reason| (Some(peer), SessionError::Refused(reason));
    if events.send(HandshakeEvent::Authenticated { peer, addr, reply }).await.is_err() {
        return Err(refused(DisconnectReason::ClientQuitting));
    }
    match verdict.await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => {
            // Before Hello the Disconnect goes uncompressed.
            if let Ok(message) = encode_message(0x01, &alloy_rlp::encode(reason), false) {
                let _ = tokio::time::timeout(super::active::SESSION_CLOSE_TIMEOUT, async {
                    ecies.send(message).await?;
                    ecies.close().await
                })
                .await;
            }
            return Err(refused(reason));
        }
        Err(_) => return Err(refused(DisconnectReason::ClientQuitting)),
    }
    establish_authenticated(ecies, params, status).await.map_err(|e| (Some(peer), e))
}
