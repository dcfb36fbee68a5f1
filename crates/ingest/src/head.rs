//! [`head_feed`]: the execution client's head as a `watch` channel, for a sync pivot that moves
//! with the chain ([`head_feed_behind`]: a few blocks behind it).

use std::time::{Duration, Instant};

use alloy_primitives::B256;
use leafsync_leafdb::BlockHeader;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::{error::IngestError, rpc::RpcClient};

/// How often [`head_feed`] reads the execution client's head: a block every 12 s, so a 2 s poll
/// lags the chain by at most a sixth of a slot at the cost of two small requests.
pub const HEAD_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How often [`head_feed`] repeats its warning while the execution client cannot be read at
/// start: often enough to be seen, rarely enough not to flood the log.
pub const HEAD_WAIT_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// The execution client's head, read now: `eth_blockNumber`, then that block's header.
pub async fn el_head(rpc: &mut RpcClient) -> Result<BlockHeader, IngestError> {
    head_behind(rpc, 0).await
}

/// Blocks a sync's pivot stays behind the execution client's head on a public chain
/// ([`head_feed_behind`]): 4, 48 s. A block at the tip can still be replaced (a one-block reorg
/// when a block comes late); few servers, if any, can serve the state of a pivot that left the
/// chain (only those that imported the block and kept the nodes its revert replaced), so the
/// sync would wait until the head moved `repivot_distance` (64 blocks) on, and a sync that
/// ended on it would be followed into a state off the chain and repaired. Reorgs of more than
/// a block or two are rare since the merge. The pivot plus the re-pivot distance, 4 + 64
/// blocks, stays within what geth keeps to trace from (128 states).
pub const PIVOT_CONFIRMATIONS: u64 = 4;

/// How old the execution client's head may be for a sync on a public chain to take it as its
/// pivot ([`wait_el_synced`]): 15 minutes, 75 slots. An older head is a client catching up; before
/// its sync starts, geth answers `eth_syncing` with `false` at block 0.
pub const PIVOT_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// What `eth_syncing` answers while the client syncs: where it is and where it goes.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Syncing {
    #[serde(default, deserialize_with = "crate::types::opt_quantity")]
    current_block: Option<u64>,
    #[serde(default, deserialize_with = "crate::types::opt_quantity")]
    highest_block: Option<u64>,
}

/// Why the execution client's head is no pivot yet, or `None` when it is: `eth_syncing` says it
/// syncs, or (with `max_age`) its head is older than that by this machine's clock.
async fn not_synced(
    rpc: &mut RpcClient,
    max_age: Option<Duration>,
) -> Result<Option<String>, IngestError> {
    match rpc.call::<serde_json::Value>("eth_syncing", serde_json::json!([])).await {
        Ok(serde_json::Value::Bool(false)) => {}
        Ok(answer) => {
            let at = serde_json::from_value::<Syncing>(answer).ok();
            let (current, highest) =
                at.map_or((None, None), |s| (s.current_block, s.highest_block));
            return Ok(Some(format!(
                "it is syncing (eth_syncing: block {} of {})",
                current.map_or("?".into(), |n| n.to_string()),
                highest.map_or("?".into(), |n| n.to_string())
            )));
        }
        // A client without the method, or a proxy that refuses it: its head's age tells.
        Err(IngestError::Rpc(error)) => debug!(%error, "eth_syncing not answered"),
        Err(e) => return Err(e),
    }
    let Some(max_age) = max_age else { return Ok(None) };
    let head = el_head(rpc).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let age = now.saturating_sub(head.timestamp);
    Ok((age > max_age.as_secs())
        .then(|| format!("its head, block {}, is {} minutes old", head.number, age / 60)))
}

/// Waits until the execution client at `url` is synced enough to give a sync its pivot:
/// `eth_syncing` answers `false` and, with `max_age` ([`PIVOT_MAX_AGE`] on public chains), its
/// head is no older than that. A sync started beside a client that is itself syncing (geth and
/// leafsync started together) took a pivot at block 0 or far behind, which no peer serves, and
/// waited on it for hours. Polls every `poll_interval`, and says why it waits at once and then
/// every [`HEAD_WAIT_LOG_INTERVAL`]; read errors are retried alike. Returns whether it waited.
pub async fn wait_el_synced(
    url: &str,
    max_age: Option<Duration>,
    poll_interval: Duration,
) -> Result<bool, IngestError> {
    let mut rpc = RpcClient::new(url)?;
    let mut warned: Option<Instant> = None;
    loop {
        let why = match not_synced(&mut rpc, max_age).await {
            Ok(None) => return Ok(warned.is_some()),
            Ok(Some(why)) => why,
            Err(error) => {
                rpc.reset();
                format!("it cannot be read ({error})")
            }
        };
        if warned.is_none_or(|t| t.elapsed() > HEAD_WAIT_LOG_INTERVAL) {
            warn!(
                url = rpc.url(),
                "the sync waits for the execution client before taking its pivot: {why}"
            );
            warned = Some(Instant::now());
        }
        tokio::time::sleep(poll_interval).await;
    }
}

