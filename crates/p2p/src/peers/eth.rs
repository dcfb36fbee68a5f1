//! What the network needs to speak `eth/69` and `snap/1` beside `leaf/1` ([`EthConfig`]): the
//! execution client's head for our eth Status ([`EthHead`]), a source of block headers for the
//! peers' `GetBlockHeaders` ([`HeaderSource`]) and a snap/1 server ([`SnapHandler`]).

use crate::{
    PeerId,
    chain::ChainSpec,
    eth::{self, BlockRangeUpdate, EthForkCheck, HeadersRequest},
    snap::SnapMessage,
};
use alloy_eip2124::ForkId;
use alloy_primitives::{B256, Bytes};
use futures::future::BoxFuture;
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;

/// Time a [`HeaderSource`] call may take before the request is answered empty (5 s): the
/// execution client answers a header range over JSON-RPC in milliseconds; geth's own header
/// requests time out after `requestTimeout`, so a slower answer would be useless anyway.
pub const HEADER_SOURCE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most [`HeaderSource`] calls running at once for one peer (1): the execution client's headers
/// are read over one connection, one query after the other, all peers' queries waiting their
/// turn; a second call of the same peer would only wait behind its first while holding a second
/// place in that queue. geth's skeleton sync asks a peer for one header batch at a time. A
/// peer's further requests wait in its session's queue (bounded by the in-flight rule), not in
/// the execution client's, so one peer holds at most one place there, and with
/// [`HEADER_BUDGET_PER_SECOND`] has at most that many headers a second read for it.
pub const MAX_CONCURRENT_HEADER_CALLS_PER_PEER: usize = 1;

/// Headers a second one peer may have read from the [`HeaderSource`] on average (2,048): four
/// of geth's skeleton batches (512 headers, asked one at a time per peer), while the headers a
/// flooding peer has read, each a JSON-RPC call to the execution client shared by all peers,
/// stay bounded. A query beyond the budget is not refused (honest peers ask in bursts, and a
/// syncing geth drops a peer that answers its skeleton requests empty): its call waits until
/// the budget has refilled for it, at most [`HEADER_BUDGET_BURST`] / this = 0.5 s, in the
/// session, outside the execution client's queue.
pub const HEADER_BUDGET_PER_SECOND: u32 = 2048;

/// Headers one peer may have read at once before its budget delays its calls (1,024, one full
/// query of `MAX_HEADERS_SERVE`): a peer that has asked nothing for a while is served at once,
/// whatever it asks.
pub const HEADER_BUDGET_BURST: u64 = eth::protocol::MAX_HEADERS_SERVE;

pub use crate::eth::protocol::{
    EMPTY_ANSWER_COST_BYTES, GOSSIP_BURST_BYTES, GOSSIP_BYTES_PER_SECOND,
};

/// Most headers served for a query that skips blocks (128, where a query without skips gets
/// `MAX_HEADERS_SERVE`, 1,024): each such header is a read of a block far from the others,
/// likely cold in the execution client. Syncing clients ask their bulk headers without skips
/// (geth's skeleton sync); skips serve small probes, the largest known being geth's legacy
/// skeleton of 128 headers (`MaxSkeletonSize`, skip 191).
pub const MAX_SKIPPING_HEADERS_SERVE: u64 = 128;

/// Most bytes of headers in one `BlockHeaders` answer (2 MiB, geth's `softResponseLimit`):
/// headers beyond it are left out, as geth does.
pub const MAX_HEADERS_RESPONSE_BYTES: usize = 2 * 1024 * 1024;

/// Blocks our head must move before we announce a `BlockRangeUpdate` (32, geth's
/// `blockRangeState.shouldSend`); a head that moves back is announced at once.
pub const BLOCK_RANGE_UPDATE_INTERVAL: u64 = 32;

