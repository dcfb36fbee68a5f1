//! Answers prepared off the loop. As soon as a chunk answer arrives its pieces are checked
//! (`import.rs`) and staged (each subtrie hashed and its writes built:
//! [`stage_account_chunk`], [`stage_storage_chunk`]), and a codes answer's codes are hashed, on
//! the runtime's blocking threads, at most one answer per core at once ([`prepare_answer`]).
//! The loop then only applies what they show (`syncer/answers.rs`). Hashing is most of a sync's
//! CPU: done in the loop it held up every other answer and the next requests behind it, and used
//! one core however many answers waited.
//!
//! Preparing reads nothing but the answer and its job (staging reads no table: a chunk's range
//! deletes are read when it is written), so an answer prepared early is the answer the loop
//! would have prepared. The round trip is measured before it (a window is sized on the link,
//! not on our hashing). On a current-thread runtime (the unit tests' simulated networks) the
//! answers are prepared in the loop, in the order they arrive, as before: the tests' runs stay
//! reproducible from their seeds.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy_primitives::B256;
use alloy_rlp::Encodable;
use leafsync_leafdb::{
    AccountChunkOutcome, LeafDbError, StagedChunk, stage_account_chunk, stage_storage_chunk,
    trie::keccak256_batch,
};
use leafsync_p2p::{
    leaf::{AccountPiece, AccountStorage, ChainHead, ChunkContent, Codes, Nodes, StoragePiece},
    requests::{LeafResponse, RequestError},
};
use tokio::{runtime::RuntimeFlavor, sync::Semaphore};

use crate::{
    import::{ChunkVerdict, Leaves, check_chunk, check_piece},
    peer::{pieces_response_len, response_len},
    peer_set::Verdict,
    tasks::{Job, Unit},
};

/// An answer as the loop applies it: its encoded size (as [`response_len`] counts it) and what
/// it holds, prepared.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) size: u64,
    pub(crate) body: Body,
}

/// The pivot epoch, shared with the requests in flight: a re-pivot advances it, and an answer
/// that arrives after it is not prepared (its chunks are of the pivot before; codes excepted).
#[derive(Debug, Default, Clone)]
pub(crate) struct Epoch(Arc<AtomicU64>);

