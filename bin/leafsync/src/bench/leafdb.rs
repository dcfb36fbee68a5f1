//! `leafsync bench leafdb`: bulk build and `apply_block` on a synthetic state; also the
//! in-memory leaves and their reference root, which `bench sync` measures its floor with.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use alloy_primitives::{B256, U256, keccak256};
use alloy_trie::{HashBuilder, Nibbles, TrieAccount};
use leafsync_leafdb::{
    AccountChange, AccountUpdate, BlockDiff, BlockHeader, BulkImport, DbOptions, EMPTY_CODE_HASH,
    GenParams, ImportAccount, LeafDb, LeafDbConfig,
    generate::{CONTRACT_EVERY, SplitMix},
    schema::slot_leaf_value,
    trie::{NoLeaves, StackBuilder},
};
use serde_json::{Value, json};

use super::{
    BlockShapeArgs, LeafdbBench, PaceArgs, in_scratch_dir,
    proc::{cpu_s, minor_faults, peak_rss_mib},
};
use crate::error::CliError;

/// One account of a state in memory, with its storage: the leaves the floor is computed over.
pub(crate) struct Leaf {
    /// keccak256 of the address.
    pub(crate) hashed: B256,
    /// The account (its storage root is recomputed by [`hash_builder_root`]).
    pub(crate) account: TrieAccount,
    /// Hashed slot keys and values, sorted.
    pub(crate) slots: Vec<(B256, U256)>,
}

fn materialise(params: GenParams) -> Vec<Leaf> {
    params
        .hashed_accounts()
        .map(|a| Leaf {
            hashed: a.hashed_address,
            account: TrieAccount {
                nonce: a.nonce,
                balance: a.balance,
                storage_root: B256::ZERO,
                code_hash: a.code_hash,
            },
            slots: a.slots,
        })
        .collect()
}

/// The state root by alloy-trie's `HashBuilder` over sorted leaves, every storage root included:
/// the in-memory floor the benchmarks compare with.
pub(crate) fn hash_builder_root(leaves: &[Leaf]) -> B256 {
    let mut accounts = HashBuilder::default();
    for leaf in leaves {
        let mut storage = HashBuilder::default();
        for (k, v) in &leaf.slots {
            storage.add_leaf(Nibbles::unpack(k), &slot_leaf_value(v));
        }
        let account = TrieAccount { storage_root: storage.root(), ..leaf.account };
        accounts.add_leaf(Nibbles::unpack(leaf.hashed), &alloy_rlp::encode(account));
    }
    accounts.root()
}

fn stack_builder_root(leaves: &[Leaf]) -> Result<B256, CliError> {
    let none = |_: &Nibbles, _: &[u8]| Ok(());
    let mut accounts = StackBuilder::new(NoLeaves(none));
    for leaf in leaves {
        let mut storage = StackBuilder::new(NoLeaves(none));
        for (k, v) in &leaf.slots {
            storage.add_leaf(Nibbles::unpack(k), slot_leaf_value(v))?;
        }
        let account = TrieAccount { storage_root: storage.finish()?.root, ..leaf.account };
        accounts.add_leaf(Nibbles::unpack(leaf.hashed), alloy_rlp::encode(account))?;
    }
    Ok(accounts.finish()?.root)
}

/// A mainnet-sized block diff over the synthetic state: mostly balance/nonce changes of existing
/// accounts, some new accounts, and contracts whose slots change (half existing, half new).
pub(crate) fn block_diff(
    db: &LeafDb,
    params: GenParams,
    block: u64,
    n_accounts: u64,
    n_slots: u64,
) -> Result<BlockDiff, CliError> {
    let mut rng = SplitMix::new(params.seed ^ (block << 32) ^ 0xb10c);
    let mut diff = BlockDiff::default();
    let contracts = (n_accounts / 10).max(1);
    let new_accounts = n_accounts * 15 / 100;
    let per_contract = n_slots.div_ceil(contracts);
    let mut i = 0;
    while (diff.accounts.len() as u64) < n_accounts {
        i += 1;
        let touched = diff.accounts.len() as u64;
        let (address, contract_index) = if touched < contracts {
            // A contract: index ≡ CONTRACT_EVERY-1 (mod CONTRACT_EVERY).
            let c =
                rng.below(params.accounts / CONTRACT_EVERY) * CONTRACT_EVERY + CONTRACT_EVERY - 1;
            (params.address(c), Some(c))
        } else if touched < contracts + new_accounts {
            (params.address(params.accounts + block * n_accounts + i), None)
        } else {
            let e = rng.below(params.accounts);
            (params.address(e), None)
        };
        let current = db.account_by_address(&address)?.unwrap_or(TrieAccount {
            nonce: 0,
            balance: U256::ZERO,
            storage_root: B256::ZERO,
            code_hash: EMPTY_CODE_HASH,
        });
        let mut update = AccountUpdate {
            nonce: current.nonce + 1,
            balance: current.balance + U256::from(1_000_000_007u64),
            code_hash: current.code_hash,
            ..Default::default()
        };
        if let Some(c) = contract_index {
            let existing = params.account(c).slots;
            let mut s = 0;
            while (update.storage.len() as u64) < per_contract {
                s += 1;
                // Half existing slots (while distinct ones are left), half new ones.
                let j = if s % 2 == 0 && existing >= per_contract {
                    rng.below(existing)
                } else {
                    existing + block * per_contract * 2 + s
                };
                let (slot, _) = params.slot(c, j);
                update.storage.insert(slot, U256::from(rng.next_u64() | 1));
            }
        }
        diff.accounts.insert(address, AccountChange::Updated(update));
    }
    Ok(diff)
}