/// The execution client's head, as the node's owner publishes it (through a `watch` channel):
/// it fills our `eth/69` Status at each handshake and our `BlockRangeUpdate`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthHead {
    /// Latest block number.
    pub number: u64,
    /// Latest block hash. Never zero: geth refuses a Status whose latest hash is zero.
    pub hash: B256,
    /// Latest block timestamp (selects the EIP-2124 fork id).
    pub timestamp: u64,
    /// Oldest block whose body and receipts we serve (EIP-7642): the daemon gives its latest,
    /// since it answers every body and receipt request empty.
    pub earliest: u64,
    /// The fork id the execution client reports (EIP-7910 `eth_config`), when it does: it
    /// replaces the one computed from our chain spec, so that a fork our preset does not know
    /// yet is still announced right.
    pub fork_id: Option<ForkId>,
}

impl EthHead {
    /// The genesis block of `chain` as the head (before the execution client has told us
    /// better).
    pub fn genesis(chain: &ChainSpec) -> Self {
        Self { number: 0, hash: chain.genesis_hash, timestamp: 0, earliest: 0, fork_id: None }
    }

    /// The fork id we announce: the execution client's, else our chain spec's at this head.
    pub fn fork_id(&self, chain: &ChainSpec) -> ForkId {
        self.fork_id.unwrap_or_else(|| chain.fork_id(self.number, self.timestamp))
    }

    /// The block range we announce.
    pub const fn range(&self) -> BlockRangeUpdate {
        BlockRangeUpdate {
            earliest: if self.earliest < self.number { self.earliest } else { self.number },
            latest: self.number,
            latest_hash: self.hash,
        }
    }

    /// Our `eth/69` Status at this head.
    pub fn status(&self, chain: &ChainSpec) -> eth::Status {
        let mut status = eth::Status::ours(chain, self.number, self.timestamp, self.range());
        status.fork_id = self.fork_id(chain);
        status
    }

    /// The check of a peer's `eth/69` fork id at this head: our chain's filter, and the fork
    /// id we announce.
    pub fn fork_check(&self, chain: &ChainSpec) -> EthForkCheck {
        EthForkCheck::new(chain.fork_filter(self.number, self.timestamp), self.fork_id(chain))
    }
}

/// Why a [`HeaderSource`] has no answer (the execution client failed, say). The request is
/// answered empty and the error logged.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HeaderSourceError(pub Box<dyn std::error::Error + Send + Sync>);

impl HeaderSourceError {
    /// Wraps any error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(error))
    }
}

/// Answers the peers' `GetBlockHeaders` (implemented over the execution client's JSON-RPC by
/// the node).
///
/// The session has already clamped `amount` to `MAX_HEADERS_SERVE` (to
/// [`MAX_SKIPPING_HEADERS_SERVE`] with a skip); it runs at most
/// [`MAX_CONCURRENT_HEADER_CALLS_PER_PEER`] calls at once per peer, within the peer's
/// [`HEADER_BUDGET_PER_SECOND`], gives each [`HEADER_SOURCE_TIMEOUT`], keeps at most `amount`
/// headers and [`MAX_HEADERS_RESPONSE_BYTES`], and answers empty on an error, a timeout or a
/// panic.
pub trait HeaderSource: Send + Sync + 'static {
    /// The RLP-encoded headers `query` selects, in its order; fewer (or none) for those the
    /// source does not have.
    fn headers(
        &self,
        query: HeadersRequest,
    ) -> BoxFuture<'static, Result<Vec<Bytes>, HeaderSourceError>>;
}

/// A [`HeaderSource`] that has no headers: every `GetBlockHeaders` is answered empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHeaders;

