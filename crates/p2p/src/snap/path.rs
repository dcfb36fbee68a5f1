//! go-ethereum's compact ("hex-prefix") encoding of trie paths as `GetTrieNodes` carries them,
//! and the grouping of node requests into path sets (account-trie paths alone, storage-trie
//! paths under their account).
//!
//! A compact path is a flag nibble (bit 1: the path ends in a leaf terminator, bit 0: odd
//! length), then the first nibble when odd, then the rest packed two per byte. An even path
//! gets a padding nibble of zero after the flag. The empty path (the root) is `[0x00]`.

use super::types::TrieNodePathSet;
use alloy_primitives::{B256, Bytes};

/// Nibble go-ethereum appends to a key's nibbles to mark a leaf (its hex "terminator").
pub const TERMINATOR: u8 = 16;

/// The compact encoding of `nibbles` (each `< 16`), with the terminator flag when `leaf`.
pub fn hex_to_compact(nibbles: &[u8], leaf: bool) -> Vec<u8> {
    let odd = nibbles.len() % 2 == 1;
    let mut out = Vec::with_capacity(nibbles.len() / 2 + 1);
    let flag = (u8::from(leaf) << 5) | (u8::from(odd) << 4);
    let rest = if odd {
        out.push(flag | (nibbles[0] & 0x0f));
        &nibbles[1..]
    } else {
        out.push(flag);
        nibbles
    };
    for pair in rest.chunks_exact(2) {
        out.push((pair[0] << 4) | (pair[1] & 0x0f));
    }
    out
}

/// The nibbles of a compact path, followed by [`TERMINATOR`] when its flag says leaf, exactly as
/// go-ethereum's `compactToHex` reads it (flag values above 3 are not refused: bit 1 and bit 0
/// are read, as geth does). The empty input is the empty path.
pub fn compact_to_hex(compact: &[u8]) -> Vec<u8> {
    let Some(&first) = compact.first() else { return Vec::new() };
    let flag = first >> 4;
    let mut out = Vec::with_capacity(compact.len() * 2);
    if flag & 1 == 1 {
        out.push(first & 0x0f);
    }
    for b in &compact[1..] {
        out.push(b >> 4);
        out.push(b & 0x0f);
    }
    // geth keeps the terminator when the flag nibble is 2 or more.
    if flag >= 2 {
        out.push(TERMINATOR);
    }
    out
}

impl TrieNodePathSet {
    /// A path set asking for the account-trie node at `nibbles`.
    pub fn account(nibbles: &[u8]) -> Self {
        Self(vec![Bytes::from(hex_to_compact(nibbles, false))])
    }

    /// A path set asking for the nodes at `paths` of `account`'s storage trie.
    pub fn storage<'a>(account: &B256, paths: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut set = vec![Bytes::copy_from_slice(account.as_slice())];
        set.extend(paths.into_iter().map(|p| Bytes::from(hex_to_compact(p, false))));
        Self(set)
    }

    /// Number of node paths in the set (the account hash of a storage set not counted).
    pub fn node_count(&self) -> usize {
        if self.0.len() == 1 { 1 } else { self.0.len().saturating_sub(1) }
    }
}

/// Groups node requests — `(None, path)` for the account trie, `(Some(account), path)` for a
/// storage trie — into path sets in request order: consecutive requests of one storage trie share
/// a set, so the account hash travels once per run (and the answer keeps the request order).
pub fn group_path_sets<'a, I>(requests: I) -> Vec<TrieNodePathSet>
where
    I: IntoIterator<Item = (Option<B256>, &'a [u8])>,
{
    let mut sets: Vec<TrieNodePathSet> = Vec::new();
    let mut current: Option<B256> = None;
    for (owner, path) in requests {
        match owner {
            None => {
                current = None;
                sets.push(TrieNodePathSet::account(path));
            }
            Some(account) => match sets.last_mut() {
                Some(set) if current == Some(account) => {
                    set.0.push(Bytes::from(hex_to_compact(path, false)));
                }
                _ => {
                    current = Some(account);
                    sets.push(TrieNodePathSet::storage(&account, [path]));
                }
            },
        }
    }
    sets
}
