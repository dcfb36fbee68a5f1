//! [`ElHeaders`]: block headers for eth/69 `GetBlockHeaders`, read from the execution client.
//!
//! leafsync keeps no chain of its own; a peer asking it for headers gets those its execution
//! client has, each re-encoded and checked against its hash ([`RpcHeader::sealed_rlp`]). Every
//! query is bounded by count ([`MAX_HEADERS_PER_QUERY`]) and by time ([`HEADERS_QUERY_TIMEOUT`]);
//! an answer may be shorter than asked, as eth/69 allows, and stops at the first header the
//! execution client does not have, that does not hash to its hash, or (without skips) that is
//! not the child, or the parent when reversed, of the header before it. A block number no chain
//! reaches ([`MAX_QUERIED_NUMBER`]) is not asked at all.
//!
//! The network bounds what one peer may ask (one query at a time, a budget of headers per
//! second: `leafsync_p2p::peers::MAX_CONCURRENT_HEADER_CALLS_PER_PEER`,
//! `HEADER_BUDGET_PER_SECOND`); queries of all peers take turns here.

use std::time::Duration;

use alloy_primitives::{B256, Bytes};
use tokio::{sync::Mutex, time::Instant};
use tracing::debug;

use crate::{
    error::IngestError,
    header::RpcHeader,
    rpc::{MAX_BATCH_CALLS, RpcClient},
};

/// Most headers one query answers: geth's own bound on what it serves (`maxHeadersServe`, 1024).
/// geth's beacon sync (its skeleton) asks a peer for 512 headers at once and drops a peer that
/// answers fewer (or none) while the chain has them, so a shorter bound had every syncing geth
/// disconnect us. The headers are read from the execution client beside us in JSON-RPC batches
/// of `eth_getHeaderByNumber` calls ([`MAX_BATCH_CALLS`] a round trip: 11 for 1,024 headers),
/// within [`HEADERS_QUERY_TIMEOUT`].
pub const MAX_HEADERS_PER_QUERY: usize = 1024;

/// How long one query may take in all (4 s): what was read by then is answered. The network
/// gives a header source 5 s (`leafsync_p2p::peers::HEADER_SOURCE_TIMEOUT`) before it answers
/// empty, and geth waits 10 s for an answer; a second of margin keeps a partial answer from being
/// dropped.
pub const HEADERS_QUERY_TIMEOUT: Duration = Duration::from_secs(4);

/// Highest block number asked of the execution client (`i64::MAX`): geth reads a block number
/// as an `int64` and answers a larger one "invalid params" (-32602), an error rather than "no
/// such block", which a peer could make us ask at will (an origin of 2^63, or a skip stepping
/// there). No chain comes near it, so a header above it is one nobody has: the answer stops
/// there without a call.
pub const MAX_QUERIED_NUMBER: u64 = i64::MAX.unsigned_abs();

/// Where a header query starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderOrigin {
    /// The block with this hash.
    Hash(B256),
    /// The canonical block with this number.
    Number(u64),
}

/// A header query, as eth/69 `GetBlockHeaders` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderQuery {
    /// The first header.
    pub origin: HeaderOrigin,
    /// Most headers wanted (at most [`MAX_HEADERS_PER_QUERY`] are answered).
    pub amount: u64,
    /// Blocks skipped between two consecutive headers.
    pub skip: u64,
    /// Towards genesis instead of towards the head.
    pub reverse: bool,
}

impl HeaderQuery {
    /// The number of the header after `number`, `None` past either end of the number range.
    fn step(&self, number: u64) -> Option<u64> {
        let stride = self.skip.checked_add(1)?;
        if self.reverse { number.checked_sub(stride) } else { number.checked_add(stride) }
    }

    /// Whether `next` may follow `before` in the answer: without skips, it must be its child
    /// (or its parent, reversed). Each header after the first is read by number from the
    /// execution client's canonical chain, so a reorg there during the query, or an origin hash
    /// off that chain, would give headers that do not chain, and geth drops a peer for that
    /// ("invalid hash progression"). Headers that skip blocks have no link to check.
    fn chains(&self, before: &RpcHeader, next: &RpcHeader) -> bool {
        match (self.skip, self.reverse) {
            (0, false) => next.parent_hash == before.hash,
            (0, true) => before.parent_hash == next.hash,
            _ => true,
        }
    }
}

/// Headers from the execution client: see the module docs. Queries are served one at a time
/// over one connection (the client is sequential), in batches; callers wait their turn.
#[derive(Debug)]
pub struct ElHeaders {
    rpc: Mutex<RpcClient>,
}

