//! Errors of the ingest layer.

use leafsync_leafdb::{GenesisError, LeafDbError};

/// An error object returned by the execution client (JSON-RPC 2.0 `error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Deserialize)]
#[error("JSON-RPC error {code}: {message}")]
pub struct RpcError {
    /// The JSON-RPC error code.
    pub code: i64,
    /// The error message.
    pub message: String,
}

/// `e`'s message followed by its innermost cause's (why a request failed), when it has one.
fn with_reason(e: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(cause) = root.source() {
        root = cause;
    }
    let (message, reason) = (e.to_string(), root.to_string());
    if message.contains(&reason) { message } else { format!("{message}: {reason}") }
}

/// Everything that can go wrong while following the execution client.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The execution client answered with a JSON-RPC error.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// HTTP transport failure, with its innermost cause (reqwest's own message leaves out why a
    /// request failed: "error sending request" without "Connection refused").
    #[error("http: {}", with_reason(.0))]
    Http(#[from] reqwest::Error),
    /// WebSocket transport failure.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The WebSocket was closed by the execution client.
    #[error("websocket closed by the execution client")]
    WebSocketClosed,
    /// The execution client is on another chain than the configured one: its block 0 is not
    /// the chain's genesis. Its blocks would be applied to the wrong state, and its head would
    /// make a pivot no peer of the chain has.
    #[error(
        "the execution client at {url} is on another chain: its genesis block is {found}, the \
         configured chain's is {expected}"
    )]
    WrongChain {
        /// The execution client's URL.
        url: String,
        /// The configured chain's genesis hash.
        expected: alloy_primitives::B256,
        /// The hash of the execution client's block 0.
        found: alloy_primitives::B256,
    },
    /// The execution client does not serve `debug_traceBlockByHash`: it answered the call
    /// "method not found" (or "invalid params", which anvil answers over WebSocket for a method
    /// it lacks). Its `debug` namespace is off on the endpoint leafsync uses, and no block can
    /// be followed until it is on. Retried (the operator may restart the client with it), but
    /// never taken for a stuck block: repairing from peers would not help.
    #[error(
        "the execution client at {url} does not serve `debug_traceBlockByHash` ({error}): enable \
         its `debug` namespace on that endpoint (geth, reth: `--ws.api eth,debug` or \
         `--http.api eth,debug`)"
    )]
    TracingUnavailable {
        /// The execution client's URL.
        url: String,
        /// What it answered.
        error: RpcError,
    },
    /// The execution client's HTTP endpoint answered with a status other than success and a
    /// body that is no JSON-RPC answer: a wrong port (the engine API's answers 401 without a
    /// JWT), a host or origin it refuses (403), a proxy in front of it.
    #[error("`{method}`: HTTP {status} from {url}{hint}: {body}")]
    HttpStatus {
        /// The JSON-RPC method.
        method: &'static str,
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// What the status likely means, or empty.
        hint: &'static str,
        /// The start of the body, as text.
        body: String,
    },
    /// A request got no answer in time.
    #[error("`{method}` timed out after {millis} ms")]
    Timeout {
        /// The JSON-RPC method.
        method: &'static str,
        /// The timeout that expired.
        millis: u64,
    },
    /// A response could not be decoded.
    #[error("malformed response to `{method}`: {source}")]
    Decode {
        /// The JSON-RPC method.
        method: &'static str,
        /// The decoder's error.
        source: serde_json::Error,
    },
    /// A response broke the protocol (wrong id, neither result nor error, too large).
    #[error("invalid response to `{method}`: {reason}")]
    InvalidResponse {
        /// The JSON-RPC method.
        method: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// An answer was larger than the client accepts (`rpc::MAX_RESPONSE_BYTES` by default).
    #[error("the answer to `{method}` is larger than {limit} bytes (the response size cap)")]
    TooLarge {
        /// The JSON-RPC method.
        method: &'static str,
        /// The cap, in bytes.
        limit: usize,
    },
    /// The execution client does not know a block it should have.
    #[error("execution client has no block {0}")]
    MissingBlock(u64),
    /// The tracer failed for one transaction of a block.
    #[error("trace of block {block} transaction {index} failed: {message}")]
    TraceFailed {
        /// The block.
        block: u64,
        /// Index of the transaction in the block.
        index: usize,
        /// The tracer's error message.
        message: String,
    },
    /// The URL's scheme is not `http` or `ws`, or it does not parse.
    #[error("unsupported execution client URL `{0}` (expected http://… or ws://…)")]
    UnsupportedUrl(String),
    /// The leafdb has no state and no genesis file is configured.
    #[error("the leafdb is empty and no genesis allocation is configured")]
    NoState,
    /// The leafdb failed.
    #[error(transparent)]
    LeafDb(#[from] LeafDbError),
    /// The genesis allocation could not be read.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    /// The block application thread could not be started.
    #[error("cannot start the block application thread: {0}")]
    ApplySpawn(#[source] std::io::Error),
    /// The block application thread ended (a job panicked).
    #[error("the block application thread ended (see the log for a panic)")]
    ApplyThreadGone,
    /// A blocking task panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl IngestError {
    /// Whether following should retry after a backoff: the execution client or the link to it
    /// failed, as opposed to our own store or configuration.
    pub const fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Self::UnsupportedUrl(_)
                | Self::WrongChain { .. }
                | Self::NoState
                | Self::LeafDb(_)
                | Self::Genesis(_)
                | Self::Join(_)
                | Self::ApplySpawn(_)
                | Self::ApplyThreadGone
        )
    }
}
