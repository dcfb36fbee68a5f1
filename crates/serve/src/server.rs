//! [`LeafServer`]: the request handler, go-ethereum's `Service*Query` shape. The p2p session has
//! decoded the request and enforced every limit on it (item counts, the peer's requests in
//! flight); [`LeafServer::answer`] takes one leafdb snapshot, runs the pure query (or assembles
//! a batch of cached chunk pieces) and returns the encoded response for the session to put the
//! request id in front of. Runs on a blocking thread; never blocks block application (it only reads a snapshot).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use alloy_primitives::B256;
use alloy_rlp::{Decodable, Encodable, Header};
use bytes::{BufMut, Bytes, BytesMut};
use leafsync_leafdb::{KvStore, LeafDb, LeafSnapshot};
use leafsync_p2p::leaf::{
    ChunkContent, EncodedResponse, LeafRequest, RlpFields, WirePath, protocol::ids,
};

use crate::{
    cache::{CacheStats, CachedChunk, ChunkCache, ChunkKey, ChunkKind, Fill},
    chunk::{PieceBudget, account_chunk, head_number, storage_chunk},
    config::{MAX_CHUNKS_SERVED, MAX_STORAGE_CHUNKS_SERVED, ServeConfig},
    error::ServeError,
    nodes::{serve_codes, serve_nodes},
};

/// Counters of a [`LeafServer`] beyond its cache's.
#[derive(Debug, Default)]
struct Counters {
    served: AtomicU64,
    internal_errors: AtomicU64,
    off_chain: AtomicU64,
}

/// The server's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Requests answered.
    pub served: u64,
    /// Requests answered empty because the leafdb could not be read.
    pub internal_errors: u64,
    /// Chunk and storage-chunk requests answered empty because the state was off the chain, or
    /// not yet a block's (no head: a first sync under way) (`off_chain`).
    pub off_chain: u64,
    /// The chunk cache's counters.
    pub cache: CacheStats,
}

/// Answers `leaf/1` requests from a leafdb; see the module docs.
pub struct LeafServer<S: KvStore> {
    db: Arc<LeafDb<S>>,
    cache: ChunkCache,
    config: ServeConfig,
    counters: Counters,
}

