//! The leafdb's error types: [`LeafDbError`], and [`GenesisError`] for allocation files.

use alloy_primitives::B256;

/// Why a genesis allocation was rejected; `field` is a JSON path such as `alloc.0x12….balance`.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not JSON.
    #[error("{path}: not valid JSON: {source}")]
    Json {
        /// The file (or `<input>`).
        path: String,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A field has the wrong type or value.
    #[error("{field}: {reason}")]
    Field {
        /// JSON path of the field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// Everything that can go wrong in the leafdb.
#[derive(Debug, thiserror::Error)]
pub enum LeafDbError {
    /// The storage engine (RocksDB) reported an error. Its type stays private so that no
    /// storage type reaches the public API of the leafdb or of the crates above it.
    #[error("storage: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// RocksDB found the leafdb damaged: a table file or its `MANIFEST` fails its checksum or is
    /// cut short (a bad sector, a torn copy). Starting again meets the same damage, so the
    /// message says how to get out: the state is synced again from peers into an empty leafdb.
    /// Not [`Self::Corrupt`], a value RocksDB read back intact that does not decode.
    #[error(
        "the leafdb at {} is damaged ({source}): move it aside (or delete it) and start again, \
         the state is then synced again from peers (on a public chain that needs `el.rpc` or \
         `sync.checkpoint`); keep the node key {}",
        path.display(),
        path.with_file_name("nodekey").display()
    )]
    Damaged {
        /// The database directory (`<datadir>/leafdb`).
        path: std::path::PathBuf,
        /// RocksDB's corruption error, naming the damaged file where it knows it.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database is open in another process, or already in this one: RocksDB holds its
    /// `LOCK` file for as long as a database is open.
    #[error(
        "the leafdb at {} is in use (is another leafsync running with this datadir?)",
        path.display()
    )]
    InUse {
        /// The database directory.
        path: std::path::PathBuf,
    },
    /// The leafdb holds the state of another chain than the one it is opened for
    /// ([`crate::LeafDb::bind_chain`]).
    #[error(
        "the leafdb holds the state of the chain with genesis {stored}, not of the chain with \
         genesis {configured}"
    )]
    OtherChain {
        /// The genesis hash recorded in the leafdb.
        stored: B256,
        /// The genesis hash it was opened for.
        configured: B256,
    },
    /// A stored value could not be decoded: the database is corrupt or was written by other code.
    #[error("corrupt {what} in table {table}: {reason}")]
    Corrupt {
        /// The table the value came from.
        table: &'static str,
        /// What kind of value it is.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A trie node the trie refers to is not in the node store.
    #[error("missing trie node at path {path} of trie {owner} (expected hash {expected})")]
    MissingNode {
        /// Owner of the trie: zero for the account trie, else the hashed address.
        owner: B256,
        /// Hex nibbles of the path.
        path: String,
        /// The hash its parent refers to.
        expected: B256,
    },
    /// A stored trie node's hash differs from the hash its parent refers to.
    #[error(
        "trie node at path {path} of trie {owner} hashes to {got}, its parent expects {expected}"
    )]
    NodeHashMismatch {
        /// Owner of the trie.
        owner: B256,
        /// Hex nibbles of the path.
        path: String,
        /// Hash of the stored node.
        got: B256,
        /// Hash the parent refers to.
        expected: B256,
    },
    /// A trie node's RLP is malformed.
    #[error("malformed trie node: {0}")]
    BadNode(&'static str),
    /// A trie path would be longer than 64 nibbles (a malformed trie: a key is 32 bytes).
    #[error("trie path longer than 64 nibbles")]
    PathTooLong,
    /// A key read from a table, or spelled by a trie's leaf path, has the wrong length.
    #[error("a key of {table} has {len} bytes, not 32")]
    BadKey {
        /// The table (or trie) the key belongs to.
        table: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A worker thread panicked: one updating a block's storage tries, or one scanning a flat
    /// check's owner ranges.
    #[error("a leafdb worker thread panicked")]
    WorkerPanicked,
    /// A long read (a flat check) was asked to stop before it finished; it left nothing behind.
    #[error("stopped before it finished")]
    Stopped,
    /// [`crate::LeafDb::snapshot`] saw a revert complete while it took each of its
    /// [`crate::snapshot::SNAPSHOT_ATTEMPTS`] snapshots, so none of them is known to belong to one
    /// count of reverts. Reverts come one at a time from the thread that follows the chain: a
    /// caller answers empty and is asked again.
    #[error("no snapshot between two reverts in {attempts} attempts")]
    RevertsRacing {
        /// Snapshots taken.
        attempts: usize,
    },
    /// An internal rule was broken (the trie builder's stack empty when it needed a node, a
    /// part of a split trie committed whole, …): a bug, not bad input.
    #[error("leafdb invariant broken: {0}")]
    Invariant(&'static str),
    /// The database was written by a newer leafsync.
    #[error(
        "database schema version {found} is newer than this leafsync supports ({supported}); \
         upgrade leafsync or use another datadir"
    )]
    SchemaTooNew {
        /// Version found on disk.
        found: u32,
        /// Highest version this build understands.
        supported: u32,
    },
    /// An operation needs an empty database.
    #[error(
        "the database is not empty ({}); refusing to {action}",
        head.map_or_else(
            || "no head, but state from an interrupted sync or import".to_string(),
            |n| format!("head is block {n}")
        )
    )]
    NotEmpty {
        /// The current head; `None`: state without one (an interrupted sync).
        head: Option<u64>,
        /// What was refused.
        action: &'static str,
    },
    /// A sync's end was refused: the stored trie's root is not the head's.
    #[error(
        "the synced trie's root {stored} is not the head's state root {expected}; head not recorded"
    )]
    SyncedRootMismatch {
        /// Root of the stored account trie.
        stored: B256,
        /// The head's state root.
        expected: B256,
    },
    /// A block was to be reverted onto a header that is not the head's parent.
    #[error(
        "cannot revert block {head} ({head_hash}) onto block {parent} ({parent_hash}): not its parent"
    )]
    NotTheParent {
        /// The head's number.
        head: u64,
        /// The head's hash.
        head_hash: B256,
        /// The number of the header it was to be reverted onto.
        parent: u64,
        /// That header's hash.
        parent_hash: B256,
    },
    /// Leaves handed to the builder were not strictly increasing or of mixed lengths.
    #[error("builder input out of order or of mixed key lengths at key {key}")]
    UnsortedInput {
        /// Hex of the offending key.
        key: String,
    },
    /// A genesis allocation could not be read.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    /// An I/O error outside RocksDB.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl LeafDbError {
    pub(crate) fn corrupt(
        table: &'static str,
        what: &'static str,
        reason: impl std::fmt::Display,
    ) -> Self {
        Self::Corrupt { table, what, reason: reason.to_string() }
    }

    /// Wraps a storage engine's error (see [`Self::Storage`]).
    pub(crate) fn storage(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Storage(Box::new(e))
    }

    /// RocksDB's error `e` from the leafdb at `path`: [`Self::Damaged`] for a corruption, else
    /// [`Self::Storage`].
    pub(crate) fn rocksdb(path: &std::path::Path, e: rocksdb::Error) -> Self {
        Self::storage(e).located(path)
    }

    /// This error, from the leafdb at `path`: a [`Self::Storage`] holding RocksDB's corruption
    /// becomes [`Self::Damaged`], naming `path`; any other error stays as it is.
    pub(crate) fn located(self, path: &std::path::Path) -> Self {
        match self {
            Self::Storage(source)
                if source
                    .downcast_ref::<rocksdb::Error>()
                    .is_some_and(|e| e.kind() == rocksdb::ErrorKind::Corruption) =>
            {
                Self::Damaged { path: path.to_path_buf(), source }
            }
            e => e,
        }
    }
}

