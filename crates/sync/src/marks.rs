//! [`Marks`]: what a sync keeps open, marked in the leafdb beside its progress record
//! ([`SyncMark`]), so that a run resuming after a crash, or starting at a new pivot over a
//! crashed run's tables, knows what that run left half done ([`Marked`]) and can trust the rest
//! as a re-pivot does ([`crate::carry`]):
//! * a storage trie is marked open before the chunk whose account needs it is written, or when
//!   a heal's account starts it, and unmarked once it is complete;
//! * a code is marked when it is queued (for a chunk's accounts, before the chunk is written)
//!   and unmarked once its write returned;
//! * a heal root cut short by a re-pivot is marked a suspect (heal roots are entries already).
//!
//! A mark is written before whatever depends on it, through the same log, so a crash never
//! leaves the dependent write without its mark. A chunk's table files, ingested, do not go
//! through the log: a power cut (not a kill) may keep a file whose marks the log lost; the final
//! check, which a resumed run always makes, then finds the storage or code missing and queues it.
//! Marks go in batches: staged as the loop goes, written before the next write that needs them
//! ([`Marks::flush`]); unmarking may lag, as a stale mark costs one lookup on resume.

use alloy_primitives::B256;
use alloy_trie::Nibbles;
use leafsync_leafdb::{KvStore, LeafDb, SyncMark};

use crate::{
    error::SyncError,
    progress::{HealRoot, TriePath},
    resume::heal_root_item,
    tasks::{Owner, wire_owner, wire_path},
};

/// Marks staged and not yet written; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    put: Vec<(SyncMark, Vec<u8>)>,
    delete: Vec<(SyncMark, Vec<u8>)>,
}

impl Marks {
    /// The storage trie of `account` is open.
    pub(crate) fn open_storage(&mut self, account: B256) {
        self.put.push((SyncMark::OpenStorage, account.to_vec()));
    }

    /// The storage trie of `account` is complete.
    pub(crate) fn storage_closed(&mut self, account: B256) {
        self.delete.push((SyncMark::OpenStorage, account.to_vec()));
    }

    /// The code `hash` is queued.
    pub(crate) fn open_code(&mut self, hash: B256) {
        self.put.push((SyncMark::OpenCode, hash.to_vec()));
    }

    /// The codes `hashes` are written (or were stored already).
    pub(crate) fn codes_written(&mut self, hashes: &[B256]) {
        self.delete.extend(hashes.iter().map(|hash| (SyncMark::OpenCode, hash.to_vec())));
    }

    /// The subtrie at `owner`/`path` is a suspect.
    pub(crate) fn suspect(&mut self, owner: Owner, path: &Nibbles) -> Result<(), SyncError> {
        self.put.push((SyncMark::Suspect, suspect_key(owner, path)?));
        Ok(())
    }

    /// The suspects of `owner` at `paths` are settled.
    pub(crate) fn settled(&mut self, owner: Owner, paths: &[Nibbles]) -> Result<(), SyncError> {
        for path in paths {
            self.delete.push((SyncMark::Suspect, suspect_key(owner, path)?));
        }
        Ok(())
    }

    /// Writes the staged marks: removals first, so that a mark removed and put again since the
    /// last flush stays.
    pub(crate) fn flush<S: KvStore>(&mut self, db: &LeafDb<S>) -> Result<(), SyncError> {
        if !self.delete.is_empty() {
            db.unmark_sync(&borrowed(&self.delete))?;
            self.delete.clear();
        }
        if !self.put.is_empty() {
            db.mark_sync(&borrowed(&self.put))?;
            self.put.clear();
        }
        Ok(())
    }
}

fn borrowed(marks: &[(SyncMark, Vec<u8>)]) -> Vec<(SyncMark, &[u8])> {
    marks.iter().map(|(kind, key)| (*kind, key.as_slice())).collect()
}

fn suspect_key(owner: Owner, path: &Nibbles) -> Result<Vec<u8>, SyncError> {
    Ok(alloy_rlp::encode(TriePath { owner: wire_owner(owner), path: wire_path(path)? }))
}

