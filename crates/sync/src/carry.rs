//! [`Carry`]: what one pivot's work leaves half done for the next, so that a re-pivot does not
//! have to re-derive everything synced so far.
//!
//! Everything this run imported or finished healing is consistent: its flat entries agree with
//! its stored trie, and its accounts' storage and codes were queued. A re-pivot cuts short two
//! kinds of work that break that, and only those two:
//! * a heal root still open: a heal writes nodes from the bottom up and re-derives the flat
//!   entries below its root only when the root is complete, so below a heal root cut short there
//!   may be stored subtries, complete and matching the new pivot, whose flat entries are older
//!   (its own top node and those above it were forgotten when it started: `forget_path`);
//! * a storage trie still open (units, skeleton nodes or heal roots of it outstanding): its
//!   account may be unchanged at the new pivot, so nothing at the new pivot names it again.
//!
//! So the new pivot trusts the tables as a repair trusts a complete state (a matching unit is
//! taken as it is, a heal re-derives only where it wrote), except below a *suspect* (an open heal
//! root), which is re-derived; and each *carried* storage is queued again once its account's
//! flat entry is current (its region matched, was healed or was imported). At mainnet size a
//! re-derivation of the whole synced state would take tens of minutes (5–10 µs an account,
//! estimated from the 1M repair benchmarks), longer than the 64 blocks between re-pivots:
//! re-deriving at every re-pivot would never finish.
//!
//! A crash cuts work short as a re-pivot does, and the run that resumes (at the same pivot or,
//! past the re-pivot distance, at a new one) carries the same two things, read from the marks
//! the crashed run kept in the leafdb ([`crate::marks`]): its heal roots and the suspects it
//! carried become suspects, its open storage tries carried storages. One difference: a heal
//! that completed rewrote its flat entries before the marks of what they need (storages, codes)
//! were written, so below a suspect from a crash *every* account's storage and code is checked,
//! not only the accounts whose flat entry the re-derivation changed.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::B256;
use alloy_trie::Nibbles;

use crate::tasks::Owner;

/// What re-pivots left half done; see the module docs. Both sets only shrink between re-pivots.
#[derive(Debug, Default)]
pub(crate) struct Carry {
    /// Heal roots cut short by a re-pivot or a crash (owner, path): stored subtries at or below
    /// one may have flat entries never re-derived from them. The flag: a crash cut it short, so
    /// every account below it is checked ([`Self::checks_every_account`]).
    suspects: BTreeMap<(Owner, Nibbles), bool>,
    /// Accounts (hashed) whose storage trie was open at a re-pivot.
    storages: BTreeSet<B256>,
}

impl Carry {
    /// A heal root cut short by a re-pivot.
    pub(crate) fn suspect(&mut self, owner: Owner, path: Nibbles) {
        self.suspects.entry((owner, path)).or_insert(false);
    }

    /// A heal root or suspect a crash cut short (read from the crashed run's marks).
    pub(crate) fn suspect_after_crash(&mut self, owner: Owner, path: Nibbles) {
        self.suspects.insert((owner, path), true);
    }

    /// A storage trie open at a re-pivot.
    pub(crate) fn carry_storage(&mut self, account: B256) {
        self.storages.insert(account);
    }

    /// Whether a stored subtrie at `owner`/`path` lies at or below a suspect, so its flat
    /// entries may be older than it.
    pub(crate) fn is_suspect(&self, owner: Owner, path: &Nibbles) -> bool {
        self.covering(owner, path).next().is_some()
    }

    /// Whether every account at or below `owner`/`path` must have its storage and code checked
    /// when re-derived: a suspect from a crash covers it.
    pub(crate) fn checks_every_account(&self, owner: Owner, path: &Nibbles) -> bool {
        self.covering(owner, path).any(|every| every)
    }

    /// The flags of the suspects at or above `owner`/`path`.
    fn covering<'a>(&'a self, owner: Owner, path: &'a Nibbles) -> impl Iterator<Item = bool> + 'a {
        let lens = if self.suspects.is_empty() { 0..0 } else { 0..path.len() + 1 };
        lens.filter_map(move |len| self.suspects.get(&(owner, path.slice(..len))).copied())
    }

    /// The subtrie at `owner`/`prefix` is consistent now (imported or re-derived whole): the
    /// suspects at or below it go. Returns them.
    pub(crate) fn settled(&mut self, owner: Owner, prefix: &Nibbles) -> Vec<Nibbles> {
        let below: Vec<_> = (self.suspects.range((owner, *prefix)..))
            .take_while(|((o, path), _)| *o == owner && path.starts_with(prefix))
            .map(|((_, path), _)| *path)
            .collect();
        for path in &below {
            self.suspects.remove(&(owner, *path));
        }
        below
    }

    /// Takes the carried storages of the accounts whose hashed address lies below the
    /// account-trie `prefix`.
    pub(crate) fn take_storages_under(&mut self, prefix: &Nibbles) -> Vec<B256> {
        if self.storages.is_empty() {
            return Vec::new();
        }
        let (low, high) = bounds(prefix);
        let taken: Vec<B256> = self.storages.range(low..=high).copied().collect();
        for account in &taken {
            self.storages.remove(account);
        }
        taken
    }

