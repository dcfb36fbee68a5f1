//! The RocksDB store: one column family per [`Table`], tuned by [`DbOptions`].

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicU64},
};

use rocksdb::{
    Cache, ColumnFamilyDescriptor, DB, DBRawIteratorWithThreadMode, Direction, FlushOptions,
    IteratorMode, Options, ReadOptions, SnapshotWithThreadMode, WriteOptions,
};

use super::{
    BatchOp, Cursor, Durability, KvIter, KvPair, KvRead, KvStore, Reading, SortedWriter, Table,
    WriteBatch,
};
use crate::error::{LeafDbError, Result};

/// Default shared block cache: 256 MiB, which leaves room beside an execution client on a
/// 16 GiB machine and holds the whole index and filter data and the hot data blocks of the
/// benchmarked states (up to 8M accounts). At mainnet (~270M accounts, ~1.1B slots) it does not:
/// the tables' index and filter data alone is ~1.1 GB (estimated from the layout, not measured),
/// so the cache holds the top-level index of every table file (pinned), the most used index
/// and filter partitions and few data blocks; the account trie's top levels are kept apart, in
/// the leafdb's own top-node cache. docs/operators.md ("Provisioning for mainnet") recommends a
/// larger `leafdb.block_cache_mib` there.
pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 256 << 20;
/// Size of a partition of a table file's index and of its filter: 4 KiB. Partitioned, only a
/// small top-level index per file stays in memory (pinned) and the partitions a read needs come
/// through the block cache like data blocks; a whole index and filter per file (~1.1 GB over a
/// mainnet state's files) would otherwise compete with the data blocks for the cache. 4 KiB is
/// RocksDB's default for partitions: one disk page read per partition missed.
pub const METADATA_BLOCK_SIZE: usize = 4 << 10;
/// Default memtable size per column family: 64 MiB (RocksDB's own default), big enough that a
/// block's batch (a few MiB) never triggers a flush by itself.
pub const DEFAULT_WRITE_BUFFER_BYTES: usize = 64 << 20;
/// Default bloom filter bits per key on point-lookup tables (nodes, code): 10 bits
/// gives ~1% false positives, so a miss on a node path rarely costs a disk read.
pub const DEFAULT_BLOOM_BITS: f64 = 10.0;
/// Share of a point-read table's memtable given to a bloom filter of its keys: 10% (6.4 MiB of
/// a 64 MiB memtable), on the node tables and the flat accounts. Every leaf a trie walk loads is
/// first looked for in the node table, where leaves are never stored, so most node reads miss
/// the memtable; without the filter each miss searches the skiplist. In a node's steady state
/// (memtables full) the filter took ~20 ms off a mainnet-sized block's median at 1M accounts
/// (docs/benchmarks.md, "goal 8 in a node's steady state"). A block reads the old records of
/// its ~2,000 accounts, most of them last written long before the memtable's blocks: the filter
/// took ~3 ms of CPU off that read ("goal 8: the flat accounts' memtable filter").
pub const MEMTABLE_BLOOM_RATIO: f64 = 0.1;
/// Default limit on open table files: 1024. RocksDB's "unlimited" (-1) can exhaust a sidecar's
/// file descriptors next to an execution client. 1024 is also the usual soft `ulimit -n`, so it
/// suits short-lived tools only: the daemon raises its soft limit to the hard one at start and
/// sets this from what it got, less a reserve for sockets (see `leafsync run`).
pub const DEFAULT_MAX_OPEN_FILES: i32 = 1024;
/// Default block size: 16 KiB (RocksDB's is 4 KiB). Chunk serving scans long key ranges, where
/// larger blocks halve index size and read overhead; point lookups cost little more.
pub const DEFAULT_BLOCK_SIZE: usize = 16 << 10;
/// Read-ahead of a whole-table scan ([`Reading::Scan`]): 8 MiB. A synced leafdb holds
/// thousands of small table files, mostly not in the page cache (RocksDB's `SstFileWriter` drops
/// the pages of the files it writes), and RocksDB's own read-ahead starts at 8 KiB in each file
/// and doubles from there; at ~0.2 ms a disk read, a scan spent most of its time waiting.
pub const SCAN_READAHEAD_BYTES: usize = 8 << 20;
/// Largest size of RocksDB's own log file (`<leafdb>/LOG`) before it rolls: 16 MiB.
pub const ROCKSDB_LOG_FILE_BYTES: usize = 16 << 20;
/// Rolled RocksDB log files kept (`LOG.old.*`): with the live one, at most ~80 MiB in all.
pub const ROCKSDB_LOG_FILES_KEPT: usize = 4;

