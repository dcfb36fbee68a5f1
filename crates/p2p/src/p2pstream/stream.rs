//! [`UnauthedP2PStream`] (before Hello) and [`P2PStream`] (after): the devp2p base protocol over
//! a stream of RLPx frames.
//!
//! Every frame body is `rlp(message-id) || payload`. After Hello, payloads are snappy-compressed
//! (p2p v5). Ids below `0x10` are the base protocol, which [`P2PStream`] handles itself (it
//! answers Ping, tracks Pong, ends on Disconnect); higher ids belong to the shared capabilities
//! and are yielded as [`CapabilityMessage`]s with capability-relative ids.

use crate::{
    ecies::{EciesError, PeerId},
    p2pstream::{
        capability::{SharedCapabilities, SharedCapability},
        disconnect::DisconnectReason,
        error::P2PError,
        hello::{HelloMessage, HelloMessageWithProtocols, MAX_HELLO_SIZE, P2P_PROTOCOL_VERSION},
        pinger::{PING_INTERVAL, PING_TIMEOUT, Pinger, PingerEvent},
    },
};
use alloy_rlp::{Decodable, Encodable};
use bytes::{Bytes, BytesMut};
use futures::{Sink, SinkExt, Stream, StreamExt};
use std::{
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::time::Instant;
use tracing::{debug, trace};

/// Largest decompressed message. The 24-bit frame size caps what a frame can carry at 16 MiB − 1;
/// go-ethereum applies the same bound to the decompressed size, so an honest peer never exceeds
/// it, and checking the snappy header against it first defuses decompression bombs.
pub const MAX_MESSAGE_SIZE: usize = 0xFF_FFFF;

/// Largest decompressed Disconnect payload we read. The payload is `[reason]`, one reason byte in
/// a one-item list (2 bytes); 16 leave room for peers that append items (ignored anyway). A
/// payload announcing more is not decompressed but read raw, as any payload that does not
/// decompress: a raw `[reason]` (ethereumjs) reads as a snappy header announcing hundreds of
/// bytes, so a large announcement is no proof of a breach, and the peer is leaving anyway.
pub const MAX_DISCONNECT_SIZE: usize = 16;

/// Time allowed for the Hello exchange after the ECIES handshake; go-ethereum's 5 s doubled, as
/// for [`crate::ecies::HANDSHAKE_TIMEOUT`].
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long we try to get a Disconnect out before closing anyway. ethereumjs and go-ethereum
/// give the peer about 2 s to read it before closing the socket; we wait as long for the write.
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Most base-protocol messages (Ping/Pong) handled in one `poll_next` before yielding to the
/// executor, so that a Ping flood cannot monopolise a task.
pub const MAX_CONTROL_MESSAGES_PER_POLL: usize = 32;

/// Most Pings a peer may send within one [`PING_RATE_WINDOW`]. Honest peers ping about once per
/// keepalive interval (15 s for geth, 60 s for reth); ten times that is a flood, not a keepalive,
/// and it ends the connection as a breach (each Ping costs us a Pong).
pub const MAX_PINGS_PER_WINDOW: u32 = 10;

/// The window over which [`MAX_PINGS_PER_WINDOW`] and [`MAX_IGNORED_PER_WINDOW`] are counted:
/// our own keepalive interval.
pub const PING_RATE_WINDOW: Duration = PING_INTERVAL;

/// Most Pongs and reserved-id messages a peer may send within one [`PING_RATE_WINDOW`]: read,
/// MAC-checked and dropped outside every capability's budget, they buy the peer nothing. An
/// honest peer sends a Pong per Ping of ours and no reserved id (a later devp2p may: so they
/// are ignored, not a breach); more is a flood and a breach.
pub const MAX_IGNORED_PER_WINDOW: u32 = 64;

/// Most bytes of reserved-id frames a peer may send within one [`PING_RATE_WINDOW`] (1 MiB):
/// such a frame may be as large as any, and 64 of them hundreds of megabytes.
pub const MAX_IGNORED_BYTES_PER_WINDOW: usize = 1 << 20;

/// Base protocol message ids.
mod id {
    pub(super) const HELLO: u64 = 0x00;
    pub(super) const DISCONNECT: u64 = 0x01;
    pub(super) const PING: u64 = 0x02;
    pub(super) const PONG: u64 = 0x03;
    /// Ids below this are reserved for the base protocol; the capabilities start here.
    pub(super) const FIRST_CAPABILITY: u64 = 0x10;
}

/// `rlp([])`, the payload of Ping and Pong.
const EMPTY_LIST: [u8; 1] = [0xc0];

/// A capability message: which shared capability, its capability-relative id, and its payload
/// (decompressed; RLP of the capability's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityMessage {
    /// Index into [`P2PStream::shared_capabilities`].
    pub cap: usize,
    /// Message id relative to the capability's offset.
    pub id: u8,
    /// The message's RLP.
    pub payload: Bytes,
}

