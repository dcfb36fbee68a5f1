//! [`LeafServer`]: the request handler. Decode (or take a decoded message), check the peer's
//! concurrency and the request's item limits, take one leafdb snapshot, run the pure query (or
//! hand out a cached chunk), and return a typed [`Outcome`]: a response, a penalty, or "not a
//! request" for the session layer. Runs on a blocking thread; never blocks block application
//! (it only reads a snapshot).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use alloy_primitives::B256;
use bytes::Bytes;
use leafsync_leafdb::{KvStore, LeafDb, LeafSnapshot};
use leafsync_p2p::{
    DisconnectReason, PeerId,
    leaf::{
        ChunkContent, Codes, GetChunk, GetCodes, GetNodes, GetStorageChunk, LeafMessage, Nibbles,
        Nodes, PenaltyClass, StorageSlot,
    },
};
use tracing::warn;

use crate::{
    cache::{CacheStats, CachedChunk, ChunkCache, ChunkKey, ChunkKind},
    chunk::{account_chunk, head_number, storage_chunk},
    config::{MAX_CODES_SERVED, MAX_NODES_SERVED, ServeConfig},
    error::{Refusal, ServeError},
    nodes::{serve_codes, serve_nodes},
    response::Response,
};

/// What the handler decided about one incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send this response.
    Respond(Response),
    /// Do not answer; penalise the peer (and disconnect it when `disconnect` is set).
    Penalty {
        /// The penalty class.
        class: PenaltyClass,
        /// The disconnect reason, `None` when the message is only dropped.
        disconnect: Option<DisconnectReason>,
        /// Why.
        reason: Refusal,
    },
    /// Not a request (`Status`, `NewHead` or a response): the session layer handles it.
    NotARequest(Box<LeafMessage>),
}

impl Outcome {
    fn refuse(reason: Refusal) -> Self {
        Self::Penalty { class: reason.penalty(), disconnect: reason.disconnect_reason(), reason }
    }

    /// The response, if any.
    pub fn response(&self) -> Option<&Response> {
        match self {
            Self::Respond(r) => Some(r),
            Self::Penalty { .. } | Self::NotARequest(_) => None,
        }
    }
}

/// Counters of a [`LeafServer`] beyond its cache's.
#[derive(Debug, Default)]
struct Counters {
    served: AtomicU64,
    penalties: AtomicU64,
    internal_errors: AtomicU64,
}

/// The server's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Requests answered.
    pub served: u64,
    /// Messages refused with a penalty.
    pub penalties: u64,
    /// Requests answered empty because the leafdb could not be read.
    pub internal_errors: u64,
    /// The chunk cache's counters.
    pub cache: CacheStats,
}

/// Answers `leaf/1` requests from a leafdb; see the module docs.
pub struct LeafServer<S: KvStore> {
    db: Arc<LeafDb<S>>,
    cache: ChunkCache,
    config: ServeConfig,
    in_flight: Mutex<HashMap<PeerId, usize>>,
    counters: Counters,
}

impl<S: KvStore> std::fmt::Debug for LeafServer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafServer").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A peer's slot among its concurrent requests, released on drop.
struct InFlight<'a> {
    table: &'a Mutex<HashMap<PeerId, usize>>,
    peer: PeerId,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = table.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                table.remove(&self.peer);
            }
        }
    }
}

impl<S: KvStore> LeafServer<S> {
    /// A server over `db` with `config` (protocol ceilings applied, see
    /// [`ServeConfig::validated`]).
    pub fn new(db: Arc<LeafDb<S>>, config: ServeConfig) -> Self {
        let config = config.validated();
        Self {
            db,
            cache: ChunkCache::new(config.cache_bytes, config.cache_reuse_blocks),
            config,
            in_flight: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }
    }

    /// The leafdb served.
    pub fn db(&self) -> &Arc<LeafDb<S>> {
        &self.db
    }

    /// The effective configuration.
    pub const fn config(&self) -> &ServeConfig {
        &self.config
    }

    /// The counters, cache included.
    pub fn stats(&self) -> ServeStats {
        ServeStats {
            served: self.counters.served.load(Ordering::Relaxed),
            penalties: self.counters.penalties.load(Ordering::Relaxed),
            internal_errors: self.counters.internal_errors.load(Ordering::Relaxed),
            cache: self.cache.stats(),
        }
    }

    /// Decodes a raw message (relative id and RLP payload) with the protocol's limits and
    /// handles it; a message that does not decode earns the decoder's penalty.
    pub fn handle_raw(&self, peer: &PeerId, id: u8, payload: &[u8]) -> Outcome {
        match LeafMessage::decode(id, payload) {
            Ok(message) => self.handle(peer, message),
            Err(e) => self.refuse(Refusal::Decode(e)),
        }
    }

