//! Tests of [`CodeQueue`].

use super::*;

/// `n` delivered codes of `len` bytes each.
fn deliver(codes: &mut CodeQueue, n: u8, len: usize) {
    let got: Vec<(B256, Vec<u8>)> = (0..n).map(|i| (B256::repeat_byte(i), vec![0; len])).collect();
    codes.delivered(&got);
}

#[test]
fn code_batches_follow_the_delivered_sizes() {
    let mut codes = CodeQueue::default();
    assert_eq!(codes.batch_size(), CODES_PER_REQUEST);
    deliver(&mut codes, 10, 4096);
    assert_eq!(codes.batch_size(), CODES_PER_REQUEST, "too few to average");
    deliver(&mut codes, 90, 4096);
    assert_eq!(codes.batch_size(), (CODE_BATCH_BYTES / 4096) as usize);
    let mut small = CodeQueue::default();
    deliver(&mut small, 100, 100);
    assert_eq!(small.batch_size(), MAX_CODES_PER_BATCH);
    let mut large = CodeQueue::default();
    deliver(&mut large, 100, 24 * 1024);
    assert_eq!(large.batch_size(), CODES_PER_REQUEST);
}

/// Codes go out lowest hash first, those put back before the fresh ones (but not to a peer
/// that tried them); the watermark is the lowest code not delivered, in flight or queued.
#[test]
fn codes_are_asked_in_hash_order_below_a_watermark() {
    let mut codes = CodeQueue::default();
    let hash = |i: u8| B256::repeat_byte(i);
    for i in [5, 1, 9, 3, 7] {
        codes.want(hash(i), |_| Ok(false)).unwrap();
    }
    assert_eq!(codes.watermark(), Some(hash(1)));
    let first = codes.take(0, &[0, 1], 2).unwrap();
    assert_eq!(first.iter().map(|t| t.hash).collect::<Vec<_>>(), [hash(1), hash(3)]);
    assert_eq!(codes.len(), 3);
    // 3 came, 1 did not: the watermark stays at 1, which goes out again first, but not to
    // the peer that failed it.
    let (one, three) = (first[0].clone(), first[1].clone());
    codes.delivered(&[(three.hash, vec![3])]);
    assert_eq!(codes.watermark(), Some(hash(1)));
    codes.requeue([one], 0);
    let next = codes.take(0, &[0, 1], 2).unwrap();
    assert_eq!(next.iter().map(|t| t.hash).collect::<Vec<_>>(), [hash(5), hash(7)]);
    let again = codes.take(1, &[0, 1], 2).unwrap();
    assert_eq!(again.iter().map(|t| t.hash).collect::<Vec<_>>(), [hash(1), hash(9)]);
    assert!(codes.is_empty());
    // A code found later, below the watermark, lowers it.
    codes.want(hash(0), |_| Ok(false)).unwrap();
    assert_eq!(codes.watermark(), Some(hash(0)));
    assert_eq!(codes.take(1, &[0, 1], 2).unwrap()[0].hash, hash(0));
    let got: Vec<_> = [0, 1, 5, 7, 9].map(|i| (hash(i), vec![i])).into();
    codes.delivered(&got);
    assert_eq!(codes.watermark(), None, "every code came");
}

#[test]
fn a_code_is_asked_once_unless_forgotten() {
    let mut codes = CodeQueue::default();
    let hash = B256::repeat_byte(1);
    codes.want(hash, |_| Ok(false)).unwrap();
    codes.want(hash, |_| Ok(false)).unwrap();
    codes.want(EMPTY_CODE_HASH, |_| Ok(false)).unwrap();
    codes.want(B256::repeat_byte(2), |_| Ok(true)).unwrap();
    assert_eq!(codes.len(), 1);
    codes.forget(&hash);
    codes.want(hash, |_| Ok(false)).unwrap();
    assert_eq!(codes.len(), 1, "asked again, once");
    assert_eq!(codes.take(0, &[0], 8).unwrap().len(), 1);
}

/// Only codes queued count as unwritten (not the empty code, nor one already stored), and a
/// write takes off only what it stored: a code that went astray stays counted.
#[test]
fn a_queued_code_is_unwritten_until_a_write_stores_it() {
    let mut codes = CodeQueue::default();
    let (a, b) = (B256::repeat_byte(1), B256::repeat_byte(2));
    codes.want(a, |_| Ok(false)).unwrap();
    codes.want(b, |_| Ok(false)).unwrap();
    codes.want(EMPTY_CODE_HASH, |_| Ok(false)).unwrap();
    codes.want(B256::repeat_byte(3), |_| Ok(true)).unwrap();
    assert_eq!(codes.unwritten(), 2);
    codes.written(&[a, B256::repeat_byte(9)]);
    assert_eq!(codes.unwritten(), 1, "b was never written");
    codes.written(&[a]);
    assert_eq!(codes.unwritten(), 1, "a second write of a changes nothing");
    codes.written(&[b]);
    assert_eq!(codes.unwritten(), 0);
}

/// A code delivered but whose write never returned (it went astray) is found missing by the
/// final check, forgotten and queued again, and counted unwritten once.
#[test]
fn a_code_that_went_astray_is_queued_again() {
    let mut codes = CodeQueue::default();
    let hash = B256::repeat_byte(1);
    codes.want(hash, |_| Ok(false)).unwrap();
    let task = codes.take(0, &[0], 8).unwrap();
    codes.delivered(&[(task[0].hash, vec![1])]);
    assert!(codes.is_empty() && codes.unwritten() == 1);
    codes.forget(&hash);
    assert!(codes.want(hash, |_| Ok(false)).unwrap(), "queued again");
    assert_eq!((codes.len(), codes.unwritten()), (1, 1));
    let task = codes.take(0, &[0], 8).unwrap();
    codes.delivered(&[(task[0].hash, vec![1])]);
    codes.written(&[hash]);
    assert_eq!(codes.unwritten(), 0);
    // Written, then found missing (deleted behind the sync's back): asked again too.
    codes.forget(&hash);
    assert!(codes.want(hash, |_| Ok(false)).unwrap());
    assert_eq!(codes.unwritten(), 1);
}

/// What the queue holds per code at its peak, every code queued and none asked (most codes
/// are asked after the account chunks that name them): one map entry and one heap slot. At
/// mainnet's millions of distinct codes this is the queue's memory. Measured here: 86 bytes a
/// code queued, 45 once written; the four sets it had before (two hash sets and two B-trees of
/// every code) held 187 and 86.
#[test]
fn a_queued_code_costs_under_100_bytes() {
    const CODES: u64 = 200_000;
    let before = crate::ALLOCATOR.thread_live();
    let mut codes = CodeQueue::default();
    for i in 0..CODES {
        codes.want(alloy_primitives::keccak256(i.to_be_bytes()), |_| Ok(false)).unwrap();
    }
    let queued = (crate::ALLOCATOR.thread_live() - before) as u64 / CODES;
    // Every code delivered and written: the map alone.
    while !codes.is_empty() {
        for task in codes.take(0, &[0], 1024).unwrap() {
            codes.delivered(&[(task.hash, Vec::new())]);
            codes.written(&[task.hash]);
        }
    }
    let written = (crate::ALLOCATOR.thread_live() - before) as u64 / CODES;
    println!("bytes per code: {queued} queued, {written} written");
    assert!(queued <= 100, "{queued} bytes per queued code");
    assert!(written <= 60, "{written} bytes per written code");
    drop(codes);
}
