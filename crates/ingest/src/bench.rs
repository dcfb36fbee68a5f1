//! The ingest benchmark: blocks per second through the whole per-block path (JSON decoding of
//! the trace, [`fold_block`], the undo read [`LeafDb::undo_of`], [`LeafDb::apply_block`]) with
//! mainnet-sized blocks on a large synthetic state.
//!
//! Each block's trace is generated as geth-format diff-mode JSON from the current state (not
//! timed): transactions of ten accounts each; every account's balance and nonce change; about
//! one touched account in ten is a contract whose slots are written (existing slots overwritten
//! and new ones created), its `pre` carrying its code as geth's does.

use std::{path::Path, time::Instant};

use alloy_primitives::{Address, U256, keccak256};
use leafsync_leafdb::{
    DbOptions, GenParams, KvStore, LeafDb, LeafDbConfig, generate::CONTRACT_EVERY,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{error::IngestError, fold::fold_block, types::TxTrace};

/// Accounts per synthetic transaction: a typical mainnet transaction touches a handful.
pub const ACCOUNTS_PER_TX: usize = 10;

/// What to measure.
#[derive(Debug, Clone, Copy)]
pub struct IngestBenchParams {
    /// The synthetic state (accounts and seed).
    pub state: GenParams,
    /// Blocks to apply.
    pub blocks: u64,
    /// Accounts changed per block (mainnet-sized: 2,000).
    pub block_accounts: u64,
    /// Storage slots changed per block (mainnet-sized: 5,000).
    pub block_slots: u64,
}

/// The measured result.
#[derive(Debug, Clone, Serialize)]
pub struct IngestBenchReport {
    /// Accounts in the state.
    pub state_accounts: u64,
    /// Seconds to generate the state.
    pub generate_s: f64,
    /// Blocks applied.
    pub blocks: u64,
    /// Accounts changed per block (as folded).
    pub block_accounts: u64,
    /// Slots changed per block (as folded).
    pub block_slots: u64,
    /// Mean trace JSON size per block, bytes.
    pub trace_bytes: u64,
    /// Blocks per second through decode + fold + apply.
    pub blocks_per_s: f64,
    /// Mean milliseconds decoding the trace JSON.
    pub decode_ms: f64,
    /// Mean milliseconds folding.
    pub fold_ms: f64,
    /// Mean milliseconds reading what the block overwrites, to undo it in a reorg
    /// ([`LeafDb::undo_of`], as the follower does before each block).
    pub undo_ms: f64,
    /// Mean milliseconds in `apply_block`.
    pub apply_ms: f64,
}

/// Generates a state of `params.state` in a new leafdb at `dir` and measures
/// [`IngestBenchParams::blocks`] blocks applied on top of it.
pub fn run(dir: &Path, params: IngestBenchParams) -> Result<IngestBenchReport, IngestError> {
    let db = LeafDb::open(dir, &DbOptions::default(), LeafDbConfig::default())?;
    let t = Instant::now();
    db.generate(params.state)?;
    let generate_s = t.elapsed().as_secs_f64();
    let (mut decode, mut fold, mut undo, mut apply) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let (mut bytes, mut accounts, mut slots) = (0u64, 0u64, 0u64);
    for b in 1..=params.blocks {
        let text = synthetic_trace(&db, params, b)?.to_string();
        bytes += text.len() as u64;
        let t = Instant::now();
        let traces: Vec<TxTrace> = serde_json::from_str(&text)
            .map_err(|source| IngestError::Decode { method: "bench", source })?;
        let t1 = Instant::now();
        let diff = fold_block(b, &traces, &[], &db)?;
        let t2 = Instant::now();
        std::hint::black_box(db.undo_of(&diff)?);
        let t3 = Instant::now();
        let header = GenParams::block_header(b);
        db.apply_block(&header, &diff)?;
        let t4 = Instant::now();
        decode += (t1 - t).as_secs_f64();
        fold += (t2 - t1).as_secs_f64();
        undo += (t3 - t2).as_secs_f64();
        apply += (t4 - t3).as_secs_f64();
        accounts += diff.accounts.len() as u64;
        slots += diff
            .accounts
            .values()
            .map(|c| match c {
                leafsync_leafdb::AccountChange::Updated(u) => u.storage.len() as u64,
                leafsync_leafdb::AccountChange::Deleted => 0,
            })
            .sum::<u64>();
    }
    let n = params.blocks.max(1);
    let total = decode + fold + undo + apply;
    Ok(IngestBenchReport {
        state_accounts: params.state.accounts,
        generate_s,
        blocks: params.blocks,
        block_accounts: accounts / n,
        block_slots: slots / n,
        trace_bytes: bytes / n,
        blocks_per_s: if total > 0.0 { params.blocks as f64 / total } else { 0.0 },
        decode_ms: decode * 1e3 / n as f64,
        fold_ms: fold * 1e3 / n as f64,
        undo_ms: undo * 1e3 / n as f64,
        apply_ms: apply * 1e3 / n as f64,
    })
}

/// A deterministic index stream for block `b`.
fn pick(seed: u64, b: u64, k: u64, n: u64) -> u64 {
    let h = keccak256([seed.to_be_bytes(), b.to_be_bytes(), k.to_be_bytes()].concat());
    u64::from_be_bytes(h[..8].try_into().unwrap_or_default()) % n.max(1)
}

fn hex_u256(v: U256) -> String {
    format!("{v:#x}")
}

/// The diff-mode trace JSON of synthetic block `b`, consistent with the current state of `db`.
pub fn synthetic_trace<S: KvStore>(
    db: &LeafDb<S>,
    params: IngestBenchParams,
    b: u64,
) -> Result<Value, IngestError> {
    let gp = params.state;
    let mut seen = std::collections::BTreeSet::new();
    let mut touched: Vec<(Address, Option<u64>)> = Vec::new();
    for k in 0..params.block_accounts {
        // Every CONTRACT_EVERY-th touched account is a contract of the state.
        let i = if k % CONTRACT_EVERY == 0 {
            pick(gp.seed, b, k, gp.accounts / CONTRACT_EVERY) * CONTRACT_EVERY + CONTRACT_EVERY - 1
        } else {
            pick(gp.seed, b, k, gp.accounts)
        };
        if seen.insert(i) {
            touched.push((gp.address(i), Some(i)));
        }
    }
    let contracts = touched.iter().filter(|(_, i)| i.is_some_and(|i| gp.account(i).code.is_some()));
    let slots_per_contract = params.block_slots.div_ceil((contracts.count() as u64).max(1));
    let mut txs = Vec::new();
    let mut slot_budget = params.block_slots;
    for chunk in touched.chunks(ACCOUNTS_PER_TX) {
        let (mut pre, mut post) = (Map::new(), Map::new());
        for &(address, index) in chunk {
            let Some(acct) = db.account_by_address(&address)? else { continue };
            let key = format!("{address:#x}");
            let mut p = json!({"balance": hex_u256(acct.balance), "nonce": acct.nonce});
            let mut q =
                json!({"balance": hex_u256(acct.balance + U256::from(b)), "nonce": acct.nonce + 1});
            let synthetic = index.map(|i| gp.account(i));
            if let Some(code) = synthetic.as_ref().and_then(|s| s.code) {
                p["code"] = json!(format!("0x{}", alloy_primitives::hex::encode(gp.code(code))));
                let (mut ps, mut qs) = (Map::new(), Map::new());
                let hashed = keccak256(address);
                // Distinct slots: a repeated pick is skipped, within a bounded number of tries.
                for j in 0..slots_per_contract * 4 {
                    if qs.len() as u64 >= slots_per_contract || slot_budget == 0 {
                        break;
                    }
                    let i = index.unwrap_or_default();
                    let existing = synthetic.as_ref().map_or(0, |s| s.slots);
                    // Half overwrite existing slots, half create new ones.
                    let slot = if j % 2 == 0 && existing > 0 {
                        gp.slot(i, pick(gp.seed, b, j, existing)).0
                    } else {
                        keccak256([b.to_be_bytes(), j.to_be_bytes()].concat())
                    };
                    if qs.contains_key(&format!("{slot:#x}")) {
                        continue;
                    }
                    let old = db.storage(&hashed, &keccak256(slot))?;
                    if !old.is_zero() {
                        ps.insert(format!("{slot:#x}"), json!(format!("{:#066x}", old)));
                    }
                    let new = U256::from(b * 1_000_000 + j + 1);
                    qs.insert(format!("{slot:#x}"), json!(format!("{new:#066x}")));
                    slot_budget -= 1;
                }
                p["storage"] = Value::Object(ps);
                q["storage"] = Value::Object(qs);
            }
            pre.insert(key.clone(), p);
            post.insert(key, q);
        }
        txs.push(json!({"txHash": keccak256(format!("{b}-{}", txs.len())), "result": {"pre": pre, "post": post}}));
    }
    Ok(Value::Array(txs))
}