impl<S: KvStore> std::fmt::Debug for LeafServer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafServer").field("config", &self.config).finish_non_exhaustive()
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
            internal_errors: self.counters.internal_errors.load(Ordering::Relaxed),
            off_chain: self.counters.off_chain.load(Ordering::Relaxed),
            cache: self.cache.stats(),
        }
    }

    /// Answers one request from one snapshot: the response's fields, encoded (cached chunk
    /// pieces copied as they are). When the leafdb cannot be read the answer is the empty one of
    /// the right kind: incomplete, never wrong. So is a chunk or storage chunk of a state off the
    /// chain (`off_chain`), and nothing of it is cached; nodes and codes are still served (each
    /// is sent only if it hashes to what the client asked).
    pub fn answer(&self, request: &LeafRequest) -> EncodedResponse {
        let outcome = match self.db.snapshot() {
            Ok(snap) => self.query(&snap, request),
            Err(e) => Err(ServeError::from(e)),
        };
        self.counters.served.fetch_add(1, Ordering::Relaxed);
        outcome.unwrap_or_else(|error| {
            crate::log::serve_warn!(%error, id = request.id(), "serving failed; answering empty");
            self.counters.internal_errors.fetch_add(1, Ordering::Relaxed);
            request.empty_response().encoded()
        })
    }

    /// The pure query for `request` over `snap`.
    fn query(
        &self,
        snap: &LeafSnapshot<'_, S>,
        request: &LeafRequest,
    ) -> Result<EncodedResponse, ServeError> {
        Ok(match request {
            LeafRequest::GetChunk(_) | LeafRequest::GetStorageChunk(_) if off_chain(snap) => {
                self.counters.off_chain.fetch_add(1, Ordering::Relaxed);
                request.empty_response().encoded()
            }
            LeafRequest::GetChunk(r) => {
                let chunks = r.prefixes.iter().take(MAX_CHUNKS_SERVED);
                let chunks = chunks.map(|prefix| (B256::ZERO, prefix));
                self.batch(snap, ChunkKind::Accounts, chunks, r.max_bytes)?
            }
            LeafRequest::GetStorageChunk(r) => {
                let chunks = r.chunks.iter().take(MAX_STORAGE_CHUNKS_SERVED);
                let chunks = chunks.map(|chunk| (chunk.account, &chunk.prefix));
                self.batch(snap, ChunkKind::Storage, chunks, r.max_bytes)?
            }
            LeafRequest::GetNodes(r) => {
                EncodedResponse::of(ids::NODES, &serve_nodes(snap, r, &self.config)?)
            }
            LeafRequest::GetCodes(r) => {
                EncodedResponse::of(ids::CODES, &serve_codes(snap, r, &self.config)?)
            }
        })
    }

    /// A batched `Chunk` or `StorageChunk` (`kind`) of the (account, prefix) `chunks` (the
    /// account is zero for account chunks): each requested chunk is one piece, the cached body
    /// of that (kind, account, prefix, byte class) as it is (`[head_number, content]` is the
    /// piece's list, so only a list header goes in front), computed with the request's byte
    /// class as bound and cached on a miss, until [`PieceBudget`] or the time budget stops it. A
    /// client whose own `max_bytes` a cached body exceeds gets "too large" at the body's head
    /// number. After the time budget only pieces already cached are added; the first piece
    /// always is. The pieces are copied once into the answer, never decoded or encoded again, so
    /// clients asking different batches share the cached pieces.
    fn batch<'p>(
        &self,
        snap: &LeafSnapshot<'_, S>,
        kind: ChunkKind,
        chunks: impl Iterator<Item = (B256, &'p WirePath)>,
        max_bytes: u64,
    ) -> Result<EncodedResponse, ServeError> {
        let deadline = Instant::now() + self.config.request_time_budget;
        let mut fill = PieceBudget::new(self.config.effective_max_bytes(max_bytes));
        let mut pieces: Vec<(Header, Bytes)> = Vec::new();
        for (account, prefix) in chunks {
            let spec = ChunkSpec { kind, account, prefix, max_bytes };
            let piece = match self.lookup(snap, &spec) {
                Ok(piece) => piece,
                Err(_) if !pieces.is_empty() && Instant::now() > deadline => break,
                Err(key) => self.fill(snap, &spec, key)?,
            };
            let fields = self.fields_for(&piece, max_bytes);
            let header = Header { list: true, payload_length: fields.len() };
            if !fill.admit(header.length() + fields.len()) {
                break;
            }
            pieces.push((header, fields));
        }
        let payload_length = pieces.iter().map(|(h, f)| h.length() + f.len()).sum();
        let list = Header { list: true, payload_length };
        let mut out = BytesMut::with_capacity(list.length() + payload_length);
        list.encode(&mut out);
        for (header, fields) in &pieces {
            header.encode(&mut out);
            out.put_slice(fields);
        }
        Ok(EncodedResponse { id: kind.response_id(), fields: out.freeze() })
    }

    /// The fresh cached chunk for `spec`, or on a miss its cache key (for [`Self::fill`]).
    fn lookup(
        &self,
        snap: &LeafSnapshot<'_, S>,
        spec: &ChunkSpec<'_>,
    ) -> Result<Arc<CachedChunk>, ChunkKey> {
        let key = ChunkKey {
            kind: spec.kind,
            account: spec.account,
            prefix: spec.prefix.as_slice().to_vec(),
            bytes_class: self.config.chunk_bytes_class(spec.max_bytes),
            reverts: snap.reverts(),
        };
        self.cache.get(&key, head_number(snap)).ok_or(key)
    }

    /// Computes the chunk for `spec` with its byte class (`key`'s) as bound, and caches it unless
    /// it is "too large" for lack of time ([`crate::ChunkRead::timed_out`]); or, when another
    /// request is computing it now, waits for its result (single flight). A time-out's "too
    /// large" goes to this asker only: whoever waited for it finds nothing in the cache and
    /// reads the chunk itself, with a budget of its own, as after a leader's failure.
    fn fill(
        &self,
        snap: &LeafSnapshot<'_, S>,
        spec: &ChunkSpec<'_>,
        key: ChunkKey,
    ) -> Result<Arc<CachedChunk>, ServeError> {
        let wait = self.config.request_time_budget;
        let flight = match self.cache.lead_or_join(&key, head_number(snap), wait) {
            Fill::Joined(chunk) => return Ok(chunk),
            Fill::Compute(flight) => flight,
        };
        let (chunk, cacheable) = self.compute_chunk(snap, spec, key.bytes_class)?;
        let chunk = Arc::new(chunk);
        if cacheable {
            self.cache.insert(key, Arc::clone(&chunk));
        }
        // Only now: whoever waited for this chunk finds it in the cache (or, after a time-out,
        // nothing).
        drop(flight);
        Ok(chunk)
    }

    /// A chunk's fields for a client asking `max_bytes`: the cached body as it is, or "too large"
    /// at the body's head number when it exceeds the client's own (honoured) `max_bytes`.
    fn fields_for(&self, chunk: &CachedChunk, max_bytes: u64) -> Bytes {
        if chunk.fits(self.config.effective_max_bytes(max_bytes)) {
            chunk.fields.clone()
        } else {
            let too_large = TooLarge { head_number: chunk.head_number };
            let mut fields = BytesMut::with_capacity(too_large.fields_length());
            too_large.encode_fields(&mut fields);
            fields.freeze()
        }
    }

    /// Reads the chunk for `spec` with `bound` as its byte bound and a time budget of its own:
    /// the encoded piece, and whether it may be cached ([`crate::ChunkRead::cacheable`]).
    fn compute_chunk(
        &self,
        snap: &LeafSnapshot<'_, S>,
        spec: &ChunkSpec<'_>,
        bound: u64,
    ) -> Result<(CachedChunk, bool), ServeError> {
        let deadline = Instant::now() + self.config.request_time_budget;
        let head = head_number(snap);
        Ok(match spec.kind {
            ChunkKind::Accounts => {
                let read = account_chunk(snap, spec.prefix, bound, &self.config, deadline)?;
                (cached(head, &read.content), read.cacheable())
            }
            ChunkKind::Storage => {
                let read = storage_chunk(snap, &spec.account, spec.prefix, bound, deadline)?;
                (cached(head, &read.content), read.cacheable())
            }
        })
    }
}

