//! Dispatch: which job a peer gets next ([`next_job`]) and the request future that reports back
//! to the loop ([`timed`]).

use std::time::Duration;

use futures::{future::BoxFuture, stream::FuturesUnordered};
use leafsync_p2p::{
    leaf::protocol::{MAX_NODES_PER_REQUEST, MAX_RESPONSE_BYTES},
    requests::RequestError,
};
use tokio::time::Instant;

use crate::{
    config::CODES_PER_REQUEST,
    error::SyncError,
    peer::PeerFuture,
    peer_set::Roster,
    tasks::{Done, Job, take_for},
    work::{CodeQueue, Work},
};

/// Requests in flight: each resolves to its [`Done`].
pub(crate) type InFlight = FuturesUnordered<BoxFuture<'static, Done>>;

/// The most bytes one request may bring back: every request asks for at most this much, so the
/// requests in flight ask for their count times it.
pub(crate) fn request_bytes(chunk_max_bytes: u64) -> u64 {
    chunk_max_bytes.max(MAX_RESPONSE_BYTES)
}

/// The next request for `peer`: trie nodes (only if it has the pivot's nodes), then a chunk
/// (only if it may get chunks), then codes; each from items it has not tried this round.
pub(crate) fn next_job(
    work: &mut Work,
    codes: &mut CodeQueue,
    peer: usize,
    roster: &Roster,
) -> Result<Option<Job>, SyncError> {
    if roster.serving.contains(&peer) {
        let nodes = take_for(&mut work.nodes, peer, &roster.serving, MAX_NODES_PER_REQUEST)?;
        if !nodes.is_empty() {
            return Ok(Some(Job::Nodes(nodes)));
        }
    }
    if roster.chunks.contains(&peer)
        && let Some(unit) = take_for(&mut work.units, peer, &roster.chunks, 1)?.pop()
    {
        return Ok(Some(Job::Chunk(unit)));
    }
    let codes = take_for(&mut codes.queue, peer, &roster.active, CODES_PER_REQUEST)?;
    Ok((!codes.is_empty()).then_some(Job::Codes(codes)))
}

/// The answer of `peer` to `job`, sent in `epoch`, as the loop's [`Done`]. `timeout` is the
/// sync's guard, strictly longer than a transport's own (see
/// [`crate::config::REQUEST_TIMEOUT_GRACE`]).
pub(crate) fn timed(
    answer: PeerFuture,
    timeout: Duration,
    epoch: u64,
    peer: usize,
    job: Job,
) -> BoxFuture<'static, Done> {
    Box::pin(async move {
        let started = Instant::now();
        let result =
            tokio::time::timeout(timeout, answer).await.unwrap_or(Err(RequestError::Timeout));
        Done { epoch, peer, job, result, elapsed: started.elapsed() }
    })
}
