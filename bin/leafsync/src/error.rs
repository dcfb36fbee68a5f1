//! The binary's error type.

use std::path::PathBuf;

use leafsync_leafdb::{GenesisError, LeafDbError};

/// What a command can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
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
}