/// The latencies of blocks applied one after another.
pub(crate) struct BlockLatencies {
    /// How the blocks were spaced.
    pace: PaceArgs,
    /// Each timed block's wall time, ms, in order.
    wall_ms: Vec<f64>,
    /// Each timed block's process CPU, ms, in order.
    cpu_ms: Vec<f64>,
    /// Each timed block's minor page faults (the whole process), in order.
    faults: Vec<u64>,
    /// Time spent before the timed blocks waiting for RocksDB's flushes and compactions.
    background_wait: Duration,
    /// Timed blocks before which that work was still not done when a slot had passed.
    slots_overrun: u64,
    /// The number of the last block applied.
    head: u64,
}

impl BlockLatencies {
    /// `fields` (an object) with the latency keys added: the wall median, p90 and maximum, the
    /// median of the second half apart (`apply_block` keeps the account trie's top levels in
    /// memory, and a running node applies blocks with them warm) and the CPU median and total.
    pub(crate) fn json(&self, mut fields: Value) -> Value {
        let sorted = |values: &[f64]| {
            let mut v = values.to_vec();
            v.sort_by(f64::total_cmp);
            v
        };
        let (wall, cpu) = (sorted(&self.wall_ms), sorted(&self.cpu_ms));
        let mut faults = self.faults.clone();
        faults.sort_unstable();
        let warm = sorted(&self.wall_ms[self.wall_ms.len() / 2..]);
        if let Value::Object(map) = &mut fields {
            let keys = [
                ("median_ms", percentile(&wall, 0.5)),
                ("p90_ms", percentile(&wall, 0.9)),
                ("max_ms", wall.last().copied().unwrap_or(0.0)),
                ("median_second_half_ms", percentile(&warm, 0.5)),
                ("cpu_median_ms", percentile(&cpu, 0.5)),
                // A fold from +0.0: `sum` of no blocks is -0.0, which the JSON would print.
                ("cpu_total_s", cpu.iter().fold(0.0, |total, ms| total + ms) / 1000.0),
                ("background_wait_s", self.background_wait.as_secs_f64()),
            ];
            for (key, value) in keys {
                map.insert(key.into(), value.into());
            }
            let pace = [
                ("warmup_blocks", self.pace.warmup_blocks),
                ("slot_ms", self.pace.slot_ms),
                ("slots_overrun", self.slots_overrun),
                ("head_number", self.head),
                ("minor_faults_median", faults.get(faults.len() / 2).copied().unwrap_or(0)),
            ];
            for (key, value) in pace {
                map.insert(key.into(), value.into());
            }
        }
        fields
    }
}

/// How often [`wait_for_background`] asks RocksDB whether it is done.
const BACKGROUND_POLL: Duration = Duration::from_millis(5);

/// Waits until RocksDB has no flush or compaction to do, at most `slot`: how long it waited, and
/// whether the slot ran out first.
fn wait_for_background(db: &LeafDb, slot: Duration) -> Result<(Duration, bool), CliError> {
    let start = Instant::now();
    while db.store().background_busy()? {
        if start.elapsed() >= slot {
            return Ok((start.elapsed(), true));
        }
        std::thread::sleep(BACKGROUND_POLL);
    }
    Ok((start.elapsed(), false))
}