/// Read options of a whole-table scan: large read-ahead, and the blocks read do not push the
/// hot trie nodes and accounts out of the block cache.
fn scan_options() -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.set_readahead_size(SCAN_READAHEAD_BYTES);
    opts.fill_cache(false);
    opts
}

/// Read options of a range read as `reading` says ([`KvRead::range_from`]).
fn range_options(reading: Reading) -> ReadOptions {
    match reading {
        Reading::Scan => scan_options(),
        Reading::Serve => serve_options(),
    }
}

/// Read options of a range served to a peer ([`Reading::Serve`]): the blocks read do not
/// push the hot trie nodes and accounts out of the block cache (each served chunk reads up to
/// 2 MiB that the next block's application does not need). RocksDB's own read-ahead, which
/// grows within a file from 8 KiB, suits these short ranges better than a scan's 8 MiB.
fn serve_options() -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.fill_cache(false);
    opts
}

/// Size at which a bulk-import SST file is closed and the next one started: 64 MiB, the size
/// flushes and compactions produce. Each file's filter and index blocks live in the block cache;
/// with 256 MiB files they were large enough to churn it, and block application on a
/// 1M-account state slowed from ~40 ms to ~650 ms in its storage phase (measured).
pub const SST_FILE_BYTES: u64 = 64 << 20;

/// Levels of each table's LSM tree: RocksDB's default, which [`DbOptions`] keeps.
const LEVELS: usize = 7;

/// The RocksDB-backed store.
pub struct RocksStore {
    db: DB,
    /// Each table's options, for SST files that must match the column family.
    cf_options: Vec<(Table, Options)>,
    /// Where SST files are written before ingestion (bulk imports, sync chunks).
    bulk_dir: PathBuf,
    /// Names the next SST file: writers may overlap (a chunk's tables, several imports).
    next_file: AtomicU64,
    /// SST files are written past the page cache ([`DbOptions::direct_writes`]; cleared when
    /// the filesystem refuses, see [`sst`]).
    direct_writes: AtomicBool,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("path", &self.db.path()).finish()
    }
}

