//! What a client's flat tables hold after a sync: the root check, the raw sizes and the floor.

use std::{collections::HashSet, time::Instant};

use alloy_primitives::B256;
use alloy_rlp::Encodable;
use alloy_trie::Nibbles;
use leafsync_leafdb::{EMPTY_CODE_HASH, LeafDb};

use crate::{
    bench::{
        leafdb::{Leaf, hash_builder_root},
        proc::cpu_split,
    },
    error::CliError,
};

/// What the client's flat tables hold, measured after a sync.
#[derive(Debug)]
pub(crate) struct Examined {
    /// Root by `HashBuilder` over the flat tables, storage roots recomputed.
    pub(crate) root: B256,
    pub(crate) accounts: u64,
    pub(crate) slots: u64,
    /// Referenced codes missing from the code table.
    pub(crate) missing_codes: u64,
    pub(crate) raw_leaf_bytes: u64,
    pub(crate) raw_code_bytes: u64,
    /// CPU seconds of the `HashBuilder` pass (the calling thread's only), its kernel part, and
    /// its wall time.
    pub(crate) floor_cpu_s: f64,
    pub(crate) floor_system_s: f64,
    pub(crate) floor_wall_s: f64,
}

/// The accounts and slots of the flat tables, in key order.
fn read_leaves(db: &LeafDb) -> Result<Vec<Leaf>, CliError> {
    let snap = db.snapshot()?;
    let mut leaves = Vec::new();
    let mut storages = snap.storage_walk(&Nibbles::new())?;
    for item in snap.accounts_with_prefix(&Nibbles::new()) {
        let (hashed, account) = item?;
        let slots = storages.slots(&hashed)?.collect::<Result<_, _>>()?;
        leaves.push(Leaf { hashed, account, slots });
    }
    Ok(leaves)
}

/// Reads the client's flat tables into memory, then times `HashBuilder` over them (the floor)
/// and sizes them (the raw leaf bytes: per account its 32-byte hashed address and its RLP
/// account, per slot its 32-byte hashed key and its RLP value; code bytes apart).
pub(crate) fn examine(db: &LeafDb) -> Result<Examined, CliError> {
    let leaves = read_leaves(db)?;
    let mut raw_leaf_bytes = 0u64;
    let mut slots = 0u64;
    let mut code_hashes = HashSet::new();
    for leaf in &leaves {
        raw_leaf_bytes += 32 + leaf.account.length() as u64;
        for (_, value) in &leaf.slots {
            raw_leaf_bytes += 32 + value.length() as u64;
        }
        slots += leaf.slots.len() as u64;
        if leaf.account.code_hash != EMPTY_CODE_HASH {
            code_hashes.insert(leaf.account.code_hash);
        }
    }
    let (mut raw_code_bytes, mut missing_codes) = (0u64, 0u64);
    for hash in &code_hashes {
        match db.code(hash)? {
            Some(code) => raw_code_bytes += code.len() as u64,
            None => missing_codes += 1,
        }
    }
    let (cpu, wall) = (cpu_split("thread-self")?, Instant::now());
    let root = hash_builder_root(&leaves);
    let floor_wall_s = wall.elapsed().as_secs_f64();
    let after = cpu_split("thread-self")?;
    let (floor_cpu_s, floor_system_s) = (after.seconds_since(cpu), after.system_s_since(cpu));
    Ok(Examined {
        root,
        accounts: leaves.len() as u64,
        slots,
        missing_codes,
        raw_leaf_bytes,
        raw_code_bytes,
        floor_cpu_s,
        floor_system_s,
        floor_wall_s,
    })
}