/// Snappy-decompresses a payload after checking its announced length against
/// [`MAX_MESSAGE_SIZE`].
pub fn decompress(payload: &[u8]) -> Result<Vec<u8>, P2PError> {
    decompress_with_limit(payload, MAX_MESSAGE_SIZE)
}

/// Snappy-decompresses a payload after checking its announced length against `limit`, before
/// anything is allocated.
pub fn decompress_with_limit(payload: &[u8], limit: usize) -> Result<Vec<u8>, P2PError> {
    let size = snap::raw::decompress_len(payload)?;
    if size > limit {
        return Err(P2PError::MessageTooLarge { size, limit });
    }
    let mut out = vec![0u8; size];
    let written = snap::raw::Decoder::new().decompress(payload, &mut out)?;
    out.truncate(written);
    Ok(out)
}

/// Builds a frame body `rlp(id) || payload`, snappy-compressing the payload when `compress`.
pub fn encode_message(id: u64, payload: &[u8], compress: bool) -> Result<Bytes, P2PError> {
    if payload.len() > MAX_MESSAGE_SIZE {
        return Err(P2PError::MessageTooLarge { size: payload.len(), limit: MAX_MESSAGE_SIZE });
    }
    let mut out = Vec::with_capacity(id.length() + snap::raw::max_compress_len(payload.len()));
    id.encode(&mut out);
    if compress {
        out.extend_from_slice(&snap::raw::Encoder::new().compress_vec(payload)?);
    } else {
        out.extend_from_slice(payload);
    }
    Ok(out.into())
}

/// Decodes a Disconnect payload, snappy-compressed (p2p v5) or not: ethereumjs sends it raw,
/// and before Hello either may come. A payload that decompresses to at most
/// [`MAX_DISCONNECT_SIZE`] bytes is read decompressed; any other is read raw (a raw reason never
/// parses as a complete snappy block), so a snappy header announcing megabytes costs no
/// allocation.
///
/// Never fails: like go-ethereum, we take any Disconnect as the end of the connection and do not
/// punish the farewell itself. An empty payload, an undefined reason code (a newer devp2p) or
/// malformed RLP is read as [`DisconnectReason::DisconnectRequested`] ("no particular reason").
pub fn decode_disconnect(payload: &[u8]) -> Result<DisconnectReason, P2PError> {
    let reason = match decompress_with_limit(payload, MAX_DISCONNECT_SIZE) {
        Ok(plain) => DisconnectReason::decode_payload(&plain).ok(),
        Err(_) => DisconnectReason::decode_payload(payload).ok(),
    };
    Ok(reason.unwrap_or_else(|| {
        debug!(
            payload = %hex::encode(&payload[..payload.len().min(16)]),
            "Disconnect without a known reason; read as 'disconnect requested'"
        );
        DisconnectReason::DisconnectRequested
    }))
}

/// Checks a Ping or Pong payload: it must be the snappy-compressed empty list, `rlp([])`. Its
/// announced size is checked before decompressing, so a hostile Ping costs no allocation.
fn check_keepalive_payload(payload: &[u8]) -> Result<(), P2PError> {
    let plain =
        decompress_with_limit(payload, EMPTY_LIST.len()).map_err(|_| P2PError::InvalidKeepalive)?;
    if plain == EMPTY_LIST { Ok(()) } else { Err(P2PError::InvalidKeepalive) }
}

