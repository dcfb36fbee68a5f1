//! The devp2p `Disconnect` message (id `0x01`) and its reason codes.

use alloy_rlp::{BufMut, Decodable, Encodable, Header};

/// Generates [`DisconnectReason`], its [`DisconnectReason::ALL`] and its `Display` from one table
/// of `Variant = code => "text"` rows, in code order.
macro_rules! disconnect_reasons {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal => $text:literal ),+ $(,)?) => {
        /// Why a devp2p connection ends, as sent in a `Disconnect` message.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DisconnectReason {
            $( $(#[$doc])* $variant = $code, )+
        }

        impl DisconnectReason {
            /// Every reason, in code order.
            pub const ALL: [Self; [$($code),+].len()] = [$(Self::$variant),+];
        }

        impl std::fmt::Display for DisconnectReason {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $text,)+
                })
            }
        }
    };
}

disconnect_reasons! {
    /// 0x00: disconnect requested (no particular reason).
    DisconnectRequested = 0x00 => "disconnect requested",
    /// 0x01: TCP sub-system error.
    TcpSubsystemError = 0x01 => "TCP sub-system error",
    /// 0x02: breach of protocol, e.g. a malformed message or a bad RLP.
    ProtocolBreach = 0x02 => "breach of protocol",
    /// 0x03: useless peer (no shared capabilities, wrong chain).
    UselessPeer = 0x03 => "useless peer",
    /// 0x04: too many peers.
    TooManyPeers = 0x04 => "too many peers",
    /// 0x05: already connected.
    AlreadyConnected = 0x05 => "already connected",
    /// 0x06: incompatible p2p protocol version.
    IncompatibleP2PProtocolVersion = 0x06 => "incompatible p2p protocol version",
    /// 0x07: null node identity received.
    NullNodeIdentity = 0x07 => "null node identity received",
    /// 0x08: client quitting.
    ClientQuitting = 0x08 => "client quitting",
    /// 0x09: unexpected identity in handshake.
    UnexpectedHandshakeIdentity = 0x09 => "unexpected identity in handshake",
    /// 0x0a: identity is the same as this node (connected to self).
    ConnectedToSelf = 0x0a => "connected to self",
    /// 0x0b: ping timeout.
    PingTimeout = 0x0b => "ping timeout",
    /// 0x10: some other reason specific to a subprotocol.
    SubprotocolSpecific = 0x10 => "subprotocol-specific reason",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes devp2p defines (RLPx spec, "Disconnect"): 0x00 to 0x0b and 0x10, no others.
    #[test]
    fn the_table_holds_devp2ps_codes_in_order() {
        let defined: Vec<u8> = (0x00..=0x0b).chain([0x10]).collect();
        let codes: Vec<u8> = DisconnectReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes, defined);
        for code in 0..=u8::MAX {
            match DisconnectReason::try_from(code) {
                Ok(reason) => assert_eq!(reason.code(), code),
                Err(e) => {
                    assert!(!defined.contains(&code), "{code:#04x} is defined");
                    assert_eq!(e, UnknownDisconnectReason(code));
                }
            }
        }
        let texts: std::collections::HashSet<String> =
            DisconnectReason::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), DisconnectReason::ALL.len(), "each reason reads differently");
        assert_eq!(DisconnectReason::PingTimeout.to_string(), "ping timeout");
    }
}
