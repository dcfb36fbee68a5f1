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

/// `change` applied to a trie split under its root, each part committed apart and the root
/// joined: `None` when the root does not stay a branch (or is none).
fn split_commit(
    store: &MemNodes,
    root: B256,
    change: impl Fn(&mut TrieUpdate<'_, MemNodes>, &Nibbles),
) -> Option<TrieCommit> {
    let (branch, parts) = TrieUpdate::new(store, root).split_root().unwrap().ok()?;
    let mut refs: [Option<RlpNode>; 16] = Default::default();
    let mut below = TrieCommit::default();
    // Each part takes the changes under its nibble, committed in reverse order.
    for mut part in parts.into_iter().rev() {
        let prefix = *part.path();
        change(&mut part, &prefix);
        let (reference, commit) = part.commit_subtrie().unwrap();
        refs[usize::from(prefix.first().unwrap())] = reference;
        below.append(commit);
    }
    let mut out = branch.join(&refs).unwrap()?;
    out.append(below);
    Some(out)
}

#[test]
fn split_commit_equals_serial() {
    let store = MemNodes::default();
    let mut up = TrieUpdate::new(&store, EMPTY_ROOT_HASH);
    for i in 0..3000 {
        up.insert(&key(i), vec![i as u8 | 1; 1 + (i as usize % 50)]).unwrap();
    }
    let c = up.commit().unwrap();
    store.apply(&c);
    let mut root = c.root;
    for round in 0u32..4 {
        // The round's changes under `prefix` (all of them for the empty prefix).
        let change = |up: &mut TrieUpdate<'_, MemNodes>, prefix: &Nibbles| {
            for j in 0..400u32 {
                let k = key((round * 977 + j * 7) % 3500);
                if !k.starts_with(prefix) {
                    continue;
                }
                if j % 4 == 0 {
                    up.delete(&k).unwrap();
                } else {
                    up.insert(&k, vec![(round + j) as u8; 3 + j as usize % 60]).unwrap();
                }
            }
        };
        let mut serial = TrieUpdate::new(&store, root);
        change(&mut serial, &Nibbles::new());
        let serial = sorted(serial.commit().unwrap());
        let split = sorted(split_commit(&store, root, change).unwrap());
        assert_eq!(split.root, serial.root, "round {round}");
        assert_eq!(split.writes, serial.writes, "round {round}");
        assert_eq!(split.deletes, serial.deletes, "round {round}");
        assert_eq!(split.replaced, serial.replaced, "round {round}");
        assert!(!serial.deletes.is_empty() && !serial.replaced.is_empty());
        store.apply(&serial);
        root = serial.root;
    }
    // Untouched parts keep their references: the same root, nothing written.
    let same = split_commit(&store, root, |_, _| {}).unwrap();
    assert_eq!(same.root, root);
    assert!(same.writes.is_empty() && same.deletes.is_empty() && same.replaced.is_empty());
}

/// A root that does not stay a branch is left to a whole update, and a root that is no branch
/// is not split.
#[test]
fn a_root_that_collapses_or_is_no_branch_is_not_joined() {
    let store = MemNodes::default();
    let mut up = TrieUpdate::new(&store, EMPTY_ROOT_HASH);
    // Two keys under different root children: deleting one leaves the root one child.
    let a = key(0);
    let b = (1..).map(key).find(|k| k.first() != a.first()).unwrap();
    up.insert(&a, vec![1; 40]).unwrap();
    up.insert(&b, vec![2; 40]).unwrap();
    let c = up.commit().unwrap();
    store.apply(&c);
    let delete_b = |up: &mut TrieUpdate<'_, MemNodes>, prefix: &Nibbles| {
        if b.starts_with(prefix) {
            up.delete(&b).unwrap();
        }
    };
    assert!(split_commit(&store, c.root, delete_b).is_none());
    let mut whole = TrieUpdate::new(&store, c.root);
    whole.delete(&b).unwrap();
    let whole = whole.commit().unwrap();
    store.apply(&whole);
    assert!(matches!(TrieUpdate::new(&store, whole.root).split_root(), Ok(Err(_))), "a leaf root");
    assert!(matches!(TrieUpdate::new(&store, EMPTY_ROOT_HASH).split_root(), Ok(Err(_))));
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
