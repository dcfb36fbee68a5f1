//! The Merkle-Patricia trie engine: node codec, streaming builder, incremental updates, proofs.

pub mod builder;
pub mod node;
pub mod update;
pub mod walk;

pub use builder::{BuildOutcome, NodeSink, StackBuilder, VecSink, nibbles_hex, root_of_sorted};
pub use node::DecodedNode;
pub use update::{NodeSource, TrieCommit, TrieUpdate, prove};
pub use walk::walk_leaves;
