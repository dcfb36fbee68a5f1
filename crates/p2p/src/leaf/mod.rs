//! The `leaf/1` capability: its constants, wire messages, message decoding with limits, and the
//! `Status` handshake check. The normative description is `docs/leaf-protocol.md`.

mod message;
mod messages;
mod nibbles;
pub mod protocol;
mod status;

pub use message::{LeafError, LeafMessage, PenaltyClass, max_payload_size};
pub use messages::{
    AccountLeaf, AccountStorage, ChainHead, Chunk, ChunkContent, Codes, GetChunk, GetCodes,
    GetNodes, GetStorageChunk, NewHead, NodeRequest, Nodes, ServeFlags, Status, StorageChunk,
    StorageSlot, TrieOwner,
};
pub use nibbles::{Nibbles, NibblesError};
pub use status::StatusError;

#[cfg(test)]
mod tests;
