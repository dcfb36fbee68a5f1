//! [`SyncError`]: why a sync stopped.

use alloy_primitives::B256;
use leafsync_leafdb::LeafDbError;

/// Why a sync could not finish.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The leafdb failed.
    #[error(transparent)]
    LeafDb(#[from] LeafDbError),
    /// No peer is left to ask (all dropped or banned, or none given).
    #[error("no usable peers left")]
    NoPeers,
    /// No pivot: none configured and no peer announced a head.
    #[error("no pivot: none configured and no peer announced a head")]
    NoPivot,
    /// No trusted pivot (configured, or from the pivot feed) and peers may not choose one.
    #[error("no trusted pivot: configure the execution client (el.rpc) or a checkpoint")]
    NoTrustedPivot,
    /// The final check found the flat state incomplete after every repair pass.
    #[error("the synced state is incomplete after {passes} repair passes: {what}")]
    Incomplete {
        /// Repair passes made.
        passes: u32,
        /// What the last check found.
        what: String,
    },
    /// Every peer was asked several rounds for an item and none had it.
    #[error("no peer serves {what} {hash} after {rounds} rounds")]
    Unavailable {
        /// What was asked for.
        what: &'static str,
        /// Its hash.
        hash: B256,
        /// Rounds over all peers.
        rounds: u32,
    },
    /// A node that hashes to what its verified parent references does not decode: the pivot's
    /// trie itself is malformed.
    #[error("the pivot's node {hash} does not decode")]
    BadPivotNode {
        /// The node's hash.
        hash: B256,
    },
    /// A trie path grew beyond 64 nibbles (a malformed pivot trie).
    #[error("trie path longer than 64 nibbles")]
    PathTooLong,
    /// The thread writing verified chunks could not start, or ended without a result.
    #[error("chunk writer: {0}")]
    ChunkWriter(String),
    /// The final flat-state check's thread ended without a result (it panicked).
    #[error("flat-state check: {0}")]
    Check(String),
    /// The persisted progress record does not decode.
    #[error("sync progress record: {0}")]
    ProgressDecode(#[from] alloy_rlp::Error),
    /// The persisted progress record is of a version this build does not know.
    #[error("sync progress record version {0} is unknown")]
    ProgressVersion(u8),
    /// Everything was fetched but the rebuilt root differs from the pivot's.
    #[error("rebuilt root {got} differs from the pivot root {expected}")]
    RootMismatch {
        /// Root of the rebuilt trie.
        got: B256,
        /// The pivot's state root.
        expected: B256,
    },
}

impl SyncError {
    /// Whether a new sync on the same leafdb may succeed where this one stopped: no usable peer
    /// was left ([`Self::NoPeers`]) or none had an item ([`Self::Unavailable`]). Peers come and
    /// go, and the new sync resumes from the progress record; [`crate::run_until_done`] retries
    /// these. Every other error needs an operator: a broken leafdb, no trusted pivot, a pivot
    /// whose trie is malformed or does not rebuild.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::NoPeers | Self::Unavailable { .. })
    }
}
