//! The leafdb error type.

use alloy_primitives::B256;

/// Everything that can go wrong in the leafdb.
#[derive(Debug, thiserror::Error)]
pub enum LeafDbError {
    /// RocksDB reported an error.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
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
    /// A bulk import was interrupted; the datadir holds a partial state.
    #[error(
        "the datadir holds an interrupted bulk import (started for {what}); remove it and import again"
    )]
    IncompleteImport {
        /// What was being imported.
        what: String,
    },
    /// An operation needs an empty database.
    #[error("the database is not empty (head is block {head}); refusing to {action}")]
    NotEmpty {
        /// The current head.
        head: u64,
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
    /// Leaves handed to the builder were not strictly increasing or of mixed lengths.
    #[error("builder input out of order or of mixed key lengths at key {key}")]
    UnsortedInput {
        /// Hex of the offending key.
        key: String,
    },
    /// A genesis allocation could not be read.
    #[error(transparent)]
    Genesis(#[from] crate::genesis::GenesisError),
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
}

/// Result alias for the leafdb.
pub type Result<T, E = LeafDbError> = std::result::Result<T, E>;
