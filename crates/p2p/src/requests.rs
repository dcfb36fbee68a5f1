//! Request/response routing of one connection (`leaf/1`, and `snap/1` with the same rules):
//! request ids, per-request timeouts, the in-flight limit on both sides, and matching responses
//! to their request by id and type.
//!
//! [`RequestTracker`] is the client side (our requests to the peer); [`ServedRequests`] the server
//! side (the peer's requests to us). Both are plain state machines without I/O, driven by the
//! session task (`crate::peers`), so every rule of `docs/leaf-protocol.md` "Requests and
//! responses" is unit-testable here with explicit instants.

pub use crate::leaf::{LeafRequest, LeafResponse};
use crate::{
    PenaltyClass,
    leaf::{
        LeafMessage, RequestPair,
        protocol::{MAX_IN_FLIGHT_REQUESTS, REQUEST_TIMEOUT},
    },
};
use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};
use tokio::time::Instant;

/// A request kind a [`RequestTracker`] tracks: how it goes on the wire with its id, and which
/// responses answer it.
pub trait TrackedRequest: Clone {
    /// What answers it.
    type Response;
    /// The message sent: the request with its id.
    type Message;
    /// The request as sent with `request_id`.
    fn with_id(&self, request_id: u64) -> Self::Message;
    /// Whether `response` is of the kind that answers the request.
    fn answered_by(&self, response: &Self::Response) -> bool;
    /// The most items an answer may hold, `None` when only bytes bound it.
    fn max_items(&self) -> Option<usize>;
    /// The items a response holds.
    fn items(response: &Self::Response) -> usize;

    /// Checks a response that matched by id: of the kind that answers the request, with no
    /// more items than requested.
    fn check_response(&self, response: &Self::Response) -> Result<(), ResponseViolation> {
        if !self.answered_by(response) {
            return Err(ResponseViolation::WrongType);
        }
        match self.max_items() {
            Some(requested) if Self::items(response) > requested => {
                Err(ResponseViolation::TooManyItems { got: Self::items(response), requested })
            }
            _ => Ok(()),
        }
    }
}

impl TrackedRequest for LeafRequest {
    type Response = LeafResponse;
    type Message = LeafMessage;

    fn with_id(&self, request_id: u64) -> LeafMessage {
        LeafMessage::from(RequestPair { request_id, message: self.clone() })
    }

    fn answered_by(&self, response: &LeafResponse) -> bool {
        self.is_answered_by(response)
    }

    fn max_items(&self) -> Option<usize> {
        Some(self.max_response_items())
    }

    fn items(response: &LeafResponse) -> usize {
        response.item_count()
    }
}

/// Why a request of ours failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No established session with that peer.
    #[error("not connected to that peer")]
    UnknownPeer,
    /// The session's command queue is full; try later or another peer.
    #[error("peer session is busy")]
    PeerBusy,
    /// [`MAX_IN_FLIGHT_REQUESTS`] requests are already outstanding at that peer (timed-out
    /// ones that the peer has not answered yet included).
    #[error("{MAX_IN_FLIGHT_REQUESTS} requests already in flight at that peer")]
    TooManyInFlight,
    /// No answer within [`REQUEST_TIMEOUT`]; the peer was penalised.
    #[error("request timed out")]
    Timeout,
    /// The peer answered with a response of another kind, or with more items than requested (a
    /// protocol breach: the peer was disconnected).
    #[error("invalid response: {0}")]
    InvalidResponse(ResponseViolation),
    /// The session ended before the answer came.
    #[error("peer disconnected")]
    Disconnected,
    /// The network is shut down.
    #[error("network shut down")]
    NetworkClosed,
    /// The peer's session does not speak the request's protocol (a `leaf/1` request to a
    /// snap/1 peer, or the reverse).
    #[error("the peer does not speak that protocol")]
    NotSupported,
    /// The message given as a request is a response.
    #[error("not a request")]
    NotARequest,
}

/// What was wrong with a response that matched an in-flight request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseViolation {
    /// The response is not of the requested kind (e.g. `Codes` for a `GetNodes`).
    #[error("response of the wrong type")]
    WrongType,
    /// More node or code entries than were requested.
    #[error("{got} items for {requested} requested")]
    TooManyItems {
        /// Entries received.
        got: usize,
        /// Entries requested.
        requested: usize,
    },
}

