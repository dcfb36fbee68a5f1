//! Our snap/1 edge proofs checked by an independent implementation: `@ethereumjs/mpt`'s
//! `verifyMerkleRangeProof` (a port of go-ethereum's `trie.VerifyRangeProof`), run by
//! `tests/interop/range_proof.mjs` under Node.
//!
//! On a generated state (leafdb's `generate`) with three blocks applied on top, at the head's
//! root (read from the flat state) and at the generated state's root (an older root, read by
//! walking its trie through the recent-node cache), random account ranges (random origins, some
//! on existing keys, some past the last key; random byte budgets) and random storage ranges of
//! the larger contracts are answered by our server, written as JSON and verified there; every valid
//! case must verify (and report "more to the right" exactly when the state has a key past the
//! range), every corrupted one (a proof node dropped, a value changed, a key left out, another
//! root) must fail.
//!
//! Needs `tests/interop/node_modules` (`npm ci --prefix tests/interop`, which scripts/setup.sh
//! runs) and `node`; without them the test fails and says so.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::process::Command;

use alloy_primitives::{B256, Bytes, hex};
use alloy_trie::TrieAccount;
use leafsync_leafdb::{
    DbOptions, GenParams, LeafDb, LeafDbConfig, generate::SplitMix, schema::encode_account,
};
use leafsync_p2p::{
    snap::{AccountRange, GetAccountRange, GetStorageRanges, SlimAccount},
    test_utils::interop_dir,
};
use leafsync_serve::snap::{answer_account_range, answer_storage_ranges};
use serde_json::{Value, json};

/// Accounts in the generated state: enough for a four-level account trie and a few dozen
/// contracts with storage.
const ACCOUNTS: u64 = 3000;
/// Random account ranges checked.
const ACCOUNT_CASES: usize = 60;
/// Random storage ranges checked.
const STORAGE_CASES: usize = 30;

fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

/// One range as the JS verifier takes it.
struct Case {
    name: String,
    root: B256,
    first: B256,
    keys: Vec<B256>,
    values: Vec<Vec<u8>>,
    proof: Vec<Bytes>,
    /// Whether the trie holds a key past the range (what the verifier must report).
    more: bool,
}

impl Case {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "root": hex0x(self.root.as_slice()),
            "first": hex0x(self.first.as_slice()),
            "last": self.keys.last().map(|k| hex0x(k.as_slice())),
            "keys": self.keys.iter().map(|k| hex0x(k.as_slice())).collect::<Vec<_>>(),
            "values": self.values.iter().map(|v| hex0x(v)).collect::<Vec<_>>(),
            "proof": self.proof.iter().map(|p| hex0x(p)).collect::<Vec<_>>(),
        })
    }

    /// Corrupted copies, each of which must fail verification.
    fn corruptions(&self) -> Vec<Self> {
        let mut out = Vec::new();
        let copy = |suffix: &str| Self {
            name: format!("{}/{suffix}", self.name),
            root: self.root,
            first: self.first,
            keys: self.keys.clone(),
            values: self.values.clone(),
            proof: self.proof.clone(),
            more: self.more,
        };
        if !self.proof.is_empty() {
            // The root node's loss is always fatal; so is any node on the edge paths.
            let mut c = copy("proof-node-dropped");
            c.proof.remove(0);
            out.push(c);
            let mut c = copy("proof-node-changed");
            let mut node = c.proof[c.proof.len() - 1].to_vec();
            let at = node.len() - 1;
            node[at] ^= 1;
            c.proof.pop();
            c.proof.push(node.into());
            out.push(c);
        }
        if !self.values.is_empty() {
            let mut c = copy("value-changed");
            let i = self.values.len() / 2;
            c.values[i] = {
                let mut v = c.values[i].clone();
                let at = v.len() - 1;
                v[at] ^= 1;
                v
            };
            out.push(c);
        }
        if self.keys.len() >= 3 {
            let mut c = copy("key-left-out");
            let i = self.keys.len() / 2;
            c.keys.remove(i);
            c.values.remove(i);
            out.push(c);
        }
        let mut c = copy("other-root");
        c.root = B256::repeat_byte(0x42);
        out.push(c);
        out
    }
}

