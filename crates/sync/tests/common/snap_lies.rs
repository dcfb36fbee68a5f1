//! Which changes of a snap/1 answer are lies the snap/1 client can prove ([`provable`]), for
//! the mutant servers' rule that a provable lie costs its teller. What an honest server may
//! send too is no lie: a range cut at its byte budget, storage lists left out after the ones it
//! sent, codes and nodes it lacks left out or empty, an empty range with an empty proof (no
//! state for the root). Nor is what the client does not read: it verifies no range proof (each
//! chunk is checked against its skeleton hash instead) and only tells an empty range with a
//! proof ("nothing from here on") from one without ("no state"). Where the client's use of an
//! answer depends on what this module cannot see (the room left in a chunk for inline storages,
//! a storage list that came cut), a change counts as no lie: the rule errs on the side of
//! letting a liar go, never of blaming a change an honest server could make.

use alloy_primitives::{B256, Bytes};
use alloy_rlp::Decodable;
use leafsync_p2p::{
    leaf::protocol::MAX_INLINE_STORAGE_SLOTS,
    snap::{AccountRange, GetAccountRange, GetStorageRanges, SnapMessage, StorageRanges},
};

/// Whether `changed`, drawn from `honest`, the honest answer to `request`, is a lie the snap/1
/// client can prove (see the module docs).
pub fn provable(request: &SnapMessage, honest: &SnapMessage, changed: &SnapMessage) -> bool {
    match (request, honest, changed) {
        _ if honest == changed => false,
        (
            SnapMessage::GetAccountRange(r),
            SnapMessage::AccountRange(h),
            SnapMessage::AccountRange(c),
        ) => judge(account_reading(r, h), account_reading(r, c)),
        (
            SnapMessage::GetStorageRanges(r),
            SnapMessage::StorageRanges(h),
            SnapMessage::StorageRanges(c),
        ) => provable_storage(r, h, c),
        (_, SnapMessage::ByteCodes(h), SnapMessage::ByteCodes(c)) => {
            !subsequence(&h.codes, &c.codes)
        }
        (_, SnapMessage::TrieNodes(h), SnapMessage::TrieNodes(c)) => {
            !subsequence(&h.nodes, &c.nodes)
        }
        _ => true,
    }
}

/// Whether `answer` to `request` says its server has no state for the root: a range with no
/// item and no proof. The client then drops the read it is in (a range it cannot finish) and
/// the reads of the request after it, and gives the peer no more work for this root: lies in
/// those reads go unjudged, but they changed nothing, and the liar is out of the sync.
pub fn claims_no_state(request: &SnapMessage, answer: &SnapMessage) -> bool {
    match (request, answer) {
        (SnapMessage::GetAccountRange(_), SnapMessage::AccountRange(a)) => {
            a.accounts.is_empty() && a.proof.is_empty()
        }
        (SnapMessage::GetStorageRanges(r), SnapMessage::StorageRanges(s))
            if r.origin.is_empty() =>
        {
            s.slots.is_empty() && s.proof.is_empty()
        }
        (SnapMessage::GetStorageRanges(_), SnapMessage::StorageRanges(s)) => {
            s.slots.first().is_none_or(Vec::is_empty) && s.proof.is_empty()
        }
        _ => false,
    }
}

/// A range answer as the client reads it: the items up to the range's limit (key and value as
/// the client takes them), whether the answer says the range is covered, and whether it says
/// the server has no state for the root. `None`: malformed (out of order, before the origin, a
/// field the client refuses), which no honest server sends.
struct Reading {
    items: Vec<(B256, Vec<u8>)>,
    covered: bool,
    no_state: bool,
}

/// Whether an answer read as `changed` where the honest one reads as `honest` is provable: it
/// is malformed, or its items are not the honest ones or a cut of them that leaves the range
/// open (the client asks on from its last key, as after a budget), or it calls the range
/// covered where it is not.
fn judge(honest: Option<Reading>, changed: Option<Reading>) -> bool {
    let (Some(honest), Some(changed)) = (honest, changed) else { return true };
    if changed.no_state {
        return false;
    }
    if changed.items == honest.items {
        return changed.covered && !honest.covered;
    }
    let cut = changed.items.len() < honest.items.len() && honest.items.starts_with(&changed.items);
    !cut || changed.covered
}

