//! Dispatch: which job a peer gets next ([`next_job`]) and the request future that reports back
//! to the loop ([`timed`]).

use std::time::Duration;

use futures::{future::BoxFuture, stream::FuturesUnordered};
use leafsync_p2p::{
    leaf::protocol::{
        MAX_CHUNKS_PER_REQUEST, MAX_NODES_PER_REQUEST, MAX_RESPONSE_BYTES,
        MAX_STORAGE_CHUNKS_PER_REQUEST,
    },
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

/// The next request for `peer`: trie nodes (only if it has the pivot's nodes), then chunks
/// (only if it may get chunks): account units or storage units, batched up to `batch_bytes`
/// ([`chunk_batch`]); then codes, as many as [`CodeQueue::batch_size`]. Each from items it has
/// not tried this round.
///
/// A chunk is one whose rendezvous home `peer` is ([`crate::rendezvous`]), so that clients
/// syncing from the same servers ask each chunk of the same server; only when none is left
/// does `peer` take another peer's (work stealing: a slow peer never holds work back).
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
    if roster.chunks.contains(&peer) {
        let rendezvous = &roster.rendezvous;
        let mut home = true;
        let mut unit = take_matching(&mut work.units, peer, &roster.chunks, 1, |u| {
            rendezvous.is_home(u, peer)
        })?
        .pop();
        if unit.is_none() {
            home = false;
            unit = take_for(&mut work.units, peer, &roster.chunks, 1)?.pop();
        }
        if let Some(unit) = unit {
            let accounts = unit.owner.is_none();
            let batch = chunk_batch(work, unit, peer, roster, batch_bytes, home)?;
            return Ok(Some(if accounts { Job::Chunk(batch) } else { Job::Storage(batch) }));
        }
    }
    let batch = codes.batch_size();
    let codes = take_for(&mut codes.queue, peer, &roster.active, batch)?;
    Ok((!codes.is_empty()).then_some(Job::Codes(codes)))
}

