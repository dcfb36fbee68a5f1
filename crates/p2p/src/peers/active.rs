//! [`ActiveSession`]: the task that owns one established `leaf/1` session. It sends our requests
//! and matches their responses ([`RequestTracker`]), serves the peer's requests through the
//! [`RequestHandler`] on blocking threads ([`ServedRequests`] guards the in-flight limit, a
//! semaphore shared by all sessions the global concurrency), forwards checked and rate-limited
//! head announcements ([`HeadFilter`]), and reports penalties and its end to the peer manager.

use super::{
    RequestHandler,
    events::{PenaltyReason, SessionId},
    heads::HeadFilter,
};
use crate::{
    MessageFault, PeerId, PenaltyClass,
    leaf::{
        ChainHead, EncodedResponse, LeafMessage, LeafRequest, LeafResponse, MessageRole,
        RequestPair,
    },
    p2pstream::DisconnectReason,
    requests::{RequestError, RequestTracker, ResponseOutcome, ServedRequests},
    session::{SessionError, TcpLeafStream},
    util::sleep_until_opt,
};
use futures::StreamExt;
use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::{
    sync::{Semaphore, mpsc, oneshot},
    task::JoinSet,
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
/// stays silent still earns one high penalty per window and is dropped within about a minute.
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

/// The waiter of one of our requests.
pub(crate) type ResponseSender = oneshot::Sender<Result<LeafResponse, RequestError>>;

/// What the manager (or a handle, through it) asks of a session.
#[derive(Debug)]
pub(crate) enum SessionCommand {
    /// Send a request; answer on `reply`.
    Request { request: LeafRequest, reply: ResponseSender },
    /// Announce our new head.
    NewHead(ChainHead),
    /// Disconnect with this reason.
    Disconnect(DisconnectReason),
}

/// What a session tells the manager.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SessionEvent {
    /// The peer earned a penalty.
    Penalty { peer: PeerId, class: PenaltyClass, reason: PenaltyReason },
    /// The peer announced a new head.
    NewHead { peer: PeerId, head: ChainHead },
    /// The session ended.
    Closed { peer: PeerId, session: SessionId, reason: Option<DisconnectReason> },
}

/// One established session, driven by [`ActiveSession::run`].
pub(crate) struct ActiveSession {
    pub(crate) peer: PeerId,
    pub(crate) session: SessionId,
    pub(crate) stream: TcpLeafStream,
    pub(crate) commands: mpsc::Receiver<SessionCommand>,
    pub(crate) events: mpsc::Sender<SessionEvent>,
    pub(crate) handler: Arc<dyn RequestHandler>,
    /// The global cap on handler calls, shared by every session.
    pub(crate) handler_permits: Arc<Semaphore>,
    /// Cleared when the session ends: a handler call that got its permit late does not start.
    pub(crate) alive: Arc<AtomicBool>,
    pub(crate) tracker: RequestTracker<ResponseSender>,
    pub(crate) served: ServedRequests,
    pub(crate) queued: VecDeque<RequestPair<LeafRequest>>,
    pub(crate) handlers: JoinSet<(RequestPair<LeafRequest>, Option<EncodedResponse>)>,
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

impl ActiveSession {
    /// Runs the session until it ends; then fails every pending request with
    /// [`RequestError::Disconnected`] and reports `Closed`.
    pub(crate) async fn run(mut self) {
        let end = self.run_loop().await;
        // Nothing more is served: calls waiting for a permit are aborted; a call already handed
        // to a blocking thread cannot be, but it sees the flag and does not run the handler.
        self.alive.store(false, Ordering::Release);
        self.handlers.abort_all();
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
        debug!(peer = %self.peer, ?reason, "session closed");
        let closed = SessionEvent::Closed { peer: self.peer, session: self.session, reason };
        let _ = self.events.send(closed).await;
    }

    async fn run_loop(&mut self) -> End {
        loop {
            let deadline = self.tracker.next_deadline();
            let head_due = self.heads.due();
            tokio::select! {
                message = self.stream.next() => match message {
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
                    Some(SessionCommand::Request { request, reply }) => {
                        match self.tracker.start(request, reply, Instant::now()) {
                            Ok(message) => {
                                if let Err(end) = self.send_message(message).await {
                                    return end;
                                }
                            }
                            Err((error, reply)) => {
                                let _ = reply.send(Err(error));
                            }
                        }
                    }
                    Some(SessionCommand::NewHead(head)) => {
                        if let Err(end) = self.send_message(LeafMessage::NewHead(head)).await {
                            return end;
                        }
                    }
                    Some(SessionCommand::Disconnect(reason)) => return End::Send(reason),
                },
                Some(done) = self.handlers.join_next(), if !self.handlers.is_empty() => {
                    if let Err(end) = self.on_handler_done(done).await {
                        return end;
                    }
                }
                () = sleep_until_opt(deadline), if deadline.is_some() => {
                    self.on_deadline().await;
                }
                () = sleep_until_opt(head_due), if head_due.is_some() => {
                    if let Some(head) = self.heads.take_due(Instant::now()) {
                        self.forward_head(head).await;
                    }
                }
            }
        }
    }