/// Splits a frame body into its message id and payload.
pub fn split_message(frame: &[u8]) -> Result<(u64, &[u8]), P2PError> {
    if frame.is_empty() {
        return Err(P2PError::EmptyMessage);
    }
    let mut buf = frame;
    let id = u64::decode(&mut buf)?;
    Ok((id, buf))
}

/// A frame stream whose Hello exchange has not happened yet.
#[derive(Debug)]
pub struct UnauthedP2PStream<S> {
    inner: S,
    expected_id: Option<PeerId>,
}

impl<S> UnauthedP2PStream<S>
where
    S: Stream<Item = Result<BytesMut, EciesError>> + Sink<Bytes, Error = EciesError> + Unpin,
{
    /// Wraps a frame stream (normally an [`crate::ecies::EciesStream`]).
    pub fn new(inner: S) -> Self {
        Self { inner, expected_id: None }
    }

    /// Requires the remote's Hello to carry this node id (the one the ECIES handshake
    /// authenticated, [`crate::ecies::EciesStream::remote_id`]); a different one ends the
    /// handshake with `UnexpectedHandshakeIdentity`, as go-ethereum does.
    pub fn with_remote_id(mut self, id: PeerId) -> Self {
        self.expected_id = Some(id);
        self
    }

    /// Exchanges Hello within [`HELLO_TIMEOUT`], matches capabilities, and returns the
    /// established stream with the remote's Hello.
    pub async fn handshake(
        self,
        hello: HelloMessageWithProtocols,
    ) -> Result<(P2PStream<S>, HelloMessage), P2PError> {
        self.handshake_with_timeout(hello, HELLO_TIMEOUT).await
    }

    /// [`UnauthedP2PStream::handshake`] with an explicit timeout.
    pub async fn handshake_with_timeout(
        mut self,
        hello: HelloMessageWithProtocols,
        timeout: Duration,
    ) -> Result<(P2PStream<S>, HelloMessage), P2PError> {
        let theirs = match tokio::time::timeout(timeout, self.exchange_hello(&hello)).await {
            Ok(Ok(theirs)) => theirs,
            Ok(Err(e)) => {
                // Before a valid Hello, snappy is not on: the Disconnect goes uncompressed.
                if let Some(reason) = e.reason_to_send() {
                    self.send_disconnect(reason, false).await;
                }
                return Err(e);
            }
            Err(_) => return Err(P2PError::HandshakeTimeout),
        };
        let check = if theirs.protocol_version < P2P_PROTOCOL_VERSION {
            Err((P2PError::IncompatibleProtocolVersion(theirs.protocol_version), false))
        } else if theirs.id.is_zero() {
            Err((P2PError::NullNodeIdentity, true))
        } else if theirs.id == hello.id {
            Err((P2PError::ConnectedToSelf, true))
        } else if self.expected_id.is_some_and(|id| id != theirs.id) {
            Err((P2PError::UnexpectedIdentity(theirs.id), true))
        } else {
            let shared = SharedCapabilities::new(&hello.protocols, &theirs.capabilities);
            if shared.is_empty() { Err((P2PError::NoSharedCapabilities, true)) } else { Ok(shared) }
        };
        match check {
            Ok(shared) => Ok((P2PStream::new(self.inner, shared), theirs)),
            Err((e, compressed)) => {
                if let Some(reason) = e.reason_to_send() {
                    self.send_disconnect(reason, compressed).await;
                }
                Err(e)
            }
        }
    }

    async fn exchange_hello(
        &mut self,
        hello: &HelloMessageWithProtocols,
    ) -> Result<HelloMessage, P2PError> {
        let ours = encode_message(id::HELLO, &alloy_rlp::encode(hello.message()), false)?;
        self.inner.send(ours).await?;
        let frame = self.inner.next().await.ok_or(P2PError::ConnectionClosed)??;
        let (msg_id, payload) = split_message(&frame)?;
        match msg_id {
            id::HELLO => {
                if frame.len() > MAX_HELLO_SIZE {
                    return Err(P2PError::HelloTooLarge(frame.len()));
                }
                Ok(HelloMessage::decode(&mut &payload[..])?)
            }
            id::DISCONNECT => {
                let reason = decode_disconnect(payload)?;
                Err(P2PError::Disconnected(reason))
            }
            other => Err(P2PError::ExpectedHello(other)),
        }
    }

    /// Sends Disconnect and closes, best effort, within [`DISCONNECT_TIMEOUT`].
    async fn send_disconnect(&mut self, reason: DisconnectReason, compressed: bool) {
        let Ok(msg) = encode_message(id::DISCONNECT, &alloy_rlp::encode(reason), compressed) else {
            return;
        };
        let inner = &mut self.inner;
        let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, async move {
            inner.send(msg).await?;
            inner.close().await
        })
        .await;
    }
}

