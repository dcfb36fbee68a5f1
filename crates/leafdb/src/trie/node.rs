//! The Merkle-Patricia node codec: leaf, extension and branch nodes, including branch values
//! (needed by generic tries with keys of different lengths; Ethereum's state tries never have
//! them). Hex-prefix and child references reuse alloy-trie's `encode_path_leaf` and [`RlpNode`].

use alloy_primitives::B256;
use alloy_rlp::{EMPTY_STRING_CODE, Header};
use alloy_trie::{
    Nibbles,
    nodes::{RlpNode, encode_path_leaf},
};

use crate::error::{LeafDbError, Result};

/// A decoded trie node whose children are references ([`RlpNode`]: a hash or an inline node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodedNode {
    /// A leaf: the rest of the key and the value.
    Leaf {
        /// Remaining key nibbles below the node's path.
        key: Nibbles,
        /// The leaf value.
        value: Vec<u8>,
    },
    /// An extension: shared key nibbles and the single child.
    Extension {
        /// The shared nibbles.
        key: Nibbles,
        /// Reference to the child node.
        child: RlpNode,
    },
    /// A branch: sixteen optional children and an optional value.
    Branch {
        /// Child references by nibble.
        children: Box<[Option<RlpNode>; 16]>,
        /// The value stored at the branch's own path (generic tries only).
        value: Option<Vec<u8>>,
    },
}

/// RLP-encodes a leaf node into `out` (cleared first).
pub fn encode_leaf(key: &Nibbles, value: &[u8], out: &mut Vec<u8>) {
    out.clear();
    append_leaf(key, value, out);
}

/// RLP-encodes a leaf node onto the end of `out`.
pub(crate) fn append_leaf(key: &Nibbles, value: &[u8], out: &mut Vec<u8>) {
    let path = encode_path_leaf(key, true);
    let payload = string_len(&path) + string_len(value);
    Header { list: true, payload_length: payload }.encode(out);
    encode_string(&path, out);
    encode_string(value, out);
}

/// RLP-encodes an extension node into `out` (cleared first).
pub fn encode_extension(key: &Nibbles, child: &RlpNode, out: &mut Vec<u8>) {
    out.clear();
    append_extension(key, child, out);
}

/// RLP-encodes an extension node onto the end of `out`.
pub(crate) fn append_extension(key: &Nibbles, child: &RlpNode, out: &mut Vec<u8>) {
    let path = encode_path_leaf(key, false);
    let payload = string_len(&path) + child.len();
    Header { list: true, payload_length: payload }.encode(out);
    encode_string(&path, out);
    out.extend_from_slice(child);
}

/// RLP-encodes a branch node into `out` (cleared first).
pub fn encode_branch(children: &[Option<RlpNode>; 16], value: Option<&[u8]>, out: &mut Vec<u8>) {
    out.clear();
    append_branch(children, value, out);
}

/// RLP-encodes a branch node onto the end of `out`.
pub(crate) fn append_branch(
    children: &[Option<RlpNode>; 16],
    value: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    let mut payload = value.map_or(1, string_len);
    for child in children {
        payload += child.as_ref().map_or(1, |c| c.len());
    }
    Header { list: true, payload_length: payload }.encode(out);
    for child in children {
        match child {
            Some(c) => out.extend_from_slice(c),
            None => out.push(EMPTY_STRING_CODE),
        }
    }
    match value {
        Some(v) => encode_string(v, out),
        None => out.push(EMPTY_STRING_CODE),
    }
}

fn string_len(bytes: &[u8]) -> usize {
    if bytes.len() == 1 && bytes[0] < EMPTY_STRING_CODE {
        1
    } else {
        bytes.len() + alloy_rlp::length_of_length(bytes.len())
    }
}

