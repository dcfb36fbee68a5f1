//! eth/69 and snap/1 beside `leaf/1` (`serve.snap`, or `"snap"` in `sync.sources`): the
//! network's [`EthConfig`] built from the execution client and the leafdb.
//!
//! * **Head** ([`EthHead`]): the execution client's latest block, from its head feed, with the
//!   fork id of its `eth_config` (re-read once the head passes the next fork it announced);
//!   without `eth_config` (anvil) the chain preset's. Without `el.rpc`, the leafdb's head.
//! * **Headers** ([`ElHeaderSource`]): from the execution client ([`ElHeaders`]); none without
//!   `el.rpc`.
//! * **snap/1** (`serve.snap`): [`SnapServer`] over the leafdb, answering at its head root
//!   (other roots empty, as geth answers for states it no longer holds).

use std::sync::Arc;

use alloy_eip2124::ForkId;
use alloy_primitives::Bytes;
use futures::future::BoxFuture;
use leafsync_ingest::{
    ElHeaders, HEAD_POLL_INTERVAL, HeaderOrigin, HeaderQuery, RpcClient, head_feed,
};
use leafsync_leafdb::{BlockHeader, LeafDb};
use leafsync_p2p::{
    chain::ChainSpec,
    eth::{HashOrNumber, HeadersRequest},
    peers::{EthConfig, EthHead, HeaderSource, HeaderSourceError, SnapHandler},
};
use leafsync_serve::snap::SnapServer;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::CliError;

/// EIP-2124's dividing line between block-number and timestamp fork activations (geth's
/// `forkid` package uses mainnet's genesis time the same way): a `next` at or above it is a
/// time.
const FORK_TIMESTAMP_THRESHOLD: u64 = 1_438_269_973;

/// What the network needs for eth/69 and snap/1, and the tasks that keep its head current
/// (they end with `stop`).
pub(crate) async fn eth_config(
    db: &Arc<LeafDb>,
    chain: &ChainSpec,
    el_rpc: Option<&str>,
    serve_snap: bool,
    stop: CancellationToken,
) -> Result<EthConfig, CliError> {
    let (head, headers): (_, Arc<dyn HeaderSource>) = match el_rpc {
        Some(url) => {
            let head = el_eth_head(url, stop).await?;
            (head, Arc::new(ElHeaderSource(Arc::new(ElHeaders::new(url)?))))
        }
        None => (leafdb_eth_head(db, chain, stop), Arc::new(leafsync_p2p::peers::NoHeaders)),
    };
    let snap = serve_snap.then(|| Arc::new(SnapServer::new(db.clone())) as Arc<dyn SnapHandler>);
    let first = *head.borrow();
    info!(
        head = first.number,
        fork_id = ?first.fork_id(chain),
        serve_snap,
        headers = el_rpc.is_some(),
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

/// The execution client's fork id, `None` when it has no `eth_config` (or it failed: logged).
async fn el_fork_id(rpc: &mut RpcClient) -> Option<ForkId> {
    match rpc.fork_id().await {
        Ok(Some(id)) => Some(id),
        Ok(None) => {
            debug!("the execution client has no eth_config fork id: the chain preset's is used");
            None
        }
        Err(error) => {
            warn!(%error, "eth_config failed: the chain preset's fork id is used");
            None
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

fn eth_head(head: &BlockHeader, fork_id: Option<ForkId>) -> EthHead {
    EthHead {
        number: head.number,
        hash: head.hash,
        timestamp: head.timestamp,
        earliest: 0,
        fork_id,
    }
}

/// The execution client's head as our eth/69 head, moving with it; the fork id from its
/// `eth_config`, read again once the head passes the next fork.
async fn el_eth_head(
    url: &str,
    stop: CancellationToken,
) -> Result<watch::Receiver<EthHead>, CliError> {
    let mut heads = head_feed(url, HEAD_POLL_INTERVAL).await?;
    let mut rpc = RpcClient::new(url)?;
    let mut fork_id = el_fork_id(&mut rpc).await;
    let first = eth_head(&heads.borrow_and_update(), fork_id);
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        while let Some(head) = next_value(&mut heads, &tx, &stop).await {
            if fork_id.is_some_and(|id| past_next_fork(&id, &head)) {
                fork_id = el_fork_id(&mut rpc).await;
            }
            tx.send_replace(eth_head(&head, fork_id));
        }
    });
    Ok(rx)
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

/// Without an execution client: the leafdb's head as our eth/69 head (the genesis until it has
/// one), the fork id from the chain preset.
fn leafdb_eth_head(
    db: &Arc<LeafDb>,
    chain: &ChainSpec,
    stop: CancellationToken,
) -> watch::Receiver<EthHead> {
    let mut heads = db.subscribe_head();
    let genesis = EthHead::genesis(chain);
    let of = move |head: Option<BlockHeader>| match head {
        Some(head) if head.number > 0 => eth_head(&head, None),
        _ => genesis,
    };
    let (tx, rx) = watch::channel(of(*heads.borrow_and_update()));
    tokio::spawn(async move {
        while let Some(head) = next_value(&mut heads, &tx, &stop).await {
            tx.send_replace(of(head));
        }
    });
    rx
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
