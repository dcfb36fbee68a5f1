//! Dispatch: which job a peer gets next ([`next_job`]) and the request future that reports back
//! to the loop ([`timed`]).

use std::{sync::Arc, time::Duration};

use futures::{future::BoxFuture, stream::FuturesUnordered};
use leafsync_p2p::{
    leaf::{
        ChainHead,
        protocol::{
            MAX_CHUNKS_PER_REQUEST, MAX_NODES_PER_REQUEST, MAX_RESPONSE_BYTES,
            MAX_STORAGE_CHUNKS_PER_REQUEST,
        },
    },
    requests::RequestError,
};
use tokio::time::Instant;

use crate::{
    codes::CodeQueue,
    error::SyncError,
    peer::{PeerFuture, SyncPeer},
    peer_set::Roster,
    prepare::{Done, Epoch, prepare_answer},
    rendezvous::Rendezvous,
    tasks::{Job, Unit, take_for, take_matching},
    work::Work,
};

/// Requests in flight: each resolves to its [`Done`].
pub(crate) type InFlight = FuturesUnordered<BoxFuture<'static, Done>>;

/// The most bytes one request may bring back: every request asks for at most this much, so the
/// requests in flight ask for their count times it.
pub(crate) fn request_bytes(chunk_max_bytes: u64) -> u64 {
    chunk_max_bytes.max(MAX_RESPONSE_BYTES)
}

/// When a peer may take a chunk unit whose rendezvous home is another peer: once the unit has
/// waited [`Self::new`]'s `after` in the queue since it was last queued (or at once when it has
/// no home: every peer tried it this round). Within that time its home takes it when it has
/// room, so two clients ask the same server for it; after it, a slow or stalled home holds it
/// back no longer. Remembers the earliest moment a unit it refused becomes takeable
/// ([`Self::next`]), for the loop to dispatch again then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StealGate {
    after: Duration,
    now: Instant,
    next: Option<Instant>,
    /// Units refused so far.
    held: usize,
    /// Units taken from their homes so far.
    stolen: usize,
}

impl StealGate {
    /// A gate letting units be stolen once they waited `after`, judged at `now`.
    pub(crate) const fn new(after: Duration, now: Instant) -> Self {
        Self { after, now, next: None, held: 0, stolen: 0 }
    }

    /// The earliest moment a unit refused so far may be stolen (`None`: none was refused).
    pub(crate) const fn next(&self) -> Option<Instant> {
        self.next
    }

    /// Units taken from their homes so far.
    pub(crate) const fn stolen(&self) -> usize {
        self.stolen
    }

    /// Whether `unit`, not at its home, may be taken now; if not, remembers when it may.
    fn admits(&mut self, unit: &mut Unit, rendezvous: &Rendezvous) -> bool {
        if !rendezvous.has_home(unit) {
            return true;
        }
        let Some(at) = unit.attempts.queued.and_then(|q| q.checked_add(self.after)) else {
            return true;
        };
        if at <= self.now {
            return true;
        }
        self.next = Some(self.next.map_or(at, |next| next.min(at)));
        self.held += 1;
        false
    }
}

