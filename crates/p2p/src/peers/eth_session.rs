//! [`EthSession`]: the `eth/69` side of one session, a quiet peer. Announcements are ignored,
//! `BlockRangeUpdate`s checked and passed on at most once per `NEW_HEAD_MIN_INTERVAL`,
//! `GetBlockHeaders` answered from the [`HeaderSource`] (bounded in count, bytes, concurrency
//! and time; empty on any failure), the other requests answered empty, and responses (we send
//! no eth requests) reported as unsolicited.

use super::{
    HEADER_SOURCE_TIMEOUT, HeaderSource, MAX_CONCURRENT_HEADER_CALLS_PER_PEER, MAX_HEAD_NUMBER,
    MAX_HEADERS_RESPONSE_BYTES, heads::Throttle, serving::Outgoing,
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
use std::{collections::VecDeque, sync::Arc};
use tokio::{task::JoinSet, time::Instant};
use tracing::debug;

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
}

/// The `eth/69` state of one session.
pub(crate) struct EthSession {
    peer: PeerId,
    headers: Arc<dyn HeaderSource>,
    requests: ServedRequests,
    queued: VecDeque<GetBlockHeaders>,
    calls: JoinSet<(u64, Vec<Bytes>)>,
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
            ranges: Throttle::new(now),
        }
    }

    /// Handles one message (the stream turns a second Status into an error first).
    pub(crate) fn on_message(&mut self, message: EthMessage, now: Instant) -> EthAction {
        match message {
            EthMessage::Status(_) | EthMessage::Announcement { .. } => EthAction::None,
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

    /// The next finished header call's answer, to send.
    pub(crate) async fn next_answer(&mut self) -> Option<Outgoing> {
        let (request_id, headers) = self.calls.join_next().await?.ok()?;
        self.requests.on_answered();
        self.spawn();
        Some((Subprotocol::Eth, ids::BLOCK_HEADERS, block_headers(request_id, &headers)))
    }

    /// Starts queued header requests while fewer than [`MAX_CONCURRENT_HEADER_CALLS_PER_PEER`]
    /// run, each clamped to `MAX_HEADERS_SERVE` headers and [`HEADER_SOURCE_TIMEOUT`].
    fn spawn(&mut self) {
        while self.calls.len() < MAX_CONCURRENT_HEADER_CALLS_PER_PEER {
            let Some(GetBlockHeaders { request_id, query }) = self.queued.pop_front() else {
                return;
            };
            let amount = query.amount.min(MAX_HEADERS_SERVE);
            let call = self.headers.headers(HeadersRequest { amount, ..query });
            let peer = self.peer;
            self.calls.spawn(async move {
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
                (request_id, bounded(headers, amount))
            });
        }
    }

    /// The session ended.
    pub(crate) fn stop(&mut self) {
        self.calls.abort_all();
    }
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
        eth::{HashOrNumber, RequestIds},
        leaf::protocol::MAX_IN_FLIGHT_REQUESTS,
        peers::HeaderSourceError,
    };
    use alloy_primitives::B256;
    use futures::future::BoxFuture;

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
        let start = Instant::now();
        let mut eth = EthSession::new(PeerId::ZERO, Arc::new(Silent), start);
        assert!(matches!(eth.on_message(get_headers(4), start), EthAction::None));
        let answer = eth.next_answer().await.expect("an answer");
        assert_eq!(Instant::now() - start, HEADER_SOURCE_TIMEOUT);
        assert_eq!(answer, (Subprotocol::Eth, ids::BLOCK_HEADERS, vec![0xc2, 4, 0xc0].into()));
    }

    #[tokio::test(start_paused = true)]
    async fn header_requests_beyond_the_in_flight_limit_are_a_flood() {
        let now = Instant::now();
        let mut eth = EthSession::new(PeerId::ZERO, Arc::new(Silent), now);
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

    #[test]
    fn ranges_are_passed_on_at_most_once_per_interval() {
        let now = Instant::now();
        let mut eth = EthSession::new(PeerId::ZERO, Arc::new(Silent), now);
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
