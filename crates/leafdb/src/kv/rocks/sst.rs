//! Table files written outside the write path: [`RocksSortedWriter`] (bulk imports, a sync's
//! chunks and codes) and the [`SstWriter`] under it, which writes past the page cache where the
//! filesystem allows.
//!
//! RocksDB's `SstFileWriter` tells the kernel to drop the pages of the file it writes, every MiB
//! and when it closes, so a write through the page cache copies each byte into pages that are
//! freed at once; whoever reads the file later (the sync's final check, a served chunk) reads it
//! from disk either way. With direct writes (`O_DIRECT`) the bytes go from RocksDB's own aligned
//! buffer to the disk: no copy, and no page to take and give back. On the benchmark machine that
//! took 2.3–2.8 s of kernel CPU off a 4M-account sync (of 12.7–12.9 s; docs/benchmarks.md,
//! "table files written past the page cache").
//!
//! The `rocksdb` crate builds its `SstFileWriter` with default file options and cannot be told
//! otherwise, so [`SstWriter`] makes the same calls of RocksDB's C API with `use_direct_writes`
//! set. A filesystem that refuses direct I/O refuses to open the file; the store then writes
//! through the page cache from there on ([`open_falling_back`]).

use std::{
    ffi::{CStr, CString, c_char, c_void},
    path::{Path, PathBuf},
    ptr::NonNull,
    sync::atomic::{AtomicBool, Ordering},
};

use librocksdb_sys as ffi;
use rocksdb::{AsRawPtr, IngestExternalFileOptions, Options};
use tracing::warn;

use super::{RocksStore, SST_FILE_BYTES};
use crate::{
    error::{LeafDbError, Result},
    kv::{SortedWriter, Table},
};

/// An error of RocksDB's C API, with the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub(super) struct SstError {
    path: PathBuf,
    message: String,
}

/// One table file being written: RocksDB's `SstFileWriter`, opened for direct writes or not.
pub(super) struct SstWriter {
    raw: NonNull<ffi::rocksdb_sstfilewriter_t>,
    path: PathBuf,
}

// SAFETY: RocksDB's `SstFileWriter` is not tied to the thread that made it, and every call here
// takes `&mut self` (or `&self` for the size, which only reads), as `rocksdb::SstFileWriter`,
// which is `Send` too.
unsafe impl Send for SstWriter {}

impl SstWriter {
    /// Opens a new table file at `path` for a column family of options `opts`, written past the
    /// page cache when `direct`.
    pub(super) fn open(opts: &Options, path: &Path, direct: bool) -> Result<Self, SstError> {
        let error = |message: String| SstError { path: path.to_path_buf(), message };
        let name = path.to_str().and_then(|p| CString::new(p).ok());
        let name = name.ok_or_else(|| error("not a UTF-8 path without NUL bytes".into()))?;
        // SAFETY: the writer copies both option sets (its `Rep` keeps an `EnvOptions` and an
        // `ImmutableOptions` of its own), so the file options can go at once and `opts` may go
        // before the writer; `opts.as_raw_ptr()` is valid while `opts` is borrowed here.
        let raw = unsafe {
            let env = ffi::rocksdb_envoptions_create();
            ffi::rocksdb_envoptions_set_use_direct_writes(env, u8::from(direct));
            let raw = ffi::rocksdb_sstfilewriter_create(env, opts.as_raw_ptr());
            ffi::rocksdb_envoptions_destroy(env);
            raw
        };
        let raw = NonNull::new(raw).ok_or_else(|| error("RocksDB made no writer".into()))?;
        let writer = Self { raw, path: path.to_path_buf() };
        // SAFETY: `raw` is a live writer and `name` a NUL-terminated string that outlives the
        // call (RocksDB copies it).
        writer.check(|err| unsafe {
            ffi::rocksdb_sstfilewriter_open(writer.raw.as_ptr(), name.as_ptr(), err)
        })?;
        Ok(writer)
    }

