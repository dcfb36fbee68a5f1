//! The RLPx frame codec: AES-256-CTR encryption and the keccak MAC of each frame header and body.
//!
//! A frame on the wire is `header-ciphertext(16) || header-mac(16) || body-ciphertext(padded to
//! 16) || body-mac(16)`, where the header plaintext is `frame-size(3, big endian) ||
//! rlp([0, 0]) || zero padding`. The codec carries opaque frame bodies; message ids, snappy and
//! RLP belong to the p2p layer above.

use crate::ecies::{
    algorithm::Secrets,
    error::EciesError,
    mac::{MAC_LEN, Mac},
};
use aes::Aes256;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use ctr::cipher::{KeyIvInit, StreamCipher};
use tokio_util::codec::{Decoder, Encoder};

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Size of the encrypted frame header.
pub const HEADER_LEN: usize = 16;

/// Largest frame body: the header's frame-size field is 24 bits, so 16 MiB − 1 is the most a
/// frame can announce. Frames (and so messages on the wire) are bounded by it.
pub const MAX_FRAME_SIZE: usize = 0xFF_FFFF;

/// The header-data every frame carries: `rlp([capability-id = 0, context-id = 0])`. Receivers
/// ignore it (multiplexing was never deployed).
const HEADER_DATA: [u8; 3] = [0xc2, 0x80, 0x80];

/// Where the decoder is in the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeState {
    /// Waiting for a header and its MAC.
    Header,
    /// Header verified; waiting for a body of this many (unpadded) bytes and its MAC.
    Body(usize),
}

/// The keyed cipher and MAC states of both directions (about 5 KiB of AES key schedules, kept
/// on the heap so that streams and the futures holding them stay small).
struct Keys {
    egress_aes: Aes256Ctr,
    ingress_aes: Aes256Ctr,
    egress_mac: Mac,
    ingress_mac: Mac,
}

/// Encrypts and MACs outgoing frames, verifies and decrypts incoming ones.
pub struct FrameCodec {
    keys: Box<Keys>,
    state: DecodeState,
    max_frame_size: usize,
}

impl std::fmt::Debug for FrameCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameCodec")
            .field("state", &self.state)
            .field("max_frame_size", &self.max_frame_size)
            .finish_non_exhaustive()
    }
}

fn padded(len: usize) -> usize {
    len.div_ceil(16) * 16
}

impl FrameCodec {
    /// A codec keyed with the secrets of a completed handshake (both CTR streams start at IV 0).
    pub fn new(secrets: Secrets) -> Self {
        let iv = [0u8; 16];
        Self {
            keys: Box::new(Keys {
                egress_aes: Aes256Ctr::new(&secrets.aes_secret.0.into(), &iv.into()),
                ingress_aes: Aes256Ctr::new(&secrets.aes_secret.0.into(), &iv.into()),
                egress_mac: secrets.egress_mac,
                ingress_mac: secrets.ingress_mac,
            }),
            state: DecodeState::Header,
            max_frame_size: MAX_FRAME_SIZE,
        }
    }

    /// Lowers the largest frame body accepted and sent (clamped to [`MAX_FRAME_SIZE`]).
    pub fn with_max_frame_size(mut self, max: usize) -> Self {
        self.max_frame_size = max.min(MAX_FRAME_SIZE);
        self
    }

    /// In-place [`FrameCodec::with_max_frame_size`].
    pub fn set_max_frame_size(&mut self, max: usize) {
        self.max_frame_size = max.min(MAX_FRAME_SIZE);
    }

    /// The largest frame body accepted and sent.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Encrypts one frame body into `dst`.
    pub fn encode_frame(&mut self, body: &[u8], dst: &mut BytesMut) -> Result<(), EciesError> {
        if body.len() > self.max_frame_size {
            return Err(EciesError::FrameTooLarge { size: body.len(), limit: self.max_frame_size });
        }
        let mut header = [0u8; HEADER_LEN];
        header[..3].copy_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        header[3..6].copy_from_slice(&HEADER_DATA);
        self.keys.egress_aes.apply_keystream(&mut header);
        self.keys.egress_mac.update_header(&header);
        dst.reserve(HEADER_LEN + MAC_LEN + padded(body.len()) + MAC_LEN);
        dst.put_slice(&header);
        dst.put_slice(&self.keys.egress_mac.mac());

        let start = dst.len();
        dst.put_slice(body);
        dst.put_bytes(0, padded(body.len()) - body.len());
        self.keys.egress_aes.apply_keystream(&mut dst[start..]);
        self.keys.egress_mac.update_body(&dst[start..]);
        dst.put_slice(&self.keys.egress_mac.mac());
        Ok(())
    }

    /// Decodes one frame from `src` if it is complete; `Ok(None)` when more bytes are needed.
    pub fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, EciesError> {
        loop {
            match self.state {
                DecodeState::Header => {
                    if src.len() < HEADER_LEN + MAC_LEN {
                        return Ok(None);
                    }
                    let mut header = [0u8; HEADER_LEN];
                    header.copy_from_slice(&src[..HEADER_LEN]);
                    self.keys.ingress_mac.update_header(&header);
                    if self.keys.ingress_mac.mac()[..] != src[HEADER_LEN..HEADER_LEN + MAC_LEN] {
                        return Err(EciesError::HeaderMacMismatch);
                    }
                    self.keys.ingress_aes.apply_keystream(&mut header);
                    let size = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
                    if size > self.max_frame_size {
                        return Err(EciesError::FrameTooLarge { size, limit: self.max_frame_size });
                    }
                    src.advance(HEADER_LEN + MAC_LEN);
                    self.state = DecodeState::Body(size);
                }
                DecodeState::Body(size) => {
                    let body_len = padded(size);
                    if src.len() < body_len + MAC_LEN {
                        src.reserve(body_len + MAC_LEN - src.len());
                        return Ok(None);
                    }
                    let mut body = src.split_to(body_len);
                    let mac = src.split_to(MAC_LEN);
                    self.keys.ingress_mac.update_body(&body);
                    if self.keys.ingress_mac.mac()[..] != mac[..] {
                        return Err(EciesError::BodyMacMismatch);
                    }
                    self.keys.ingress_aes.apply_keystream(&mut body);
                    body.truncate(size);
                    self.state = DecodeState::Header;
                    return Ok(Some(body));
                }
            }
        }
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = EciesError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, EciesError> {
        self.decode_frame(src)
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = EciesError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), EciesError> {
        self.encode_frame(&item, dst)
    }
}
