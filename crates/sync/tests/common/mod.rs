//! Simulated `leaf/1` peers: each serves a source leafdb through the serve crate's pure
//! functions, honestly or with one kind of misbehaviour, without sockets.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // shared by several test binaries

pub mod chain;
pub mod kill;
pub mod mutant;
pub mod snap;
pub mod snap_lies;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use alloy_primitives::{B256, B512, U256};
use alloy_trie::EMPTY_ROOT_HASH;
use leafsync_leafdb::{
    BlockHeader, GenParams, KvStore, LeafDb, MemStore, Table, generate::SplitMix,
    trie::node::is_leaf,
};
use leafsync_p2p::{
    PeerId,
    leaf::{AccountPiece, AccountStorage, ChainHead, ChunkContent, StorageSlot},
    requests::{LeafRequest, LeafResponse, RequestError, TrackedRequest},
};
use leafsync_p2p::{PenaltyClass, test_utils::env_number};
use leafsync_serve::{ServeConfig, serve_chunk, serve_codes, serve_nodes, serve_storage_chunk};
use leafsync_sync::{PeerFuture, SyncOutcome, SyncPeer, link::Link, response_len};

/// How a simulated peer behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Serves its leafdb.
    Honest,
    /// Chunks claim the pivot head but every balance is off by one; nodes and codes honest.
    Junk,
    /// Answers everything empty.
    Empty,
    /// Never answers.
    Silent,
    /// Answers its first request, then every request fails as a disconnect mid-response.
    Disconnects,
    /// Answers its first `n` requests honestly, then every request fails as a disconnect (the
    /// syncer runs out of peers and stops mid-way, as if killed).
    Limited(u64),
    /// Chunks honest, every node answered with bytes that do not hash to the request.
    WrongNodes,
    /// Chunks honest, every code answered with its first byte changed: as long as the real
    /// one, hashing to something else.
    WrongCodes,
    /// Chunks honest but for one forged inline slot on the first account of each chunk whose
    /// storage root is the empty root.
    PoisonInline,
    /// Chunks honest but the first account of each chunk with empty storage marked large.
    LargeEmpty,
    /// Chunks honest but one inline slot value changed on the first account with storage.
    InlineJunk,
    /// Chunks honest but every non-empty inline storage marked large (its slot count given):
    /// the pieces verify (an account's hash does not cover its storage) and carry only the
    /// leaves, far fewer bytes than the truth.
    MarkLarge,
    /// Junk chunks (balances off by one) claiming a head `n` blocks past the server's own.
    LyingHead(u64),
    /// Every chunk and storage chunk answered "too large", whatever its size.
    TooLarge,
    /// Every chunk and storage chunk answered "too large", claiming the block after the
    /// server's own: as an honest server a block ahead of the pivot answers where its time
    /// budget ran out, on a prefix that may hold more leaves than at the pivot.
    TooLargeAhead,
    /// Every chunk and storage chunk of two or more leaves answered "too large": a liar that
    /// never says so for a single leaf, where it would be junk.
    TooLargeAboveOne,
    /// Honest, but an account or storage batch is answered with its first piece only (as a
    /// server whose byte budget is full would).
    FirstPieceOnly,
    /// Honest, but the first piece of every account or storage batch of two or more has its
    /// balances or slot values off by one (a lie in one piece, claiming the pivot head).
    PoisonFirstPiece,
    /// Every piece of two or more leaves or slots cut to its first, claiming the block after
    /// the server's own: as a stale server's piece may be, so no provable lie, but far smaller
    /// than the truth.
    ShortStale,
    /// Changes `rate` of every eight answers at random ([`mutant::Mutator`], drawn from `seed`).
    Mutant { seed: u64, rate: u64 },
}

/// The server's defaults with storage inline only up to 64 KiB: the fixtures' largest storages
/// are above that (the default 256 KiB inlines them all), so the syncs fetch large storages by
/// storage chunks too.
pub fn sim_serve_config() -> ServeConfig {
    ServeConfig { inline_storage_bytes: 64 * 1024, ..ServeConfig::default() }
}

