//! Churn for `bench sync` (`--churn …`, issue 15 goal 5): the server process grows a chain of
//! generated mainnet-shaped blocks while the clients sync, and every server follows it at a
//! distance of its own. The generated state is copied once per server (a RocksDB checkpoint:
//! hard links, no rewrite), the process's own leafdb makes each block (applying it computes the
//! root that completes its header: [`LeafDb::apply_generated_block`]), and server `i` of `K`
//! applies it `i × spread / (K − 1)` blocks later, so that the servers' heads are up to `spread`
//! blocks apart, as on a network where peers import a block at different times. The first
//! `spread` blocks are made before the servers report ready, so a sync starts among servers
//! already apart.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use alloy_primitives::B256;
use clap::ValueEnum;
use leafsync_leafdb::{BlockDiff, BlockHeader, GenParams, LeafDb};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::{bench::leafdb::block_diff, error::CliError};

/// Accounts of mainnet's state, for `--churn proportional`: of its ~1.4 billion state objects
/// about 270 million are accounts and the rest storage slots (2025, to the precision that
/// matters here).
const MAINNET_ACCOUNTS: u64 = 270_000_000;
/// Storage slots of mainnet's state (see [`MAINNET_ACCOUNTS`]).
const MAINNET_SLOTS: u64 = 1_130_000_000;
/// Accounts a mainnet block changes, about.
const MAINNET_BLOCK_ACCOUNTS: u64 = 2_000;
/// Storage slots a mainnet block changes, about.
const MAINNET_BLOCK_SLOTS: u64 = 5_000;
/// Mainnet's slot time, milliseconds.
const MAINNET_BLOCK_MS: u64 = 12_000;
/// `--churn-spread` at most: the blocks each server's lag keeps in memory.
const MAX_SPREAD: u64 = 1_024;
/// How often the chain's thread looks for the stop signal while it waits for the next block.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// What the servers' chain changes, before the flags that override it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub(crate) enum ChurnPreset {
    /// No blocks: the state stays still.
    None,
    /// The state's share of mainnet's changes: a block every 12 s changing 2,000 × (the state's
    /// accounts ÷ mainnet's ~270 million) accounts and 5,000 × (its slots ÷ mainnet's ~1.13
    /// billion) slots, at least one of each.
    Proportional,
    /// Mainnet-sized blocks: 2,000 accounts and 5,000 slots every 12 s.
    Mainnet,
}

/// Arguments of `bench sync` (and its server process) for churn.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ChurnArgs {
    /// Blocks the servers apply while the clients sync.
    #[arg(long, value_enum, default_value_t = ChurnPreset::None)]
    pub(crate) churn: ChurnPreset,
    /// Milliseconds between blocks, instead of the preset's 12,000.
    #[arg(long)]
    pub(crate) churn_interval_ms: Option<u64>,
    /// Accounts each block changes, instead of the preset's.
    #[arg(long)]
    pub(crate) churn_accounts: Option<u64>,
    /// Storage slots each block changes, instead of the preset's.
    #[arg(long)]
    pub(crate) churn_slots: Option<u64>,
    /// Blocks between the most and the least advanced server's head.
    #[arg(long, default_value_t = 16)]
    pub(crate) churn_spread: u64,
}

/// The churn a run applies, the preset resolved against the generated state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChurnPlan {
    pub(crate) preset: ChurnPreset,
    pub(crate) interval_ms: u64,
    pub(crate) accounts: u64,
    pub(crate) slots: u64,
    pub(crate) spread: u64,
}

fn invalid(what: &str, reason: impl Into<String>) -> CliError {
    CliError::Invalid { what: what.into(), reason: reason.into() }
}

impl ChurnArgs {
    /// Whether blocks are applied at all.
    pub(crate) fn enabled(&self) -> bool {
        self.churn != ChurnPreset::None
    }

    /// The flags to hand on to the server process.
    pub(crate) fn to_args(&self) -> Vec<String> {
        // The preset's name as clap spells it (`ValueEnum`).
        let preset = self.churn.to_possible_value().map(|v| v.get_name().to_string());
        let mut args = vec!["--churn".to_string(), preset.unwrap_or_default()];
        for (flag, value) in [
            ("--churn-interval-ms", self.churn_interval_ms),
            ("--churn-accounts", self.churn_accounts),
            ("--churn-slots", self.churn_slots),
            ("--churn-spread", Some(self.churn_spread)),
        ] {
            if let Some(value) = value {
                args.extend([flag.to_string(), value.to_string()]);
            }
        }
        args
    }