impl ResponseViolation {
    /// Both are protocol breaches (`docs/leaf-protocol.md`, "Bad input"): fatal.
    pub fn penalty(&self) -> PenaltyClass {
        PenaltyClass::Fatal
    }
}

/// What became of a response received from the peer.
#[derive(Debug)]
pub enum ResponseOutcome<W, T = LeafResponse> {
    /// It answers an in-flight request: deliver it to that request's waiter.
    Matched(W, T),
    /// It answers a request that already timed out: dropped, mid penalty.
    Late,
    /// Its id matches no request we sent: dropped, mid penalty.
    Unsolicited,
    /// It matches an in-flight request but breaks the rules; the waiter gets the error and the
    /// peer is disconnected for breach of protocol.
    Invalid(W, ResponseViolation),
}

impl<W, T> ResponseOutcome<W, T> {
    /// The penalty the outcome earns, if any.
    pub fn penalty(&self) -> Option<PenaltyClass> {
        match self {
            Self::Matched(..) => None,
            Self::Late | Self::Unsolicited => Some(PenaltyClass::Mid),
            Self::Invalid(_, v) => Some(v.penalty()),
        }
    }
}

/// One request of ours in flight.
#[derive(Debug)]
struct InFlight<W, R> {
    request: R,
    deadline: Instant,
    waiter: W,
}

/// Counters of a tracker, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Requests sent.
    pub sent: u64,
    /// Responses delivered.
    pub matched: u64,
    /// Requests that timed out.
    pub timed_out: u64,
    /// Responses that came after their request's timeout.
    pub late: u64,
    /// Responses with an id we never used (or forgot).
    pub unsolicited: u64,
    /// Responses of the wrong type or with too many items.
    pub invalid: u64,
}

/// Our requests to one peer: assigns ids, enforces [`MAX_IN_FLIGHT_REQUESTS`] and
/// [`REQUEST_TIMEOUT`], and matches responses. `W` is whatever waits for the answer (a oneshot
/// sender in the session task).
///
/// A request that timed out fails for its waiter at once but keeps its slot until the peer
/// answers it (late) or the session ends: the server counts it as unanswered until it sends the
/// answer, and a 17th unanswered request is a flood it bans us for. A busy server whose queue
/// held our requests past the timeout would otherwise see a fresh request as that 17th.
#[derive(Debug)]
pub struct RequestTracker<W, R = LeafRequest> {
    next_id: u64,
    timeout: Duration,
    in_flight: HashMap<u64, InFlight<W, R>>,
    /// Ids of timed-out requests the peer has not answered yet; with `in_flight` at most
    /// [`MAX_IN_FLIGHT_REQUESTS`] (see `start`).
    expired: VecDeque<u64>,
    stats: TrackerStats,
}

impl<W, R: TrackedRequest> Default for RequestTracker<W, R> {
    fn default() -> Self {
        Self::new(REQUEST_TIMEOUT)
    }
}

impl<W, R: TrackedRequest> RequestTracker<W, R> {
    /// A tracker whose requests time out after `timeout` (normally [`REQUEST_TIMEOUT`]).
    pub fn new(timeout: Duration) -> Self {
        Self {
            next_id: 0,
            timeout,
            in_flight: HashMap::new(),
            expired: VecDeque::new(),
            stats: TrackerStats::default(),
        }
    }

    /// Registers `request` with a fresh id and returns the message to send. Fails (giving the
    /// waiter back) when [`MAX_IN_FLIGHT_REQUESTS`] are unanswered, timed-out ones included.
    pub fn start(
        &mut self,
        request: R,
        waiter: W,
        now: Instant,
    ) -> Result<R::Message, (RequestError, W)> {
        if self.unanswered() >= MAX_IN_FLIGHT_REQUESTS {
            return Err((RequestError::TooManyInFlight, waiter));
        }
        let id = self.next_id;
        // Ids are unique per connection; 2^64 requests cannot be sent in its lifetime.
        self.next_id = self.next_id.wrapping_add(1);
        let message = request.with_id(id);
        self.in_flight.insert(id, InFlight { request, deadline: now + self.timeout, waiter });
        self.stats.sent += 1;
        Ok(message)
    }

