//! Checking a peer's `eth/69` [`Status`] the way go-ethereum checks ours (`readStatus` in
//! `eth/protocols/eth/handshake.go`): network id, version, genesis, fork id, block range.

use super::{
    protocol::PROTOCOL_VERSION,
    types::{BlockRangeUpdate, Status},
};
use crate::{
    chain::{ChainSpec, expect_ours},
    leaf::MAX_HEAD_NUMBER,
    p2pstream::DisconnectReason,
};
use alloy_eip2124::{ForkFilter, ForkId, ValidationError};
use alloy_primitives::B256;

/// What an eth/69 peer's fork id is checked against (its `Status`, its record's `eth` entry):
/// the chain preset's [`ForkFilter`] at our head, and the fork id we announce (the execution
/// client's, from its `eth_config`, when it gives one), which passes as it is. The preset's
/// schedule lacks a fork activated after this build (a devnet's, or one shipped later), and
/// alone it would refuse every peer past such a fork.
#[derive(Debug, Clone)]
pub struct EthForkCheck {
    filter: ForkFilter,
    ours: ForkId,
}

impl EthForkCheck {
    /// Checks against `filter`, and lets `ours` pass.
    pub const fn new(filter: ForkFilter, ours: ForkId) -> Self {
        Self { filter, ours }
    }

    /// The fork id we announce (the one that passes as it is).
    pub const fn ours(&self) -> ForkId {
        self.ours
    }

    /// Whether a peer announcing `theirs` is compatible: see the type's docs.
    pub fn validate(&self, theirs: ForkId) -> Result<(), ValidationError> {
        if theirs == self.ours { Ok(()) } else { self.filter.validate(theirs) }
    }
}

/// Why a peer's `eth/69` `Status` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EthStatusError {
    /// Another network.
    #[error("eth: network id mismatch: ours {ours}, theirs {theirs}")]
    NetworkIdMismatch {
        /// Ours.
        ours: u64,
        /// Theirs.
        theirs: u64,
    },
    /// The `Status` names another `eth` version than the one negotiated.
    #[error("eth: protocol version mismatch: negotiated {ours}, status says {theirs}")]
    VersionMismatch {
        /// The negotiated version.
        ours: u64,
        /// The one in the message.
        theirs: u32,
    },
    /// Another genesis.
    #[error("eth: genesis mismatch: ours {ours}, theirs {theirs}")]
    GenesisMismatch {
        /// Ours.
        ours: B256,
        /// Theirs.
        theirs: B256,
    },
    /// The fork filter rejects the peer's fork id.
    #[error("eth: fork id rejected: {0}")]
    ForkId(#[from] ValidationError),
    /// The announced block range is impossible.
    #[error("eth: invalid block range: {0}")]
    BlockRange(#[from] BlockRangeError),
}

/// What is wrong with an announced block range (`Status` or `BlockRangeUpdate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlockRangeError {
    /// `earliest > latest`.
    #[error("earliest {earliest} > latest {latest}")]
    EarliestAfterLatest {
        /// Earliest block.
        earliest: u64,
        /// Latest block.
        latest: u64,
    },
    /// The latest hash is zero.
    #[error("zero latest hash")]
    ZeroLatestHash,
    /// A `Status`'s latest block is above [`MAX_HEAD_NUMBER`] (a `BlockRangeUpdate`'s is checked
    /// by its session, which drops it with a low penalty).
    #[error("latest block {0} is not plausible")]
    Implausible(u64),
}

impl EthStatusError {
    /// The disconnect reason: another network or genesis is useless (0x03); a version, fork or
    /// range problem is subprotocol-specific (0x10).
    pub fn disconnect_reason(&self) -> DisconnectReason {
        match self {
            Self::NetworkIdMismatch { .. } | Self::GenesisMismatch { .. } => {
                DisconnectReason::UselessPeer
            }
            Self::VersionMismatch { .. } | Self::ForkId(_) | Self::BlockRange(_) => {
                DisconnectReason::SubprotocolSpecific
            }
        }
    }
}

impl BlockRangeUpdate {
    /// geth's `BlockRangeUpdatePacket.Validate`: `earliest <= latest` and a non-zero hash.
    pub fn validate(&self) -> Result<(), BlockRangeError> {
        if self.earliest > self.latest {
            return Err(BlockRangeError::EarliestAfterLatest {
                earliest: self.earliest,
                latest: self.latest,
            });
        }
        if self.latest_hash == B256::ZERO {
            return Err(BlockRangeError::ZeroLatestHash);
        }
        Ok(())
    }
}

impl Status {
    /// Our `Status` for `chain`: the fork id at our head (`head_number`, `head_timestamp`, as
    /// the execution client reports it) and the block range we announce.
    pub fn ours(
        chain: &ChainSpec,
        head_number: u64,
        head_timestamp: u64,
        range: BlockRangeUpdate,
    ) -> Self {
        Self {
            version: PROTOCOL_VERSION as u32,
            network_id: chain.network_id,
            genesis: chain.genesis_hash,
            fork_id: chain.fork_id(head_number, head_timestamp),
            earliest: range.earliest,
            latest: range.latest,
            latest_hash: range.latest_hash,
        }
    }

    /// The block range the `Status` announces.
    pub const fn block_range(&self) -> BlockRangeUpdate {
        BlockRangeUpdate {
            earliest: self.earliest,
            latest: self.latest,
            latest_hash: self.latest_hash,
        }
    }

    /// Checks a peer's `Status` in geth's order: network id, version, genesis, fork id (with
    /// `forks`, built for our head), block range.
    pub fn validate(&self, chain: &ChainSpec, forks: &EthForkCheck) -> Result<(), EthStatusError> {
        expect_ours(chain.network_id, self.network_id, |ours, theirs| {
            EthStatusError::NetworkIdMismatch { ours, theirs }
        })?;
        if u64::from(self.version) != PROTOCOL_VERSION {
            return Err(EthStatusError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: self.version,
            });
        }
        expect_ours(chain.genesis_hash, self.genesis, |ours, theirs| {
            EthStatusError::GenesisMismatch { ours, theirs }
        })?;
        forks.validate(self.fork_id)?;
        self.block_range().validate()?;
        // As a `leaf/1` Status head: the latest block becomes the peer's head for the sync.
        if self.latest > MAX_HEAD_NUMBER {
            return Err(BlockRangeError::Implausible(self.latest).into());
        }
        Ok(())
    }
}
