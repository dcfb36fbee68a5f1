//! snap/1 as a source of the syncer: [`SnapTransport`] sends one snap/1 request and returns the
//! answer (the network implements it over RLPx beside eth/69; tests over serve's snap/1
//! server), and [`SnapPeer`] implements [`SyncPeer`] on top of it by translating each `leaf/1`
//! request of the syncer into snap/1 requests at the pivot's state root:
//!
//! * `GetChunk([prefix, ...])` → for each prefix, `GetAccountRange(prefix‖00…, prefix‖ff…)`,
//!   continued from the last key until the prefix is covered (`ranges`); the chunk's storages
//!   then several accounts per `GetStorageRanges` (`storages`): those that come whole are
//!   inlined, the others carry the "large storage" mark, so the syncer fetches them as units of
//!   their own;
//! * `GetStorageChunk([(account, prefix), ...])` → for each run of whole storages, several
//!   accounts per `GetStorageRanges`, and for each chunk under a prefix, `GetStorageRanges` for
//!   that account, continued;
//! * `GetNodes` → `GetTrieNodes`, geth's compact paths grouped per account (`items`);
//! * `GetCodes` → `GetByteCodes`.
//!
//! The chunks of one request are read side by side (a few at a time) and answered in order; no
//! read starts once the pieces reach the request's `max_bytes` (the `leaf/1` server's rule),
//! and those running then are kept. At most [`MAX_SNAP_IN_FLIGHT`] snap/1 requests are
//! outstanding to one peer.
//!
//! The assembled answers then go through the syncer's usual checks (skeleton hash, storage root,
//! node and code hashes), so range proofs are not verified here. A range answered empty with an
//! empty proof means the peer has no state for the root (Besu's default, a geth still generating
//! its snapshot): the peer is marked ([`SyncPeer::lacks_state`]) and gets no chunk work until the
//! pivot moves, without penalty; what it answered before in the same request stands and is judged
//! as usual (`ranges`). Trie nodes answered with no node at all mark it apart
//! ([`SyncPeer::lacks_nodes`]): a geth generating its snapshot has no ranges yet but serves the
//! trie's nodes (and codes, which name no root, from anyone). An answer no honest server sends (out
//! of order, outside the range, of another kind, a node or code nobody asked for) fails the request
//! as an invalid response (a ban). `docs/snap.md` "The snap/1 client" has the details.

mod items;
pub mod network;
mod ranges;
mod storages;

pub use network::{NetworkSnapPeer, snap_head};
pub use storages::{STORAGE_BATCH, STORAGE_ROUNDS};

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy_primitives::B256;
use leafsync_p2p::{
    PeerId, PenaltyClass,
    leaf::ChainHead,
    requests::{LeafRequest, LeafResponse, RequestError, ResponseViolation},
    snap::{
        GetAccountRange, GetStorageRanges, SnapMessage, StorageRanges,
        protocol::{SOFT_RESPONSE_LIMIT, STATE_LOOKUP_SLACK_PERCENT},
    },
};
use tokio::{sync::Semaphore, time::Instant};
use tracing::debug;

use crate::{
    config::MAX_IN_FLIGHT_PER_PEER,
    peer::{PeerFuture, SyncPeer},
    window::PeerWindow,
};

/// Smallest byte budget asked of a snap/1 server (64 KiB): a slow peer still returns hundreds
/// of accounts per answer, which bounds the rounds one chunk may take ([`max_rounds`]).
pub const MIN_RESPONSE_BYTES: u64 = 64 * 1024;

/// Time a range answer should take at the peer's measured throughput (500 ms): the budget is
/// the throughput times this, between [`MIN_RESPONSE_BYTES`] and geth's 2 MiB
/// [`SOFT_RESPONSE_LIMIT`].
pub const BUDGET_ROUND_TRIP: Duration = Duration::from_millis(500);

/// Byte budget asked of a peer before any answer of it was measured (512 KiB: 500 ms at
/// 1 MiB/s). The first answers then size the budget from the peer's pipe.
pub const INITIAL_RESPONSE_BYTES: u64 = 512 * 1024;

/// How far a snap/1 answer may run past the byte budget it was asked for (256 KiB). A server
/// stops after the item that crosses the budget and then adds the range's edge proofs: at most
/// one contract code (24 KiB by EIP-170) or a few hundred bytes of account or slot, plus two
/// proof paths of at most 17 nodes of ~532 bytes. A storage answer may also run
/// [`STATE_LOOKUP_SLACK_PERCENT`] past its budget and weigh [`SLOT_ENCODING_PERCENT`] more
/// encoded than counted. An answer further over it is kept (its items are checked like any
/// other) but costs the peer a [`PenaltyClass::Mid`]: it made us read more than we asked for.
pub const OVERSHOOT_ALLOWANCE: u64 = 256 * 1024;