    /// Matches a response from the peer to its request, by id, then type, then item count.
    pub fn on_response(
        &mut self,
        response: RequestPair<R::Response>,
    ) -> ResponseOutcome<W, R::Response> {
        let RequestPair { request_id: id, message: response } = response;
        let Some(entry) = self.in_flight.remove(&id) else {
            return if self.expired.contains(&id) {
                self.expired.retain(|e| *e != id);
                self.stats.late += 1;
                ResponseOutcome::Late
            } else {
                self.stats.unsolicited += 1;
                ResponseOutcome::Unsolicited
            };
        };
        if let Err(violation) = entry.request.check_response(&response) {
            self.stats.invalid += 1;
            return ResponseOutcome::Invalid(entry.waiter, violation);
        }
        self.stats.matched += 1;
        ResponseOutcome::Matched(entry.waiter, response)
    }

    /// [`Self::on_response`] for a peer that serves our requests one at a time, in order, as
    /// geth's snap/1 handler does (it answers one before it reads the next): an answer restarts
    /// the timeout of every request sent after it, since their wait so far was the peer's queue,
    /// not its silence. Requests sent before it keep theirs (a peer answering out of order holds
    /// none of them longer). So a request waits at most [`REQUEST_TIMEOUT`] per request ahead of
    /// it, and a silent peer still times out one timeout after its last answer.
    pub fn on_response_in_order(
        &mut self,
        response: RequestPair<R::Response>,
        now: Instant,
    ) -> ResponseOutcome<W, R::Response> {
        let answered = response.request_id;
        let outcome = self.on_response(response);
        if matches!(outcome, ResponseOutcome::Matched(..) | ResponseOutcome::Late) {
            let until = now + self.timeout;
            for (id, entry) in &mut self.in_flight {
                if *id > answered && entry.deadline < until {
                    entry.deadline = until;
                }
            }
        }
        outcome
    }

    /// Removes every request whose deadline is at or before `now` and returns their waiters
    /// (each one earns the peer a high penalty). Their ids are remembered as expired, each
    /// holding its slot until its late answer.
    pub fn expire(&mut self, now: Instant) -> Vec<W> {
        let ids: Vec<u64> =
            self.in_flight.iter().filter(|(_, e)| e.deadline <= now).map(|(id, _)| *id).collect();
        let mut waiters = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(entry) = self.in_flight.remove(&id) {
                waiters.push(entry.waiter);
                self.expired.push_back(id);
                self.stats.timed_out += 1;
            }
        }
        waiters
    }

    /// The earliest deadline of the requests in flight.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.in_flight.values().map(|e| e.deadline).min()
    }

    /// Number of requests in flight (waited for; timed-out ones not included).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Requests the peer has not answered: in flight, or timed out and not answered since.
    pub fn unanswered(&self) -> usize {
        self.in_flight.len() + self.expired.len()
    }

    /// Requests that timed out and are not answered yet (each still holds its slot).
    pub fn timed_out_unanswered(&self) -> usize {
        self.expired.len()
    }

    /// Takes every waiter (the session is ending).
    pub fn drain(&mut self) -> impl Iterator<Item = W> + '_ {
        self.in_flight.drain().map(|(_, e)| e.waiter)
    }

    /// The counters.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }
}

/// The peer flooded us: it had more than [`MAX_IN_FLIGHT_REQUESTS`] unanswered requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("peer has more than {MAX_IN_FLIGHT_REQUESTS} requests in flight")]
pub struct RequestFlood;

/// The peer's unanswered requests to us (server side).
#[derive(Debug, Default)]
pub struct ServedRequests {
    outstanding: usize,
}

impl ServedRequests {
    /// A request arrived. More than [`MAX_IN_FLIGHT_REQUESTS`] unanswered ones is a flood, a
    /// protocol breach (`docs/leaf-protocol.md`: disconnect `0x02`, fatal).
    pub fn on_request(&mut self) -> Result<(), RequestFlood> {
        if self.outstanding >= MAX_IN_FLIGHT_REQUESTS {
            return Err(RequestFlood);
        }
        self.outstanding += 1;
        Ok(())
    }

