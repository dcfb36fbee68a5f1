//! Dispatch: which job a peer gets next ([`next_job`]) and the request future that reports back
//! to the loop ([`timed`]).

use std::time::Duration;

use futures::{future::BoxFuture, stream::FuturesUnordered};
use leafsync_p2p::{
    leaf::protocol::{MAX_NODES_PER_REQUEST, MAX_RESPONSE_BYTES, MAX_STORAGE_CHUNKS_PER_REQUEST},
    requests::RequestError,
};
use tokio::time::Instant;

use crate::{
    error::SyncError,
    peer::PeerFuture,
    peer_set::Roster,
    tasks::{Done, Job, Unit, take_for, take_matching},
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
/// (only if it may get chunks): an account chunk, or storage units batched up to `batch_bytes`
/// ([`storage_batch`]); then codes, as many as [`CodeQueue::batch_size`]. Each from items it has
/// not tried this round.
pub(crate) fn next_job(
    work: &mut Work,
    codes: &mut CodeQueue,
    peer: usize,
    roster: &Roster,
    batch_bytes: u64,
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
        if unit.owner.is_none() {
            return Ok(Some(Job::Chunk(unit)));
        }
        return storage_batch(work, unit, peer, roster, batch_bytes).map(|b| Some(Job::Storage(b)));
    }
    let batch = codes.batch_size();
    let codes = take_for(&mut codes.queue, peer, &roster.active, batch)?;
    Ok((!codes.is_empty()).then_some(Job::Codes(codes)))
}

/// The storage units asked with `first` in one `GetStorageChunk`: further storage units `peer`
/// may get, in queue order, while their estimated sizes ([`crate::work::StorageSizes`]) add up
/// to at most `batch_bytes`, up to the protocol's batch limit. A unit of unknown size goes only
/// first, as a batch of its own (it may be as large as a whole answer).
fn storage_batch(
    work: &mut Work,
    first: Unit,
    peer: usize,
    roster: &Roster,
    batch_bytes: u64,
) -> Result<Vec<Unit>, SyncError> {
    let (units, sizes) = (&mut work.units, &work.sizes);
    let mut bytes = sizes.unit_bytes(&first).unwrap_or(batch_bytes);
    let mut batch = vec![first];
    if bytes < batch_bytes {
        let room = MAX_STORAGE_CHUNKS_PER_REQUEST - 1;
        batch.extend(take_matching(units, peer, &roster.chunks, room, |unit| {
            match sizes.unit_bytes(unit) {
                Some(size) if bytes.saturating_add(size) <= batch_bytes => {
                    bytes += size;
                    true
                }
                _ => false,
            }
        })?);
    }
    Ok(batch)
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

#[cfg(test)]
mod tests {
    use alloy_primitives::B256;
    use alloy_trie::Nibbles;

    use super::*;
    use crate::config::BYTES_PER_SLOT_ESTIMATE;

    fn roster() -> Roster {
        Roster { active: vec![0], serving: vec![0], chunks: vec![0] }
    }

    fn add(work: &mut Work, owner: Option<B256>) {
        work.add_unit(owner, Nibbles::new(), B256::ZERO, false);
    }

    fn owners(job: Option<Job>) -> Vec<Option<B256>> {
        match job {
            Some(Job::Storage(units)) => units.iter().map(|u| u.owner).collect(),
            Some(Job::Chunk(unit)) => vec![unit.owner],
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn storage_units_are_batched_by_their_estimated_sizes_and_never_with_accounts() {
        let account = |n: u8| Some(B256::repeat_byte(n));
        let slots = |kib: u64| kib * 1024 / BYTES_PER_SLOT_ESTIMATE;
        let mut work = Work::default();
        for (n, kib) in [(1, 400), (2, 400), (3, 400), (4, 100)] {
            work.sizes.record(B256::repeat_byte(n), slots(kib));
        }
        let mut codes = CodeQueue::default();
        // 1, 2 and 4 fit 1 MiB (3 would not, 4 still does); the account chunk stays queued.
        for owner in [account(1), None, account(2), account(3), account(4), account(9)] {
            add(&mut work, owner);
        }
        let next = |work: &mut Work, codes: &mut CodeQueue| {
            next_job(work, codes, 0, &roster(), 1 << 20).unwrap()
        };
        assert_eq!(owners(next(&mut work, &mut codes)), vec![account(1), account(2), account(4)]);
        assert_eq!(owners(next(&mut work, &mut codes)), vec![None], "an account chunk alone");
        // 3 is first now; 9, of unknown size, never joins a batch, but goes alone.
        assert_eq!(owners(next(&mut work, &mut codes)), vec![account(3)]);
        assert_eq!(owners(next(&mut work, &mut codes)), vec![account(9)]);
        assert!(work.units.is_empty());
    }
}
