//! [`UnauthedLeafStream`] (before `Status`) and [`LeafStream`] (typed `leaf/1` messages).

use super::SessionError;
use crate::{
    MessageFault,
    chain::ChainSpec,
    ecies::EciesError,
    leaf::{LeafError, LeafMessage, Status, protocol::PROTOCOL_NAME},
    p2pstream::{
        CapabilityMessage, DisconnectReason, P2PError, P2PStream, stream::DISCONNECT_TIMEOUT,
    },
};
use alloy_eip2124::ForkFilter;
use bytes::{Bytes, BytesMut};
use futures::{Sink, SinkExt, Stream, StreamExt, ready};
use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

/// A p2p stream on which `leaf/1` is shared but `Status` has not been exchanged yet.
#[derive(Debug)]
pub struct UnauthedLeafStream<S> {
    inner: P2PStream<S>,
    cap: usize,
}

impl<S> UnauthedLeafStream<S>
where
    S: Stream<Item = Result<BytesMut, EciesError>> + Sink<Bytes, Error = EciesError> + Unpin,
{
    /// Wraps an established p2p stream; fails (after sending Disconnect "useless peer") if the
    /// remote does not share `leaf/1`.
    pub async fn new(mut inner: P2PStream<S>) -> Result<Self, SessionError> {
        match inner.capability(PROTOCOL_NAME) {
            Some((cap, _)) => Ok(Self { inner, cap }),
            None => {
                let _ = inner.disconnect(DisconnectReason::UselessPeer).await;
                Err(SessionError::NoLeafCapability)
            }
        }
    }

    /// Sends our `Status`, then waits up to `STATUS_TIMEOUT` for the peer's and checks it
    /// against our chain and fork filter (`docs/leaf-protocol.md`, "Status handshake"). On any
    /// failure the Disconnect with the reason the error carries is sent before returning.
    pub async fn handshake(
        self,
        ours: Status,
        chain: &ChainSpec,
        filter: &ForkFilter,
    ) -> Result<(LeafStream<S>, Status), SessionError> {
        self.handshake_with_timeout(ours, chain, filter, crate::leaf::protocol::STATUS_TIMEOUT)
            .await
    }

    /// [`Self::handshake`] with an explicit timeout.
    pub async fn handshake_with_timeout(
        self,
        ours: Status,
        chain: &ChainSpec,
        filter: &ForkFilter,
        timeout: Duration,
    ) -> Result<(LeafStream<S>, Status), SessionError> {
        let mut stream = LeafStream { inner: self.inner, cap: self.cap, handshaken: false };
        let result = match tokio::time::timeout(timeout, stream.exchange_status(ours)).await {
            Ok(Ok(theirs)) => theirs.validate(chain, filter).map(|()| theirs).map_err(Into::into),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SessionError::StatusTimeout),
        };
        match result {
            Ok(theirs) => {
                stream.handshaken = true;
                Ok((stream, theirs))
            }
            Err(e) => {
                if let Some(reason) = e.disconnect_reason().filter(|_| should_tell_remote(&e)) {
                    let _ = stream.disconnect(reason).await;
                }
                Err(e)
            }
        }
    }
}

/// Whether we still should tell the remote why we end (not if it ended, nor when the transport
/// is gone, nor when the p2p layer already sent it). For a breach this stream detected, the
/// Disconnect is already queued and [`LeafStream::disconnect`] only flushes and closes.
fn should_tell_remote(e: &SessionError) -> bool {
    !matches!(e, SessionError::P2P(_) | SessionError::Io(_) | SessionError::Ecies(_))
}

/// An established `leaf/1` session: a `Stream` of received [`LeafMessage`]s and a `Sink` of
/// messages to send. Ping/Pong stay inside the p2p stream below.
///
/// A breach (malformed or oversized message, a second `Status`) ends the stream: the Disconnect
/// "breach of protocol" is sent and the error is the last item. An unknown message id is yielded
/// as an error but the stream goes on (the peer earns a mid penalty).
#[derive(Debug)]
pub struct LeafStream<S> {
    inner: P2PStream<S>,
    cap: usize,
    handshaken: bool,
}