/// Applies `pace.warmup_blocks` and then `blocks` generated blocks shaped as `shape` on top of
/// `db`'s head, one after another, each (with a slot) once RocksDB is done with the last one's
/// flushes and compactions, and times each of the last `blocks` `apply_block`s (wall and process
/// CPU; making the diff and the wait are not timed).
pub(crate) fn apply_generated(
    db: &LeafDb,
    params: GenParams,
    blocks: u64,
    shape: &BlockShapeArgs,
    pace: PaceArgs,
) -> Result<BlockLatencies, CliError> {
    let mut latencies = BlockLatencies {
        pace,
        wall_ms: Vec::new(),
        cpu_ms: Vec::new(),
        faults: Vec::new(),
        background_wait: Duration::ZERO,
        slots_overrun: 0,
        head: 0,
    };
    let slot = Duration::from_millis(pace.slot_ms);
    let mut head = db.head()?.unwrap_or_default();
    for b in 1..=pace.warmup_blocks + blocks {
        let timed = b > pace.warmup_blocks;
        let diff = block_diff(db, params, b, shape.block_accounts, shape.block_slots)?;
        let number = head.number + 1;
        let header = BlockHeader {
            number,
            hash: keccak256(number.to_be_bytes()),
            parent_hash: head.hash,
            state_root: B256::ZERO,
            timestamp: 0,
        };
        if !slot.is_zero() {
            let (waited, overrun) = wait_for_background(db, slot)?;
            if timed {
                latencies.background_wait += waited;
                latencies.slots_overrun += u64::from(overrun);
            }
        }
        let (t, cpu, faults) =
            (Instant::now(), cpu_s(libc::CLOCK_PROCESS_CPUTIME_ID), minor_faults());
        // The header's root is the computed one: a node announcing a head without its state
        // root is refused by its peers (and serves no chunks of it).
        let (_, header) = db.apply_generated_block(&header, &diff)?;
        if timed {
            latencies.wall_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            latencies.cpu_ms.push((cpu_s(libc::CLOCK_PROCESS_CPUTIME_ID) - cpu) * 1000.0);
            latencies.faults.push(minor_faults().saturating_sub(faults));
        }
        head = header;
    }
    latencies.head = head.number;
    Ok(latencies)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) fn leafdb(args: &LeafdbBench) -> Result<ExitCode, CliError> {
    let params = GenParams { accounts: args.state.accounts, seed: args.state.seed };
    let t = Instant::now();
    let leaves = materialise(params);
    let gen_s = t.elapsed().as_secs_f64();
    let slots: u64 = leaves.iter().map(|l| l.slots.len() as u64).sum();
    let total_leaves = leaves.len() as u64 + slots;

    let (t, cpu) = (Instant::now(), cpu_s(libc::CLOCK_THREAD_CPUTIME_ID));
    let floor_root = hash_builder_root(&leaves);
    let hashbuilder_s = t.elapsed().as_secs_f64();
    let hashbuilder_cpu_s = cpu_s(libc::CLOCK_THREAD_CPUTIME_ID) - cpu;

    let t = Instant::now();
    let mem_root = stack_builder_root(&leaves)?;
    let builder_mem_s = t.elapsed().as_secs_f64();

    let result = in_scratch_dir(&args.state.workdir, "leafdb", |dir| {
        let config = LeafDbConfig { recent_blocks: args.recent_blocks, ..LeafDbConfig::default() };
        let cache_bytes = usize::try_from(args.block_cache_mib << 20).unwrap_or(usize::MAX);
        let db = LeafDb::open(dir, &DbOptions::default().block_cache_bytes(cache_bytes), config)?;
        let (t, cpu) = (Instant::now(), cpu_s(libc::CLOCK_PROCESS_CPUTIME_ID));
        let mut import = BulkImport::start(&db, "benchmark")?;
        for code in 0..params.code_pool() {
            import.add_code(&params.code(code))?;
        }
        for leaf in &leaves {
            let a = &leaf.account;
            let account = ImportAccount {
                hashed_address: leaf.hashed,
                nonce: a.nonce,
                balance: a.balance,
                code_hash: a.code_hash,
            };
            import.add_account(account, leaf.slots.iter().copied())?;
        }
        let imported = import.finish(BlockHeader::default())?;
        let bulk_s = t.elapsed().as_secs_f64();
        let bulk_cpu_s = cpu_s(libc::CLOCK_PROCESS_CPUTIME_ID) - cpu;

        let latencies =
            apply_generated(&db, params, args.state.blocks, &args.state.block, args.pace)?;
        Ok((imported, bulk_s, bulk_cpu_s, latencies))
    });
    let (imported, bulk_s, bulk_cpu_s, latencies) = result?;

    let roots_agree = floor_root == mem_root && mem_root == imported.root;
    let out = json!({
        "bench": "leafdb",
        "accounts": args.state.accounts,
        "slots": slots,
        "leaves": total_leaves,
        "root": imported.root.to_string(),
        "roots_agree": roots_agree,
        "materialise_s": gen_s,
        "hashbuilder_mem_s": hashbuilder_s,
        "stackbuilder_mem_s": builder_mem_s,
        "bulk_rocksdb_s": bulk_s,
        "bulk_leaves_per_s": total_leaves as f64 / bulk_s,
        "ratio_stackbuilder_to_hashbuilder": builder_mem_s / hashbuilder_s,
        "ratio_bulk_to_hashbuilder": bulk_s / hashbuilder_s,
        "hashbuilder_cpu_s": hashbuilder_cpu_s,
        "bulk_cpu_s": bulk_cpu_s,
        "ratio_bulk_cpu_to_hashbuilder": bulk_cpu_s / hashbuilder_cpu_s,
        "keccak_lanes": leafsync_leafdb::trie::keccak_lanes(),
        "apply_block": latencies.json(json!({
            "blocks": args.state.blocks,
            "recent_blocks": args.recent_blocks,
            "block_cache_mib": args.block_cache_mib,
            "accounts_per_block": args.state.block.block_accounts,
            "slots_per_block": args.state.block.block_slots,
        })),
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{out}");
    Ok(if roots_agree { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
