//! `leafsync tool …`: offline commands over a datadir or a file.

use std::{path::Path, process::ExitCode, time::Instant};

use alloy_primitives::B256;
use leafsync_leafdb::{
    BlockHeader, DbOptions, GenParams, LeafDb, LeafDbConfig, StateFile, read_state_file,
};
use tracing::info;

use crate::error::CliError;

/// Opens (creating) a datadir's leafdb.
pub(crate) fn open(datadir: &Path) -> Result<LeafDb, CliError> {
    crate::run::create_datadir(datadir)?;
    Ok(LeafDb::open(&datadir.join("leafdb"), &DbOptions::default(), LeafDbConfig::default())?)
}

/// Opens an existing datadir's leafdb, refusing to create one.
fn open_existing(datadir: &Path) -> Result<LeafDb, CliError> {
    let path = datadir.join("leafdb");
    if !path.join("CURRENT").exists() {
        return Err(CliError::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no leafdb in this datadir"),
        });
    }
    open(datadir)
}

/// The state root of an allocation file, computed in memory.
fn computed_root(file: &StateFile) -> Result<B256, CliError> {
    Ok(LeafDb::in_memory().init_genesis(&file.alloc, BlockHeader::default())?.root)
}

/// Compares a file's stated root (a `geth dump`'s `root`) with the computed one; prints both and
/// returns `false` when they differ.
fn check_stated_root(path: &Path, file: &StateFile, computed: B256) -> bool {
    match file.expected_root {
        Some(stated) if stated != computed => {
            eprintln!(
                "{}: state root mismatch: the file states {stated}, its accounts hash to {computed}",
                path.display()
            );
            false
        }
        _ => true,
    }
}

pub(crate) fn state_root(alloc: &Path) -> Result<ExitCode, CliError> {
    let file = read_state_file(alloc)?;
    let root = computed_root(&file)?;
    println!("{root}");
    Ok(if check_stated_root(alloc, &file, root) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub(crate) fn gen_state(datadir: &Path, accounts: u64, seed: u64) -> Result<ExitCode, CliError> {
    let db = open(datadir)?;
    let start = Instant::now();
    let out = db.generate(GenParams { accounts, seed })?;
    info!(
        accounts = out.accounts,
        slots = out.slots,
        secs = format!("{:.1}", start.elapsed().as_secs_f64()),
        "generated synthetic state"
    );
    println!("{}", out.root);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn init_genesis(datadir: &Path, alloc: &Path) -> Result<ExitCode, CliError> {
    let file = read_state_file(alloc)?;
    // A file that states its root is checked in memory first, so a wrong one never reaches the
    // datadir.
    if file.expected_root.is_some() && !check_stated_root(alloc, &file, computed_root(&file)?) {
        return Ok(ExitCode::FAILURE);
    }
    let db = open(datadir)?;
    let out = db.init_genesis(&file.alloc, BlockHeader::default())?;
    println!("{}", out.root);
    Ok(ExitCode::SUCCESS)
}

/// Accounts between two looks at the clock during `tool verify`.
const VERIFY_PROGRESS_ACCOUNTS: u64 = 65_536;

/// Least time between two progress lines of `tool verify`.
const VERIFY_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) fn verify(datadir: &Path) -> Result<ExitCode, CliError> {
    let db = open_existing(datadir)?;
    let start = Instant::now();
    let estimate = db.estimate_accounts()?;
    info!(estimated_accounts = estimate, "verifying every trie against the flat state");
    let mut last_log = start;
    let r = db.verify_with(VERIFY_PROGRESS_ACCOUNTS, |p| {
        if last_log.elapsed() >= VERIFY_LOG_INTERVAL {
            last_log = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            let fraction = p.fraction();
            let eta = (fraction > 0.0).then(|| (secs / fraction - secs).round());
            info!(
                accounts = p.accounts,
                slots = p.slots,
                percent = (fraction * 1000.0).round() / 10.0,
                eta_s = eta,
                "verify progress"
            );
        }
    })?;
    let head =
        r.head.map_or_else(|| "none".to_string(), |h| format!("{} ({})", h.number, h.state_root));
    println!("accounts:        {}", r.accounts);
    println!("storage slots:   {}", r.slots);
    println!("computed root:   {}", r.computed_root);
    println!("stored root:     {}", r.stored_root);
    println!("head:            {head}");
    println!("node mismatches: {}", r.node_mismatches);
    println!("extra nodes:     {}", r.extra_nodes);
    println!("storage roots:   {} wrong", r.storage_root_mismatches);
    println!("missing code:    {}", r.missing_code);
    println!("orphan slots:    {}", r.orphan_slots);
    for p in &r.problems {
        println!("problem: {p}");
    }
    println!(
        "checked in {:.1}s: {}",
        start.elapsed().as_secs_f64(),
        if r.ok() { "OK" } else { "MISMATCH" }
    );
    Ok(if r.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
