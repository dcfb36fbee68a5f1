//! [`EthSession`]: the `eth/69` side of one session, a quiet peer. Announcements are ignored
//! (within a budget of bytes a second: [`GOSSIP_BYTES_PER_SECOND`]),
//! `BlockRangeUpdate`s checked and passed on at most once per `NEW_HEAD_MIN_INTERVAL`,
//! `GetBlockHeaders` answered from the [`HeaderSource`] (bounded in count, bytes, concurrency,
//! headers per second and time; empty on any failure), the other requests answered empty, and
//! responses (we send no eth requests) reported as unsolicited.

use super::{
    GOSSIP_BURST_BYTES, GOSSIP_BYTES_PER_SECOND, HEADER_BUDGET_BURST, HEADER_BUDGET_PER_SECOND,
    HEADER_SOURCE_TIMEOUT, HeaderSource, MAX_CONCURRENT_HEADER_CALLS_PER_PEER, MAX_HEAD_NUMBER,
    MAX_HEADERS_RESPONSE_BYTES, MAX_SKIPPING_HEADERS_SERVE, heads::Throttle, serving::Outgoing,
};
use crate::{
    PeerId,
    eth::{
        BlockRangeUpdate, EthMessage, GetBlockHeaders, HeadersRequest,
        protocol::{MAX_HEADERS_SERVE, ids},
    },
    requests::{RequestFlood, ServedRequests},
    session::Subprotocol,
};
use alloy_primitives::Bytes;
use alloy_rlp::{BufMut, Encodable, Header};
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};
use tokio::{
    task::{self, JoinSet},
    time::Instant,
};
use tracing::{debug, error};

/// What the session does with an `eth/69` message.
#[derive(Debug)]
pub(crate) enum EthAction {
    /// Nothing (an announcement, or a request now queued for the header source).
    None,
    /// Send this answer.
    Answer(Outgoing),
    /// Pass the peer's new range on to the manager.
    Range(BlockRangeUpdate),
    /// The peer's range is implausible: a low penalty.
    InvalidRange,
    /// A response to a request we never sent: a mid penalty.
    Unsolicited,
    /// Too many header requests in flight: a breach.
    Flood(RequestFlood),
    /// More transaction gossip than the peer's budget ([`GOSSIP_BYTES_PER_SECOND`]): a breach.
    GossipFlood,
}

/// The `eth/69` state of one session.
pub(crate) struct EthSession {
    peer: PeerId,
    headers: Arc<dyn HeaderSource>,
    requests: ServedRequests,
    queued: VecDeque<GetBlockHeaders>,
    calls: JoinSet<Vec<Bytes>>,
    /// The request id each running call answers, kept outside the call so that one that panics
    /// (a bug) is still answered, empty, and frees its place in the in-flight count.
    answering: HashMap<task::Id, u64>,
    /// The headers per second the peer may have read ([`HEADER_BUDGET_PER_SECOND`]).
    budget: Bucket,
    /// The transaction gossip the peer may send ([`GOSSIP_BYTES_PER_SECOND`]).
    gossip: Bucket,
    /// Passes the peer's ranges on at most once per `NEW_HEAD_MIN_INTERVAL`.
    ranges: Throttle<BlockRangeUpdate>,
}

impl EthSession {
    /// The eth side of a session.
    pub(crate) fn new(peer: PeerId, headers: Arc<dyn HeaderSource>, now: Instant) -> Self {
        Self {
            peer,
            headers,
            requests: ServedRequests::default(),
            queued: VecDeque::new(),
            calls: JoinSet::new(),
            answering: HashMap::new(),
            budget: Bucket::new(now),
            gossip: Bucket::new(now),
            ranges: Throttle::new(now),
        }
    }

