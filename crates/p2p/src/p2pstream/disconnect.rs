//! The devp2p `Disconnect` message (id `0x01`) and its reason codes.

use alloy_rlp::{BufMut, Decodable, Encodable, Header};

/// Why a devp2p connection ends, as sent in a `Disconnect` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DisconnectReason {
    /// 0x00: disconnect requested (no particular reason).
    DisconnectRequested = 0x00,
    /// 0x01: TCP sub-system error.
    TcpSubsystemError = 0x01,
    /// 0x02: breach of protocol, e.g. a malformed message or a bad RLP.
    ProtocolBreach = 0x02,
    /// 0x03: useless peer (no shared capabilities, wrong chain).
    UselessPeer = 0x03,
    /// 0x04: too many peers.
    TooManyPeers = 0x04,
    /// 0x05: already connected.
    AlreadyConnected = 0x05,
    /// 0x06: incompatible p2p protocol version.
    IncompatibleP2PProtocolVersion = 0x06,
    /// 0x07: null node identity received.
    NullNodeIdentity = 0x07,
    /// 0x08: client quitting.
    ClientQuitting = 0x08,
    /// 0x09: unexpected identity in handshake.
    UnexpectedHandshakeIdentity = 0x09,
    /// 0x0a: identity is the same as this node (connected to self).
    ConnectedToSelf = 0x0a,
    /// 0x0b: ping timeout.
    PingTimeout = 0x0b,
    /// 0x10: some other reason specific to a subprotocol.
    SubprotocolSpecific = 0x10,
}

/// A disconnect reason code that no version of devp2p defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown disconnect reason code {0:#04x}")]
pub struct UnknownDisconnectReason(pub u8);

impl TryFrom<u8> for DisconnectReason {
    type Error = UnknownDisconnectReason;

    fn try_from(code: u8) -> Result<Self, UnknownDisconnectReason> {
        Self::ALL
            .into_iter()
            .find(|reason| reason.code() == code)
            .ok_or(UnknownDisconnectReason(code))
    }
}

impl DisconnectReason {
    /// Every reason, in code order.
    pub const ALL: [Self; 13] = [
        Self::DisconnectRequested,
        Self::TcpSubsystemError,
        Self::ProtocolBreach,
        Self::UselessPeer,
        Self::TooManyPeers,
        Self::AlreadyConnected,
        Self::IncompatibleP2PProtocolVersion,
        Self::NullNodeIdentity,
        Self::ClientQuitting,
        Self::UnexpectedHandshakeIdentity,
        Self::ConnectedToSelf,
        Self::PingTimeout,
        Self::SubprotocolSpecific,
    ];

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Decodes a Disconnect payload (already decompressed): the list `[reason]` that the spec
    /// prescribes, or the bare integer `reason` that some implementations (ethereumjs) send.
    /// Further list elements and bytes after the reason are ignored.
    pub fn decode_payload(payload: &[u8]) -> Result<Self, DisconnectDecodeError> {
        let mut buf = payload;
        if buf.first().is_some_and(|b| *b >= 0xc0) {
            let header = Header::decode(&mut buf)?;
            buf = buf.get(..header.payload_length).ok_or(alloy_rlp::Error::InputTooShort)?;
        }
        let code = match buf.first() {
            None => return Err(DisconnectDecodeError::Empty),
            // a raw 0x00 byte is not canonical RLP for zero, but some encoders write it
            Some(0x00) => 0,
            Some(_) => u8::decode(&mut buf)?,
        };
        Ok(Self::try_from(code)?)
    }
}

/// Why a Disconnect payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectDecodeError {
    /// The payload (or its list) holds no reason.
    #[error("disconnect message without a reason")]
    Empty,
    /// The reason is not valid RLP.
    #[error("malformed disconnect RLP: {0}")]
    Rlp(#[from] alloy_rlp::Error),
    /// The reason code is not defined.
    #[error(transparent)]
    Unknown(#[from] UnknownDisconnectReason),
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::DisconnectRequested => "disconnect requested",
            Self::TcpSubsystemError => "TCP sub-system error",
            Self::ProtocolBreach => "breach of protocol",
            Self::UselessPeer => "useless peer",
            Self::TooManyPeers => "too many peers",
            Self::AlreadyConnected => "already connected",
            Self::IncompatibleP2PProtocolVersion => "incompatible p2p protocol version",
            Self::NullNodeIdentity => "null node identity received",
            Self::ClientQuitting => "client quitting",
            Self::UnexpectedHandshakeIdentity => "unexpected identity in handshake",
            Self::ConnectedToSelf => "connected to self",
            Self::PingTimeout => "ping timeout",
            Self::SubprotocolSpecific => "subprotocol-specific reason",
        })
    }
}

/// Encodes as the list `[reason]`, as go-ethereum does.
impl Encodable for DisconnectReason {
    fn encode(&self, out: &mut dyn BufMut) {
        Header { list: true, payload_length: self.code().length() }.encode(out);
        self.code().encode(out);
    }

    fn length(&self) -> usize {
        1 + self.code().length()
    }
}

/// Decodes either form (see [`DisconnectReason::decode_payload`]).
impl Decodable for DisconnectReason {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let reason = Self::decode_payload(buf).map_err(|e| match e {
            DisconnectDecodeError::Rlp(e) => e,
            DisconnectDecodeError::Empty => alloy_rlp::Error::InputTooShort,
            DisconnectDecodeError::Unknown(_) => {
                alloy_rlp::Error::Custom("unknown disconnect reason")
            }
        })?;
        *buf = &[];
        Ok(reason)
    }
}
