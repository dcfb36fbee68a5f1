//! Keccak-256 of many independent inputs at once.
//!
//! A trie builder hashes nodes that do not depend on each other: a batch of leaves, the
//! branches closed below one parent; a sync checks a batch of contract codes. [`hash_spans`] and
//! [`keccak256_batch`] hash such inputs eight at a time where the CPU has AVX-512: the eight
//! states sit side by side in the vector registers, one lane each, and one run of the
//! permutation serves all eight (about four times the throughput of one hash at a time on the
//! project's machine, see docs/benchmarks.md). Inputs of up to [`MAX_BLOCKS`] keccak blocks (a
//! leaf takes one, a full branch four) are grouped by their number of blocks, so the eight of a
//! group absorb in step; longer inputs and the groups' leftovers are sorted by length and taken
//! eight at a time as well (a shorter input's lane idles through the longer ones' extra
//! blocks). Fewer than [`MIN_BATCH`] left over, and CPUs without AVX-512, take the ordinary
//! one-at-a-time hash.

use std::ops::Range;

use alloy_primitives::{B256, keccak256};

/// Bytes one keccak-256 block takes (its rate).
const RATE: usize = 136;
/// Lanes (of 8 bytes) in one block.
const RATE_LANES: usize = RATE / 8;
/// Hashes computed together.
const WAYS: usize = 8;
/// The longest input hashed eight at a time, in blocks: a branch with sixteen hashed children
/// (532 bytes) takes four.
const MAX_BLOCKS: usize = 4;
/// Below this many short inputs a batch is hashed one at a time: a run of the eight-way
/// permutation costs about three single ones.
const MIN_BATCH: usize = 3;

/// Hashes `arena[span]` for every span into `out` (cleared first), in order.
pub(super) fn hash_spans(arena: &[u8], spans: &[Range<usize>], out: &mut Vec<B256>) {
    hash_each(spans.len(), |i| &arena[spans[i].clone()], out);
}

/// The keccak-256 hashes of `inputs`, in order: eight at a time where the CPU allows (see the
/// module docs), for callers with many independent inputs, such as a batch of contract codes.
pub fn keccak256_batch(inputs: &[&[u8]]) -> Vec<B256> {
    let mut out = Vec::new();
    hash_each(inputs.len(), |i| inputs[i], &mut out);
    out
}

/// How many hashes [`keccak256_batch`] and the trie builder compute together on this CPU: eight
/// with AVX-512, else one. Benchmarks report it, since their figures depend on it.
pub fn keccak_lanes() -> usize {
    if eight_way_available() { WAYS } else { 1 }
}

/// Hashes `input(i)` for every `i < n` into `out` (cleared first), in order.
fn hash_each<'a>(n: usize, input: impl Fn(usize) -> &'a [u8], out: &mut Vec<B256>) {
    out.clear();
    out.resize(n, B256::ZERO);
    if !eight_way_available() {
        for (i, hash) in out.iter_mut().enumerate() {
            *hash = keccak256(input(i));
        }
        return;
    }
    // Inputs of up to `MAX_BLOCKS` blocks are grouped by their number of blocks as they come.
    // What is left over, and the longer inputs, are sorted by length and taken eight at a time
    // (the shorter ones of a group wait through the longer ones' extra blocks).
    let mut groups = [([0usize; WAYS], 0usize); MAX_BLOCKS];
    let mut long = Vec::new();
    for i in 0..n {
        let Some((group, filled)) = groups.get_mut(blocks_of(input(i).len()) - 1) else {
            long.push(i);
            continue;
        };
        group[*filled] = i;
        *filled += 1;
        if *filled == WAYS {
            hash_group(&input, group, out);
            *filled = 0;
        }
    }
    let mut rest = [0usize; MAX_BLOCKS * (WAYS - 1)];
    let mut left = 0;
    for (group, filled) in &groups {
        rest[left..left + filled].copy_from_slice(&group[..*filled]);
        left += filled;
    }
    let rest = if long.is_empty() {
        &mut rest[..left]
    } else {
        long.extend_from_slice(&rest[..left]);
        long.sort_unstable_by_key(|&i| input(i).len());
        &mut long[..]
    };
    for chunk in rest.chunks(WAYS) {
        if chunk.len() >= MIN_BATCH {
            // The unused lanes hash the last input again; their results are dropped.
            let group: [usize; WAYS] = std::array::from_fn(|k| chunk[k.min(chunk.len() - 1)]);
            hash_group(&input, &group, out);
        } else {
            for &i in chunk {
                out[i] = keccak256(input(i));
            }
        }
    }
}

