//! Slots for a state sync's persisted progress in the `meta` table: one record, and one entry per
//! thing the sync keeps open beside it ([`SyncMark`]: a subtrie being healed, a storage trie or
//! a code still to come, a subtrie a re-pivot cut short), so that adding or finishing one is one
//! small write however many there are. The leafdb stores the bytes; their (versioned) encoding
//! belongs to the sync layer.

use crate::{
    db::LeafDb,
    error::Result,
    kv::{Durability, KvStore, Table, WriteBatch},
    schema::meta,
};

/// Meta key of the sync progress record.
pub const SYNC_PROGRESS_KEY: &[u8] = b"sync_progress";

/// Meta key prefix of the sync's heal roots, one entry each (`sync_heal/` ‖ the sync's key).
pub const SYNC_HEAL_PREFIX: &[u8] = b"sync_heal/";

/// What a sync keeps open beside its record, one meta entry each under its kind's prefix
/// (followed by the sync's key). Only [`SyncMark::HealRoot`] entries have a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMark {
    /// A subtrie being healed; the value is its hash.
    HealRoot,
    /// A storage trie whose fetch or heal is open (the key: its account's hashed address).
    OpenStorage,
    /// A code queued and not written yet (the key: its hash).
    OpenCode,
    /// A subtrie whose flat entries may be older than it: a heal a re-pivot cut short.
    Suspect,
}

impl SyncMark {
    /// Every kind.
    pub const ALL: [Self; 4] = [Self::HealRoot, Self::OpenStorage, Self::OpenCode, Self::Suspect];

    /// The meta key prefix of this kind's entries; each ends in `/`.
    pub const fn prefix(self) -> &'static [u8] {
        match self {
            Self::HealRoot => SYNC_HEAL_PREFIX,
            Self::OpenStorage => b"sync_open_storage/",
            Self::OpenCode => b"sync_open_code/",
            Self::Suspect => b"sync_suspect/",
        }
    }

    fn key(self, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix().to_vec();
        k.extend_from_slice(key);
        k
    }

    /// Stages the removal of every entry of this kind (`/` + 1 ends the range).
    fn stage_clear(self, batch: &mut WriteBatch) {
        let mut end = self.prefix().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        batch.delete_range(Table::Meta, self.prefix().to_vec(), end);
    }
}

/// Stages the removal of the progress record and every entry kept beside it.
pub(crate) fn stage_clear_progress(batch: &mut WriteBatch) {
    batch.delete(Table::Meta, SYNC_PROGRESS_KEY);
    for kind in SyncMark::ALL {
        kind.stage_clear(batch);
    }
}

impl<S: KvStore> LeafDb<S> {
    /// The persisted sync progress, if a sync is under way.
    pub fn sync_progress(&self) -> Result<Option<Vec<u8>>> {
        self.store().get(Table::Meta, SYNC_PROGRESS_KEY)
    }

    /// Persists the sync progress (through the log: it survives a killed process), and leaves
    /// the stored state without an account root until the sync records its head
    /// ([`Self::record_synced_head`]): the state tables are being rewritten, so under the head
    /// they had (a repair's) they hold no block's state, and a server answers for none. The
    /// write that takes the root away (a run's first) is synced: the tables a sync ingests are
    /// durable at once, and a power cut that lost the log's tail would leave them under the old
    /// root and head, served as that block's state.
    pub fn put_sync_progress(&self, record: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put(Table::Meta, SYNC_PROGRESS_KEY, record.to_vec());
        batch.delete(Table::Meta, meta::ACCOUNT_ROOT);
        let takes_the_root = self.store().get(Table::Meta, meta::ACCOUNT_ROOT)?.is_some();
        let durability = if takes_the_root { Durability::Synced } else { Durability::Logged };
        self.store().write(batch, durability)
    }

    /// Removes the record and every heal root (the sync finished).
    pub fn clear_sync_progress(&self) -> Result<()> {
        let mut batch = WriteBatch::default();
        stage_clear_progress(&mut batch);
        self.store().write(batch, Durability::Synced)
    }

