//! Tables and the small key-value interface the leafdb is written against, with a RocksDB
//! implementation ([`rocks::RocksStore`]) and an in-memory one ([`mem::MemStore`]) for tests.

pub mod mem;
pub mod rocks;

use crate::error::Result;

/// The leafdb's tables. Every key layout keeps key order equal to trie order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// hashed address (32) → RLP `[nonce, balance, storage root, code hash]`.
    Accounts,
    /// hashed address (32) ‖ hashed slot (32) → value, big-endian without leading zeros.
    Storage,
    /// code hash (32) → bytecode.
    Code,
    /// path (one byte per nibble) → node RLP, for the account trie.
    AccountNodes,
    /// hashed address (32) ‖ path (one byte per nibble) → node RLP, for storage tries.
    StorageNodes,
    /// fixed names → schema version, head, account root, counters.
    Meta,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Self; 6] = [
        Self::Accounts,
        Self::Storage,
        Self::Code,
        Self::AccountNodes,
        Self::StorageNodes,
        Self::Meta,
    ];

    /// The column family name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Accounts => "accounts",
            Self::Storage => "storage",
            Self::Code => "code",
            Self::AccountNodes => "account_nodes",
            Self::StorageNodes => "storage_nodes",
            Self::Meta => "meta",
        }
    }
}

/// One write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Set a key.
    Put(Table, Vec<u8>, Vec<u8>),
    /// Remove a key.
    Delete(Table, Vec<u8>),
    /// Remove every key in `[start, end)`.
    DeleteRange(Table, Vec<u8>, Vec<u8>),
}

/// Writes applied atomically and in order.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
    bytes: usize,
}

impl WriteBatch {
    /// Sets `key` in `table`.
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (key, value) = (key.into(), value.into());
        self.bytes += key.len() + value.len();
        self.ops.push(BatchOp::Put(table, key, value));
    }

    /// Removes `key` from `table`.
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.bytes += key.len();
        self.ops.push(BatchOp::Delete(table, key));
    }

    /// Removes every key in `[start, end)` of `table`.
    pub fn delete_range(&mut self, table: Table, start: Vec<u8>, end: Vec<u8>) {
        self.bytes += start.len() + end.len();
        self.ops.push(BatchOp::DeleteRange(table, start, end));
    }

    /// Moves the operations of `other` to the end of this batch.
    pub fn append(&mut self, other: Self) {
        self.bytes += other.bytes;
        self.ops.extend(other.ops);
    }

    /// Approximate payload size in bytes.
    pub const fn size_bytes(&self) -> usize {
        self.bytes
    }

    /// About the size of the batch in RocksDB's encoding: the payload, and per operation a tag,
    /// a column family and length prefixes; for sizing a store's own batch up front.
    pub fn encoded_len_estimate(&self) -> usize {
        /// Batch header: sequence number and count.
        const HEADER: usize = 12;
        /// Tag, column family id and two varint lengths, at most.
        const PER_OP: usize = 1 + 5 + 2 * 5;
        HEADER + self.bytes + PER_OP * self.ops.len()
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations in order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }
}

/// How durable a write must be when [`KvStore::write`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Through the write-ahead log: survives a killed process (not a power cut).
    Logged,
    /// Through the write-ahead log and fsync: survives a power cut.
    Synced,
    /// Without the log: only for bulk loads that mark themselves incomplete until a
    /// [`KvStore::flush`].
    Unlogged,
}

/// A key-value pair read from a table.
pub type KvPair = (Box<[u8]>, Box<[u8]>);

/// An ordered scan of a table's pairs ([`KvRead::iter_from`], [`KvRead::range_from`]).
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<KvPair>> + Send + 'a>;

/// What a range is read for ([`KvRead::range_from`]), which decides how a store reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// A scan through a whole table (a check or a verify, millions of rows): read ahead in
    /// large steps, kept out of the caches.
    Scan,
    /// A range served to a peer (a `leaf/1` chunk, a snap/1 range, up to a few MiB): read once
    /// for whoever asked, kept out of the caches.
    Serve,
}

/// Reading tables: point reads and ordered scans.
pub trait KvRead {
    /// The value of `key`.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// The values of `keys` (given in increasing order), in the same order. Stores that can
    /// batch point reads override this.
    fn multi_get(&self, table: Table, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(table, k)).collect()
    }
    /// Pairs with keys `>= start`, in key order.
    fn iter_from<'a>(&'a self, table: Table, start: &[u8]) -> KvIter<'a>;
    /// [`Self::iter_from`] as a [`Cursor`], which lends each pair instead of allocating it and
    /// can skip ahead: for reads of many short runs in key order (a chunk's storages).
    fn cursor<'a>(&'a self, table: Table, start: &[u8]) -> Result<Box<dyn Cursor + 'a>> {
        Ok(Box::new(IterCursor::new(self.iter_from(table, start))?))
    }
    /// [`Self::iter_from`] for a range read as `reading` says: a store may read it ahead and
    /// keep what it reads out of its caches, which hold what point reads and short ranges read
    /// again and again (the trie nodes and accounts of block application).
    fn range_from<'a>(&'a self, table: Table, start: &[u8], reading: Reading) -> KvIter<'a> {
        let _ = reading;
        self.iter_from(table, start)
    }
    /// [`Self::range_from`] as a [`Cursor`]: the flat checks' scans, a served chunk's storages.
    fn range_cursor<'a>(
        &'a self,
        table: Table,
        start: &[u8],
        reading: Reading,
    ) -> Result<Box<dyn Cursor + 'a>> {
        Ok(Box::new(IterCursor::new(self.range_from(table, start, reading))?))
    }
}

