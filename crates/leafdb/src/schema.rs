//! On-disk encodings: schema version, metadata keys and value codecs (key layouts are in
//! [`crate::keys`]).

use alloy_primitives::{B256, U256};
use alloy_rlp::{Decodable, Encodable, RlpDecodable, RlpEncodable};
use alloy_trie::TrieAccount;

pub use crate::keys::{path_key, storage_key, storage_node_key};
use crate::{
    error::{LeafDbError, Result},
    kv::{Table, WriteBatch},
};

/// The schema this build writes. Version history:
/// * 1 — first release: tables as in [`Table`], head as RLP `[number, hash, parent_hash,
///   state_root]`.
/// * 2 — the head gains a fifth field, `timestamp`. A version-1 head still decodes (its
///   timestamp reads as 0, "unknown"), so a version-1 database opens unchanged apart from its
///   version marker, which is raised to 2 (a version-1 build could not read a five-field head).
/// * 3 — leaf nodes are no longer stored by imports or blocks: a leaf missing from the node
///   tables is rebuilt from the one flat entry under its path (`nodes::TrieNodes`). Only
///   heal stores the leaves it fetches (the flat entries are rewritten from them after); a
///   block deletes a stored node where a leaf takes its place. A version-2 database (every
///   leaf stored) opens unchanged apart from its marker (a version-2 build would miss the
///   leaves); its stored leaves go as blocks replace them.
pub const SCHEMA_VERSION: u32 = 3;

/// Metadata keys in [`Table::Meta`].
pub(crate) mod meta {
    /// Schema version, u32 big-endian.
    pub(crate) const SCHEMA: &[u8] = b"schema_version";
    /// The head block, RLP [`super::BlockHeader`].
    pub(crate) const HEAD: &[u8] = b"head";
    /// Root of the stored account trie, 32 bytes.
    pub(crate) const ACCOUNT_ROOT: &[u8] = b"account_root";
    /// Blocks whose computed root differed from the header's, u64 big-endian.
    pub(crate) const ROOT_MISMATCHES: &[u8] = b"root_mismatches";
    /// Present while a bulk import runs; its value says what is imported.
    pub(crate) const IMPORT: &[u8] = b"import_in_progress";
    /// The genesis hash of the chain whose state this is, 32 bytes (recorded by the daemon's
    /// first start, `LeafDb::bind_chain`; absent in older databases until then).
    pub(crate) const CHAIN_GENESIS: &[u8] = b"chain_genesis";
}

/// The block a state belongs to. Stored as RLP `[number, hash, parent_hash, state_root,
/// timestamp]` (schema 2); [`decode_head`] also reads schema 1's four-field list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, RlpEncodable, RlpDecodable)]
pub struct BlockHeader {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Parent block hash.
    pub parent_hash: B256,
    /// State root the header commits to.
    pub state_root: B256,
    /// Block timestamp in seconds since the Unix epoch (selects the EIP-2124 fork id); 0 when
    /// unknown (a head written by schema 1, a synthetic or genesis-less state).
    pub timestamp: u64,
}

/// The head as schema 1 stored it: [`BlockHeader`] without the timestamp.
#[derive(RlpDecodable)]
struct HeadV1 {
    number: u64,
    hash: B256,
    parent_hash: B256,
    state_root: B256,
}

impl From<HeadV1> for BlockHeader {
    fn from(v1: HeadV1) -> Self {
        let HeadV1 { number, hash, parent_hash, state_root } = v1;
        Self { number, hash, parent_hash, state_root, timestamp: 0 }
    }
}

/// Encodes an account as stored (and as its trie leaf value).
pub fn encode_account(a: &TrieAccount) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.length());
    a.encode(&mut out);
    out
}

/// Decodes a stored account.
pub fn decode_account(bytes: &[u8]) -> Result<TrieAccount> {
    let mut b = bytes;
    let a =
        TrieAccount::decode(&mut b).map_err(|e| LeafDbError::corrupt("accounts", "account", e))?;
    if !b.is_empty() {
        return Err(LeafDbError::corrupt("accounts", "account", "trailing bytes"));
    }
    Ok(a)
}

/// Splits a key of the storage table into its owner (a hashed address) and its hashed slot.
pub fn split_storage_key(key: &[u8]) -> Result<(B256, B256)> {
    if key.len() != 64 {
        return Err(LeafDbError::corrupt("storage", "key", "not 64 bytes"));
    }
    Ok((B256::from_slice(&key[..32]), B256::from_slice(&key[32..])))
}

/// Decodes a row of the accounts table: its key (a hashed address) and the account.
pub fn decode_account_row(key: &[u8], value: &[u8]) -> Result<(B256, TrieAccount)> {
    let hashed = B256::try_from(key)
        .map_err(|_| LeafDbError::BadKey { table: Table::Accounts.name(), len: key.len() })?;
    Ok((hashed, decode_account(value)?))
}