    /// Handles one decoded message from `peer`.
    pub fn handle(&self, peer: &PeerId, message: LeafMessage) -> Outcome {
        let Some(request) = Request::of(&message) else {
            return Outcome::NotARequest(Box::new(message));
        };
        let _slot = match self.enter(peer) {
            Ok(slot) => slot,
            Err(refusal) => return self.refuse(refusal),
        };
        if let Err(refusal) = request.check_items() {
            return self.refuse(refusal);
        }
        let outcome = match self.db.snapshot() {
            Ok(snap) => self.answer(&snap, &request),
            Err(e) => Err(ServeError::from(e)),
        };
        self.counters.served.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(response) => Outcome::Respond(response),
            Err(error) => {
                warn!(%error, id = message.id(), "serving failed; answering empty");
                self.counters.internal_errors.fetch_add(1, Ordering::Relaxed);
                Outcome::Respond(request.empty_answer())
            }
        }
    }

    fn refuse(&self, reason: Refusal) -> Outcome {
        self.counters.penalties.fetch_add(1, Ordering::Relaxed);
        Outcome::refuse(reason)
    }

    /// Takes one of the peer's concurrency slots.
    fn enter(&self, peer: &PeerId) -> Result<InFlight<'_>, Refusal> {
        let mut table = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let count = table.entry(*peer).or_insert(0);
        if *count >= self.config.max_concurrent_per_peer {
            return Err(Refusal::TooManyInFlight {
                count: *count + 1,
                limit: self.config.max_concurrent_per_peer,
            });
        }
        *count += 1;
        Ok(InFlight { table: &self.in_flight, peer: *peer })
    }

    /// Answers a request (already checked) from one snapshot.
    fn answer(
        &self,
        snap: &LeafSnapshot<'_, S>,
        request: &Request<'_>,
    ) -> Result<Response, ServeError> {
        Ok(match request {
            Request::Chunk(r) => {
                let spec = ChunkSpec {
                    kind: ChunkKind::Accounts,
                    account: B256::ZERO,
                    prefix: &r.prefix,
                    max_bytes: r.max_bytes,
                };
                let (head, body) = self.cached_chunk(snap, &spec)?;
                Response::chunk(r.request_id, head, &body)
            }
            Request::StorageChunk(r) => {
                let spec = ChunkSpec {
                    kind: ChunkKind::Storage,
                    account: r.account,
                    prefix: &r.prefix,
                    max_bytes: r.max_bytes,
                };
                let (head, body) = self.cached_chunk(snap, &spec)?;
                Response::storage_chunk(r.request_id, head, &body)
            }
            Request::Nodes(r) => {
                Response::from_message(&LeafMessage::Nodes(serve_nodes(snap, r, &self.config)?))
            }
            Request::Codes(r) => {
                Response::from_message(&LeafMessage::Codes(serve_codes(snap, r, &self.config)?))
            }
        })
    }

    /// The chunk body for a client, from the cache when a fresh entry exists, else computed with
    /// the request's byte class as bound and cached. Returns the head number the body was read
    /// at and the body as this client gets it ("too large" when over its own `max_bytes`).
    fn cached_chunk(
        &self,
        snap: &LeafSnapshot<'_, S>,
        spec: &ChunkSpec<'_>,
    ) -> Result<(u64, Bytes), ServeError> {
        let max_bytes = self.config.effective_max_bytes(spec.max_bytes);
        let key = ChunkKey {
            kind: spec.kind,
            account: spec.account,
            prefix: spec.prefix.as_slice().to_vec(),
            bytes_class: self.config.chunk_bytes_class(spec.max_bytes),
        };
        let head = head_number(snap);
        let chunk = match self.cache.get(&key, head) {
            Some(chunk) => chunk,
            None => {
                let chunk = Arc::new(self.compute_chunk(snap, spec, key.bytes_class)?);
                self.cache.insert(key, Arc::clone(&chunk));
                chunk
            }
        };
        if chunk.fits(max_bytes) {
            Ok((chunk.head_number, chunk.content_rlp.clone()))
        } else {
            Ok((chunk.head_number, Bytes::from_static(&[alloy_rlp::EMPTY_STRING_CODE])))
        }
    }

    fn compute_chunk(
        &self,
        snap: &LeafSnapshot<'_, S>,
        spec: &ChunkSpec<'_>,
        bound: u64,
    ) -> Result<CachedChunk, ServeError> {
        let deadline = Instant::now() + self.config.request_time_budget;
        let (content_rlp, items, too_large) = match spec.kind {
            ChunkKind::Accounts => {
                let content = account_chunk(snap, spec.prefix, bound, &self.config, deadline)?;
                encode_content(&content)
            }
            ChunkKind::Storage => {
                let content = storage_chunk(snap, &spec.account, spec.prefix, bound, deadline)?;
                encode_content(&content)
            }
        };
        Ok(CachedChunk { head_number: head_number(snap), content_rlp, items, too_large })
    }
}

