//! Errors of the p2p base-protocol layer.

use crate::{
    ecies::EciesError,
    p2pstream::disconnect::{DisconnectDecodeError, DisconnectReason},
};

/// Everything that ends a p2p connection, with the disconnect reason it carries.
#[derive(Debug, thiserror::Error)]
pub enum P2PError {
    /// The transport below failed.
    #[error(transparent)]
    Ecies(#[from] EciesError),
    /// The remote sent Disconnect.
    #[error("remote disconnected: {0}")]
    Disconnected(DisconnectReason),
    /// The remote closed the connection without Disconnect.
    #[error("connection closed")]
    ConnectionClosed,
    /// No Hello within the handshake timeout.
    #[error("p2p handshake timed out")]
    HandshakeTimeout,
    /// No Pong within the ping timeout.
    #[error("ping timed out")]
    PingTimeout,
    /// The first message was not Hello.
    #[error("expected Hello, got message id {0:#x}")]
    ExpectedHello(u64),
    /// The Hello is larger than we accept.
    #[error("Hello of {0} bytes is too large")]
    HelloTooLarge(usize),
    /// The remote's p2p version is older than 5 (we need snappy).
    #[error("incompatible p2p protocol version {0}")]
    IncompatibleProtocolVersion(u64),
    /// The remote's Hello carries the all-zero node id.
    #[error("null node identity in Hello")]
    NullNodeIdentity,
    /// The remote's Hello carries another node id than the one the handshake authenticated.
    #[error("Hello carries unexpected node id {0}")]
    UnexpectedIdentity(crate::ecies::PeerId),
    /// The remote's Hello carries our own node id.
    #[error("connected to self")]
    ConnectedToSelf,
    /// No capability is shared.
    #[error("no shared capabilities")]
    NoSharedCapabilities,
    /// A second Hello after the handshake.
    #[error("unexpected Hello after the handshake")]
    UnexpectedHello,
    /// A frame with no message id.
    #[error("empty message")]
    EmptyMessage,
    /// A message id outside the base protocol and every shared capability.
    #[error("unknown message id {0:#x}")]
    UnknownMessageId(u64),
    /// Malformed RLP in a message id or base-protocol message.
    #[error("malformed RLP: {0}")]
    Rlp(#[from] alloy_rlp::Error),
    /// A malformed Disconnect.
    #[error("malformed Disconnect: {0}")]
    InvalidDisconnect(#[from] DisconnectDecodeError),
    /// A snappy payload that does not decompress.
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    /// A message whose (decompressed) size exceeds the limit; checked before decompressing.
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    MessageTooLarge {
        /// Size in bytes (decompressed, as announced by the snappy header).
        size: usize,
        /// Our limit.
        limit: usize,
    },
    /// A Ping or Pong whose payload is not the empty list.
    #[error("Ping or Pong payload is not the empty list")]
    InvalidKeepalive,
    /// More Pings than `MAX_PINGS_PER_WINDOW` in one window.
    #[error("Ping flood")]
    PingFlood,
    /// More Pongs and reserved-id messages than `MAX_IGNORED_PER_WINDOW`, or more bytes of them
    /// than `MAX_IGNORED_BYTES_PER_WINDOW`, in one window.
    #[error("flood of Pongs or reserved-id messages")]
    IgnoredFlood,
    /// We were asked to send on a capability index that is not shared.
    #[error("no shared capability at index {0}")]
    UnknownCapability(usize),
    /// We were asked to send a message id outside its capability's range.
    #[error("message id {id} outside capability {cap} ({messages} messages)")]
    MessageIdOutOfRange {
        /// Capability name and version.
        cap: String,
        /// Relative id.
        id: u8,
        /// Messages of the capability.
        messages: u8,
    },
    /// The stream is closed or a Disconnect was sent; nothing more can be sent.
    #[error("stream already disconnected")]
    AlreadyDisconnected,
}

impl P2PError {
    /// Whether the remote broke the protocol (the connection earns a `ProtocolBreach`).
    pub fn is_protocol_breach(&self) -> bool {
        match self {
            Self::Ecies(e) => e.is_protocol_breach(),
            Self::ExpectedHello(_)
            | Self::HelloTooLarge(_)
            | Self::UnexpectedHello
            | Self::EmptyMessage
            | Self::UnknownMessageId(_)
            | Self::Rlp(_)
            | Self::InvalidDisconnect(_)
            | Self::Snappy(_)
            | Self::InvalidKeepalive
            | Self::PingFlood
            | Self::IgnoredFlood
            | Self::MessageTooLarge { .. } => true,
            _ => false,
        }
    }

    /// The reason this connection ended: the one the remote sent, or the one we send (or would
    /// send) it. `None` for local misuse and for transport failures with nothing to tell.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        Some(match self {
            Self::Disconnected(reason) => *reason,
            Self::PingTimeout => DisconnectReason::PingTimeout,
            Self::IncompatibleProtocolVersion(_) => {
                DisconnectReason::IncompatibleP2PProtocolVersion
            }
            Self::ConnectedToSelf => DisconnectReason::ConnectedToSelf,
            Self::NullNodeIdentity => DisconnectReason::NullNodeIdentity,
            Self::UnexpectedIdentity(_) => DisconnectReason::UnexpectedHandshakeIdentity,
            Self::NoSharedCapabilities => DisconnectReason::UselessPeer,
            Self::HandshakeTimeout | Self::ConnectionClosed => DisconnectReason::TcpSubsystemError,
            Self::Ecies(e) if !e.is_protocol_breach() => DisconnectReason::TcpSubsystemError,
            e if e.is_protocol_breach() => DisconnectReason::ProtocolBreach,
            _ => return None,
        })
    }

    /// The reason to send to the remote before closing, when one should be sent: not when it
    /// disconnected us, nor when the transport is broken (nothing would arrive).
    pub(crate) fn reason_to_send(&self) -> Option<DisconnectReason> {
        match self {
            Self::Disconnected(_) | Self::ConnectionClosed => None,
            Self::Ecies(e) if !e.is_protocol_breach() => None,
            other => other.disconnect_reason(),
        }
    }
}