impl RocksStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path, options: &DbOptions) -> Result<Self> {
        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let cfs = Table::ALL
            .iter()
            .map(|t| ColumnFamilyDescriptor::new(t.name(), options.cf_options(*t, &cache)));
        let db = DB::open_cf_descriptors(&options.db_options(), path, cfs).map_err(|e| {
            if is_lock_error(&e) {
                LeafDbError::InUse { path: path.to_path_buf() }
            } else {
                LeafDbError::rocksdb(path, e)
            }
        })?;
        let cf_options = Table::ALL.iter().map(|t| (*t, options.cf_options(*t, &cache))).collect();
        let bulk_dir = path.join("bulk_import");
        remove_unfinished(&bulk_dir)?;
        let direct_writes = AtomicBool::new(options.direct_writes);
        Ok(Self { db, cf_options, bulk_dir, next_file: AtomicU64::new(0), direct_writes })
    }

    /// Writes a consistent copy of the database to the new directory `path` (hard links to the
    /// immutable SST files where the file system allows, so a copy of a large state is cheap);
    /// the copy opens as a database of its own.
    pub fn checkpoint(&self, path: &Path) -> Result<()> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(path))
            .map_err(self.storage())
    }

    /// How many table files each level of `table` holds, level 0 first: where ingested files
    /// went (a file that overlaps no other goes to the bottom level, and needs no compaction).
    pub fn files_per_level(&self, table: Table) -> Result<Vec<u64>> {
        let cf = self.cf(table)?;
        (0..LEVELS)
            .map(|level| {
                let name = format!("rocksdb.num-files-at-level{level}");
                let files =
                    self.db.property_int_value_cf(cf, name.as_str()).map_err(self.storage())?;
                Ok(files.unwrap_or(0))
            })
            .collect()
    }

    /// Whether RocksDB has a flush or a compaction running or waiting in any table: the work a
    /// block's write leaves behind, which a node following a chain does between its blocks.
    ///
    /// The properties are read one at a time, so the order matters. A job counts as running
    /// before it takes its work off the pending list, and it installs the work it makes due
    /// (a compaction after a flush) before it stops counting: reading what is pending, then
    /// what runs, then what is pending again sees every job in one of the three reads. Read
    /// running first, a compaction that started between the reads was in none (1 test run
    /// in 8 said "idle" with four level-0 files due).
    pub fn background_busy(&self) -> Result<bool> {
        Ok(self.background_pending()? || self.background_running()? || self.background_pending()?)
    }

    /// Whether a table has a flush or a compaction due that no job has taken yet.
    fn background_pending(&self) -> Result<bool> {
        for table in Table::ALL {
            let cf = self.cf(table)?;
            for name in ["rocksdb.mem-table-flush-pending", "rocksdb.compaction-pending"] {
                if self.db.property_int_value_cf(cf, name).map_err(self.storage())?.unwrap_or(0) > 0
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Whether a flush or a compaction job is running.
    fn background_running(&self) -> Result<bool> {
        for name in ["rocksdb.num-running-flushes", "rocksdb.num-running-compactions"] {
            if self.db.property_int_value(name).map_err(self.storage())?.unwrap_or(0) > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `batch` in RocksDB's form, its buffer sized up front. Grown from empty, a block's batch
    /// (~4 MB at 1M accounts) was copied at each doubling into freshly faulted pages: building
    /// it took 20 ms a block under `perf`, 12 ms sized.
    fn rocks_batch(&self, batch: WriteBatch) -> Result<rocksdb::WriteBatch> {
        let mut wb = rocksdb::WriteBatch::with_capacity_bytes(batch.encoded_len_estimate());
        for op in batch.ops {
            match op {
                BatchOp::Put(t, k, v) => wb.put_cf(self.cf(t)?, k, v),
                BatchOp::Delete(t, k) => wb.delete_cf(self.cf(t)?, k),
                BatchOp::DeleteRange(t, s, e) => wb.delete_range_cf(self.cf(t)?, s, e),
            }
        }
        Ok(wb)
    }

    /// Turns RocksDB's errors into the leafdb's, naming this database when it is damaged.
    fn storage(&self) -> impl Fn(rocksdb::Error) -> LeafDbError + '_ {
        |e| LeafDbError::rocksdb(self.db.path(), e)
    }

    fn cf(&self, table: Table) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(table.name()).ok_or_else(|| {
            LeafDbError::corrupt(table.name(), "column family", "missing after open")
        })
    }
}

/// Removes SST files a killed process wrote but never ingested: nothing refers to them (an
/// ingested file is moved into the database), and a sync or import started again writes its
/// own.
fn remove_unfinished(dir: &Path) -> Result<()> {
    let io = |source| LeafDbError::Io { context: format!("clearing {}", dir.display()), source };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|x| x == "sst") {
            std::fs::remove_file(&path).map_err(io)?;
        }
    }
    Ok(())
}

