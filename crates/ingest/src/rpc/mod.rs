//! A JSON-RPC 2.0 client for the neighbouring execution client, over HTTP or WebSocket (the
//! URL's scheme decides). Requests are sequential: one owner (the follower) drives it.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, protocol::WebSocketConfig},
};
use tracing::{debug, warn};

use alloy_eip2124::ForkId;
use alloy_primitives::{Address, B256, U256};

use crate::{
    error::{IngestError, RpcError},
    header::RpcHeader,
    types::{EthConfigAnswer, RpcBlock, TxTrace},
};

/// How long one request may take, including a block trace: a full mainnet block traces in well
/// under a second on a synced geth or reth; a minute leaves room for a busy node before the
/// follower treats the link as broken and backs off.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long connecting may take: the neighbour is on the same host or network.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response accepted by default ([`RpcClient::max_response_bytes`] changes it): 256 MiB.
/// A diff-mode trace of a large mainnet block is a few MiB, a gas-limit block of storage writes
/// tens of MiB; but a block built to touch thousands of large contracts, whose code the trace
/// repeats in `pre` for every transaction, can reach hundreds of MiB, and refusing an honest
/// block would stop following (it is retried without end). So the cap is generous, and the
/// memory it allows is kept to about twice the body: the body is read into one buffer sized from
/// `Content-Length` when the neighbour sends it, the `result` is not copied out of it, and the
/// decoded traces are smaller than their hex text. An answer past the cap is refused with
/// [`IngestError::TooLarge`] naming the method, as soon as the cap is crossed.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// JSON-RPC 2.0's "method not found" error code: what an execution client without `eth_config`
/// answers (anvil, geth before 1.16).
const METHOD_NOT_FOUND: i64 = -32601;

/// JSON-RPC 2.0's "invalid params": what anvil answers over WebSocket for a method it does not
/// have.
const INVALID_PARAMS: i64 = -32602;

/// Whether `error` says the client lacks the method called (a call with the right parameters
/// never gets "invalid params" from a client that has it).
pub(crate) fn method_missing(error: &RpcError) -> bool {
    [METHOD_NOT_FOUND, INVALID_PARAMS].contains(&error.code)
}

/// `error` of a `debug_traceBlockByHash` call to the client at `url`, as
/// [`IngestError::TracingUnavailable`] when it says the client lacks the method.
pub(crate) fn tracing_error(url: &str, error: IngestError) -> IngestError {
    match error {
        IngestError::Rpc(error) if method_missing(&error) => {
            IngestError::TracingUnavailable { url: url.to_owned(), error }
        }
        other => other,
    }
}

/// Why a block answered for a number is refused when its number is another.
const NUMBER_DIFFERS: &str = "block number differs from the one requested";

/// Why a block answered for a hash is refused when its hash is another.
const HASH_DIFFERS: &str = "block hash differs from the one requested";

/// `answer` of `method` when it is none or the block requested (`requested`); a block other
/// than the one requested is an [`IngestError::InvalidResponse`] giving `reason`.
fn as_requested<T>(
    method: &'static str,
    answer: Option<T>,
    requested: impl FnOnce(&T) -> bool,
    reason: &'static str,
) -> Result<Option<T>, IngestError> {
    match answer {
        Some(block) if !requested(&block) => Err(IngestError::InvalidResponse { method, reason }),
        answer => Ok(answer),
    }
}

/// The method of subscription notifications. Those that arrive while a response is awaited are
/// counted, not kept: a new head is only a wake-up, so nothing grows with the number of heads.
const SUBSCRIPTION_METHOD: &str = "eth_subscription";

/// The diff-mode prestate tracer configuration.
fn tracer_config() -> Value {
    json!({"tracer": "prestateTracer", "tracerConfig": {"diffMode": true}})
}

type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

mod batch;
mod http;
mod ws;
pub use batch::{HeaderAnswer, MAX_BATCH_CALLS};
use http::{http_status_error, is_json_rpc_answer};
use ws::{Awaited, is_notification, read_text};

#[derive(Debug)]
enum Transport {
    Http(reqwest::Client),
    /// Connected lazily, dropped on any failure and reconnected by the next request.
    Ws(Option<Box<WsStream>>),
}

