//! [`UnauthedPeerStream`] (before the Status handshakes) and [`PeerStream`] (typed `leaf/1`,
//! `eth/69` and `snap/1` messages).

use super::{
    SessionError,
    early::EarlyMessages,
    protocols::{Caps, Subprotocol},
};
use crate::{
    MessageFault,
    chain::ChainSpec,
    ecies::EciesError,
    eth::{self, EthMessage},
    leaf::{self, LeafMessage},
    p2pstream::{
        CapabilityMessage, DisconnectReason, P2PError, P2PStream, stream::DISCONNECT_TIMEOUT,
    },
    snap::SnapMessage,
};
use alloy_eip2124::ForkFilter;
use bytes::{Bytes, BytesMut};
use futures::{Sink, SinkExt, Stream, StreamExt, ready};
use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

/// A message received on an established session, by the capability it came on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMessage {
    /// A `leaf/1` message.
    Leaf(LeafMessage),
    /// An `eth/69` message.
    Eth(EthMessage),
    /// A `snap/1` message.
    Snap(SnapMessage),
}

impl From<LeafMessage> for PeerMessage {
    fn from(message: LeafMessage) -> Self {
        Self::Leaf(message)
    }
}

/// Our side of the Status handshakes: the `leaf/1` Status with the fork filter for our leafdb
/// head, and, when `eth/69` is enabled, the `eth/69` Status with the filter for the execution
/// client's head.
#[derive(Debug, Clone)]
pub struct LocalStatus {
    /// Our `leaf/1` Status.
    pub leaf: leaf::Status,
    /// Checks the fork id of the peer's `leaf/1` Status.
    pub leaf_filter: ForkFilter,
    /// Our `eth/69` Status and the check of the peer's fork id; `None` when eth is disabled.
    pub eth: Option<(eth::Status, eth::EthForkCheck)>,
}

impl LocalStatus {
    /// Only `leaf/1` (eth disabled).
    pub fn leaf(status: leaf::Status, filter: ForkFilter) -> Self {
        Self { leaf: status, leaf_filter: filter, eth: None }
    }
}

/// What the peer said in its handshakes: one entry per subprotocol the session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatus {
    /// Its `leaf/1` Status, if the session speaks `leaf/1`.
    pub leaf: Option<leaf::Status>,
    /// Its `eth/69` Status, if the session speaks `eth/69`.
    pub eth: Option<eth::Status>,
    /// Whether the session speaks `snap/1` (always beside `eth/69`).
    pub snap: bool,
}

/// A p2p stream whose shared capabilities are acceptable (`leaf/1`, or `eth/69` with `snap/1`)
/// but whose Status handshakes have not run yet.
#[derive(Debug)]
pub struct UnauthedPeerStream<S> {
    inner: P2PStream<S>,
    caps: Caps,
}

