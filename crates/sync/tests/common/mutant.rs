//! A peer that lies at random. Each answer, at a drawn rate, gets one change drawn from every
//! kind a hostile server can make to an honest answer: a field of a leaf, a slot or a piece
//! changed, a leaf or slot dropped, doubled, swapped or added, a storage mark forged, a head
//! claim moved, pieces cut, reordered or doubled, nodes and codes replaced, dropped or swapped.
//! The hand-written behaviours of [`super::Behaviour`] and [`super::snap::SnapBehaviour`] each
//! test one lie; this one finds the lies nobody thought to write. It changes `leaf/1` answers
//! ([`Mutator::mutate`]) and snap/1 answers ([`Mutator::mutate_snap`]: accounts, slots, their
//! encodings and the proofs).

use alloy_primitives::{B256, Bytes, U256};
use alloy_trie::EMPTY_ROOT_HASH;
use leafsync_leafdb::{EMPTY_CODE_HASH, generate::SplitMix};
use leafsync_p2p::{
    leaf::{AccountLeaf, AccountPiece, AccountStorage, ChunkContent, StoragePiece, StorageSlot},
    requests::LeafResponse,
    snap::{AccountData, SnapMessage, StorageData},
};

/// Draws the changes of one mutant peer.
pub struct Mutator {
    rng: SplitMix,
    /// Out of eight answers, how many are changed.
    rate: u64,
    /// Answers changed so far (a change may happen to leave an answer as it was).
    pub changed: u64,
    /// Answers changed into a lie the client can prove ([`provable`] for `leaf/1`,
    /// [`super::snap_lies::provable`] for snap/1): each must cost its peer a penalty.
    pub provable: u64,
    /// snap/1 answers changed to say the server has no state for the root
    /// ([`super::snap_lies::claims_no_state`]): they excuse the provable lies of the read they
    /// end.
    pub no_state_claims: u64,
}

impl Mutator {
    /// A mutator drawing from `seed`, changing `rate` of every eight answers.
    pub fn new(seed: u64, rate: u64) -> Self {
        Self { rng: SplitMix::new(seed), rate, changed: 0, provable: 0, no_state_claims: 0 }
    }

    fn pick(&mut self, n: usize) -> usize {
        self.rng.below(n as u64) as usize
    }

    fn b256(&mut self) -> B256 {
        let mut out = [0u8; 32];
        for part in out.chunks_mut(8) {
            part.copy_from_slice(&self.rng.next_u64().to_be_bytes());
        }
        B256::from(out)
    }

    /// A number a liar might pick: small, at a boundary, or anything.
    fn number(&mut self) -> u64 {
        match self.pick(5) {
            0 => 0,
            1 => 1,
            2 => u64::MAX,
            3 => self.rng.next_u64() % 1_000_000,
            _ => self.rng.next_u64(),
        }
    }

    fn u256(&mut self) -> U256 {
        match self.pick(3) {
            0 => U256::ZERO,
            1 => U256::MAX,
            _ => U256::from_be_bytes(self.b256().0),
        }
    }

    /// A head claim moved from `head`: near it, far from it, or at a boundary.
    fn head(&mut self, head: u64) -> u64 {
        match self.pick(4) {
            0 => head.saturating_add(1 + self.pick(20) as u64),
            1 => head.saturating_sub(1 + self.pick(20) as u64),
            _ => self.number(),
        }
    }

    /// Whether the next answer is changed, at this mutator's rate (counted).
    fn due(&mut self) -> bool {
        let due = self.rng.next_u64() % 8 < self.rate;
        self.changed += u64::from(due);
        due
    }

    /// Changes `answer` at this mutator's rate.
    pub fn mutate(&mut self, answer: &mut LeafResponse) {
        if !self.due() {
            return;
        }
        let honest = answer.clone();
        match answer {
            LeafResponse::Chunk(c) => self.pieces(&mut c.pieces, Self::leaves),
            LeafResponse::StorageChunk(c) => self.pieces(&mut c.pieces, Self::slots),
            LeafResponse::Nodes(n) => self.blobs(&mut n.nodes),
            LeafResponse::Codes(c) => self.blobs(&mut c.codes),
        }
        self.provable += u64::from(provable(&honest, answer));
    }