    /// Adds the next key; keys must increase.
    pub(super) fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), SstError> {
        let raw = self.raw.as_ptr();
        // SAFETY: `raw` is a live writer; the slices are read during the call only.
        self.check(|err| unsafe {
            ffi::rocksdb_sstfilewriter_put(
                raw,
                key.as_ptr().cast::<c_char>(),
                key.len(),
                value.as_ptr().cast::<c_char>(),
                value.len(),
                err,
            );
        })
    }

    /// Writes the file's index and footer, syncs and closes it.
    pub(super) fn finish(&mut self) -> Result<(), SstError> {
        let raw = self.raw.as_ptr();
        // SAFETY: `raw` is a live writer.
        self.check(|err| unsafe { ffi::rocksdb_sstfilewriter_finish(raw, err) })
    }

    /// The file's size so far, in bytes.
    pub(super) fn file_size(&self) -> u64 {
        let mut size = 0;
        // SAFETY: `raw` is a live writer and `size` a valid place for the result.
        unsafe { ffi::rocksdb_sstfilewriter_file_size(self.raw.as_ptr(), &raw mut size) };
        size
    }

    /// Runs a C API call that reports failure through its `errptr` argument.
    fn check(&self, call: impl FnOnce(*mut *mut c_char)) -> Result<(), SstError> {
        let mut err: *mut c_char = std::ptr::null_mut();
        call(&raw mut err);
        if err.is_null() {
            return Ok(());
        }
        // SAFETY: RocksDB set `err` to a NUL-terminated string it allocated with `malloc`
        // (`strdup`), which `rocksdb_free` releases.
        let message = unsafe {
            let message = CStr::from_ptr(err).to_string_lossy().into_owned();
            ffi::rocksdb_free(err.cast::<c_void>());
            message
        };
        Err(SstError { path: self.path.clone(), message })
    }
}

impl Drop for SstWriter {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `rocksdb_sstfilewriter_create` and is destroyed once, here.
        unsafe { ffi::rocksdb_sstfilewriter_destroy(self.raw.as_ptr()) };
    }
}

/// Opens a table file with `open(true)` (direct writes) while `direct` holds, otherwise with
/// `open(false)`. When the direct open fails and the other succeeds, the filesystem does not
/// take direct writes: `direct` is cleared (logged once) and the file goes through the page
/// cache, as all the store's files from then on. When both fail, the second error is returned.
pub(super) fn open_falling_back<W>(
    direct: &AtomicBool,
    open: impl Fn(bool) -> Result<W, SstError>,
) -> Result<W, SstError> {
    if !direct.load(Ordering::Relaxed) {
        return open(false);
    }
    let refused = match open(true) {
        Ok(writer) => return Ok(writer),
        Err(e) => e,
    };
    let writer = open(false)?;
    if direct.swap(false, Ordering::Relaxed) {
        warn!(
            error = %refused,
            "the leafdb's filesystem refused a direct write: table files are written through \
             the page cache from now on"
        );
    }
    Ok(writer)
}

/// A bulk-import SST file's size is checked every 1024 keys: asking on every key cost ~1% of a
/// bulk import (measured), and 1024 keys add at most a few hundred KiB to a 64 MiB file.
const SIZE_CHECK_PUTS: u64 = 1024;

/// Writes sorted keys into SST files and ingests them into the column family on finish.
pub(super) struct RocksSortedWriter<'a> {
    store: &'a RocksStore,
    table: Table,
    opts: &'a Options,
    writer: Option<SstWriter>,
    files: Vec<PathBuf>,
    /// Keys put so far, to ask the file's size only every [`SIZE_CHECK_PUTS`] keys.
    puts: u64,
}

impl<'a> RocksSortedWriter<'a> {
    /// A writer of `table` (of column family options `opts`) into `store`, no file open yet.
    pub(super) fn new(store: &'a RocksStore, table: Table, opts: &'a Options) -> Self {
        Self { store, table, opts, writer: None, files: Vec::new(), puts: 0 }
    }