    /// Handles one message (the stream turns a second Status into an error first).
    pub(crate) fn on_message(&mut self, message: EthMessage, now: Instant) -> EthAction {
        match message {
            EthMessage::Status(_) => EthAction::None,
            EthMessage::Announcement { size, .. } => {
                let (cost, burst) = (gossip_time(size as u64), gossip_time(GOSSIP_BURST_BYTES));
                if self.gossip.try_take(cost, burst, now) {
                    EthAction::None
                } else {
                    debug!(peer = %self.peer, size, "transaction gossip over the peer's budget");
                    EthAction::GossipFlood
                }
            }
            EthMessage::BlockRangeUpdate(range) => self.on_range(range, now),
            EthMessage::GetBlockHeaders(request) => {
                if let Err(flood) = self.requests.on_request() {
                    return EthAction::Flood(flood);
                }
                self.queued.push_back(request);
                self.spawn();
                EthAction::None
            }
            EthMessage::Response { id, request_id } => {
                debug!(peer = %self.peer, id, request_id, "unsolicited eth/69 response");
                EthAction::Unsolicited
            }
            other @ (EthMessage::GetBlockBodies(_)
            | EthMessage::GetPooledTransactions(_)
            | EthMessage::GetReceipts(_)) => match other.empty_answer() {
                Some((id, payload)) => EthAction::Answer((Subprotocol::Eth, id, payload.into())),
                None => EthAction::None,
            },
        }
    }

    /// A validated `BlockRangeUpdate`: refused if its number is implausible; passed on now, or
    /// kept until the interval since the last one is over (the latest one wins).
    fn on_range(&mut self, range: BlockRangeUpdate, now: Instant) -> EthAction {
        if range.latest > MAX_HEAD_NUMBER {
            return EthAction::InvalidRange;
        }
        self.ranges.offer(range, now).map_or(EthAction::None, EthAction::Range)
    }

    /// When a pending range is due.
    pub(crate) fn range_due(&self) -> Option<Instant> {
        self.ranges.due()
    }

    /// The pending range, if due at `now`.
    pub(crate) fn take_due_range(&mut self, now: Instant) -> Option<BlockRangeUpdate> {
        self.ranges.take_due(now)
    }

    /// Whether header calls are running.
    pub(crate) fn is_busy(&self) -> bool {
        !self.calls.is_empty()
    }

    /// The next finished header call's answer, to send; a call that panicked (a bug) is
    /// answered empty.
    pub(crate) async fn next_answer(&mut self) -> Option<Outgoing> {
        let (id, headers) = match self.calls.join_next_with_id().await? {
            Ok(done) => done,
            Err(failed) => {
                if failed.is_panic() {
                    error!(peer = %self.peer, "a header call panicked (a bug); answering empty");
                }
                (failed.id(), Vec::new())
            }
        };
        let request_id = self.answering.remove(&id);
        self.requests.on_answered();
        self.spawn();
        let payload = block_headers(request_id?, &headers);
        Some((Subprotocol::Eth, ids::BLOCK_HEADERS, payload))
    }

    /// Starts queued header requests while fewer than [`MAX_CONCURRENT_HEADER_CALLS_PER_PEER`]
    /// run, each clamped to `MAX_HEADERS_SERVE` headers ([`MAX_SKIPPING_HEADERS_SERVE`] with a
    /// skip), charged to the peer's budget (its call waits until the budget covers it) and given
    /// [`HEADER_SOURCE_TIMEOUT`].
    fn spawn(&mut self) {
        while self.calls.len() < MAX_CONCURRENT_HEADER_CALLS_PER_PEER {
            let Some(GetBlockHeaders { request_id, query }) = self.queued.pop_front() else {
                return;
            };
            let most = if query.skip == 0 { MAX_HEADERS_SERVE } else { MAX_SKIPPING_HEADERS_SERVE };
            let amount = query.amount.min(most);
            let (cost, burst) = (headers_time(amount), headers_time(HEADER_BUDGET_BURST));
            let start = self.budget.charge(cost, burst, Instant::now());
            let source = Arc::clone(&self.headers);
            let peer = self.peer;
            let call = self.calls.spawn(async move {
                tokio::time::sleep_until(start).await;
                let call = source.headers(HeadersRequest { amount, ..query });
                let headers = match tokio::time::timeout(HEADER_SOURCE_TIMEOUT, call).await {
                    Ok(Ok(headers)) => headers,
                    Ok(Err(error)) => {
                        debug!(%peer, %error, "header source failed; answering empty");
                        Vec::new()
                    }
                    Err(_) => {
                        debug!(%peer, "header source timed out; answering empty");
                        Vec::new()
                    }
                };
                bounded(headers, amount)
            });
            self.answering.insert(call.id(), request_id);
        }
    }

