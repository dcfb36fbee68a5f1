//! Glue to the p2p session layer: [`LeafServer`] as a [`RequestHandler`].
//!
//! The session calls the handler on a blocking thread, sets the request id itself and enforces
//! the per-peer in-flight limit (so [`Outcome::Penalty`] cannot normally happen here; if it does,
//! the peer gets the empty answer and the penalty is counted in [`LeafServer::stats`]). The
//! trait returns a typed [`LeafResponse`], so a cached chunk body is decoded once per answer
//! here (cheaper than reading it again, but not free): a handler result carrying pre-encoded
//! bytes would let cached chunks go to the wire with one copy, as [`LeafServer::handle`] does.

use leafsync_leafdb::KvStore;
use leafsync_p2p::{
    PeerId,
    peers::{HandlerResult, RequestHandler},
    requests::{LeafRequest, LeafResponse},
};

use crate::server::{LeafServer, Outcome};

impl<S: KvStore + 'static> RequestHandler for LeafServer<S> {
    fn handle(&self, peer: PeerId, request: LeafRequest) -> HandlerResult {
        let empty = request.empty_response();
        match LeafServer::handle(self, &peer, request.into_message()) {
            Outcome::Respond(response) => {
                response.decode().ok().and_then(LeafResponse::from_message).unwrap_or(empty)
            }
            Outcome::Penalty { .. } | Outcome::NotARequest(_) => empty,
        }
    }
}