/// The next request for `peer`, each from items it has not tried this round: trie nodes (only
/// if it has the pivot's nodes); then, if it may get chunks, a chunk whose rendezvous home it
/// is ([`crate::rendezvous`]); then a full batch of codes ([`CodeQueue::batch_size`]); then
/// another peer's chunk that `steal` admits; then codes, as many as there are up to a batch
/// (but none while a chunk waits for its home: `peer` then waits too). Chunks are account or
/// storage units, batched up to `batch_bytes` ([`chunk_batch`]).
///
/// Clients syncing from the same servers so ask each chunk of the same server, and the second
/// is answered from its chunk cache; a peer with none of its own left does the codes (any
/// server answers them alike) before it takes another's chunk, and takes one only once it waited
/// for its home (work stealing: a slow or stalled peer holds work back for a moment at most).
pub(crate) fn next_job(
    work: &mut Work,
    codes: &mut CodeQueue,
    peer: usize,
    roster: &Roster,
    batch_bytes: u64,
    steal: &mut StealGate,
) -> Result<Option<Job>, SyncError> {
    if roster.serving.contains(&peer) {
        let nodes = take_for(&mut work.nodes, peer, &roster.serving, MAX_NODES_PER_REQUEST)?;
        if !nodes.is_empty() {
            return Ok(Some(Job::Nodes(nodes)));
        }
    }
    let batch = codes.batch_size();
    if roster.chunks.contains(&peer) {
        let rendezvous = &roster.rendezvous;
        let own = take_matching(&mut work.units, peer, &roster.chunks, 1, |u| {
            rendezvous.is_home(u, peer)
        })?;
        if let Some(unit) = own.into_iter().next() {
            return chunk_job(work, unit, peer, roster, batch_bytes, true, steal).map(Some);
        }
        // None of its own: a full batch of codes, which any peer may answer, before another
        // peer's chunk.
        if codes.len() >= batch {
            let codes = codes.take(peer, &roster.active, batch)?;
            if !codes.is_empty() {
                return Ok(Some(Job::Codes(codes)));
            }
        }
        let held = steal.held;
        let stolen = take_matching(&mut work.units, peer, &roster.chunks, 1, |u| {
            steal.admits(u, rendezvous)
        })?;
        if let Some(unit) = stolen.into_iter().next() {
            return chunk_job(work, unit, peer, roster, batch_bytes, false, steal).map(Some);
        }
        if steal.held > held {
            // Chunks wait for their busy homes: `peer` waits for them rather than asking for
            // a short batch of codes (one request more).
            return Ok(None);
        }
    }
    let codes = codes.take(peer, &roster.active, batch)?;
    Ok((!codes.is_empty()).then_some(Job::Codes(codes)))
}