fn random_hash(rng: &mut SplitMix) -> B256 {
    let mut b = [0u8; 32];
    for chunk in b.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_be_bytes());
    }
    B256::from(b)
}

fn full_account(slim: &SlimAccount) -> Vec<u8> {
    encode_account(&TrieAccount {
        nonce: slim.nonce,
        balance: slim.balance,
        storage_root: slim.storage_root().unwrap(),
        code_hash: slim.code_hash().unwrap(),
    })
}

/// A state root with what its ranges must give: its account keys, and its contracts with at
/// least 20 slots (largest first) with their storage roots and slot keys.
struct State {
    root: B256,
    keys: Vec<B256>,
    contracts: Vec<(B256, B256, Vec<B256>)>,
}

impl State {
    /// The leafdb's head state.
    fn read(db: &LeafDb) -> Self {
        let reader = db.snap_reader().unwrap();
        let keys: Vec<B256> = reader.accounts_from(&B256::ZERO).map(|a| a.unwrap().0).collect();
        let mut contracts: Vec<(B256, B256, Vec<B256>)> = keys
            .iter()
            .filter_map(|k| {
                let a = db.account(k).unwrap()?;
                let slots: Vec<B256> =
                    reader.storage_from(k, &B256::ZERO).map(|s| s.unwrap().0).collect();
                (slots.len() >= 20).then_some((*k, a.storage_root, slots))
            })
            .collect();
        contracts.sort_by_key(|c| std::cmp::Reverse(c.2.len()));
        assert!(contracts.len() >= 5, "the generated state has contracts with storage");
        Self { root: reader.root(), keys, contracts }
    }
}

fn account_cases(db: &LeafDb, state: &State, rng: &mut SplitMix) -> Vec<Case> {
    let (root, keys) = (state.root, &state.keys);
    let mut cases = Vec::new();
    for i in 0..ACCOUNT_CASES {
        let origin = match i % 4 {
            0 => keys[rng.below(keys.len() as u64) as usize],
            1 if i < 8 => B256::repeat_byte(0xff), // past every key: a zero-element proof
            _ => random_hash(rng),
        };
        let bytes = rng.below(20_000);
        let req = GetAccountRange {
            request_id: i as u64,
            root,
            origin,
            limit: B256::repeat_byte(0xff),
            bytes,
        };
        let AccountRange { accounts, proof, .. } = answer_account_range(db, &req);
        assert!(!proof.is_empty(), "every answer at a root the leafdb resolves carries a proof");
        let last = accounts.last().map(|a| a.hash);
        let more = match last {
            Some(last) => keys.iter().any(|k| *k > last),
            None => false,
        };
        cases.push(Case {
            name: format!("accounts-{root}-{i}-n{}", accounts.len()),
            root,
            first: origin,
            keys: accounts.iter().map(|a| a.hash).collect(),
            values: accounts.iter().map(|a| full_account(&a.account)).collect(),
            proof,
            more,
        });
    }
    cases
}