/// Whether RocksDB could not take the database's `LOCK` file: another process holds it ("While
/// lock file: …"), or this one does ("lock hold by current process …").
fn is_lock_error(e: &rocksdb::Error) -> bool {
    let message = e.as_ref();
    e.kind() == rocksdb::ErrorKind::IOError
        && (message.contains("While lock file") || message.contains("lock hold by current process"))
}

/// The pairs of `it`, an iterator over the database at `path`, with the leafdb's errors.
fn boxed_iter<'a, I>(path: &'a Path, it: I) -> KvIter<'a>
where
    I: Iterator<Item = std::result::Result<KvPair, rocksdb::Error>> + Send + 'a,
{
    Box::new(it.map(move |r| r.map_err(|e| LeafDbError::rocksdb(path, e))))
}

/// A [`Cursor`] over RocksDB's raw iterator, which lends its pairs.
struct RocksCursor<'a> {
    iter: DBRawIteratorWithThreadMode<'a, DB>,
    /// The database directory, named by a corruption error.
    path: &'a Path,
}

impl RocksCursor<'_> {
    /// Where the iterator stands: an error if it stopped on one.
    fn status(&self) -> Result<()> {
        self.iter.status().map_err(|e| LeafDbError::rocksdb(self.path, e))
    }
}

impl Cursor for RocksCursor<'_> {
    fn current(&self) -> Option<(&[u8], &[u8])> {
        self.iter.item()
    }

    fn next(&mut self) -> Result<()> {
        if self.iter.valid() {
            self.iter.next();
        }
        self.status()
    }

    fn skip_to(&mut self, key: &[u8]) -> Result<()> {
        if self.iter.key().is_some_and(|k| k < key) {
            self.iter.seek(key);
        }
        self.status()
    }
}

impl RocksStore {
    /// A [`Cursor`] over `table` from `start` under `opts` (which may name a snapshot).
    fn cursor_with<'a>(
        &'a self,
        table: Table,
        start: &[u8],
        opts: ReadOptions,
    ) -> Result<Box<dyn Cursor + 'a>> {
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(table)?, opts);
        iter.seek(start);
        let cursor = RocksCursor { iter, path: self.db.path() };
        cursor.status()?;
        Ok(Box::new(cursor))
    }

    /// Forward iteration over `table` from `start` under `opts` (which may name a snapshot);
    /// an unknown table is one error item.
    fn iter_with<'a>(&'a self, table: Table, start: &[u8], opts: ReadOptions) -> KvIter<'a> {
        let mode = IteratorMode::From(start, Direction::Forward);
        match self.cf(table) {
            Ok(cf) => boxed_iter(self.db.path(), self.db.iterator_cf_opt(cf, opts, mode)),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }
}

impl KvRead for RocksStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(table)?, key).map_err(self.storage())
    }

    fn multi_get(&self, table: Table, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let cf = self.cf(table)?;
        self.db
            .batched_multi_get_cf(cf, keys.iter().copied(), true)
            .into_iter()
            .map(|r| Ok(r.map_err(self.storage())?.map(|v| v.to_vec())))
            .collect()
    }

    fn iter_from<'a>(&'a self, table: Table, start: &[u8]) -> KvIter<'a> {
        self.iter_with(table, start, ReadOptions::default())
    }

    fn range_from<'a>(&'a self, table: Table, start: &[u8], reading: Reading) -> KvIter<'a> {
        self.iter_with(table, start, range_options(reading))
    }

    fn cursor<'a>(&'a self, table: Table, start: &[u8]) -> Result<Box<dyn Cursor + 'a>> {
        self.cursor_with(table, start, ReadOptions::default())
    }

    fn range_cursor<'a>(
        &'a self,
        table: Table,
        start: &[u8],
        reading: Reading,
    ) -> Result<Box<dyn Cursor + 'a>> {
        self.cursor_with(table, start, range_options(reading))
    }
}