impl<S> LeafStream<S>
where
    S: Stream<Item = Result<BytesMut, EciesError>> + Sink<Bytes, Error = EciesError> + Unpin,
{
    async fn exchange_status(&mut self, ours: Status) -> Result<Status, SessionError> {
        self.send(LeafMessage::Status(ours)).await?;
        match self.next().await {
            Some(Ok(LeafMessage::Status(theirs))) => Ok(theirs),
            Some(Ok(other)) => Err(SessionError::ExpectedStatus(other.id())),
            Some(Err(e)) => Err(e),
            None => Err(P2PError::ConnectionClosed.into()),
        }
    }

    /// Sends Disconnect with `reason` (unless a Disconnect is already queued, e.g. after a breach
    /// this stream detected) and closes the connection, within [`DISCONNECT_TIMEOUT`] (a peer
    /// that does not read cannot hold us).
    pub async fn disconnect(&mut self, reason: DisconnectReason) -> Result<(), SessionError> {
        match self.inner.disconnect(reason).await {
            Err(P2PError::AlreadyDisconnected) => {
                match tokio::time::timeout(DISCONNECT_TIMEOUT, self.inner.close()).await {
                    Ok(result) => Ok(result?),
                    Err(_) => {
                        Err(P2PError::Ecies(EciesError::Io(std::io::ErrorKind::TimedOut.into()))
                            .into())
                    }
                }
            }
            other => Ok(other?),
        }
    }

    /// Sends a message already encoded: its relative id and RLP payload (e.g. a response whose
    /// fields the serving side encoded, [`crate::leaf::EncodedResponse::payload`]). The payload
    /// is framed as it is.
    pub async fn send_encoded(&mut self, id: u8, payload: Bytes) -> Result<(), SessionError> {
        let cap = self.cap;
        Ok(self.inner.send(CapabilityMessage { cap, id, payload }).await?)
    }

    /// The p2p stream below.
    pub fn p2p(&self) -> &P2PStream<S> {
        &self.inner
    }

    fn fail(&mut self, cx: &mut Context<'_>, error: LeafError) -> SessionError {
        if let Some(reason) = error.disconnect_reason()
            && self.inner.start_disconnect(reason).is_ok()
        {
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
        error.into()
    }
}

impl<S> Stream for LeafStream<S>
where
    S: Stream<Item = Result<BytesMut, EciesError>> + Sink<Bytes, Error = EciesError> + Unpin,
{
    type Item = Result<LeafMessage, SessionError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let msg: CapabilityMessage = match ready!(this.inner.poll_next_unpin(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Some(Ok(msg)) => msg,
            };
            if msg.cap != this.cap {
                // We only announce leaf/1, so nothing else can be shared; skip defensively.
                continue;
            }
            return Poll::Ready(Some(match LeafMessage::decode(msg.id, &msg.payload) {
                Ok(LeafMessage::Status(_)) if this.handshaken => {
                    if this.inner.start_disconnect(DisconnectReason::ProtocolBreach).is_ok() {
                        let _ = Pin::new(&mut this.inner).poll_flush(cx);
                    }
                    Err(SessionError::DuplicateStatus)
                }
                Ok(message) => Ok(message),
                Err(e) => Err(this.fail(cx, e)),
            }));
        }
    }
}

impl<S> Sink<LeafMessage> for LeafStream<S>
where
    S: Stream<Item = Result<BytesMut, EciesError>> + Sink<Bytes, Error = EciesError> + Unpin,
{
    type Error = SessionError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SessionError>> {
        self.get_mut().inner.poll_ready_unpin(cx).map_err(Into::into)
    }

    fn start_send(self: Pin<&mut Self>, item: LeafMessage) -> Result<(), SessionError> {
        let this = self.get_mut();
        let msg =
            CapabilityMessage { cap: this.cap, id: item.id(), payload: item.encoded().into() };
        Ok(this.inner.start_send_unpin(msg)?)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SessionError>> {
        self.get_mut().inner.poll_flush_unpin(cx).map_err(Into::into)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SessionError>> {
        self.get_mut().inner.poll_close_unpin(cx).map_err(Into::into)
    }
}
