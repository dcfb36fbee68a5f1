//! Checking a peer's [`Status`] against our chain, and what a mismatch earns.

use super::{
    head::InvalidHead,
    protocol::PROTOCOL_VERSION,
    types::{ChainHead, ServeFlags, Status},
};
use crate::{
    chain::{ChainSpec, expect_ours},
    p2pstream::DisconnectReason,
};
use alloy_eip2124::{ForkFilter, ValidationError};
use alloy_primitives::B256;

/// Why a peer's `Status` is incompatible with ours. Each variant says which devp2p disconnect
/// reason to send ([`Self::disconnect_reason`]); none of them is a protocol breach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// The peer speaks another `leaf` version in its `Status`.
    #[error("leaf protocol version mismatch: ours {ours}, theirs {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u8,
        /// The peer's.
        theirs: u8,
    },
    /// The peer is on another network.
    #[error("network id mismatch: ours {ours}, theirs {theirs}")]
    NetworkIdMismatch {
        /// Our network id.
        ours: u64,
        /// The peer's.
        theirs: u64,
    },
    /// Same network id, different genesis block.
    #[error("genesis mismatch: ours {ours}, theirs {theirs}")]
    GenesisMismatch {
        /// Our genesis hash.
        ours: B256,
        /// The peer's.
        theirs: B256,
    },
    /// Same genesis, but the EIP-2124 fork ids are incompatible (one side is stale or on a fork).
    #[error("incompatible fork id: {0}")]
    ForkId(#[from] ValidationError),
    /// The head fails the checks a `NewHead` gets (a zero hash past block 0, an impossible
    /// number): the sync would take it as the peer's head, and it would seed the rewind rule of
    /// the peer's later `NewHead`s.
    #[error("implausible head: {0}")]
    ImplausibleHead(#[from] InvalidHead),
}

impl StatusError {
    /// The devp2p disconnect reason to send: 0x03 [`DisconnectReason::UselessPeer`] for another
    /// network or genesis (the peer can never be useful), 0x10
    /// [`DisconnectReason::SubprotocolSpecific`] for a version or fork-id mismatch or an
    /// implausible head (the peer may become useful after a software update).
    pub fn disconnect_reason(&self) -> DisconnectReason {
        match self {
            Self::NetworkIdMismatch { .. } | Self::GenesisMismatch { .. } => {
                DisconnectReason::UselessPeer
            }
            Self::VersionMismatch { .. } | Self::ForkId(_) | Self::ImplausibleHead(_) => {
                DisconnectReason::SubprotocolSpecific
            }
        }
    }

    /// Whether the peer should also be banned from redialing (it is on another chain and will
    /// never be useful) rather than only disconnected.
    pub fn should_ban(&self) -> bool {
        matches!(self, Self::NetworkIdMismatch { .. } | Self::GenesisMismatch { .. })
    }
}

impl Status {
    /// Our `Status` for `chain` with our head (`head_timestamp` selects the fork id).
    pub fn ours(
        chain: &ChainSpec,
        head: ChainHead,
        head_timestamp: u64,
        account_estimate: u64,
        serves: ServeFlags,
    ) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            network_id: chain.network_id,
            genesis_hash: chain.genesis_hash,
            fork_id: chain.fork_id(head.number, head_timestamp),
            head,
            account_estimate,
            serves,
        }
    }

    /// Checks a peer's `Status` against our chain and our fork filter (built for our current
    /// head), in this order: protocol version, network id, genesis hash, fork id, head (past
    /// block 0, the checks of a `NewHead` that need no previous head).
    pub fn validate(&self, chain: &ChainSpec, filter: &ForkFilter) -> Result<(), StatusError> {
        expect_ours(PROTOCOL_VERSION, self.version, |ours, theirs| StatusError::VersionMismatch {
            ours,
            theirs,
        })?;
        expect_ours(chain.network_id, self.network_id, |ours, theirs| {
            StatusError::NetworkIdMismatch { ours, theirs }
        })?;
        expect_ours(chain.genesis_hash, self.genesis_hash, |ours, theirs| {
            StatusError::GenesisMismatch { ours, theirs }
        })?;
        filter.validate(self.fork_id)?;
        // A node without a head yet announces block 0 with a zero hash (the daemon before its
        // first sync, the loopback servers with their root), so block 0 is taken as it comes.
        if self.head.number != 0 {
            self.head.check_plausible()?;
        }
        Ok(())
    }
}