/// A peer serving `db`.
pub struct SimPeer {
    pub id: PeerId,
    pub db: Arc<LeafDb<MemStore>>,
    pub behaviour: Behaviour,
    pub account_estimate: u64,
    pub requests: AtomicU64,
    /// Answers of several pieces (account or storage) this peer cut or poisoned (`FirstPieceOnly`,
    /// `PoisonFirstPiece`): shows a test that its misbehaviour was exercised.
    pub batches_tampered: AtomicU64,
    /// How it serves ([`sim_serve_config`] unless a test changes it).
    pub serve: ServeConfig,
    pub penalties: Mutex<Vec<PenaltyClass>>,
    /// The changes of a [`Behaviour::Mutant`].
    pub mutator: Option<Mutex<mutant::Mutator>>,
}

/// Picks another stream of draws for every randomised sync test (a whole number).
pub const SOAK_SEED: &str = "LEAFSYNC_SOAK_SEED";
/// Runs that many rounds of every randomised sync test.
pub const SOAK_ROUNDS: &str = "LEAFSYNC_SOAK_ROUNDS";

/// The draws and the round count of a randomised test: `seed` and `rounds` by default (what
/// every `cargo test` runs), [`SOAK_SEED`] and [`SOAK_ROUNDS`] from the environment for a soak
/// (docs/testing.md). Both are printed, so a failing round names what replays it.
pub fn drawn_rounds(seed: u64, rounds: u64) -> (SplitMix, u64) {
    let (seed, rounds) = (env_number(SOAK_SEED, seed), env_number(SOAK_ROUNDS, rounds));
    println!("draws from seed {seed} ({SOAK_SEED}), {rounds} rounds ({SOAK_ROUNDS})");
    (SplitMix::new(seed), rounds)
}

/// Answers the [`Behaviour::Mutant`] peers among `peers` changed.
pub fn answers_changed(peers: &[Arc<SimPeer>]) -> u64 {
    peers.iter().filter_map(|p| p.mutator.as_ref()).map(|m| m.lock().unwrap().changed).sum()
}

/// A simulated peer that may lie at random: its id, its mutator if it has one, and the
/// penalties the client gave it.
pub trait Liar {
    fn liar(&self) -> (PeerId, Option<&Mutex<mutant::Mutator>>, &Mutex<Vec<PenaltyClass>>);
}

impl Liar for SimPeer {
    fn liar(&self) -> (PeerId, Option<&Mutex<mutant::Mutator>>, &Mutex<Vec<PenaltyClass>>) {
        (self.id, self.mutator.as_ref(), &self.penalties)
    }
}

/// Every mutant among `peers` that told a lie the client can prove (`Mutator::provable`) paid
/// for it with a penalty, unless it claimed to have no state for the root (`Mutator::
/// owes_penalty`; `label` names the round).
pub fn assert_liars_paid<P: Liar>(peers: &[Arc<P>], label: &str) {
    for peer in peers {
        let (id, Some(mutator), penalties) = peer.liar() else { continue };
        let mutator = mutator.lock().unwrap();
        assert!(
            !mutator.owes_penalty() || !penalties.lock().unwrap().is_empty(),
            "{label}: peer {id} told {} provable lies and was never penalised",
            mutator.provable
        );
    }
}

impl SimPeer {
    pub fn new(n: u8, db: Arc<LeafDb<MemStore>>, behaviour: Behaviour, estimate: u64) -> Arc<Self> {
        Self::serving(n, db, behaviour, estimate, sim_serve_config())
    }