    /// A scan found the flat state whole: nothing is suspect or carried any more.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Storages carried and not yet taken up.
    pub(crate) fn storages_left(&self) -> usize {
        self.storages.len()
    }
}

/// The lowest and highest 32-byte keys that start with the nibbles of `prefix` (at most 64).
fn bounds(prefix: &Nibbles) -> (B256, B256) {
    let (mut low, mut high) = (B256::ZERO, B256::repeat_byte(0xff));
    for i in 0..prefix.len().min(64) {
        let nibble = prefix.get_unchecked(i);
        let (byte, shift) = (i / 2, if i % 2 == 0 { 4 } else { 0 });
        low[byte] = (low[byte] & !(0x0f << shift)) | (nibble << shift);
        high[byte] = (high[byte] & !(0x0f << shift)) | (nibble << shift);
    }
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(nibbles: &[u8]) -> Nibbles {
        Nibbles::from_nibbles(nibbles)
    }

    fn key(first: u8) -> B256 {
        let mut key = B256::repeat_byte(0x11);
        key[0] = first;
        key
    }

    /// A stored subtrie is suspect at or below a suspect of its own trie, not above it, beside
    /// it or in another trie; settling a region takes the suspects at or below it, not above.
    #[test]
    fn suspects_cover_their_subtries_until_settled() {
        let owner = Some(B256::repeat_byte(7));
        let mut carry = Carry::default();
        assert!(!carry.is_suspect(None, &Nibbles::new()));
        carry.suspect(None, at(&[1, 2]));
        carry.suspect(owner, Nibbles::new());
        for (path, suspect) in
            [(&[1, 2][..], true), (&[1, 2, 3, 4], true), (&[1], false), (&[1, 3], false)]
        {
            assert_eq!(carry.is_suspect(None, &at(path)), suspect, "account path {path:?}");
        }
        assert!(carry.is_suspect(owner, &at(&[5])), "below a storage trie's root");
        assert!(!carry.is_suspect(Some(B256::repeat_byte(8)), &at(&[5])), "another trie");

        assert!(carry.settled(None, &at(&[1, 2, 3])).is_empty());
        assert!(carry.is_suspect(None, &at(&[1, 2])), "a settled region below it leaves it");
        assert_eq!(carry.settled(None, &at(&[1])), [at(&[1, 2])]);
        assert!(!carry.is_suspect(None, &at(&[1, 2, 3])), "settled above it");
        assert!(carry.is_suspect(owner, &at(&[5])), "other tries' suspects stay");
        carry.settled(owner, &Nibbles::new());
        assert!(!carry.is_suspect(owner, &at(&[5])));
    }

    /// Below a suspect from a crash every account is checked, below one from a re-pivot only
    /// those the re-derivation changed; a re-pivot's suspect does not lift a crash's.
    #[test]
    fn a_crash_suspect_checks_every_account_below_it() {
        let mut carry = Carry::default();
        carry.suspect(None, at(&[1]));
        carry.suspect_after_crash(None, at(&[2]));
        carry.suspect(None, at(&[2]));
        assert!(!carry.checks_every_account(None, &at(&[1, 5])));
        assert!(carry.checks_every_account(None, &at(&[2, 5])));
        assert!(carry.checks_every_account(None, &at(&[2])));
        assert!(!carry.checks_every_account(None, &at(&[3])));
        carry.suspect_after_crash(None, at(&[1, 5]));
        assert!(carry.checks_every_account(None, &at(&[1, 5, 6])), "below a crash's");
        assert!(!carry.checks_every_account(None, &at(&[1, 6])), "beside it");
    }

    /// Carried storages are taken by the account-trie region their account lies in, once.
    #[test]
    fn carried_storages_are_taken_by_their_region() {
        let mut carry = Carry::default();
        for first in [0x12, 0x1f, 0x20, 0xff] {
            carry.carry_storage(key(first));
        }
        assert_eq!(carry.take_storages_under(&at(&[1, 2, 3])), Vec::<B256>::new());
        assert_eq!(carry.take_storages_under(&at(&[1])), vec![key(0x12), key(0x1f)]);
        assert_eq!(carry.take_storages_under(&at(&[1])), Vec::<B256>::new(), "taken once");
        assert_eq!(carry.storages_left(), 2);
        assert_eq!(carry.take_storages_under(&at(&[0xf, 0xf, 1, 1])), vec![key(0xff)]);
        assert_eq!(carry.take_storages_under(&Nibbles::new()), vec![key(0x20)]);
        assert_eq!(carry.storages_left(), 0);
    }

    #[test]
    fn bounds_span_the_keys_of_a_prefix() {
        let (low, high) = bounds(&at(&[0xa, 0xb, 0xc]));
        assert_eq!(low[..2], [0xab, 0xc0]);
        assert_eq!(high[..2], [0xab, 0xcf]);
        assert!(low[2..].iter().all(|b| *b == 0) && high[2..].iter().all(|b| *b == 0xff));
        let full = B256::repeat_byte(0x5a);
        assert_eq!(bounds(&Nibbles::unpack(full)), (full, full));
    }
}