/// Keccak blocks an input of `len` bytes takes, its padding included (at least one byte).
const fn blocks_of(len: usize) -> usize {
    len / RATE + 1
}

/// Whether [`hash_group`] can run on this CPU.
fn eight_way_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Hashes the eight inputs `group` names into their places in `out`. Only called when
/// [`eight_way_available`].
fn hash_group<'a>(input: impl Fn(usize) -> &'a [u8], group: &[usize; WAYS], out: &mut [B256]) {
    let inputs: [&[u8]; WAYS] = std::array::from_fn(|k| input(group[k]));
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: callers check `eight_way_available`, that is AVX-512F, first.
        let digests = unsafe { x86::keccak256_x8(&inputs) };
        for (digest, &i) in digests.iter().zip(group) {
            out[i] = B256::from(*digest);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (input, &i) in inputs.iter().zip(group) {
        out[i] = keccak256(input);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m512i, _mm512_rolv_epi64, _mm512_set1_epi64, _mm512_setzero_si512,
        _mm512_ternarylogic_epi64, _mm512_xor_si512,
    };

    use super::{RATE, RATE_LANES, WAYS, blocks_of};

    /// keccak-f[1600]'s round constants.
    const ROUND_CONSTANTS: [u64; 24] = [
        0x0000_0000_0000_0001,
        0x0000_0000_0000_8082,
        0x8000_0000_0000_808a,
        0x8000_0000_8000_8000,
        0x0000_0000_0000_808b,
        0x0000_0000_8000_0001,
        0x8000_0000_8000_8081,
        0x8000_0000_0000_8009,
        0x0000_0000_0000_008a,
        0x0000_0000_0000_0088,
        0x0000_0000_8000_8009,
        0x0000_0000_8000_000a,
        0x0000_0000_8000_808b,
        0x8000_0000_0000_008b,
        0x8000_0000_0000_8089,
        0x8000_0000_0000_8003,
        0x8000_0000_0000_8002,
        0x8000_0000_0000_0080,
        0x0000_0000_0000_800a,
        0x8000_0000_8000_000a,
        0x8000_0000_8000_8081,
        0x8000_0000_0000_8080,
        0x0000_0000_8000_0001,
        0x8000_0000_8000_8008,
    ];
    /// ρ's rotations, in the order π visits the lanes.
    const RHO: [i64; 24] =
        [1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44];
    /// π's walk over the lanes, starting after lane 1.
    const PI: [usize; 24] =
        [10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1];
    /// `vpternlogq` truth tables: `a ^ b ^ c`, and χ's `a ^ (!b & c)`.
    const XOR3: i32 = 0x96;
    const CHI: i32 = 0xd2;

    /// keccak-f[1600] on eight states at once, lane `i` of state `k` in element `k` of `a[i]`.
    #[target_feature(enable = "avx512f")]
    fn permute(a: &mut [__m512i; 25]) {
        let rotate = |x, n: i64| _mm512_rolv_epi64(x, _mm512_set1_epi64(n));
        for rc in ROUND_CONSTANTS {
            // θ
            let mut c = [_mm512_setzero_si512(); 5];
            for (x, column) in c.iter_mut().enumerate() {
                let t = _mm512_ternarylogic_epi64::<XOR3>(a[x], a[x + 5], a[x + 10]);
                *column = _mm512_ternarylogic_epi64::<XOR3>(t, a[x + 15], a[x + 20]);
            }
            for x in 0..5 {
                let d = _mm512_xor_si512(c[(x + 4) % 5], rotate(c[(x + 1) % 5], 1));
                for y in 0..5 {
                    a[5 * y + x] = _mm512_xor_si512(a[5 * y + x], d);
                }
            }
            // ρ and π
            let mut last = a[1];
            for (&to, &by) in PI.iter().zip(&RHO) {
                let moved = a[to];
                a[to] = rotate(last, by);
                last = moved;
            }
            // χ
            for y in 0..5 {
                let row = [a[5 * y], a[5 * y + 1], a[5 * y + 2], a[5 * y + 3], a[5 * y + 4]];
                for x in 0..5 {
                    a[5 * y + x] = _mm512_ternarylogic_epi64::<CHI>(
                        row[x],
                        row[(x + 1) % 5],
                        row[(x + 2) % 5],
                    );
                }
            }
            // ι
            a[0] = _mm512_xor_si512(a[0], _mm512_set1_epi64(rc as i64));
        }
    }

    /// Keccak-256 of eight inputs of any lengths: absorbed block by block in step, each
    /// digest taken after its own last block.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn keccak256_x8(inputs: &[&[u8]; WAYS]) -> [[u8; 32]; WAYS] {
        let blocks = inputs.map(|input| blocks_of(input.len()));
        let mut a = [_mm512_setzero_si512(); 25];
        let mut digests = [[0u8; 32]; WAYS];
        for b in 0..blocks.iter().copied().max().unwrap_or(0) {
            // Lane `i` of block `b` of every input; zeros for inputs already absorbed.
            let mut columns = [[0u64; WAYS]; RATE_LANES];
            for (k, input) in inputs.iter().enumerate() {
                let Some(rest) = input.get(b * RATE..) else { continue };
                let mut padded = [0u8; RATE];
                let block = if b + 1 < blocks[k] {
                    &rest[..RATE]
                } else if b + 1 == blocks[k] {
                    // keccak's pad10*1 after the 0x01 domain byte.
                    padded[..rest.len()].copy_from_slice(rest);
                    padded[rest.len()] ^= 0x01;
                    padded[RATE - 1] ^= 0x80;
                    &padded[..]
                } else {
                    continue;
                };
                for (column, word) in columns.iter_mut().zip(block.chunks_exact(8)) {
                    column[k] = u64::from_le_bytes(word.try_into().unwrap_or_default());
                }
            }
            for (lane, column) in a.iter_mut().zip(columns) {
                // SAFETY: `[u64; 8]` and `__m512i` are both 64 plain bytes.
                let column = unsafe { std::mem::transmute::<[u64; WAYS], __m512i>(column) };
                *lane = _mm512_xor_si512(*lane, column);
            }
            permute(&mut a);
            if !blocks.contains(&(b + 1)) {
                continue;
            }
            // SAFETY: as above.
            let words =
                a[..4].iter().map(|l| unsafe { std::mem::transmute::<__m512i, [u64; WAYS]>(*l) });
            for (w, word) in words.enumerate() {
                for k in (0..WAYS).filter(|&k| blocks[k] == b + 1) {
                    digests[k][8 * w..8 * w + 8].copy_from_slice(&word[k].to_le_bytes());
                }
            }
        }
        digests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes `inputs` through [`hash_spans`] and one at a time, and compares.
    fn check(inputs: &[Vec<u8>]) {
        let mut arena = Vec::new();
        let mut spans = Vec::new();
        for input in inputs {
            spans.push(arena.len()..arena.len() + input.len());
            arena.extend_from_slice(input);
        }
        let mut out = Vec::new();
        hash_spans(&arena, &spans, &mut out);
        let expected: Vec<B256> = inputs.iter().map(keccak256).collect();
        let slices: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        assert_eq!(keccak256_batch(&slices), expected);
        assert_eq!(out, expected, "lengths {:?}", inputs.iter().map(Vec::len).collect::<Vec<_>>());
    }

    #[test]
    fn every_length_around_the_block_hashes_as_alone() {
        // Lengths 0 to 700 (every block edge up to five blocks: the last hashed eight at a time
        // is four), in batches of every size from 1 to 20 so that full groups, short tails and
        // long inputs mix.
        let inputs: Vec<Vec<u8>> =
            (0..=700usize).map(|n| (0..n).map(|i| (i * 31 + n * 7) as u8).collect()).collect();
        for batch in 1..=20 {
            for window in inputs.chunks(batch) {
                check(window);
            }
        }
        check(&inputs);
        // The same lengths out of order, so that groups of every block count fill side by side.
        let mixed: Vec<Vec<u8>> = (0..=700usize).map(|n| inputs[n * 389 % 701].clone()).collect();
        for window in mixed.chunks(40) {
            check(window);
        }
    }

    #[test]
    fn inputs_of_many_blocks_hash_as_alone() {
        // Code-sized inputs (1 to 9 KiB, 8 to 67 blocks) of all different lengths in one batch,
        // among a few short ones: groups of eight absorb different numbers of blocks.
        let inputs: Vec<Vec<u8>> = (1000..9000usize)
            .step_by(377)
            .chain([5, 200, 3000, 64])
            .map(|n| (0..n).map(|i| (i * 13 + n) as u8).collect())
            .collect();
        check(&inputs);
        check(&inputs[3..]);
    }

    #[test]
    fn known_digests() {
        // keccak256("") and keccak256("abc"), as published.
        let mut out = Vec::new();
        let arena = b"abc";
        hash_spans(arena, &[0..0, 0..3, 0..0, 0..3, 0..0, 0..3, 0..0, 0..3], &mut out);
        let empty = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470";
        let abc = "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45";
        for (i, hash) in out.iter().enumerate() {
            let want = if i % 2 == 0 { empty } else { abc };
            assert_eq!(alloy_primitives::hex::encode(hash), want);
        }
    }
}