/// How much more a storage answer's slots weigh encoded than servers count them, at most
/// (10 %). geth and our server count a slot as its 32-byte key plus its value's bytes; encoded,
/// it also carries a list header, a key header and a value header, up to 3 bytes on as few as
/// 34 counted (a two-byte value): 8.8 %.
pub const SLOT_ENCODING_PERCENT: u64 = 10;

/// Rounds slack above what an honest server needs for one chunk (see [`max_rounds`]): the
/// first round, the one that shows the range is done, and one for a budget counted a little
/// differently by the server.
pub const ROUND_SLACK: u64 = 3;

/// Hard cap on the snap/1 requests one `leaf/1` request may become (256): however large a
/// chunk's `max_bytes`, a peer answering one account at a time is cut off here.
pub const MAX_ROUNDS_CAP: u64 = 256;

/// The most snap/1 requests one chunk of at most `max_bytes` may take. An honest server fills
/// each answer to its budget (at least [`MIN_RESPONSE_BYTES`]), so after
/// `max_bytes / MIN_RESPONSE_BYTES` full answers the chunk is either covered or too large; a
/// peer that needs more rounds is starving the sync, and what it sent by then is judged by the
/// skeleton hash (a partial chunk fails it: junk).
pub fn max_rounds(max_bytes: u64) -> u64 {
    (max_bytes.div_ceil(MIN_RESPONSE_BYTES) + ROUND_SLACK).min(MAX_ROUNDS_CAP)
}

/// One snap/1 connection as the syncer needs it. The network implements it over RLPx: it
/// chooses the request id (the `request_id` of the request is 0), matches the response by id,
/// decodes it with snap/1's limits (`SnapMessage::decode`, sizes checked before any list is
/// decoded) and applies its own timeout.
pub trait SnapTransport: Send + Sync + 'static {
    /// The peer's node id.
    fn id(&self) -> PeerId;
    /// The peer's head (eth/69 `Status` and `BlockRangeUpdate` give number and hash; the state
    /// root comes from the header, `B256::ZERO` while unknown).
    fn head(&self) -> ChainHead;
    /// The peer's estimate of the number of accounts (snap/1 has none: 0 unless the transport
    /// knows better).
    fn account_estimate(&self) -> u64 {
        0
    }
    /// Sends one snap/1 request and returns the response as received (of any kind: the caller
    /// checks that it answers the request).
    fn request(&self, request: SnapMessage) -> PeerFuture<SnapMessage>;
    /// Tells the network the peer misbehaved (fire and forget).
    fn penalise(&self, class: PenaltyClass);
}

/// Byte budget of the probe of [`SnapPeer::probe_accounts`] (128 KiB): about 1,500 accounts,
/// an estimate within a few percent.
pub const PROBE_BYTES: u64 = 128 * 1024;

/// How long [`SnapPeer::probe_accounts`] waits for its answer (10 s, snap/1's request timeout
/// as geth applies it): a silent peer is not probed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The number of uniformly spread keys that puts `count` keys at or below `last`.
pub fn density_estimate(count: u64, last: B256) -> u64 {
    // The top 64 bits of the last key, as a fraction of the key space.
    let mut top = [0u8; 8];
    top.copy_from_slice(&last.0[..8]);
    let top = u64::from_be_bytes(top);
    let fraction = (top as f64 + 1.0) / 18_446_744_073_709_551_616.0;
    ((count as f64 / fraction).round() as u64).max(count)
}

/// Why a translated request failed.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The peer answered a range empty with an empty proof: it has no state for the root.
    NoState,
    /// An answer no honest server sends.
    Malformed(&'static str),
    /// The transport failed (timeout, disconnect, breach).
    Request(RequestError),
}

impl From<RequestError> for Fault {
    fn from(e: RequestError) -> Self {
        Self::Request(e)
    }
}

/// The peer's snap/1 connection measured as a pipe: the syncer's [`PeerWindow`] over every
/// snap/1 request, and how many are outstanding. A chunk's rounds and several chunks' rounds
/// share the link, so an answer's own bytes over its own round trip would understate the peer
/// by the number of answers queued beside it; busy time counted once does not.
#[derive(Default)]
struct Pipe {
    window: PeerWindow,
    in_flight: usize,
}

