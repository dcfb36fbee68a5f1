//! What the daemon is doing: published by the node, shown by the admin API. A module of its own
//! so that `node` and `admin` both use it without depending on each other both ways.

/// What the daemon is doing, published by the [`crate::node::Node`] (the admin API's `phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonPhase {
    /// Syncing the state from peers.
    Syncing,
    /// Following the execution client (and serving).
    Following,
    /// Serving only.
    Serving,
    /// Syncing the state at the execution client's head over the leafdb, whose state went off
    /// the chain (the follower waits).
    Repairing,
}

impl DaemonPhase {
    /// The name in the admin API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Syncing => "syncing",
            Self::Following => "following",
            Self::Serving => "serving",
            Self::Repairing => "repairing",
        }
    }
}