    /// [`Self::new`] with the serve configuration `serve`.
    pub fn serving(
        n: u8,
        db: Arc<LeafDb<MemStore>>,
        behaviour: Behaviour,
        estimate: u64,
        serve: ServeConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            id: B512::repeat_byte(n),
            db,
            behaviour,
            account_estimate: estimate,
            requests: AtomicU64::new(0),
            batches_tampered: AtomicU64::new(0),
            serve,
            penalties: Mutex::new(Vec::new()),
            mutator: match behaviour {
                Behaviour::Mutant { seed, rate } => {
                    Some(Mutex::new(mutant::Mutator::new(seed, rate)))
                }
                _ => None,
            },
        })
    }

    /// The failure of a request that should fail (silence or disconnect), counting it.
    fn fails(&self) -> Option<PeerFuture> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        match self.behaviour {
            Behaviour::Silent => Some(Box::pin(futures::future::pending())),
            Behaviour::Disconnects if n > 0 => {
                Some(Box::pin(async { Err(RequestError::Disconnected) }))
            }
            Behaviour::Limited(limit) if n >= limit => {
                Some(Box::pin(async { Err(RequestError::Disconnected) }))
            }
            _ => None,
        }
    }

    /// The honest answer to `request`.
    fn serve(&self, request: LeafRequest) -> LeafResponse {
        let snap = self.db.snapshot().unwrap();
        let config = &self.serve;
        match request {
            LeafRequest::GetChunk(r) => {
                LeafResponse::Chunk(serve_chunk(&snap, &r, config).unwrap())
            }
            LeafRequest::GetStorageChunk(r) => {
                LeafResponse::StorageChunk(serve_storage_chunk(&snap, &r, config).unwrap())
            }
            LeafRequest::GetNodes(r) => {
                LeafResponse::Nodes(serve_nodes(&snap, &r, config).unwrap())
            }
            LeafRequest::GetCodes(r) => {
                LeafResponse::Codes(serve_codes(&snap, &r, config).unwrap())
            }
        }
    }

    /// Applies this peer's misbehaviour to an honest answer.
    fn tamper(&self, answer: &mut LeafResponse) {
        let one = U256::from(1u64);
        match (self.behaviour, answer) {
            (Behaviour::TooLarge, LeafResponse::Chunk(c)) => {
                c.pieces.iter_mut().for_each(|p| p.content = ChunkContent::TooLarge)
            }
            (Behaviour::TooLargeAhead, LeafResponse::Chunk(c)) => c
                .pieces
                .iter_mut()
                .for_each(|p| too_large_ahead(&mut p.head_number, &mut p.content)),
            (Behaviour::TooLargeAhead, LeafResponse::StorageChunk(c)) => c
                .pieces
                .iter_mut()
                .for_each(|p| too_large_ahead(&mut p.head_number, &mut p.content)),
            (Behaviour::TooLargeAboveOne, LeafResponse::Chunk(c)) => {
                c.pieces.iter_mut().for_each(|p| too_large_above_one(&mut p.content))
            }
            (Behaviour::TooLargeAboveOne, LeafResponse::StorageChunk(c)) => {
                c.pieces.iter_mut().for_each(|p| too_large_above_one(&mut p.content))
            }
            (Behaviour::TooLarge, LeafResponse::StorageChunk(c)) => {
                c.pieces.iter_mut().for_each(|p| p.content = ChunkContent::TooLarge)
            }
            (Behaviour::Junk | Behaviour::LyingHead(_), LeafResponse::StorageChunk(c)) => {
                for piece in &mut c.pieces {
                    if let ChunkContent::Items(slots) = &mut piece.content {
                        slots.iter_mut().for_each(|s| s.value += one);
                    }
                }
            }
            (Behaviour::ShortStale, LeafResponse::StorageChunk(c)) => {
                for piece in &mut c.pieces {
                    if let ChunkContent::Items(slots) = &mut piece.content
                        && slots.len() > 1
                    {
                        slots.truncate(1);
                        piece.head_number += 1;
                    }
                }
            }
            (Behaviour::FirstPieceOnly, LeafResponse::StorageChunk(c)) if c.pieces.len() > 1 => {
                self.batches_tampered.fetch_add(1, Ordering::Relaxed);
                c.pieces.truncate(1)
            }
            (Behaviour::FirstPieceOnly, LeafResponse::Chunk(c)) if c.pieces.len() > 1 => {
                self.batches_tampered.fetch_add(1, Ordering::Relaxed);
                c.pieces.truncate(1)
            }
            (Behaviour::PoisonFirstPiece, LeafResponse::StorageChunk(c)) if c.pieces.len() > 1 => {
                self.batches_tampered.fetch_add(1, Ordering::Relaxed);
                if let Some(ChunkContent::Items(slots)) =
                    c.pieces.first_mut().map(|p| &mut p.content)
                {
                    slots.iter_mut().for_each(|s| s.value += one);
                }
            }
            (Behaviour::PoisonFirstPiece, LeafResponse::Chunk(c)) if c.pieces.len() > 1 => {
                self.batches_tampered.fetch_add(1, Ordering::Relaxed);
                if let Some(ChunkContent::Items(leaves)) =
                    c.pieces.first_mut().map(|p| &mut p.content)
                {
                    leaves.iter_mut().for_each(|l| l.balance += one);
                }
            }
            (Behaviour::WrongNodes, LeafResponse::Nodes(nodes)) => {
                for n in &mut nodes.nodes {
                    *n = alloy_primitives::Bytes::from(vec![0xc2, 0x80, 0x80]);
                }
            }
            (Behaviour::WrongCodes, LeafResponse::Codes(codes)) => {
                for code in codes.codes.iter_mut().filter(|c| !c.is_empty()) {
                    let mut changed = code.to_vec();
                    changed[0] ^= 0xff;
                    *code = alloy_primitives::Bytes::from(changed);
                }
            }
            (behaviour, LeafResponse::Chunk(chunk)) => {
                for piece in &mut chunk.pieces {
                    tamper_piece(behaviour, piece);
                }
            }
            _ => {}
        }
    }
}

