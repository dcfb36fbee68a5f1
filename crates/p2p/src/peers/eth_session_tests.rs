//! Unit tests of [`EthSession`]: budgets, header calls, ranges and framing.

use super::*;
use crate::{
    eth::{
        HashOrNumber, RequestIds,
        protocol::{MAX_REQUEST_SIZE, ids},
    },
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
    assert!(matches!(eth.on_message(bodies, now), EthAction::Answer((_, ids::BLOCK_BODIES, _))));
    let response = EthMessage::Response { id: ids::BLOCK_HEADERS, request_id: 1, size: 3 };
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
    assert!(matches!(eth.on_message(EthMessage::BlockRangeUpdate(range(2)), now), EthAction::None));
    assert!(matches!(eth.on_message(EthMessage::BlockRangeUpdate(range(3)), now), EthAction::None));
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

/// Unsolicited responses take their bytes from the gossip budget: a peer sending large ones
/// (up to `MAX_MESSAGE_SIZE` each, decompressed before the session sees them) is a flood once
/// the budget is spent, not ten mid penalties later; small ones stay mid penalties.
#[test]
fn unsolicited_responses_take_their_bytes_from_the_gossip_budget() {
    let (mut eth, start) = session(Arc::new(Silent));
    let mib = 1024 * 1024;
    let response = |size| EthMessage::Response { id: ids::BLOCK_BODIES, request_id: 1, size };
    for _ in 0..GOSSIP_BURST_BYTES / mib {
        assert!(matches!(eth.on_message(response(mib as usize), start), EthAction::Unsolicited));
    }
    assert!(matches!(eth.on_message(response(1), start), EthAction::GossipFlood));
    // They share the budget with gossip: spent by responses, it refuses gossip too.
    let gossip = EthMessage::Announcement { id: ids::TRANSACTIONS, size: 1 };
    assert!(matches!(eth.on_message(gossip, start), EthAction::GossipFlood));
    let later = start + Duration::from_secs(1);
    assert!(matches!(eth.on_message(response(64), later), EthAction::Unsolicited));
}

/// Requests answered empty draw on a budget of their own: each takes at least
/// [`EMPTY_ANSWER_COST_BYTES`] (a large one its hashes' bytes). Past the burst each is still
/// answered, and the session reads nothing more until the budget covers it again: a peer asking
/// faster (a geth syncing its chain over a fast link asks an idle peer for bodies and receipts
/// as fast as they come back) is slowed to the budget, never a breach. Gossip keeps its own.
#[test]
fn requests_answered_empty_past_their_budget_pause_reading() {
    let (mut eth, start) = session(Arc::new(Silent));
    let bodies = |request_id, hashes| {
        EthMessage::GetBlockBodies(RequestIds { request_id, hashes: vec![B256::ZERO; hashes] })
    };
    let answered = |action| matches!(action, EthAction::Answer((Subprotocol::Eth, _, _)));
    for id in 0..GOSSIP_BURST_BYTES / EMPTY_ANSWER_COST_BYTES {
        assert!(answered(eth.on_message(bodies(id, 1), start)));
        assert_eq!(eth.read_after(), None, "within the burst");
    }
    // One past the burst: answered, then nothing is read for its cost (less the nanoseconds
    // each cost rounds down).
    let cost = gossip_time(EMPTY_ANSWER_COST_BYTES);
    let receipts = EthMessage::GetReceipts(RequestIds { request_id: 0, hashes: vec![] });
    assert!(answered(eth.on_message(receipts, start)));
    let paused = eth.read_after().map(|t| t - start);
    assert!(paused.is_some_and(|p| p <= cost && p > cost / 2), "{paused:?}");
    // A peer asking as fast as it is read, for ten seconds: one request per cost, each
    // answered (1,024 a second).
    let mut now = start;
    let mut count = 0u64;
    while let Some(after) = eth.read_after().filter(|t| *t < start + Duration::from_secs(10)) {
        assert!(after > now, "each request waits its turn");
        now = after;
        eth.resume_reading();
        assert!(answered(eth.on_message(bodies(count, 0), now)));
        count += 1;
    }
    let per_second = GOSSIP_BYTES_PER_SECOND / EMPTY_ANSWER_COST_BYTES;
    assert!(count.abs_diff(10 * per_second) <= 2, "{count} in ten seconds");
    // Transaction gossip has its budget to itself: a whole burst of it is still fine.
    let gossip =
        EthMessage::Announcement { id: ids::TRANSACTIONS, size: GOSSIP_BURST_BYTES as usize };
    assert!(matches!(eth.on_message(gossip, now), EthAction::None));
    // The largest request decoded (8,192 hashes) takes its bytes: a quarter of a second.
    let (mut eth, start) = session(Arc::new(Silent));
    let large = MAX_REQUEST_SIZE / 32;
    for id in 0..GOSSIP_BURST_BYTES / (large as u64 * 32) {
        assert!(answered(eth.on_message(bodies(id, large), start)));
    }
    assert_eq!(eth.read_after(), None);
    assert!(answered(eth.on_message(bodies(0, large), start)));
    assert_eq!(eth.read_after(), Some(start + Duration::from_millis(250)));
}

/// A query for no header is still a request read and answered: it is charged as one header,
/// so a flood of them waits for the budget like any other (they went uncharged, answered at
/// once without end).
#[tokio::test(start_paused = true)]
async fn header_queries_for_no_header_are_charged_as_one() {
    let source = Arc::new(Recording::default());
    let (mut eth, start) = session(source.clone());
    let queries = HEADER_BUDGET_BURST + 2 * u64::from(HEADER_BUDGET_PER_SECOND);
    for id in 0..queries {
        assert!(matches!(eth.on_message(get_many(id, 0, 0), start), EthAction::None));
        eth.next_answer().await.expect("an answer");
    }
    let last = source.calls().last().map(|(at, _)| *at - start);
    assert_eq!(last, Some(Duration::from_secs(2)), "the budget's rate after its burst");
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
