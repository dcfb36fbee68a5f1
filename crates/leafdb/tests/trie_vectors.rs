//! Ethereum's trie test vectors (ethereum/tests `TrieTests`, in ../shared/testdata/trie): every
//! case of the plain and secure files, through the incremental updater over a node store, and
//! for fixed-length keys also through the streaming builder.

#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

use leafsync_leafdb::test_utils::package_dir;
use std::collections::BTreeMap;

use alloy_primitives::{B256, keccak256};
use alloy_trie::Nibbles;
use leafsync_leafdb::trie::{MemNodes, StackBuilder, TrieUpdate, walk_leaves};
use serde_json::Value;

fn testdata(name: &str) -> Value {
    let path =
        package_dir(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/trie").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `0x…` strings are hex, anything else is the string's bytes.
fn bytes(s: &str) -> Vec<u8> {
    match s.strip_prefix("0x") {
        Some(h) => alloy_primitives::hex::decode(h).unwrap(),
        None => s.as_bytes().to_vec(),
    }
}

/// Applies the operations one commit each (so every intermediate trie is stored and reloaded),
/// returning the final root and the store.
fn run(ops: &[(Vec<u8>, Option<Vec<u8>>)], secure: bool) -> (B256, MemNodes) {
    let store = MemNodes::default();
    let mut root = alloy_trie::EMPTY_ROOT_HASH;
    for (k, v) in ops {
        let key = if secure { keccak256(k).to_vec() } else { k.clone() };
        let mut up = TrieUpdate::new(&store, root);
        match v {
            Some(v) => up.insert(&Nibbles::unpack(&key), v.clone()).unwrap(),
            None => up.delete(&Nibbles::unpack(&key)).unwrap(),
        }
        let c = up.commit().unwrap();
        store.apply(&c);
        root = c.root;
    }
    (root, store)
}

fn ops_of(input: &Value) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let pair = |k: &str, v: &Value| (bytes(k), v.as_str().map(bytes).filter(|v| !v.is_empty()));
    match input {
        Value::Array(items) => items.iter().map(|i| pair(i[0].as_str().unwrap(), &i[1])).collect(),
        Value::Object(map) => map.iter().map(|(k, v)| pair(k, v)).collect(),
        _ => panic!("unexpected input {input}"),
    }
}

fn check_file(name: &str, secure: bool) -> usize {
    let cases = testdata(name);
    let mut n = 0;
    for (case, body) in cases.as_object().unwrap() {
        let ops = ops_of(&body["in"]);
        let expected: B256 = body["root"].as_str().unwrap().parse().unwrap();
        let (root, store) = run(&ops, secure);
        assert_eq!(root, expected, "{name}/{case}");

        // The stored trie holds exactly the final key set.
        let mut model = BTreeMap::new();
        for (k, v) in &ops {
            let key = Nibbles::unpack(if secure { keccak256(k).to_vec() } else { k.clone() });
            match v {
                Some(v) => model.insert(key, v.clone()),
                None => model.remove(&key),
            };
        }
        let walked: BTreeMap<_, _> = walk_leaves(&store, root).unwrap().into_iter().collect();
        assert_eq!(walked, model, "{name}/{case}: walked leaves");

        // Fixed-length keys: the streaming builder gives the same root.
        let lens: std::collections::BTreeSet<_> = model.keys().map(|k| k.len()).collect();
        if lens.len() == 1 {
            let mut b = StackBuilder::new(|_: &Nibbles, _: &[u8]| Ok(()));
            for (k, v) in &model {
                b.add_leaf(*k, v.clone()).unwrap();
            }
            assert_eq!(b.finish().unwrap().root, expected, "{name}/{case}: builder");
        }
        n += 1;
    }
    n
}

/// The plain and secure case files, each with its number of cases.
#[test]
fn trie_case_files() {
    for (file, secure, cases) in [
        ("trietest.json", false, 5),
        ("trietest_secureTrie.json", true, 3),
        ("trieanyorder.json", false, 7),
        ("trieanyorder_secureTrie.json", true, 7),
        ("hex_encoded_securetrie_test.json", true, 3),
    ] {
        assert_eq!(check_file(file, secure), cases, "{file}");
    }
}

/// `trietestnextprev.json`: for each probe key, the previous and next keys of the trie, found by
/// walking the stored trie in order.
#[test]
fn trietestnextprev() {
    let cases = testdata("trietestnextprev.json");
    for (case, body) in cases.as_object().unwrap() {
        let ops: Vec<_> = body["in"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (bytes(k.as_str().unwrap()), Some(b"x".to_vec())))
            .collect();
        let (root, store) = run(&ops, false);
        let keys: Vec<Vec<u8>> = walk_leaves(&store, root)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k.pack().to_vec())
            .collect();
        for t in body["tests"].as_array().unwrap() {
            let probe = bytes(t[0].as_str().unwrap());
            let prev = keys.iter().rev().find(|k| **k < probe).cloned().unwrap_or_default();
            let next = keys.iter().find(|k| **k > probe).cloned().unwrap_or_default();
            assert_eq!(prev, bytes(t[1].as_str().unwrap()), "{case}: prev of {probe:?}");
            assert_eq!(next, bytes(t[2].as_str().unwrap()), "{case}: next of {probe:?}");
        }
    }
}