/// "Too large" read at the block after `head_number`.
fn too_large_ahead<T>(head_number: &mut u64, content: &mut ChunkContent<T>) {
    *head_number += 1;
    *content = ChunkContent::TooLarge;
}

/// "Too large" for `content` of two or more items.
fn too_large_above_one<T>(content: &mut ChunkContent<T>) {
    if matches!(content, ChunkContent::Items(items) if items.len() > 1) {
        *content = ChunkContent::TooLarge;
    }
}

/// Applies `behaviour` to one piece of an account batch.
fn tamper_piece(behaviour: Behaviour, piece: &mut AccountPiece) {
    let one = U256::from(1u64);
    let ChunkContent::Items(leaves) = &mut piece.content else { return };
    match behaviour {
        Behaviour::Junk => leaves.iter_mut().for_each(|l| l.balance += one),
        Behaviour::LyingHead(n) => {
            leaves.iter_mut().for_each(|l| l.balance += one);
            piece.head_number += n;
        }
        Behaviour::ShortStale if leaves.len() > 1 => {
            leaves.truncate(1);
            piece.head_number += 1;
        }
        Behaviour::PoisonInline => {
            if let Some(l) = leaves.iter_mut().find(|l| l.storage_root == EMPTY_ROOT_HASH) {
                l.storage = AccountStorage::Inline(vec![StorageSlot {
                    hashed_slot: B256::repeat_byte(1),
                    value: one,
                }]);
            }
        }
        Behaviour::LargeEmpty => {
            if let Some(l) = leaves.iter_mut().find(|l| l.storage_root == EMPTY_ROOT_HASH) {
                l.storage = AccountStorage::Large { slot_count: 1000 };
            }
        }
        Behaviour::MarkLarge => {
            for l in leaves.iter_mut() {
                if let AccountStorage::Inline(slots) = &l.storage
                    && !slots.is_empty()
                {
                    l.storage = AccountStorage::Large { slot_count: slots.len() as u64 };
                }
            }
        }
        Behaviour::InlineJunk => {
            let with_storage = leaves.iter_mut().find_map(|l| match &mut l.storage {
                AccountStorage::Inline(slots) if !slots.is_empty() => Some(slots),
                _ => None,
            });
            if let Some(slot) = with_storage.and_then(|s| s.first_mut()) {
                slot.value += one;
            }
        }
        _ => {}
    }
}