    fn close_file(&mut self) -> Result<()> {
        if let Some(mut w) = self.writer.take() {
            w.finish().map_err(LeafDbError::storage)?;
        }
        Ok(())
    }
}

impl SortedWriter for RocksSortedWriter<'_> {
    fn cut(&mut self) -> Result<()> {
        self.close_file()
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.puts += 1;
        if self.puts.is_multiple_of(SIZE_CHECK_PUTS)
            && self.writer.as_ref().is_some_and(|w| w.file_size() >= SST_FILE_BYTES)
        {
            self.close_file()?;
        }
        if self.writer.is_none() {
            let n = self.store.next_file.fetch_add(1, Ordering::Relaxed);
            let path = self.store.bulk_dir.join(format!("{}-{n}.sst", self.table.name()));
            let w = open_falling_back(&self.store.direct_writes, |direct| {
                SstWriter::open(self.opts, &path, direct)
            });
            self.files.push(path);
            self.writer = Some(w.map_err(LeafDbError::storage)?);
        }
        if let Some(w) = self.writer.as_mut() {
            w.put(key, value).map_err(LeafDbError::storage)?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<u64> {
        self.close_file()?;
        if self.files.is_empty() {
            return Ok(0);
        }
        let files = self.files.len() as u64;
        let mut opts = IngestExternalFileOptions::default();
        opts.set_move_files(true);
        let cf = self.store.cf(self.table)?;
        // An ingestion is durable once it returns (its manifest write is synced); the log's
        // tail is not. What went through the log before (a sync's marks of what this file's
        // rows need, its progress) must not be lost to a power cut that keeps the file: the log
        // is synced first (one fsync, next to the ones the ingestion makes).
        self.store.db.flush_wal(true).map_err(LeafDbError::storage)?;
        // Moved into the database on success; on failure `Drop` removes them.
        let ingested = self.store.db.ingest_external_file_cf_opts(cf, &opts, self.files.clone());
        ingested.map_err(LeafDbError::storage)?;
        self.files.clear();
        Ok(files)
    }
}

impl Drop for RocksSortedWriter<'_> {
    /// Removes the files of a writer dropped before its ingestion (an error on the way).
    fn drop(&mut self) {
        drop(self.writer.take());
        for path in &self.files {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn refused(path: &str) -> SstError {
        SstError { path: path.into(), message: "Invalid argument".into() }
    }

    /// A filesystem that refuses direct writes gets its file through the page cache, and is not
    /// asked for a direct write again.
    #[test]
    fn a_refused_direct_write_falls_back_for_good() {
        let direct = AtomicBool::new(true);
        let asked = Cell::new(Vec::new());
        let open = |d: bool| {
            let mut a = asked.take();
            a.push(d);
            asked.set(a);
            if d { Err(refused("x.sst")) } else { Ok(d) }
        };
        assert!(matches!(open_falling_back(&direct, open), Ok(false)));
        assert!(!direct.load(Ordering::Relaxed));
        assert!(matches!(open_falling_back(&direct, open), Ok(false)));
        assert_eq!(asked.take(), [true, false, false]);
    }

    /// Where direct writes work they are kept; where neither way opens, the error is the
    /// buffered open's.
    #[test]
    fn direct_writes_stay_and_a_failing_open_is_reported() {
        let direct = AtomicBool::new(true);
        assert!(matches!(open_falling_back(&direct, Ok), Ok(true)));
        assert!(direct.load(Ordering::Relaxed));
        let both = open_falling_back(&direct, |d| -> Result<(), _> {
            Err(refused(if d { "direct.sst" } else { "buffered.sst" }))
        });
        assert!(both.is_err_and(|e| e.path == Path::new("buffered.sst")));
        // Nothing showed that the filesystem refuses direct writes as such.
        assert!(direct.load(Ordering::Relaxed));
    }
}