impl Pipe {
    /// Byte budget of the next answer: what the pipe delivers in [`BUDGET_ROUND_TRIP`]
    /// ([`INITIAL_RESPONSE_BYTES`] until measured).
    fn budget(&self) -> u64 {
        if self.window.rank().is_infinite() {
            return INITIAL_RESPONSE_BYTES;
        }
        let bytes = self.window.throughput() * BUDGET_ROUND_TRIP.as_secs_f64();
        (bytes as u64).clamp(MIN_RESPONSE_BYTES, SOFT_RESPONSE_LIMIT)
    }
}

/// One snap/1 request outstanding: counted in [`Pipe::in_flight`] until measured by
/// [`Inner::ask`] or, when the syncer drops the request (a re-pivot, a shutdown), uncounted
/// without a measurement: the peer is not to blame.
struct Outstanding<'a> {
    pipe: &'a Mutex<Pipe>,
    started: Instant,
    measured: bool,
}

impl<'a> Outstanding<'a> {
    fn start(pipe: &'a Mutex<Pipe>) -> Self {
        let started = Instant::now();
        let mut guard = pipe.lock().unwrap_or_else(PoisonError::into_inner);
        let in_flight = guard.in_flight;
        guard.window.sent(started, in_flight);
        guard.in_flight += 1;
        Self { pipe, started, measured: false }
    }

    /// The request finished: `bytes` of answer, or none (timeout, disconnect), which counts
    /// the busy time with nothing delivered.
    fn finish(mut self, bytes: Option<u64>) {
        let now = Instant::now();
        let mut guard = self.pipe.lock().unwrap_or_else(PoisonError::into_inner);
        guard.in_flight = guard.in_flight.saturating_sub(1);
        let in_flight = guard.in_flight;
        let answer = bytes.map(|b| (b, now.saturating_duration_since(self.started)));
        guard.window.finished(now, answer, in_flight);
        self.measured = true;
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        if !self.measured {
            let mut guard = self.pipe.lock().unwrap_or_else(PoisonError::into_inner);
            guard.in_flight = guard.in_flight.saturating_sub(1);
        }
    }
}

/// snap/1 requests outstanding to one peer at once, at most (16): the network's cap on a
/// connection's requests in flight ([`MAX_IN_FLIGHT_PER_PEER`]), past which it refuses a
/// request as busy. The pieces of one `leaf/1` request are read side by side, and the syncer
/// keeps several of those in flight: a request past the cap waits for one to finish.
pub const MAX_SNAP_IN_FLIGHT: usize = MAX_IN_FLIGHT_PER_PEER;

/// What the adapter keeps per peer.
struct Inner {
    transport: Arc<dyn SnapTransport>,
    /// One permit per snap/1 request outstanding ([`MAX_SNAP_IN_FLIGHT`]).
    permits: Arc<Semaphore>,
    /// The peer's snap/1 pipe: sizes each answer's byte budget.
    pipe: Mutex<Pipe>,
    /// The root the peer said it has no flat state (ranges) for.
    no_state: Mutex<Option<B256>>,
    /// The root the peer said it has no trie nodes for.
    no_nodes: Mutex<Option<B256>>,
    /// The last pivot the syncer asked for (for `request` without one).
    pivot: Mutex<Option<ChainHead>>,
    /// Accounts estimated by [`SnapPeer::probe_accounts`] (0: not probed).
    estimate: AtomicU64,
    /// When the peer last answered one of our snap/1 requests ([`SyncPeer::last_answer`]).
    last_answer: Mutex<Option<Instant>>,
}

impl Inner {
    /// Byte budget of the next answer ([`Pipe::budget`]).
    fn budget(&self) -> u64 {
        self.pipe.lock().unwrap_or_else(PoisonError::into_inner).budget()
    }

