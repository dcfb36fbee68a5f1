//! `leafsync status`: the admin JSON-RPC's client, generated from the same trait as the server
//! (`api.rs`), printing for a person or as one JSON object.

use std::process::ExitCode;

use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};

use super::api::{AdminApiClient, NodeInfo, PeerInfo, SyncStatus};
use crate::error::CliError;

/// Largest answer `leafsync status` reads: 16 MiB, far above `admin_peers` at the peer limits.
const STATUS_MAX_RESPONSE_BYTES: u32 = 16 << 20;

/// The three answers `status` prints.
#[derive(serde::Serialize)]
struct Status {
    node: NodeInfo,
    sync: SyncStatus,
    peers: Vec<PeerInfo>,
}

/// Asks the daemon at `url` (`http://host:port`).
async fn fetch(url: &str) -> Result<Status, CliError> {
    let bad = |reason: String| CliError::Invalid { what: url.to_string(), reason };
    if !url.starts_with("http://") {
        return Err(bad("expected http://host:port".into()));
    }
    let client: HttpClient = HttpClientBuilder::default()
        .max_response_size(STATUS_MAX_RESPONSE_BYTES)
        .build(url)
        .map_err(|e| bad(e.to_string()))?;
    let call = |method: &str, e: jsonrpsee::core::ClientError| {
        bad(format!("{method}: {e} (is `leafsync run` running?)"))
    };
    Ok(Status {
        node: client.node_info().await.map_err(|e| call("admin_nodeInfo", e))?,
        sync: client.sync_status().await.map_err(|e| call("leaf_syncStatus", e))?,
        peers: client.peers().await.map_err(|e| call("admin_peers", e))?,
    })
}

/// `leafsync status`: phase, head and peers of a running daemon.
pub(crate) fn status(url: &str, as_json: bool) -> Result<ExitCode, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io { path: "<tokio runtime>".into(), source })?;
    let status = runtime.block_on(fetch(url))?;
    if as_json {
        let text = serde_json::to_string(&status)
            .map_err(|e| CliError::Invalid { what: "status".into(), reason: e.to_string() })?;
        println!("{text}");
    } else {
        print(&status);
    }
    Ok(ExitCode::SUCCESS)
}

/// The text form.
fn print(Status { node, sync, peers }: &Status) {
    println!("node:    {}", node.enode);
    println!("chain:   {} (network {})", node.chain, node.network_id);
    println!("phase:   {}", sync.phase.as_str());
    if let Some(y) = &sync.state_sync {
        println!(
            "sync:    {} at pivot {}: {}/{} chunks, {} accounts, {} slots, {} codes, {} healed nodes, {} bytes, {} requests",
            y.phase.as_str(),
            y.pivot.number,
            y.chunks_done,
            y.chunks_total,
            y.accounts,
            y.slots,
            y.codes,
            y.healed_nodes,
            y.bytes_down,
            y.requests,
        );
    }
    if let Some(f) = &sync.follow {
        println!(
            "follow:  execution client at block {}, {} behind, {} applied, {} root mismatches",
            f.el_head, f.blocks_behind, f.blocks_applied, f.mismatching_blocks
        );
    }
    match &sync.head {
        Some(h) => println!("head:    block {} root {}", h.number, h.state_root),
        None => println!("head:    none"),
    }
    println!("served:  {} requests ({} cache hits)", sync.served, sync.cache_hits);
    println!("peers:   {}", peers.len());
    for p in peers {
        let direction = p.direction.as_str();
        println!("  {direction} {} {} head {}", p.addr, p.client, p.head.number);
    }
}
