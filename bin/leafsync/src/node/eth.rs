//! eth/69 and snap/1 beside `leaf/1` (`serve.snap`, or `"snap"` in `sync.sources`): the
//! network's [`EthConfig`] built from the execution client and the leafdb.
//!
//! * **Head** ([`EthHead`]): the execution client's latest block, from its head feed, with the
//!   fork id of its `eth_config` (re-read once the head passes the next fork it announced);
//!   without `eth_config` (anvil) the chain preset's. Without `el.rpc`, and until the
//!   execution client first answers, the leafdb's head (the genesis for an empty leafdb).
//! * **Headers** ([`ElHeaderSource`]): from the execution client ([`ElHeaders`]); none without
//!   `el.rpc`.
//! * **snap/1** (`serve.snap`): [`SnapServer`] over the leafdb, answering at its head root and
//!   at recent roots as far as their tries resolve (others empty, as geth answers for states
//!   it no longer holds).

use std::sync::Arc;

use alloy_eip2124::ForkId;
use alloy_primitives::{B256, Bytes};
use futures::future::BoxFuture;
use leafsync_ingest::{
    ElHeaders, HEAD_POLL_INTERVAL, HeaderOrigin, HeaderQuery, RpcClient, head_feed,
};
use leafsync_leafdb::{BlockHeader, LeafDb};
use leafsync_p2p::{
    chain::ChainSpec,
    eth::{HashOrNumber, HeadersRequest},
    peers::{EthConfig, EthHead, HeaderSource, HeaderSourceError, NoHeaders, SnapHandler},
};
use leafsync_serve::snap::SnapServer;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::error::CliError;

/// EIP-2124's dividing line between block-number and timestamp fork activations (geth's
/// `forkid` package uses mainnet's genesis time the same way): a `next` at or above it is a
/// time.
const FORK_TIMESTAMP_THRESHOLD: u64 = 1_438_269_973;

/// What the network needs for eth/69 and snap/1, and the task that keeps its head current (it
/// ends with `stop`). Nothing waits for the execution client: the head starts at the leafdb's
/// (the genesis for an empty one) and moves to the execution client's once it answers.
pub(crate) fn eth_config(
    db: &Arc<LeafDb>,
    chain: &ChainSpec,
    el_rpc: Option<&str>,
    serve_snap: bool,
    stop: CancellationToken,
) -> Result<EthConfig, CliError> {
    let mut leafdb_heads = db.subscribe_head();
    let genesis = EthHead::genesis(chain);
    let first = leafdb_eth_head(*leafdb_heads.borrow_and_update(), genesis);
    let (tx, head) = watch::channel(first);
    let headers: Arc<dyn HeaderSource> = match el_rpc {
        Some(url) => {
            let headers = ElHeaders::new(url)?;
            tokio::spawn(follow_el_head(url.to_owned(), chain.genesis_hash, tx, stop));
            Arc::new(ElHeaderSource(Arc::new(headers)))
        }
        None => {
            tokio::spawn(async move {
                while let Some(head) = next_value(&mut leafdb_heads, &tx, &stop).await {
                    tx.send_replace(leafdb_eth_head(head, genesis));
                }
            });
            Arc::new(NoHeaders)
        }
    };
    let snap = serve_snap.then(|| Arc::new(SnapServer::new(db.clone())) as Arc<dyn SnapHandler>);
    info!(
        head = first.number,
        serve_snap,
        head_and_headers_from = if el_rpc.is_some() { "execution client" } else { "leafdb" },
        "eth/69 on"
    );
    Ok(EthConfig { head, headers, snap })
}

/// Header queries of eth/69 peers answered by the execution client.
#[derive(Debug)]
pub(crate) struct ElHeaderSource(pub(crate) Arc<ElHeaders>);

