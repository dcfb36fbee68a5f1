//! [`Serving`]: one session's answers to the peer's `leaf/1` and `snap/1` requests. Each request
//! goes to its handler ([`RequestHandler`], [`SnapHandler`]) on a blocking thread, at most
//! [`MAX_CONCURRENT_HANDLER_CALLS_PER_PEER`] at once for the peer and within the global cap (a
//! semaphore shared by every session); the rest wait in a queue bounded by the in-flight rule
//! ([`ServedRequests`], per protocol). A `leaf/1` request that waited for its call past the
//! client's [`REQUEST_TIMEOUT`] is answered empty without one: its client has given up on it, and
//! under a load that queues every request that long, running them would only make every answer
//! late. A snap/1 request always runs: geth takes an empty answer for a lack of state.

use super::{MAX_CONCURRENT_HANDLER_CALLS_PER_PEER, RequestHandler, SnapHandler};
use crate::{
    PeerId,
    leaf::{EncodedResponse, LeafRequest, RequestPair, protocol::REQUEST_TIMEOUT},
    requests::{RequestFlood, ServedRequests},
    session::Subprotocol,
    snap::SnapMessage,
};
use bytes::Bytes;
use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};
use tokio::{sync::Semaphore, task::JoinSet, time::Instant};
use tracing::debug;

/// A request of the peer waiting for, or in, a handler call.
#[derive(Debug)]
pub(crate) enum Served {
    Leaf(RequestPair<LeafRequest>),
    Snap(SnapMessage),
}

/// What a handler call returned (`None`: it panicked or did not run).
#[derive(Debug)]
pub(crate) enum Answer {
    Leaf(EncodedResponse),
    Snap(SnapMessage),
    /// Not run: the `leaf/1` request waited past [`REQUEST_TIMEOUT`] for its call.
    Expired,
}

/// A message to send: its subprotocol, relative id and payload.
pub(crate) type Outgoing = (Subprotocol, u8, Bytes);

/// One session's serving state; see the module docs.
pub(crate) struct Serving {
    peer: PeerId,
    handler: Arc<dyn RequestHandler>,
    /// `None`: every snap/1 request is answered empty at once.
    snap: Option<Arc<dyn SnapHandler>>,
    /// The global cap on handler calls, shared by every session.
    permits: Arc<Semaphore>,
    /// Cleared when the session ends: a handler call that got its permit late does not start.
    alive: Arc<AtomicBool>,
    leaf_requests: ServedRequests,
    snap_requests: ServedRequests,
    /// Requests waiting for a call, with the time each arrived.
    queued: VecDeque<(Served, Instant)>,
    calls: JoinSet<(Served, Option<Answer>)>,
}

impl Serving {
    pub(crate) fn new(
        peer: PeerId,
        handler: Arc<dyn RequestHandler>,
        snap: Option<Arc<dyn SnapHandler>>,
        permits: Arc<Semaphore>,
    ) -> Self {
        Self {
            peer,
            handler,
            snap,
            permits,
            alive: Arc::new(AtomicBool::new(true)),
            leaf_requests: ServedRequests::default(),
            snap_requests: ServedRequests::default(),
            queued: VecDeque::new(),
            calls: JoinSet::new(),
        }
    }

    /// A `leaf/1` request arrived: queued, or a flood.
    pub(crate) fn on_leaf_request(
        &mut self,
        request: RequestPair<LeafRequest>,
    ) -> Result<(), RequestFlood> {
        self.leaf_requests.on_request()?;
        self.queued.push_back((Served::Leaf(request), Instant::now()));
        self.spawn();
        Ok(())
    }

    /// A `snap/1` request arrived: queued, answered empty at once without a handler (the
    /// answer is returned), or a flood.
    pub(crate) fn on_snap_request(
        &mut self,
        request: SnapMessage,
    ) -> Result<Option<Outgoing>, RequestFlood> {
        if self.snap.is_none() {
            return Ok(request.empty_answer().map(|a| snap_outgoing(&a)));
        }
        self.snap_requests.on_request()?;
        self.queued.push_back((Served::Snap(request), Instant::now()));
        self.spawn();
        Ok(None)
    }

    /// Whether snap/1 requests go to a handler (else they are answered empty at once).
    pub(crate) fn serves_snap(&self) -> bool {
        self.snap.is_some()
    }

    /// Whether handler calls are running.
    pub(crate) fn is_busy(&self) -> bool {
        !self.calls.is_empty()
    }

