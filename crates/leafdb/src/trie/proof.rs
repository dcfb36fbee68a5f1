//! Merkle proofs from a stored trie.

use alloy_primitives::B256;
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles};

use super::{NodeSource, node::DecodedNode};
use crate::error::Result;

/// The stored nodes on the path from the root to `key`: a Merkle proof as `eth_getProof`
/// returns it (embedded nodes travel inside their parents).
pub fn prove<S: NodeSource + ?Sized>(src: &S, root: B256, key: &Nibbles) -> Result<Vec<Vec<u8>>> {
    let mut proof = Vec::new();
    if root == EMPTY_ROOT_HASH {
        return Ok(proof);
    }
    let rlp = src.load_verified(&Nibbles::new(), root)?;
    let mut node = DecodedNode::decode(&rlp)?;
    proof.push(rlp);
    let mut depth = 0;
    loop {
        let next = match &node {
            DecodedNode::Leaf { .. } => return Ok(proof),
            DecodedNode::Extension { key: k, child } => {
                if !key.slice(depth..).starts_with(k) {
                    return Ok(proof);
                }
                depth += k.len();
                child.clone()
            }
            DecodedNode::Branch { children, .. } => {
                if depth >= key.len() {
                    return Ok(proof);
                }
                let Some(child) = &children[key.get_unchecked(depth) as usize] else {
                    return Ok(proof);
                };
                depth += 1;
                child.clone()
            }
        };
        node = match next.as_hash() {
            Some(h) => {
                let rlp = src.load_verified(&key.slice(..depth), h)?;
                let n = DecodedNode::decode(&rlp)?;
                proof.push(rlp);
                n
            }
            None => DecodedNode::decode(&next)?,
        };
    }
}