    /// Persists one heal root under `key` (through the log).
    pub fn put_sync_heal_root(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put(Table::Meta, SyncMark::HealRoot.key(key), value.to_vec());
        self.store().write(batch, Durability::Logged)
    }

    /// Removes the heal root under `key` (its subtrie is complete).
    pub fn delete_sync_heal_root(&self, key: &[u8]) -> Result<()> {
        self.unmark_sync(&[(SyncMark::HealRoot, key)])
    }

    /// Removes every heal root (the sync moved to another pivot).
    pub fn clear_sync_heal_roots(&self) -> Result<()> {
        self.clear_sync_marks(&[SyncMark::HealRoot])
    }

    /// Every persisted heal root as `(key, value)`, in key order.
    pub fn sync_heal_roots(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.sync_entries(SyncMark::HealRoot)
    }

    /// Persists `marks` (kind and key; no value) in one write through the log; nothing is
    /// written for none.
    pub fn mark_sync(&self, marks: &[(SyncMark, &[u8])]) -> Result<()> {
        self.write_marks(marks, |batch, key| batch.put(Table::Meta, key, Vec::new()))
    }

    /// Removes `marks` in one write through the log; nothing is written for none.
    pub fn unmark_sync(&self, marks: &[(SyncMark, &[u8])]) -> Result<()> {
        self.write_marks(marks, |batch, key| batch.delete(Table::Meta, key))
    }

    fn write_marks(
        &self,
        marks: &[(SyncMark, &[u8])],
        stage: impl Fn(&mut WriteBatch, Vec<u8>),
    ) -> Result<()> {
        if marks.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (kind, key) in marks {
            stage(&mut batch, kind.key(key));
        }
        self.store().write(batch, Durability::Logged)
    }

    /// Removes every entry of the `kinds`.
    pub fn clear_sync_marks(&self, kinds: &[SyncMark]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for kind in kinds {
            kind.stage_clear(&mut batch);
        }
        self.store().write(batch, Durability::Logged)
    }

    /// The keys of every persisted mark of `kind`, in key order.
    pub fn sync_marks(&self, kind: SyncMark) -> Result<Vec<Vec<u8>>> {
        Ok(self.sync_entries(kind)?.into_iter().map(|(key, _)| key).collect())
    }

