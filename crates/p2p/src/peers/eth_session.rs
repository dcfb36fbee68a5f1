//! [`EthSession`]: the `eth/69` side of one session, a quiet peer. Announcements are ignored
//! and the requests other than headers answered empty, both within one budget of bytes a second
//! ([`GOSSIP_BYTES_PER_SECOND`]); `BlockRangeUpdate`s checked and passed on at most once per
//! `NEW_HEAD_MIN_INTERVAL`, `GetBlockHeaders` answered from the [`HeaderSource`] (bounded in
//! count, bytes, concurrency, headers per second and time; empty on any failure), and responses
//! (we send no eth requests) reported as unsolicited, their bytes taken from the gossip budget.

use super::{
    EMPTY_ANSWER_COST_BYTES, GOSSIP_BURST_BYTES, GOSSIP_BYTES_PER_SECOND, HEADER_BUDGET_BURST,
    HEADER_BUDGET_PER_SECOND, HEADER_SOURCE_TIMEOUT, HeaderSource,
    MAX_CONCURRENT_HEADER_CALLS_PER_PEER, MAX_HEAD_NUMBER, MAX_HEADERS_RESPONSE_BYTES,
    MAX_SKIPPING_HEADERS_SERVE, heads::Throttle, serving::Outgoing,
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
    /// The requests the peer may have answered empty, as many bytes a second
    /// ([`Self::charge_empty`]).
    empties: Bucket,
    /// Until when the session reads nothing more from the peer: its requests answered empty
    /// are past their budget.
    read_after: Option<Instant>,
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
            empties: Bucket::new(now),
            read_after: None,
            ranges: Throttle::new(now),
        }
    }

    /// Handles one message (the stream turns a second Status into an error first).
    pub(crate) fn on_message(&mut self, message: EthMessage, now: Instant) -> EthAction {
        match message {
            EthMessage::Status(_) => EthAction::None,
            EthMessage::Announcement { id, size } => {
                if self.within_gossip(id, size as u64, now) {
                    EthAction::None
                } else {
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
            EthMessage::Response { id, request_id, size } => {
                debug!(peer = %self.peer, id, request_id, size, "unsolicited eth/69 response");
                // Its frame was read, decrypted and decompressed like gossip's, and takes from
                // the same budget: else a peer sent megabytes of them for a mid penalty each.
                if self.within_gossip(id, size as u64, now) {
                    EthAction::Unsolicited
                } else {
                    EthAction::GossipFlood
                }
            }
            other @ (EthMessage::GetBlockBodies(_)
            | EthMessage::GetPooledTransactions(_)
            | EthMessage::GetReceipts(_)) => self.answer_empty(&other, now),
        }
    }

    /// Answers a request for bodies, receipts or pooled transactions empty, charged to the
    /// peer's budget for such answers ([`empty_answer_cost`], [`Self::charge_empty`]).
    fn answer_empty(&mut self, request: &EthMessage, now: Instant) -> EthAction {
        let hashes = match request {
            EthMessage::GetBlockBodies(r)
            | EthMessage::GetPooledTransactions(r)
            | EthMessage::GetReceipts(r) => r.hashes.len(),
            _ => 0,
        };
        self.charge_empty(empty_answer_cost(hashes), now);
        match request.empty_answer() {
            Some((id, payload)) => EthAction::Answer((Subprotocol::Eth, id, payload.into())),
            None => EthAction::None,
        }
    }

    /// Charges a request of `bytes` that is answered empty (eth/69's bodies, receipts and pooled
    /// transactions; snap/1's without a handler) to the peer's budget for them: a burst of
    /// [`GOSSIP_BURST_BYTES`], then [`GOSSIP_BYTES_PER_SECOND`]. Past it the request is still
    /// answered, but the session reads nothing more from the peer until the budget covers it
    /// again ([`Self::read_after`]): TCP holds the peer's next messages back. A geth syncing its
    /// chain asks every idle peer for bodies and receipts, one at a time once we answered empty,
    /// as fast as the link turns them around: on a LAN or the same host thousands a second,
    /// which is slowed down here, not a breach.
    pub(crate) fn charge_empty(&mut self, bytes: u64, now: Instant) {
        let (cost, burst) = (gossip_time(bytes), gossip_time(GOSSIP_BURST_BYTES));
        let start = self.empties.charge(cost, burst, now);
        if start > now {
            debug!(peer = %self.peer, bytes, wait = ?(start - now),
                "requests answered empty over the budget; reading paused");
            self.read_after = Some(start);
        }
    }

    /// Until when the session should read nothing from the peer (its requests answered empty
    /// are past their budget), if it should wait.
    pub(crate) fn read_after(&self) -> Option<Instant> {
        self.read_after
    }

    /// The wait of [`Self::read_after`] is over.
    pub(crate) fn resume_reading(&mut self) {
        self.read_after = None;
    }

    /// Takes `bytes` of gossip message `id` from the peer's budget; `false` if it does not hold
    /// that much (nothing is taken).
    fn within_gossip(&mut self, id: u8, bytes: u64, now: Instant) -> bool {
        let (cost, burst) = (gossip_time(bytes), gossip_time(GOSSIP_BURST_BYTES));
        let within = self.gossip.try_take(cost, burst, now);
        if !within {
            debug!(peer = %self.peer, id, bytes, "eth/69 gossip over the budget");
        }
        within
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
            // A query for no header is charged as one: it is a request read and answered.
            let (cost, burst) = (headers_time(amount.max(1)), headers_time(HEADER_BUDGET_BURST));
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

/// What a request we answer empty takes from its budget: its hashes' bytes, and at least
/// [`EMPTY_ANSWER_COST_BYTES`] (a frame read and one written).
fn empty_answer_cost(hashes: usize) -> u64 {
    (hashes as u64).saturating_mul(32).max(EMPTY_ANSWER_COST_BYTES)
}

/// The time the gossip budget (or that of requests answered empty) takes to refill `bytes`
/// (whole nanoseconds, rounded down).
fn gossip_time(bytes: u64) -> Duration {
    let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(GOSSIP_BYTES_PER_SECOND);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
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
#[path = "eth_session_tests.rs"]
mod tests;
