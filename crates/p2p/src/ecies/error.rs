//! Errors of the ECIES / RLPx framing layer.

/// Everything that can go wrong in the ECIES handshake or the RLPx frame codec.
///
/// Every variant except [`EciesError::Io`] and [`EciesError::HandshakeTimeout`] means the remote
/// sent bytes that a correct peer never sends (see [`EciesError::is_protocol_breach`]).
#[derive(Debug, thiserror::Error)]
pub enum EciesError {
    /// The underlying transport failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The handshake did not complete within the allotted time.
    #[error("ECIES handshake timed out")]
    HandshakeTimeout,
    /// The transport closed before the handshake completed.
    #[error("connection closed during the ECIES handshake")]
    UnexpectedEof,
    /// An ECIES message is shorter than its fixed overhead.
    #[error("ECIES message of {0} bytes is too short")]
    MessageTooShort(usize),
    /// An auth or ack packet announces more bytes than we accept.
    #[error("handshake packet of {size} bytes exceeds the limit of {limit}")]
    HandshakePacketTooLarge {
        /// Announced size in bytes.
        size: usize,
        /// Our limit in bytes.
        limit: usize,
    },
    /// The HMAC-SHA256 tag of an ECIES message does not match.
    #[error("ECIES message tag mismatch")]
    TagMismatch,
    /// A key, point or signature in a handshake packet is not valid secp256k1.
    #[error("invalid secp256k1 data: {0}")]
    Secp256k1(#[from] secp256k1::Error),
    /// The RLP body of an EIP-8 auth/ack packet is malformed.
    #[error("malformed handshake RLP: {0}")]
    Rlp(#[from] alloy_rlp::Error),
    /// A field of an auth/ack body has the wrong length.
    #[error("handshake field `{field}` has {got} bytes, expected {expected}")]
    BadFieldLength {
        /// Name of the field.
        field: &'static str,
        /// Bytes received.
        got: usize,
        /// Bytes required.
        expected: usize,
    },
    /// The legacy auth's hash of the ephemeral key does not match the recovered key.
    #[error("legacy auth ephemeral-key hash mismatch")]
    EphemeralKeyHashMismatch,
    /// The header MAC of a frame does not match.
    #[error("frame header MAC mismatch")]
    HeaderMacMismatch,
    /// The body MAC of a frame does not match.
    #[error("frame body MAC mismatch")]
    BodyMacMismatch,
    /// A frame is larger than the frame size limit.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// Frame size in bytes.
        size: usize,
        /// Our limit in bytes.
        limit: usize,
    },
    /// A frame was used before the handshake established the secrets (a bug of ours).
    #[error("handshake state incomplete: missing {0}")]
    IncompleteHandshake(&'static str),
}

impl EciesError {
    /// Whether this error proves the remote broke the protocol (as opposed to a transport
    /// failure or a timeout).
    pub fn is_protocol_breach(&self) -> bool {
        !matches!(
            self,
            Self::Io(_)
                | Self::HandshakeTimeout
                | Self::UnexpectedEof
                | Self::IncompleteHandshake(_)
        )
    }
}
