//! The fold over recorded geth-format traces (tests/fixtures, see its README): each block's
//! traces and withdrawals give exactly the expected per-account post-states.

#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

use leafsync_leafdb::test_utils::package_dir;
use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, Bytes, KECCAK256_EMPTY, U256, address, keccak256};
use leafsync_ingest::{AccountInfo, RpcBlock, TxTrace, fold_block};
use leafsync_leafdb::{AccountChange, AccountUpdate, BlockDiff};

struct Fixture {
    block: RpcBlock,
    trace: Vec<TxTrace>,
}

fn fixture(name: &str) -> Fixture {
    let path = package_dir(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["description"].is_string(), "{name} must say what it exercises");
    Fixture {
        block: serde_json::from_value(v["block"].clone()).unwrap(),
        trace: serde_json::from_value(v["trace"].clone()).unwrap(),
    }
}

fn fold(name: &str, state: &BTreeMap<Address, AccountInfo>) -> BlockDiff {
    let f = fixture(name);
    fold_block(f.block.number, &f.trace, &f.block.withdrawals, state).unwrap()
}

fn slot(n: u8) -> B256 {
    B256::with_last_byte(n)
}

fn updated(nonce: u64, balance: u128, code_hash: B256, slots: &[(u8, u64)]) -> AccountChange {
    AccountChange::Updated(AccountUpdate {
        nonce,
        balance: U256::from(balance),
        code_hash,
        storage_wiped: false,
        storage: slots.iter().map(|&(s, v)| (slot(s), U256::from(v))).collect(),
    })
}

const A: Address = address!("00000000000000000000000000000000000000aa");
const B: Address = address!("00000000000000000000000000000000000000bb");
const C: Address = address!("00000000000000000000000000000000000000cc");

#[test]
fn selfdestruct_deletes_the_account() {
    let diff = fold("selfdestruct.json", &BTreeMap::new());
    let expected: BTreeMap<Address, AccountChange> = [
        (A, updated(6, 0x8ac7230489e00000, KECCAK256_EMPTY, &[])),
        (B, updated(0, 0x64, KECCAK256_EMPTY, &[])),
        (C, AccountChange::Deleted),
    ]
    .into();
    assert_eq!(diff.accounts, expected);
    assert!(diff.codes.is_empty());
}

#[test]
fn slot_absent_from_post_is_cleared() {
    let diff = fold("slot_clearing.json", &BTreeMap::new());
    let code = alloy_primitives::hex!("60016000556000600155");
    let expected: BTreeMap<Address, AccountChange> = [
        (A, updated(7, 0x8ac7230489d00000, KECCAK256_EMPTY, &[])),
        // Nonce, balance and code unchanged (from pre); slot 1 cleared, 2 changed, 3 new.
        (C, updated(1, 0, keccak256(code), &[(1, 0), (2, 8), (3, 1)])),
    ]
    .into();
    assert_eq!(diff.accounts, expected);
    assert!(diff.codes.is_empty(), "unchanged code is not new code");
}

#[test]
fn contract_creation_recorded_from_anvil() {
    let diff = fold("contract_creation.json", &BTreeMap::new());
    let code = Bytes::from_static(&alloy_primitives::hex!("602a6001550000000000"));
    let expected: BTreeMap<Address, AccountChange> = [
        (Address::ZERO, updated(0, 0x455fdb181c00, KECCAK256_EMPTY, &[])),
        (
            address!("1111111111111111111111111111111111111111"),
            updated(0, 0x100, KECCAK256_EMPTY, &[]),
        ),
        (
            address!("e7f1725e7734ce288f8367e1bb143e90bb3f0512"),
            updated(1, 0, keccak256(&code), &[]),
        ),
        (
            address!("f39fd6e51aad88f6f4ce6ab8827279cfffb92266"),
            updated(2, 0x21e19e03efafc0fc700, KECCAK256_EMPTY, &[]),
        ),
    ]
    .into();
    assert_eq!(diff.accounts, expected);
    assert_eq!(diff.codes, vec![code]);
}

