//! The binary's error type.

use std::path::PathBuf;

use leafsync_leafdb::{GenesisError, LeafDbError};

/// What a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The leafdb failed.
    #[error(transparent)]
    LeafDb(#[from] LeafDbError),
    /// A genesis file was rejected.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    /// A file or directory could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Ingest failed.
    #[error(transparent)]
    Ingest(#[from] leafsync_ingest::IngestError),
    /// The configuration was rejected.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A sync failed (its cause chain kept).
    #[error("sync: {0}")]
    Sync(#[from] leafsync_sync::SyncError),
    /// The node key file is unusable.
    #[error(transparent)]
    NodeKey(#[from] leafsync_p2p::NodeKeyError),
    /// The network could not start.
    #[error("network: {0}")]
    Network(#[from] leafsync_p2p::peers::NetworkError),
    /// The task following the execution client ended without an answer (it panicked): the node
    /// no longer follows the chain, so it stops with an error and a supervisor restarts it.
    #[error("the follower of the execution client failed: {0}")]
    FollowerFailed(String),
    /// A file or value is unusable.
    #[error("{what}: {reason}")]
    Invalid {
        /// The file or value.
        what: String,
        /// Why.
        reason: String,
    },
}

/// The exit status of a command that found the leafdb damaged (65, `EX_DATAERR` of sysexits):
/// every start meets the damage again, so a supervisor should not restart into it (systemd:
/// `RestartPreventExitStatus=65`). Any other error exits with 1.
pub(crate) const DAMAGED_EXIT: u8 = 65;

impl CliError {
    /// Whether the leafdb was found damaged ([`LeafDbError::Damaged`]), by whichever layer met
    /// it: opening it, following the chain or syncing.
    pub fn leafdb_damaged(&self) -> bool {
        let leafdb = match self {
            Self::LeafDb(e)
            | Self::Ingest(leafsync_ingest::IngestError::LeafDb(e))
            | Self::Sync(leafsync_sync::SyncError::LeafDb(e)) => e,
            _ => return false,
        };
        matches!(leafdb, LeafDbError::Damaged { .. })
    }
}
