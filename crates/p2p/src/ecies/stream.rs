//! [`EciesStream`]: a transport that has completed the RLPx handshake and carries frames.

use crate::ecies::{
    algorithm::{Ecies, LEGACY_ACK_LEN, LEGACY_AUTH_LEN, PeerId, eip8_packet_len},
    codec::FrameCodec,
    error::EciesError,
};
use bytes::{Bytes, BytesMut};
use futures::{Sink, Stream};
use secp256k1::SecretKey;
use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Framed, FramedParts};

/// Time allowed for the whole auth/ack exchange. go-ethereum gives the handshake 5 s and reth
/// 10 s; we take the more forgiving 10 s because a peer that is slow here only costs us one idle
/// socket, while a too-short limit drops honest peers on loaded links.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An authenticated, encrypted RLPx connection: a `Stream` of received frame bodies and a `Sink`
/// of frame bodies to send.
#[derive(Debug)]
pub struct EciesStream<Io> {
    framed: Framed<Io, FrameCodec>,
    remote_id: PeerId,
}

/// Reads one auth or ack packet of either format, never past its end (the frames that follow
/// must stay in the socket).
async fn read_packet<Io: AsyncRead + Unpin>(
    io: &mut Io,
    legacy_len: usize,
    mut try_legacy: impl FnMut(&[u8]) -> bool,
) -> Result<(Vec<u8>, bool), EciesError> {
    let mut buf = vec![0u8; 2];
    read_exact(io, &mut buf).await?;
    // A legacy packet starts with the 0x04 of its ECIES public key. An EIP-8 prefix can too
    // (sizes 1024..=1279), so the legacy reading is only tried, and the EIP-8 one follows.
    if buf[0] == 0x04 {
        buf.resize(legacy_len, 0);
        read_exact(io, &mut buf[2..]).await?;
        if try_legacy(&buf) {
            return Ok((buf, true));
        }
    }
    let total = eip8_packet_len([buf[0], buf[1]])?;
    if total < buf.len() {
        return Err(EciesError::MessageTooShort(total));
    }
    let have = buf.len();
    buf.resize(total, 0);
    read_exact(io, &mut buf[have..]).await?;
    Ok((buf, false))
}

async fn read_exact<Io: AsyncRead + Unpin>(io: &mut Io, buf: &mut [u8]) -> Result<(), EciesError> {
    match io.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(EciesError::UnexpectedEof),
        Err(e) => Err(e.into()),
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> EciesStream<Io> {
    /// Dials: sends our auth to `remote_id`, reads its ack, within [`HANDSHAKE_TIMEOUT`].
    pub async fn connect(
        io: Io,
        secret_key: SecretKey,
        remote_id: PeerId,
    ) -> Result<Self, EciesError> {
        Self::connect_with_timeout(io, secret_key, remote_id, HANDSHAKE_TIMEOUT).await
    }

    /// [`EciesStream::connect`] with an explicit timeout.
    pub async fn connect_with_timeout(
        io: Io,
        secret_key: SecretKey,
        remote_id: PeerId,
        timeout: Duration,
    ) -> Result<Self, EciesError> {
        let ecies = Ecies::new_initiator(secret_key, remote_id)?;
        tokio::time::timeout(timeout, Self::initiator_handshake(io, ecies))
            .await
            .map_err(|_| EciesError::HandshakeTimeout)?
    }

    /// Dials with a prepared [`Ecies`] state (a given ephemeral key and nonce, for tests) and
    /// no timeout.
    pub async fn initiator_handshake(mut io: Io, mut ecies: Ecies) -> Result<Self, EciesError> {
        let auth = ecies.create_auth()?;
        io.write_all(&auth).await?;
        io.flush().await?;
        let (ack, legacy) =
            read_packet(&mut io, LEGACY_ACK_LEN, |p| ecies.read_ack_legacy(p).is_ok()).await?;
        if !legacy {
            ecies.read_ack_eip8(&ack)?;
        }
        Self::finish(io, &ecies)
    }

    /// Accepts: reads the remote's auth, sends our ack, within [`HANDSHAKE_TIMEOUT`].
    pub async fn incoming(io: Io, secret_key: SecretKey) -> Result<Self, EciesError> {
        Self::incoming_with_timeout(io, secret_key, HANDSHAKE_TIMEOUT).await
    }

    /// [`EciesStream::incoming`] with an explicit timeout.
    pub async fn incoming_with_timeout(
        io: Io,
        secret_key: SecretKey,
        timeout: Duration,
    ) -> Result<Self, EciesError> {
        tokio::time::timeout(
            timeout,
            Self::recipient_handshake(io, Ecies::new_recipient(secret_key)),
        )
        .await
        .map_err(|_| EciesError::HandshakeTimeout)?
    }

    /// Accepts with a prepared [`Ecies`] state and no timeout.
    pub async fn recipient_handshake(mut io: Io, mut ecies: Ecies) -> Result<Self, EciesError> {
        let (auth, legacy) =
            read_packet(&mut io, LEGACY_AUTH_LEN, |p| ecies.read_auth_legacy(p).is_ok()).await?;
        if !legacy {
            ecies.read_auth_eip8(&auth)?;
        }
        let ack = ecies.create_ack()?;
        io.write_all(&ack).await?;
        io.flush().await?;
        Self::finish(io, &ecies)
    }

    fn finish(io: Io, ecies: &Ecies) -> Result<Self, EciesError> {
        let remote_id = ecies.remote_id().ok_or(EciesError::IncompleteHandshake("remote id"))?;
        let codec = FrameCodec::new(ecies.secrets()?);
        let framed = Framed::from_parts(FramedParts::new::<Bytes>(io, codec));
        Ok(Self { framed, remote_id })
    }

    /// The authenticated node id of the remote.
    pub fn remote_id(&self) -> PeerId {
        self.remote_id
    }

    /// The frame codec (to lower its frame size limit, for example).
    pub fn codec_mut(&mut self) -> &mut FrameCodec {
        self.framed.codec_mut()
    }

    /// The underlying transport.
    pub fn get_ref(&self) -> &Io {
        self.framed.get_ref()
    }

    /// The underlying transport, mutably. Bytes written here bypass the frame codec (tests use
    /// it to inject corrupt frames).
    pub fn get_mut(&mut self) -> &mut Io {
        self.framed.get_mut()
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Stream for EciesStream<Io> {
    type Item = Result<BytesMut, EciesError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.framed).poll_next(cx)
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Sink<Bytes> for EciesStream<Io> {
    type Error = EciesError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), EciesError>> {
        Pin::new(&mut self.framed).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> Result<(), EciesError> {
        Pin::new(&mut self.framed).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), EciesError>> {
        Pin::new(&mut self.framed).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), EciesError>> {
        Pin::new(&mut self.framed).poll_close(cx)
    }
}