impl Epoch {
    /// The current epoch.
    pub(crate) fn current(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Starts the next epoch (a re-pivot).
    pub(crate) fn advance(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the answer to `job`, sent in epoch `sent`, is of no use now: work for an earlier
    /// pivot (codes do not depend on the pivot).
    pub(crate) fn outdates(&self, sent: u64, job: &Job) -> bool {
        sent != self.current() && !matches!(job, Job::Codes(_))
    }
}

/// A finished request.
#[derive(Debug)]
pub(crate) struct Done {
    /// The pivot epoch the request was sent in.
    pub(crate) epoch: u64,
    pub(crate) peer: usize,
    /// The head the peer had announced when it was asked (a chunk's claimed head is judged
    /// against the heads it announced from then until the answer is applied).
    pub(crate) asked_at: ChainHead,
    pub(crate) job: Job,
    /// The answer, prepared ([`crate::prepare`]).
    pub(crate) result: Result<Answer, RequestError>,
    pub(crate) elapsed: Duration,
}

/// What an answer holds, prepared for the loop.
#[derive(Debug)]
pub(crate) enum Body {
    /// A `Chunk` answer to account units or a `StorageChunk` answer to storage units.
    Pieces(Pieces),
    /// A `Nodes` answer (to trie-node tasks or a probe): small, checked by the loop.
    Nodes(Nodes),
    /// A `Codes` answer, with each entry's hash.
    Codes { codes: Codes, hashes: Vec<B256> },
    /// An answer of another kind than its request.
    WrongKind,
    /// An answer for the pivot before a re-pivot, not prepared: only its size counts.
    Stale,
}

/// The pieces of a chunk answer.
#[derive(Debug)]
pub(crate) enum Pieces {
    /// More pieces than units were asked: a lie, nothing of it checked.
    TooMany,
    /// Each piece checked and staged, in the answer's order (the units' order).
    Checked(Vec<CheckedPiece>),
}

/// One piece of a chunk answer, checked.
#[derive(Debug)]
pub(crate) struct CheckedPiece {
    /// Whether it marks a storage "large": that storage's bytes are not among its own.
    pub(crate) marks_large: bool,
    /// Its encoded length.
    pub(crate) length: u64,
    pub(crate) verdict: Checked,
}

/// A piece's verdict ([`ChunkVerdict`]), its leaves staged when they are to be imported.
#[derive(Debug)]
pub(crate) enum Checked {
    /// Leaves to import, read at the server's `head_number`, and their staged chunk.
    Import { leaves: Leaves, head_number: u64, staged: Result<Box<Staged>, LeafDbError> },
    /// "Too large", read at the server's `head_number` ([`ChunkVerdict::Split`]).
    Split { head_number: u64 },
    /// The piece counts against its server; its unit is asked again elsewhere.
    Refused(Verdict),
    /// Neither checked nor staged: an earlier piece of the answer was invalid, which bans its
    /// server, so its further pieces are not imported (a lie buys no hashing of the rest).
    AfterInvalid,
}

/// A staged chunk of either kind.
#[derive(Debug)]
pub(crate) enum Staged {
    Accounts(StagedChunk<AccountChunkOutcome>),
    Slots(StagedChunk<B256>),
}

/// A piece of a batched chunk answer.
trait Piece: Encodable {
    /// Whether it marks a storage "large": that storage's bytes are not among its own.
    fn marks_large(&self) -> bool {
        false
    }
}

impl Piece for AccountPiece {
    fn marks_large(&self) -> bool {
        matches!(&self.content, ChunkContent::Items(leaves)
            if leaves.iter().any(|l| matches!(l.storage, AccountStorage::Large { .. })))
    }
}

impl Piece for StoragePiece {}

/// Answers being prepared off the loop at once, at most: one per core, for every sync of the
/// process together (answers wait for a thread in the order they arrive, each holding only the
/// answer it had already).
static PREPARING: OnceLock<Semaphore> = OnceLock::new();

/// `response` to `job`, prepared: off the loop on a multi-threaded runtime when it is a chunk
/// or codes answer, else at once.
pub(crate) async fn prepare_answer(
    job: Job,
    response: LeafResponse,
    (sent, epoch): (u64, &Epoch),
) -> (Job, Answer) {
    if epoch.outdates(sent, &job) {
        // Checked here, off the loop: the loop would drop it after it was staged.
        return (job, Answer { size: response_len(&response), body: Body::Stale });
    }
    let heavy = matches!(
        (&job, &response),
        (Job::Chunk(_), LeafResponse::Chunk(_))
            | (Job::Storage(_), LeafResponse::StorageChunk(_))
            | (Job::Codes(_), LeafResponse::Codes(_))
    );
    let flavor = tokio::runtime::Handle::current().runtime_flavor();
    if !heavy || flavor == RuntimeFlavor::CurrentThread {
        let answer = prepare(&job, response);
        return (job, answer);
    }
    let preparing = PREPARING.get_or_init(|| {
        Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    });
    // Never closed: a permit is granted in the end.
    let permit = preparing.acquire().await;
    let prepared = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let answer = prepare(&job, response);
        (job, answer)
    });
    match prepared.await {
        Ok(prepared) => prepared,
        // Preparing panicked (a bug): as it would have in the loop.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// `response` to `job`, prepared (see the module docs).
pub(crate) fn prepare(job: &Job, response: LeafResponse) -> Answer {
    let (body, size) = match (job, response) {
        (Job::Chunk(units), LeafResponse::Chunk(chunk)) => {
            pieces(units, chunk.pieces, |unit, piece| match unit.owner {
                None => check_chunk(unit, piece),
                Some(_) => ChunkVerdict::Refused(Verdict::Invalid("answer of the wrong kind")),
            })
        }
        (Job::Storage(units), LeafResponse::StorageChunk(chunk)) => {
            pieces(units, chunk.pieces, |unit, piece| match unit.owner {
                Some(owner) => check_piece(unit, owner, piece),
                None => ChunkVerdict::Refused(Verdict::Invalid("answer of the wrong kind")),
            })
        }
        (Job::Codes(_), response @ LeafResponse::Codes(_)) => {
            let size = response_len(&response);
            let LeafResponse::Codes(codes) = response else { unreachable!("matched above") };
            // Eight at a time where the CPU allows; the answer's size was bounded before it
            // was decoded.
            let inputs: Vec<&[u8]> = codes.codes.iter().map(|code| code.as_ref()).collect();
            let hashes = keccak256_batch(&inputs);
            (Body::Codes { codes, hashes }, size)
        }
        (Job::Nodes(_) | Job::Probe(_), response @ LeafResponse::Nodes(_)) => {
            let size = response_len(&response);
            let LeafResponse::Nodes(nodes) = response else { unreachable!("matched above") };
            (Body::Nodes(nodes), size)
        }
        (_, response) => (Body::WrongKind, response_len(&response)),
    };
    Answer { size, body }
}

/// A chunk answer's `pieces` to `units`, each judged by `check` and staged up to the first
/// invalid one ([`Checked::AfterInvalid`] after it), and the answer's size (from the pieces'
/// lengths, each counted once).
fn pieces<P: Piece>(
    units: &[Unit],
    pieces: Vec<P>,
    check: impl Fn(&Unit, P) -> ChunkVerdict,
) -> (Body, u64) {
    let lengths: Vec<u64> = pieces.iter().map(|piece| piece.length() as u64).collect();
    let size = pieces_response_len(&lengths);
    if pieces.len() > units.len() {
        return (Body::Pieces(Pieces::TooMany), size);
    }
    let mut invalid = false;
    let checked = pieces
        .into_iter()
        .zip(units)
        .zip(lengths)
        .map(|((piece, unit), length)| {
            let marks_large = piece.marks_large();
            if invalid {
                return CheckedPiece { marks_large, length, verdict: Checked::AfterInvalid };
            }
            let verdict = match check(unit, piece) {
                ChunkVerdict::Import { leaves, head_number } => {
                    let staged = stage(unit, &leaves);
                    Checked::Import { leaves, head_number, staged }
                }
                ChunkVerdict::Split { head_number } => Checked::Split { head_number },
                ChunkVerdict::Refused(verdict) => {
                    invalid = matches!(verdict, Verdict::Invalid(_));
                    Checked::Refused(verdict)
                }
            };
            CheckedPiece { marks_large, length, verdict }
        })
        .collect();
    (Body::Pieces(Pieces::Checked(checked)), size)
}

/// The chunk that imports `leaves` at `unit`'s prefix, staged.
fn stage(unit: &Unit, leaves: &Leaves) -> Result<Box<Staged>, LeafDbError> {
    Ok(Box::new(match leaves {
        Leaves::Accounts { accounts, .. } => {
            Staged::Accounts(stage_account_chunk(&unit.prefix, accounts)?)
        }
        Leaves::Slots { owner, slots } => {
            Staged::Slots(stage_storage_chunk(owner, &unit.prefix, slots)?)
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use alloy_primitives::{U256, keccak256};
    use alloy_trie::{EMPTY_ROOT_HASH, Nibbles};
    use leafsync_p2p::leaf::{AccountLeaf, Chunk, StorageChunk, StorageSlot};

    use super::*;
    use crate::tasks::{Attempts, CodeTask};

    fn unit(owner: Option<B256>, prefix: &[u8]) -> Unit {
        let prefix = Nibbles::from_nibbles(prefix);
        Unit {
            owner,
            prefix,
            hash: B256::ZERO,
            leaf: false,
            attempts: Attempts::default(),
            home: None,
        }
    }

    /// An account under `0x1…` with `slots` inline slots, or a large storage.
    fn account(second_byte: u8, storage: AccountStorage) -> AccountLeaf {
        let mut hashed_address = B256::repeat_byte(0x11);
        hashed_address.0[1] = second_byte;
        let (nonce, balance, code_hash) = (1, U256::from(7u64), B256::ZERO);
        let storage_root = EMPTY_ROOT_HASH;
        AccountLeaf { hashed_address, nonce, balance, storage_root, code_hash, storage }
    }

    fn slots(n: u8) -> Vec<StorageSlot> {
        (1..=n)
            .map(|i| StorageSlot { hashed_slot: B256::repeat_byte(i), value: U256::from(i) })
            .collect()
    }

    fn piece(leaves: Vec<AccountLeaf>) -> AccountPiece {
        AccountPiece { head_number: 3, content: ChunkContent::Items(leaves) }
    }

    /// An account answer's pieces are checked and staged each on its own, in order, their
    /// lengths and the answer's size measured as the wire counts them.
    #[test]
    fn a_chunk_answer_is_checked_and_staged_piece_by_piece() {
        let large = AccountStorage::Large { slot_count: 900 };
        let first = piece(vec![account(1, AccountStorage::Inline(slots(3))), account(2, large)]);
        let second = piece(vec![account(0x40, AccountStorage::Inline(Vec::new()))]);
        let bad = piece(vec![account(0x90, AccountStorage::Inline(Vec::new()))]);
        let chunk = Chunk { pieces: vec![first.clone(), second.clone(), bad.clone()] };
        let size = response_len(&LeafResponse::Chunk(chunk.clone()));
        let units = vec![unit(None, &[1, 1]), unit(None, &[1, 1]), unit(None, &[1, 2])];
        let job = Job::Chunk(units);
        let Answer { size: prepared, body } = prepare(&job, LeafResponse::Chunk(chunk));
        assert_eq!(prepared, size);
        let Body::Pieces(Pieces::Checked(pieces)) = body else { panic!("{body:?}") };
        assert_eq!(pieces.len(), 3);
        let lengths: Vec<u64> = [&first, &second, &bad].map(|p| p.length() as u64).to_vec();
        assert_eq!(pieces.iter().map(|p| p.length).collect::<Vec<_>>(), lengths);
        assert_eq!(pieces.iter().map(|p| p.marks_large).collect::<Vec<_>>(), [true, false, false]);
        // The first piece's subtrie is the one the leafdb's own import computes.
        let Checked::Import { leaves: Leaves::Accounts { accounts, .. }, head_number: 3, staged } =
            &pieces[0].verdict
        else {
            panic!("{:?}", pieces[0].verdict)
        };
        let Staged::Accounts(staged) = &**staged.as_ref().unwrap() else { panic!("slots") };
        let db = leafsync_leafdb::LeafDb::in_memory();
        let imported = db.import_account_chunk(&Nibbles::from_nibbles([1, 1]), accounts).unwrap();
        assert_eq!(staged.outcome(), &imported);
        assert!(matches!(pieces[1].verdict, Checked::Import { .. }));
        // Outside its unit's prefix: refused, nothing staged.
        let malformed = Verdict::Invalid("malformed chunk");
        assert!(matches!(&pieces[2].verdict, Checked::Refused(v) if *v == malformed));
    }

    /// After an invalid piece, which bans its server, the answer's further pieces are neither
    /// checked nor staged; a piece refused without a ban leaves the next ones checked.
    #[test]
    fn pieces_after_an_invalid_one_are_left_unread() {
        let good = piece(vec![account(0x40, AccountStorage::Inline(slots(2)))]);
        // Outside its unit's prefix (`1, 2`): malformed.
        let bad = piece(vec![account(0x90, AccountStorage::Inline(Vec::new()))]);
        let units = vec![unit(None, &[1, 2]), unit(None, &[1, 1]), unit(None, &[1, 1])];
        let chunk = Chunk { pieces: vec![bad, good.clone(), good.clone()] };
        let Body::Pieces(Pieces::Checked(pieces)) =
            prepare(&Job::Chunk(units), LeafResponse::Chunk(chunk)).body
        else {
            panic!("pieces")
        };
        assert!(matches!(&pieces[0].verdict, Checked::Refused(Verdict::Invalid(_))));
        assert!(matches!(pieces[1].verdict, Checked::AfterInvalid));
        assert!(matches!(pieces[2].verdict, Checked::AfterInvalid));
        // An empty piece for a unit with leaves is refused as empty, without a ban: the next
        // piece is still checked and staged.
        let units = vec![unit(None, &[1, 2]), unit(None, &[1, 1])];
        let chunk = Chunk { pieces: vec![piece(Vec::new()), good] };
        let Body::Pieces(Pieces::Checked(pieces)) =
            prepare(&Job::Chunk(units), LeafResponse::Chunk(chunk)).body
        else {
            panic!("pieces")
        };
        assert!(matches!(pieces[0].verdict, Checked::Refused(Verdict::Empty)));
        assert!(matches!(pieces[1].verdict, Checked::Import { .. }));
    }

    /// A batch answer with more pieces than units asked is refused whole, unchecked; an answer
    /// of another kind than its request is told apart; storage pieces to account units are
    /// refused each.
    #[test]
    fn too_many_pieces_and_answers_of_the_wrong_kind_are_told() {
        let empty = || piece(Vec::new());
        let job = Job::Chunk(vec![unit(None, &[1])]);
        let answer = prepare(&job, LeafResponse::Chunk(Chunk { pieces: vec![empty(), empty()] }));
        assert!(matches!(answer.body, Body::Pieces(Pieces::TooMany)));
        let storage = StorageChunk { pieces: Vec::new() };
        assert!(matches!(prepare(&job, LeafResponse::StorageChunk(storage)).body, Body::WrongKind));
        let job = Job::Storage(vec![unit(None, &[1])]);
        let content = ChunkContent::Items(slots(2));
        let storage = StorageChunk { pieces: vec![StoragePiece { head_number: 1, content }] };
        let Body::Pieces(Pieces::Checked(pieces)) =
            prepare(&job, LeafResponse::StorageChunk(storage)).body
        else {
            panic!("pieces")
        };
        let wrong = Verdict::Invalid("answer of the wrong kind");
        assert!(matches!(&pieces[0].verdict, Checked::Refused(v) if *v == wrong));
    }

    /// A codes answer comes with each entry's hash; the empty entry's is the empty hash.
    #[test]
    fn a_codes_answer_comes_with_its_hashes() {
        let codes = Codes { codes: vec![vec![0x60, 0x01].into(), Default::default()] };
        let job = Job::Codes(Vec::<CodeTask>::new());
        let Body::Codes { hashes, .. } = prepare(&job, LeafResponse::Codes(codes)).body else {
            panic!("codes")
        };
        assert_eq!(hashes, vec![keccak256([0x60, 0x01]), keccak256([])]);
    }

    /// An answer arriving after a re-pivot is not prepared, only measured: its chunks are of the
    /// pivot before, and the loop drops them. Codes do not depend on the pivot: prepared still.
    #[tokio::test]
    async fn answers_from_before_a_re_pivot_are_not_prepared() {
        let epoch = Epoch::default();
        let good = piece(vec![account(0x40, AccountStorage::Inline(slots(2)))]);
        let chunk = LeafResponse::Chunk(Chunk { pieces: vec![good] });
        let size = response_len(&chunk);
        let job = || Job::Chunk(vec![unit(None, &[1, 1])]);
        let (_, fresh) = prepare_answer(job(), chunk.clone(), (0, &epoch)).await;
        assert!(matches!(fresh.body, Body::Pieces(Pieces::Checked(_))));
        epoch.advance();
        let (_, stale) = prepare_answer(job(), chunk, (0, &epoch)).await;
        assert_eq!(stale.size, size);
        assert!(matches!(stale.body, Body::Stale), "{:?}", stale.body);
        let codes = LeafResponse::Codes(Codes { codes: vec![vec![0x60].into()] });
        let (_, codes) = prepare_answer(Job::Codes(Vec::new()), codes, (0, &epoch)).await;
        assert!(matches!(codes.body, Body::Codes { .. }));
    }
}
