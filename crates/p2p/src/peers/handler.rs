//! The serving side's interface: how a session hands a peer's request to whoever answers it.

use crate::{
    PeerId,
    requests::{LeafRequest, LeafResponse},
};

/// What a [`RequestHandler`] returns: the response to send. The session sets its request id, and
/// replaces a response of the wrong kind by the empty answer of the right kind.
pub type HandlerResult = LeafResponse;

/// Answers the `leaf/1` requests of peers (implemented by the `serve` crate over the leafdb).
///
/// Called on `tokio::task::spawn_blocking`, because a real handler reads RocksDB; at most
/// [`super::MAX_CONCURRENT_HANDLER_CALLS_PER_PEER`] calls run at once per peer. The handler owns
/// the response budgets (bytes, count, time) and answers empty when it lacks data; a panic is
/// caught and answered empty too.
pub trait RequestHandler: Send + Sync + 'static {
    /// Answers `request` from `peer`.
    fn handle(&self, peer: PeerId, request: LeafRequest) -> HandlerResult;
}

/// A handler that has nothing: every request gets the empty answer of its kind. For nodes that
/// only consume (still syncing, `serves` = none).
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyHandler;

impl RequestHandler for EmptyHandler {
    fn handle(&self, _peer: PeerId, request: LeafRequest) -> HandlerResult {
        request.empty_response()
    }
}