/// A RocksDB snapshot: reads see the database as it was when it was taken.
pub struct RocksSnapshot<'a> {
    store: &'a RocksStore,
    snap: SnapshotWithThreadMode<'a, DB>,
}

impl std::fmt::Debug for RocksSnapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksSnapshot").finish_non_exhaustive()
    }
}

impl RocksSnapshot<'_> {
    /// `opts` reading this snapshot (the iterators made with them borrow `self`, so the
    /// snapshot outlives them).
    fn read_options(&self, mut opts: ReadOptions) -> ReadOptions {
        opts.set_snapshot(&self.snap);
        opts
    }
}

impl KvRead for RocksSnapshot<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.snap.get_cf(self.store.cf(table)?, key).map_err(self.store.storage())
    }

    fn iter_from<'a>(&'a self, table: Table, start: &[u8]) -> KvIter<'a> {
        self.store.iter_with(table, start, self.read_options(ReadOptions::default()))
    }

    fn range_from<'a>(&'a self, table: Table, start: &[u8], reading: Reading) -> KvIter<'a> {
        self.store.iter_with(table, start, self.read_options(range_options(reading)))
    }

    fn cursor<'a>(&'a self, table: Table, start: &[u8]) -> Result<Box<dyn Cursor + 'a>> {
        self.store.cursor_with(table, start, self.read_options(ReadOptions::default()))
    }

    fn range_cursor<'a>(
        &'a self,
        table: Table,
        start: &[u8],
        reading: Reading,
    ) -> Result<Box<dyn Cursor + 'a>> {
        self.store.cursor_with(table, start, self.read_options(range_options(reading)))
    }
}

impl KvStore for RocksStore {
    type Snapshot<'a> = RocksSnapshot<'a>;

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        let wb = self.rocks_batch(batch)?;
        let mut opts = WriteOptions::default();
        match durability {
            Durability::Logged => {}
            Durability::Synced => opts.set_sync(true),
            Durability::Unlogged => opts.disable_wal(true),
        }
        self.db.write_opt(wb, &opts).map_err(self.storage())
    }

    fn snapshot(&self) -> Self::Snapshot<'_> {
        RocksSnapshot { store: self, snap: self.db.snapshot() }
    }

    fn flush(&self) -> Result<()> {
        // One atomic flush of every table, waited for.
        let cfs = Table::ALL.iter().map(|t| self.cf(*t)).collect::<Result<Vec<_>>>()?;
        self.db.flush_cfs_opt(&cfs, &FlushOptions::default()).map_err(self.storage())
    }

    fn sorted_writer(&self, table: Table) -> Result<Box<dyn SortedWriter + '_>> {
        let opts = self
            .cf_options
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, o)| o)
            .ok_or_else(|| LeafDbError::corrupt(table.name(), "column family", "no options"))?;
        std::fs::create_dir_all(&self.bulk_dir).map_err(|source| LeafDbError::Io {
            context: format!("creating {}", self.bulk_dir.display()),
            source,
        })?;
        let writer = sst::RocksSortedWriter::new(self, table, opts);
        Ok(Box::new(Located { writer, path: self.db.path() }))
    }
}

/// A [`SortedWriter`] whose errors name the leafdb at `path` when it is damaged: an ingestion
/// fails with the corruption a background compaction met ([`LeafDbError::located`]).
struct Located<'a> {
    writer: sst::RocksSortedWriter<'a>,
    path: &'a Path,
}

impl SortedWriter for Located<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.writer.put(key, value).map_err(|e| e.located(self.path))
    }

    fn cut(&mut self) -> Result<()> {
        self.writer.cut().map_err(|e| e.located(self.path))
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        let Self { writer, path } = *self;
        Box::new(writer).finish().map_err(|e| e.located(path))
    }
}

mod options;
mod sst;

pub use options::DbOptions;
#[cfg(test)]
mod tests;