/// An established devp2p connection: a `Stream` of [`CapabilityMessage`]s received and a `Sink`
/// of [`CapabilityMessage`]s to send. Ping/Pong and Disconnect are handled inside.
#[derive(Debug)]
pub struct P2PStream<S> {
    inner: S,
    shared: SharedCapabilities,
    pinger: Pinger,
    pending_pong: bool,
    pending_ping: bool,
    disconnecting: bool,
    terminated: bool,
    pongs_received: u64,
    /// Largest decompressed capability message accepted.
    max_message_size: usize,
    /// The base-protocol messages received in the current rate window.
    base: BaseWindow,
}

/// The base-protocol messages a peer sent within one [`PING_RATE_WINDOW`], from the first on:
/// Pings, and the messages read only to be dropped (Pongs, reserved ids) with their bytes.
#[derive(Debug)]
struct BaseWindow {
    start: Instant,
    pings: u32,
    ignored: u32,
    ignored_bytes: u32,
}

impl BaseWindow {
    fn new() -> Self {
        Self { start: Instant::now(), pings: 0, ignored: 0, ignored_bytes: 0 }
    }

    /// The window, started again if [`PING_RATE_WINDOW`] has passed since it began.
    fn current(&mut self) -> &mut Self {
        if self.start.elapsed() >= PING_RATE_WINDOW {
            *self = Self::new();
        }
        self
    }
}

