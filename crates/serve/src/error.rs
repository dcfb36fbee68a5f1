//! [`ServeError`], what can go wrong inside the server while answering, and [`Refusal`], why a
//! peer's request is not answered but penalised.

use leafsync_leafdb::LeafDbError;
use leafsync_p2p::{
    DisconnectReason,
    leaf::{LeafError, PenaltyClass},
};

/// A failure on our side while answering (never the peer's fault). The handler answers such a
/// request empty, as go-ethereum's snap handlers do: nothing sent can be wrong, only incomplete.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The leafdb could not be read.
    #[error(transparent)]
    LeafDb(#[from] LeafDbError),
}

/// Why a peer's message earns a penalty instead of an answer (see `docs/leaf-protocol.md`, "Bad
/// input and its consequence").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The message could not be decoded within its limits (oversize, malformed, too many items,
    /// unknown id); the decoder's error says which and what it costs.
    #[error(transparent)]
    Decode(#[from] LeafError),
    /// The peer has more requests being served than the protocol allows in flight.
    #[error("peer has {count} requests in flight, more than the limit of {limit}")]
    TooManyInFlight {
        /// Requests in flight including this one.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A request lists more items than the protocol allows (a message that did not come through
    /// the decoder, which checks the same limits).
    #[error("request lists {count} {what}, more than the limit of {limit}")]
    TooManyItems {
        /// What was counted.
        what: &'static str,
        /// How many there were.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

impl Refusal {
    /// The penalty the peer earns.
    pub fn penalty(&self) -> PenaltyClass {
        match self {
            Self::Decode(e) => e.penalty(),
            Self::TooManyInFlight { .. } | Self::TooManyItems { .. } => PenaltyClass::Fatal,
        }
    }

    /// The disconnect reason to send, `None` when the message is only dropped.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        match self {
            Self::Decode(e) => e.disconnect_reason(),
            Self::TooManyInFlight { .. } | Self::TooManyItems { .. } => {
                Some(DisconnectReason::ProtocolBreach)
            }
        }
    }
}
