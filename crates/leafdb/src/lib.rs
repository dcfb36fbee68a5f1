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
//! updates stored tries in place ([`trie::TrieUpdate`]); both produce Ethereum's roots.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod bulk;
pub mod db;
pub mod diff;
pub mod error;
pub mod generate;
pub mod genesis;
pub mod import;
pub mod kv;
pub mod progress;
pub mod recent;
pub mod schema;
pub mod snapshot;
pub mod trie;
pub mod verify;

pub use bulk::{BulkImport, ImportAccount, ImportOutcome};
pub use db::{
    AccountProof, ApplyOutcome, DEFAULT_RECENT_BLOCKS, EMPTY_CODE_HASH, LeafDb, LeafDbConfig,
};
pub use diff::{AccountChange, AccountUpdate, BlockDiff};
pub use error::{LeafDbError, Result};
pub use generate::GenParams;
pub use genesis::{
    GenesisAccount, GenesisAlloc, GenesisError, StateFile, parse_alloc, parse_state,
    read_alloc_file, read_state_file,
};
pub use import::{AccountChunkOutcome, ChunkAccount};
pub use kv::{
    Durability, KvRead, KvStore, Table, WriteBatch,
    mem::MemStore,
    rocks::{DbOptions, RocksStore},
};
pub use schema::{BlockHeader, SCHEMA_VERSION};
pub use snapshot::{ESTIMATE_SAMPLE_NIBBLES, LeafSnapshot};
pub use verify::{FlatCheck, MAX_FLAT_REPAIRS, VerifyReport};