impl<S> P2PStream<S>
where
    S: Stream<Item = Result<BytesMut, EciesError>> + Sink<Bytes, Error = EciesError> + Unpin,
{
    fn new(inner: S, shared: SharedCapabilities) -> Self {
        Self {
            inner,
            shared,
            pinger: Pinger::new(PING_INTERVAL, PING_TIMEOUT),
            pending_pong: false,
            pending_ping: false,
            disconnecting: false,
            terminated: false,
            pongs_received: 0,
            max_message_size: MAX_MESSAGE_SIZE,
            base: BaseWindow::new(),
        }
    }

    /// Lowers the largest decompressed capability message accepted (default
    /// [`MAX_MESSAGE_SIZE`]); the snappy header of a larger one is refused before decompressing.
    pub fn set_max_message_size(&mut self, max: usize) {
        self.max_message_size = max.min(MAX_MESSAGE_SIZE);
    }

    /// Counts a Ping against [`MAX_PINGS_PER_WINDOW`].
    fn on_ping(&mut self) -> Result<(), P2PError> {
        let window = self.base.current();
        window.pings += 1;
        if window.pings > MAX_PINGS_PER_WINDOW {
            return Err(P2PError::PingFlood);
        }
        Ok(())
    }

    /// Counts a Pong or a reserved-id message of `bytes` against [`MAX_IGNORED_PER_WINDOW`] and
    /// [`MAX_IGNORED_BYTES_PER_WINDOW`].
    fn on_ignored(&mut self, bytes: usize) -> Result<(), P2PError> {
        let window = self.base.current();
        window.ignored += 1;
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        window.ignored_bytes = window.ignored_bytes.saturating_add(bytes);
        if window.ignored > MAX_IGNORED_PER_WINDOW
            || window.ignored_bytes as usize > MAX_IGNORED_BYTES_PER_WINDOW
        {
            return Err(P2PError::IgnoredFlood);
        }
        Ok(())
    }

    /// Replaces the keepalive timing (tests, or a deployment on a slow link).
    pub fn with_ping(mut self, interval: Duration, timeout: Duration) -> Self {
        self.pinger = Pinger::new(interval, timeout);
        self
    }

    /// The shared capabilities, indexed as in [`CapabilityMessage::cap`].
    pub fn shared_capabilities(&self) -> &SharedCapabilities {
        &self.shared
    }

    /// The shared capability with this name.
    pub fn capability(&self, name: &str) -> Option<(usize, &SharedCapability)> {
        let index = self.shared.index_of(name)?;
        self.shared.get(index).map(|c| (index, c))
    }

    /// How many Pongs the remote has sent (answers to our keepalive and [`Self::send_ping`]).
    pub fn pongs_received(&self) -> u64 {
        self.pongs_received
    }

    /// The frame stream below.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The frame stream below, mutably (to adjust its frame size limit after Hello, for example).
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Queues a Ping now (the keepalive also sends them on its own).
    pub fn send_ping(&mut self) {
        self.pending_ping = true;
    }

    /// Queues a Disconnect with `reason`; nothing more can be sent afterwards. Flush or close the
    /// sink to put it on the wire.
    pub fn start_disconnect(&mut self, reason: DisconnectReason) -> Result<(), P2PError> {
        if self.disconnecting {
            return Err(P2PError::AlreadyDisconnected);
        }
        self.disconnecting = true;
        let msg = encode_message(id::DISCONNECT, &alloy_rlp::encode(reason), true)?;
        Pin::new(&mut self.inner).start_send(msg)?;
        Ok(())
    }

    /// Sends Disconnect with `reason` and closes the transport, within [`DISCONNECT_TIMEOUT`]
    /// (a peer that does not read cannot hold us).
    pub async fn disconnect(&mut self, reason: DisconnectReason) -> Result<(), P2PError> {
        self.start_disconnect(reason)?;
        self.terminated = true;
        match tokio::time::timeout(DISCONNECT_TIMEOUT, self.inner.close()).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(P2PError::Ecies(EciesError::Io(std::io::ErrorKind::TimedOut.into()))),
        }
    }

    /// Sends pending Ping/Pong as far as the transport accepts them, and flushes.
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Result<(), P2PError> {
        while (self.pending_pong || self.pending_ping) && !self.disconnecting {
            match Pin::new(&mut self.inner).poll_ready(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending => return Ok(()),
            }
            let msg_id = if self.pending_pong { id::PONG } else { id::PING };
            let msg = encode_message(msg_id, &EMPTY_LIST, true)?;
            Pin::new(&mut self.inner).start_send(msg)?;
            if self.pending_pong {
                self.pending_pong = false;
            } else {
                self.pending_ping = false;
            }
        }
        if let Poll::Ready(Err(e)) = Pin::new(&mut self.inner).poll_flush(cx) {
            return Err(e.into());
        }
        Ok(())
    }

    /// Ends the stream after `err`: sends the reason it earns (best effort) and terminates.
    fn fail(
        &mut self,
        cx: &mut Context<'_>,
        err: P2PError,
    ) -> Poll<Option<Result<CapabilityMessage, P2PError>>> {
        if let Some(reason) = err.reason_to_send()
            && !self.disconnecting
            && self.start_disconnect(reason).is_ok()
        {
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
        self.terminated = true;
        Poll::Ready(Some(Err(err)))
    }

    /// Handles one frame: `Some` for a capability message, `None` for a base-protocol message.
    fn handle_frame(&mut self, frame: &[u8]) -> Result<Option<CapabilityMessage>, P2PError> {
        let (msg_id, payload) = split_message(frame)?;
        match msg_id {
            id::HELLO => Err(P2PError::UnexpectedHello),
            id::DISCONNECT => {
                // Compressed per p2p v5; ethereumjs sends it uncompressed, so that is accepted too.
                let reason = decode_disconnect(payload)?;
                Err(P2PError::Disconnected(reason))
            }
            id::PING => {
                check_keepalive_payload(payload)?;
                self.on_ping()?;
                self.pending_pong = true;
                Ok(None)
            }
            id::PONG => {
                check_keepalive_payload(payload)?;
                self.on_ignored(0)?;
                self.pinger.on_pong();
                self.pongs_received += 1;
                Ok(None)
            }
            // Reserved base-protocol ids: ignored unread, as go-ethereum does, so that a later
            // devp2p version's messages do not cost an honest peer its connection; within a
            // budget, since they are outside every capability's.
            other if other < id::FIRST_CAPABILITY => {
                trace!(id = other, size = payload.len(), "ignoring reserved base-protocol message");
                self.on_ignored(frame.len())?;
                Ok(None)
            }
            other => {
                let (cap, shared) =
                    self.shared.find_by_id(other).ok_or(P2PError::UnknownMessageId(other))?;
                let id = (other - shared.offset) as u8;
                let payload = decompress_with_limit(payload, self.max_message_size)?.into();
                Ok(Some(CapabilityMessage { cap, id, payload }))
            }
        }
    }
}

