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
}

/// Result alias for the leafdb.
pub type Result<T, E = LeafDbError> = std::result::Result<T, E>;