    /// Cuts, reorders or doubles the pieces of a batch, or changes one piece: its head claim,
    /// its content ("too large", empty), or its `items`.
    fn pieces<P: Piece>(&mut self, pieces: &mut Vec<P>, items: fn(&mut Self, &mut Vec<P::Item>)) {
        if self.pick(4) == 0 {
            return self.list(pieces);
        }
        let Some(i) = self.index(pieces.len()) else { return };
        let (head_number, content) = pieces[i].parts();
        match self.pick(6) {
            0 => *head_number = self.head(*head_number),
            1 => *content = ChunkContent::TooLarge,
            2 => *content = ChunkContent::Items(Vec::new()),
            _ => {
                if let ChunkContent::Items(list) = content {
                    items(self, list);
                }
            }
        }
    }

    fn index(&mut self, len: usize) -> Option<usize> {
        (len > 0).then(|| self.pick(len))
    }

    /// Cuts, reorders or doubles the items of a list.
    fn list<T: Clone>(&mut self, items: &mut Vec<T>) {
        let Some(i) = self.index(items.len()) else { return };
        match self.pick(4) {
            0 => items.truncate(i),
            1 => {
                let j = self.pick(items.len());
                items.swap(i, j);
            }
            2 => items.insert(i, items[i].clone()),
            _ => {
                items.remove(i);
            }
        }
    }

    /// Changes one leaf of an account chunk, or the list of leaves.
    fn leaves(&mut self, leaves: &mut Vec<AccountLeaf>) {
        let Some(i) = self.index(leaves.len()) else { return };
        match self.pick(12) {
            0 => self.list(leaves),
            1 => {
                // An account the state lacks, next to a real one (under the same prefix).
                let mut extra = leaves[i].clone();
                extra.hashed_address = successor(extra.hashed_address);
                leaves.insert(i + 1, extra);
            }
            2 => leaves[i].hashed_address = self.b256(),
            3 => leaves[i].balance = self.u256(),
            4 => leaves[i].balance += U256::from(1u64),
            5 => leaves[i].nonce = self.number(),
            6 => {
                leaves[i].storage_root = match self.pick(3) {
                    0 => EMPTY_ROOT_HASH,
                    _ => self.b256(),
                }
            }
            7 => {
                leaves[i].code_hash = match self.pick(3) {
                    0 => EMPTY_CODE_HASH,
                    _ => self.b256(),
                }
            }
            8 => leaves[i].storage = AccountStorage::Large { slot_count: self.number() },
            9 => leaves[i].storage = AccountStorage::Inline(Vec::new()),
            _ => match &mut leaves[i].storage {
                AccountStorage::Inline(slots) if !slots.is_empty() => self.slots(slots),
                storage => {
                    let slot = StorageSlot { hashed_slot: self.b256(), value: self.u256() };
                    *storage = AccountStorage::Inline(vec![slot]);
                }
            },
        }
    }

    /// Changes one slot of a storage list, or the list.
    fn slots(&mut self, slots: &mut Vec<StorageSlot>) {
        let Some(i) = self.index(slots.len()) else { return };
        match self.pick(7) {
            0 | 1 => self.list(slots),
            2 => {
                let mut extra = slots[i];
                extra.hashed_slot = successor(extra.hashed_slot);
                slots.insert(i + 1, extra);
            }
            3 => slots[i].hashed_slot = self.b256(),
            4 => slots[i].value = self.u256(),
            5 => slots[i].value = U256::ZERO,
            _ => slots[i].value += U256::from(1u64),
        }
    }

    /// Changes one node or code, or the list of them.
    fn blobs(&mut self, blobs: &mut Vec<Bytes>) {
        let Some(i) = self.index(blobs.len()) else { return };
        match self.pick(5) {
            0 | 1 => self.list(blobs),
            2 => blobs[i] = Bytes::new(),
            3 => {
                let len = self.pick(600);
                let bytes = (0..len).map(|_| self.rng.next_u64() as u8).collect::<Vec<u8>>();
                blobs[i] = Bytes::from(bytes);
            }
            _ => {
                let mut changed = blobs[i].to_vec();
                if let Some(at) = self.index(changed.len()) {
                    changed[at] ^= 1 << self.pick(8);
                }
                blobs[i] = Bytes::from(changed);
            }
        }
    }
}

