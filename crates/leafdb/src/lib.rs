//! The leafdb: a flat, sorted copy of the Ethereum state in RocksDB with a path-keyed
//! Merkle-Patricia trie beside it.
//!
//! * Flat tables whose key order is trie order: accounts by hashed address, storage by hashed
//!   address ‖ hashed slot, code by hash (see [`kv::Table`]).
//! * Trie nodes by path, for the account trie and every storage trie, kept exactly equal to the
//!   trie of the flat state; nodes replaced in the last K blocks stay findable by hash.
//! * [`LeafDb::apply_block`] applies a block's diff, the changed nodes and the head in one atomic
//!   write, and checks the new root against the header.
//!
//! The trie engine ([`trie`]) streams sorted leaves into nodes ([`trie::StackBuilder`]) and
//! updates stored tries in place ([`trie::TrieUpdate`]); both produce Ethereum's roots. Every
//! key layout and key range is in [`keys`].
//!
//! [`LeafDb`]'s methods are grouped by concern, one `impl` block per file:
//!
//! | file | methods |
//! |---|---|
//! | `db.rs` | open, schema check, reads (`head`, `account`, `storage`, `code`, `node`, `recent_node`), proofs, `subscribe_head` |
//! | `apply.rs` | `apply_block` (plan → storage tries in parallel → accounts → write); the account trie's top levels it keeps are in `top_nodes.rs` |
//! | `undo.rs` | `undo_of` (what a block overwrites, read before it), `revert_block`, `reverts` (a reorg's rollback) |
//! | `snapshot.rs` | `snapshot` (consistent reads for serving), `estimate_accounts` |
//! | `snap_read.rs` | `snap_reader` ([`snap_read::SnapReader`]: a snap/1 server's reads from any origin, proofs, nodes by path under recent roots) |
//! | `bulk.rs` | [`BulkImport`]: a whole state from sorted leaves |
//! | `genesis.rs` | `init_genesis` |
//! | `generate.rs` | `generate` (synthetic states; feature `generate`) |
//! | `sync_import.rs` | a sync's chunks, codes, skeleton and final head |
//! | `sync_heal.rs` | a sync's healing: `forget_path`, `write_trie_nodes`, `reconcile_*` |
//! | `progress.rs` | a sync's persisted progress record and what it keeps open beside it |
//! | `verify.rs` | `verify`: every trie recomputed and compared with the stored nodes |
//! | `flat_check.rs` | a sync's final flat-state check (`check_flat_state`) |
//!
//! Every read of a trie node by path goes through `nodes.rs` (`TrieNodes`, and [`NodeReader`]
//! for many in a row): a leaf, mostly not stored, is rebuilt from its flat entry.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod apply;
pub mod bulk;
pub mod db;
pub mod diff;
pub mod error;
pub mod flat_check;
#[cfg(feature = "generate")]
pub mod generate;
pub mod genesis;
pub mod keys;
pub mod kv;
pub mod nodes;
pub mod progress;
pub mod recent;
pub mod schema;
pub mod snap_read;
pub mod snapshot;
pub mod sync_heal;
pub mod sync_import;
#[cfg(feature = "test-utils")]
pub mod test_utils;
pub mod top_nodes;
pub mod trie;
pub mod undo;
pub mod verify;

pub use apply::{ApplyOutcome, MAX_TRIE_WORKERS};
pub use bulk::{BulkImport, ImportAccount, ImportOutcome};
pub use db::{AccountProof, DEFAULT_RECENT_BLOCKS, EMPTY_CODE_HASH, LeafDb, LeafDbConfig};
pub use diff::{AccountChange, AccountUpdate, BlockDiff};
pub use error::{GenesisError, LeafDbError, Result};
pub use flat_check::{FlatCheck, MAX_FLAT_REPAIRS};
#[cfg(feature = "generate")]
pub use generate::{GenAccount, GenParams};
pub use genesis::{
    GenesisAccount, GenesisAlloc, StateFile, parse_alloc, parse_state, read_alloc_file,
    read_state_file,
};
pub use kv::{
    Cursor, Durability, KvRead, KvStore, Reading, Table, WriteBatch,
    mem::MemStore,
    rocks::{DbOptions, RocksStore},
};
pub use nodes::NodeReader;
pub use progress::SyncMark;
pub use recent::RecentCacheSize;
pub use schema::{BlockHeader, SCHEMA_VERSION};
pub use snapshot::{AccountSlots, ESTIMATE_SAMPLE_NIBBLES, LeafSnapshot, StorageWalk};
pub use sync_import::{
    AccountChunkOutcome, ChunkAccount, ChunkSet, StagedChunk, stage_account_chunk,
    stage_storage_chunk,
};
pub use undo::BlockUndo;
pub use verify::{VerifyProgress, VerifyReport};
