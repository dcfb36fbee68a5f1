//! [`SnapServer`]: the snap/1 server over a leafdb as the p2p session's [`SnapHandler`].

use std::sync::Arc;

use leafsync_leafdb::{KvStore, LeafDb};
use leafsync_p2p::{PeerId, peers::SnapHandler, snap::SnapMessage};

use super::{answer_account_range, answer_byte_codes, answer_storage_ranges, answer_trie_nodes};

/// Answers the snap/1 requests of peers from `db` (at its head root and recent roots), as
/// go-ethereum does; the
/// session has decoded each request within snap/1's limits.
pub struct SnapServer<S: KvStore> {
    db: Arc<LeafDb<S>>,
}

impl<S: KvStore> SnapServer<S> {
    /// A server over `db`.
    pub fn new(db: Arc<LeafDb<S>>) -> Self {
        Self { db }
    }
}

impl<S: KvStore> std::fmt::Debug for SnapServer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapServer").finish_non_exhaustive()
    }
}

impl<S: KvStore + 'static> SnapHandler for SnapServer<S> {
    /// The answer of each request's kind; a response given as a request (never passed by the
    /// session) and a refused `GetTrieNodes` (an empty path set, refused by the decoder before)
    /// are answered with an empty `TrieNodes`, which the session replaces by the right kind.
    fn handle(&self, _peer: PeerId, request: &SnapMessage) -> SnapMessage {
        let db = &*self.db;
        match request {
            SnapMessage::GetAccountRange(req) => {
                SnapMessage::AccountRange(answer_account_range(db, req))
            }
            SnapMessage::GetStorageRanges(req) => {
                SnapMessage::StorageRanges(answer_storage_ranges(db, req))
            }
            SnapMessage::GetByteCodes(req) => SnapMessage::ByteCodes(answer_byte_codes(db, req)),
            SnapMessage::GetTrieNodes(req) => match answer_trie_nodes(db, req) {
                Ok(nodes) => SnapMessage::TrieNodes(nodes),
                Err(_) => request.empty_answer().unwrap_or_else(|| request.clone()),
            },
            _ => request.clone(),
        }
    }
}