fn storage_cases(db: &LeafDb, state: &State, rng: &mut SplitMix) -> Vec<Case> {
    let root = state.root;
    let mut cases = Vec::new();
    for i in 0..STORAGE_CASES {
        let (account, storage_root, slots) = &state.contracts[i % state.contracts.len()];
        let (account, storage_root) = (*account, *storage_root);
        // A non-zero origin so that the server proves the range (geth proves only then or when
        // it cuts a range short); small budgets so that many are cut short too.
        let origin = if i % 2 == 0 {
            slots[rng.below(slots.len() as u64) as usize]
        } else {
            random_hash(rng)
        };
        let req = GetStorageRanges {
            request_id: i as u64,
            root,
            accounts: vec![account],
            origin: Bytes::copy_from_slice(origin.as_slice()),
            limit: Bytes::new(),
            bytes: 200 + rng.below(2_000),
        };
        let res = answer_storage_ranges(db, &req);
        let list = res.slots.first().cloned().unwrap_or_default();
        let last = list.last().map(|s| s.hash);
        let more = last.is_some_and(|last| slots.iter().any(|s| *s > last));
        cases.push(Case {
            name: format!("storage-{root}-{i}-n{}", list.len()),
            root: storage_root,
            first: origin,
            keys: list.iter().map(|s| s.hash).collect(),
            values: list.iter().map(|s| s.body.to_vec()).collect(),
            proof: res.proof,
            more,
        });
    }
    cases
}

#[test]
fn edge_proofs_verify_with_ethereumjs_mpt() {
    let interop = interop_dir();
    assert!(
        interop.join("node_modules/@ethereumjs/mpt").is_dir(),
        "{} is missing @ethereumjs/mpt: run `npm ci --prefix tests/interop` (scripts/setup.sh does) \
         to run the range-proof interop test",
        interop.join("node_modules").display()
    );

    let dir = tempfile::tempdir().unwrap();
    let db = LeafDb::open(dir.path(), &DbOptions::default(), LeafDbConfig::default()).unwrap();
    let params = GenParams { accounts: ACCOUNTS, seed: 0x5a7 };
    db.generate(params).unwrap();
    let older = State::read(&db);
    // Blocks on top: the generated state's root is now an older root (a syncing geth's pivot
    // behind our head), served by walking its trie; the head's is served from the flat state.
    for n in 1..=3 {
        let (header, diff) = params.block(n, 300);
        db.apply_generated_block(&header, &diff).unwrap();
    }
    let head = State::read(&db);
    assert_ne!(head.root, older.root);
    let mut rng = SplitMix::new(0x1234_5678);
    let mut valid = Vec::new();
    for state in [&head, &older] {
        valid.extend(account_cases(&db, state, &mut rng));
        valid.extend(storage_cases(&db, state, &mut rng));
    }
    let corrupted: Vec<Case> = valid.iter().flat_map(Case::corruptions).collect();

    let all: Vec<Value> = valid.iter().chain(&corrupted).map(Case::to_json).collect();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("cases.json");
    std::fs::write(&input, serde_json::to_vec(&all).unwrap()).unwrap();
    let output = Command::new("node")
        .arg("range_proof.mjs")
        .arg(&input)
        .current_dir(&interop)
        .output()
        .expect("run node (Node.js is required for the range-proof interop test)");
    assert!(output.status.success(), "node failed: {}", String::from_utf8_lossy(&output.stderr));
    let results: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), all.len(), "one result per case");

    let (mut multi, mut zero) = (0, 0);
    for (case, result) in valid.iter().zip(&results) {
        assert_eq!(result["name"], case.name.as_str());
        assert_eq!(result["ok"], true, "{}: {}", case.name, result["error"]);
        assert_eq!(result["more"], case.more, "{}: more to the right", case.name);
        multi += usize::from(case.keys.len() > 1);
        zero += usize::from(case.keys.is_empty());
    }
    for (case, result) in corrupted.iter().zip(&results[valid.len()..]) {
        assert_eq!(result["name"], case.name.as_str());
        assert_eq!(result["ok"], false, "{} verified although corrupted", case.name);
    }
    // The random cases cover the shapes that matter.
    assert!(multi >= 40, "{multi} multi-element ranges");
    assert!(zero >= 1, "{zero} zero-element ranges");
    eprintln!(
        "verified {} ranges ({multi} multi-element, {zero} empty) and refused {} corruptions",
        valid.len(),
        corrupted.len()
    );
}
