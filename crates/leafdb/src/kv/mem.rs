//! An in-memory store with the same semantics as the RocksDB one, for tests.

use std::{
    collections::BTreeMap,
    ops::Bound,
    sync::{Arc, RwLock},
};

use super::{
    BatchOp, Durability, KvIter, KvPair, KvRead, KvStore, SortedWriter, Table, WriteBatch,
};
use crate::error::{LeafDbError, Result};

/// One table's pairs, shared copy-on-write: a snapshot or an iterator holds the version it was
/// taken from, and a write while one is held copies the table first.
type Pairs = Arc<BTreeMap<Vec<u8>, Vec<u8>>>;
type Tables = BTreeMap<Table, Pairs>;

/// Tables in ordered maps behind a lock. Snapshots and iterators share the tables until a
/// write changes one (then that table is copied), so they cost nothing to take, but a write
/// while one is alive copies its table: keep test states small.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    tables: Arc<RwLock<Tables>>,
}

/// The tables of a [`MemStore`] as they were at one moment.
#[derive(Debug)]
pub struct MemSnapshot(Tables);

fn read_table(tables: &Tables, table: Table, key: &[u8]) -> Option<Vec<u8>> {
    tables.get(&table).and_then(|t| t.get(key)).cloned()
}

/// Iterates one version of a table from a key on, as a RocksDB iterator sees its implicit
/// snapshot: writes made after it was taken are not seen.
struct Scan {
    pairs: Option<Pairs>,
    from: Bound<Vec<u8>>,
}

impl Iterator for Scan {
    type Item = Result<KvPair>;

    fn next(&mut self) -> Option<Self::Item> {
        let pairs = self.pairs.as_ref()?;
        let from = std::mem::replace(&mut self.from, Bound::Unbounded);
        let Some((k, v)) = pairs.range((from, Bound::Unbounded)).next() else {
            self.pairs = None;
            return None;
        };
        self.from = Bound::Excluded(k.clone());
        Some(Ok((k.clone().into_boxed_slice(), v.clone().into_boxed_slice())))
    }
}

fn scan(tables: &Tables, table: Table, start: &[u8]) -> Scan {
    Scan { pairs: tables.get(&table).cloned(), from: Bound::Included(start.to_vec()) }
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl KvRead for MemStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(read_table(&self.read(), table, key))
    }

    fn iter_from<'a>(&'a self, table: Table, start: &[u8]) -> KvIter<'a> {
        Box::new(scan(&self.read(), table, start))
    }
}

impl KvRead for MemSnapshot {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(read_table(&self.0, table, key))
    }

    fn iter_from<'a>(&'a self, table: Table, start: &[u8]) -> KvIter<'a> {
        Box::new(scan(&self.0, table, start))
    }
}

impl KvStore for MemStore {
    type Snapshot<'a> = MemSnapshot;

    fn write(&self, batch: WriteBatch, _durability: Durability) -> Result<()> {
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        for op in batch.ops {
            match op {
                BatchOp::Put(t, k, v) => {
                    Arc::make_mut(tables.entry(t).or_default()).insert(k, v);
                }
                BatchOp::Delete(t, k) => {
                    Arc::make_mut(tables.entry(t).or_default()).remove(&k);
                }
                BatchOp::DeleteRange(t, start, end) => {
                    let table = Arc::make_mut(tables.entry(t).or_default());
                    let doomed: Vec<_> = table.range(start..end).map(|(k, _)| k.clone()).collect();
                    for k in doomed {
                        table.remove(&k);
                    }
                }
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Self::Snapshot<'_> {
        MemSnapshot(self.read().clone())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn sorted_writer(&self, table: Table) -> Result<Box<dyn SortedWriter + '_>> {
        Ok(Box::new(MemSortedWriter {
            store: self,
            table,
            batch: WriteBatch::default(),
            last: None,
        }))
    }
}

/// Collects sorted keys and writes them when finished; refuses keys out of order, as RocksDB's
/// table files do.
struct MemSortedWriter<'a> {
    store: &'a MemStore,
    table: Table,
    batch: WriteBatch,
    last: Option<Vec<u8>>,
}

impl SortedWriter for MemSortedWriter<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.last.as_deref().is_some_and(|last| last >= key) {
            return Err(LeafDbError::UnsortedInput { key: alloy_primitives::hex::encode(key) });
        }
        self.last = Some(key.to_vec());
        self.batch.put(self.table, key.to_vec(), value.to_vec());
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        self.store.write(self.batch, Durability::Logged)?;
        Ok(0)
    }
}