    /// One snap/1 round trip, once fewer than [`MAX_SNAP_IN_FLIGHT`] are outstanding (the wait
    /// is not the peer's time), measured; an answer larger than [`answer_limit`] is penalised.
    ///
    /// The request runs as a task of its own that holds its permit until the transport is done
    /// with it: when a read is dropped (its pieces are not needed), what it sent stays
    /// outstanding at the network until answered or timed out, and so does its permit.
    async fn ask(&self, request: SnapMessage) -> Result<SnapMessage, Fault> {
        // The semaphore is never closed: a permit always comes.
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok();
        let limit = answer_limit(&request);
        let outstanding = Outstanding::start(&self.pipe);
        let sent = self.transport.request(request);
        let task = tokio::spawn(async move {
            let answer = sent.await;
            drop(permit);
            answer
        });
        // The task ends only by finishing, unless the runtime shuts down.
        let answer = task.await.unwrap_or(Err(RequestError::NetworkClosed));
        if answer.is_ok() {
            *self.last_answer.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
        let size = answer.as_ref().ok().map(snap_len);
        outstanding.finish(size);
        if let (Some(limit), Some(size)) = (limit, size)
            && size > limit
        {
            debug!(peer = %self.transport.id(), limit, size, "snap/1 answer far over its budget");
            self.transport.penalise(PenaltyClass::Mid);
        }
        Ok(answer?)
    }

    /// Marks the peer as without flat state for `root`: it gets no chunk work until the pivot
    /// moves ([`SyncPeer::lacks_state`]).
    fn lacks_state(&self, root: B256) {
        debug!(peer = %self.transport.id(), %root, "snap/1 peer has no state for the root");
        *self.no_state.lock().unwrap_or_else(PoisonError::into_inner) = Some(root);
    }

    /// Marks the peer as without trie nodes for `root`: it gets no node work until the pivot
    /// moves ([`SyncPeer::lacks_nodes`]).
    fn lacks_nodes(&self, root: B256) {
        debug!(peer = %self.transport.id(), %root, "snap/1 peer has no trie nodes for the root");
        *self.no_nodes.lock().unwrap_or_else(PoisonError::into_inner) = Some(root);
    }

    /// One `GetStorageRanges` round trip: the answer, checked to hold no more lists than
    /// `request` asked accounts for.
    async fn storage_ranges(&self, request: GetStorageRanges) -> Result<StorageRanges, Fault> {
        let asked = request.accounts.len();
        let answer = match self.ask(SnapMessage::GetStorageRanges(request)).await? {
            SnapMessage::StorageRanges(answer) => answer,
            _ => return Err(Fault::Malformed("answer of another kind to GetStorageRanges")),
        };
        if answer.slots.len() > asked {
            return Err(Fault::Malformed("storage lists for accounts not asked for"));
        }
        Ok(answer)
    }
}

/// The largest encoded answer to a snap/1 request that costs its server nothing: the byte
/// budget asked, a storage answer's slack and encoding ([`SLOT_ENCODING_PERCENT`]), and
/// [`OVERSHOOT_ALLOWANCE`] (`None` for a response).
fn answer_limit(message: &SnapMessage) -> Option<u64> {
    let bytes = match message {
        SnapMessage::GetAccountRange(m) => m.bytes,
        SnapMessage::GetStorageRanges(m) => {
            // Servers finish a storage up to the slack past the budget (geth's hard limit),
            // counting slots as key and value bytes.
            let counted = m.bytes.saturating_add(m.bytes * STATE_LOOKUP_SLACK_PERCENT / 100);
            counted.saturating_add(counted * SLOT_ENCODING_PERCENT / 100)
        }
        SnapMessage::GetByteCodes(m) => m.bytes,
        SnapMessage::GetTrieNodes(m) => m.bytes,
        _ => return None,
    };
    Some(bytes.saturating_add(OVERSHOOT_ALLOWANCE))
}

/// Encoded size of a snap/1 message's body.
fn snap_len(message: &SnapMessage) -> u64 {
    use alloy_rlp::Encodable;
    (match message {
        SnapMessage::GetAccountRange(m) => m.length(),
        SnapMessage::AccountRange(m) => m.length(),
        SnapMessage::GetStorageRanges(m) => m.length(),
        SnapMessage::StorageRanges(m) => m.length(),
        SnapMessage::GetByteCodes(m) => m.length(),
        SnapMessage::ByteCodes(m) => m.length(),
        SnapMessage::GetTrieNodes(m) => m.length(),
        SnapMessage::TrieNodes(m) => m.length(),
    }) as u64
}

/// A snap/1 peer as a [`SyncPeer`]; see the module docs.
#[derive(Clone)]
pub struct SnapPeer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SnapPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapPeer").field("id", &self.inner.transport.id()).finish()
    }
}

impl SnapPeer {
    /// Wraps a snap/1 connection.
    pub fn new(transport: Arc<dyn SnapTransport>) -> Self {
        Self {
            inner: Arc::new(Inner {
                transport,
                permits: Arc::new(Semaphore::new(MAX_SNAP_IN_FLIGHT)),
                pipe: Mutex::new(Pipe::default()),
                no_state: Mutex::new(None),
                no_nodes: Mutex::new(None),
                pivot: Mutex::new(None),
                estimate: AtomicU64::new(0),
                last_answer: Mutex::new(None),
            }),
        }
    }

    /// The byte budget the next answer is asked for (follows the peer's measured throughput).
    pub fn budget(&self) -> u64 {
        self.inner.budget()
    }