/// A JSON-RPC client; see the module docs.
#[derive(Debug)]
pub struct RpcClient {
    url: String,
    transport: Transport,
    next_id: u64,
    /// `newHeads` notifications seen and not yet consumed by [`RpcClient::wait_new_head`].
    heads_seen: u64,
    /// Whether the current WebSocket connection has a `newHeads` subscription.
    subscribed: bool,
    /// Whether the client answered `eth_subscribe` with an error: new heads are then polled.
    subscriptions_refused: bool,
    /// Largest answer accepted ([`MAX_RESPONSE_BYTES`] unless set).
    max_response_bytes: usize,
    /// Whether the client answered `eth_getHeaderByNumber`/`ByHash` with an error (anvil has
    /// neither): headers are then read as blocks.
    headers_as_blocks: bool,
    /// Most calls in one batch: [`MAX_BATCH_CALLS`], halved each time the client finds a batch
    /// too large; 0 (or 1) once it refused batches, and calls are sent one by one.
    batch_calls: usize,
    /// Batch answers that were malformed (see `batch::MAX_MALFORMED_BATCHES`).
    malformed_batches: u32,
}

impl RpcClient {
    /// A client for `url` (`http://…` or `ws://…`; TLS is not compiled in, the neighbour is
    /// local). Nothing is connected yet.
    pub fn new(url: &str) -> Result<Self, IngestError> {
        let transport = if url.starts_with("http://") {
            let client = reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .build()?;
            Transport::Http(client)
        } else if url.starts_with("ws://") {
            Transport::Ws(None)
        } else {
            return Err(IngestError::UnsupportedUrl(url.to_owned()));
        };
        Ok(Self {
            url: url.to_owned(),
            transport,
            next_id: 1,
            heads_seen: 0,
            subscribed: false,
            subscriptions_refused: false,
            max_response_bytes: MAX_RESPONSE_BYTES,
            headers_as_blocks: false,
            batch_calls: MAX_BATCH_CALLS,
            malformed_batches: 0,
        })
    }

    /// Sets the largest answer accepted (default [`MAX_RESPONSE_BYTES`]); for WebSocket it takes
    /// effect on the next connection.
    pub const fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether new heads arrive by subscription (WebSocket) rather than polling.
    pub const fn is_websocket(&self) -> bool {
        matches!(self.transport, Transport::Ws(_))
    }

    /// Drops the connection (WebSocket); the next request reconnects.
    pub fn reset(&mut self) {
        if let Transport::Ws(conn) = &mut self.transport {
            *conn = None;
            self.subscribed = false;
        }
    }

