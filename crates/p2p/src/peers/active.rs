//! [`ActiveSession`]: the task that owns one established session (`leaf/1`, `eth/69` and
//! `snap/1`, whichever it speaks). It sends our `leaf/1` and `snap/1` requests and matches their
//! responses ([`RequestTracker`], one per protocol), serves the peer's requests ([`Serving`]:
//! handlers on blocking threads, the in-flight limit, a semaphore shared by all sessions the
//! global concurrency), answers `eth/69` as a quiet peer ([`EthSession`]), forwards checked and
//! rate-limited head announcements ([`HeadFilter`]) and block ranges, and reports penalties and
//! its end to the peer manager.

use super::{
    eth_session::{EthAction, EthSession},
    events::{PenaltyReason, SessionId},
    heads::HeadFilter,
    serving::{Outgoing, Serving},
};
use crate::{
    MessageFault, PeerId, PenaltyClass,
    eth::{self, BlockRangeUpdate, EthMessage, protocol::EMPTY_ANSWER_COST_BYTES},
    leaf::{ChainHead, LeafMessage, LeafRequest, LeafResponse, MessageRole, RequestPair},
    p2pstream::DisconnectReason,
    requests::{RequestError, RequestTracker, ResponseOutcome},
    session::{PeerMessage, SessionError, Subprotocol, TcpPeerStream},
    snap::SnapMessage,
    util::{or_on_panic, sleep_until_opt},
};
use futures::{FutureExt, StreamExt};
use std::time::Duration;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use tracing::{debug, trace};

/// Most handler calls that run at once for one peer. A handler call reads RocksDB on a blocking
/// thread; four per peer keep a few of a client's requests in parallel on the disk while 50
/// peers cannot take more than 200 of tokio's 512 blocking threads. Further requests (up to the
/// in-flight limit) wait in the session's queue.
pub const MAX_CONCURRENT_HANDLER_CALLS_PER_PEER: usize = 4;

/// Capacity of a session's command channel (requests, head announcements, disconnect). The
/// manager never waits on it (it uses `try_send`); a full channel fails the request with
/// [`RequestError::PeerBusy`]. Room for a full window of requests plus a few announcements.
pub const SESSION_COMMAND_CHANNEL_CAPACITY: usize =
    crate::leaf::protocol::MAX_IN_FLIGHT_REQUESTS + 16;

/// Time given to the Disconnect that refuses an inbound peer before Hello (banned, duplicate,
/// too many peers) to reach it; the peer may not read, and it cannot hold the handshake task
/// longer. Sessions close within the p2p layer's `DISCONNECT_TIMEOUT` (the same 2 s).
pub const SESSION_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Time one message may take to be written to the socket. A 2 MiB response needs ~8 s at
/// 2 Mbit/s, the slowest peer worth serving (the same reasoning as `REQUEST_TIMEOUT`); a peer
/// whose receive window stays closed longer does not read and is dropped.
pub const SESSION_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Within this window after a timeout penalty, further timeouts of the same peer earn no new one
/// (and likewise for late responses): all the requests in flight during one stall time out
/// together, and one stall of an honest fast peer (a GC pause, a disk hiccup) with 16 requests in
/// flight must not cost it 16 high penalties and a 30-minute ban (review finding M3). A peer that
/// stays silent still earns one high penalty per window while any request of ours is unanswered
/// (timed-out ones hold their slots until answered, so no new request need time out) and is
/// dropped within about a minute.
pub const STALL_PENALTY_WINDOW: Duration = crate::leaf::protocol::REQUEST_TIMEOUT;

/// When the last stall penalties were given.
#[derive(Debug, Default)]
pub(crate) struct StallPenalties {
    timeout: Option<Instant>,
    late: Option<Instant>,
}

