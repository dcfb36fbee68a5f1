//! The admin JSON-RPC (`admin_nodeInfo`, `admin_peers`, `admin_addPeer`, `leaf_head`,
//! `leaf_syncStatus`) and the Prometheus metrics endpoint, over HTTP/1 on addresses from the
//! config (loopback by default), plus the small client `leafsync status` uses.

use std::{
    convert::Infallible,
    net::SocketAddr,
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use leafsync_leafdb::LeafDb;
use leafsync_p2p::{
    chain::ChainSpec,
    peers::{Direction, NetworkHandle, NodeRecord},
};
use leafsync_serve::LeafServer;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::CliError;

/// Largest request body the admin endpoint reads: JSON-RPC calls are a few hundred bytes, and a
/// local tool has no reason to send more.
pub(crate) const MAX_ADMIN_BODY: usize = 64 << 10;
/// How long a client may take to send a request's headers, from the moment the server starts
/// waiting for them: 5 s. A local tool or a Prometheus scrape sends its headers in one packet, so
/// only a stalled (slowloris) connection comes near this. hyper starts this timer whenever it waits
/// for a request head, also between the requests of a kept-alive connection, so it is the
/// keep-alive idle timeout too: an idle connection is closed after 5 s.
pub(crate) const HTTP_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take once its headers are in, reading its body (at most
/// [`MAX_ADMIN_BODY`]) included: 10 s. Every admin call and a metrics scrape answer in
/// milliseconds; a client trickling its body, or a call stuck behind a busy network manager,
/// gets `408 Request Timeout` instead of holding the connection.
pub(crate) const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection, however busy: 60 s. It bounds what the other timeouts do not
/// see, such as a client that never reads its answer; a scraper or `leafsync status` simply
/// reconnects.
pub(crate) const HTTP_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Connections served at once by each endpoint (admin and metrics have one cap each): 256, far
/// above what a few local tools and a scraper use, and small next to the file descriptor budget
/// (see `run::FD_RESERVE`). A connection over the cap is closed as soon as it is accepted.
pub(crate) const MAX_HTTP_CONNECTIONS: usize = 256;
/// Requests of one endpoint handled at once: 4. Most calls and every scrape ask the network
/// manager for its peers over the command channel the sync also uses, so a flood of scrapes or
/// calls gets in line here instead of there. Waiting for a turn counts toward
/// [`HTTP_REQUEST_TIMEOUT`].
pub(crate) const MAX_CONCURRENT_CALLS: usize = 4;
/// Pause after a failed `accept` (such as EMFILE, out of file descriptors) before the next one,
/// instead of spinning on the error: 100 ms, the p2p listener's value.
pub(crate) const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Least time between two warnings about failed accepts (the others go to the debug log): 10 s,
/// so that running out of file descriptors is reported without flooding the log.
pub(crate) const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Peers `admin_addPeer` may add in one run of the daemon: 32. Added peers become static peers,
/// which are dialed first and count toward `p2p.max_outbound`, and the network keeps them for
/// good; without a bound a local caller could fill the outbound slots and grow that list without
/// end. Adding a peer that is already added again does not count; more static peers belong in
/// `p2p.static_peers`.
pub(crate) const MAX_ADMIN_ADDED_PEERS: usize = 32;

/// What the endpoints read.
pub(crate) struct AdminState {
    /// The network.
    pub(crate) network: NetworkHandle,
    /// The state store.
    pub(crate) db: Arc<LeafDb>,
    /// The request handler, for its counters.
    pub(crate) server: Arc<LeafServer<leafsync_leafdb::RocksStore>>,
    /// The chain.
    pub(crate) chain: ChainSpec,
    /// When the daemon started.
    pub(crate) started: Instant,
    /// The follower's counters, once it follows an execution client (after a sync, if any).
    pub(crate) ingest: std::sync::OnceLock<Arc<leafsync_ingest::IngestStats>>,
    /// What the daemon is doing, as the node publishes it.
    pub(crate) phase: tokio::sync::watch::Receiver<crate::node::DaemonPhase>,
    /// The sync's counters (all zero when this run did not sync).
    pub(crate) sync: tokio::sync::watch::Receiver<leafsync_sync::SyncStats>,
    /// The peers `admin_addPeer` added in this run, at most [`MAX_ADMIN_ADDED_PEERS`].
    pub(crate) added_peers: std::sync::Mutex<std::collections::HashSet<leafsync_p2p::PeerId>>,
}

/// The sync counters as JSON, `null` when this run did not sync.
fn sync_json(s: &leafsync_sync::SyncStats) -> Value {
    if s.requests == 0 && s.phase != leafsync_sync::Phase::Done {
        return Value::Null;
    }
    json!({
        "phase": format!("{:?}", s.phase).to_lowercase(),
        "pivot": {"number": s.pivot.number, "hash": s.pivot.hash.to_string(), "stateRoot": s.pivot.state_root.to_string()},
        "chunksTotal": s.chunks_total,
        "chunksDone": s.chunks_done,
        "chunksHealed": s.chunks_healed,
        "accounts": s.accounts,
        "slots": s.slots,
        "codes": s.codes,
        "healedNodes": s.healed_nodes,
        "healQueue": s.heal_queue,
        "requests": s.requests,
        "bytesDown": s.bytes_down,
        "peers": s.peers,
        "peersBanned": s.peers_banned,
        "repivots": s.repivots,
        "elapsedSecs": s.elapsed.as_secs_f64(),
        "etaSecs": s.eta().map(|d| d.as_secs()),
    })
}

/// What an endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// JSON-RPC on `POST /`.
    Admin,
    /// Prometheus text on `GET /metrics`.
    Metrics,
}

/// Binds `addr` for `role`; returns the listener and the bound address.
pub(crate) async fn bind(
    addr: SocketAddr,
    role: Role,
) -> Result<(TcpListener, SocketAddr), CliError> {
    if role == Role::Admin && !addr.ip().is_loopback() {
        warn!(%addr, "admin JSON-RPC listens beyond loopback: anyone who reaches it can add peers");
    }
    let io = |source| CliError::Io { path: format!("listen {addr}").into(), source };
    let listener = TcpListener::bind(addr).await.map_err(io)?;
    let local = listener.local_addr().map_err(io)?;
    Ok((listener, local))
}

/// Accepts connections until `stop`, then ends every connection: at most
/// [`MAX_HTTP_CONNECTIONS`] at once, each under the header, request and lifetime timeouts;
/// accept errors back off.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    role: Role,
    state: Arc<AdminState>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    let calls = Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS));
    let mut connections = JoinSet::new();
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if last_warning.is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_INTERVAL) {
                    warn!(?role, error = %e, "accepting an HTTP connection failed; pausing");
                    last_warning = Some(Instant::now());
                } else {
                    debug!(?role, error = %e, "accepting an HTTP connection failed; pausing");
                }
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            debug!(?role, %peer, cap = MAX_HTTP_CONNECTIONS, "too many HTTP connections; closing");
            drop(stream);
            continue;
        };
        let (state, calls) = (state.clone(), calls.clone());
        connections.spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let (state, calls) = (state.clone(), calls.clone());
                async move {
                    let turn = async {
                        // The semaphore is never closed, so `acquire` cannot fail.
                        let _turn = calls.acquire().await;
                        handle(req, role, state).await
                    };
                    match tokio::time::timeout(HTTP_REQUEST_TIMEOUT, turn).await {
                        Ok(answer) => answer,
                        Err(_) => Ok(reply(
                            StatusCode::REQUEST_TIMEOUT,
                            "text/plain",
                            "request timed out\n".into(),
                        )),
                    }
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HTTP_HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(HTTP_CONNECTION_LIFETIME, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(?role, %peer, error = %e, "HTTP connection ended"),
                Err(_) => debug!(?role, %peer, "HTTP connection closed at its lifetime limit"),
            }
        });
    }
    connections.shutdown().await;
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(
    req: Request<Incoming>,
    role: Role,
    state: Arc<AdminState>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (role, req.method(), req.uri().path()) {
        (Role::Metrics, &Method::GET, "/metrics") => {
            reply(StatusCode::OK, "text/plain; version=0.0.4", metrics(&state).await)
        }
        (Role::Admin, &Method::POST, "/") => {
            let body = match Limited::new(req.into_body(), MAX_ADMIN_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return Ok(reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "text/plain",
                        "request too large\n".into(),
                    ));
                }
            };
            let answer = rpc(&body, &state).await;
            reply(StatusCode::OK, "application/json", answer.to_string())
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

async fn rpc(body: &[u8], state: &AdminState) -> Value {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return rpc_error(&Value::Null, -32700, "parse error");
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = req.get("method").and_then(Value::as_str) else {
        return rpc_error(&id, -32600, "invalid request: no method (batches are not supported)");
    };
    let params = req.get("params").cloned().unwrap_or(Value::Array(Vec::new()));
    let result = match method {
        "admin_nodeInfo" => Ok(node_info(state).await),
        "admin_peers" => Ok(peers(state).await),
        "admin_addPeer" => add_peer(state, &params).await,
        "leaf_head" => head(state),
        "leaf_syncStatus" => sync_status(state).await,
        other => Err((-32601, format!("method {other:?} not found"))),
    };
    match result {
        Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
        Err((code, message)) => rpc_error(&id, code, &message),
    }
}

async fn node_info(state: &AdminState) -> Value {
    let enr = state.network.local_enr().await.map(|e| e.to_base64());
    json!({
        "id": state.network.local_id().to_string(),
        "enode": state.network.local_enode().to_string(),
        "enr": enr,
        "listenAddr": state.network.local_enode().addr.to_string(),
        "chain": state.chain.name,
        "networkId": state.chain.network_id,
        "genesis": state.chain.genesis_hash.to_string(),
        "uptimeSecs": state.started.elapsed().as_secs(),
    })
}

async fn peers(state: &AdminState) -> Value {
    let peers = state.network.peers().await;
    Value::Array(
        peers
            .into_iter()
            .map(|p| {
                json!({
                    "id": p.id.to_string(),
                    "addr": p.addr.to_string(),
                    "direction": if p.direction == Direction::Inbound { "inbound" } else { "outbound" },
                    "client": p.client_version,
                    "head": {"number": p.head.number, "hash": p.head.hash.to_string(), "stateRoot": p.head.state_root.to_string()},
                    "score": p.score,
                    "trusted": p.trusted,
                })
            })
            .collect(),
    )
}

async fn add_peer(state: &AdminState, params: &Value) -> Result<Value, (i64, String)> {
    let enode = params
        .get(0)
        .and_then(Value::as_str)
        .ok_or((-32602, "expected one parameter: an enode URL".to_string()))?;
    let record =
        NodeRecord::from_str(enode).map_err(|e| (-32602, format!("invalid enode: {e}")))?;
    {
        let mut added = state.added_peers.lock().unwrap_or_else(|e| e.into_inner());
        if !added.contains(&record.id) && added.len() >= MAX_ADMIN_ADDED_PEERS {
            return Err((
                -32000,
                format!(
                    "admin_addPeer {enode}: this run already added {MAX_ADMIN_ADDED_PEERS} peers \
                     (the limit); list more in p2p.static_peers"
                ),
            ));
        }
        added.insert(record.id);
    }
    state.network.add_peer(record).await.map_err(|e| (-32000, e.to_string()))?;
    Ok(Value::Bool(true))
}

fn head(state: &AdminState) -> Result<Value, (i64, String)> {
    let head = state.db.head().map_err(|e| (-32000, e.to_string()))?;
    Ok(head.map_or(Value::Null, |h| {
        json!({"number": h.number, "hash": h.hash.to_string(), "parentHash": h.parent_hash.to_string(), "stateRoot": h.state_root.to_string()})
    }))
}

async fn sync_status(state: &AdminState) -> Result<Value, (i64, String)> {
    let head = head(state)?;
    let mismatches = state.db.root_mismatches().map_err(|e| (-32000, e.to_string()))?;
    let stats = state.server.stats();
    let follow = state.ingest.get().map(|i| {
        json!({
            "elHead": i.el_head(),
            "blocksBehind": i.blocks_behind(),
            "blocksApplied": i.blocks_applied(),
            "mismatchingBlocks": i.mismatching_blocks(),
            "reorgs": i.reorgs(),
            "retries": i.retries(),
        })
    });
    Ok(json!({
        "phase": state.phase.borrow().as_str(),
        "follow": follow,
        "stateSync": sync_json(&state.sync.borrow()),
        "head": head,
        "peers": state.network.peers().await.len(),
        "rootMismatches": mismatches,
        "served": stats.served,
        "cacheHits": stats.cache.hits,
        "cacheMisses": stats.cache.misses,
    }))
}

async fn metrics(state: &AdminState) -> String {
    let head = state.db.head().ok().flatten().map_or(0, |h| h.number);
    let mismatches = state.db.root_mismatches().unwrap_or(0);
    let (recent_nodes, recent_bytes) = state.db.recent_cache_size();
    let peers = state.network.peers().await.len();
    let s = state.server.stats();
    let lines = [
        ("leafsync_head_number", "gauge", "Block number of the leafdb head.", head as f64),
        ("leafsync_peers", "gauge", "Connected leaf/1 peers.", peers as f64),
        (
            "leafsync_root_mismatches_total",
            "counter",
            "Blocks whose computed root differed from the header.",
            mismatches as f64,
        ),
        ("leafsync_serve_requests_total", "counter", "leaf/1 requests answered.", s.served as f64),
        (
            "leafsync_serve_penalties_total",
            "counter",
            "leaf/1 messages refused with a penalty.",
            s.penalties as f64,
        ),
        (
            "leafsync_serve_internal_errors_total",
            "counter",
            "Requests answered empty on a database error.",
            s.internal_errors as f64,
        ),
        ("leafsync_serve_cache_hits_total", "counter", "Chunk cache hits.", s.cache.hits as f64),
        (
            "leafsync_serve_cache_misses_total",
            "counter",
            "Chunk cache misses.",
            s.cache.misses as f64,
        ),
        (
            "leafsync_serve_cache_bytes",
            "gauge",
            "Bytes held by the chunk cache.",
            s.cache.bytes as f64,
        ),
        (
            "leafsync_recent_nodes",
            "gauge",
            "Replaced trie nodes held for recent pivots.",
            recent_nodes as f64,
        ),
        (
            "leafsync_recent_nodes_bytes",
            "gauge",
            "Bytes held by the recent-node cache.",
            recent_bytes as f64,
        ),
        (
            "leafsync_uptime_seconds",
            "gauge",
            "Seconds since the daemon started.",
            state.started.elapsed().as_secs_f64(),
        ),
    ];
    let mut lines = lines.to_vec();
    let sync = state.sync.borrow().clone();
    if sync.requests > 0 || sync.phase == leafsync_sync::Phase::Done {
        let phase = match sync.phase {
            leafsync_sync::Phase::Chunks => 0.0,
            leafsync_sync::Phase::Heal => 1.0,
            leafsync_sync::Phase::Done => 2.0,
        };
        lines.extend([
            ("leafsync_sync_phase", "gauge", "Sync phase: 0 chunks, 1 heal, 2 done.", phase),
            (
                "leafsync_sync_pivot",
                "gauge",
                "Block number of the sync pivot.",
                sync.pivot.number as f64,
            ),
            (
                "leafsync_sync_chunks_total",
                "gauge",
                "Chunks known so far.",
                sync.chunks_total as f64,
            ),
            ("leafsync_sync_chunks_done", "gauge", "Chunks imported.", sync.chunks_done as f64),
            (
                "leafsync_sync_chunks_healed",
                "gauge",
                "Chunks that needed heal.",
                sync.chunks_healed as f64,
            ),
            (
                "leafsync_sync_accounts",
                "gauge",
                "Accounts imported from chunks.",
                sync.accounts as f64,
            ),
            (
                "leafsync_sync_slots",
                "gauge",
                "Storage slots imported from chunks.",
                sync.slots as f64,
            ),
            ("leafsync_sync_codes", "gauge", "Codes written.", sync.codes as f64),
            (
                "leafsync_sync_healed_nodes",
                "gauge",
                "Trie nodes written by heal.",
                sync.healed_nodes as f64,
            ),
            (
                "leafsync_sync_heal_queue",
                "gauge",
                "Heal nodes waiting or in flight.",
                sync.heal_queue as f64,
            ),
            (
                "leafsync_sync_requests_total",
                "counter",
                "Sync requests sent.",
                sync.requests as f64,
            ),
            (
                "leafsync_sync_bytes_down_total",
                "counter",
                "Bytes of sync answers received.",
                sync.bytes_down as f64,
            ),
            (
                "leafsync_sync_timeouts_total",
                "counter",
                "Sync requests timed out.",
                sync.timeouts as f64,
            ),
            ("leafsync_sync_peers", "gauge", "Peers the sync uses.", sync.peers as f64),
            (
                "leafsync_sync_peers_banned_total",
                "counter",
                "Peers banned by the sync.",
                sync.peers_banned as f64,
            ),
            ("leafsync_sync_repivots_total", "counter", "Pivot moves.", sync.repivots as f64),
        ]);
    }
    if let Some(i) = state.ingest.get() {
        lines.extend([
            (
                "leafsync_ingest_el_head",
                "gauge",
                "Head block number of the execution client.",
                i.el_head() as f64,
            ),
            (
                "leafsync_ingest_blocks_behind",
                "gauge",
                "Blocks the leafdb is behind the execution client.",
                i.blocks_behind() as f64,
            ),
            (
                "leafsync_ingest_blocks_applied_total",
                "counter",
                "Blocks applied from the execution client.",
                i.blocks_applied() as f64,
            ),
            (
                "leafsync_ingest_mismatching_blocks_total",
                "counter",
                "Followed blocks whose root differed from the header.",
                i.mismatching_blocks() as f64,
            ),
            ("leafsync_ingest_reorgs_total", "counter", "Reorgs detected.", i.reorgs() as f64),
            (
                "leafsync_ingest_last_apply_seconds",
                "gauge",
                "Fold and apply time of the last block.",
                i.last_apply_micros() as f64 / 1e6,
            ),
        ]);
    }
    let mut out = String::new();
    for (name, kind, help, value) in lines {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    }
    out
}

/// Calls `method` on the admin JSON-RPC at `url` (`http://host:port`).
pub(crate) async fn call(url: &str, method: &str, params: Value) -> Result<Value, CliError> {
    let bad = |reason: String| CliError::Invalid { what: url.to_string(), reason };
    let authority =
        url.strip_prefix("http://").ok_or_else(|| bad("expected http://host:port".into()))?;
    let authority = authority.trim_end_matches('/');
    let addr = tokio::net::lookup_host(authority)
        .await
        .map_err(|e| bad(format!("cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))?;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| bad(format!("cannot connect (is `leafsync run` running?): {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| bad(e.to_string()))?;
    tokio::spawn(conn);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let req = Request::post("/")
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| bad(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| bad(e.to_string()))?;
    let bytes = Limited::new(resp.into_body(), 16 << 20)
        .collect()
        .await
        .map_err(|e| bad(e.to_string()))?
        .to_bytes();
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    if let Some(err) = v.get("error") {
        return Err(bad(format!("{method}: {err}")));
    }
    Ok(v.get("result").cloned().unwrap_or(Value::Null))
}

/// `leafsync status`: phase, head and peers of a running daemon.
pub(crate) fn status(url: &str, as_json: bool) -> Result<std::process::ExitCode, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io { path: "<tokio runtime>".into(), source })?;
    let (info, sync, peers) = runtime.block_on(async {
        Ok::<_, CliError>((
            call(url, "admin_nodeInfo", json!([])).await?,
            call(url, "leaf_syncStatus", json!([])).await?,
            call(url, "admin_peers", json!([])).await?,
        ))
    })?;
    if as_json {
        println!("{}", json!({"node": info, "sync": sync, "peers": peers}));
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let s = |v: &Value, k: &str| {
        v.get(k)
            .map_or_else(String::new, |x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
    };
    println!("node:    {}", s(&info, "enode"));
    println!("chain:   {} (network {})", s(&info, "chain"), s(&info, "networkId"));
    println!("phase:   {}", s(&sync, "phase"));
    if let Some(y) = sync.get("stateSync").filter(|y| !y.is_null()) {
        let pivot = y.get("pivot").map(|p| s(p, "number")).unwrap_or_default();
        println!(
            "sync:    {} at pivot {pivot}: {}/{} chunks, {} accounts, {} slots, {} codes, {} healed nodes, {} bytes, {} requests",
            s(y, "phase"),
            s(y, "chunksDone"),
            s(y, "chunksTotal"),
            s(y, "accounts"),
            s(y, "slots"),
            s(y, "codes"),
            s(y, "healedNodes"),
            s(y, "bytesDown"),
            s(y, "requests"),
        );
    }
    if let Some(f) = sync.get("follow").filter(|f| !f.is_null()) {
        println!(
            "follow:  execution client at block {}, {} behind, {} applied, {} root mismatches",
            s(f, "elHead"),
            s(f, "blocksBehind"),
            s(f, "blocksApplied"),
            s(f, "mismatchingBlocks")
        );
    }
    match sync.get("head") {
        Some(h) if !h.is_null() => {
            println!("head:    block {} root {}", s(h, "number"), s(h, "stateRoot"))
        }
        _ => println!("head:    none"),
    }
    println!("served:  {} requests ({} cache hits)", s(&sync, "served"), s(&sync, "cacheHits"));
    let list = peers.as_array().cloned().unwrap_or_default();
    println!("peers:   {}", list.len());
    for p in list {
        let head = p.get("head").map(|h| s(h, "number")).unwrap_or_default();
        println!("  {} {} {} head {}", s(&p, "direction"), s(&p, "addr"), s(&p, "client"), head);
    }
    Ok(std::process::ExitCode::SUCCESS)
}