impl HeaderSource for NoHeaders {
    fn headers(
        &self,
        _query: HeadersRequest,
    ) -> BoxFuture<'static, Result<Vec<Bytes>, HeaderSourceError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Answers the `snap/1` requests of peers (the `serve` crate implements it over the leafdb).
///
/// Like [`super::RequestHandler`]: called on `tokio::task::spawn_blocking` under the same
/// global cap and at most [`super::MAX_CONCURRENT_HANDLER_CALLS_PER_PEER`] calls at once per
/// peer, with a request that passed every limit of `SnapMessage::decode` and the in-flight
/// rule. The session sets the request id of the answer; an answer of the wrong kind, or a
/// panic, is replaced by the empty answer of the right kind.
pub trait SnapHandler: Send + Sync + 'static {
    /// Answers `request` (a `GetAccountRange`, `GetStorageRanges`, `GetByteCodes` or
    /// `GetTrieNodes`) from `peer`.
    fn handle(&self, peer: PeerId, request: &SnapMessage) -> SnapMessage;
}

/// Everything `eth/69` and `snap/1` need; `NetworkConfig::eth` holds it when enabled.
#[derive(Clone)]
pub struct EthConfig {
    /// The execution client's head; the node's owner updates it. Each handshake builds our
    /// eth Status from it, and its moves are announced as `BlockRangeUpdate` (every
    /// [`BLOCK_RANGE_UPDATE_INTERVAL`] blocks).
    pub head: watch::Receiver<EthHead>,
    /// Answers `GetBlockHeaders`. [`NoHeaders`] answers every request empty.
    pub headers: Arc<dyn HeaderSource>,
    /// Answers snap/1 requests; `None` answers each with the empty answer of its kind (which
    /// snap/1 clients read as "no state for this root").
    pub snap: Option<Arc<dyn SnapHandler>>,
}

impl EthConfig {
    /// eth/69 at `head`, answering headers empty and serving no snap/1 state.
    pub fn new(head: watch::Receiver<EthHead>) -> Self {
        Self { head, headers: Arc::new(NoHeaders), snap: None }
    }
}

impl std::fmt::Debug for EthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EthConfig")
            .field("head", &*self.head.borrow())
            .field("snap", &self.snap.is_some())
            .finish_non_exhaustive()
    }
}

/// The fork id of our node record's `eth` entry: the execution client's when eth is enabled
/// (it is the one our eth Status announces), else our leafdb head's.
pub(crate) fn record_fork_id(
    chain: &ChainSpec,
    head: &watch::Receiver<super::LocalHead>,
    eth: Option<&EthConfig>,
) -> ForkId {
    match eth {
        Some(eth) => eth.head.borrow().fork_id(chain),
        None => {
            let local = *head.borrow();
            chain.fork_id(local.head.number, local.timestamp)
        }
    }
}

/// Whether a move of our head from `sent` (the range last announced) to `next` is worth a
/// `BlockRangeUpdate` (geth's rule: every [`BLOCK_RANGE_UPDATE_INTERVAL`] blocks forward, at
/// once backwards).
pub(crate) fn should_announce(sent: &BlockRangeUpdate, next: &BlockRangeUpdate) -> bool {
    next.latest < sent.latest || next.latest - sent.latest >= BLOCK_RANGE_UPDATE_INTERVAL
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(latest: u64) -> BlockRangeUpdate {
        BlockRangeUpdate { earliest: 0, latest, latest_hash: B256::repeat_byte(1) }
    }

    #[test]
    fn block_range_updates_every_32_blocks_or_backwards() {
        assert!(!should_announce(&range(100), &range(100)));
        assert!(!should_announce(&range(100), &range(131)));
        assert!(should_announce(&range(100), &range(132)));
        assert!(should_announce(&range(100), &range(99)));
    }

    #[test]
    fn the_execution_clients_fork_id_wins() {
        let chain = ChainSpec::preset("mainnet").expect("preset");
        let mut head = EthHead::genesis(&chain);
        assert_eq!(head.status(&chain).fork_id, chain.fork_id(0, 0));
        let theirs = ForkId { hash: alloy_eip2124::ForkHash([1, 2, 3, 4]), next: 7 };
        head.fork_id = Some(theirs);
        assert_eq!(head.status(&chain).fork_id, theirs);
        assert_eq!(head.status(&chain).latest_hash, chain.genesis_hash);
    }
}
