//! Glue to the p2p session layer: [`LeafServer`] as a [`RequestHandler`].
//!
//! The session calls the handler on a blocking thread after it has enforced every limit on the
//! request, and puts the request id in front of the encoded answer itself: a cached chunk body
//! goes to the wire without being decoded or encoded again.

use leafsync_leafdb::KvStore;
use leafsync_p2p::{
    PeerId,
    leaf::{EncodedResponse, LeafRequest},
    peers::RequestHandler,
};

use crate::server::LeafServer;

impl<S: KvStore + 'static> RequestHandler for LeafServer<S> {
    fn handle(&self, _peer: PeerId, request: &LeafRequest) -> EncodedResponse {
        self.answer(request)
    }
}