impl SyncPeer for SimPeer {
    fn id(&self) -> PeerId {
        self.id
    }

    fn head(&self) -> ChainHead {
        db_head(&self.db)
    }

    fn account_estimate(&self) -> u64 {
        self.account_estimate
    }

    fn request(&self, request: LeafRequest) -> PeerFuture {
        if let Some(f) = self.fails() {
            return f;
        }
        let answer = if self.behaviour == Behaviour::Empty {
            request.empty_response()
        } else {
            let mut answer = self.serve(request.clone());
            self.tamper(&mut answer);
            if let Some(mutator) = &self.mutator {
                mutator.lock().unwrap().mutate(&mut answer);
            }
            answer
        };
        // What the network refuses before the syncer sees it: an answer of another kind, or
        // with more items than asked.
        let answer = request.check_response(&answer).map(|()| answer);
        Box::pin(async move { answer.map_err(RequestError::InvalidResponse) })
    }

    fn penalise(&self, class: PenaltyClass) {
        self.penalties.lock().unwrap().push(class);
    }
}

/// The head a block header announces.
pub fn chain_head(h: &BlockHeader) -> ChainHead {
    ChainHead { number: h.number, hash: h.hash, state_root: h.state_root }
}

/// The head of a simulated peer's leafdb (the default head when it has none).
pub fn db_head(db: &LeafDb<MemStore>) -> ChainHead {
    chain_head(&db.head().unwrap().unwrap_or_default())
}

/// A generated source state.
pub fn source(accounts: u64, seed: u64) -> Arc<LeafDb<MemStore>> {
    let db = LeafDb::in_memory();
    db.generate(GenParams { accounts, seed }).unwrap();
    Arc::new(db)
}

/// Every pair of the state tables (flat and trie), to compare two leafdbs. Leaf nodes are left
/// out: a leafdb may or may not store a leaf (imports do not, block application and heal do),
/// and `verify` checks every stored one against the flat tables.
pub fn state_tables<S: KvStore>(db: &LeafDb<S>) -> Vec<(Table, Vec<leafsync_leafdb::kv::KvPair>)> {
    [Table::Accounts, Table::Storage, Table::Code, Table::AccountNodes, Table::StorageNodes]
        .into_iter()
        .map(|t| {
            let rows = db.store().iter_from(t, &[]).map(Result::unwrap);
            let nodes = matches!(t, Table::AccountNodes | Table::StorageNodes);
            (t, rows.filter(|(_, v)| !(nodes && is_leaf(v))).collect())
        })
        .collect()
}

/// Encoded bytes of the flat state (keys and values of accounts, storage and code): the floor
/// of what any sync downloads.
pub fn raw_leaf_bytes<S: KvStore>(db: &LeafDb<S>) -> u64 {
    [Table::Accounts, Table::Storage, Table::Code]
        .into_iter()
        .flat_map(|t| db.store().iter_from(t, &[]).map(Result::unwrap).collect::<Vec<_>>())
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum()
}

/// Asserts that `client` holds exactly the state of `source` at root `root`.
pub fn assert_same_state<S: KvStore>(client: &LeafDb<S>, source: &LeafDb<MemStore>, root: B256) {
    assert_same_tries_and_flat_state(client, source, root);
    // The generator's code pool holds codes no account uses; a sync fetches only the
    // referenced ones (verify() found none missing).
    let source_codes: Vec<_> =
        leafsync_leafdb::kv::KvRead::iter_from(source.store(), Table::Code, &[])
            .map(Result::unwrap)
            .collect();
    for code in client.store().iter_from(Table::Code, &[]) {
        assert!(source_codes.contains(&code.unwrap()), "client has code the source lacks");
    }
}

