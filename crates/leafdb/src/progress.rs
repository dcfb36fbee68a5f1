//! A slot for a state sync's persisted progress in the `meta` table. The leafdb stores the bytes;
//! their (versioned) encoding belongs to the sync layer.

use crate::{
    db::LeafDb,
    error::Result,
    kv::{Durability, KvStore, Table, WriteBatch},
};

/// Meta key of the sync progress record.
pub const SYNC_PROGRESS_KEY: &[u8] = b"sync_progress";

impl<S: KvStore> LeafDb<S> {
    /// The persisted sync progress, if a sync is under way.
    pub fn sync_progress(&self) -> Result<Option<Vec<u8>>> {
        self.store().get(Table::Meta, SYNC_PROGRESS_KEY)
    }

    /// Persists the sync progress (through the log: it survives a killed process).
    pub fn put_sync_progress(&self, record: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put(Table::Meta, SYNC_PROGRESS_KEY, record.to_vec());
        self.store().write(batch, Durability::Logged)
    }

    /// Removes the record (the sync finished).
    pub fn clear_sync_progress(&self) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete(Table::Meta, SYNC_PROGRESS_KEY);
        self.store().write(batch, Durability::Synced)
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
}