    /// A response was sent.
    pub fn on_answered(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    /// Unanswered requests.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf::{AccountPiece, Chunk, Codes, GetChunk, GetCodes, Nodes, WirePath};
    use alloy_primitives::{B256, Bytes};

    fn get_codes(n: usize) -> LeafRequest {
        LeafRequest::GetCodes(GetCodes { hashes: vec![B256::ZERO; n], max_bytes: 1000 })
    }

    fn codes(id: u64, n: usize) -> RequestPair<LeafResponse> {
        RequestPair { request_id: id, message: Codes { codes: vec![Bytes::new(); n] }.into() }
    }

    /// A tracker with a one-hash `GetCodes` in flight for each of `waiters`, sent at `now`.
    fn tracker_with<W>(waiters: impl IntoIterator<Item = W>, now: Instant) -> RequestTracker<W> {
        let mut t = RequestTracker::default();
        for waiter in waiters {
            assert!(t.start(get_codes(1), waiter, now).is_ok());
        }
        t
    }

    /// Whether `t` refuses one more request at `now` as too many in flight, giving `waiter` back.
    fn is_full(t: &mut RequestTracker<usize>, waiter: usize, now: Instant) -> bool {
        let refused = t.start(get_codes(1), waiter, now);
        matches!(refused, Err((RequestError::TooManyInFlight, w)) if w == waiter)
    }

    #[test]
    fn ids_are_assigned_and_matched() {
        let now = Instant::now();
        let mut t = RequestTracker::default();
        let m0 = t.start(get_codes(2), "a", now).map_err(|e| e.0);
        let m1 = t.start(get_codes(2), "b", now).map_err(|e| e.0);
        assert_eq!(m0.map(|m| m.request_id()), Ok(Some(0)));
        assert_eq!(m1.map(|m| m.request_id()), Ok(Some(1)));
        assert!(matches!(t.on_response(codes(1, 2)), ResponseOutcome::Matched("b", _)));
        assert!(matches!(t.on_response(codes(0, 0)), ResponseOutcome::Matched("a", _)));
        assert_eq!(t.in_flight(), 0);
        assert!(matches!(t.on_response(codes(0, 0)), ResponseOutcome::Unsolicited));
        assert_eq!(t.stats().matched, 2);
        assert_eq!(t.stats().unsolicited, 1);
    }

    #[test]
    fn in_flight_limit_is_enforced() {
        let now = Instant::now();
        let mut t = tracker_with(0..MAX_IN_FLIGHT_REQUESTS, now);
        assert!(is_full(&mut t, 99, now));
    }

    #[test]
    fn wrong_type_and_too_many_items_are_invalid() {
        let now = Instant::now();
        let mut t = RequestTracker::default();
        assert!(t.start(get_codes(1), (), now).is_ok());
        let nodes = RequestPair { request_id: 0, message: Nodes::default().into() };
        let outcome = t.on_response(nodes);
        assert!(matches!(outcome, ResponseOutcome::Invalid((), ResponseViolation::WrongType)));
        assert_eq!(outcome.penalty(), Some(PenaltyClass::Fatal));
        assert!(t.start(get_codes(1), (), now).is_ok());
        assert!(matches!(
            t.on_response(codes(1, 2)),
            ResponseOutcome::Invalid((), ResponseViolation::TooManyItems { got: 2, requested: 1 })
        ));
        // A batched chunk answer holds at most one piece per prefix asked.
        let get_chunk = GetChunk { prefixes: vec![WirePath::default(); 2], max_bytes: 10 };
        assert!(t.start(get_chunk.into(), (), now).is_ok());
        let pieces = vec![AccountPiece::default(); 3];
        let chunk = RequestPair { request_id: 2, message: Chunk { pieces }.into() };
        assert!(matches!(
            t.on_response(chunk),
            ResponseOutcome::Invalid((), ResponseViolation::TooManyItems { got: 3, requested: 2 })
        ));
    }

    #[test]
    fn timed_out_requests_expire_and_their_answers_are_late() {
        let now = Instant::now();
        let mut t = tracker_with([7], now);
        assert_eq!(t.next_deadline(), Some(now + REQUEST_TIMEOUT));
        assert!(t.expire(now + REQUEST_TIMEOUT - Duration::from_millis(1)).is_empty());
        assert_eq!(t.expire(now + REQUEST_TIMEOUT), vec![7]);
        let late = t.on_response(codes(0, 1));
        assert!(matches!(late, ResponseOutcome::Late));
        assert_eq!(late.penalty(), Some(PenaltyClass::Mid));
        assert!(matches!(t.on_response(codes(0, 1)), ResponseOutcome::Unsolicited));
        assert_eq!(t.stats().timed_out, 1);
        assert_eq!(t.stats().late, 1);
    }

    /// A server counts a request as unanswered until it sends the answer, so a timed-out request
    /// keeps its slot here until its late answer: a busy server holding 16 of our requests past
    /// the timeout would take a 17th for a flood and ban us.
    #[test]
    fn a_timed_out_request_holds_its_slot_until_its_late_answer() {
        let now = Instant::now();
        let mut t = tracker_with(0..MAX_IN_FLIGHT_REQUESTS, now);
        let later = now + REQUEST_TIMEOUT;
        assert_eq!(t.expire(later).len(), MAX_IN_FLIGHT_REQUESTS);
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.unanswered(), MAX_IN_FLIGHT_REQUESTS);
        assert!(is_full(&mut t, 99, later));
        // One late answer frees one slot, and no more.
        assert!(matches!(t.on_response(codes(3, 1)), ResponseOutcome::Late));
        assert!(t.start(get_codes(1), 100, later).is_ok());
        assert!(is_full(&mut t, 101, later));
        // The server's side agrees: never a 17th unanswered request.
        let mut served = ServedRequests::default();
        for _ in 0..t.unanswered() {
            assert_eq!(served.on_request(), Ok(()));
        }
    }

