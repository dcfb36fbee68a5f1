//! Following the neighbouring execution client over JSON-RPC: new heads, per-block state diffs
//! (`debug_traceBlockByHash` with the prestate tracer in diff mode) and withdrawals, applied to
//! the leafdb block by block (see docs/ingest.md).
//!
//! * [`rpc`]: the JSON-RPC client, HTTP or WebSocket by URL scheme.
//! * [`types`]: the wire shapes of blocks, withdrawals and diff-mode traces.
//! * [`fold`]: pure folding of a block's traces and withdrawals into one [`BlockDiff`].
//! * [`apply`]: the dedicated thread that folds and applies blocks.
//! * [`follower`]: the owner loop that keeps the leafdb at the neighbour's head.
//! * [`head`]: the neighbour's head as a `watch` feed (a moving sync pivot).
//! * [`header`]: full block headers and their RLP, checked against their hash.
//! * [`headers`]: [`ElHeaders`], header queries (eth/69 `GetBlockHeaders`) answered from the
//!   neighbour.
//! * [`mod@bench`]: synthetic mainnet-sized traces and the ingest benchmark.
//!
//! [`BlockDiff`]: leafsync_leafdb::BlockDiff

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod apply;
#[cfg(feature = "bench")]
pub mod bench;
pub mod error;
pub mod fold;
pub mod follower;
pub mod head;
pub mod header;
pub mod headers;
pub mod rpc;
pub mod system;
#[cfg(feature = "test-utils")]
pub mod test_utils;
pub mod types;

pub use apply::ApplyThread;
pub use error::{IngestError, RpcError};
pub use fold::{AccountInfo, StateView, fold_block, fold_full_block};
pub use follower::{
    DEFAULT_STUCK_AFTER, EL_BELOW_TOLERANCE, FOLLOW_LOG_INTERVAL, Follower, FollowerConfig,
    INITIAL_BACKOFF, IngestStats, MAX_BACKOFF, MAX_REORG_DEPTH, REPEAT_LOG_INTERVAL, UNDO_DEPTH,
};
pub use head::{
    HEAD_POLL_INTERVAL, PIVOT_CONFIRMATIONS, PIVOT_MAX_AGE, check_el_tracing, el_head, head_feed,
    head_feed_behind, wait_el_synced,
};
pub use header::RpcHeader;
pub use headers::{
    ElHeaders, HEADERS_QUERY_TIMEOUT, HeaderOrigin, HeaderQuery, MAX_HEADERS_PER_QUERY,
};
pub use rpc::{RawResponse, RpcClient};
pub use types::{
    DiffTrace, EthConfigAnswer, ForkConfig, RpcBlock, TracedAccount, TxTrace, Withdrawal,
};