impl<S> UnauthedPeerStream<S>
where
    S: Stream<Item = Result<BytesMut, EciesError>> + Sink<Bytes, Error = EciesError> + Unpin,
{
    /// Wraps an established p2p stream; fails, after sending the Disconnect its error names,
    /// when the remote shares neither `leaf/1` nor `eth/69` with `snap/1`.
    pub async fn new(mut inner: P2PStream<S>) -> Result<Self, SessionError> {
        match Caps::of(&inner) {
            Ok(caps) => Ok(Self { inner, caps }),
            Err(e) => {
                if let Some(reason) = e.disconnect_reason() {
                    let _ = inner.disconnect(reason).await;
                }
                Err(e)
            }
        }
    }

    /// Whether the session will speak `protocol`.
    pub fn speaks(&self, protocol: Subprotocol) -> bool {
        self.caps.index(protocol).is_some()
    }

    /// Runs the Status handshake of every shared subprotocol (see [`Self::handshake_with_timeout`])
    /// within `STATUS_TIMEOUT` (5 s, also geth's eth handshake timeout).
    pub async fn handshake(
        self,
        ours: &LocalStatus,
        chain: &ChainSpec,
    ) -> Result<(PeerStream<S>, PeerStatus), SessionError> {
        self.handshake_with_timeout(
            ours,
            chain,
            leaf::protocol::STATUS_TIMEOUT.max(eth::protocol::HANDSHAKE_TIMEOUT),
        )
        .await
    }

    /// Sends our Status of each shared subprotocol (`leaf/1` as `docs/leaf-protocol.md` says,
    /// `eth/69` as geth expects), then reads the peer's in whatever order they come (geth sends
    /// its eth Status right after Hello) and checks each against our chain and fork filter, all
    /// within `timeout`. The order is per subprotocol: its first message must be its Status (a
    /// breach otherwise); a message of one whose Status came, or of `snap/1` (which has none),
    /// may precede the other Statuses and is kept, within `MAX_EARLY_MESSAGES` and
    /// `MAX_EARLY_BYTES`, for the established stream to yield first (see `EarlyMessages`). On
    /// failure the Disconnect with the reason the error carries is sent before returning.
    pub async fn handshake_with_timeout(
        self,
        ours: &LocalStatus,
        chain: &ChainSpec,
        timeout: Duration,
    ) -> Result<(PeerStream<S>, PeerStatus), SessionError> {
        let mut caps = self.caps;
        if ours.eth.is_none() {
            // We did not offer eth (so it cannot be shared); nor snap, which needs it.
            caps.eth = None;
            caps.snap = None;
        }
        let mut stream = PeerStream {
            inner: self.inner,
            caps,
            handshaken: false,
            early: EarlyMessages::default(),
        };
        let result = if caps.leaf.is_none() && caps.eth.is_none() {
            // Only possible when our Hello offered eth/69 without an eth Status to send.
            Err(SessionError::NoSharedCapability)
        } else {
            match tokio::time::timeout(timeout, stream.exchange_status(ours, chain)).await {
                Ok(result) => result,
                Err(_) => Err(SessionError::StatusTimeout),
            }
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
/// Disconnect is already queued and [`PeerStream::disconnect`] only flushes and closes.
fn should_tell_remote(e: &SessionError) -> bool {
    !matches!(e, SessionError::P2P(_) | SessionError::Io(_) | SessionError::Ecies(_))
}

/// An established session: a `Stream` of received [`PeerMessage`]s (first those that came
/// before the handshake ended), a `Sink` of `leaf/1` messages, and [`PeerStream::send_encoded`]
/// for any message already encoded. Ping/Pong stay inside the p2p stream below.
///
/// A breach (malformed or oversized message, a second Status of any subprotocol) ends the
/// stream: the Disconnect "breach of protocol" is sent and the error is the last item. An
/// unknown message id is yielded as an error but the stream goes on (the peer earns a mid
/// penalty).
#[derive(Debug)]
pub struct PeerStream<S> {
    inner: P2PStream<S>,
    caps: Caps,
    handshaken: bool,
    /// Messages that came before the handshake ended, yielded first.
    early: EarlyMessages,
}

impl<S> PeerStream<S>
where
    S: Stream<Item = Result<BytesMut, EciesError>> + Sink<Bytes, Error = EciesError> + Unpin,
{
    async fn exchange_status(
        &mut self,
        ours: &LocalStatus,
        chain: &ChainSpec,
    ) -> Result<PeerStatus, SessionError> {
        if self.caps.leaf.is_some() {
            self.send(LeafMessage::Status(ours.leaf)).await?;
        }
        let eth_ours = ours.eth.as_ref().filter(|_| self.caps.eth.is_some());
        if let Some((status, _)) = eth_ours {
            let payload = alloy_rlp::encode(status).into();
            self.send_encoded(Subprotocol::Eth, eth::protocol::ids::STATUS, payload).await?;
        }
        let mut theirs = PeerStatus { leaf: None, eth: None, snap: self.caps.snap.is_some() };
        while (self.caps.leaf.is_some() && theirs.leaf.is_none())
            || (eth_ours.is_some() && theirs.eth.is_none())
        {
            // From the wire: the messages kept so far are the established stream's.
            match futures::future::poll_fn(|cx| self.poll_wire(cx)).await {
                Some(Ok((PeerMessage::Leaf(LeafMessage::Status(status)), _))) => {
                    if theirs.leaf.is_some() {
                        return Err(SessionError::DuplicateStatus);
                    }
                    status.validate(chain, &ours.leaf_filter)?;
                    theirs.leaf = Some(status);
                }
                Some(Ok((PeerMessage::Eth(EthMessage::Status(status)), _))) => {
                    if theirs.eth.is_some() {
                        return Err(SessionError::DuplicateStatus);
                    }
                    if let Some((_, forks)) = eth_ours {
                        status.validate(chain, forks)?;
                    }
                    theirs.eth = Some(status);
                }
                // Each subprotocol's first message is its Status; after it (and on snap/1, which
                // has none) messages may come before the other Statuses.
                Some(Ok((PeerMessage::Leaf(other), _))) if theirs.leaf.is_none() => {
                    return Err(SessionError::ExpectedStatus(other.id()));
                }
                Some(Ok((PeerMessage::Eth(other), _))) if theirs.eth.is_none() => {
                    return Err(SessionError::ExpectedStatus(other.id()));
                }
                Some(Ok((message, size))) => self.early.keep(message, size)?,
                Some(Err(e)) => return Err(e),
                None => return Err(P2PError::ConnectionClosed.into()),
            }
        }
        Ok(theirs)
    }

    /// Whether the session speaks `protocol`.
    pub fn speaks(&self, protocol: Subprotocol) -> bool {
        self.caps.index(protocol).is_some()
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

    /// Sends a message of `protocol` already encoded: its relative id and RLP payload (e.g. a
    /// response whose fields the serving side encoded, [`crate::leaf::EncodedResponse::payload`]).
    /// The payload is framed as it is. Fails with [`SessionError::NotShared`] for a protocol the
    /// session does not speak.
    pub async fn send_encoded(
        &mut self,
        protocol: Subprotocol,
        id: u8,
        payload: Bytes,
    ) -> Result<(), SessionError> {
        let cap = self.caps.index(protocol).ok_or(SessionError::NotShared(protocol))?;
        Ok(self.inner.send(CapabilityMessage { cap, id, payload }).await?)
    }

    /// The p2p stream below.
    pub fn p2p(&self) -> &P2PStream<S> {
        &self.inner
    }

    /// Queues the Disconnect for a breach `error` names and returns it as the stream's error.
    fn fail(
        &mut self,
        cx: &mut Context<'_>,
        error: impl MessageFault + Into<SessionError>,
    ) -> SessionError {
        if let Some(reason) = error.disconnect_reason()
            && self.inner.start_disconnect(reason).is_ok()
        {
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
        error.into()
    }

    /// The next message from the p2p stream, with its payload size.
    fn poll_wire(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<(PeerMessage, usize), SessionError>>> {
        loop {
            let msg: CapabilityMessage = match ready!(self.inner.poll_next_unpin(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Some(Ok(msg)) => msg,
            };
            // A capability we share but do not use (snap beside leaf without eth) is skipped.
            if let Some(item) = self.decode(cx, &msg) {
                return Poll::Ready(Some(item.map(|message| (message, msg.payload.len()))));
            }
        }
    }

    /// Decodes one capability message; a Status after the handshake is a breach.
    fn decode(
        &mut self,
        cx: &mut Context<'_>,
        msg: &CapabilityMessage,
    ) -> Option<Result<PeerMessage, SessionError>> {
        let message = match self.caps.protocol_of(msg.cap)? {
            Subprotocol::Leaf => match LeafMessage::decode(msg.id, &msg.payload) {
                Ok(m) => PeerMessage::Leaf(m),
                Err(e) => return Some(Err(self.fail(cx, e))),
            },
            Subprotocol::Eth => match EthMessage::decode(msg.id, &msg.payload) {
                Ok(m) => PeerMessage::Eth(m),
                Err(e) => return Some(Err(self.fail(cx, e))),
            },
            Subprotocol::Snap => match SnapMessage::decode(msg.id, &msg.payload) {
                Ok(m) => PeerMessage::Snap(m),
                Err(e) => return Some(Err(self.fail(cx, e))),
            },
        };
        let status = matches!(
            message,
            PeerMessage::Leaf(LeafMessage::Status(_)) | PeerMessage::Eth(EthMessage::Status(_))
        );
        if status && self.handshaken {
            if self.inner.start_disconnect(DisconnectReason::ProtocolBreach).is_ok() {
                let _ = Pin::new(&mut self.inner).poll_flush(cx);
            }
            return Some(Err(SessionError::DuplicateStatus));
        }
        Some(Ok(message))
    }
}

impl<S> Stream for PeerStream<S>
where
    S: Stream<Item = Result<BytesMut, EciesError>> + Sink<Bytes, Error = EciesError> + Unpin,
{
    type Item = Result<PeerMessage, SessionError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(message) = this.early.pop() {
            return Poll::Ready(Some(Ok(message)));
        }
        this.poll_wire(cx).map(|item| item.map(|result| result.map(|(message, _)| message)))
    }
}

impl<S> Sink<LeafMessage> for PeerStream<S>
where
    S: Stream<Item = Result<BytesMut, EciesError>> + Sink<Bytes, Error = EciesError> + Unpin,
{
    type Error = SessionError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SessionError>> {
        self.get_mut().inner.poll_ready_unpin(cx).map_err(Into::into)
    }

    fn start_send(self: Pin<&mut Self>, item: LeafMessage) -> Result<(), SessionError> {
        let this = self.get_mut();
        let cap = this.caps.leaf.ok_or(SessionError::NotShared(Subprotocol::Leaf))?;
        let msg = CapabilityMessage { cap, id: item.id(), payload: item.encoded().into() };
        Ok(this.inner.start_send_unpin(msg)?)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SessionError>> {
        self.get_mut().inner.poll_flush_unpin(cx).map_err(Into::into)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SessionError>> {
        self.get_mut().inner.poll_close_unpin(cx).map_err(Into::into)
    }
}