/// What the marks of an earlier run say it left open.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Marked {
    /// Its heal roots and suspects.
    pub(crate) suspects: Vec<(Owner, Nibbles)>,
    /// Its open storage tries.
    pub(crate) storages: Vec<B256>,
    /// Its codes queued and not written.
    pub(crate) codes: Vec<B256>,
}

impl Marked {
    /// Reads every mark in `db`. The inner error: one does not decode (a damaged file); the
    /// run then trusts nothing the marks would have vouched for.
    pub(crate) fn read<S: KvStore>(db: &LeafDb<S>) -> Result<Result<Self, SyncError>, SyncError> {
        let heal_roots = db.sync_heal_roots()?;
        let suspects = db.sync_marks(SyncMark::Suspect)?;
        let storages = db.sync_marks(SyncMark::OpenStorage)?;
        let codes = db.sync_marks(SyncMark::OpenCode)?;
        Ok((|| {
            let mut marked = Self::default();
            for (key, value) in &heal_roots {
                marked.suspects.push(heal_root_item(&HealRoot::from_entry(key, value)?));
            }
            for key in &suspects {
                let place = TriePath::decode_key(key)?;
                let owner = Option::<B256>::from(place.owner);
                let path = Nibbles::from_nibbles_unchecked(place.path.as_slice());
                marked.suspects.push((owner, path));
            }
            marked.storages = hashes(&storages)?;
            marked.codes = hashes(&codes)?;
            Ok(marked)
        })())
    }
}

fn hashes(keys: &[Vec<u8>]) -> Result<Vec<B256>, SyncError> {
    keys.iter()
        .map(|key| {
            B256::try_from(key.as_slice())
                .map_err(|_| SyncError::ProgressDecode(alloy_rlp::Error::UnexpectedLength))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What one run marks another reads back: heal roots and suspects as suspects, open
    /// storages and codes; a removal staged before a put of the same mark leaves it marked.
    #[test]
    fn marks_written_are_read_back() {
        let db = LeafDb::in_memory();
        let (account, code) = (B256::repeat_byte(1), B256::repeat_byte(2));
        let owner = Some(B256::repeat_byte(3));
        let path = Nibbles::from_nibbles([1, 2]);
        let mut marks = Marks::default();
        marks.open_storage(account);
        marks.open_storage(B256::repeat_byte(9));
        marks.open_code(code);
        marks.suspect(owner, &path).unwrap();
        marks.flush(&db).unwrap();
        marks.storage_closed(B256::repeat_byte(9));
        marks.storage_closed(account);
        marks.open_storage(account);
        marks.flush(&db).unwrap();
        let root = HealRoot {
            owner: wire_owner(None),
            path: wire_path(&Nibbles::from_nibbles([7])).unwrap(),
            hash: B256::ZERO,
        };
        db.put_sync_heal_root(&root.key(), root.hash.as_slice()).unwrap();
        let marked = Marked::read(&db).unwrap().unwrap();
        assert_eq!(
            marked,
            Marked {
                suspects: vec![(None, Nibbles::from_nibbles([7])), (owner, path)],
                storages: vec![account],
                codes: vec![code],
            }
        );
        marks.codes_written(&[code]);
        marks.settled(owner, &[path]).unwrap();
        marks.flush(&db).unwrap();
        let marked = Marked::read(&db).unwrap().unwrap();
        assert!(marked.codes.is_empty() && marked.suspects.len() == 1);
    }

    #[test]
    fn a_mark_that_does_not_decode_is_an_error() {
        let db = LeafDb::in_memory();
        db.mark_sync(&[(SyncMark::OpenCode, &[1, 2, 3])]).unwrap();
        assert!(Marked::read(&db).unwrap().is_err());
        db.clear_sync_marks(&SyncMark::ALL).unwrap();
        db.mark_sync(&[(SyncMark::Suspect, &[0xff])]).unwrap();
        assert!(Marked::read(&db).unwrap().is_err());
    }
}