    /// The session ended.
    pub(crate) fn stop(&mut self) {
        self.calls.abort_all();
        self.answering.clear();
    }
}

/// A token bucket kept as the instant it will be full again (the generic cell rate algorithm:
/// no refill ticks to run, one instant to keep). Costs and the burst are the time the bucket
/// takes to refill them: a peer's headers read from the [`HeaderSource`] ([`headers_time`]) and
/// its transaction gossip ([`gossip_time`]).
#[derive(Debug)]
struct Bucket {
    full_at: Instant,
}

impl Bucket {
    /// A full bucket.
    const fn new(now: Instant) -> Self {
        Self { full_at: now }
    }

    /// Charges `cost` at `now` to a bucket of `burst`; returns when the work may start: `now`
    /// if the bucket holds it, else when it will have refilled enough. A header call is charged
    /// when it starts and calls run one at a time, so the wait is at most its own cost.
    fn charge(&mut self, cost: Duration, burst: Duration, now: Instant) -> Instant {
        self.full_at = self.full_at.max(now) + cost;
        self.full_at.checked_sub(burst).map_or(now, |at| at.max(now))
    }

    /// Takes `cost` at `now` from a bucket of `burst`; `false` if it does not hold that much
    /// (nothing is taken).
    fn try_take(&mut self, cost: Duration, burst: Duration, now: Instant) -> bool {
        let full_at = self.full_at.max(now) + cost;
        if full_at > now + burst {
            return false;
        }
        self.full_at = full_at;
        true
    }
}

/// The time the gossip budget takes to refill `bytes`.
fn gossip_time(bytes: u64) -> Duration {
    Duration::from_secs_f64(bytes as f64 / GOSSIP_BYTES_PER_SECOND as f64)
}

/// The time the budget takes to refill `headers`.
fn headers_time(headers: u64) -> Duration {
    Duration::from_secs(headers) / HEADER_BUDGET_PER_SECOND
}

/// At most `amount` headers and [`MAX_HEADERS_RESPONSE_BYTES`], each one RLP list exactly (the
/// first that is not ends the answer: a peer must never get a malformed `BlockHeaders`).
fn bounded(headers: Vec<Bytes>, amount: u64) -> Vec<Bytes> {
    let mut bytes = 0usize;
    let mut kept = Vec::new();
    for header in headers.into_iter().take(usize::try_from(amount).unwrap_or(usize::MAX)) {
        if !is_one_list(&header) || bytes + header.len() > MAX_HEADERS_RESPONSE_BYTES {
            break;
        }
        bytes += header.len();
        kept.push(header);
    }
    kept
}

/// Whether `item` is exactly one RLP list.
fn is_one_list(item: &[u8]) -> bool {
    let mut buf = item;
    matches!(Header::decode(&mut buf), Ok(h) if h.list && h.payload_length == buf.len())
}