    /// Rejects flags that cannot apply, before anything is generated.
    pub(crate) fn check(&self) -> Result<(), CliError> {
        if !self.enabled() {
            let overrides = [
                ("--churn-interval-ms", self.churn_interval_ms),
                ("--churn-accounts", self.churn_accounts),
                ("--churn-slots", self.churn_slots),
            ];
            if let Some((flag, _)) = overrides.iter().find(|(_, v)| v.is_some()) {
                return Err(invalid(flag, "needs --churn proportional or --churn mainnet"));
            }
            return Ok(());
        }
        if self.churn_interval_ms == Some(0) {
            return Err(invalid("--churn-interval-ms", "must be at least 1"));
        }
        if self.churn_accounts == Some(0) {
            return Err(invalid("--churn-accounts", "a block changes at least one account"));
        }
        if self.churn_spread > MAX_SPREAD {
            return Err(invalid("--churn-spread", format!("at most {MAX_SPREAD} blocks")));
        }
        Ok(())
    }

    /// The plan for a state of `accounts` accounts and `slots` slots (`None`: no churn).
    pub(crate) fn plan(&self, accounts: u64, slots: u64) -> Result<Option<ChurnPlan>, CliError> {
        self.check()?;
        let share = |per_block: u64, state: u64, mainnet: u64| {
            ((per_block as f64 * state as f64 / mainnet as f64).round() as u64).max(1)
        };
        let (preset_accounts, preset_slots) = match self.churn {
            ChurnPreset::None => return Ok(None),
            ChurnPreset::Proportional => (
                share(MAINNET_BLOCK_ACCOUNTS, accounts, MAINNET_ACCOUNTS),
                share(MAINNET_BLOCK_SLOTS, slots, MAINNET_SLOTS),
            ),
            ChurnPreset::Mainnet => (MAINNET_BLOCK_ACCOUNTS, MAINNET_BLOCK_SLOTS),
        };
        Ok(Some(ChurnPlan {
            preset: self.churn,
            interval_ms: self.churn_interval_ms.unwrap_or(MAINNET_BLOCK_MS),
            accounts: self.churn_accounts.unwrap_or(preset_accounts),
            slots: self.churn_slots.unwrap_or(preset_slots),
            spread: self.churn_spread,
        }))
    }
}

impl ChurnPlan {
    /// How many blocks server `i` of `servers` stays behind the chain.
    pub(crate) fn lag(&self, i: usize, servers: usize) -> u64 {
        if servers <= 1 { 0 } else { i as u64 * self.spread / (servers as u64 - 1) }
    }
}

/// The chain so far, as the parent asks for it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ChainReport {
    /// State root of every block, by number (block 0: the generated state).
    pub(crate) roots: Vec<B256>,
    /// Each server's head number.
    pub(crate) heads: Vec<u64>,
    /// The longest a block came after its time, milliseconds (the process could not keep up).
    pub(crate) late_ms: u64,
    /// Why the chain stopped, if it did.
    pub(crate) failed: Option<String>,
}

impl ChainReport {
    /// The state root of block `number`, if the chain has it.
    pub(crate) fn root(&self, number: u64) -> Option<B256> {
        self.roots.get(usize::try_from(number).ok()?).copied()
    }

    /// The chain's head number.
    pub(crate) fn head(&self) -> u64 {
        self.roots.len().saturating_sub(1) as u64
    }
}

