//! In-order traversal of a stored trie's leaves.

use alloy_primitives::{B256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, nodes::RlpNode};

use super::{NodeSource, builder::nibbles_hex, node::DecodedNode};
use crate::error::{LeafDbError, Result};

/// Every `(key, value)` of the trie with root `root`, in key order (a key before the keys it is
/// a prefix of), read from `src` with each node checked against its parent's hash.
pub fn walk_leaves<S: NodeSource + ?Sized>(src: &S, root: B256) -> Result<Vec<(Nibbles, Vec<u8>)>> {
    let mut out = Vec::new();
    if root != EMPTY_ROOT_HASH {
        let node = load(src, Nibbles::new(), root)?;
        visit(src, Nibbles::new(), node, &mut out)?;
    }
    Ok(out)
}

fn load<S: NodeSource + ?Sized>(src: &S, path: Nibbles, expected: B256) -> Result<DecodedNode> {
    let rlp = src.node(&path)?.ok_or_else(|| LeafDbError::MissingNode {
        owner: src.owner(),
        path: nibbles_hex(&path),
        expected,
    })?;
    let got = keccak256(&rlp);
    if got != expected {
        return Err(LeafDbError::NodeHashMismatch {
            owner: src.owner(),
            path: nibbles_hex(&path),
            got,
            expected,
        });
    }
    DecodedNode::decode(&rlp)
}

fn child<S: NodeSource + ?Sized>(src: &S, path: Nibbles, r: &RlpNode) -> Result<DecodedNode> {
    match r.as_hash() {
        Some(h) => load(src, path, h),
        None => DecodedNode::decode(r),
    }
}

fn visit<S: NodeSource + ?Sized>(
    src: &S,
    path: Nibbles,
    node: DecodedNode,
    out: &mut Vec<(Nibbles, Vec<u8>)>,
) -> Result<()> {
    match node {
        DecodedNode::Leaf { key, value } => out.push((path.join(&key), value)),
        DecodedNode::Extension { key, child: c } => {
            let p = path.join(&key);
            let n = child(src, p, &c)?;
            visit(src, p, n, out)?;
        }
        DecodedNode::Branch { children, value } => {
            if let Some(v) = value {
                out.push((path, v));
            }
            for (i, c) in children.iter().enumerate() {
                if let Some(c) = c {
                    let mut p = path;
                    p.push(i as u8);
                    let n = child(src, p, c)?;
                    visit(src, p, n, out)?;
                }
            }
        }
    }
    Ok(())
}