impl Mutator {
    /// Changes a snap/1 `answer` to `request` at this mutator's rate.
    pub fn mutate_snap(&mut self, request: &SnapMessage, answer: &mut SnapMessage) {
        if !self.due() {
            return;
        }
        let honest = answer.clone();
        match answer {
            SnapMessage::AccountRange(a) if self.pick(3) == 0 => self.blobs(&mut a.proof),
            SnapMessage::AccountRange(a) => self.accounts(&mut a.accounts),
            SnapMessage::StorageRanges(s) => match self.pick(4) {
                0 => self.blobs(&mut s.proof),
                1 => self.list(&mut s.slots),
                _ => {
                    if let Some(i) = self.index(s.slots.len()) {
                        self.snap_slots(&mut s.slots[i]);
                    }
                }
            },
            SnapMessage::ByteCodes(c) => self.blobs(&mut c.codes),
            SnapMessage::TrieNodes(t) => self.blobs(&mut t.nodes),
            _ => {}
        }
        self.provable += u64::from(super::snap_lies::provable(request, &honest, answer));
        let claims_no_state = |a| super::snap_lies::claims_no_state(request, a);
        self.no_state_claims += u64::from(claims_no_state(answer) && !claims_no_state(&honest));
    }

    /// Whether this mutant must have been penalised: it told a provable lie, and no claim of
    /// having no state may have voided it.
    pub fn owes_penalty(&self) -> bool {
        self.provable > 0 && self.no_state_claims == 0
    }

    /// A hash field of a slim account: empty (the slim form of the default), a real-looking
    /// one, or bytes of any length.
    fn slim_hash(&mut self, default: B256) -> Bytes {
        match self.pick(4) {
            0 => Bytes::new(),
            1 => Bytes::copy_from_slice(default.as_slice()),
            2 => Bytes::copy_from_slice(self.b256().as_slice()),
            _ => {
                let len = self.pick(40);
                Bytes::from((0..len).map(|_| self.rng.next_u64() as u8).collect::<Vec<u8>>())
            }
        }
    }

    /// Changes one account of an account range, or the list of them.
    fn accounts(&mut self, accounts: &mut Vec<AccountData>) {
        let Some(i) = self.index(accounts.len()) else { return };
        match self.pick(8) {
            0 | 1 => self.list(accounts),
            2 => {
                let mut extra = accounts[i].clone();
                extra.hash = successor(extra.hash);
                accounts.insert(i + 1, extra);
            }
            3 => accounts[i].hash = self.b256(),
            4 => accounts[i].account.balance = self.u256(),
            5 => accounts[i].account.nonce = self.number(),
            6 => accounts[i].account.storage_root = self.slim_hash(EMPTY_ROOT_HASH),
            _ => accounts[i].account.code_hash = self.slim_hash(EMPTY_CODE_HASH),
        }
    }

    /// Changes one slot of a snap/1 storage list (its key, or its body: any bytes, or the
    /// encoding of any value, zero too), or the list.
    fn snap_slots(&mut self, slots: &mut Vec<StorageData>) {
        let Some(i) = self.index(slots.len()) else { return };
        match self.pick(6) {
            0 | 1 => self.list(slots),
            2 => {
                let mut extra = slots[i].clone();
                extra.hash = successor(extra.hash);
                slots.insert(i + 1, extra);
            }
            3 => slots[i].hash = self.b256(),
            4 => {
                let len = self.pick(40);
                let body = (0..len).map(|_| self.rng.next_u64() as u8).collect::<Vec<u8>>();
                slots[i].body = Bytes::from(body);
            }
            _ => slots[i].body = Bytes::from(alloy_rlp::encode(self.u256())),
        }
    }
}

