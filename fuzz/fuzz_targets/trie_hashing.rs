//! The trie's batched hashing (leafdb hashes independent inputs eight at a time where the CPU has
//! AVX-512, through hand-written SIMD): any set of inputs of any lengths hashes exactly as
//! keccak-256 one at a time does, and any set of keys and values builds the root alloy-trie's
//! `HashBuilder` builds (the builder batches leaves and closed branches).
#![no_main]

use std::collections::BTreeMap;

use alloy_primitives::keccak256;
use alloy_trie::{HashBuilder, Nibbles};
use leafsync_leafdb::trie::{keccak256_batch, root_of_sorted};
use libfuzzer_sys::fuzz_target;

/// Most inputs hashed together: enough for several groups of eight and their leftovers.
const MAX_INPUTS: usize = 64;

fuzz_target!(|data: &[u8]| {
    // Inputs: each takes a two-byte length (up to ~1.2 KiB, nine keccak blocks) and then that
    // many bytes, or what is left.
    let mut inputs = Vec::new();
    let mut rest = data;
    while let [a, b, tail @ ..] = rest {
        if inputs.len() == MAX_INPUTS {
            break;
        }
        let len = (usize::from(*a) << 8 | usize::from(*b)) % 1200;
        let (input, after) = tail.split_at(len.min(tail.len()));
        inputs.push(input);
        rest = after;
    }
    let batch = keccak256_batch(&inputs);
    assert_eq!(batch.len(), inputs.len());
    for (input, hash) in inputs.iter().zip(&batch) {
        assert_eq!(*hash, keccak256(input), "input of {} bytes", input.len());
    }

    // A trie: three-byte keys (six nibbles, so that branches and extensions of every depth
    // occur), each valued with the bytes after it (1 to 150 of them: inline, one-block and
    // multi-block leaves).
    let mut leaves = BTreeMap::new();
    for (i, key) in data.chunks_exact(3).enumerate() {
        let start = (i * 3 + 3).min(data.len());
        let len = 1 + usize::from(key[2]) % 150;
        let value = &data[start..(start + len).min(data.len())];
        if !value.is_empty() {
            leaves.insert(Nibbles::unpack(key), value.to_vec());
        }
    }
    let mut reference = HashBuilder::default();
    for (key, value) in &leaves {
        reference.add_leaf(*key, value);
    }
    let root = root_of_sorted(leaves.into_iter()).expect("sorted keys of one length build");
    assert_eq!(root, reference.root());
});