/// Result alias for the leafdb.
pub type Result<T, E = LeafDbError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::{
        io::{Seek, SeekFrom, Write},
        path::Path,
    };

    use super::{LeafDbError, Result};
    use crate::kv::{
        Durability, KvRead, KvStore, Reading, Table, WriteBatch,
        rocks::{DbOptions, RocksStore},
    };

    /// Keys written to the damaged table, each with [`VALUE_BYTES`] of incompressible bytes:
    /// ~1 MiB, some 60 blocks of one table file.
    const KEYS: u32 = 1024;
    const VALUE_BYTES: usize = 1024;

    fn value(key: u32) -> Vec<u8> {
        let mut x = u64::from(key) | 1 << 40;
        (0..VALUE_BYTES)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect()
    }

    /// A RocksDB leafdb at `dir` holding `pairs` in its code table, flushed to a table file.
    fn flushed(dir: &Path, pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Result<()> {
        let store = RocksStore::open(dir, &DbOptions::default())?;
        let mut batch = WriteBatch::default();
        for (key, value) in pairs {
            batch.put(Table::Code, key, value);
        }
        store.write(batch, Durability::Synced)?;
        store.flush()
    }

    /// Whether `e` is [`LeafDbError::Damaged`] naming `dir`, with RocksDB's corruption.
    fn names_damage(e: &LeafDbError, dir: &Path) -> bool {
        matches!(e, LeafDbError::Damaged { path, .. } if path == dir)
            && e.to_string().contains("Corruption")
    }

    /// RocksDB's corruption, met by a point read, an iterator or a cursor, is
    /// [`LeafDbError::Damaged`] naming the database; other storage errors stay opaque.
    #[test]
    fn a_damaged_table_file_is_damaged_not_storage() -> Result<()> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("leafdb");
        flushed(&dir, (0..KEYS).map(|key| (key.to_be_bytes().to_vec(), value(key))))?;
        crate::test_utils::damage_largest_table(&dir).unwrap();
        let store = RocksStore::open(&dir, &DbOptions::default())?;

        let got = (0..KEYS).map(|k| store.get(Table::Code, &k.to_be_bytes()));
        let errors: Vec<_> = got.filter_map(|r| r.err()).collect();
        assert!(!errors.is_empty(), "no read met the damage");
        assert!(errors.iter().all(|e| names_damage(e, &dir)), "{errors:?}");

        let scanned = store.range_from(Table::Code, &[], Reading::Scan).find_map(|r| r.err());
        assert!(scanned.is_some_and(|e| names_damage(&e, &dir)));

        let mut cursor = store.cursor(Table::Code, &[])?;
        let stopped = loop {
            if cursor.current().is_none() {
                break None;
            }
            if let Err(e) = cursor.next() {
                break Some(e);
            }
        };
        assert!(stopped.is_some_and(|e| names_damage(&e, &dir)));

        let other = LeafDbError::storage(std::io::Error::other("disk gone")).located(&dir);
        assert!(matches!(other, LeafDbError::Storage(_)), "{other:?}");
        Ok(())
    }

    /// A damaged `MANIFEST` refuses the open with [`LeafDbError::Damaged`]: the error a daemon
    /// under a supervisor would otherwise restart into with no advice.
    #[test]
    fn a_damaged_manifest_is_damaged_at_open() -> Result<()> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("leafdb");
        flushed(&dir, [(b"k".to_vec(), b"v".to_vec())])?;
        let manifest = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("MANIFEST-")))
            .unwrap();
        let len = std::fs::metadata(&manifest).unwrap().len();
        let mut file = std::fs::OpenOptions::new().write(true).open(&manifest).unwrap();
        file.seek(SeekFrom::Start(len / 2)).unwrap();
        file.write_all(&[0xa5; 64]).unwrap();
        drop(file);

        let opened = RocksStore::open(&dir, &DbOptions::default());
        let e = opened.err().unwrap();
        assert!(names_damage(&e, &dir), "{e}");
        let message = e.to_string();
        assert!(message.contains("move it aside (or delete it) and start again"), "{message}");
        assert!(message.contains(&tmp.path().join("nodekey").display().to_string()), "{message}");
        Ok(())
    }
}
