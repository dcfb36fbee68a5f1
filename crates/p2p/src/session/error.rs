//! Errors of the `leaf/1` session layer.

use crate::{
    MessageFault, PenaltyClass,
    ecies::EciesError,
    leaf::{LeafError, StatusError},
    p2pstream::{DisconnectReason, P2PError},
};

/// Everything that ends (or, for [`SessionError::Leaf`] with an unknown id, disturbs) a `leaf/1`
/// session, with the disconnect reason and the penalty it carries.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// TCP connect or socket failure.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The TCP connect did not complete within [`super::DIAL_TIMEOUT`].
    #[error("dial timed out")]
    DialTimeout,
    /// The whole handshake (ECIES, Hello, Status) did not complete within its overall deadline
    /// (`crate::peers::INBOUND_HANDSHAKE_TIMEOUT` for inbound connections).
    #[error("handshake deadline passed")]
    HandshakeTimeout,
    /// The ECIES handshake failed.
    #[error(transparent)]
    Ecies(#[from] EciesError),
    /// The p2p layer failed (Hello, transport, Disconnect from the remote).
    #[error(transparent)]
    P2P(#[from] P2PError),
    /// The remote does not speak `leaf/1`.
    #[error("remote does not share leaf/1")]
    NoLeafCapability,
    /// A malformed, oversized or unknown `leaf/1` message.
    #[error(transparent)]
    Leaf(#[from] LeafError),
    /// The remote's `Status` is incompatible with ours.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// No `Status` within `STATUS_TIMEOUT`.
    #[error("no Status within the status timeout")]
    StatusTimeout,
    /// Another `leaf/1` message came before `Status` (its relative id).
    #[error("expected Status, got leaf/1 message {0:#04x}")]
    ExpectedStatus(u8),
    /// A second `Status` after the handshake.
    #[error("Status after the handshake")]
    DuplicateStatus,
    /// We refused the connection (ban, duplicate, limits) with this reason.
    #[error("connection refused: {0}")]
    Refused(DisconnectReason),
}

impl SessionError {
    /// Whether the remote broke the protocol.
    pub fn is_protocol_breach(&self) -> bool {
        match self {
            Self::Ecies(e) => e.is_protocol_breach(),
            Self::P2P(e) => e.is_protocol_breach(),
            Self::Leaf(e) => e.is_protocol_breach(),
            Self::ExpectedStatus(_) | Self::DuplicateStatus => true,
            _ => false,
        }
    }

    /// The disconnect reason of the session's end: the one sent or received.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        match self {
            Self::Io(_) | Self::DialTimeout | Self::HandshakeTimeout => {
                Some(DisconnectReason::TcpSubsystemError)
            }
            Self::Ecies(e) if e.is_protocol_breach() => Some(DisconnectReason::ProtocolBreach),
            Self::Ecies(_) => Some(DisconnectReason::TcpSubsystemError),
            Self::P2P(e) => e.disconnect_reason(),
            Self::NoLeafCapability => Some(DisconnectReason::UselessPeer),
            Self::Leaf(e) => e.disconnect_reason(),
            Self::Status(e) => Some(e.disconnect_reason()),
            Self::StatusTimeout => Some(DisconnectReason::PingTimeout),
            Self::ExpectedStatus(_) | Self::DuplicateStatus => {
                Some(DisconnectReason::ProtocolBreach)
            }
            Self::Refused(reason) => Some(*reason),
        }
    }

    /// The penalty the remote earns (`docs/leaf-protocol.md`, handshake and bad-input tables):
    /// `None` when it did nothing wrong or may become useful after an update.
    pub fn penalty(&self) -> Option<PenaltyClass> {
        match self {
            Self::Leaf(e) => Some(e.penalty()),
            Self::Status(e) if e.should_ban() => Some(PenaltyClass::Fatal),
            Self::Status(StatusError::ForkId(_)) => Some(PenaltyClass::High),
            Self::Status(_) => None,
            Self::StatusTimeout => Some(PenaltyClass::High),
            e if e.is_protocol_breach() => Some(PenaltyClass::Fatal),
            _ => None,
        }
    }
}
