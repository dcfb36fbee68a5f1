//! 16 clients read chunks while blocks are applied on another thread: every response is
//! consistent with exactly one head (the one it names), and block application keeps going. The
//! apply_block latency with and without the load is printed (never asserted: no timed tests).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy_primitives::{B256, U256, keccak256};
use common::*;
use leafsync_leafdb::{AccountChange, BlockDiff};
use leafsync_p2p::leaf::{AccountLeaf, ChunkContent, GetChunk, LeafMessage};
use leafsync_serve::{LeafServer, ServeConfig};

const CLIENTS: usize = 16;
const BLOCKS: u64 = 40;
const CHANGES_PER_BLOCK: u64 = 300;

/// Account fields after each block: hashed address → [(block, nonce, balance)].
type History = HashMap<B256, Vec<(u64, u64, U256)>>;

fn record(history: &mut History, number: u64, diff: &BlockDiff) {
    for (address, change) in &diff.accounts {
        let AccountChange::Updated(u) = change else { unreachable!() };
        history.entry(keccak256(address)).or_default().push((number, u.nonce, u.balance));
    }
}

/// The (nonce, balance) of an account at head `head` per the model and the history.
fn expected_at(fx: &Fixture, history: &History, leaf: &AccountLeaf, head: u64) -> (u64, U256) {
    let base = fx.model.binary_search_by_key(&leaf.hashed_address, |a| a.hashed).unwrap();
    let base = &fx.model[base].account;
    history
        .get(&leaf.hashed_address)
        .and_then(|h| h.iter().rev().find(|(n, _, _)| *n <= head))
        .map_or((base.nonce, base.balance), |(_, nonce, balance)| (*nonce, *balance))
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

#[test]
fn sixteen_clients_see_one_head_per_response_while_blocks_apply() {
    let fx = generated(20_000, 3);
    // Blocks are prepared up front so the model knows every head's state.
    let diffs: Vec<BlockDiff> =
        (1..=2 * BLOCKS).map(|n| marker_block(fx.params, n, CHANGES_PER_BLOCK)).collect();
    let mut history = History::new();
    for (i, diff) in diffs.iter().enumerate() {
        record(&mut history, i as u64 + 1, diff);
    }

    // Without load.
    let mut idle = Vec::new();
    for number in 1..=BLOCKS {
        let start = Instant::now();
        fx.db.apply_generated_block(&header(number), &diffs[number as usize - 1]).unwrap();
        idle.push(start.elapsed());
    }

    // With 16 clients asking for depth-2 chunks (cache reuse 0 blocks: hits only at one head).
    let server = Arc::new(LeafServer::new(
        Arc::clone(&fx.db),
        ServeConfig { cache_reuse_blocks: 0, ..ServeConfig::default() },
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (server, stop, answered) = (server.clone(), stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut i = c * 37;
                while !stop.load(Ordering::Relaxed) {
                    let request =
                        GetChunk { prefixes: vec![prefix(2, i % 256)], max_bytes: 1 << 20 };
                    let r = server.answer(&request.into());
                    let message = LeafMessage::decode(r.id, &r.payload(i as u64)).unwrap();
                    let LeafMessage::Chunk(pair) = message else { panic!() };
                    assert_eq!(pair.request_id, i as u64);
                    let [chunk] = <[_; 1]>::try_from(pair.message.pieces).unwrap();
                    got.push((i % 256, chunk));
                    answered.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                got
            })
        })
        .collect();
    let mut loaded = Vec::new();
    for number in BLOCKS + 1..=2 * BLOCKS {
        let start = Instant::now();
        fx.db.apply_generated_block(&header(number), &diffs[number as usize - 1]).unwrap();
        loaded.push(start.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let mut heads = std::collections::BTreeSet::new();
    let mut responses = 0;
    for client in clients {
        for (index, chunk) in client.join().unwrap() {
            let ChunkContent::Items(leaves) = chunk.content else { panic!("too large") };
            let expected = model_under(&fx.model, &prefix(2, index)).len();
            assert_eq!(leaves.len(), expected, "no account is created or deleted");
            for leaf in &leaves {
                assert_eq!(
                    (leaf.nonce, leaf.balance),
                    expected_at(&fx, &history, leaf, chunk.head_number),
                    "leaf {} in a chunk of head {}",
                    leaf.hashed_address,
                    chunk.head_number
                );
            }
            heads.insert(chunk.head_number);
            responses += 1;
        }
    }
    assert_eq!(fx.db.head().unwrap().unwrap().number, 2 * BLOCKS, "every block applied");
    assert!(heads.len() > 5, "responses spread over many heads: {heads:?}");
    let stats = server.stats();
    println!(
        "apply_block over {BLOCKS} blocks of {CHANGES_PER_BLOCK} accounts: idle mean {:?} p99 {:?} | \
         under {CLIENTS} clients mean {:?} p99 {:?} | {responses} chunk responses at {} heads, \
         cache {:?}",
        idle.iter().sum::<Duration>() / BLOCKS as u32,
        percentile(idle.clone(), 0.99),
        loaded.iter().sum::<Duration>() / BLOCKS as u32,
        percentile(loaded.clone(), 0.99),
        heads.len(),
        stats.cache,
    );
    assert_eq!(answered.load(Ordering::Relaxed), responses as u64);
}
