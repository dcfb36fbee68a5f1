//! What makes a peer's head plausible: the checks of a `NewHead` and of a `Status` head, kept
//! beside [`ChainHead`] so that the handshake and the session's head filter
//! (`crate::peers::HeadFilter`) share them.

use super::ChainHead;

/// How far a peer's head may go back from its previous one. Post-merge reorgs are a few blocks
/// deep and finality comes after 64 slots; a head further back is not a reorg we follow.
pub const MAX_HEAD_REWIND: u64 = 64;

/// Largest plausible block number (2^40, ~400 000 years of 12 s blocks). Anything above is a lie
/// meant to overflow `number + 1` somewhere downstream.
pub const MAX_HEAD_NUMBER: u64 = 1 << 40;

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHead {
    /// Its block hash or state root is all zeros.
    #[error("zero block hash or state root")]
    ZeroHash,
    /// Its number is above [`MAX_HEAD_NUMBER`].
    #[error("block number {0} is not plausible")]
    Implausible(u64),
    /// It goes back more than [`MAX_HEAD_REWIND`] blocks from the previous head.
    #[error("head {number} is more than {MAX_HEAD_REWIND} blocks behind the previous {previous}")]
    Rewind {
        /// The announced number.
        number: u64,
        /// The previous head's number.
        previous: u64,
    },
}

impl ChainHead {
    /// The checks any head of a peer must pass, each `NewHead` as well as its first (in
    /// `Status`, past block 0): no zero block hash or state root, no number above
    /// [`MAX_HEAD_NUMBER`]. The rewind rule needs a previous head and is the session's
    /// (`crate::peers::HeadFilter`).
    pub fn check_plausible(&self) -> Result<(), InvalidHead> {
        if self.hash.is_zero() || self.state_root.is_zero() {
            return Err(InvalidHead::ZeroHash);
        }
        if self.number > MAX_HEAD_NUMBER {
            return Err(InvalidHead::Implausible(self.number));
        }
        Ok(())
    }
}