impl<S> Stream for P2PStream<S>
where
    S: Stream<Item = Result<BytesMut, EciesError>> + Sink<Bytes, Error = EciesError> + Unpin,
{
    type Item = Result<CapabilityMessage, P2PError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.terminated {
            return Poll::Ready(None);
        }
        while let Poll::Ready(event) = this.pinger.poll_event(cx) {
            match event {
                PingerEvent::Ping => this.pending_ping = true,
                PingerEvent::Timeout => return this.fail(cx, P2PError::PingTimeout),
            }
        }
        if let Err(e) = this.poll_control(cx) {
            return this.fail(cx, e);
        }
        for _ in 0..MAX_CONTROL_MESSAGES_PER_POLL {
            let frame = match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                None => {
                    this.terminated = true;
                    return Poll::Ready(Some(Err(P2PError::ConnectionClosed)));
                }
                Some(Err(e)) => return this.fail(cx, e.into()),
                Some(Ok(frame)) => frame,
            };
            match this.handle_frame(&frame) {
                Ok(Some(msg)) => return Poll::Ready(Some(Ok(msg))),
                Ok(None) => {
                    if let Err(e) = this.poll_control(cx) {
                        return this.fail(cx, e);
                    }
                }
                Err(e) => return this.fail(cx, e),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S> Sink<CapabilityMessage> for P2PStream<S>
where
    S: Stream<Item = Result<BytesMut, EciesError>> + Sink<Bytes, Error = EciesError> + Unpin,
{
    type Error = P2PError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), P2PError>> {
        let this = self.get_mut();
        if this.disconnecting || this.terminated {
            return Poll::Ready(Err(P2PError::AlreadyDisconnected));
        }
        this.poll_control(cx)?;
        Pin::new(&mut this.inner).poll_ready(cx).map_err(Into::into)
    }

    fn start_send(self: Pin<&mut Self>, item: CapabilityMessage) -> Result<(), P2PError> {
        let this = self.get_mut();
        if this.disconnecting || this.terminated {
            return Err(P2PError::AlreadyDisconnected);
        }
        let cap = this.shared.get(item.cap).ok_or(P2PError::UnknownCapability(item.cap))?;
        if item.id >= cap.messages {
            return Err(P2PError::MessageIdOutOfRange {
                cap: cap.cap.to_string(),
                id: item.id,
                messages: cap.messages,
            });
        }
        let msg = encode_message(cap.offset + u64::from(item.id), &item.payload, true)?;
        Pin::new(&mut this.inner).start_send(msg)?;
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), P2PError>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx).map_err(Into::into)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), P2PError>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx).map_err(Into::into)
    }
}
