//! Every key layout of the leafdb's tables, and the key range of a nibble prefix in each, in one
//! place. Key order is trie order in every table (see [`Table`]):
//!
//! | table | key |
//! |---|---|
//! | `accounts` | hashed address (32) |
//! | `storage` | hashed address (32) ‖ hashed slot (32) |
//! | `code` | code hash (32) |
//! | `account_nodes` | path, one byte per nibble (0–64) |
//! | `storage_nodes` | hashed address (32) ‖ path, one byte per nibble (0–64) |
//!
//! Flat keys are packed hashes, so a nibble prefix's range there is its packed form up to its
//! [`Nibbles::increment`]; node keys spell one nibble per byte, so a path's subtree is every key
//! that starts with the path's bytes.

use alloy_primitives::B256;
use alloy_trie::Nibbles;

use crate::kv::Table;

/// Greater than every key suffix the tables hold (at most 64 bytes follow any prefix we scan), so
/// `prefix ‖ KEY_SPACE_END` ends the range of keys starting with `prefix`, and on its own it
/// ends every table.
pub const KEY_SPACE_END: [u8; 65] = [0xff; 65];

/// The exclusive end of the range of keys that start with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    end.extend_from_slice(&KEY_SPACE_END);
    end
}

/// Key of a storage slot: hashed address ‖ hashed slot.
pub fn storage_key(account: &B256, slot: &B256) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(account.as_slice());
    k[32..].copy_from_slice(slot.as_slice());
    k
}

/// Key of an account-trie node: its path, one byte per nibble (so key order is pre-order).
pub fn path_key(path: &Nibbles) -> Vec<u8> {
    path.to_vec()
}

/// Key of a storage-trie node: owner ‖ path.
pub fn storage_node_key(owner: &B256, path: &Nibbles) -> Vec<u8> {
    let mut k = Vec::with_capacity(32 + path.len());
    k.extend_from_slice(owner.as_slice());
    k.extend(path.to_vec());
    k
}

/// The node table of a trie: the account trie (`owner` `None`) or a storage trie.
pub const fn node_table(owner: Option<&B256>) -> Table {
    match owner {
        None => Table::AccountNodes,
        Some(_) => Table::StorageNodes,
    }
}

/// The key of the node at `path` in the trie of `owner` (in [`node_table`]).
pub fn node_key(owner: Option<&B256>, path: &Nibbles) -> Vec<u8> {
    match owner {
        None => path_key(path),
        Some(o) => storage_node_key(o, path),
    }
}

/// The flat accounts (and their storage: the storage keys of an account start with its key)
/// whose hashed address starts with `prefix`: `[lo, hi)`.
pub fn account_range(prefix: &Nibbles) -> (Vec<u8>, Vec<u8>) {
    packed_range(&[], prefix)
}

/// `bound` of a flat key range ([`account_range`], [`storage_range`]) without its trailing zero
/// bytes. A flat key is as long as a bound or longer (32 bytes an account, 64 a slot), so no key
/// lies between the two forms, and the short one is the same for neighbouring ranges at any
/// depth: the end of prefix `[e, f, f]`, `[0xf0, 0x00]`, becomes `[0xf0]`, the start of prefix
/// `[f, 0]`.
pub fn range_bound(mut bound: Vec<u8>) -> Vec<u8> {
    while bound.last() == Some(&0) {
        bound.pop();
    }
    bound
}

/// The storage slots of `owner` whose hashed slot starts with `prefix`: `[lo, hi)`.
pub fn storage_range(owner: &B256, prefix: &Nibbles) -> (Vec<u8>, Vec<u8>) {
    packed_range(owner.as_slice(), prefix)
}

/// The nodes of the trie of `owner` at or below `prefix`: `[lo, hi)` in [`node_table`].
pub fn node_range(owner: Option<&B256>, prefix: &Nibbles) -> (Vec<u8>, Vec<u8>) {
    let base: &[u8] = owner.map_or(&[], |o| o.as_slice());
    let lo = node_key(owner, prefix);
    let hi = match lo.split_last() {
        // Path bytes are nibbles (0–15), so the last one plus one never overflows.
        Some((last, head)) if !prefix.is_empty() => [head, &[last + 1]].concat(),
        _ if base.is_empty() => KEY_SPACE_END.to_vec(),
        _ => prefix_end(base),
    };
    (lo, hi)
}

/// The nodes of the trie of `owner` below `path` whose next nibble is in `from..to` (`to` at
/// most 16): `[lo, hi)` in [`node_table`].
pub fn child_range(owner: Option<&B256>, path: &Nibbles, from: u8, to: u8) -> (Vec<u8>, Vec<u8>) {
    let mut lo = node_key(owner, path);
    let mut hi = lo.clone();
    lo.push(from);
    hi.push(to);
    (lo, hi)
}

/// The 32-byte key spelled by 64 nibbles (`None` for any other length).
pub fn key_of_path(path: &Nibbles) -> Option<B256> {
    (path.len() == 64).then(|| B256::from_slice(&path.pack()))
}

/// The keys `base ‖ k` where the packed key `k` starts with the nibble `prefix`.
fn packed_range(base: &[u8], prefix: &Nibbles) -> (Vec<u8>, Vec<u8>) {
    let lo = [base, &prefix.pack()].concat();
    let hi = match prefix.increment() {
        Some(next) => [base, &next.pack()].concat(),
        // All nibbles 0xf (or none): the range runs to the end of `base`'s keys.
        None if base.is_empty() => KEY_SPACE_END.to_vec(),
        None => prefix_end(base),
    };
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let n = |v: &[u8]| Nibbles::from_nibbles(v);
        assert_eq!(account_range(&n(&[0x3, 0xf])), (vec![0x3f], vec![0x40]));
        assert_eq!(account_range(&n(&[0x3])), (vec![0x30], vec![0x40]));
        assert_eq!(account_range(&n(&[0x3, 0xf, 0xf])), (vec![0x3f, 0xf0], vec![0x40, 0x00]));
        assert_eq!(account_range(&n(&[0xf, 0xf])).1, KEY_SPACE_END.to_vec());
        assert_eq!(account_range(&Nibbles::new()), (vec![], KEY_SPACE_END.to_vec()));
        // Neighbours at different depths meet once their bounds lose their trailing zeros.
        let end = range_bound(account_range(&n(&[0xe, 0xf, 0xf])).1);
        assert_eq!(end, range_bound(account_range(&n(&[0xf, 0x0])).0));
        assert_eq!(end, vec![0xf0]);
        let owner = B256::repeat_byte(1);
        assert_eq!(storage_range(&owner, &n(&[0xf, 0xf])).1, prefix_end(owner.as_slice()));
        assert_eq!(storage_range(&owner, &n(&[0x2])).1, [owner.as_slice(), &[0x30]].concat());
        assert_eq!(node_range(None, &n(&[1, 2])), (vec![1, 2], vec![1, 3]));
        assert_eq!(node_range(None, &n(&[0xf])), (vec![0xf], vec![0x10]));
        assert_eq!(node_range(None, &Nibbles::new()).1, KEY_SPACE_END.to_vec());
        assert_eq!(node_range(Some(&owner), &Nibbles::new()).1, prefix_end(owner.as_slice()));
        assert_eq!(child_range(None, &n(&[1]), 3, 16), (vec![1, 3], vec![1, 16]));
        assert_eq!(key_of_path(&Nibbles::unpack(owner)), Some(owner));
        assert_eq!(key_of_path(&n(&[1])), None);
    }
}