fn encode_string(bytes: &[u8], out: &mut Vec<u8>) {
    if bytes.len() == 1 && bytes[0] < EMPTY_STRING_CODE {
        out.push(bytes[0]);
    } else {
        Header { list: false, payload_length: bytes.len() }.encode(out);
        out.extend_from_slice(bytes);
    }
}

/// Splits one RLP item off the front of `buf`, returning its complete encoding.
fn take_item<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8]> {
    let mut peek = *buf;
    let header = Header::decode(&mut peek).map_err(|_| LeafDbError::BadNode("bad item header"))?;
    let header_len = buf.len() - peek.len();
    let total = header_len + header.payload_length;
    if total > buf.len() {
        return Err(LeafDbError::BadNode("item overruns node"));
    }
    let (item, rest) = buf.split_at(total);
    *buf = rest;
    Ok(item)
}

fn item_string(item: &[u8]) -> Result<&[u8]> {
    let mut b = item;
    Header::decode_bytes(&mut b, false).map_err(|_| LeafDbError::BadNode("expected a string"))
}

fn child_ref(item: &[u8]) -> Result<Option<RlpNode>> {
    if item == [EMPTY_STRING_CODE] {
        return Ok(None);
    }
    if item.first().is_some_and(|b| *b < 0xc0) {
        // A string child must be a 32-byte hash.
        if item.len() != 33 || item[0] != EMPTY_STRING_CODE + 32 {
            return Err(LeafDbError::BadNode("child reference is neither a hash nor a node"));
        }
    } else if item.len() >= 32 {
        return Err(LeafDbError::BadNode("inline child of 32 bytes or more"));
    }
    RlpNode::from_raw(item).map(Some).ok_or(LeafDbError::BadNode("child reference too long"))
}

/// Decodes hex-prefix encoded nibbles, returning them and whether the node is a leaf.
fn decode_hex_prefix(bytes: &[u8]) -> Result<(Nibbles, bool)> {
    let (&first, rest) =
        bytes.split_first().ok_or(LeafDbError::BadNode("empty hex-prefix path"))?;
    let flag = first >> 4;
    if flag > 3 || rest.len() > 32 || (flag & 1 == 0 && first & 0x0f != 0) {
        return Err(LeafDbError::BadNode("bad hex-prefix flag"));
    }
    let mut nibbles = Nibbles::new();
    if flag & 1 == 1 {
        if rest.len() == 32 {
            return Err(LeafDbError::BadNode("path longer than 64 nibbles"));
        }
        nibbles.push(first & 0x0f);
    }
    for b in rest {
        nibbles.push(b >> 4);
        nibbles.push(b & 0x0f);
    }
    Ok((nibbles, flag >= 2))
}

/// Whether `rlp` is a leaf node: a list of two items whose first, a string, has the hex-prefix
/// leaf flag. Reads two headers, decodes nothing; malformed input is no leaf.
pub fn is_leaf(rlp: &[u8]) -> bool {
    let mut buf = rlp;
    let Ok(header) = Header::decode(&mut buf) else { return false };
    if !header.list || header.payload_length != buf.len() {
        return false;
    }
    let (Ok(first), Ok(second)) = (take_item(&mut buf), take_item(&mut buf)) else {
        return false;
    };
    buf.is_empty()
        && !second.is_empty()
        && item_string(first)
            .is_ok_and(|path| path.first().is_some_and(|b| matches!(b >> 4, 2 | 3)))
}

