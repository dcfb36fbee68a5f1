//! The serving side's interface: how a session hands a peer's request to whoever answers it.

use crate::{
    PeerId,
    leaf::{EncodedResponse, LeafRequest},
};

/// Answers the `leaf/1` requests of peers (implemented by the `serve` crate over the leafdb).
///
/// The answer is an [`EncodedResponse`]: the response's message id and its encoded fields. The
/// session puts the request id in front and frames it, so a body the handler has cached goes to
/// the wire as it is; a response of the wrong kind is replaced by the empty answer of the right
/// kind.
///
/// Called on `tokio::task::spawn_blocking`, because a real handler reads RocksDB; at most
/// [`super::MAX_CONCURRENT_HANDLER_CALLS_PER_PEER`] calls run at once per peer, and the session
/// has already enforced every limit on the request (item counts, the peer's requests in
/// flight). The handler owns the response budgets (bytes, count, time) and answers empty when it
/// lacks data; a panic is caught and answered empty too.
pub trait RequestHandler: Send + Sync + 'static {
    /// Answers `request` from `peer`.
    fn handle(&self, peer: PeerId, request: &LeafRequest) -> EncodedResponse;
}

/// A handler that has nothing: every request gets the empty answer of its kind. For nodes that
/// only consume (still syncing, `serves` = none).
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyHandler;

impl RequestHandler for EmptyHandler {
    fn handle(&self, _peer: PeerId, request: &LeafRequest) -> EncodedResponse {
        request.empty_response().encoded()
    }
}
