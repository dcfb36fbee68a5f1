//! State sync: pivot selection, skeleton, chunk scheduling across many peers, import and
//! verification against the pivot, heal, flat-state reconciliation.
//!
//! One owner loop ([`Syncer`]) drives everything over peers behind the [`SyncPeer`] trait (a
//! `NetworkHandle` adapter for real peers, simulated peers in tests); `docs/sync.md` describes
//! the algorithm and what is not built yet.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod config;
pub mod error;
mod heal;
mod import;
pub mod peer;
pub mod progress;
pub mod rate;
pub mod stats;
pub mod syncer;
mod tasks;

pub use config::{SyncConfig, SyncMode};
pub use error::SyncError;
pub use peer::{NetworkPeer, PeerFuture, SyncPeer, network_peers, watch_network_peers};
pub use progress::{HealRoot, PROGRESS_VERSION, SyncProgress};
pub use rate::PeerRate;
pub use stats::{Phase, SyncStats};
pub use syncer::{SyncOutcome, Syncer, choose_pivot, chunk_depth};