/// The four requests the server answers.
enum Request<'a> {
    Chunk(&'a GetChunk),
    StorageChunk(&'a GetStorageChunk),
    Nodes(&'a GetNodes),
    Codes(&'a GetCodes),
}

impl<'a> Request<'a> {
    fn of(message: &'a LeafMessage) -> Option<Self> {
        match message {
            LeafMessage::GetChunk(r) => Some(Self::Chunk(r)),
            LeafMessage::GetStorageChunk(r) => Some(Self::StorageChunk(r)),
            LeafMessage::GetNodes(r) => Some(Self::Nodes(r)),
            LeafMessage::GetCodes(r) => Some(Self::Codes(r)),
            LeafMessage::Status(_)
            | LeafMessage::NewHead(_)
            | LeafMessage::Chunk(_)
            | LeafMessage::StorageChunk(_)
            | LeafMessage::Nodes(_)
            | LeafMessage::Codes(_) => None,
        }
    }

    /// Item limits, for messages that did not come through the decoder (which checks the same).
    fn check_items(&self) -> Result<(), Refusal> {
        let (what, count, limit) = match self {
            Self::Nodes(r) => ("nodes", r.nodes.len(), MAX_NODES_SERVED),
            Self::Codes(r) => ("code hashes", r.hashes.len(), MAX_CODES_SERVED),
            Self::Chunk(_) | Self::StorageChunk(_) => return Ok(()),
        };
        if count > limit { Err(Refusal::TooManyItems { what, count, limit }) } else { Ok(()) }
    }

    /// The answer sent when the leafdb cannot be read: empty, never wrong.
    fn empty_answer(&self) -> Response {
        let empty = alloy_rlp::encode(ChunkContent::<StorageSlot>::Items(Vec::new()));
        match self {
            Self::Chunk(r) => Response::chunk(r.request_id, 0, &empty),
            Self::StorageChunk(r) => Response::storage_chunk(r.request_id, 0, &empty),
            Self::Nodes(r) => Response::from_message(&LeafMessage::Nodes(Nodes {
                request_id: r.request_id,
                nodes: Vec::new(),
            })),
            Self::Codes(r) => Response::from_message(&LeafMessage::Codes(Codes {
                request_id: r.request_id,
                codes: Vec::new(),
            })),
        }
    }
}

/// What identifies a chunk request.
struct ChunkSpec<'a> {
    kind: ChunkKind,
    account: B256,
    prefix: &'a Nibbles,
    max_bytes: u64,
}

/// RLP of a chunk content, its item count and whether it is "too large".
fn encode_content<T: alloy_rlp::Encodable>(content: &ChunkContent<T>) -> (Bytes, usize, bool) {
    let too_large = matches!(content, ChunkContent::TooLarge);
    (Bytes::from(alloy_rlp::encode(content)), content.len(), too_large)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leafsync_leafdb::MemStore;
    use leafsync_p2p::leaf::protocol::MAX_IN_FLIGHT_REQUESTS;

    fn request() -> LeafMessage {
        LeafMessage::GetCodes(GetCodes { request_id: 1, hashes: vec![B256::ZERO], max_bytes: 1 })
    }

    #[test]
    fn more_concurrent_requests_than_the_limit_are_a_breach() {
        let server =
            LeafServer::new(Arc::new(LeafDb::<MemStore>::in_memory()), ServeConfig::default());
        let (peer, other) = (PeerId::repeat_byte(1), PeerId::repeat_byte(2));
        let slots: Vec<_> =
            (0..MAX_IN_FLIGHT_REQUESTS).map(|_| server.enter(&peer).unwrap()).collect();
        match server.handle(&peer, request()) {
            Outcome::Penalty { class, disconnect, reason } => {
                assert_eq!(class, PenaltyClass::Fatal);
                assert_eq!(disconnect, Some(DisconnectReason::ProtocolBreach));
                assert_eq!(reason, Refusal::TooManyInFlight { count: 17, limit: 16 });
            }
            other => panic!("{other:?}"),
        }
        // Other peers are not affected; slots free up when requests finish.
        assert!(server.handle(&other, request()).response().is_some());
        drop(slots);
        assert!(server.handle(&peer, request()).response().is_some());
        assert!(server.in_flight.lock().unwrap().is_empty());
        assert_eq!(server.stats().penalties, 1);
        assert_eq!(server.stats().served, 2);
    }

    #[test]
    fn empty_db_answers_empty() {
        let server =
            LeafServer::new(Arc::new(LeafDb::<MemStore>::in_memory()), ServeConfig::default());
        let chunk = LeafMessage::GetChunk(GetChunk {
            request_id: 3,
            prefix: Nibbles::root(),
            max_bytes: 10,
        });
        let response = server.handle(&PeerId::ZERO, chunk);
        let decoded = response.response().unwrap().decode().unwrap();
        let LeafMessage::Chunk(c) = decoded else { panic!() };
        assert_eq!((c.request_id, c.head_number, c.content), (3, 0, ChunkContent::Items(vec![])));
    }
}
