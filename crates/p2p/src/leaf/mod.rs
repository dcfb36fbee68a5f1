//! The `leaf/1` capability: its constants ([`protocol`]), wire types (`types.rs`), the message
//! kinds from one table (`kinds.rs`), the request id pairing with its flat codec (`pair.rs`),
//! message decoding with limits (`codec.rs`), and the `Status` handshake check. The normative
//! description is `docs/leaf-protocol.md`.

mod codec;
mod head;
mod kinds;
mod pair;
mod path;
pub mod protocol;
mod status;
mod types;

pub use codec::LeafError;
pub use head::{InvalidHead, MAX_HEAD_NUMBER, MAX_HEAD_REWIND};
pub use kinds::{LeafMessage, LeafRequest, LeafResponse, MessageRole, max_payload_size};
pub(crate) use pair::rlp_fields;
pub use pair::{EncodedResponse, RequestPair, RlpFields};
pub use path::{WirePath, WirePathError};
pub use status::StatusError;
pub use types::{
    AccountLeaf, AccountPiece, AccountStorage, ChainHead, Chunk, ChunkContent, Codes, GetChunk,
    GetCodes, GetNodes, GetStorageChunk, NewHead, NodeRequest, Nodes, ServeFlags, Status,
    StorageChunk, StoragePiece, StoragePrefix, StorageSlot, TrieOwner,
};

#[cfg(test)]
mod tests;