/// A forward scan of one table that lends the pair it is on ([`KvRead::range_cursor`]).
pub trait Cursor: Send {
    /// The pair the cursor is on; `None` past the last.
    fn current(&self) -> Option<(&[u8], &[u8])>;
    /// Moves to the next pair.
    fn next(&mut self) -> Result<()>;
    /// Moves to the first pair whose key is `>= key`, if the cursor is before it (never back).
    fn skip_to(&mut self, key: &[u8]) -> Result<()>;
}

/// A [`Cursor`] over an iterator of owned pairs: the default for stores without a lending one.
struct IterCursor<'a> {
    iter: KvIter<'a>,
    current: Option<KvPair>,
}

impl<'a> IterCursor<'a> {
    fn new(mut iter: KvIter<'a>) -> Result<Self> {
        let current = iter.next().transpose()?;
        Ok(Self { iter, current })
    }
}

impl Cursor for IterCursor<'_> {
    fn current(&self) -> Option<(&[u8], &[u8])> {
        self.current.as_ref().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    fn next(&mut self) -> Result<()> {
        self.current = self.iter.next().transpose()?;
        Ok(())
    }

    fn skip_to(&mut self, key: &[u8]) -> Result<()> {
        while self.current.as_ref().is_some_and(|(k, _)| k.as_ref() < key) {
            self.next()?;
        }
        Ok(())
    }
}

/// Pairs of `table` with keys in `[start, end)`, in key order.
pub fn scan_range<'a, R: KvRead + ?Sized>(
    kv: &'a R,
    table: Table,
    (start, end): (Vec<u8>, Vec<u8>),
) -> impl Iterator<Item = Result<KvPair>> + 'a {
    before(kv.iter_from(table, &start), end)
}

/// [`scan_range`] for a range served to a peer ([`Reading::Serve`]).
pub fn serve_range<'a, R: KvRead + ?Sized>(
    kv: &'a R,
    table: Table,
    (start, end): (Vec<u8>, Vec<u8>),
) -> impl Iterator<Item = Result<KvPair>> + 'a {
    before(kv.range_from(table, &start, Reading::Serve), end)
}

/// The pairs of `iter` (in key order) up to the first with a key `>= end`; errors pass.
fn before<'a>(
    iter: impl Iterator<Item = Result<KvPair>> + 'a,
    end: Vec<u8>,
) -> impl Iterator<Item = Result<KvPair>> + 'a {
    iter.take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.as_ref() < end.as_slice()))
}

/// Writes keys of one table in strictly increasing order straight into the store's files,
/// bypassing the write path (RocksDB: SST files ingested by [`SortedWriter::finish`]). For bulk
/// imports, which guard themselves with an import marker.
pub trait SortedWriter {
    /// Adds the next key; keys must strictly increase.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Ends the current file: the next key starts a new one, so no file spans the keys
    /// between (where another writer's file is to go without overlapping this one's). All
    /// files still become visible together in [`SortedWriter::finish`]. Stores without files
    /// ignore it.
    fn cut(&mut self) -> Result<()> {
        Ok(())
    }
    /// Makes everything written visible in the table; returns how many table files it made
    /// (0 for stores without files). A store on disk makes it durable at once, and every write
    /// before it too: a power cut keeps all of them or loses the rows it was to make visible.
    fn finish(self: Box<Self>) -> Result<u64>;
}

/// A store: reads, atomic batches, consistent snapshots.
pub trait KvStore: KvRead + Send + Sync {
    /// A consistent view that later writes do not change.
    type Snapshot<'a>: KvRead + Sync + 'a
    where
        Self: 'a;

    /// Applies `batch` atomically with the given durability.
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()>;
    /// Takes a snapshot.
    fn snapshot(&self) -> Self::Snapshot<'_>;
    /// Writes buffered data to disk (after bulk loads written without a log).
    fn flush(&self) -> Result<()>;
    /// A writer of sorted keys into `table`; see [`SortedWriter`].
    fn sorted_writer(&self, table: Table) -> Result<Box<dyn SortedWriter + '_>>;
}