/// Whether `changed`, drawn from the honest answer `honest`, is a lie the client can prove.
/// Not: what an honest server answers too (a list cut at its byte budget, an entry or a piece
/// it does not have: the client asks elsewhere, and only many empty answers in a row cost the
/// peer), a head claim over content that verifies (the content is checked against the pivot,
/// not the claim), "too large" for a piece (the client splits it, one node request more; at a
/// single leaf it is junk), and a non-empty storage marked large with any slot count (an
/// inline bound and a sizing hint are the server's to choose). docs/security.md lists these.
fn provable(honest: &LeafResponse, changed: &LeafResponse) -> bool {
    match (honest, changed) {
        (LeafResponse::Nodes(h), LeafResponse::Nodes(c)) => !cut_or_emptied(&h.nodes, &c.nodes),
        (LeafResponse::Codes(h), LeafResponse::Codes(c)) => !cut_or_emptied(&h.codes, &c.codes),
        (LeafResponse::Chunk(h), LeafResponse::Chunk(c)) => provable_pieces(&h.pieces, &c.pieces),
        (LeafResponse::StorageChunk(h), LeafResponse::StorageChunk(c)) => {
            provable_pieces(&h.pieces, &c.pieces)
        }
        _ => true,
    }
}

/// Whether `changed` is `honest` cut short with some entries emptied.
fn cut_or_emptied(honest: &[Bytes], changed: &[Bytes]) -> bool {
    changed.len() <= honest.len() && changed.iter().zip(honest).all(|(c, h)| c == h || c.is_empty())
}

/// Whether a batch's pieces were changed into a provable lie (see [`provable`]): pieces
/// reordered, doubled or dropped from the middle, or a piece's items changed other than as an
/// honest server may ([`Piece::as_honest`]).
fn provable_pieces<P: Piece>(honest: &[P], changed: &[P]) -> bool {
    if changed.len() != honest.len() {
        return changed.len() > honest.len() || changed != &honest[..changed.len()];
    }
    changed.iter().zip(honest).any(|(c, h)| match (c.content(), h.content()) {
        (content, honest) if content == honest => false,
        (ChunkContent::TooLarge, _) => false,
        (ChunkContent::Items(items), _) if items.is_empty() => false,
        (ChunkContent::Items(items), ChunkContent::Items(honest)) => {
            items.len() != honest.len()
                || items.iter().zip(honest).any(|(c, h)| c != h && !P::as_honest(h, c))
        }
        (ChunkContent::Items(_), ChunkContent::TooLarge) => true,
    })
}

/// A piece of a batched answer: its head claim and its content.
trait Piece: Clone + PartialEq {
    type Item: PartialEq;
    fn parts(&mut self) -> (&mut u64, &mut ChunkContent<Self::Item>);
    fn content(&self) -> &ChunkContent<Self::Item>;
    /// Whether `changed` differs from `honest` only as an honest server's item may: by what
    /// the server chooses, not what the state says.
    fn as_honest(honest: &Self::Item, changed: &Self::Item) -> bool;
}

impl Piece for AccountPiece {
    type Item = AccountLeaf;
    fn parts(&mut self) -> (&mut u64, &mut ChunkContent<AccountLeaf>) {
        (&mut self.head_number, &mut self.content)
    }
    fn content(&self) -> &ChunkContent<AccountLeaf> {
        &self.content
    }
    /// A non-empty storage marked large, with any slot count: a server with a smaller inline
    /// bound marks a storage large that another inlines, and the count is a sizing hint.
    fn as_honest(honest: &AccountLeaf, changed: &AccountLeaf) -> bool {
        let marked = AccountLeaf { storage: changed.storage.clone(), ..honest.clone() };
        marked == *changed
            && matches!(changed.storage, AccountStorage::Large { .. })
            && changed.storage_root != EMPTY_ROOT_HASH
    }
}

impl Piece for StoragePiece {
    type Item = StorageSlot;
    fn parts(&mut self) -> (&mut u64, &mut ChunkContent<StorageSlot>) {
        (&mut self.head_number, &mut self.content)
    }
    fn content(&self) -> &ChunkContent<StorageSlot> {
        &self.content
    }
    fn as_honest(_honest: &StorageSlot, _changed: &StorageSlot) -> bool {
        false
    }
}

/// The key after `key` (wrapping at the top): a neighbour sharing all but its last bits.
fn successor(key: B256) -> B256 {
    B256::from(U256::from_be_bytes(key.0).wrapping_add(U256::from(1u64)).to_be_bytes::<32>())
}