impl ElHeaders {
    /// Headers from the execution client at `url` (`http://…` or `ws://…`).
    pub fn new(url: &str) -> Result<Self, IngestError> {
        Ok(Self { rpc: Mutex::new(RpcClient::new(url)?) })
    }

    /// The RLP of the headers `query` asks for, in its order: at most
    /// [`MAX_HEADERS_PER_QUERY`], within [`HEADERS_QUERY_TIMEOUT`], up to the first header that
    /// is missing (or above [`MAX_QUERIED_NUMBER`]), cannot be read, does not hash to its hash
    /// or, without skips, does not chain to the header before it (each logged at debug).
    pub async fn headers(&self, query: HeaderQuery) -> Vec<Bytes> {
        let deadline = Instant::now() + HEADERS_QUERY_TIMEOUT;
        let want = usize::try_from(query.amount).unwrap_or(usize::MAX).min(MAX_HEADERS_PER_QUERY);
        let mut out = Vec::with_capacity(want);
        if want == 0 {
            return out;
        }
        // Waiting for the connection counts against the budget too.
        let Ok(mut rpc) = tokio::time::timeout_at(deadline, self.rpc.lock()).await else {
            debug!("header query not served: the connection stayed busy for its whole budget");
            return out;
        };
        // The origin alone (it may be a hash; this call also settles whether the client reads
        // headers as blocks), then the numbers after it in batches.
        let origin = query.origin;
        if matches!(origin, HeaderOrigin::Number(number) if number > MAX_QUERIED_NUMBER) {
            debug!(?origin, "header query stops past the highest number");
            return out;
        }
        let read = async {
            match origin {
                HeaderOrigin::Hash(hash) => rpc.header_by_hash(hash).await,
                HeaderOrigin::Number(number) => rpc.header(number).await,
            }
        };
        let mut last = match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(Some(header))) => header,
            Ok(Ok(None)) => return out,
            Ok(Err(error)) => {
                debug!(?origin, %error, "header not read from the execution client");
                return out;
            }
            Err(_) => {
                debug!(?origin, "header query cut by its time budget");
                rpc.reset();
                return out;
            }
        };
        let Some(rlp) = sealed(&last) else { return out };
        out.push(rlp);
        let numbers: Vec<u64> = std::iter::successors(query.step(last.number), |&n| query.step(n))
            .take_while(|&n| n <= MAX_QUERIED_NUMBER)
            .take(want - 1)
            .collect();
        for batch in numbers.chunks(MAX_BATCH_CALLS) {
            let answers = match tokio::time::timeout_at(deadline, rpc.header_batch(batch)).await {
                Ok(Ok(answers)) => answers,
                Ok(Err(error)) => {
                    debug!(first = batch[0], %error, "headers not read from the execution client");
                    break;
                }
                Err(_) => {
                    debug!(served = out.len(), "header query cut by its time budget");
                    rpc.reset();
                    break;
                }
            };
            let complete = answers.len() == batch.len();
            for (answer, number) in answers.into_iter().zip(batch) {
                let header = match answer {
                    Ok(Some(header)) => header,
                    Ok(None) => return out,
                    Err(error) => {
                        debug!(number, %error, "header not read from the execution client");
                        return out;
                    }
                };
                if !query.chains(&last, &header) {
                    debug!(
                        number,
                        served = out.len(),
                        "header query stops where the headers stop chaining (a reorg in the \
                         execution client, or an origin off its chain)"
                    );
                    return out;
                }
                let Some(rlp) = sealed(&header) else { return out };
                out.push(rlp);
                last = header;
            }
            if !complete {
                debug!(served = out.len(), "the execution client left calls of a batch unanswered");
                break;
            }
        }
        out
    }
}

/// The header's RLP if it hashes to its hash, else `None`, logged at debug.
fn sealed(header: &RpcHeader) -> Option<Bytes> {
    let rlp = header.sealed_rlp();
    if rlp.is_none() {
        debug!(
            number = header.number,
            hash = %header.hash,
            "header not served: its encoding does not hash to its hash (a field of a later fork?)"
        );
    }
    rlp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_stop_at_the_ends() {
        let q = |skip, reverse| HeaderQuery {
            origin: HeaderOrigin::Number(0),
            amount: 3,
            skip,
            reverse,
        };
        assert_eq!(q(0, false).step(5), Some(6));
        assert_eq!(q(2, false).step(5), Some(8));
        assert_eq!(q(2, true).step(5), Some(2));
        assert_eq!(q(5, true).step(5), None);
        assert_eq!(q(u64::MAX, false).step(5), None);
        assert_eq!(q(0, false).step(u64::MAX), None);
    }
}
