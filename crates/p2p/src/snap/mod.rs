//! The `snap/1` capability (go-ethereum's state-snapshot protocol), as spoken beside `eth/69`:
//! its constants ([`protocol`]), wire messages, decoding with every limit checked before a list
//! is decoded ([`SnapMessage::decode`]) and geth's compact ("hex-prefix") path encoding for
//! `GetTrieNodes` path sets ([`path`]). The message kinds come from one table (`kinds.rs`). `docs/snap.md` describes the wire and the limits.

mod codec;
mod exchange;
mod kinds;
pub mod path;
pub mod protocol;
mod types;

pub use codec::SnapError;
pub use kinds::{SnapMessage, max_payload_size};
pub use types::{
    AccountData, AccountRange, ByteCodes, EMPTY_ROOT_HASH, GetAccountRange, GetByteCodes,
    GetStorageRanges, GetTrieNodes, SlimAccount, StorageData, StorageRanges, TrieNodePathSet,
    TrieNodes,
};

#[cfg(test)]
mod tests;