    /// Estimates the accounts of the state `root` from one range at its start (hashed keys are
    /// uniform: `n` accounts up to the key `last` make about `n × 2²⁵⁶ / last`), and reports it
    /// as this peer's [`SyncPeer::account_estimate`] from then on. snap/1 announces no
    /// estimate, and the syncer sizes its chunk depth by the peers' median at the start: call
    /// this before handing the peer to a sync (the peer's own head root is the one it has).
    /// `None` (estimate unchanged) when the peer has no state for `root` or the answer is
    /// unusable.
    pub async fn probe_accounts(&self, root: B256) -> Option<u64> {
        let request = GetAccountRange {
            request_id: 0,
            root,
            origin: B256::ZERO,
            limit: B256::repeat_byte(0xff),
            bytes: PROBE_BYTES,
        };
        let asked = self.inner.ask(SnapMessage::GetAccountRange(request));
        let answer = match tokio::time::timeout(PROBE_TIMEOUT, asked).await.ok()?.ok()? {
            SnapMessage::AccountRange(answer) => answer,
            _ => return None,
        };
        let estimate = density_estimate(answer.accounts.len() as u64, answer.accounts.last()?.hash);
        self.inner.estimate.store(estimate, Ordering::Relaxed);
        Some(estimate)
    }
}

impl SyncPeer for SnapPeer {
    fn id(&self) -> PeerId {
        self.inner.transport.id()
    }

    fn head(&self) -> ChainHead {
        self.inner.transport.head()
    }

    fn account_estimate(&self) -> u64 {
        match self.inner.estimate.load(Ordering::Relaxed) {
            0 => self.inner.transport.account_estimate(),
            probed => probed,
        }
    }

    /// Without a pivot: the last one asked for, else the peer's own head.
    fn request(&self, req: LeafRequest) -> PeerFuture {
        let pivot = *self.inner.pivot.lock().unwrap_or_else(PoisonError::into_inner);
        let pivot = pivot.unwrap_or_else(|| self.head());
        self.request_at(&pivot, req)
    }

    fn request_at(&self, pivot: &ChainHead, req: LeafRequest) -> PeerFuture {
        *self.inner.pivot.lock().unwrap_or_else(PoisonError::into_inner) = Some(*pivot);
        let (inner, pivot) = (Arc::clone(&self.inner), *pivot);
        Box::pin(async move {
            let empty = req.empty_response();
            let nodes = matches!(req, LeafRequest::GetNodes(_));
            let result = match req {
                LeafRequest::GetChunk(r) => ranges::account_chunk(&inner, &pivot, r).await,
                LeafRequest::GetStorageChunk(r) => ranges::storage_chunk(&inner, &pivot, r).await,
                LeafRequest::GetNodes(r) => items::nodes(&inner, pivot.state_root, r).await,
                LeafRequest::GetCodes(r) => items::codes(&inner, r).await,
            };
            answer(&inner, (pivot.state_root, nodes), empty, result)
        })
    }

    fn lacks_state(&self, root: &B256) -> bool {
        *self.inner.no_state.lock().unwrap_or_else(PoisonError::into_inner) == Some(*root)
    }

    fn lacks_nodes(&self, root: &B256) -> bool {
        *self.inner.no_nodes.lock().unwrap_or_else(PoisonError::into_inner) == Some(*root)
    }

    /// Every range is read at the pivot's root ([`SyncPeer::request_at`]).
    fn exact_root(&self) -> bool {
        true
    }

    /// The sync's guard counts from here: a `leaf/1` request is a chain of snap/1 round trips,
    /// and a geth answers one peer's requests one at a time, in order.
    fn last_answer(&self) -> Option<Instant> {
        *self.inner.last_answer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn penalise(&self, class: PenaltyClass) {
        self.inner.transport.penalise(class)
    }
}

/// The `leaf/1` answer the syncer gets for a translated request's `result`, read at `root`
/// (`nodes`: the request was for trie nodes, whose "no state" marks the peer apart).
fn answer(
    inner: &Inner,
    (root, nodes): (B256, bool),
    empty: LeafResponse,
    result: Result<LeafResponse, Fault>,
) -> Result<LeafResponse, RequestError> {
    match result {
        Ok(answer) => Ok(answer),
        Err(Fault::NoState) if nodes => {
            inner.lacks_nodes(root);
            Ok(empty)
        }
        Err(Fault::NoState) => {
            inner.lacks_state(root);
            Ok(empty)
        }
        Err(Fault::Malformed(why)) => {
            debug!(peer = %inner.transport.id(), why, "malformed snap/1 answer");
            Err(RequestError::InvalidResponse(ResponseViolation::WrongType))
        }
        Err(Fault::Request(e)) => Err(e),
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
