//! The admin JSON-RPC (`admin_nodeInfo`, `admin_peers`, `admin_addPeer`, `leaf_head`,
//! `leaf_syncStatus`) and the Prometheus metrics endpoint, over HTTP/1 on addresses from the
//! config (loopback by default), plus the client `leafsync status` uses.
//!
//! This file is the HTTP layer both endpoints share, with its limits; `api.rs` is the JSON-RPC
//! trait and its typed answers, `rpc.rs` the methods, `metrics.rs` the Prometheus text and
//! `status.rs` the client.

mod api;
mod metrics;
mod rpc;
mod status;

pub(crate) use self::status::status;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use jsonrpsee::RpcModule;
use leafsync_leafdb::LeafDb;
use leafsync_p2p::{chain::ChainSpec, peers::NetworkHandle, util::WarnEvery};
use leafsync_serve::LeafServer;
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
    pub(crate) phase: tokio::sync::watch::Receiver<crate::phase::DaemonPhase>,
    /// The sync's counters (all zero when this run did not sync).
    pub(crate) sync: tokio::sync::watch::Receiver<leafsync_sync::SyncStats>,
    /// `sync.sources`: which peers a sync takes state from (`admin_peers`' `syncsOver`).
    pub(crate) sources: crate::config::SyncSources,
    /// The peers `admin_addPeer` added in this run, at most [`MAX_ADMIN_ADDED_PEERS`].
    pub(crate) added_peers: std::sync::Mutex<std::collections::HashSet<leafsync_p2p::PeerId>>,
    /// Repairs of a state off the chain finished in this run.
    pub(crate) repairs: std::sync::atomic::AtomicU64,
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
    let endpoint = Arc::new(Endpoint {
        role,
        module: rpc::module(state.clone()),
        exporter: metrics::Exporter::new(),
        state,
    });
    let slots = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    let calls = Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS));
    let mut connections = JoinSet::new();
    let mut warnings = WarnEvery::new(ACCEPT_ERROR_LOG_INTERVAL);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if warnings.due() {
                    warn!(?role, error = %e, "accepting an HTTP connection failed; pausing");
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
        let (endpoint, calls) = (endpoint.clone(), calls.clone());
        connections.spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let (endpoint, calls) = (endpoint.clone(), calls.clone());
                async move {
                    match tokio::time::timeout(HTTP_REQUEST_TIMEOUT, handle(req, endpoint, calls))
                        .await
                    {
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

/// What one endpoint answers with: the JSON-RPC methods or the metrics.
struct Endpoint {
    role: Role,
    state: Arc<AdminState>,
    module: RpcModule<rpc::AdminRpc>,
    exporter: metrics::Exporter,
}

/// Answers one request, taking one of the endpoint's `calls` turns ([`MAX_CONCURRENT_CALLS`])
/// for the work only: an admin call's body is read first, so clients trickling theirs hold no
/// turn.
async fn handle(
    req: Request<Incoming>,
    endpoint: Arc<Endpoint>,
    calls: Arc<Semaphore>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (endpoint.role, req.method(), req.uri().path()) {
        (Role::Metrics, &Method::GET, "/metrics") => {
            // The semaphore is never closed, so `acquire` cannot fail.
            let _turn = calls.acquire().await;
            let text = endpoint.exporter.render(&endpoint.state).await;
            reply(StatusCode::OK, "text/plain; version=0.0.4", text)
        }
        (Role::Admin, &Method::POST, "/") => {
            if let Some(refused) = refuse_web_pages(req.headers()) {
                return Ok(refused);
            }
            let body = match Limited::new(req.into_body(), MAX_ADMIN_BODY).collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    let text = "request too large\n".into();
                    return Ok(reply(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", text));
                }
                Err(_) => {
                    let text = "request body not read\n".into();
                    return Ok(reply(StatusCode::BAD_REQUEST, "text/plain", text));
                }
            };
            let _turn = calls.acquire().await;
            let answer = rpc::answer(&endpoint.module, &String::from_utf8_lossy(&body)).await;
            reply(StatusCode::OK, "application/json", answer)
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

/// Refuses an admin call a web page could have made: a page in a browser on the operator's
/// machine can send a POST to `127.0.0.1` (a "simple" request, `Content-Type: text/plain`, sent
/// without asking), or, with a DNS name it points at `127.0.0.1` (DNS rebinding), read the
/// answers too. So the call must be `application/json` (a page's JSON request is asked about
/// first, and this endpoint allows no origin), carry no `Origin` (browsers add it; local tools
/// do not), and name as its `Host` an IP address or `localhost`, never another DNS name.
fn refuse_web_pages(headers: &hyper::HeaderMap) -> Option<Response<Full<Bytes>>> {
    use hyper::header::{CONTENT_TYPE, HOST, ORIGIN};
    let forbidden =
        |why: &str| Some(reply(StatusCode::FORBIDDEN, "text/plain", format!("{why}\n")));
    if headers.contains_key(ORIGIN) {
        return forbidden("cross-origin calls are refused: the admin JSON-RPC is for local tools");
    }
    let json = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        let text = "Content-Type must be application/json\n".into();
        return Some(reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, "text/plain", text));
    }
    match headers.get(HOST).map(|v| v.to_str().map(host_is_local_or_ip)) {
        None | Some(Ok(true)) => None,
        Some(_) => forbidden("Host refused: call the admin JSON-RPC by IP address or localhost"),
    }
}

/// Whether a `Host` header's host is `localhost` or an IP address (with or without a port).
fn host_is_local_or_ip(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}