    fn sync_entries(&self, kind: SyncMark) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.store().iter_from(Table::Meta, kind.prefix()) {
            let (k, v) = item?;
            let Some(key) = k.strip_prefix(kind.prefix()) else { break };
            out.push((key.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_clear() {
        let db = LeafDb::in_memory();
        assert_eq!(db.sync_progress().unwrap(), None);
        db.put_sync_progress(b"abc").unwrap();
        assert_eq!(db.sync_progress().unwrap().as_deref(), Some(&b"abc"[..]));
        db.clear_sync_progress().unwrap();
        assert_eq!(db.sync_progress().unwrap(), None);
    }

    /// The record that takes a state's root away is synced (a power cut must not leave the
    /// tables a sync then ingests under the old root); the run's later records go through the
    /// log only.
    #[test]
    fn the_record_that_takes_the_root_away_is_synced() {
        use crate::{LeafDbConfig, generate::GenParams, kv::KvRead, test_utils::HookStore};
        let db = LeafDb::with_store(HookStore::new(), LeafDbConfig::default()).unwrap();
        db.generate(GenParams { accounts: 20, seed: 1 }).unwrap();
        assert!(db.store().get(Table::Meta, meta::ACCOUNT_ROOT).unwrap().is_some());
        let before = db.store().durabilities().len();
        db.put_sync_progress(b"first").unwrap();
        db.put_sync_progress(b"second").unwrap();
        let written = db.store().durabilities().split_off(before);
        assert_eq!(written, [Durability::Synced, Durability::Logged]);
    }

    #[test]
    fn heal_roots_are_entries_of_their_own() {
        let db = LeafDb::in_memory();
        db.put_sync_progress(b"record").unwrap();
        db.put_sync_heal_root(b"b", b"2").unwrap();
        db.put_sync_heal_root(b"a", b"1").unwrap();
        db.put_sync_heal_root(b"c", b"3").unwrap();
        db.delete_sync_heal_root(b"b").unwrap();
        let roots = db.sync_heal_roots().unwrap();
        assert_eq!(roots, vec![(b"a".to_vec(), b"1".to_vec()), (b"c".to_vec(), b"3".to_vec())]);
        db.clear_sync_heal_roots().unwrap();
        assert!(db.sync_heal_roots().unwrap().is_empty());
        assert_eq!(db.sync_progress().unwrap().as_deref(), Some(&b"record"[..]), "record kept");
        db.put_sync_heal_root(b"d", b"4").unwrap();
        db.clear_sync_progress().unwrap();
        assert!(db.sync_heal_roots().unwrap().is_empty() && db.sync_progress().unwrap().is_none());
    }

    /// Marks of each kind are kept apart, removed one by one or by kind, and cleared with the
    /// record; an empty list writes nothing.
    #[test]
    fn marks_are_kept_by_kind_until_removed_or_the_record_goes() {
        let db = LeafDb::in_memory();
        db.put_sync_progress(b"record").unwrap();
        db.mark_sync(&[(SyncMark::OpenStorage, b"s1"), (SyncMark::OpenCode, b"c1")]).unwrap();
        db.mark_sync(&[(SyncMark::OpenStorage, b"s0"), (SyncMark::Suspect, b"p")]).unwrap();
        db.put_sync_heal_root(b"h", b"hash").unwrap();
        assert_eq!(db.sync_marks(SyncMark::OpenStorage).unwrap(), [b"s0".to_vec(), b"s1".to_vec()]);
        assert_eq!(db.sync_marks(SyncMark::OpenCode).unwrap(), [b"c1".to_vec()]);
        assert_eq!(db.sync_marks(SyncMark::HealRoot).unwrap(), [b"h".to_vec()]);
        db.unmark_sync(&[(SyncMark::OpenStorage, b"s0"), (SyncMark::OpenCode, b"none")]).unwrap();
        assert_eq!(db.sync_marks(SyncMark::OpenStorage).unwrap(), [b"s1".to_vec()]);
        db.clear_sync_marks(&[SyncMark::OpenCode]).unwrap();
        assert!(db.sync_marks(SyncMark::OpenCode).unwrap().is_empty());
        assert_eq!(db.sync_marks(SyncMark::Suspect).unwrap(), [b"p".to_vec()], "other kinds kept");
        db.mark_sync(&[]).unwrap();
        db.clear_sync_progress().unwrap();
        for kind in SyncMark::ALL {
            assert!(db.sync_marks(kind).unwrap().is_empty(), "{kind:?} cleared with the record");
        }
    }

    /// A sync over a leafdb with a head (a repair) leaves it without an account root while it
    /// rewrites the state, so the old head names no state; recording the synced head gives the
    /// root back, clears the record and heal roots in the same write, and counts as a revert.
    #[test]
    fn a_sync_over_a_head_has_no_root_until_its_head_is_recorded() {
        let db = LeafDb::in_memory();
        db.generate(crate::GenParams { accounts: 20, seed: 4 }).unwrap();
        let head = db.head().unwrap().unwrap();
        assert_eq!(db.account_root().unwrap(), head.state_root);
        db.put_sync_progress(b"record").unwrap();
        db.put_sync_heal_root(b"a", b"1").unwrap();
        assert_ne!(db.account_root().unwrap(), head.state_root, "no root while syncing");
        let reverts = db.reverts();
        assert_eq!(db.record_synced_head(head).unwrap(), head.state_root);
        assert_eq!(db.account_root().unwrap(), head.state_root);
        assert_eq!(db.sync_progress().unwrap(), None);
        assert!(db.sync_heal_roots().unwrap().is_empty());
        assert_eq!(db.reverts(), reverts + 1, "reads from before are not kept past it");
    }
}
