//! State sync: pivot selection, skeleton, chunk scheduling across many peers, import and
//! verification against the pivot, heal, flat-state reconciliation.
//!
//! One owner loop ([`Syncer`]) drives everything over peers behind the [`SyncPeer`] trait (a
//! `NetworkHandle` adapter for real peers, simulated peers in tests); [`run_until_done`] is the
//! daemon's entry point, retrying a sync that stopped for lack of peers. `docs/sync.md`
//! describes the algorithm, which file owns what, and what is not built yet.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod carry;
mod codes;
pub mod config;
mod dispatch;
pub mod error;
mod heal;
mod holding;
mod import;
pub mod link;
mod marks;
pub mod peer;
mod peer_set;
mod prepare;
pub mod progress;
mod rendezvous;
mod resume;
mod retry;
pub mod snap;
pub mod sources;
pub mod stats;
pub mod syncer;
mod tasks;
/// The unit tests' allocator, which counts what each thread holds (`codes_tests.rs` measures
/// the code queue with it while other tests run).
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: leafsync_p2p::test_utils::CountingAlloc =
    leafsync_p2p::test_utils::CountingAlloc::new();
#[cfg(test)]
mod test_log;
pub mod window;
mod work;

pub use config::{SyncConfig, SyncMode};
pub use error::SyncError;
pub use peer::{NetworkPeer, NewPeers, PeerFuture, SyncPeer, request_len, response_len};
pub use progress::{HealRoot, PROGRESS_VERSION, SyncProgress};
pub use retry::{retry_transient, run_until_done};
pub use snap::{NetworkSnapPeer, SnapPeer, SnapTransport};
pub use sources::{PeerSources, has_sync_peers, network_peers, watch_network_peers};
pub use stats::{Phase, PhaseSpan, PhaseTimes, SyncStats, WorkKind};
pub use syncer::{SyncOutcome, Syncer, choose_pivot, chunk_depth};
pub use window::PeerWindow;
