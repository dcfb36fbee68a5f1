//! Errors of the session layer.

use super::Subprotocol;
use crate::{
    MessageFault, PenaltyClass,
    ecies::EciesError,
    eth::{EthError, EthStatusError},
    leaf::{LeafError, StatusError},
    p2pstream::{DisconnectReason, P2PError},
    snap::SnapError,
};

/// Everything that ends (or, for a message with an unknown id, disturbs) a session, with the
/// disconnect reason and the penalty it carries.
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
    /// The remote shares neither `leaf/1` nor `eth/69` with `snap/1`.
    #[error("remote shares neither leaf/1 nor eth/69 with snap/1")]
    NoSharedCapability,
    /// The remote shares `snap/1` but not `eth/69` (nor `leaf/1`): geth's "snap without
    /// compatible eth".
    #[error("remote shares snap/1 without eth/69")]
    SnapWithoutEth,
    /// A message of a subprotocol the session does not speak was to be sent.
    #[error("the session does not speak {}", .0.name())]
    NotShared(Subprotocol),
    /// A malformed, oversized or unknown `leaf/1` message.
    #[error(transparent)]
    Leaf(#[from] LeafError),
    /// A malformed, oversized, disallowed or unknown `eth/69` message.
    #[error(transparent)]
    Eth(#[from] EthError),
    /// A malformed, oversized or unknown `snap/1` message.
    #[error(transparent)]
    Snap(#[from] SnapError),
    /// The remote's `leaf/1` `Status` is incompatible with ours.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The remote's `eth/69` `Status` is incompatible with ours.
    #[error(transparent)]
    EthStatus(#[from] EthStatusError),
    /// Not every Status within `STATUS_TIMEOUT`.
    #[error("no Status within the status timeout")]
    StatusTimeout,
    /// A message of a subprotocol came before that subprotocol's Status (its relative id). A
    /// message of one whose Status came (or of `snap/1`, which has none) may precede the other
    /// Statuses: see `EarlyMessages`.
    #[error("expected Status, got message {0:#04x}")]
    ExpectedStatus(u8),
    /// More than [`super::MAX_EARLY_MESSAGES`] messages or [`super::MAX_EARLY_BYTES`] bytes
    /// came before the last Status.
    #[error(
        "more than {} messages or {} bytes before the Status handshakes ended",
        super::MAX_EARLY_MESSAGES,
        super::MAX_EARLY_BYTES
    )]
    EarlyFlood,
    /// A second `Status` after the handshake.
    #[error("Status after the handshake")]
    DuplicateStatus,
    /// We refused the connection (ban, duplicate, limits) with this reason.
    #[error("connection refused: {0}")]
    Refused(DisconnectReason),
    /// The handshake's task panicked (a bug in leafsync, not the remote's doing).
    #[error("the handshake panicked")]
    Panicked,
}

impl SessionError {
    /// Whether the remote broke the protocol.
    pub fn is_protocol_breach(&self) -> bool {
        match self {
            Self::Ecies(e) => e.is_protocol_breach(),
            Self::P2P(e) => e.is_protocol_breach(),
            Self::Leaf(e) => e.is_protocol_breach(),
            Self::Eth(e) => e.is_protocol_breach(),
            Self::Snap(e) => e.is_protocol_breach(),
            Self::ExpectedStatus(_) | Self::EarlyFlood | Self::DuplicateStatus => true,
            _ => false,
        }
    }

    /// Whether the remote that caused the error has proved it holds the key of the id it
    /// claims. An auth names its sender's id, but only a frame whose MAC checks shows the
    /// sender knows the session's secrets, and so that key: before one has, whoever is at the
    /// other end may have named any id. An ECIES failure (a malformed ack, a first header whose
    /// MAC does not match) therefore proves nothing of the id, and must earn it no penalty,
    /// or one forged auth would ban any node; a body MAC or a frame size is read only after its
    /// header's MAC checked, and every other error needs a decoded frame.
    pub fn proves_sender(&self) -> bool {
        match self {
            Self::Ecies(e) | Self::P2P(P2PError::Ecies(e)) => {
                matches!(e, EciesError::BodyMacMismatch | EciesError::FrameTooLarge { .. })
            }
            _ => true,
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
            Self::NoSharedCapability => Some(DisconnectReason::UselessPeer),
            // geth ends the snap protocol with an error: "subprotocol error" (0x10).
            Self::SnapWithoutEth => Some(DisconnectReason::SubprotocolSpecific),
            Self::NotShared(_) => None,
            Self::Leaf(e) => e.disconnect_reason(),
            Self::Eth(e) => e.disconnect_reason(),
            Self::Snap(e) => e.disconnect_reason(),
            Self::Status(e) => Some(e.disconnect_reason()),
            Self::EthStatus(e) => Some(e.disconnect_reason()),
            Self::StatusTimeout => Some(DisconnectReason::PingTimeout),
            Self::ExpectedStatus(_) | Self::EarlyFlood | Self::DuplicateStatus => {
                Some(DisconnectReason::ProtocolBreach)
            }
            Self::Refused(reason) => Some(*reason),
            Self::Panicked => None,
        }
    }

    /// The penalty the remote earns (`docs/leaf-protocol.md`, handshake and bad-input tables):
    /// `None` when it did nothing wrong or may become useful after an update.
    pub fn penalty(&self) -> Option<PenaltyClass> {
        match self {
            Self::Leaf(e) => Some(e.penalty()),
            Self::Eth(e) => Some(e.penalty()),
            Self::Snap(e) => Some(e.penalty()),
            Self::Status(e) if e.should_ban() => Some(PenaltyClass::Fatal),
            Self::Status(StatusError::ForkId(_)) => Some(PenaltyClass::High),
            // As for an implausible `NewHead`: the message is well formed, only unusable.
            Self::Status(StatusError::ImplausibleHead(_)) => Some(PenaltyClass::Low),
            Self::Status(_) => None,
            // Another network or genesis, as for leaf/1; a fork or range mismatch may pass
            // after an update.
            Self::EthStatus(
                EthStatusError::NetworkIdMismatch { .. } | EthStatusError::GenesisMismatch { .. },
            ) => Some(PenaltyClass::Fatal),
            Self::EthStatus(EthStatusError::ForkId(_)) => Some(PenaltyClass::High),
            Self::EthStatus(_) => None,
            Self::StatusTimeout => Some(PenaltyClass::High),
            e if e.is_protocol_breach() => Some(PenaltyClass::Fatal),
            _ => None,
        }
    }
}