/// [`assert_same_state`] but for the code table, where `client` may hold more: codes are kept
/// by hash, and one that no account names any more is not removed.
pub fn assert_same_tries_and_flat_state<S: KvStore>(
    client: &LeafDb<S>,
    source: &LeafDb<MemStore>,
    root: B256,
) {
    let report = client.verify().unwrap();
    assert!(report.ok(), "client state inconsistent: {report:?}");
    assert_eq!(report.computed_root, root);
    assert_eq!(client.account_root().unwrap(), root);
    assert_eq!(client.head().unwrap().unwrap().state_root, root);
    let source_report = source.verify().unwrap();
    assert_eq!(report.accounts, source_report.accounts);
    assert_eq!(report.slots, source_report.slots);
    let (a, b) = (state_tables(client), state_tables(source));
    for ((t, x), (_, y)) in a.iter().zip(b.iter()) {
        if *t == Table::Code {
            continue;
        }
        assert_eq!(x.len(), y.len(), "table {t:?} differs in size");
        assert!(x == y, "table {t:?} differs");
    }
}

/// Asserts that a sync ended at `root` with `client` holding exactly the state of `source` there.
pub fn assert_synced<S: KvStore>(
    out: &SyncOutcome,
    client: &LeafDb<S>,
    source: &LeafDb<MemStore>,
    root: B256,
) {
    assert_eq!(out.root, root);
    assert_same_state(client, source, root);
}

/// Peers as trait objects.
pub fn dyn_peers(peers: &[Arc<SimPeer>]) -> Vec<Arc<dyn SyncPeer>> {
    peers.iter().map(|p| Arc::clone(p) as Arc<dyn SyncPeer>).collect()
}

/// What a wrapping peer does around each request of its inner peer.
pub trait Hook: Send + Sync + 'static {
    /// The head the peer announces (default: its inner peer's).
    fn head(&self, inner: &SimPeer) -> ChainHead {
        inner.head()
    }
    /// Runs before the inner peer is asked.
    fn before(&self, _inner: &SimPeer) {}
    /// The future the syncer awaits, given the inner peer's.
    fn around(&self, request: PeerFuture) -> PeerFuture {
        request
    }
}

/// A [`SimPeer`] with a [`Hook`] around every request.
pub struct Hooked<H> {
    pub inner: Arc<SimPeer>,
    pub hook: H,
}

impl<H: Hook> SyncPeer for Hooked<H> {
    fn id(&self) -> PeerId {
        self.inner.id()
    }
    fn head(&self) -> ChainHead {
        self.hook.head(&self.inner)
    }
    fn account_estimate(&self) -> u64 {
        self.inner.account_estimate()
    }
    fn request(&self, request: LeafRequest) -> PeerFuture {
        self.hook.before(&self.inner);
        self.hook.around(self.inner.request(request))
    }
    fn penalise(&self, class: PenaltyClass) {
        self.inner.penalise(class)
    }
}

/// Every answer crosses the peer's [`Link`] once it is ready.
pub struct Paced(pub Arc<Link>);

impl Hook for Paced {
    fn around(&self, request: PeerFuture) -> PeerFuture {
        let link = Arc::clone(&self.0);
        Box::pin(async move {
            let answer = request.await;
            link.carry(answer.as_ref().map_or(0, response_len)).await;
            answer
        })
    }
}

/// `inner` behind a link of `delay` without a bandwidth limit: every answer takes that time.
pub fn delayed(inner: Arc<SimPeer>, delay: std::time::Duration) -> Arc<dyn SyncPeer> {
    paced(inner, Arc::new(Link::new(delay, 0)))
}

/// `inner` behind `link`.
pub fn paced(inner: Arc<SimPeer>, link: Arc<Link>) -> Arc<dyn SyncPeer> {
    Arc::new(Hooked { inner, hook: Paced(link) })
}