impl DecodedNode {
    /// Decodes one node from its complete RLP encoding.
    pub fn decode(rlp: &[u8]) -> Result<Self> {
        let mut buf = rlp;
        let header =
            Header::decode(&mut buf).map_err(|_| LeafDbError::BadNode("bad node header"))?;
        if !header.list || header.payload_length != buf.len() {
            return Err(LeafDbError::BadNode("node is not exactly one list"));
        }
        let mut items: [&[u8]; 17] = [&[]; 17];
        let mut count = 0;
        while !buf.is_empty() {
            if count == 17 {
                return Err(LeafDbError::BadNode("node has more than 17 items"));
            }
            items[count] = take_item(&mut buf)?;
            count += 1;
        }
        match count {
            2 => {
                let (key, is_leaf) = decode_hex_prefix(item_string(items[0])?)?;
                if is_leaf {
                    Ok(Self::Leaf { key, value: item_string(items[1])?.to_vec() })
                } else {
                    if key.is_empty() {
                        return Err(LeafDbError::BadNode("extension with an empty key"));
                    }
                    let child = child_ref(items[1])?
                        .ok_or(LeafDbError::BadNode("extension without a child"))?;
                    Ok(Self::Extension { key, child })
                }
            }
            17 => {
                let mut children: Box<[Option<RlpNode>; 16]> = Box::default();
                for (slot, item) in children.iter_mut().zip(items) {
                    *slot = child_ref(item)?;
                }
                let value = item_string(items[16])?;
                let value = (!value.is_empty()).then(|| value.to_vec());
                Ok(Self::Branch { children, value })
            }
            _ => Err(LeafDbError::BadNode("node is neither 2 nor 17 items")),
        }
    }

    /// Encodes the node into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Leaf { key, value } => encode_leaf(key, value, out),
            Self::Extension { key, child } => encode_extension(key, child, out),
            Self::Branch { children, value } => encode_branch(children, value.as_deref(), out),
        }
    }
}

/// The hash a child reference points to, if it is a hash reference.
pub fn ref_hash(r: &RlpNode) -> Option<B256> {
    r.as_hash()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;
    use alloy_trie::TrieMask;
    use alloy_trie::nodes::{BranchNode, ExtensionNode, LeafNode, TrieNode};

    #[test]
    fn matches_alloy_encodings() {
        let mut out = Vec::new();
        let key = Nibbles::from_nibbles([1, 2, 3]);
        encode_leaf(&key, b"hello world, a long enough value", &mut out);
        assert_eq!(
            out,
            alloy_rlp::encode(LeafNode::new(key, b"hello world, a long enough value".to_vec()))
        );
        let child = RlpNode::word_rlp(&keccak256(b"x"));
        encode_extension(&key, &child, &mut out);
        assert_eq!(out, alloy_rlp::encode(ExtensionNode::new(key, child.clone())));
        let mut children: [Option<RlpNode>; 16] = Default::default();
        children[3] = Some(child.clone());
        children[9] = Some(child.clone());
        encode_branch(&children, None, &mut out);
        let mut mask = TrieMask::default();
        mask.set_bit(3);
        mask.set_bit(9);
        assert_eq!(out, alloy_rlp::encode(BranchNode::new(vec![child.clone(), child], mask)));
        let decoded = <TrieNode as alloy_rlp::Decodable>::decode(&mut &out[..]).unwrap();
        assert!(matches!(decoded, TrieNode::Branch(_)));
    }

    #[test]
    fn roundtrip_and_rejects_garbage() {
        let mut children: [Option<RlpNode>; 16] = Default::default();
        let mut inline = Vec::new();
        encode_leaf(&Nibbles::from_nibbles([5]), b"v", &mut inline);
        children[0] = Some(RlpNode::from_rlp(&inline));
        let node =
            DecodedNode::Branch { children: Box::new(children), value: Some(b"val".to_vec()) };
        let mut out = Vec::new();
        node.encode(&mut out);
        assert_eq!(DecodedNode::decode(&out).unwrap(), node);
        for bad in [&[][..], &[0x80], &[0xc0], &[0xc2, 0x80, 0x80], &[0xc3, 0x80, 0x80, 0x80]] {
            assert!(DecodedNode::decode(bad).is_err(), "{bad:?}");
        }
        // A truncated encoding must fail, never panic.
        for cut in 0..out.len() {
            assert!(DecodedNode::decode(&out[..cut]).is_err());
        }
    }
}
