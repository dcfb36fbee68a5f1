//! The JSON ingest reads from its neighbour: a `debug_traceBlockByHash` diff-mode prestate
//! trace (a list of `TxTrace`), or a block as the fixtures of `crates/ingest/tests/fixtures/`
//! hold it (`{"block": ..., "trace": [...]}`, so those files are seeds as they are). No panic in
//! the parsing nor in `fold_block`; the folded diff touches only traced or credited accounts, keeps
//! no zero slot in a wiped storage, lists each code once, and folding is deterministic.
#![no_main]

use alloy_primitives::{Address, KECCAK256_EMPTY, U256, keccak256};
use leafsync_ingest::{AccountInfo, IngestError, RpcBlock, TxTrace, Withdrawal, fold_block};
use leafsync_leafdb::AccountChange;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};

#[derive(serde::Deserialize)]
struct Fixture {
    #[serde(default)]
    block: Option<RpcBlock>,
    trace: Vec<TxTrace>,
}

/// The state before the block: one account that a trace may touch without describing it in `pre`.
fn state() -> BTreeMap<Address, AccountInfo> {
    let info = AccountInfo { nonce: 3, balance: U256::from(1_000u64), code_hash: KECCAK256_EMPTY };
    BTreeMap::from([(Address::repeat_byte(0xff), info)])
}

fn check_fold(traces: &[TxTrace], withdrawals: &[Withdrawal]) {
    let state = state();
    let diff = match fold_block(7, traces, withdrawals, &state) {
        Ok(diff) => diff,
        Err(IngestError::TraceFailed { block, index, .. }) => {
            assert_eq!(block, 7);
            assert!(traces[index].result.is_none());
            return;
        }
        Err(other) => panic!("a map state cannot fail: {other}"),
    };
    assert!(traces.iter().all(|t| t.result.is_some()));
    assert_eq!(fold_block(7, traces, withdrawals, &state).expect("folds again"), diff);

    let mut touched: BTreeSet<Address> =
        withdrawals.iter().filter(|w| w.amount != 0).map(|w| w.address).collect();
    for trace in traces.iter().filter_map(|t| t.result.as_ref()) {
        touched.extend(trace.pre.keys().chain(trace.post.keys()));
    }
    assert!(diff.accounts.keys().all(|a| touched.contains(a)), "an untouched account changed");

    let hashes: BTreeSet<_> = diff.codes.iter().map(keccak256).collect();
    assert_eq!(hashes.len(), diff.codes.len(), "a code is listed twice");
    assert!(diff.codes.iter().all(|c| !c.is_empty()), "the empty code is listed");
    for change in diff.accounts.values() {
        if let AccountChange::Updated(update) = change {
            if update.storage_wiped {
                assert!(update.storage.values().all(|v| !v.is_zero()));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(traces) = serde_json::from_slice::<Vec<TxTrace>>(data) {
        check_fold(&traces, &[]);
    }
    if let Ok(fixture) = serde_json::from_slice::<Fixture>(data) {
        let withdrawals = fixture.block.map(|b| b.withdrawals).unwrap_or_default();
        check_fold(&fixture.trace, &withdrawals);
    }
    let _ = serde_json::from_slice::<RpcBlock>(data);
});