    /// The next finished call's answer, to send (`None` if the call was aborted).
    pub(crate) async fn next_answer(&mut self) -> Option<Outgoing> {
        let done = self.calls.join_next().await?;
        // A join error means the task was aborted (only at session end): nothing to answer.
        let (served, answer) = done.ok()?;
        let outgoing = match served {
            Served::Leaf(RequestPair { request_id, message: request }) => {
                self.leaf_requests.on_answered();
                let response = match answer {
                    Some(Answer::Leaf(response)) if response.id == request.response_id() => {
                        response
                    }
                    Some(Answer::Expired) => {
                        debug!(peer = %self.peer, "request waited past its timeout; sending empty");
                        request.empty_response().encoded()
                    }
                    Some(_) => {
                        let peer = self.peer;
                        debug!(%peer, "handler answered with the wrong kind; sending empty");
                        request.empty_response().encoded()
                    }
                    None => {
                        debug!(peer = %self.peer, "handler panicked; sending empty");
                        request.empty_response().encoded()
                    }
                };
                // The handler's fields go out as they are, behind the request id.
                (Subprotocol::Leaf, response.id, response.payload(request_id))
            }
            Served::Snap(request) => {
                self.snap_requests.on_answered();
                let response = match answer {
                    Some(Answer::Snap(response)) if request.is_answered_by(&response) => {
                        response.with_request_id(request.request_id())
                    }
                    _ => {
                        let peer = self.peer;
                        debug!(%peer, "snap handler failed or answered wrong; sending empty");
                        request.empty_answer()?
                    }
                };
                snap_outgoing(&response)
            }
        };
        self.spawn();
        Some(outgoing)
    }

    /// Starts queued requests while fewer than [`MAX_CONCURRENT_HANDLER_CALLS_PER_PEER`] run.
    /// Each call first waits for a permit of the global cap (aborted with the session if it is
    /// still waiting then), and runs on a blocking thread holding it; a call whose session ended
    /// between the permit and the thread does not run the handler, nor does a `leaf/1` one whose
    /// request arrived [`REQUEST_TIMEOUT`] ago or more ([`Answer::Expired`]).
    fn spawn(&mut self) {
        while self.calls.len() < MAX_CONCURRENT_HANDLER_CALLS_PER_PEER {
            let Some((served, received)) = self.queued.pop_front() else { return };
            let handler = Arc::clone(&self.handler);
            let snap = self.snap.clone();
            let permits = Arc::clone(&self.permits);
            let alive = Arc::clone(&self.alive);
            let peer = self.peer;
            self.calls.spawn(async move {
                // The semaphore is never closed; if it were, the request is answered empty.
                let Ok(permit) = permits.acquire_owned().await else { return (served, None) };
                let call = match &served {
                    Served::Leaf(request) => Served::Leaf(request.clone()),
                    Served::Snap(request) => Served::Snap(request.clone()),
                };
                let answer = tokio::task::spawn_blocking(move || {
                    // Held until the call returns, even if the session is gone by then.
                    let _permit = permit;
                    if !alive.load(Ordering::Acquire) {
                        return None;
                    }
                    // leaf/1 only: its clients give up at REQUEST_TIMEOUT. A snap/1 client (geth)
                    // times its requests out adaptively, up to a minute, and takes an empty
                    // answer for "this peer lacks the state": it gets the late answer.
                    if matches!(call, Served::Leaf(_)) && received.elapsed() >= REQUEST_TIMEOUT {
                        return Some(Answer::Expired);
                    }
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &call {
                        Served::Leaf(request) => {
                            Some(Answer::Leaf(handler.handle(peer, &request.message)))
                        }
                        Served::Snap(request) => {
                            snap.map(|snap| Answer::Snap(snap.handle(peer, request)))
                        }
                    }))
                    .ok()
                    .flatten()
                })
                .await
                .ok()
                .flatten();
                (served, answer)
            });
        }
    }

    /// The session ended: calls waiting for a permit are aborted; a call already handed to a
    /// blocking thread cannot be, but it sees the flag and does not run the handler.
    pub(crate) fn stop(&mut self) {
        self.alive.store(false, Ordering::Release);
        self.calls.abort_all();
    }
}

/// A snap/1 message to send.
fn snap_outgoing(message: &SnapMessage) -> Outgoing {
    (Subprotocol::Snap, message.id(), message.encoded().into())
}
