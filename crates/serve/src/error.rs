//! [`ServeError`], what can go wrong inside the server while answering.

use leafsync_leafdb::LeafDbError;

/// A failure on our side while answering (never the peer's fault). The handler answers such a
/// request empty, as go-ethereum's snap handlers do: nothing sent can be wrong, only incomplete.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The leafdb could not be read.
    #[error(transparent)]
    LeafDb(#[from] LeafDbError),
}
