//! `leafsync status`: the admin JSON-RPC's client, generated from the same trait as the server
//! (`api.rs`), printing for a person or as one JSON object.

use std::process::ExitCode;

use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};

use super::api::{AdminApiClient, FollowStatus, NodeInfo, PeerInfo, SyncStatus, SyncsOver};
use crate::{error::CliError, phase::DaemonPhase};

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
    if let Some(line) = sync_line(sync) {
        println!("{line}");
    }
    if let Some(f) = &sync.follow {
        println!("{}", follow_line(f));
    }
    if sync.repairs > 0 {
        println!("repairs: {} (the state went off the chain and was synced back)", sync.repairs);
    }
    match &sync.head {
        Some(h) => println!("head:    block {} root {}", h.number, h.state_root),
        None => println!("head:    none"),
    }
    println!("served:  {} requests ({} cache hits)", sync.served, sync.cache_hits);
    println!("peers:   {}", peers.len());
    for p in peers {
        println!("{}", peer_line(p));
    }
}

/// How long the execution client may be silent before the follow line says so (60 s): it
/// answers at least every poll or new head while it is up.
const EL_SILENT_SHOWN_SECS: u64 = 60;

/// The follower's line of the text form: where the execution client is, and what is wrong
/// (a stuck block, the client silent, never answered).
fn follow_line(f: &FollowStatus) -> String {
    let mut line = format!(
        "follow:  execution client at block {}, {} behind, {} applied, {} root mismatches",
        f.el_head, f.blocks_behind, f.blocks_applied, f.mismatching_blocks
    );
    if f.stuck_block > 0 {
        line += &format!("; stuck at block {} (its trace keeps failing)", f.stuck_block);
    }
    match f.el_silent_secs {
        None => line += "; the execution client has not answered yet",
        Some(secs) if secs >= EL_SILENT_SHOWN_SECS => {
            line += &format!("; the execution client has not answered for {secs} s");
        }
        Some(_) => {}
    }
    line
}

/// The state sync's line of the text form: its counters, or, in the syncing phase before its
/// first request, that it waits for peers; `None` without a sync.
fn sync_line(sync: &SyncStatus) -> Option<String> {
    let Some(y) = &sync.state_sync else {
        return matches!(sync.phase, DaemonPhase::Syncing | DaemonPhase::Repairing)
            .then(|| "sync:    not started: waiting for peers to sync from".to_string());
    };
    Some(format!(
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
    ))
}

/// One peer in the text form: direction, address, client, head, and the protocol a sync takes
/// state from it over (`leaf`, `snap`, or `eth only` for a peer with eth/69 alone) with the
/// protocols it speaks.
fn peer_line(p: &PeerInfo) -> String {
    let over = match p.syncs_over {
        SyncsOver::None if p.protocols == ["eth/69"] => "eth only".to_string(),
        over => format!("syncs over {}", over.as_str()),
    };
    let direction = p.direction.as_str();
    let spoken = p.protocols.join(" ");
    format!("  {direction} {} {} head {} {over} ({spoken})", p.addr, p.client, p.head.number)
}

#[cfg(test)]
mod tests {
    use alloy_primitives::B256;

    use super::*;
    use crate::{
        admin::api::{BlockRef, Direction},
        config::SyncSources,
    };

    fn peer(protocols: &[&str], syncs_over: SyncsOver) -> PeerInfo {
        PeerInfo {
            id: "ab".into(),
            addr: "127.0.0.1:30303".into(),
            direction: Direction::Outbound,
            client: "Geth/v1.16.7".into(),
            head: BlockRef { number: 7, hash: B256::ZERO, state_root: B256::ZERO },
            score: 0.0,
            trusted: true,
            protocols: protocols.iter().map(|p| p.to_string()).collect(),
            syncs_over,
        }
    }

    /// The follow line says what is wrong: a stuck block, a client silent for a minute or more,
    /// or one that never answered; nothing more while it answers.
    #[test]
    fn the_follow_line_names_a_stuck_block_and_a_silent_client() {
        let mut f = FollowStatus {
            el_head: 10,
            blocks_behind: 0,
            blocks_applied: 3,
            mismatching_blocks: 0,
            reorgs: 0,
            blocks_reverted: 0,
            retries: 0,
            stuck_block: 0,
            el_silent_secs: Some(2),
        };
        assert!(!follow_line(&f).contains(';'), "{}", follow_line(&f));
        f.stuck_block = 11;
        f.el_silent_secs = Some(EL_SILENT_SHOWN_SECS);
        let line = follow_line(&f);
        assert!(line.contains("stuck at block 11") && line.contains("not answered for 60 s"));
        f.el_silent_secs = None;
        assert!(follow_line(&f).contains("has not answered yet"));
    }

    /// A sync that has not sent its first request says it waits for peers; without a sync there
    /// is no sync line.
    #[test]
    fn a_sync_before_its_first_request_waits_for_peers() {
        let mut status = SyncStatus {
            phase: DaemonPhase::Syncing,
            follow: None,
            state_sync: None,
            head: None,
            peers: 0,
            root_mismatches: 0,
            repairs: 0,
            served: 0,
            cache_hits: 0,
            cache_misses: 0,
        };
        assert_eq!(
            sync_line(&status).as_deref(),
            Some("sync:    not started: waiting for peers to sync from")
        );
        status.phase = DaemonPhase::Serving;
        assert_eq!(sync_line(&status), None);
    }

    #[test]
    fn each_peer_shows_what_it_syncs_over() {
        let geth = peer(&["eth/69", "snap/1"], SyncsOver::Snap);
        assert_eq!(
            peer_line(&geth),
            "  outbound 127.0.0.1:30303 Geth/v1.16.7 head 7 syncs over snap (eth/69 snap/1)"
        );
        let leaf = peer(&["eth/69", "leaf/1", "snap/1"], SyncsOver::Leaf);
        assert!(peer_line(&leaf).ends_with("syncs over leaf (eth/69 leaf/1 snap/1)"));
        let eth = peer(&["eth/69"], SyncsOver::None);
        assert!(peer_line(&eth).ends_with("head 7 eth only (eth/69)"));
    }

    #[test]
    fn the_sync_prefers_leaf_and_follows_the_sources() {
        let both = SyncSources { leaf: true, snap: true };
        assert_eq!(SyncsOver::of(true, true, both), SyncsOver::Leaf);
        assert_eq!(SyncsOver::of(false, true, both), SyncsOver::Snap);
        assert_eq!(SyncsOver::of(false, false, both), SyncsOver::None);
        let snap = SyncSources { leaf: false, snap: true };
        assert_eq!(SyncsOver::of(true, true, snap), SyncsOver::Snap);
        let leaf = SyncSources { leaf: true, snap: false };
        assert_eq!(SyncsOver::of(false, true, leaf), SyncsOver::None);
    }

    /// A daemon from before snap/1 sends neither field: `status` still reads its peers.
    #[test]
    fn peers_of_an_older_daemon_still_decode() {
        let old = r#"{"id":"ab","addr":"1.2.3.4:5","direction":"inbound","client":"c",
            "head":{"number":1,"hash":"0x0000000000000000000000000000000000000000000000000000000000000000",
            "stateRoot":"0x0000000000000000000000000000000000000000000000000000000000000000"},
            "score":0.0,"trusted":false}"#;
        let p: PeerInfo = serde_json::from_str(old).unwrap();
        assert_eq!((p.protocols.len(), p.syncs_over), (0, SyncsOver::None));
    }
}