impl HeaderSource for ElHeaderSource {
    fn headers(
        &self,
        query: HeadersRequest,
    ) -> BoxFuture<'static, Result<Vec<Bytes>, HeaderSourceError>> {
        let headers = self.0.clone();
        let query = HeaderQuery {
            origin: match query.origin {
                HashOrNumber::Hash(hash) => HeaderOrigin::Hash(hash),
                HashOrNumber::Number(number) => HeaderOrigin::Number(number),
            },
            amount: query.amount,
            skip: query.skip,
            reverse: query.reverse,
        };
        Box::pin(async move { Ok(headers.headers(query).await) })
    }
}

/// The execution client's fork id, as last read from its `eth_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElForkId {
    /// Its own.
    Read(ForkId),
    /// It has no `eth_config` (anvil): the chain preset's, for good.
    NoConfig,
    /// The read failed: the chain preset's until the next head reads it again (one failed call
    /// at a fork would otherwise leave a devnet's daemon on the preset's id for good, and
    /// geth peers drop a node whose fork id they do not accept).
    Failed,
}

impl ElForkId {
    /// Reads it; a failure is logged at `warn` when the read before (`previous`) did not fail
    /// too, and the first success after failures at `info`.
    async fn read(rpc: &mut RpcClient, previous: Option<Self>) -> Self {
        let failed_before = previous == Some(Self::Failed);
        match rpc.fork_id().await {
            Ok(Some(id)) => {
                if failed_before {
                    info!(fork_id = ?id, "eth_config answered again: its fork id is used");
                }
                Self::Read(id)
            }
            Ok(None) => {
                debug!(
                    "the execution client has no eth_config fork id: the chain preset's is used"
                );
                Self::NoConfig
            }
            Err(error) if failed_before => {
                debug!(%error, "eth_config failed again");
                Self::Failed
            }
            Err(error) => {
                warn!(
                    %error,
                    "eth_config failed: the chain preset's fork id is used until it answers (asked \
                     again at each new head)"
                );
                Self::Failed
            }
        }
    }

    /// The fork id to announce: `None` is the chain preset's.
    const fn id(self) -> Option<ForkId> {
        match self {
            Self::Read(id) => Some(id),
            Self::NoConfig | Self::Failed => None,
        }
    }

    /// Whether to read it again at `head`: past the next fork it announced, or after a failure.
    const fn stale_at(self, head: &BlockHeader) -> bool {
        match self {
            Self::Read(id) => past_next_fork(&id, head),
            Self::NoConfig => false,
            Self::Failed => true,
        }
    }
}

/// Whether `head` has reached the fork `id` announces next.
const fn past_next_fork(id: &ForkId, head: &BlockHeader) -> bool {
    match id.next {
        0 => false,
        next if next >= FORK_TIMESTAMP_THRESHOLD => head.timestamp >= next,
        next => head.number >= next,
    }
}

/// Our eth/69 head at `head`. Its range starts at the head itself (EIP-7642's `earliest`, the
/// oldest block whose body and receipts a node serves): we answer every body and receipt
/// request empty, and a range from 0 told range-aware clients to ask us for history.
fn eth_head(head: &BlockHeader, fork_id: Option<ForkId>) -> EthHead {
    EthHead {
        number: head.number,
        hash: head.hash,
        timestamp: head.timestamp,
        earliest: head.number,
        fork_id,
    }
}

/// Sends the execution client's head at `url` to `tx` as it moves (once it answers), with the
/// fork id of its `eth_config`, read again once the head passes the next fork; until `stop`.
/// An execution client on another chain (block 0 is not `genesis`) is never announced.
async fn follow_el_head(
    url: String,
    genesis: B256,
    tx: watch::Sender<EthHead>,
    stop: CancellationToken,
) {
    let feed = tokio::select! {
        () = stop.cancelled() => return,
        feed = head_feed(&url, HEAD_POLL_INTERVAL, Some(genesis)) => feed,
    };
    let mut heads = match feed {
        Ok(heads) => heads,
        Err(error) => {
            error!(%error, "eth/69 head: not taken from the execution client");
            return;
        }
    };
    // The URL was checked by `ElHeaders::new`.
    let Ok(mut rpc) = RpcClient::new(&url) else { return };
    let mut fork_id = ElForkId::read(&mut rpc, None).await;
    let first = *heads.borrow_and_update();
    info!(
        number = first.number,
        fork_id = ?fork_id.id(),
        "eth/69 head from the execution client (fork id: None is the chain preset's)"
    );
    tx.send_replace(eth_head(&first, fork_id.id()));
    while let Some(head) = next_value(&mut heads, &tx, &stop).await {
        if fork_id.stale_at(&head) {
            fork_id = ElForkId::read(&mut rpc, Some(fork_id)).await;
        }
        tx.send_replace(eth_head(&head, fork_id.id()));
    }
}