/// Checks, before a sync of hours, that the execution client at `url` can be followed after
/// it: it must serve `debug_traceBlockByHash` ([`RpcClient::check_tracing`] at its head).
/// [`IngestError::TracingUnavailable`] when it lacks the method; other errors are the read's
/// (the caller may go on: the follower retries them).
pub async fn check_el_tracing(url: &str) -> Result<(), IngestError> {
    let mut rpc = RpcClient::new(url)?;
    let head = el_head(&mut rpc).await?;
    rpc.check_tracing(head.hash).await
}

/// A feed of the execution client's heads at `url`, read every `poll_interval`
/// ([`HEAD_POLL_INTERVAL`] in the daemon). Waits (retrying, with a warning every
/// [`HEAD_WAIT_LOG_INTERVAL`]) until the first head is read; then a task sends every higher
/// head until the receiver is dropped. A failed read keeps the last head and is retried at the
/// next poll. With `genesis_hash`, the execution client's block 0 must have it, checked before
/// the first head. Errors when `url` is not an `http://` or `ws://` URL, or the execution
/// client is on another chain ([`IngestError::WrongChain`]).
pub async fn head_feed(
    url: &str,
    poll_interval: Duration,
    genesis_hash: Option<B256>,
) -> Result<watch::Receiver<BlockHeader>, IngestError> {
    head_feed_behind(url, poll_interval, genesis_hash, 0).await
}

/// [`head_feed`] of the blocks `behind` the execution client's head (block 0 while the chain is
/// shorter): a sync's pivot, [`PIVOT_CONFIRMATIONS`] behind on a public chain.
pub async fn head_feed_behind(
    url: &str,
    poll_interval: Duration,
    genesis_hash: Option<B256>,
    behind: u64,
) -> Result<watch::Receiver<BlockHeader>, IngestError> {
    let mut rpc = RpcClient::new(url)?;
    let first = first_head(&mut rpc, poll_interval, genesis_hash, behind).await?;
    info!(number = first.number, behind, state_root = %first.state_root, "execution client head");
    let (tx, rx) = watch::channel(first);
    tokio::spawn(poll_heads(rpc, tx, poll_interval, behind));
    Ok(rx)
}

/// The block `behind` the execution client's head, read now.
async fn head_behind(rpc: &mut RpcClient, behind: u64) -> Result<BlockHeader, IngestError> {
    let number = rpc.block_number().await?;
    Ok(rpc.block(number.saturating_sub(behind)).await?.header())
}

/// Reads the head (`behind` it) until a read succeeds, after checking the chain (once) with
/// `genesis_hash`.
async fn first_head(
    rpc: &mut RpcClient,
    poll_interval: Duration,
    mut genesis_hash: Option<B256>,
    behind: u64,
) -> Result<BlockHeader, IngestError> {
    let mut warned: Option<Instant> = None;
    loop {
        let read = async {
            if let Some(expected) = genesis_hash {
                rpc.check_genesis(expected).await?;
                genesis_hash = None;
            }
            head_behind(rpc, behind).await
        };
        let error = match read.await {
            Ok(head) => return Ok(head),
            Err(e @ IngestError::WrongChain { .. }) => return Err(e),
            Err(e) => e,
        };
        if warned.is_none_or(|t| t.elapsed() > HEAD_WAIT_LOG_INTERVAL) {
            warn!(url = rpc.url(), %error, "cannot read the execution client's head; retrying");
            warned = Some(Instant::now());
        }
        rpc.reset();
        tokio::time::sleep(poll_interval).await;
    }
}

/// Sends every higher head to `tx` until its receivers are gone.
async fn poll_heads(
    mut rpc: RpcClient,
    tx: watch::Sender<BlockHeader>,
    poll_interval: Duration,
    behind: u64,
) {
    loop {
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(poll_interval) => {}
        }
        let head = match head_behind(&mut rpc, behind).await {
            Ok(head) => head,
            Err(error) => {
                debug!(%error, "execution client head not read; the last one stays");
                rpc.reset();
                continue;
            }
        };
        tx.send_if_modified(|last| {
            let higher = head.number > last.number;
            if higher {
                *last = head;
            }
            higher
        });
    }
}