    /// Checks that the execution client is on the chain whose genesis hash is `expected`: its
    /// block 0 must have that hash ([`IngestError::WrongChain`] otherwise). One that answers
    /// without block 0 (a JSON-RPC error, or no block: history it no longer serves) is not
    /// refused on that account: the check is skipped with a warning (`false`: not checked).
    /// Transport errors are returned, for the caller to retry.
    pub async fn check_genesis(&mut self, expected: B256) -> Result<bool, IngestError> {
        let found = match self.block(0).await {
            Ok(block) => block.hash,
            Err(error @ (IngestError::Rpc(_) | IngestError::MissingBlock(_))) => {
                warn!(url = self.url(), %error, "block 0 not served: the chain is not checked");
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if found == expected {
            return Ok(true);
        }
        Err(IngestError::WrongChain { url: self.url().to_string(), expected, found })
    }

    /// `eth_blockNumber`.
    pub async fn block_number(&mut self) -> Result<u64, IngestError> {
        let q: alloy_primitives::U64 = self.call("eth_blockNumber", json!([])).await?;
        Ok(q.to())
    }

    /// `eth_getBlockByNumber(number, false)`: the header fields and withdrawals.
    pub async fn block(&mut self, number: u64) -> Result<RpcBlock, IngestError> {
        let method = "eth_getBlockByNumber";
        let block = self.call(method, json!([format!("{number:#x}"), false])).await?;
        as_requested(method, block, |b: &RpcBlock| b.number == number, NUMBER_DIFFERS)?
            .ok_or(IngestError::MissingBlock(number))
    }

    /// The header of block `number` (`eth_getHeaderByNumber`, geth's and reth's; else
    /// `eth_getBlockByNumber(number, false)`, a block's header fields and its transactions'
    /// hashes, ~20 times the bytes on mainnet); `None` when the execution client has no such
    /// block.
    pub async fn header(&mut self, number: u64) -> Result<Option<RpcHeader>, IngestError> {
        let methods = ("eth_getHeaderByNumber", "eth_getBlockByNumber");
        let (method, header) = self.header_call(methods, json!(format!("{number:#x}"))).await?;
        as_requested(method, header, |h| h.number == number, NUMBER_DIFFERS)
    }

    /// The header of the block `hash` (`eth_getHeaderByHash`, else `eth_getBlockByHash(hash,
    /// false)`); `None` when the execution client has no such block.
    pub async fn header_by_hash(&mut self, hash: B256) -> Result<Option<RpcHeader>, IngestError> {
        let methods = ("eth_getHeaderByHash", "eth_getBlockByHash");
        let (method, header) = self.header_call(methods, json!(hash)).await?;
        as_requested(method, header, |h| h.hash == hash, HASH_DIFFERS)
    }

    /// The `header` method's call of the block `at` (a number or a hash), or the `block`
    /// method's (`[at, false]`: without the transactions) once the client has shown it lacks
    /// the header methods (remembered: they are not asked again). A header call answered
    /// "method not found" or "invalid params" (anvil answers the first over HTTP and the second
    /// over WebSocket for a method it does not have) is only taken for that after
    /// `eth_getHeaderByNumber("latest")`, whose parameters every client takes, is answered the
    /// same: geth answers "invalid params" for a block number past `i64::MAX` too, and the
    /// numbers come from peers. Any other error is the call's. Returns the method that answered
    /// too.
    async fn header_call(
        &mut self,
        (header, block): (&'static str, &'static str),
        at: Value,
    ) -> Result<(&'static str, Option<RpcHeader>), IngestError> {
        if !self.headers_as_blocks {
            match self.call(header, json!([at])).await {
                Err(IngestError::Rpc(error)) if method_missing(&error) => {
                    let probe = self
                        .call::<Option<RpcHeader>>("eth_getHeaderByNumber", json!(["latest"]))
                        .await;
                    if !matches!(&probe, Err(IngestError::Rpc(e)) if method_missing(e)) {
                        return Err(error.into());
                    }
                    debug!(method = header, %error, "reading headers as blocks instead");
                    self.headers_as_blocks = true;
                }
                answer => return Ok((header, answer?)),
            }
        }
        Ok((block, self.call(block, json!([at, false])).await?))
    }

    /// `eth_getStorageAt(address, slot, {blockHash})` (EIP-1898: by the block's hash, so that a
    /// reorg cannot pair one block with another's state).
    pub async fn storage_at(
        &mut self,
        address: Address,
        slot: B256,
        block: B256,
    ) -> Result<U256, IngestError> {
        // 32 bytes as hex, read as a number (leading zeros or not).
        self.call("eth_getStorageAt", json!([address, slot, { "blockHash": block }])).await
    }

    /// `eth_config` (EIP-7910): the EIP-2124 fork id at the execution client's head, or `None`
    /// when the client does not have the method or leaves the fork hash zero (anvil 1.x answers
    /// `"forkId": "0x00000000"`); the chain preset's schedule is then the fallback.
    pub async fn fork_id(&mut self) -> Result<Option<ForkId>, IngestError> {
        match self.call::<Option<EthConfigAnswer>>("eth_config", json!([])).await {
            Ok(answer) => Ok(answer.map(|a| a.fork_id()).filter(|id| id.hash.0 != [0; 4])),
            Err(IngestError::Rpc(e)) if method_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `debug_traceBlockByHash` with the prestate tracer in diff mode.
    pub async fn trace_block(&mut self, hash: B256) -> Result<Vec<TxTrace>, IngestError> {
        self.trace_block_raw(hash).await?.decode()
    }

    /// `debug_traceBlockByHash` as received, to be decoded by [`RawResponse::decode`] off the
    /// async runtime: a large trace takes tens of milliseconds or more to decode. By hash, not
    /// number: the trace is of the very block whose header was read, even if a reorg replaced
    /// it in between (by number, the new block's changes would be applied under the old one's
    /// header, a root mismatch counted for good).
    pub async fn trace_block_raw(&mut self, hash: B256) -> Result<RawResponse, IngestError> {
        self.call_raw("debug_traceBlockByHash", json!([hash, tracer_config()])).await
    }

    /// Checks that the execution client serves the traces following needs: it traces block
    /// `hash` (its head, say) as the follower would. [`IngestError::TracingUnavailable`] when
    /// it lacks the method; any other JSON-RPC error passes (a client still syncing has no
    /// state to trace with, but has the method), logged at debug. Transport errors are
    /// returned, for the caller to decide.
    pub async fn check_tracing(&mut self, hash: B256) -> Result<(), IngestError> {
        let answer = self.trace_block_raw(hash).await?;
        match answer.decode::<serde::de::IgnoredAny>() {
            Err(error) => match tracing_error(self.url(), error) {
                e @ IngestError::TracingUnavailable { .. } => Err(e),
                other => {
                    debug!(%hash, error = %other, "trace check: the block was not traced");
                    Ok(())
                }
            },
            Ok(_) => Ok(()),
        }
    }

    /// Subscribes to `newHeads` when on WebSocket (once per connection); returns whether new
    /// heads now arrive by subscription. A client that answers `eth_subscribe` with an error (a
    /// proxy without subscriptions) is not asked again: new heads are polled, as over HTTP.
    pub async fn ensure_subscribed(&mut self) -> Result<bool, IngestError> {
        if !self.is_websocket() || self.subscriptions_refused {
            return Ok(false);
        }
        if !self.subscribed {
            match self.call::<Value>("eth_subscribe", json!(["newHeads"])).await {
                Ok(_id) => self.subscribed = true,
                Err(IngestError::Rpc(error)) => {
                    warn!(url = self.url(), %error, "eth_subscribe refused: polling for new heads");
                    self.subscriptions_refused = true;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Waits up to `max` for a `newHeads` notification (WebSocket), or simply `max` (HTTP
    /// polling). Returns early if a notification already arrived during earlier requests.
    pub async fn wait_new_head(&mut self, max: Duration) -> Result<(), IngestError> {
        if self.heads_seen > 0 {
            self.heads_seen = 0;
            return Ok(());
        }
        let Transport::Ws(Some(ws)) = &mut self.transport else {
            tokio::time::sleep(max).await;
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let Ok(msg) = tokio::time::timeout_at(deadline, ws.next()).await else {
                return Ok(());
            };
            let text = match read_text(msg) {
                Ok(Some(text)) => text,
                Ok(None) => continue,
                Err(e) => {
                    self.reset();
                    return Err(e);
                }
            };
            if is_notification(&text) {
                return Ok(());
            }
        }
    }

    /// Sends one request and decodes its `result`.
    pub async fn call<T: DeserializeOwned>(
        &mut self,
        method: &'static str,
        params: Value,
    ) -> Result<T, IngestError> {
        self.call_raw(method, params).await?.decode()
    }

    /// Sends one request and returns its answer undecoded.
    pub async fn call_raw(
        &mut self,
        method: &'static str,
        params: Value,
    ) -> Result<RawResponse, IngestError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let body = self.send(method, Awaited::One(id), &request).await?;
        Ok(RawResponse { method, id, body })
    }

    /// [`Self::exchange`] within [`REQUEST_TIMEOUT`]; the connection is dropped on any failure.
    async fn send(
        &mut self,
        method: &'static str,
        awaited: Awaited,
        request: &Value,
    ) -> Result<Vec<u8>, IngestError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, awaited, request)).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(e)) => {
                self.reset();
                Err(e)
            }
            Err(_) => {
                self.reset();
                Err(IngestError::Timeout { method, millis: REQUEST_TIMEOUT.as_millis() as u64 })
            }
        }
    }

    /// Sends `request` and returns the body of its answer: over WebSocket, the first message
    /// that is what `awaited` names (notifications are counted on the way).
    async fn exchange(
        &mut self,
        method: &'static str,
        awaited: Awaited,
        request: &Value,
    ) -> Result<Vec<u8>, IngestError> {
        let limit = self.max_response_bytes;
        let too_large = || IngestError::TooLarge { method, limit };
        match &mut self.transport {
            Transport::Http(client) => {
                let mut resp = client.post(&self.url).json(request).send().await?;
                let status = resp.status();
                let announced = resp.content_length();
                if announced.is_some_and(|l| l > limit as u64) {
                    return Err(too_large());
                }
                // One allocation of the announced size: no doubling of a large buffer.
                let mut body = Vec::with_capacity(announced.map_or(0, |l| l as usize));
                while let Some(chunk) = resp.chunk().await? {
                    if body.len() + chunk.len() > limit {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                // Servers answer JSON-RPC errors with 200, but some with another status: those
                // that carry a JSON-RPC answer are read as one.
                if !status.is_success() && !is_json_rpc_answer(&body) {
                    return Err(http_status_error(method, &self.url, status.as_u16(), &body));
                }
                Ok(body)
            }
            Transport::Ws(conn) => {
                let ws = match conn {
                    Some(ws) => ws,
                    None => {
                        let config = WebSocketConfig::default()
                            .max_message_size(Some(limit))
                            .max_frame_size(Some(limit));
                        let connect = tokio_tungstenite::connect_async_with_config(
                            self.url.as_str(),
                            Some(config),
                            false,
                        );
                        let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                            .await
                            .map_err(|_| IngestError::Timeout {
                                method: "connect",
                                millis: CONNECT_TIMEOUT.as_millis() as u64,
                            })??;
                        debug!(url = %self.url, "websocket connected");
                        conn.insert(Box::new(ws))
                    }
                };
                ws.send(Message::text(request.to_string())).await?;
                loop {
                    let msg = ws.next().await;
                    if let Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) = &msg {
                        return Err(too_large());
                    }
                    let Some(text) = read_text(msg)? else { continue };
                    if is_notification(&text) {
                        self.heads_seen += 1;
                        continue;
                    }
                    if awaited.is_answered_by(&text) {
                        return Ok(text.into_bytes());
                    }
                    debug!(?awaited, "ignoring a websocket message that is not our response");
                }
            }
        }
    }
}

/// A JSON-RPC answer as received: at most the client's response cap, not yet parsed.
#[derive(Debug)]
pub struct RawResponse {
    method: &'static str,
    id: u64,
    body: Vec<u8>,
}

impl RawResponse {
    /// Checks the id and decodes the `result` (or returns the JSON-RPC `error`).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, IngestError> {
        decode_response(self.method, self.id, &self.body)
    }

    /// Size of the body in bytes.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }
}

/// Checks the id and splits a JSON-RPC response into its result or error.
fn decode_response<T: DeserializeOwned>(
    method: &'static str,
    id: u64,
    body: &[u8],
) -> Result<T, IngestError> {
    /// `result` borrows from `body`: a large trace is not copied before it is decoded.
    #[derive(serde::Deserialize)]
    struct Response<'a> {
        id: Option<u64>,
        #[serde(borrow)]
        result: Option<&'a serde_json::value::RawValue>,
        error: Option<RpcError>,
    }
    let resp: Response<'_> =
        serde_json::from_slice(body).map_err(|source| IngestError::Decode { method, source })?;
    if resp.id != Some(id) {
        return Err(IngestError::InvalidResponse { method, reason: "id differs from request" });
    }
    match (resp.result, resp.error) {
        (_, Some(e)) => Err(e.into()),
        (Some(raw), None) => {
            serde_json::from_str(raw.get()).map_err(|source| IngestError::Decode { method, source })
        }
        // `"result": null` (e.g. an unknown block) deserializes as absent.
        (None, None) => serde_json::from_str("null").map_err(|_| IngestError::InvalidResponse {
            method,
            reason: "neither result nor error",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_checked() {
        let ok: u64 = decode_response("m", 3, br#"{"jsonrpc":"2.0","id":3,"result":5}"#).unwrap();
        assert_eq!(ok, 5);
        let wrong_id = decode_response::<u64>("m", 4, br#"{"jsonrpc":"2.0","id":3,"result":5}"#);
        assert!(matches!(wrong_id, Err(IngestError::InvalidResponse { .. })));
        let err = decode_response::<u64>(
            "m",
            1,
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no such method"}}"#,
        );
        match err {
            Err(IngestError::Rpc(e)) => {
                assert_eq!((e.code, e.message.as_str()), (-32601, "no such method"))
            }
            other => panic!("expected an RPC error, got {other:?}"),
        }
        let null: Option<u64> = decode_response("m", 1, br#"{"id":1,"result":null}"#).unwrap();
        assert_eq!(null, None);
        assert!(decode_response::<u64>("m", 1, br#"{"id":1}"#).is_err());
        assert!(is_notification(r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{}}"#));
    }
}