/// `BlockHeaders`: `[request_id, [header, ...]]`, the headers as they are.
fn block_headers(request_id: u64, headers: &[Bytes]) -> bytes::Bytes {
    let list_len: usize = headers.iter().map(|h| h.len()).sum();
    let inner = Header { list: true, payload_length: list_len };
    let payload_length = request_id.length() + inner.length() + list_len;
    let mut out = Vec::with_capacity(payload_length + 9);
    Header { list: true, payload_length }.encode(&mut out);
    request_id.encode(&mut out);
    inner.encode(&mut out);
    for header in headers {
        out.put_slice(header);
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        eth::{HashOrNumber, RequestIds, protocol::ids},
        leaf::protocol::MAX_IN_FLIGHT_REQUESTS,
        peers::HeaderSourceError,
    };
    use alloy_primitives::B256;
    use futures::future::BoxFuture;
    use std::time::Duration;

    /// A header source that never answers.
    struct Silent;

    impl HeaderSource for Silent {
        fn headers(
            &self,
            _query: HeadersRequest,
        ) -> BoxFuture<'static, Result<Vec<Bytes>, HeaderSourceError>> {
            Box::pin(std::future::pending())
        }
    }

    /// A session of peer zero reading its headers from `source`, and the time it started at.
    fn session(source: Arc<dyn HeaderSource>) -> (EthSession, Instant) {
        let start = Instant::now();
        (EthSession::new(PeerId::ZERO, source, start), start)
    }

    fn get_headers(request_id: u64) -> EthMessage {
        EthMessage::GetBlockHeaders(GetBlockHeaders {
            request_id,
            query: HeadersRequest {
                origin: HashOrNumber::Number(1),
                amount: 1,
                skip: 0,
                reverse: false,
            },
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_header_source_is_answered_empty_after_its_timeout() {
        let (mut eth, start) = session(Arc::new(Silent));
        assert!(matches!(eth.on_message(get_headers(4), start), EthAction::None));
        let answer = eth.next_answer().await.expect("an answer");
        assert_eq!(Instant::now() - start, HEADER_SOURCE_TIMEOUT);
        assert_eq!(answer, (Subprotocol::Eth, ids::BLOCK_HEADERS, vec![0xc2, 4, 0xc0].into()));
    }

    #[tokio::test(start_paused = true)]
    async fn header_requests_beyond_the_in_flight_limit_are_a_flood() {
        let (mut eth, now) = session(Arc::new(Silent));
        for id in 0..MAX_IN_FLIGHT_REQUESTS as u64 {
            assert!(matches!(eth.on_message(get_headers(id), now), EthAction::None));
        }
        assert!(matches!(eth.on_message(get_headers(99), now), EthAction::Flood(_)));
        // Bodies are answered at once, whatever is in flight; responses are unsolicited.
        let bodies = EthMessage::GetBlockBodies(RequestIds { request_id: 7, hashes: vec![] });
        assert!(matches!(
            eth.on_message(bodies, now),
            EthAction::Answer((_, ids::BLOCK_BODIES, _))
        ));
        let response = EthMessage::Response { id: ids::BLOCK_HEADERS, request_id: 1 };
        assert!(matches!(eth.on_message(response, now), EthAction::Unsolicited));
    }

    /// A header source that answers at once with `amount` one-byte headers, noting when each
    /// call was made and what it asked.
    #[derive(Default)]
    struct Recording {
        calls: std::sync::Mutex<Vec<(Instant, HeadersRequest)>>,
    }

    impl Recording {
        fn calls(&self) -> Vec<(Instant, HeadersRequest)> {
            self.calls.lock().map(|calls| calls.clone()).unwrap_or_default()
        }
    }

    impl HeaderSource for Recording {
        fn headers(
            &self,
            query: HeadersRequest,
        ) -> BoxFuture<'static, Result<Vec<Bytes>, HeaderSourceError>> {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push((Instant::now(), query));
            }
            let amount = usize::try_from(query.amount).unwrap_or(usize::MAX);
            Box::pin(async move { Ok(vec![Bytes::from_static(&[0xc0]); amount]) })
        }
    }

    /// A header source that never answers, counting its calls.
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    impl HeaderSource for Counting {
        fn headers(
            &self,
            _query: HeadersRequest,
        ) -> BoxFuture<'static, Result<Vec<Bytes>, HeaderSourceError>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(std::future::pending())
        }
    }

    /// A header source with a bug: its calls panic.
    struct Panicking;

    impl HeaderSource for Panicking {
        fn headers(
            &self,
            _query: HeadersRequest,
        ) -> BoxFuture<'static, Result<Vec<Bytes>, HeaderSourceError>> {
            Box::pin(async {
                if std::hint::black_box(true) {
                    panic!("a bug in the header source");
                }
                Ok(Vec::new())
            })
        }
    }

    fn get_many(request_id: u64, amount: u64, skip: u64) -> EthMessage {
        EthMessage::GetBlockHeaders(GetBlockHeaders {
            request_id,
            query: HeadersRequest { origin: HashOrNumber::Number(1), amount, skip, reverse: false },
        })
    }

    /// A peer asking full batches back to back has them read at its budget's rate: the first at
    /// once (the burst), each next one when the budget has refilled for it. None is answered
    /// empty for it: a syncing geth drops a peer that answers its skeleton requests empty.
    #[tokio::test(start_paused = true)]
    async fn header_calls_wait_for_the_peers_budget() {
        let source = Arc::new(Recording::default());
        let (mut eth, start) = session(source.clone());
        for id in 0..3 {
            assert!(matches!(eth.on_message(get_many(id, 5000, 0), start), EthAction::None));
        }
        for _ in 0..3 {
            let (_, _, payload) = eth.next_answer().await.expect("an answer");
            assert_eq!(payload.len(), 3 + 1 + 3 + 1024, "1024 headers");
        }
        let calls = source.calls();
        let at: Vec<Duration> = calls.iter().map(|(at, _)| *at - start).collect();
        let half = Duration::from_millis(500); // 1024 headers at 2048 a second
        assert_eq!(at, [Duration::ZERO, half, 2 * half], "one full batch per half second");
        assert!(calls.iter().all(|(_, q)| q.amount == 1024), "clamped to MAX_HEADERS_SERVE");
    }

    /// Queries that skip blocks read one cold header per block asked: they are capped well
    /// below the full batches of contiguous headers.
    #[tokio::test(start_paused = true)]
    async fn skipping_queries_are_capped() {
        let source = Arc::new(Recording::default());
        let (mut eth, start) = session(source.clone());
        assert!(matches!(eth.on_message(get_many(1, 1024, 191), start), EthAction::None));
        assert!(matches!(eth.on_message(get_many(2, 1024, 0), start), EthAction::None));
        for _ in 0..2 {
            eth.next_answer().await.expect("an answer");
        }
        let amounts: Vec<u64> = source.calls().iter().map(|(_, q)| q.amount).collect();
        assert_eq!(amounts, [128, 1024]);
    }

    /// A peer's header calls run one at a time: they share one connection to the execution
    /// client, so a second would only hold a second place in the queue all peers wait in.
    #[tokio::test(start_paused = true)]
    async fn one_header_call_at_a_time_per_peer() {
        let source = Arc::new(Counting::default());
        let (mut eth, start) = session(source.clone());
        for id in 0..4 {
            assert!(matches!(eth.on_message(get_headers(id), start), EthAction::None));
        }
        tokio::time::sleep(Duration::from_secs(1)).await; // let the calls start
        assert_eq!(source.0.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    /// A header call that panics (a bug) is answered empty and frees its place: before, its
    /// request stayed unanswered for good, and enough of them made the next honest request a
    /// flood (a fatal penalty).
    #[tokio::test(start_paused = true)]
    async fn a_panicking_header_call_is_answered_empty_and_frees_its_place() {
        let (mut eth, start) = session(Arc::new(Panicking));
        for id in 1..=MAX_IN_FLIGHT_REQUESTS as u64 {
            assert!(matches!(eth.on_message(get_headers(id), start), EthAction::None));
        }
        for id in 1..=MAX_IN_FLIGHT_REQUESTS as u8 {
            let answer = eth.next_answer().await.expect("an answer");
            assert_eq!(answer, (Subprotocol::Eth, ids::BLOCK_HEADERS, vec![0xc2, id, 0xc0].into()));
        }
        assert_eq!(eth.requests.outstanding(), 0);
        assert!(!eth.is_busy());
        assert!(matches!(eth.on_message(get_headers(99), start), EthAction::None), "no flood");
    }

    #[test]
    fn ranges_are_passed_on_at_most_once_per_interval() {
        let (mut eth, now) = session(Arc::new(Silent));
        let range = |latest| BlockRangeUpdate { earliest: 0, latest, latest_hash: B256::ZERO };
        assert!(matches!(
            eth.on_message(EthMessage::BlockRangeUpdate(range(1)), now),
            EthAction::Range(_)
        ));
        assert!(matches!(
            eth.on_message(EthMessage::BlockRangeUpdate(range(2)), now),
            EthAction::None
        ));
        assert!(matches!(
            eth.on_message(EthMessage::BlockRangeUpdate(range(3)), now),
            EthAction::None
        ));
        let due = eth.range_due().expect("the latest waits");
        assert_eq!(eth.take_due_range(due), Some(range(3)));
        let absurd = EthMessage::BlockRangeUpdate(range(MAX_HEAD_NUMBER + 1));
        assert!(matches!(eth.on_message(absurd, due), EthAction::InvalidRange));
    }

    /// Transaction gossip is dropped within the peer's budget: a burst of
    /// [`GOSSIP_BURST_BYTES`], then [`GOSSIP_BYTES_PER_SECOND`]; a message beyond it is a flood,
    /// and takes nothing from the budget.
    #[test]
    fn transaction_gossip_is_bounded_by_a_byte_budget() {
        let (mut eth, start) = session(Arc::new(Silent));
        let mib = 1024 * 1024;
        let gossip = |size| EthMessage::Announcement { id: ids::TRANSACTIONS, size };
        for _ in 0..GOSSIP_BURST_BYTES / mib {
            assert!(matches!(eth.on_message(gossip(mib as usize), start), EthAction::None));
        }
        assert!(matches!(eth.on_message(gossip(1), start), EthAction::GossipFlood));
        // A second later the budget holds another second's worth, no more.
        let later = start + Duration::from_secs(1);
        let one_second = GOSSIP_BYTES_PER_SECOND as usize;
        assert!(matches!(eth.on_message(gossip(one_second + 1), later), EthAction::GossipFlood));
        assert!(matches!(eth.on_message(gossip(one_second), later), EthAction::None));
        // Honest gossip, ~40 KiB a second for a minute, stays well within it.
        let honest = start + Duration::from_secs(3600);
        for second in 0..60 {
            let at = honest + Duration::from_secs(second);
            let message = gossip(40 * 1024);
            assert!(matches!(eth.on_message(message, at), EthAction::None));
        }
    }

    #[test]
    fn headers_are_bounded_and_framed_as_block_headers() {
        let header = Bytes::from(vec![0xc2, 0x01, 0x02]);
        let junk = Bytes::from(vec![0x83, 1, 2, 3]);
        let kept = bounded(vec![header.clone(), header.clone(), junk, header.clone()], 10);
        assert_eq!(kept.len(), 2);
        assert_eq!(bounded(vec![header; 5], 3).len(), 3);
        let payload = block_headers(7, &kept);
        assert_eq!(payload.as_ref(), &[0xc8, 7, 0xc6, 0xc2, 1, 2, 0xc2, 1, 2]);
        assert_eq!(block_headers(77, &[]).as_ref(), &[0xc2, 77, 0xc0]);
    }
}
