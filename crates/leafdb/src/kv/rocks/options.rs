//! [`DbOptions`]: the RocksDB store's tuning, and the database and column family options made
//! from it.

use rocksdb::{BlockBasedIndexType, BlockBasedOptions, Cache, DBCompressionType, Options};

use super::{
    DEFAULT_BLOCK_CACHE_BYTES, DEFAULT_BLOCK_SIZE, DEFAULT_BLOOM_BITS, DEFAULT_MAX_OPEN_FILES,
    DEFAULT_WRITE_BUFFER_BYTES, MEMTABLE_BLOOM_RATIO, METADATA_BLOCK_SIZE, ROCKSDB_LOG_FILE_BYTES,
    ROCKSDB_LOG_FILES_KEPT,
};
use crate::kv::Table;

/// RocksDB tuning; [`DbOptions::default`] holds the documented defaults.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Shared LRU block cache size in bytes ([`DEFAULT_BLOCK_CACHE_BYTES`]).
    pub block_cache_bytes: usize,
    /// Memtable size per column family ([`DEFAULT_WRITE_BUFFER_BYTES`]).
    pub write_buffer_bytes: usize,
    /// Bloom bits per key on point-lookup tables ([`DEFAULT_BLOOM_BITS`]).
    pub bloom_bits: f64,
    /// Open file limit ([`DEFAULT_MAX_OPEN_FILES`]).
    pub max_open_files: i32,
    /// Data block size ([`DEFAULT_BLOCK_SIZE`]).
    pub block_size: usize,
    /// Background flush/compaction threads: the number of cores, at least 2.
    pub background_jobs: i32,
    /// Write the table files of bulk imports and sync chunks past the page cache (`O_DIRECT`),
    /// where the filesystem allows: on by default (see the `sst` module's docs).
    pub direct_writes: bool,
}

impl Default for DbOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            block_cache_bytes: DEFAULT_BLOCK_CACHE_BYTES,
            write_buffer_bytes: DEFAULT_WRITE_BUFFER_BYTES,
            bloom_bits: DEFAULT_BLOOM_BITS,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            block_size: DEFAULT_BLOCK_SIZE,
            background_jobs: i32::try_from(cores.max(2)).unwrap_or(2),
            direct_writes: true,
        }
    }
}

impl DbOptions {
    /// Sets the block cache size.
    pub const fn block_cache_bytes(mut self, bytes: usize) -> Self {
        self.block_cache_bytes = bytes;
        self
    }

    /// Sets the limit on open table files (-1: unlimited).
    pub const fn max_open_files(mut self, files: i32) -> Self {
        self.max_open_files = files;
        self
    }

    /// Sets whether table files are written past the page cache.
    pub const fn direct_writes(mut self, direct: bool) -> Self {
        self.direct_writes = direct;
        self
    }

    /// Sets the memtable size.
    pub const fn write_buffer_bytes(mut self, bytes: usize) -> Self {
        self.write_buffer_bytes = bytes;
        self
    }

    pub(super) fn db_options(&self) -> Options {
        let mut o = Options::default();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        o.set_max_open_files(self.max_open_files);
        o.set_max_background_jobs(self.background_jobs);
        o.set_bytes_per_sync(1 << 20);
        // Every table flushed at once, whenever one's memtable fills: each flush frees the
        // write-ahead log. Flushed one by one, the tables that fill slowly (the head's, the flat
        // accounts') kept the log alive until its size limit forced them out, 250–455 MB of it
        // under a 1M-account benchmark's blocks, whose writes took 44–72 ms instead of 15–22 ms
        // (docs/benchmarks.md). It also keeps what bulk loads write without the log whole.
        o.set_atomic_flush(true);
        // RocksDB's own log (`<leafdb>/LOG`) would otherwise grow for the life of the process
        // (a statistics dump every 10 minutes, every flush and compaction of 7 tables) and keep
        // up to 1,000 old ones: a few files of bounded size, then the oldest goes.
        o.set_max_log_file_size(ROCKSDB_LOG_FILE_BYTES);
        o.set_keep_log_file_num(ROCKSDB_LOG_FILES_KEPT);
        o
    }

    pub(super) fn cf_options(&self, table: Table, cache: &Cache) -> Options {
        let mut block = BlockBasedOptions::default();
        block.set_block_cache(cache);
        block.set_block_size(self.block_size);
        // Indexes and filters in partitions of METADATA_BLOCK_SIZE through the block cache, at
        // high priority (the LRU cache's high-priority pool, half of it by RocksDB's default,
        // so a burst of data blocks does not push them out), with each file's top-level index
        // and level 0's whole index and filter pinned while the file is open.
        block.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        block.set_partition_filters(true);
        block.set_metadata_block_size(METADATA_BLOCK_SIZE);
        block.set_cache_index_and_filter_blocks(true);
        block.set_cache_index_and_filter_blocks_with_high_priority(true);
        block.set_pin_top_level_index_and_filter(true);
        block.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let point_lookups =
            matches!(table, Table::AccountNodes | Table::StorageNodes | Table::Code);
        if point_lookups {
            block.set_bloom_filter(self.bloom_bits, false);
        }
        let mut o = Options::default();
        if matches!(table, Table::AccountNodes | Table::StorageNodes | Table::Accounts) {
            o.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
            // No prefix extractor: the filter holds whole keys, for point reads.
            o.set_memtable_whole_key_filtering(true);
        }
        o.set_block_based_table_factory(&block);
        o.set_write_buffer_size(self.write_buffer_bytes);
        o.set_level_compaction_dynamic_level_bytes(true);
        // Hashes do not compress; bytecode does, by about half, with cheap LZ4.
        let compression =
            if table == Table::Code { DBCompressionType::Lz4 } else { DBCompressionType::None };
        o.set_compression_type(compression);
        o
    }
}