/// A storage value as stored: big-endian without leading zeros.
pub fn encode_slot_value(v: &U256) -> Vec<u8> {
    with_slot_value(v, <[u8]>::to_vec)
}

/// Calls `f` with the stored form of `v` (see [`encode_slot_value`]) without allocating.
pub(crate) fn with_slot_value<R>(v: &U256, f: impl FnOnce(&[u8]) -> R) -> R {
    let bytes = v.to_be_bytes::<32>();
    f(&bytes[v.leading_zeros() / 8..])
}

/// Decodes a stored storage value.
pub fn decode_slot_value(bytes: &[u8]) -> Result<U256> {
    if bytes.len() > 32 {
        return Err(LeafDbError::corrupt("storage", "slot value", "longer than 32 bytes"));
    }
    Ok(U256::from_be_slice(bytes))
}

/// The trie leaf value of a storage slot: RLP of the integer.
pub fn slot_leaf_value(v: &U256) -> Vec<u8> {
    alloy_rlp::encode(v)
}

/// Stages `head` as the head marker (callers then [`crate::LeafDb::publish_head`] it).
pub(crate) fn stage_head(batch: &mut WriteBatch, head: &BlockHeader) {
    batch.put(Table::Meta, meta::HEAD, alloy_rlp::encode(head));
}

/// Decodes the head marker: schema 2's five fields, or schema 1's four (timestamp 0).
pub fn decode_head(bytes: &[u8]) -> Result<BlockHeader> {
    let mut b = bytes;
    let head = match BlockHeader::decode(&mut b) {
        Ok(head) => head,
        Err(e) => {
            b = bytes;
            HeadV1::decode(&mut b).map_err(|_| LeafDbError::corrupt("meta", "head", e))?.into()
        }
    };
    if !b.is_empty() {
        return Err(LeafDbError::corrupt("meta", "head", "trailing bytes"));
    }
    Ok(head)
}

/// Reads a fixed 32-byte value.
pub fn decode_b256(table: &'static Table, what: &'static str, bytes: &[u8]) -> Result<B256> {
    B256::try_from(bytes).map_err(|_| LeafDbError::corrupt(table.name(), what, "not 32 bytes"))
}

/// Reads a u64 big-endian counter.
pub fn decode_u64(what: &'static str, bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] =
        bytes.try_into().map_err(|_| LeafDbError::corrupt("meta", what, "not 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(timestamp: u64) -> BlockHeader {
        BlockHeader {
            number: 7,
            hash: B256::repeat_byte(1),
            parent_hash: B256::repeat_byte(2),
            state_root: B256::repeat_byte(3),
            timestamp,
        }
    }

    /// Schema 1's head bytes (frozen) must keep decoding in later versions: timestamp 0.
    #[test]
    fn head_encoding_v1_still_decodes() {
        let v1 = alloy_primitives::hex::decode(format!(
            "f86407a0{}a0{}a0{}",
            "01".repeat(32),
            "02".repeat(32),
            "03".repeat(32)
        ))
        .unwrap();
        assert_eq!(decode_head(&v1).unwrap(), sample(0));
    }

    /// Schema 2's head encoding is stable.
    #[test]
    fn head_encoding_v2_is_stable() {
        let h = sample(0x6553_f100);
        let bytes = alloy_rlp::encode(h);
        let expected = format!(
            "f86907a0{}a0{}a0{}846553f100",
            "01".repeat(32),
            "02".repeat(32),
            "03".repeat(32)
        );
        assert_eq!(alloy_primitives::hex::encode(&bytes), expected);
        assert_eq!(h.length(), bytes.len());
        assert_eq!(decode_head(&bytes).unwrap(), h);
        // Anything after the timestamp, inside the list or after it, is refused.
        let mut longer = bytes;
        longer.push(0x01);
        assert!(decode_head(&longer).is_err());
        let mut extra_field = alloy_primitives::hex::decode(&expected[4..]).unwrap();
        extra_field.push(0x01);
        let mut framed = vec![0xf8, extra_field.len() as u8];
        framed.extend(extra_field);
        assert!(decode_head(&framed).is_err());
        assert!(decode_head(&[0x80]).is_err());
    }

    #[test]
    fn slot_values_trim() {
        assert_eq!(encode_slot_value(&U256::from(0x0102u64)), vec![1, 2]);
        assert_eq!(decode_slot_value(&[1, 2]).unwrap(), U256::from(0x0102u64));
        assert!(decode_slot_value(&[0; 33]).is_err());
        assert_eq!(encode_slot_value(&U256::ZERO), Vec::<u8>::new());
        assert_eq!(encode_slot_value(&U256::from(0x80u64)), vec![0x80]);
        assert_eq!(encode_slot_value(&U256::MAX), vec![0xff; 32]);
        assert_eq!(encode_slot_value(&(U256::from(1u64) << 248)).len(), 32);
        assert_eq!(encode_slot_value(&(U256::from(1u64) << 247)), {
            let mut v = vec![0u8; 31];
            v[0] = 0x80;
            v
        });
    }
}