impl ChunkKind {
    /// The relative message id of the response to this kind of chunk request.
    const fn response_id(self) -> u8 {
        match self {
            Self::Accounts => ids::CHUNK,
            Self::Storage => ids::STORAGE_CHUNK,
        }
    }
}

/// What identifies a chunk request.
struct ChunkSpec<'a> {
    kind: ChunkKind,
    account: B256,
    prefix: &'a WirePath,
    max_bytes: u64,
}

/// The fields of a "too large" `Chunk` or `StorageChunk`: `head_number, 0x80`.
struct TooLarge {
    head_number: u64,
}

impl RlpFields for TooLarge {
    fn fields_length(&self) -> usize {
        self.head_number.length() + 1
    }

    fn encode_fields(&self, out: &mut dyn bytes::BufMut) {
        self.head_number.encode(out);
        out.put_u8(alloy_rlp::EMPTY_STRING_CODE);
    }

    fn decode_fields(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let head_number = u64::decode(buf)?;
        match alloy_rlp::Header::decode_bytes(buf, false)? {
            [] => Ok(Self { head_number }),
            _ => Err(alloy_rlp::Error::Custom("not the too-large mark")),
        }
    }
}

/// Whether `snap` holds a state off the chain: its account trie's root (computed by the leafdb
/// as it applied its blocks) is not the state root of the head it names, after a block whose
/// trace or parent was wrong (the node then announces no services, docs/operators.md) until a
/// repair. Its leaves are no block's state, true for no client; a piece of them cached would
/// be handed out for 16 blocks, even after a repair put the state back on the chain. A leafdb
/// without a head (a first sync under way) holds no block's state either: its tables are half
/// written, and a piece of them would claim block 0.
fn off_chain<S: KvStore>(snap: &LeafSnapshot<'_, S>) -> bool {
    snap.head().is_none_or(|head| head.state_root != snap.account_root())
}

/// A chunk content read at `head`, encoded for the cache.
fn cached<T: Encodable>(head: u64, content: &ChunkContent<T>) -> CachedChunk {
    let too_large = matches!(content, ChunkContent::TooLarge);
    CachedChunk::new(head, &alloy_rlp::encode(content), content.len(), too_large)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leafsync_leafdb::MemStore;
    use leafsync_p2p::leaf::{Chunk, GetChunk, LeafMessage, RequestPair};

    /// A leafdb without a head (a first sync under way, its tables half written) holds no
    /// block's state: chunk requests get an answer with no pieces, not pieces claiming block 0.
    #[test]
    fn a_leafdb_without_a_head_answers_no_pieces() {
        let db = Arc::new(LeafDb::<MemStore>::in_memory());
        // A leaf a sync wrote before it recorded any head.
        let mut batch = leafsync_leafdb::WriteBatch::default();
        batch.put(leafsync_leafdb::Table::Accounts, [0x30; 32].to_vec(), vec![0xc0]);
        db.store().write(batch, leafsync_leafdb::Durability::Logged).unwrap();
        let server = LeafServer::new(db, ServeConfig::default());
        let prefixes = vec![WirePath::root(), WirePath::from_nibbles(&[3]).unwrap()];
        let request = LeafRequest::GetChunk(GetChunk { prefixes, max_bytes: 10 });
        let response = server.answer(&request);
        assert_eq!(response.id, ids::CHUNK);
        let decoded = LeafMessage::decode(response.id, &response.payload(3)).unwrap();
        let expected = Chunk { pieces: vec![] };
        assert_eq!(decoded, LeafMessage::Chunk(RequestPair { request_id: 3, message: expected }));
        assert_eq!(server.stats().served, 1);
        assert_eq!(server.stats().off_chain, 1);
    }
}
