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