/// Reads `items` (key, and the value as the client takes it, `None` where it refuses it) of a
/// range from `origin` to `limit`: `None` unless their keys rise strictly from `origin` and
/// every value up to the limit is taken. `whole`: the answer says nothing lies past its last
/// item.
fn read_range(
    items: impl Iterator<Item = (B256, Option<Vec<u8>>)>,
    origin: B256,
    limit: B256,
    whole: bool,
) -> Option<Reading> {
    let (mut kept, mut ended, mut previous) = (Vec::new(), false, None);
    for (key, value) in items {
        if key < origin || previous.is_some_and(|p| p >= key) {
            return None;
        }
        previous = Some(key);
        if key > limit {
            ended = true;
        } else if !ended {
            kept.push((key, value?));
            ended = key == limit;
        }
    }
    Some(Reading { items: kept, covered: whole || ended, no_state: false })
}

/// An account range as `SnapPeer` reads it: an empty one is covered with a proof, "no state"
/// without; the proof is read for nothing else.
fn account_reading(request: &GetAccountRange, answer: &AccountRange) -> Option<Reading> {
    if answer.accounts.is_empty() {
        let no_state = answer.proof.is_empty();
        return Some(Reading { items: Vec::new(), covered: true, no_state });
    }
    let items = answer.accounts.iter().map(|a| {
        let account = &a.account;
        let fields = account.storage_root().zip(account.code_hash());
        let value = fields.map(|(root, code)| {
            let balance = account.balance.to_be_bytes::<32>();
            [&account.nonce.to_be_bytes()[..], &balance, root.as_slice(), code.as_slice()].concat()
        });
        (a.hash, value)
    });
    read_range(items, request.origin, request.limit, false)
}

/// A storage answer: one account's chunk continued from an origin (the range rule), or whole
/// storages of several accounts (see [`provable_lists`]).
fn provable_storage(
    request: &GetStorageRanges,
    honest: &StorageRanges,
    changed: &StorageRanges,
) -> bool {
    if changed.slots.len() > request.accounts.len() {
        return true;
    }
    if request.origin.is_empty() {
        return provable_lists(honest, changed);
    }
    let key = |bytes: &Bytes| B256::try_from(bytes.as_ref()).unwrap_or_default();
    let (origin, limit) = (key(&request.origin), key(&request.limit));
    let reading = |answer: &StorageRanges| match answer.slots.first().filter(|l| !l.is_empty()) {
        None => {
            Some(Reading { items: Vec::new(), covered: true, no_state: answer.proof.is_empty() })
        }
        Some(list) => {
            let items = list.iter().map(|s| (s.hash, slot_value(&s.body)));
            read_range(items, origin, limit, answer.proof.is_empty())
        }
    };
    judge(reading(honest), reading(changed))
}

/// Whole storages of several accounts, lists in the order asked, the last one cut when a proof
/// follows. Provable: a list the client takes as whole that is malformed, or one that differs
/// from the honest list in its place and is not the last one the client takes as whole (that
/// one may cross the chunk's room and not be used) nor beyond [`MAX_INLINE_STORAGE_SLOTS`]
/// (not inlined). A cut list is used for a size hint or continued and judged later: no lie
/// here.
fn provable_lists(honest: &StorageRanges, changed: &StorageRanges) -> bool {
    if changed.slots.is_empty() {
        return false;
    }
    let whole = |answer: &StorageRanges| {
        answer.slots.len().saturating_sub(usize::from(!answer.proof.is_empty()))
    };
    let (whole_honest, whole_changed) = (whole(honest), whole(changed));
    changed.slots[..whole_changed].iter().enumerate().any(|(i, list)| {
        let malformed = read_range(
            list.iter().map(|s| (s.hash, slot_value(&s.body))),
            B256::ZERO,
            B256::repeat_byte(0xff),
            true,
        )
        .is_none();
        let differs = i >= whole_honest || honest.slots[i] != *list;
        let inlined = i + 1 < whole_changed
            && honest.slots.get(i).is_some_and(|l| l.len() <= MAX_INLINE_STORAGE_SLOTS);
        malformed || (differs && inlined)
    })
}

/// A slot value's body as the client takes it: the RLP of a non-zero integer and nothing more.
fn slot_value(body: &Bytes) -> Option<Vec<u8>> {
    let mut rest = body.as_ref();
    let value = alloy_primitives::U256::decode(&mut rest).ok()?;
    (rest.is_empty() && !value.is_zero()).then(|| body.to_vec())
}

/// Whether the non-empty entries of `changed` are entries of `honest` in order, each once: what
/// a server lacking some of them answers (the client matches entries to its requests by hash).
fn subsequence(honest: &[Bytes], changed: &[Bytes]) -> bool {
    let mut honest = honest.iter().filter(|b| !b.is_empty());
    changed.iter().filter(|b| !b.is_empty()).all(|c| honest.any(|h| h == c))
}
