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

pub(crate) fn verify(datadir: &Path) -> Result<ExitCode, CliError> {
    let db = open_existing(datadir)?;
    let start = Instant::now();
    let r = db.verify()?;
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
