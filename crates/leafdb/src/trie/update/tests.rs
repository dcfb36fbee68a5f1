//! Tests of the incremental trie update against fresh builds and stored nodes.

use super::*;
use crate::trie::{MemNodes, builder::StackBuilder};
use std::cell::RefCell;
use std::collections::BTreeMap;

fn key(i: u32) -> Nibbles {
    Nibbles::unpack(keccak256(i.to_be_bytes()))
}

#[test]
fn incremental_equals_fresh_build_and_store_matches() {
    let store = MemNodes::default();
    let mut root = EMPTY_ROOT_HASH;
    let mut model = BTreeMap::new();
    for round in 0u32..30 {
        let mut up = TrieUpdate::new(&store, root);
        for j in 0..40u32 {
            let k = key((round * 7 + j * 13) % 300);
            if (round + j) % 3 == 0 {
                up.delete(&k).unwrap();
                model.remove(&k);
            } else {
                let v = vec![(round + j) as u8 + 1; 1 + (j as usize % 40)];
                up.insert(&k, v.clone()).unwrap();
                model.insert(k, v);
            }
        }
        let c = up.commit().unwrap();
        store.apply(&c);
        root = c.root;
        // The store holds exactly the nodes of a fresh build.
        let fresh = RefCell::new(BTreeMap::new());
        let mut b = StackBuilder::new(|p: &Nibbles, r: &[u8]| {
            fresh.borrow_mut().insert(*p, r.to_vec());
            Ok(())
        });
        for (k, v) in &model {
            b.add_leaf(*k, v.clone()).unwrap();
        }
        assert_eq!(b.finish().unwrap().root, root, "round {round}");
        assert_eq!(store.nodes(), fresh.into_inner(), "round {round}");
    }
}

/// Sorted copies of a commit's lists, to compare commits made in different orders.
fn sorted(mut c: TrieCommit) -> TrieCommit {
    c.writes.sort();
    c.deletes.sort();
    c.replaced.sort();
    c
}

#[test]
fn parallel_commit_equals_serial() {
    let store = MemNodes::default();
    let mut up = TrieUpdate::new(&store, EMPTY_ROOT_HASH);
    for i in 0..3000 {
        up.insert(&key(i), vec![i as u8 | 1; 1 + (i as usize % 50)]).unwrap();
    }
    let c = up.commit_parallel(2).unwrap();
    store.apply(&c);
    let mut root = c.root;
    for round in 0u32..4 {
        let change = |up: &mut TrieUpdate<'_, MemNodes>| {
            for j in 0..400u32 {
                let k = key((round * 977 + j * 7) % 3500);
                if j % 4 == 0 {
                    up.delete(&k).unwrap();
                } else {
                    up.insert(&k, vec![(round + j) as u8; 3 + j as usize % 60]).unwrap();
                }
            }
        };
        let mut serial = TrieUpdate::new(&store, root);
        change(&mut serial);
        let serial = sorted(serial.commit().unwrap());
        for threads in [2, 3, 16] {
            let mut par = TrieUpdate::new(&store, root);
            change(&mut par);
            let par = sorted(par.commit_parallel(threads).unwrap());
            assert_eq!(par.root, serial.root, "round {round}, {threads} threads");
            assert_eq!(par.writes, serial.writes, "round {round}, {threads} threads");
            assert_eq!(par.deletes, serial.deletes, "round {round}, {threads} threads");
            assert_eq!(par.replaced, serial.replaced, "round {round}, {threads} threads");
        }
        assert!(!serial.deletes.is_empty() && !serial.replaced.is_empty());
        store.apply(&serial);
        root = serial.root;
    }
    // A trie whose root is not a branch commits as it would serially.
    let mut up = TrieUpdate::new(&store, EMPTY_ROOT_HASH);
    up.insert(&key(1), vec![1; 40]).unwrap();
    let one = up.commit_parallel(2).unwrap();
    assert_eq!(one.writes.len(), 1);
}

#[test]
fn detects_corrupt_node() {
    let store = MemNodes::default();
    let mut up = TrieUpdate::new(&store, EMPTY_ROOT_HASH);
    for i in 0..50 {
        up.insert(&key(i), vec![7; 40]).unwrap();
    }
    let c = up.commit().unwrap();
    store.apply(&c);
    let (victim, mut rlp) = store.nodes().into_iter().nth(3).unwrap();
    rlp[5] ^= 1;
    store.insert(victim, rlp);
    let mut errors = 0;
    for i in 0..50 {
        let mut up = TrieUpdate::new(&store, c.root);
        if up.insert(&key(i), vec![8; 40]).is_err() {
            errors += 1;
        }
    }
    assert!(errors > 0);
}

/// A loaded branch holds sixteen nodes: keep a node at 40 bytes (a hash and its tag), the keys
/// of leaves and extensions boxed.
#[test]
fn a_node_is_forty_bytes() {
    assert_eq!(std::mem::size_of::<TNode>(), 40);
}