/// The request of `first` and the units asked with it: one `GetChunk` (account units) or
/// `GetStorageChunk` (storage units) of further units of the same kind that `peer` may get, in
/// queue order, while their estimated sizes ([`crate::work::UnitSizes`]) add up to at most
/// `batch_bytes`, up to the protocol's batch limit of that kind. A unit of unknown size goes
/// only first, as a batch of its own (it may be as large as a whole answer). With `home`
/// (`first`'s home is `peer`) only units whose home is `peer` join it; a stolen `first` takes
/// any that `steal` admits, and the batch counts as stolen.
fn chunk_job(
    work: &mut Work,
    first: Unit,
    peer: usize,
    roster: &Roster,
    batch_bytes: u64,
    home: bool,
    steal: &mut StealGate,
) -> Result<Job, SyncError> {
    let (units, sizes, rendezvous) = (&mut work.units, &work.sizes, &roster.rendezvous);
    let accounts = first.owner.is_none();
    let mut bytes = sizes.unit_bytes(&first).unwrap_or(batch_bytes);
    let mut batch = vec![first];
    if bytes < batch_bytes {
        let limit = if accounts { MAX_CHUNKS_PER_REQUEST } else { MAX_STORAGE_CHUNKS_PER_REQUEST };
        batch.extend(take_matching(units, peer, &roster.chunks, limit - 1, |unit| {
            if unit.owner.is_none() != accounts {
                return false;
            }
            let placed =
                if home { rendezvous.is_home(unit, peer) } else { steal.admits(unit, rendezvous) };
            if !placed {
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
    if !home {
        steal.stolen += batch.len();
        tracing::debug!(peer, units = batch.len(), "chunk units taken from their busy homes");
    }
    Ok(if accounts { Job::Chunk(batch) } else { Job::Storage(batch) })
}

/// The `answer` of `server` (the peer in slot `peer`) to `job`, sent in epoch `sent` while the
/// peer announced head `asked_at`, prepared ([`prepare_answer`]) unless `epoch` has moved on
/// by then, as the loop's [`Done`]. `timeout` is
/// the sync's guard, strictly longer than a transport's own (see
/// [`crate::config::REQUEST_TIMEOUT_GRACE`]), counted from the request or, for a peer whose
/// request is a chain of round trips ([`SyncPeer::last_answer`]: snap/1), from its last answer
/// to any of them; it and the round trip end when the answer arrives, before it is prepared.
pub(crate) fn timed(
    (asked_at, answer): (ChainHead, PeerFuture),
    (server, peer): (&Arc<dyn SyncPeer>, usize),
    timeout: Duration,
    (sent, epoch): (u64, &Epoch),
    job: Job,
) -> BoxFuture<'static, Done> {
    let server = Arc::clone(server);
    let epoch = epoch.clone();
    Box::pin(async move {
        let started = Instant::now();
        let result = guarded(answer, &*server, started, timeout).await;
        let elapsed = started.elapsed();
        let (job, result) = match result {
            Ok(response) => {
                let (job, answer) = prepare_answer(job, response, (sent, &epoch)).await;
                (job, Ok(answer))
            }
            Err(e) => (job, Err(e)),
        };
        Done { epoch: sent, peer, asked_at, job, result, elapsed }
    })
}

/// `answer`, or [`RequestError::Timeout`] once `timeout` has passed since `started` and since
/// the last answer `server` gave to any request ([`SyncPeer::last_answer`]): a snap/1 peer's
/// one sync request is a chain of round trips, queued at an honest geth behind the others (it
/// serves a peer's requests one at a time), which a guard counted from the start cut short
/// while the peer kept answering. A peer silent for `timeout` still times out.
async fn guarded(
    mut answer: PeerFuture,
    server: &dyn SyncPeer,
    started: Instant,
    timeout: Duration,
) -> Result<leafsync_p2p::requests::LeafResponse, RequestError> {
    let mut from = started;
    loop {
        match tokio::time::timeout_at(from + timeout, &mut answer).await {
            Ok(result) => return result,
            Err(_) => match server.last_answer() {
                Some(last) if last > from => from = last,
                _ => return Err(RequestError::Timeout),
            },
        }
    }
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
        tasks::requeue,
    };

    fn roster() -> Roster {
        roster_of(&[PeerId::repeat_byte(1)])
    }

    /// A peer that never answers the request guarded, whose source last heard from it (an
    /// answer to another request) at the moment it holds.
    struct Heard(std::sync::Mutex<Option<Instant>>);

    impl SyncPeer for Heard {
        fn id(&self) -> PeerId {
            PeerId::ZERO
        }
        fn head(&self) -> ChainHead {
            ChainHead::default()
        }
        fn account_estimate(&self) -> u64 {
            0
        }
        fn request(&self, _: leafsync_p2p::requests::LeafRequest) -> PeerFuture {
            Box::pin(std::future::pending())
        }
        fn last_answer(&self) -> Option<Instant> {
            *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }
        fn penalise(&self, _: leafsync_p2p::PenaltyClass) {}
    }

    /// When the guard of a request that never comes ends, if the peer's source heard from it
    /// at the seconds in `answers` after the start.
    async fn timed_out_after(answers: &'static [u64]) -> Duration {
        let peer = Arc::new(Heard(std::sync::Mutex::new(None)));
        let start = Instant::now();
        let heard = Arc::clone(&peer);
        tokio::spawn(async move {
            for &at in answers {
                tokio::time::sleep_until(start + Duration::from_secs(at)).await;
                *heard.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(Instant::now());
            }
        });
        let pending = Box::pin(std::future::pending());
        let result = guarded(pending, &*peer, start, Duration::from_secs(12)).await;
        assert!(matches!(result, Err(RequestError::Timeout)), "{result:?}");
        start.elapsed()
    }

    /// The sync's guard counts from the peer's last answer to any request (a snap/1 chain of
    /// rounds queued at a geth), and a peer silent for the guard's length times out all the
    /// same: 12 s after the start without answers, 12 s after the last of them with.
    #[tokio::test(start_paused = true)]
    async fn the_guard_counts_from_the_last_answer_and_silence_still_times_out() {
        assert_eq!(timed_out_after(&[]).await, Duration::from_secs(12));
        assert_eq!(timed_out_after(&[5, 15, 25]).await, Duration::from_secs(37));
        // An answer after the guard ended is too late.
        assert_eq!(timed_out_after(&[13]).await, Duration::from_secs(12));
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

    /// [`next_job`] with stealing allowed at once.
    fn next_at_once(
        work: &mut Work,
        codes: &mut CodeQueue,
        peer: usize,
        roster: &Roster,
        batch_bytes: u64,
    ) -> Result<Option<Job>, SyncError> {
        let mut steal = StealGate::new(Duration::ZERO, Instant::now());
        next_job(work, codes, peer, roster, batch_bytes, &mut steal)
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
                    let job = next_at_once(&mut work, &mut codes, peer, &roster, 1 << 20).unwrap();
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
        while let Some(job) = next_at_once(&mut work, &mut codes, 0, &roster, 1 << 20).unwrap() {
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

    /// A queue of one account unit whose home, of peers 0 and 1, is peer 1; queued now.
    fn a_unit_at_home_at_peer_1(roster: &Roster) -> Work {
        for n in 0..=255u8 {
            let mut work = Work::default();
            work.add_unit(None, Nibbles::from_nibbles([n >> 4, n & 15]), B256::ZERO, false);
            if work.units.front_mut().is_some_and(|u| roster.rendezvous.is_home(u, 1)) {
                return work;
            }
        }
        panic!("no depth-2 unit has its home at peer 1")
    }

    /// Queues `n` codes, numbered from `from`.
    fn queue_codes(codes: &mut CodeQueue, from: u64, n: u64) {
        for i in from..from + n {
            codes.want(B256::left_padding_from(&i.to_be_bytes()), |_| Ok(false)).unwrap();
        }
    }

    /// [`next_job`] for peer 0 of `roster` with a gate of 1 s judged now, and that gate.
    fn next_for_0(
        work: &mut Work,
        codes: &mut CodeQueue,
        roster: &Roster,
    ) -> (Option<Job>, StealGate) {
        let mut gate = StealGate::new(Duration::from_secs(1), Instant::now());
        let job = next_job(work, codes, 0, roster, 1 << 20, &mut gate).unwrap();
        (job, gate)
    }

    #[tokio::test(start_paused = true)]
    async fn a_chunk_waits_for_its_home_for_a_while_before_another_peer_takes_it() {
        let roster = roster_of(&[PeerId::repeat_byte(1), PeerId::repeat_byte(2)]);
        let mut work = a_unit_at_home_at_peer_1(&roster);
        let mut codes = CodeQueue::default();
        let queued = Instant::now();
        // Peer 0 has nothing of its own: it leaves the unit to its home and says until when.
        let (job, gate) = next_for_0(&mut work, &mut codes, &roster);
        assert!(job.is_none(), "{job:?}");
        assert_eq!(gate.next(), Some(queued + Duration::from_secs(1)));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(next_for_0(&mut work, &mut codes, &roster).0.is_none());
        assert_eq!(work.units.len(), 1);
        // Its home did not take it in a second: peer 0 does.
        tokio::time::advance(Duration::from_millis(1)).await;
        let (job, gate) = next_for_0(&mut work, &mut codes, &roster);
        assert_eq!(owners(job), vec![None]);
        assert_eq!(gate.next(), None);
        // A unit its home failed has peer 0 as its home for the rest of the round: no wait.
        let mut work = a_unit_at_home_at_peer_1(&roster);
        let unit = work.units.pop_front().unwrap();
        requeue(&mut work.units, [unit], 1);
        assert_eq!(owners(next_for_0(&mut work, &mut codes, &roster).0), vec![None]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_with_no_chunk_of_its_own_takes_a_full_batch_of_codes_before_another_peers() {
        let roster = roster_of(&[PeerId::repeat_byte(1), PeerId::repeat_byte(2)]);
        let mut work = a_unit_at_home_at_peer_1(&roster);
        let mut codes = CodeQueue::default();
        let batch = codes.batch_size() as u64;
        queue_codes(&mut codes, 0, batch + 10);
        // The unit may be taken by now, but a full batch of codes goes first...
        tokio::time::advance(Duration::from_secs(5)).await;
        match next_for_0(&mut work, &mut codes, &roster).0 {
            Some(Job::Codes(tasks)) => assert_eq!(tasks.len() as u64, batch),
            other => panic!("{other:?}"),
        }
        // ...and the other peer's chunk before a short batch of the ten left...
        assert_eq!(owners(next_for_0(&mut work, &mut codes, &roster).0), vec![None]);
        match next_for_0(&mut work, &mut codes, &roster).0 {
            Some(Job::Codes(tasks)) => assert_eq!(tasks.len(), 10),
            other => panic!("{other:?}"),
        }
        // ...which waits while a chunk waits for its home: one request, not two.
        let mut work = a_unit_at_home_at_peer_1(&roster);
        queue_codes(&mut codes, batch + 10, 10);
        assert!(next_for_0(&mut work, &mut codes, &roster).0.is_none());
        assert_eq!(codes.len(), 10);
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
            next_at_once(work, codes, 0, &roster(), 1 << 20).unwrap()
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
            let Some(job) = next_at_once(&mut work, &mut codes, peer, &roster, budget).unwrap()
            else {
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