/// The units asked with `first` in one `GetChunk` (account units) or `GetStorageChunk` (storage
/// units): further units of the same kind that `peer` may get, in queue order, while their
/// estimated sizes ([`crate::work::UnitSizes`]) add up to at most `batch_bytes`, up to the
/// protocol's batch limit of that kind. A unit of unknown size goes only first, as a batch of
/// its own (it may be as large as a whole answer). With `home` (`first`'s home is `peer`) only
/// units whose home is `peer` join it; a stolen `first` takes any.
fn chunk_batch(
    work: &mut Work,
    first: Unit,
    peer: usize,
    roster: &Roster,
    batch_bytes: u64,
    home: bool,
) -> Result<Vec<Unit>, SyncError> {
    let (units, sizes, rendezvous) = (&mut work.units, &work.sizes, &roster.rendezvous);
    let accounts = first.owner.is_none();
    let mut bytes = sizes.unit_bytes(&first).unwrap_or(batch_bytes);
    let mut batch = vec![first];
    if bytes < batch_bytes {
        let limit = if accounts { MAX_CHUNKS_PER_REQUEST } else { MAX_STORAGE_CHUNKS_PER_REQUEST };
        batch.extend(take_matching(units, peer, &roster.chunks, limit - 1, |unit| {
            if unit.owner.is_none() != accounts || (home && !rendezvous.is_home(unit, peer)) {
                return false;
            }
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

    use std::collections::HashMap;

    use leafsync_p2p::PeerId;

    use super::*;
    use crate::{
        config::{BYTES_PER_ACCOUNT_ESTIMATE, BYTES_PER_SLOT_ESTIMATE},
        rendezvous::{Rendezvous, peer_key},
    };

    fn roster() -> Roster {
        roster_of(&[PeerId::repeat_byte(1)])
    }

    /// A roster of peers with `ids`, indexed in that order.
    fn roster_of(ids: &[PeerId]) -> Roster {
        let peers: Vec<usize> = (0..ids.len()).collect();
        let keys = ids.iter().enumerate().map(|(i, id)| (i, peer_key(id))).collect();
        Roster {
            active: peers.clone(),
            serving: peers.clone(),
            chunks: peers,
            rendezvous: Rendezvous::new(keys),
        }
    }

    /// The prefix of a job of one account unit.
    fn prefix(job: Option<Job>) -> Nibbles {
        match job {
            Some(Job::Chunk(units)) if units.len() == 1 => units[0].prefix,
            other => panic!("{other:?}"),
        }
    }

    /// A work queue of the 256 account chunks at depth 2.
    fn account_chunks() -> Work {
        let mut work = Work::default();
        for n in 0..=255u8 {
            work.add_unit(None, Nibbles::from_nibbles([n >> 4, n & 15]), B256::ZERO, false);
        }
        work
    }

    #[test]
    fn two_dispatchers_with_the_same_peers_send_each_chunk_to_the_same_peer() {
        let ids: Vec<PeerId> = (1..=3u8).map(PeerId::repeat_byte).collect();
        // The two clients index their peers differently and ask them in another order.
        let orders = [[0, 1, 2], [2, 0, 1]];
        let mut got: Vec<HashMap<PeerId, Vec<Nibbles>>> = Vec::new();
        for order in orders {
            let ids: Vec<PeerId> = order.iter().map(|i| ids[*i]).collect();
            let roster = roster_of(&ids);
            let (mut work, mut codes) = (account_chunks(), CodeQueue::default());
            let mut by_peer: HashMap<PeerId, Vec<Nibbles>> = HashMap::new();
            // 64 rounds of one chunk each: no peer runs out of its own (each has ~85).
            for _ in 0..64 {
                for (peer, id) in ids.iter().enumerate() {
                    let job = next_job(&mut work, &mut codes, peer, &roster, 1 << 20).unwrap();
                    by_peer.entry(*id).or_default().push(prefix(job));
                }
            }
            got.push(by_peer);
        }
        for map in &mut got {
            map.values_mut().for_each(|v| v.sort());
        }
        assert_eq!(got[0], got[1]);
        assert!(got[0].values().all(|v| v.len() == 64));
    }

    #[test]
    fn a_peer_with_none_of_its_own_chunks_left_takes_another_peers() {
        let roster = roster_of(&[PeerId::repeat_byte(1), PeerId::repeat_byte(2)]);
        let (mut work, mut codes) = (account_chunks(), CodeQueue::default());
        let (mut own_count, mut stolen) = (0, 0);
        // Peer 0 alone asks: first its own chunks, then peer 1's, until none is left.
        while let Some(job) = next_job(&mut work, &mut codes, 0, &roster, 1 << 20).unwrap() {
            let mut unit = match job {
                Job::Chunk(mut units) if units.len() == 1 => units.remove(0),
                other => panic!("{other:?}"),
            };
            if roster.rendezvous.is_home(&mut unit, 0) {
                assert_eq!(stolen, 0, "its own chunks first");
                own_count += 1;
            } else {
                stolen += 1;
            }
        }
        assert!(own_count > 0 && stolen > 0, "{own_count} own, {stolen} stolen");
        assert_eq!(own_count + stolen, 256);
        assert!(work.units.is_empty());
    }

    fn add(work: &mut Work, owner: Option<B256>) {
        work.add_unit(owner, Nibbles::new(), B256::ZERO, false);
    }

    fn owners(job: Option<Job>) -> Vec<Option<B256>> {
        match job {
            Some(Job::Storage(units)) => units.iter().map(|u| u.owner).collect(),
            Some(Job::Chunk(units)) => units.iter().map(|u| u.owner).collect(),
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

    #[test]
    fn account_units_are_batched_to_the_budget_and_only_with_units_of_their_home() {
        let roster = roster_of(&[PeerId::repeat_byte(1), PeerId::repeat_byte(2)]);
        let (mut work, mut codes) = (account_chunks(), CodeQueue::default());
        // 1M accounts: depth-2 units of ~625 KB, three to a 2 MiB answer.
        work.sizes.record_accounts(1_000_000);
        let unit_bytes = 1_000_000 * BYTES_PER_ACCOUNT_ESTIMATE / 256;
        // A storage unit of known size, queued first, never joins an account batch.
        let owner = Some(B256::repeat_byte(9));
        work.sizes.record(B256::repeat_byte(9), 10);
        add(&mut work, owner);
        let storage_unit = work.units.pop_back().unwrap();
        work.units.push_front(storage_unit);
        let budget = 2 << 20;
        let (mut account_jobs, mut accounts, mut storage) = (0, 0, 0);
        let mut full = 0;
        for round in 0..1000 {
            let peer = round % 2;
            let Some(job) = next_job(&mut work, &mut codes, peer, &roster, budget).unwrap() else {
                break;
            };
            let mut units = match job {
                Job::Chunk(units) => units,
                Job::Storage(units) => {
                    assert_eq!(units.iter().map(|u| u.owner).collect::<Vec<_>>(), vec![owner]);
                    storage += 1;
                    continue;
                }
                other => panic!("{other:?}"),
            };
            assert!(units.iter().all(|u| u.owner.is_none()), "accounts only");
            assert!(units.len() as u64 * unit_bytes <= budget, "{} units", units.len());
            // A batch whose first unit is at home holds only units of that home.
            if roster.rendezvous.is_home(&mut units[0], peer) {
                assert!(units.iter_mut().all(|u| roster.rendezvous.is_home(u, peer)));
            }
            full += usize::from(units.len() == 3);
            account_jobs += 1;
            accounts += units.len();
        }
        assert_eq!((accounts, storage), (256, 1));
        // 256 units in threes, but for a last partial batch of each peer's own and stolen ones.
        assert!((86..=90).contains(&account_jobs), "{account_jobs} requests");
        assert!(full >= 82, "{full} full batches");
    }
}