impl StallPenalties {
    /// Whether a penalty given at `last` leaves room for a new one at `now`; records it if so.
    fn allow(last: &mut Option<Instant>, now: Instant) -> bool {
        if last.is_some_and(|at| now.saturating_duration_since(at) < STALL_PENALTY_WINDOW) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// The waiter of one of our `leaf/1` requests.
pub(crate) type ResponseSender = oneshot::Sender<Result<LeafResponse, RequestError>>;

/// The waiter of one of our `snap/1` requests.
pub(crate) type SnapResponseSender = oneshot::Sender<Result<SnapMessage, RequestError>>;

/// What the manager (or a handle, through it) asks of a session.
#[derive(Debug)]
pub(crate) enum SessionCommand {
    /// Send a `leaf/1` request; answer on `reply`.
    Request { request: LeafRequest, reply: ResponseSender },
    /// Send a `snap/1` request; answer on `reply`.
    SnapRequest { request: SnapMessage, reply: SnapResponseSender },
    /// Announce our new head (`leaf/1`).
    NewHead(ChainHead),
    /// Announce our new block range (`eth/69`).
    BlockRange(BlockRangeUpdate),
    /// Disconnect with this reason.
    Disconnect(DisconnectReason),
}

impl SessionCommand {
    /// Fails the request the command carries with `error` (the command could not reach its
    /// session); other commands are dropped.
    pub(crate) fn fail(self, error: RequestError) {
        match self {
            Self::Request { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Self::SnapRequest { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Self::NewHead(_) | Self::BlockRange(_) | Self::Disconnect(_) => {}
        }
    }
}

/// What a session tells the manager.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SessionEvent {
    /// The peer earned a penalty.
    Penalty { peer: PeerId, class: PenaltyClass, reason: PenaltyReason },
    /// The peer announced a new head.
    NewHead { peer: PeerId, head: ChainHead },
    /// The peer announced a new `eth/69` block range.
    BlockRange { peer: PeerId, range: BlockRangeUpdate },
    /// The session ended.
    Closed { peer: PeerId, session: SessionId, reason: Option<DisconnectReason> },
}

/// One established session, driven by [`ActiveSession::run`].
pub(crate) struct ActiveSession {
    pub(crate) peer: PeerId,
    pub(crate) session: SessionId,
    pub(crate) stream: TcpPeerStream,
    pub(crate) commands: mpsc::Receiver<SessionCommand>,
    pub(crate) events: mpsc::Sender<SessionEvent>,
    /// Answers the peer's `leaf/1` and `snap/1` requests.
    pub(crate) serving: Serving,
    /// The `eth/69` side, if the session speaks it.
    pub(crate) eth: Option<EthSession>,
    pub(crate) tracker: RequestTracker<ResponseSender>,
    pub(crate) snap_tracker: RequestTracker<SnapResponseSender, SnapMessage>,
    pub(crate) heads: HeadFilter,
    pub(crate) stalls: StallPenalties,
}

/// How the loop ends: with the reason sent or received, and whether we still have to send it.
enum End {
    /// Send Disconnect with this reason, then close.
    Send(DisconnectReason),
    /// The connection is over (the peer disconnected us, or the transport failed).
    Gone(Option<DisconnectReason>),
    /// Our Disconnect is already queued (the stream layer did it); flush and close.
    Flush(Option<DisconnectReason>),
}

/// The message of a request the tracker started, or `None` after failing its waiter with the
/// reason it did not start.
fn started_or_failed<M, T>(
    started: Result<M, (RequestError, oneshot::Sender<Result<T, RequestError>>)>,
) -> Option<M> {
    started
        .map_err(|(error, reply)| {
            let _ = reply.send(Err(error));
        })
        .ok()
}

/// What a snap/1 request answered empty costs the peer's budget for such answers: its encoded
/// bytes, at least [`EMPTY_ANSWER_COST_BYTES`] (a frame read and one written).
fn request_cost(request: &SnapMessage) -> u64 {
    let mut encoded = Vec::new();
    request.encode(&mut encoded);
    (encoded.len() as u64).max(EMPTY_ANSWER_COST_BYTES)
}

/// The next finished call of `eth`, or never without one.
async fn eth_answer(eth: &mut Option<EthSession>) -> Option<Outgoing> {
    match eth {
        Some(eth) => eth.next_answer().await,
        None => std::future::pending().await,
    }
}

impl ActiveSession {
    /// Runs the session until it ends; then fails every pending request with
    /// [`RequestError::Disconnected`] and reports `Closed` (also after a panic, a bug: the
    /// manager frees the peer's slot on `Closed`).
    pub(crate) async fn run(self) {
        let (peer, session, events) = (self.peer, self.session, self.events.clone());
        let ended = self.run_to_end().map(|()| true);
        if !or_on_panic(ended, "session", || false).await {
            let _ = events.send(SessionEvent::Closed { peer, session, reason: None }).await;
        }
    }

    async fn run_to_end(mut self) {
        let end = self.run_loop().await;
        // Nothing more is served.
        self.serving.stop();
        if let Some(eth) = &mut self.eth {
            eth.stop();
        }
        let reason = match end {
            End::Send(reason) => {
                let _ = self.stream.disconnect(reason).await;
                Some(reason)
            }
            End::Flush(reason) => {
                // The Disconnect is queued already: this flushes and closes.
                let queued = reason.unwrap_or(DisconnectReason::ProtocolBreach);
                let _ = self.stream.disconnect(queued).await;
                reason
            }
            End::Gone(reason) => reason,
        };
        for waiter in self.tracker.drain() {
            let _ = waiter.send(Err(RequestError::Disconnected));
        }
        for waiter in self.snap_tracker.drain() {
            let _ = waiter.send(Err(RequestError::Disconnected));
        }
        debug!(peer = %self.peer, ?reason, "session closed");
        let closed = SessionEvent::Closed { peer: self.peer, session: self.session, reason };
        let _ = self.events.send(closed).await;
    }

    /// Our timed-out requests, of both protocols, that the peer has not answered yet.
    fn timed_out_unanswered(&self) -> usize {
        self.tracker.timed_out_unanswered() + self.snap_tracker.timed_out_unanswered()
    }

    /// The earliest deadline of our requests, of both protocols, or, while timed-out requests
    /// are still unanswered, the end of the stall penalty's window (a peer that stays silent
    /// earns another).
    fn next_deadline(&self) -> Option<Instant> {
        let silent = self.timed_out_unanswered() > 0;
        let recheck = self.stalls.timeout.filter(|_| silent).map(|at| at + STALL_PENALTY_WINDOW);
        [self.tracker.next_deadline(), self.snap_tracker.next_deadline(), recheck]
            .into_iter()
            .flatten()
            .min()
    }

    async fn run_loop(&mut self) -> End {
        loop {
            let deadline = self.next_deadline();
            let head_due = self.heads.due();
            let range_due = self.eth.as_ref().and_then(EthSession::range_due);
            let eth_busy = self.eth.as_ref().is_some_and(EthSession::is_busy);
            // Requests answered empty past their budget: nothing more is read for a while.
            let read_after = self.eth.as_ref().and_then(EthSession::read_after);
            tokio::select! {
                message = self.stream.next(), if read_after.is_none() => match message {
                    None => return End::Gone(None),
                    Some(Ok(message)) => {
                        if let Err(end) = self.on_message(message).await {
                            return end;
                        }
                    }
                    Some(Err(error)) => {
                        if let Some(end) = self.on_error(error).await {
                            return end;
                        }
                    }
                },
                command = self.commands.recv() => match command {
                    None => return End::Send(DisconnectReason::ClientQuitting),
                    Some(command) => {
                        if let Err(end) = self.on_command(command).await {
                            return end;
                        }
                    }
                },
                Some(answer) = self.serving.next_answer(), if self.serving.is_busy() => {
                    if let Err(end) = self.send(answer).await {
                        return end;
                    }
                }
                Some(answer) = eth_answer(&mut self.eth), if eth_busy => {
                    if let Err(end) = self.send(answer).await {
                        return end;
                    }
                }
                () = sleep_until_opt(read_after), if read_after.is_some() => {
                    if let Some(eth) = &mut self.eth {
                        eth.resume_reading();
                    }
                }
                () = sleep_until_opt(deadline), if deadline.is_some() => {
                    self.on_deadline().await;
                }
                () = sleep_until_opt(head_due), if head_due.is_some() => {
                    if let Some(head) = self.heads.take_due(Instant::now()) {
                        self.forward(SessionEvent::NewHead { peer: self.peer, head }).await;
                    }
                }
                () = sleep_until_opt(range_due), if range_due.is_some() => {
                    let due = self.eth.as_mut().and_then(|e| e.take_due_range(Instant::now()));
                    if let Some(range) = due {
                        self.forward(SessionEvent::BlockRange { peer: self.peer, range }).await;
                    }
                }
            }
        }
    }

    async fn on_command(&mut self, command: SessionCommand) -> Result<(), End> {
        let outgoing = match command {
            SessionCommand::Request { request, reply } => {
                let started = if self.stream.speaks(Subprotocol::Leaf) {
                    self.tracker.start(request, reply, Instant::now())
                } else {
                    Err((RequestError::NotSupported, reply))
                };
                started_or_failed(started)
                    .map(|message| (Subprotocol::Leaf, message.id(), message.encoded().into()))
            }
            SessionCommand::SnapRequest { request, reply } => {
                let started = match (self.stream.speaks(Subprotocol::Snap), request.is_response()) {
                    (false, _) => Err((RequestError::NotSupported, reply)),
                    (true, true) => Err((RequestError::NotARequest, reply)),
                    (true, false) => self.snap_tracker.start(request, reply, Instant::now()),
                };
                started_or_failed(started)
                    .map(|message| (Subprotocol::Snap, message.id(), message.encoded().into()))
            }
            SessionCommand::NewHead(head) => self.stream.speaks(Subprotocol::Leaf).then(|| {
                let message = LeafMessage::NewHead(head);
                (Subprotocol::Leaf, message.id(), message.encoded().into())
            }),
            SessionCommand::BlockRange(range) => self.stream.speaks(Subprotocol::Eth).then(|| {
                let id = eth::protocol::ids::BLOCK_RANGE_UPDATE;
                (Subprotocol::Eth, id, alloy_rlp::encode(range).into())
            }),
            SessionCommand::Disconnect(reason) => return Err(End::Send(reason)),
        };
        match outgoing {
            Some(outgoing) => self.send(outgoing).await,
            None => Ok(()),
        }
    }

    /// Sends one message, within [`SESSION_SEND_TIMEOUT`]: a peer that stops reading cannot
    /// hold the session (and our pending requests) forever.
    async fn send(&mut self, (protocol, id, payload): Outgoing) -> Result<(), End> {
        let send = self.stream.send_encoded(protocol, id, payload);
        match tokio::time::timeout(SESSION_SEND_TIMEOUT, send).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                debug!(peer = %self.peer, %error, "send failed");
                Err(End::Gone(error.disconnect_reason()))
            }
            Err(_) => {
                debug!(peer = %self.peer, "send timed out: the peer does not read");
                Err(End::Gone(Some(DisconnectReason::TcpSubsystemError)))
            }
        }
    }

    /// Fails the requests whose deadline passed; one high penalty per [`STALL_PENALTY_WINDOW`],
    /// also while timed-out requests stay unanswered.
    async fn on_deadline(&mut self) {
        let now = Instant::now();
        let expired = self.tracker.expire(now);
        let expired_snap = self.snap_tracker.expire(now);
        let count = expired.len() + expired_snap.len();
        if count == 0 {
            let silent = self.timed_out_unanswered();
            if silent > 0 && StallPenalties::allow(&mut self.stalls.timeout, now) {
                debug!(peer = %self.peer, silent, "timed-out requests still unanswered");
                self.penalise(PenaltyClass::High, PenaltyReason::Timeout).await;
            }
            return;
        }
        for waiter in expired {
            let _ = waiter.send(Err(RequestError::Timeout));
        }
        for waiter in expired_snap {
            let _ = waiter.send(Err(RequestError::Timeout));
        }
        if StallPenalties::allow(&mut self.stalls.timeout, now) {
            debug!(peer = %self.peer, count, "requests timed out");
            self.penalise(PenaltyClass::High, PenaltyReason::Timeout).await;
        } else {
            debug!(peer = %self.peer, count, "requests timed out in the same stall; no new penalty");
        }
    }

    async fn forward(&self, event: SessionEvent) {
        let _ = self.events.send(event).await;
    }

    async fn penalise(&self, class: PenaltyClass, reason: PenaltyReason) {
        let event = SessionEvent::Penalty { peer: self.peer, class, reason };
        let _ = self.events.send(event).await;
    }

    /// An error from the stream: an unknown message id is penalised and the session goes on;
    /// anything else ends it (the stream layer already queued the Disconnect of a breach).
    async fn on_error(&mut self, error: SessionError) -> Option<End> {
        trace!(peer = %self.peer, %error, "session error");
        let unknown = match &error {
            SessionError::Leaf(e) => (!e.is_protocol_breach()).then(|| e.penalty()),
            SessionError::Eth(e) => (!e.is_protocol_breach()).then(|| e.penalty()),
            SessionError::Snap(e) => (!e.is_protocol_breach()).then(|| e.penalty()),
            _ => None,
        };
        if let Some(class) = unknown {
            self.penalise(class, PenaltyReason::UnknownMessage).await;
            return None;
        }
        if let Some(class) = error.penalty() {
            self.penalise(class, PenaltyReason::Breach).await;
        }
        Some(if error.is_protocol_breach() {
            End::Flush(error.disconnect_reason())
        } else {
            End::Gone(error.disconnect_reason())
        })
    }

    async fn on_message(&mut self, message: PeerMessage) -> Result<(), End> {
        match message {
            PeerMessage::Leaf(message) => self.on_leaf_message(message).await,
            PeerMessage::Eth(message) => self.on_eth_message(message).await,
            PeerMessage::Snap(message) => self.on_snap_message(message).await,
        }
    }

    async fn on_leaf_message(&mut self, message: LeafMessage) -> Result<(), End> {
        match message.into_role() {
            MessageRole::NewHead(head) => {
                match self.heads.on_new_head(head, Instant::now()) {
                    Ok(Some(head)) => {
                        self.forward(SessionEvent::NewHead { peer: self.peer, head }).await
                    }
                    Ok(None) => {
                        trace!(peer = %self.peer, number = head.number, "NewHead coalesced")
                    }
                    Err(why) => {
                        debug!(peer = %self.peer, %why, "refusing NewHead");
                        self.penalise(PenaltyClass::Low, PenaltyReason::InvalidHead).await;
                    }
                }
                Ok(())
            }
            // The stream turns a second Status into an error before it gets here.
            MessageRole::Status(_) => Ok(()),
            MessageRole::Response(response) => {
                let outcome = self.tracker.on_response(response);
                self.on_outcome(outcome).await
            }
            MessageRole::Request(request) => {
                if self.serving.on_leaf_request(request).is_err() {
                    return Err(self.flood().await);
                }
                Ok(())
            }
        }
    }

    async fn on_eth_message(&mut self, message: EthMessage) -> Result<(), End> {
        let Some(eth) = &mut self.eth else { return Ok(()) };
        match eth.on_message(message, Instant::now()) {
            EthAction::None => Ok(()),
            EthAction::Answer(answer) => self.send(answer).await,
            EthAction::Range(range) => {
                self.forward(SessionEvent::BlockRange { peer: self.peer, range }).await;
                Ok(())
            }
            EthAction::InvalidRange => {
                self.penalise(PenaltyClass::Low, PenaltyReason::InvalidHead).await;
                Ok(())
            }
            EthAction::Unsolicited => {
                self.penalise(PenaltyClass::Mid, PenaltyReason::UnsolicitedResponse).await;
                Ok(())
            }
            EthAction::Flood(_) => Err(self.flood().await),
            EthAction::GossipFlood => {
                self.penalise(PenaltyClass::Fatal, PenaltyReason::GossipFlood).await;
                Err(End::Send(DisconnectReason::ProtocolBreach))
            }
        }
    }

    async fn on_snap_message(&mut self, message: SnapMessage) -> Result<(), End> {
        if message.is_response() {
            let response = RequestPair { request_id: message.request_id(), message };
            // geth serves a peer's snap/1 requests one at a time, in order: see
            // `on_response_in_order`.
            let outcome = self.snap_tracker.on_response_in_order(response, Instant::now());
            return self.on_outcome(outcome).await;
        }
        // Answered empty at once without a snap/1 handler: charged as eth/69's empty answers.
        let cost = (!self.serving.serves_snap()).then(|| request_cost(&message));
        match self.serving.on_snap_request(message) {
            Ok(Some(answer)) => {
                if let (Some(eth), Some(cost)) = (&mut self.eth, cost) {
                    eth.charge_empty(cost, Instant::now());
                }
                self.send(answer).await
            }
            Ok(None) => Ok(()),
            Err(_) => Err(self.flood().await),
        }
    }

    /// The peer had more than `MAX_IN_FLIGHT_REQUESTS` unanswered requests: fatal.
    async fn flood(&self) -> End {
        self.penalise(PenaltyClass::Fatal, PenaltyReason::RequestFlood).await;
        End::Send(DisconnectReason::ProtocolBreach)
    }

    /// Delivers a matched response or penalises the peer, for either protocol.
    async fn on_outcome<T>(
        &mut self,
        outcome: ResponseOutcome<oneshot::Sender<Result<T, RequestError>>, T>,
    ) -> Result<(), End> {
        match outcome {
            ResponseOutcome::Matched(waiter, response) => {
                let _ = waiter.send(Ok(response));
                Ok(())
            }
            ResponseOutcome::Late => {
                // The answers to one stall's requests arrive together: one penalty for all.
                if StallPenalties::allow(&mut self.stalls.late, Instant::now()) {
                    self.penalise(PenaltyClass::Mid, PenaltyReason::LateResponse).await;
                }
                Ok(())
            }
            ResponseOutcome::Unsolicited => {
                self.penalise(PenaltyClass::Mid, PenaltyReason::UnsolicitedResponse).await;
                Ok(())
            }
            ResponseOutcome::Invalid(waiter, violation) => {
                let _ = waiter.send(Err(RequestError::InvalidResponse(violation)));
                self.penalise(violation.penalty(), PenaltyReason::InvalidResponse(violation)).await;
                Err(End::Send(DisconnectReason::ProtocolBreach))
            }
        }
    }
}