    /// A peer serving in order (geth's snap/1): an answer restarts the timeout of the requests
    /// queued behind it, not of those before it.
    #[test]
    fn an_answer_in_order_restarts_the_timeout_of_the_requests_behind_it() {
        let now = Instant::now();
        let mut t = tracker_with(0..3, now);
        let second = REQUEST_TIMEOUT / 10;
        // The first is answered late in its window: the two behind it wait a whole timeout more.
        let answered = now + REQUEST_TIMEOUT - second;
        assert!(matches!(
            t.on_response_in_order(codes(0, 1), answered),
            ResponseOutcome::Matched(..)
        ));
        assert!(t.expire(now + REQUEST_TIMEOUT).is_empty(), "not timed out behind the queue");
        assert_eq!(t.next_deadline(), Some(answered + REQUEST_TIMEOUT));
        // The third answered before the second: the second keeps its deadline.
        let third = answered + second;
        assert!(matches!(t.on_response_in_order(codes(2, 1), third), ResponseOutcome::Matched(..)));
        assert_eq!(t.expire(answered + REQUEST_TIMEOUT), vec![1], "skipped, then timed out");
        // The plain `on_response` restarts nothing.
        let mut t = tracker_with(0..2, now);
        assert!(matches!(t.on_response(codes(0, 1)), ResponseOutcome::Matched(..)));
        assert_eq!(t.expire(now + REQUEST_TIMEOUT), vec![1]);
    }

    #[test]
    fn serving_side_detects_floods() {
        let mut s = ServedRequests::default();
        for _ in 0..MAX_IN_FLIGHT_REQUESTS {
            assert_eq!(s.on_request(), Ok(()));
        }
        assert_eq!(s.on_request(), Err(RequestFlood));
        s.on_answered();
        assert_eq!(s.on_request(), Ok(()));
    }

    #[test]
    fn empty_response_matches_its_request() {
        let req =
            LeafRequest::GetChunk(GetChunk { prefixes: vec![WirePath::default()], max_bytes: 10 });
        let empty = req.empty_response();
        assert!(req.is_answered_by(&empty));
        assert_eq!(empty.id(), req.response_id());
        assert_eq!(empty.item_count(), 0);
    }
}
