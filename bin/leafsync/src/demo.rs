//! `leafsync demo`: K servers and one client on loopback over a generated state. The servers
//! each hold the same synthetic state in their own leafdb and serve it over `leaf/1`; the client
//! starts empty, syncs from all of them at once over RLPx, and the result is checked: the
//! client's root, flat tables and codes must equal the servers'. Exits non-zero otherwise.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Instant};

use leafsync_leafdb::GenParams;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    error::CliError,
    node::loopback::{check_servers, open, runtime, start_client, start_servers, stop_servers},
};

/// Arguments of `leafsync demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Accounts in the generated state.
    #[arg(long, default_value_t = 100_000)]
    accounts: u64,
    /// Number of servers.
    #[arg(long, default_value_t = 3)]
    servers: usize,
    /// Seed of the generator.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where to put the databases (a fresh temporary directory inside it, removed at the end).
    #[arg(long, default_value = ".")]
    workdir: PathBuf,
}

pub(crate) fn demo(args: &DemoArgs) -> Result<ExitCode, CliError> {
    check_servers(args.servers)?;
    let dir = args.workdir.join(format!("leafsync-demo-{}", std::process::id()));
    let result = run_demo(args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_demo(args: &DemoArgs, dir: &std::path::Path) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let params = GenParams { accounts: args.accounts, seed: args.seed };
    let mut servers = Vec::new();
    for i in 0..args.servers {
        let db = open(&dir.join(format!("server-{i}")))?;
        let out = db.generate(params)?;
        info!(server = i, accounts = out.accounts, slots = out.slots, root = %out.root, "server state generated");
        servers.push(Arc::new(db));
    }
    let root = servers[0].account_root()?;
    let client_db = Arc::new(open(&dir.join("client"))?);
    let runtime = runtime()?;
    let outcome = runtime.block_on(async {
        let stop = CancellationToken::new();
        let (records, tasks, _) =
            start_servers(servers.iter().cloned(), root, args.accounts, &stop).await?;
        let client = start_client(client_db.clone(), records).await?;
        info!(servers = tasks.len(), "client connected; syncing");
        let sync_started = Instant::now();
        let out = client.sync_state().await;
        let secs = sync_started.elapsed().as_secs_f64();
        client.shutdown().await?;
        stop_servers(&stop, tasks).await?;
        Ok::<_, CliError>((out?, secs))
    })?;
    let (out, sync_secs) = outcome;
    drop(runtime);

    // The check: the client's state equals the servers', leaf for leaf.
    let client = client_db.verify()?;
    let server = servers[0].verify()?;
    let same = out.root == root
        && client.ok()
        && client.computed_root == server.computed_root
        && (client.accounts, client.slots) == (server.accounts, server.slots);
    let s = &out.stats;
    println!(
        "leafsync demo: {} servers, 1 client, {} accounts, {} storage slots",
        args.servers, server.accounts, server.slots
    );
    println!("  state root     {root}");
    println!(
        "  client root    {}  ({})",
        out.root,
        if out.root == root { "equal" } else { "DIFFERENT" }
    );
    println!(
        "  flat state     {}",
        if same {
            "equal to the servers' (accounts, slots, codes, every trie node)"
        } else {
            "DIFFERENT"
        }
    );
    println!(
        "  sync time      {sync_secs:.1} s (whole demo {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "  downloaded     {:.1} MiB in {} requests",
        s.bytes_down as f64 / (1 << 20) as f64,
        s.requests
    );
    println!(
        "  chunks         {} ({} verified, {} healed); heal fraction {:.3}; {} nodes healed",
        s.chunks_done,
        s.chunks_verified,
        s.chunks_healed,
        s.heal_fraction(),
        s.healed_nodes
    );
    if !same {
        for p in &client.problems {
            println!("  problem: {p}");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