#[test]
fn withdrawals_are_credited_in_wei() {
    let f_addr = address!("00000000000000000000000000000000000000ff");
    let f_code = B256::repeat_byte(0x77);
    let state: BTreeMap<Address, AccountInfo> =
        [(f_addr, AccountInfo { nonce: 3, balance: U256::from(7), code_hash: f_code })].into();
    let diff = fold("withdrawals.json", &state);
    let gwei = 1_000_000_000u128;
    let expected: BTreeMap<Address, AccountChange> = [
        (A, updated(1, 0xffffb, KECCAK256_EMPTY, &[])),
        (B, updated(0, 0x15 + (0x3b9aca00 + 2) * gwei, KECCAK256_EMPTY, &[])),
        (
            address!("00000000000000000000000000000000000000dd"),
            updated(0, gwei, KECCAK256_EMPTY, &[]),
        ),
        (f_addr, updated(3, 7 + 5 * gwei, f_code, &[])),
    ]
    .into();
    assert_eq!(diff.accounts, expected, "a zero withdrawal touches nothing");
}

#[test]
fn several_transactions_fold_into_one_post_state() {
    let diff = fold("multi_tx.json", &BTreeMap::new());
    let code = Bytes::from_static(&[0x60, 0x01]);
    let recreated = AccountChange::Updated(AccountUpdate {
        nonce: 1,
        balance: U256::ZERO,
        code_hash: keccak256(&code),
        storage_wiped: true,
        storage: [(slot(2), U256::from(0x0a))].into(),
    });
    let expected: BTreeMap<Address, AccountChange> =
        [(A, updated(4, 0x0d00, KECCAK256_EMPTY, &[])), (C, recreated)].into();
    assert_eq!(diff.accounts, expected);
    assert_eq!(diff.codes, vec![code]);
}

#[test]
fn a_failed_transaction_trace_is_an_error() {
    let trace: Vec<TxTrace> =
        serde_json::from_str(r#"[{"txHash":null,"error":"execution timeout"}]"#).unwrap();
    let err = fold_block(5, &trace, &[], &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("execution timeout"), "{err}");
}

/// The system calls' writes, which no trace shows, are folded in where their contract exists
/// (a call to an address without code does nothing): EIP-4788's two ring-buffer slots before
/// the transactions, the request contracts' state slots after them.
#[test]
fn system_call_writes_apply_where_their_contract_exists() {
    use leafsync_ingest::system::{
        BEACON_ROOTS_ADDRESS, REQUEST_CONTRACTS, SlotWrite, SystemWrites, pre_execution_writes,
    };
    let block: RpcBlock = serde_json::from_value(serde_json::json!({
        "number": "0x10", "hash": B256::repeat_byte(1), "parentHash": B256::repeat_byte(2),
        "stateRoot": B256::ZERO, "timestamp": "0x2000",
        "parentBeaconBlockRoot": B256::repeat_byte(0xbe),
    }))
    .unwrap();
    let code = keccak256([0x60u8]);
    let contract = AccountInfo { nonce: 1, balance: U256::ZERO, code_hash: code };
    let queue = REQUEST_CONTRACTS[0];
    let system = SystemWrites {
        before: pre_execution_writes(&block),
        after: vec![SlotWrite { address: queue, slot: slot(0), value: U256::from(3) }],
    };
    let with_code: BTreeMap<Address, AccountInfo> =
        [(BEACON_ROOTS_ADDRESS, contract), (queue, contract)].into();
    let diff = leafsync_ingest::fold_full_block(16, &system, &[], &[], &with_code).unwrap();
    let index = 0x2000 % 8191;
    let beacon: BTreeMap<B256, U256> = [
        (B256::from(U256::from(index)), U256::from(0x2000)),
        (B256::from(U256::from(index + 8191)), U256::from_be_bytes([0xbe; 32])),
    ]
    .into();
    let expected = |storage| {
        AccountChange::Updated(AccountUpdate {
            nonce: 1,
            balance: U256::ZERO,
            code_hash: code,
            storage_wiped: false,
            storage,
        })
    };
    assert_eq!(diff.accounts[&BEACON_ROOTS_ADDRESS], expected(beacon));
    assert_eq!(diff.accounts[&queue], expected([(slot(0), U256::from(3))].into()));
    // Without the contracts (a chain that never deployed them) nothing is written, and no
    // empty account is created.
    let none = leafsync_ingest::fold_full_block(16, &system, &[], &[], &BTreeMap::new()).unwrap();
    assert!(none.accounts.is_empty(), "{none:?}");
}