/// The thread that grows the chain and moves the servers along it; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Chain {
    report: Arc<Mutex<ChainReport>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Chain {
    /// Starts a block every `plan.interval_ms` on `chain` (the generated state, root `root`),
    /// each applied to `servers[i]` [`ChurnPlan::lag`] blocks later.
    pub(crate) fn start(
        plan: ChurnPlan,
        params: GenParams,
        root: B256,
        chain: Arc<LeafDb>,
        servers: Vec<Arc<LeafDb>>,
    ) -> Result<Self, CliError> {
        let report = Arc::new(Mutex::new(ChainReport {
            roots: vec![root],
            heads: vec![0; servers.len()],
            ..ChainReport::default()
        }));
        let count = servers.len();
        let mut grower = Grower {
            plan,
            params,
            chain,
            servers,
            lags: (0..count).map(|i| plan.lag(i, count)).collect(),
            heads: vec![0; count],
            recent: VecDeque::new(),
            report: report.clone(),
        };
        // The servers start apart, as on a network that has been running: the first `spread`
        // blocks are made at once.
        for number in 1..=plan.spread {
            grower.block(number)?;
        }
        info!(?plan, heads = ?grower.heads, "churn: the servers apply a block every interval");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-chain".into())
            .spawn(move || {
                if let Err(e) = grower.run(plan.spread, &flag) {
                    warn!(error = %e, "the benchmark chain stopped");
                    grower.lock().failed = Some(e.to_string());
                }
            })
            .map_err(|source| CliError::Io { path: "<chain thread>".into(), source })?;
        Ok(Self { report, stop, thread: Some(thread) })
    }

    /// The chain so far.
    pub(crate) fn report(&self) -> ChainReport {
        self.report.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Blocks made so far.
    pub(crate) fn blocks(&self) -> u64 {
        self.report.lock().unwrap_or_else(PoisonError::into_inner).head()
    }

    /// Stops the chain (a block being applied is finished first) and returns what it made.
    pub(crate) fn stop(mut self) -> ChainReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The thread records its own failure in the report.
            let _ = thread.join();
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The chain thread's state.
struct Grower {
    plan: ChurnPlan,
    params: GenParams,
    chain: Arc<LeafDb>,
    servers: Vec<Arc<LeafDb>>,
    /// How many blocks each server stays behind ([`ChurnPlan::lag`]).
    lags: Vec<u64>,
    /// Each server's head number.
    heads: Vec<u64>,
    /// The newest blocks, as many as the most lagging server still needs.
    recent: VecDeque<(BlockHeader, BlockDiff)>,
    report: Arc<Mutex<ChainReport>>,
}

impl Grower {
    fn lock(&self) -> std::sync::MutexGuard<'_, ChainReport> {
        self.report.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes block `number` and moves every server to its lag behind it.
    fn block(&mut self, number: u64) -> Result<(), CliError> {
        let (accounts, slots) = (self.plan.accounts, self.plan.slots);
        let diff = block_diff(&self.chain, self.params, number, accounts, slots)?;
        let (_, header) =
            self.chain.apply_generated_block(&GenParams::block_header(number), &diff)?;
        self.lock().roots.push(header.state_root);
        self.recent.push_back((header, diff));
        let first = number + 1 - self.recent.len() as u64;
        for (i, db) in self.servers.iter().enumerate() {
            while self.heads[i] + self.lags[i] < number {
                let next = self.heads[i] + 1;
                let Some((header, diff)) = self.recent.get((next - first) as usize) else {
                    return Err(invalid("the benchmark chain", format!("lost block {next}")));
                };
                if !db.apply_block(header, diff)?.root_matches {
                    return Err(invalid(
                        "the benchmark chain",
                        format!("server {i} computed another root for block {next}"),
                    ));
                }
                self.heads[i] = next;
            }
        }
        let heads = self.heads.clone();
        self.lock().heads = heads;
        while self.recent.len() as u64 > self.plan.spread + 1 {
            self.recent.pop_front();
        }
        Ok(())
    }

    /// Makes a block every interval after block `made`, until `stop`.
    fn run(&mut self, made: u64, stop: &AtomicBool) -> Result<(), CliError> {
        let interval = Duration::from_millis(self.plan.interval_ms);
        let started = Instant::now();
        for n in 1u32.. {
            let due = started + interval.saturating_mul(n);
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let now = Instant::now();
                if now >= due {
                    let late = u64::try_from((now - due).as_millis()).unwrap_or(u64::MAX);
                    let mut report = self.lock();
                    report.late_ms = report.late_ms.max(late);
                    break;
                }
                std::thread::sleep((due - now).min(STOP_CHECK));
            }
            self.block(made + u64::from(n))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

    use super::*;

    fn args(churn: ChurnPreset) -> ChurnArgs {
        ChurnArgs {
            churn,
            churn_interval_ms: None,
            churn_accounts: None,
            churn_slots: None,
            churn_spread: 16,
        }
    }

    #[test]
    fn presets_resolve_against_the_state() {
        assert_eq!(args(ChurnPreset::None).plan(1_000_000, 5_000_000).unwrap(), None);
        let p = args(ChurnPreset::Proportional).plan(1_000_000, 11_300_000).unwrap().unwrap();
        // 2,000 × 1M / 270M = 7.4; 5,000 × 11.3M / 1.13G = 50.
        assert_eq!((p.interval_ms, p.accounts, p.slots, p.spread), (12_000, 7, 50, 16));
        let tiny = args(ChurnPreset::Proportional).plan(10, 10).unwrap().unwrap();
        assert_eq!((tiny.accounts, tiny.slots), (1, 1));
        let mut fast = args(ChurnPreset::Mainnet);
        fast.churn_interval_ms = Some(2_000);
        let m = fast.plan(1_000_000, 0).unwrap().unwrap();
        assert_eq!((m.interval_ms, m.accounts, m.slots), (2_000, 2_000, 5_000));
    }

    #[test]
    fn flags_that_cannot_apply_are_refused_by_name() {
        let mut a = args(ChurnPreset::None);
        a.churn_slots = Some(3);
        let e = a.check().unwrap_err().to_string();
        assert!(e.contains("--churn-slots"), "{e}");
        let mut a = args(ChurnPreset::Mainnet);
        a.churn_interval_ms = Some(0);
        assert!(a.check().unwrap_err().to_string().contains("--churn-interval-ms"));
        let mut a = args(ChurnPreset::Mainnet);
        a.churn_spread = MAX_SPREAD + 1;
        assert!(a.check().unwrap_err().to_string().contains("--churn-spread"));
    }

    #[test]
    fn lags_spread_the_servers_from_the_head_to_the_spread() {
        let plan = args(ChurnPreset::Mainnet).plan(1, 1).unwrap().unwrap();
        let lags: Vec<u64> = (0..4).map(|i| plan.lag(i, 4)).collect();
        assert_eq!(lags, [0, 5, 10, 16]);
        assert_eq!(plan.lag(0, 1), 0);
    }

    #[test]
    fn the_flags_reach_the_server_process_unchanged() {
        let mut a = args(ChurnPreset::Proportional);
        a.churn_accounts = Some(9);
        assert_eq!(
            a.to_args(),
            ["--churn", "proportional", "--churn-accounts", "9", "--churn-spread", "16"]
        );
    }

    /// A generated state of 2,000 accounts in `dir`: its root, the leafdb that makes the chain
    /// and three server copies.
    fn fixture(dir: &std::path::Path) -> (GenParams, B256, Arc<LeafDb>, Vec<Arc<LeafDb>>) {
        let params = GenParams { accounts: 2_000, seed: 4 };
        let open = |path: &std::path::Path| Arc::new(crate::node::loopback::open(path).unwrap());
        let chain = open(&dir.join("chain"));
        let root = chain.generate(params).unwrap().root;
        let servers = (0..3)
            .map(|i| {
                let path = dir.join(format!("server-{i}"));
                chain.checkpoint(&path).unwrap();
                open(&path)
            })
            .collect();
        (params, root, chain, servers)
    }

    fn plan(interval_ms: u64) -> ChurnPlan {
        ChurnPlan { preset: ChurnPreset::Mainnet, interval_ms, accounts: 20, slots: 40, spread: 4 }
    }

    #[test]
    fn the_servers_start_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (params, root, chain, servers) = fixture(dir.path());
        // An hour between blocks: only the first `spread` blocks are made.
        let running = Chain::start(plan(3_600_000), params, root, chain, servers.clone()).unwrap();
        let report = running.stop();
        assert_eq!((report.head(), report.heads.as_slice()), (4, [4, 2, 0].as_slice()));
        let heads: Vec<u64> = servers.iter().map(|db| db.head().unwrap().unwrap().number).collect();
        assert_eq!(heads, [4, 2, 0]);
    }

    #[test]
    fn servers_follow_the_chain_at_their_lags() {
        let dir = tempfile::tempdir().unwrap();
        let (params, root, chain, servers) = fixture(dir.path());
        let plan = plan(1);
        let running = Chain::start(plan, params, root, chain.clone(), servers.clone()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while running.blocks() < 8 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let report = running.stop();
        assert_eq!(report.failed, None);
        let head = chain.head().unwrap().unwrap();
        assert!(head.number >= 8, "{head:?}");
        assert_eq!((report.head(), report.root(head.number)), (head.number, Some(head.state_root)));
        assert_eq!(report.root(0), Some(root));
        for (i, db) in servers.iter().enumerate() {
            let server = db.head().unwrap().unwrap();
            assert_eq!(server.number + plan.lag(i, 3), head.number, "server {i}");
            assert_eq!(report.heads[i], server.number);
            assert_eq!(report.root(server.number), Some(server.state_root));
            assert_eq!(db.account_root().unwrap(), server.state_root);
            assert_eq!(db.root_mismatches().unwrap(), 0);
        }
        assert_eq!(chain.root_mismatches().unwrap(), 0);
        assert_eq!(servers[0].account_root().unwrap(), chain.account_root().unwrap());
    }
}