    /// Sends one message, within [`SESSION_SEND_TIMEOUT`]: a peer that stops reading cannot
    /// hold the session (and our pending requests) forever.
    async fn send(&mut self, id: u8, payload: bytes::Bytes) -> Result<(), End> {
        match tokio::time::timeout(SESSION_SEND_TIMEOUT, self.stream.send_encoded(id, payload))
            .await
        {
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

    async fn send_message(&mut self, message: LeafMessage) -> Result<(), End> {
        self.send(message.id(), message.encoded().into()).await
    }

    /// Fails the requests whose deadline passed; one high penalty per [`STALL_PENALTY_WINDOW`].
    async fn on_deadline(&mut self) {
        let now = Instant::now();
        let expired = self.tracker.expire(now);
        if expired.is_empty() {
            return;
        }
        let count = expired.len();
        for waiter in expired {
            let _ = waiter.send(Err(RequestError::Timeout));
        }
        if StallPenalties::allow(&mut self.stalls.timeout, now) {
            debug!(peer = %self.peer, count, "requests timed out");
            self.penalise(PenaltyClass::High, PenaltyReason::Timeout).await;
        } else {
            debug!(peer = %self.peer, count, "requests timed out in the same stall; no new penalty");
        }
    }

    async fn forward_head(&self, head: ChainHead) {
        let _ = self.events.send(SessionEvent::NewHead { peer: self.peer, head }).await;
    }

    async fn penalise(&self, class: PenaltyClass, reason: PenaltyReason) {
        let event = SessionEvent::Penalty { peer: self.peer, class, reason };
        let _ = self.events.send(event).await;
    }

    /// An error from the stream: an unknown message id is penalised and the session goes on;
    /// anything else ends it (the stream layer already queued the Disconnect of a breach).
    async fn on_error(&mut self, error: SessionError) -> Option<End> {
        trace!(peer = %self.peer, %error, "session error");
        if let SessionError::Leaf(leaf) = &error
            && !leaf.is_protocol_breach()
        {
            self.penalise(leaf.penalty(), PenaltyReason::UnknownMessage).await;
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

    async fn on_message(&mut self, message: LeafMessage) -> Result<(), End> {
        match message.into_role() {
            MessageRole::NewHead(head) => {
                match self.heads.on_new_head(head, Instant::now()) {
                    Ok(Some(head)) => self.forward_head(head).await,
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
            MessageRole::Response(response) => self.on_response(response).await,
            MessageRole::Request(request) => self.on_request(request).await,
        }
    }

    async fn on_response(&mut self, response: RequestPair<LeafResponse>) -> Result<(), End> {
        match self.tracker.on_response(response) {
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

    async fn on_request(&mut self, request: RequestPair<LeafRequest>) -> Result<(), End> {
        if self.served.on_request().is_err() {
            self.penalise(PenaltyClass::Fatal, PenaltyReason::RequestFlood).await;
            return Err(End::Send(DisconnectReason::ProtocolBreach));
        }
        self.queued.push_back(request);
        self.spawn_handlers();
        Ok(())
    }

    /// Starts queued requests while fewer than [`MAX_CONCURRENT_HANDLER_CALLS_PER_PEER`] run.
    /// Each call first waits for a permit of the global cap (aborted with the session if it is
    /// still waiting then), and runs on a blocking thread holding it; a call whose session ended
    /// between the permit and the thread does not run the handler.
    fn spawn_handlers(&mut self) {
        while self.handlers.len() < MAX_CONCURRENT_HANDLER_CALLS_PER_PEER {
            let Some(request) = self.queued.pop_front() else { return };
            let handler = Arc::clone(&self.handler);
            let permits = Arc::clone(&self.handler_permits);
            let alive = Arc::clone(&self.alive);
            let peer = self.peer;
            self.handlers.spawn(async move {
                // The semaphore is never closed; if it were, the request is answered empty.
                let Ok(permit) = permits.acquire_owned().await else { return (request, None) };
                let call = request.message.clone();
                let response = tokio::task::spawn_blocking(move || {
                    // Held until the call returns, even if the session is gone by then.
                    let _permit = permit;
                    if !alive.load(Ordering::Acquire) {
                        return None;
                    }
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        handler.handle(peer, &call)
                    }))
                    .ok()
                })
                .await
                .ok()
                .flatten();
                (request, response)
            });
        }
    }

    async fn on_handler_done(
        &mut self,
        done: Result<(RequestPair<LeafRequest>, Option<EncodedResponse>), tokio::task::JoinError>,
    ) -> Result<(), End> {
        // A join error means the task was aborted (only at session end): nothing to answer.
        let Ok((RequestPair { request_id, message: request }, response)) = done else {
            return Ok(());
        };
        let response = match response {
            Some(response) if response.id == request.response_id() => response,
            Some(_) => {
                debug!(peer = %self.peer, "handler answered with the wrong kind; sending empty");
                request.empty_response().encoded()
            }
            None => {
                debug!(peer = %self.peer, "handler panicked; sending empty");
                request.empty_response().encoded()
            }
        };
        self.served.on_answered();
        self.spawn_handlers();
        // The handler's fields go out as they are, behind the request id.
        self.send(response.id, response.payload(request_id)).await
    }
}