/// The next value of `from`; `None` once `stop` is cancelled, `from`'s sender is gone or `to`
/// has no receivers left.
async fn next_value<T: Copy, U>(
    from: &mut watch::Receiver<T>,
    to: &watch::Sender<U>,
    stop: &CancellationToken,
) -> Option<T> {
    tokio::select! {
        () = stop.cancelled() => None,
        () = to.closed() => None,
        changed = from.changed() => changed.ok().map(|()| *from.borrow_and_update()),
    }
}

/// The leafdb's head as our eth/69 head (`genesis` until it has one past block 0), the fork id
/// from the chain preset.
fn leafdb_eth_head(head: Option<BlockHeader>, genesis: EthHead) -> EthHead {
    match head {
        Some(head) if head.number > 0 => eth_head(&head, None),
        _ => genesis,
    }
}

#[cfg(test)]
mod tests {
    use alloy_eip2124::ForkHash;
    use alloy_primitives::B256;

    use super::*;

    #[test]
    fn the_fork_id_is_read_again_past_the_next_fork() {
        let head = |number, timestamp| BlockHeader {
            number,
            hash: B256::ZERO,
            parent_hash: B256::ZERO,
            state_root: B256::ZERO,
            timestamp,
        };
        let id = |next| ForkId { hash: ForkHash([1; 4]), next };
        assert!(!past_next_fork(&id(0), &head(u64::MAX, u64::MAX)), "no next fork");
        let time = 1_761_677_592;
        assert!(!past_next_fork(&id(time), &head(99_999_999, time - 1)));
        assert!(past_next_fork(&id(time), &head(1, time)));
        assert!(!past_next_fork(&id(1_000), &head(999, time)), "a block-number fork");
        assert!(past_next_fork(&id(1_000), &head(1_000, 0)));
        // A failed read is tried again at the next head; an execution client without
        // `eth_config` is not asked again.
        let at = head(5, time);
        assert!(ElForkId::Failed.stale_at(&at) && ElForkId::Failed.id().is_none());
        assert!(!ElForkId::NoConfig.stale_at(&at) && ElForkId::NoConfig.id().is_none());
        assert!(!ElForkId::Read(id(0)).stale_at(&at));
        assert_eq!(ElForkId::Read(id(0)).id(), Some(id(0)));
    }

    /// Our range starts at our head: we serve no body or receipt (every such request is
    /// answered empty), so no range-aware client should pick us for history.
    #[test]
    fn our_range_holds_no_history() {
        let head = BlockHeader {
            number: 1_234,
            hash: B256::repeat_byte(1),
            parent_hash: B256::ZERO,
            state_root: B256::ZERO,
            timestamp: 5,
        };
        let range = eth_head(&head, None).range();
        assert_eq!((range.earliest, range.latest), (1_234, 1_234));
    }

    /// The fork id hoodi's `eth_config` gives at Prague (EIP-7910's sample) is the one our
    /// preset computes there: the two sources of the eth/69 fork id agree.
    #[test]
    fn eth_config_and_the_preset_agree_on_hoodi() {
        let text =
            include_str!("../../../../crates/ingest/tests/fixtures/el/eth_config_hoodi.json");
        let answer: leafsync_ingest::EthConfigAnswer = serde_json::from_str(text).unwrap();
        let hoodi = ChainSpec::preset("hoodi").unwrap();
        let prague = answer.current.activation_time;
        assert_eq!(hoodi.fork_id(1, prague), answer.fork_id());
    }
}
