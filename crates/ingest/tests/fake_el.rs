//! The follower against a scripted execution client on loopback: block application does not wait
//! behind a saturated blocking pool (review finding H3), and an oversized answer is refused with
//! an error that names the method (L9). Also the eth/69 inputs read from the execution client:
//! the fork id (`eth_config`, or its absence) and header queries.

#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

use leafsync_ingest::test_utils as common;

use leafsync_leafdb::test_utils::package_dir;
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use alloy_eip2124::{ForkHash, ForkId};
use alloy_primitives::{B256, keccak256};
use leafsync_ingest::{
    ElHeaders, EthConfigAnswer, Follower, FollowerConfig, HeaderOrigin, HeaderQuery, IngestError,
    MAX_HEADERS_PER_QUERY, RpcClient, RpcHeader,
};
use leafsync_leafdb::{
    BlockHeader, GenParams, LeafDb, LeafDbConfig, MemStore, test_utils::HookStore,
};
use serde_json::{Value, json};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
};

/// What the scripted execution client answers: the `result` of a call, or a raw body.
enum Answer {
    Result(Value),
    /// A JSON-RPC error object with this code and message.
    Error(i64, &'static str),
    /// This many bytes of JSON-ish filler, streamed without a `Content-Length` (chunked).
    HugeChunked(usize),
    /// Only a `Content-Length` header announcing this many bytes, then nothing.
    HugeAnnounced(usize),
    /// This HTTP status with this body (no JSON-RPC envelope added).
    Http(u16, &'static str),
}

type Script = Arc<dyn Fn(&str, &Value) -> Answer + Send + Sync>;

/// Serves JSON-RPC over HTTP/1.1 keep-alive on `127.0.0.1:0` until the runtime stops.
async fn fake_el(script: Script) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, script.clone()));
        }
    });
    addr
}

async fn serve(mut stream: TcpStream, script: Script) {
    let mut buf = Vec::new();
    loop {
        let Some(body) = common::read_http_request(&mut stream, &mut buf).await else { return };
        let request: Value = serde_json::from_slice(&body).unwrap();
        // A batch: each call answered by the script, in one array.
        let calls = request.as_array().cloned().unwrap_or_else(|| vec![request.clone()]);
        let answers = calls.iter().map(|call| {
            let answer = script(call["method"].as_str().unwrap_or_default(), &call["params"]);
            match answer {
                Answer::Result(result) => {
                    Ok(json!({"jsonrpc": "2.0", "id": call["id"], "result": result}))
                }
                Answer::Error(code, message) => Ok(json!({"jsonrpc": "2.0", "id": call["id"],
                    "error": {"code": code, "message": message}})),
                other => Err(other),
            }
        });
        // Any other answer is the whole response's.
        let answer = answers.collect::<Result<Vec<Value>, Answer>>().map(|mut objects| {
            if request.is_array() { Value::Array(objects) } else { objects.remove(0) }
        });
        let written = match answer {
            Ok(body) => {
                let body = body.to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await
            }
            Err(Answer::Result(_) | Answer::Error(..)) => unreachable!("answered above"),
            Err(Answer::Http(status, body)) => {
                let response = format!(
                    "HTTP/1.1 {status} Refused\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await
            }
            Err(Answer::HugeAnnounced(n)) => {
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n"
                );
                stream.write_all(response.as_bytes()).await
            }
            Err(Answer::HugeChunked(n)) => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let filler = vec![b' '; 64 << 10];
                let mut sent = 0;
                while sent < n {
                    let part = &filler[..filler.len().min(n - sent)];
                    let frame =
                        [format!("{:x}\r\n", part.len()).as_bytes(), part, b"\r\n"].concat();
                    // The client hangs up once past its cap.
                    if stream.write_all(&frame).await.is_err() {
                        return;
                    }
                    sent += part.len();
                }
                stream.write_all(b"0\r\n\r\n").await
            }
        };
        if written.is_err() {
            return;
        }
    }
}

/// A block of the scripted chain: block `n`'s hash is keccak(n), its parent block `n - 1`'s (block
/// 0's hash is the generated leafdb's head hash).
fn block(n: u64, genesis_hash: B256, state_root: B256) -> Value {
    let hash = |n: u64| if n == 0 { genesis_hash } else { keccak256(n.to_be_bytes()) };
    json!({
        "number": format!("{n:#x}"),
        "hash": hash(n),
        "parentHash": if n == 0 { B256::ZERO } else { hash(n - 1) },
        "stateRoot": state_root,
        "withdrawals": [],
    })
}

/// A generated leafdb, its head (the chain's genesis) and its state root.
fn generated(params: GenParams) -> (Arc<LeafDb<MemStore>>, BlockHeader, B256) {
    let db = Arc::new(LeafDb::in_memory());
    db.generate(params).unwrap();
    let (genesis, root) = (db.head().unwrap().unwrap(), db.account_root().unwrap());
    (db, genesis, root)
}

/// A chain of one empty block after a genesis with `genesis_hash` and state root `root`: the
/// head is block 1, every block has that root, and block 1's trace (by its hash) is empty.
fn one_empty_block(genesis_hash: B256, root: B256) -> Script {
    empty_blocks(genesis_hash, root, 1)
}

/// A chain of `head` empty blocks after a genesis with `genesis_hash` and state root `root`: every
/// block has that root, and each block's trace (by its hash) is empty.
fn empty_blocks(genesis_hash: B256, root: B256, head: u64) -> Script {
    Arc::new(move |method, params| match method {
        "eth_blockNumber" => Answer::Result(json!(format!("{head:#x}"))),
        "eth_getBlockByNumber" => {
            let n = u64::from_str_radix(params[0].as_str().unwrap().trim_start_matches("0x"), 16)
                .unwrap();
            Answer::Result(if n <= head { block(n, genesis_hash, root) } else { Value::Null })
        }
        // By the hash of the header read, never by number.
        "debug_traceBlockByHash"
            if (1..=head).any(|n| params[0] == json!(keccak256(n.to_be_bytes()))) =>
        {
            Answer::Result(json!([]))
        }
        "debug_traceBlockByHash" => Answer::Error(-32000, "unknown block"),
        other => panic!("unexpected call {other}"),
    })
}

/// How long the follower may take to apply one empty block on a small in-memory state. Applying
/// takes milliseconds; the bound is wide for a loaded test machine, and far below the time the
/// saturating blocking tasks hold the pool.
const APPLY_DEADLINE: Duration = Duration::from_secs(5);
/// How long the saturating blocking tasks sleep at most (they are released at the end).
const SATURATION: Duration = Duration::from_secs(30);

#[test]
fn a_saturated_blocking_pool_does_not_delay_block_application() {
    // Like the daemon: serve handlers run in the runtime's blocking pool. Four blocking threads,
    // all busy, and more tasks queued behind them.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let release = Arc::new(AtomicBool::new(false));
    runtime.block_on(async {
        let (db, genesis, root) = generated(GenParams { accounts: 100, seed: 1 });
        let el = fake_el(one_empty_block(genesis.hash, root)).await;

        for _ in 0..16 {
            let release = release.clone();
            tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                while !release.load(Ordering::Relaxed) && t.elapsed() < SATURATION {
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        }

        let running = common::spawn_follower(&db, format!("http://{el}"), |_| {});
        let started = Instant::now();
        while db.head().unwrap().unwrap().number < 1 {
            assert!(
                started.elapsed() < APPLY_DEADLINE,
                "block 1 not applied after {:?} while the blocking pool is busy",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(db.head().unwrap().unwrap().hash, keccak256(1u64.to_be_bytes()));
        release.store(true, Ordering::Relaxed);
        running.stop().await;
    });
    release.store(true, Ordering::Relaxed);
}

/// An execution client that keeps failing to trace the next block (as a geth does that no longer
/// keeps its parent's state) leaves the follower stuck there, which it reports once the block
/// has kept failing for `stuck_after`; when the trace comes at last, the block is applied and
/// the follower is not stuck any more.
#[tokio::test]
async fn a_block_the_execution_client_keeps_failing_to_trace_is_reported_stuck() {
    let (db, genesis, root) = generated(GenParams { accounts: 100, seed: 1 });
    let traces = Arc::new(AtomicBool::new(false));
    let chain = one_empty_block(genesis.hash, root);
    let script: Script = {
        let traces = traces.clone();
        Arc::new(move |method, params| match method {
            "debug_traceBlockByHash" if !traces.load(Ordering::Relaxed) => {
                Answer::Error(-32000, "historical state unavailable")
            }
            _ => chain(method, params),
        })
    };
    let el = fake_el(script).await;
    let running = common::spawn_follower(&db, format!("http://{el}"), |c| {
        c.stuck_after = Duration::from_millis(300);
    });
    let stats = Arc::clone(&running.stats);
    let started = Instant::now();
    while stats.stuck_block() != 1 {
        assert!(started.elapsed() < Duration::from_secs(20), "never reported stuck at block 1");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(300), "stuck only after stuck_after");
    assert_eq!(db.head().unwrap().unwrap().number, 0);

    traces.store(true, Ordering::Relaxed);
    // Not stuck once the block is applied (the counter is stored just after the block).
    while db.head().unwrap().unwrap().number < 1 || stats.stuck_block() != 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "block 1 not applied, or stuck");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.stop().await;
}

/// An execution client without the `debug` namespace (geth's `--http.api eth`) answers every
/// trace "method not found": a sync checks it first and is refused with an error that says
/// what to enable (rather than syncing for hours to fail at the first block), and the follower
/// keeps retrying without calling the block stuck (which repaired the state from peers, again
/// and again). anvil over WebSocket answers "invalid params" for a method it lacks: the same.
#[tokio::test]
async fn an_execution_client_without_traces_is_refused_and_never_stuck() {
    for code in [-32601, -32602] {
        let (db, genesis, root) = generated(GenParams { accounts: 100, seed: 1 });
        let chain = one_empty_block(genesis.hash, root);
        let script: Script = Arc::new(move |method, params| match method {
            "debug_traceBlockByHash" => Answer::Error(code, "the method does not exist"),
            _ => chain(method, params),
        });
        let el = format!("http://{}", fake_el(script).await);
        let refused = leafsync_ingest::check_el_tracing(&el).await.unwrap_err();
        assert!(matches!(refused, IngestError::TracingUnavailable { .. }), "{refused}");
        let message = refused.to_string();
        assert!(message.contains(&el) && message.contains("eth,debug"), "{message}");

        let running =
            common::spawn_follower(&db, el, |c| c.stuck_after = Duration::from_millis(300));
        let stats = Arc::clone(&running.stats);
        let started = Instant::now();
        // Five retries back off 0.1 + 0.2 + 0.4 + 0.8 s: past `stuck_after` twice over.
        while stats.retries() < 5 {
            assert!(started.elapsed() < Duration::from_secs(30), "the follower stopped retrying");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stats.stuck_block(), 0, "a client without traces is no stuck block");
        assert_eq!(db.head().unwrap().unwrap().number, 0);
        running.stop().await;
    }
    // A client that has the method passes, even when it cannot trace the block (still syncing).
    let (_, genesis, root) = generated(GenParams { accounts: 100, seed: 1 });
    let chain = one_empty_block(genesis.hash, root);
    let script: Script = Arc::new(move |method, params| match method {
        "debug_traceBlockByHash" => Answer::Error(-32000, "required historical state unavailable"),
        _ => chain(method, params),
    });
    let el = format!("http://{}", fake_el(script).await);
    leafsync_ingest::check_el_tracing(&el).await.unwrap();
}

/// An HTTP status other than success, with a body that is no JSON-RPC answer (the engine API's
/// port without a JWT, a host the client refuses), is an error naming the status, the body and
/// what it likely means, not "malformed response"; a JSON-RPC error under such a status is read
/// as the JSON-RPC error it is.
#[tokio::test]
async fn an_http_status_is_reported_with_what_it_means() {
    let script: Script = Arc::new(|_, _| Answer::Http(401, "missing token\n"));
    let url = format!("http://{}", fake_el(script).await);
    let error = RpcClient::new(&url).unwrap().block_number().await.unwrap_err();
    assert!(matches!(error, IngestError::HttpStatus { status: 401, .. }), "{error:?}");
    let message = error.to_string();
    for part in ["HTTP 401", "missing token", "JWT", &url] {
        assert!(message.contains(part), "{part:?} in {message}");
    }
    let script: Script = Arc::new(|_, _| {
        Answer::Http(500, r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"busy"}}"#)
    });
    let url = format!("http://{}", fake_el(script).await);
    let error = RpcClient::new(&url).unwrap().block_number().await.unwrap_err();
    assert!(matches!(&error, IngestError::Rpc(e) if e.code == -32000), "{error:?}");
}

/// "Stuck" is a block whose trace keeps failing while the client answers: a block that failed
/// once before the client went down for longer than `stuck_after` is not reported stuck at its
/// first failure after the client is back (that would start a repair from peers for a block
/// the next retry may trace), but only once it has failed for `stuck_after` again.
#[tokio::test]
async fn an_outage_of_the_execution_client_does_not_count_towards_stuck() {
    let (db, genesis, root) = generated(GenParams { accounts: 100, seed: 2 });
    let down = Arc::new(AtomicBool::new(false));
    // Traces failed, and when the first of them was answered.
    let back = Arc::new(std::sync::Mutex::new((0u32, None::<Instant>)));
    let chain = one_empty_block(genesis.hash, root);
    let script: Script = {
        let (down, back) = (down.clone(), back.clone());
        Arc::new(move |method, params| {
            if down.load(Ordering::Relaxed) {
                return Answer::Error(-32000, "the client is restarting");
            }
            match method {
                "debug_traceBlockByHash" => {
                    let mut back = back.lock().unwrap();
                    back.0 += 1;
                    back.1.get_or_insert_with(Instant::now);
                    Answer::Error(-32000, "historical state unavailable")
                }
                _ => chain(method, params),
            }
        })
    };
    let el = fake_el(script).await;
    let stuck_after = Duration::from_millis(300);
    let running =
        common::spawn_follower(&db, format!("http://{el}"), |c| c.stuck_after = stuck_after);
    let stats = Arc::clone(&running.stats);
    let started = Instant::now();
    while back.lock().unwrap().0 == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "block 1 never traced");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    down.store(true, Ordering::Relaxed);
    tokio::time::sleep(stuck_after * 3).await;
    assert_eq!(stats.stuck_block(), 0, "one failed trace, then only an outage");
    *back.lock().unwrap() = (0, None);
    down.store(false, Ordering::Relaxed);
    let first_after = loop {
        if let (_, Some(at)) = *back.lock().unwrap() {
            break at;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "block 1 not traced after the outage");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    while stats.stuck_block() != 1 {
        assert!(started.elapsed() < Duration::from_secs(40), "never reported stuck at block 1");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        first_after.elapsed() >= stuck_after,
        "stuck {:?} after the first failure since the outage",
        first_after.elapsed()
    );
    running.stop().await;
}

/// An execution client replaced under the same URL by one of another chain (a devnet
/// redeployed): after the failure its restart causes, the follower checks the chain again and
/// stops with `WrongChain` instead of applying the other chain's blocks.
#[tokio::test]
async fn an_execution_client_replaced_by_another_chain_stops_the_follower() {
    let (db, genesis, root) = generated(GenParams { accounts: 20, seed: 3 });
    let replaced = Arc::new(AtomicBool::new(false));
    let chain = one_empty_block(genesis.hash, root);
    let script: Script = {
        let replaced = replaced.clone();
        let restarting = AtomicBool::new(true);
        Arc::new(move |method, params| {
            if !replaced.load(Ordering::Relaxed) {
                return chain(method, params);
            }
            if restarting.swap(false, Ordering::Relaxed) {
                return Answer::Error(-32000, "restarting");
            }
            match method {
                "eth_getBlockByNumber" if params[0] == json!("0x0") => {
                    Answer::Result(block(0, B256::repeat_byte(9), root))
                }
                _ => chain(method, params),
            }
        })
    };
    let el = fake_el(script).await;
    let running = common::spawn_follower(&db, format!("http://{el}"), |c| {
        c.genesis_hash = Some(genesis.hash)
    });
    let started = Instant::now();
    while db.head().unwrap().unwrap().number < 1 {
        assert!(started.elapsed() < Duration::from_secs(20), "block 1 not applied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replaced.store(true, Ordering::Relaxed);
    let ended = tokio::time::timeout(Duration::from_secs(20), running.task).await;
    let err = ended.expect("the follower went on").unwrap().unwrap_err();
    assert!(matches!(err, IngestError::WrongChain { .. }), "{err}");
    assert_eq!(db.head().unwrap().unwrap().number, 1, "nothing of the other chain applied");
}

/// Blocks of the full-disk test's chain.
const DISK_FULL_BLOCKS: u64 = 4;

/// A follower of [`DISK_FULL_BLOCKS`] empty blocks into a fresh generated leafdb whose store
/// refuses every write after the first `allowed` (`None`: none): the follower's result (it
/// must end by itself), the leafdb, its genesis hash and the writes asked for.
async fn follow_refusing(
    allowed: Option<u64>,
) -> (Result<(), IngestError>, Arc<LeafDb<HookStore>>, B256, u64) {
    let db = Arc::new(LeafDb::with_store(HookStore::new(), LeafDbConfig::default()).unwrap());
    db.generate(GenParams { accounts: 50, seed: 7 }).unwrap();
    let (genesis, root) = (db.head().unwrap().unwrap(), db.account_root().unwrap());
    db.store().refuse_writes_after(allowed.unwrap_or(u64::MAX));
    let el = fake_el(empty_blocks(genesis.hash, root, DISK_FULL_BLOCKS)).await;
    let running = common::spawn_follower(&db, format!("http://{el}"), |_| {});
    if allowed.is_none() {
        // The head counter moves after a block's last write (its undo's).
        common::wait_for_head(&running.stats, DISK_FULL_BLOCKS).await;
        let writes = db.store().writes();
        running.stop().await;
        return (Ok(()), db, genesis.hash, writes);
    }
    let ended = tokio::time::timeout(common::FOLLOW_TIMEOUT, running.task).await;
    let result = ended.expect("the follower went on after a refused write").unwrap();
    let writes = db.store().writes();
    (result, db, genesis.hash, writes)
}

/// A full disk under the follower (the sync has its own test, `disk_full.rs` of the sync
/// crate): whichever write is refused, the follower stops with an error naming it instead of
/// retrying, panicking or hanging, keeps every block applied before it, and a follower started
/// with room again follows on from there to the head with the state unchanged.
#[tokio::test]
async fn a_refused_write_stops_the_follower_and_the_next_start_follows_on() {
    let (_, _, _, writes) = follow_refusing(None).await;
    // Each block is two writes: the block's, then its undo's.
    assert_eq!(writes, 2 * DISK_FULL_BLOCKS, "writes of following the chain");
    for allowed in 0..writes {
        let (result, db, genesis, _) = follow_refusing(Some(allowed)).await;
        let error = result.expect_err("a refused write stops the follower").to_string();
        assert!(error.contains("refused: no space left"), "{allowed}: {error}");
        let refused = db.store().refused_writes();
        assert_eq!(refused.first(), Some(&(allowed + 1)), "{allowed}: {refused:?}");
        let kept = db.head().unwrap().unwrap().number;
        assert_eq!(kept, allowed.div_ceil(2), "{allowed}: the blocks written before are kept");
        let root = db.account_root().unwrap();

        // The next start, with room again.
        db.store().refuse_writes_after(u64::MAX);
        let el = fake_el(empty_blocks(genesis, root, DISK_FULL_BLOCKS)).await;
        let running = common::spawn_follower(&db, format!("http://{el}"), |_| {});
        // Not the head counter: a run refused only its last undo starts at the head.
        let started = Instant::now();
        while db.head().unwrap().unwrap().number < DISK_FULL_BLOCKS {
            assert!(started.elapsed() < common::FOLLOW_TIMEOUT, "{allowed}: not followed on");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        running.stop().await;
        let head = db.head().unwrap().unwrap();
        assert_eq!(head.hash, keccak256(DISK_FULL_BLOCKS.to_be_bytes()), "{allowed}");
        assert_eq!(db.account_root().unwrap(), root, "{allowed}: the state changed");
    }
}

/// A WebSocket execution client answering `eth_subscribe` with an error (`refuse`: a proxy
/// without subscriptions) or dropping the connection at it: the follower, caught up at its
/// head, polls for new heads on one connection in the first case, and backs off between its
/// attempts (each a new connection) in the second, instead of reconnecting and warning about
/// ten times a second for good.
async fn subscribing_for(refuse: bool) -> (usize, u64, u64) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let (db, genesis, root) = generated(GenParams { accounts: 10, seed: 1 });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let heads_asked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (counted, asked) = (connections.clone(), heads_asked.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            let asked = asked.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(Message::Text(text))) = ws.next().await {
                    let call: Value = serde_json::from_str(&text).unwrap();
                    let mut answer = match call["method"].as_str().unwrap() {
                        "eth_blockNumber" => {
                            asked.fetch_add(1, Ordering::Relaxed);
                            json!({"result": "0x0"})
                        }
                        "eth_getBlockByNumber" => json!({"result": block(0, genesis.hash, root)}),
                        "eth_subscribe" if !refuse => return,
                        _ => json!({"error": {"code": -32601, "message": "not supported"}}),
                    };
                    answer["jsonrpc"] = json!("2.0");
                    answer["id"] = call["id"].clone();
                    if ws.send(Message::text(answer.to_string())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let running = common::spawn_follower(&db, format!("ws://{addr}"), |_| {});
    let stats = Arc::clone(&running.stats);
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.stop().await;
    (connections.load(Ordering::Relaxed), stats.retries(), heads_asked.load(Ordering::Relaxed))
}

#[tokio::test]
async fn a_refused_subscription_falls_back_to_polling() {
    let (connections, retries, polls) = subscribing_for(true).await;
    assert_eq!((connections, retries), (1, 0), "one connection, no failure");
    assert!(polls >= 20, "the head was polled every 20 ms: {polls} polls in 3 s");
}

#[tokio::test]
async fn a_failing_subscription_is_retried_with_a_growing_backoff() {
    // 100, 200, 400, 800 ms and 1.6 s between attempts: five or so in 3 s (about 25 with the
    // backoff reset after every step that found the head unchanged).
    let (connections, retries, _) = subscribing_for(false).await;
    assert!(retries >= 2, "the subscription was tried again: {retries}");
    assert!(connections <= 8, "{connections} connections and {retries} retries in 3 s");
}

/// The head feed waits for the first readable head, then sends only higher ones, with their
/// timestamps.
/// A sync's pivot waits for an execution client that is itself syncing (geth and leafsync
/// started together): while `eth_syncing` says so, and on a public chain while its head is
/// older than `PIVOT_MAX_AGE` (before its sync starts, geth answers `false` at block 0); a
/// client without `eth_syncing` is judged by its head's age alone.
#[tokio::test]
async fn a_sync_pivot_waits_for_a_syncing_execution_client() {
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let syncing_answers = Arc::new(std::sync::atomic::AtomicU64::new(3));
    let stale_heads = Arc::new(std::sync::atomic::AtomicU64::new(2));
    let (syncing, stale) = (Arc::clone(&syncing_answers), Arc::clone(&stale_heads));
    // The error `eth_syncing` is answered with; 0: answered.
    let syncing_error = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let refused = Arc::clone(&syncing_error);
    let script: Script = Arc::new(move |method, params| match method {
        "eth_syncing" if refused.load(Ordering::Relaxed) != 0 => {
            Answer::Error(refused.load(Ordering::Relaxed), "eth_syncing not answered")
        }
        "eth_syncing" => {
            match syncing.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)) {
                Ok(_) => Answer::Result(json!({"currentBlock": "0x0", "highestBlock": "0x3e8"})),
                Err(_) => Answer::Result(json!(false)),
            }
        }
        "eth_blockNumber" => Answer::Result(json!("0x5")),
        "eth_getBlockByNumber" => {
            let q = params[0].as_str().unwrap().trim_start_matches("0x");
            let b = u64::from_str_radix(q, 16).unwrap();
            let mut v = block(b, B256::ZERO, keccak256(b.to_be_bytes()));
            let old =
                stale.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            let age = if old.is_ok() { 3_600 } else { 12 };
            v["timestamp"] = json!(format!("{:#x}", now().as_secs() - age));
            Answer::Result(v)
        }
        other => panic!("unexpected call {other}"),
    });
    let url = format!("http://{}", fake_el(script).await);
    let poll = Duration::from_millis(10);
    let max_age = Some(leafsync_ingest::PIVOT_MAX_AGE);
    assert!(leafsync_ingest::wait_el_synced(&url, max_age, poll).await.unwrap(), "it waited");
    assert_eq!(syncing_answers.load(Ordering::Relaxed), 0, "until eth_syncing said false");
    assert_eq!(stale_heads.load(Ordering::Relaxed), 0, "and the head was recent");
    // Synced, recent: no wait. Without `eth_syncing`, an old head still waits.
    assert!(!leafsync_ingest::wait_el_synced(&url, max_age, poll).await.unwrap());
    syncing_error.store(-32601, Ordering::Relaxed);
    stale_heads.store(1, Ordering::Relaxed);
    assert!(leafsync_ingest::wait_el_synced(&url, max_age, poll).await.unwrap());
    // A proxy that refuses the method with another error: judged by the head's age too.
    syncing_error.store(-32001, Ordering::Relaxed);
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        leafsync_ingest::wait_el_synced(&url, max_age, poll).await.unwrap()
    });
    assert!(!waited.await.expect("a refused eth_syncing is not waited on for ever"));
    // A dev chain's head may be of any age.
    stale_heads.store(1, Ordering::Relaxed);
    assert!(!leafsync_ingest::wait_el_synced(&url, None, poll).await.unwrap());
}

#[tokio::test]
async fn the_head_feed_follows_the_execution_client() {
    let number = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let up = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (n, u, p) = (number.clone(), up.clone(), polls.clone());
    let script: Script = Arc::new(move |method, params| {
        if !u.load(Ordering::Relaxed) {
            return Answer::HugeAnnounced(usize::MAX >> 1);
        }
        match method {
            "eth_blockNumber" => {
                p.fetch_add(1, Ordering::Relaxed);
                Answer::Result(json!(format!("{:#x}", n.load(Ordering::Relaxed))))
            }
            "eth_getBlockByNumber" => {
                let q = params[0].as_str().unwrap().trim_start_matches("0x");
                let b = u64::from_str_radix(q, 16).unwrap();
                let mut v = block(b, B256::ZERO, keccak256(b.to_be_bytes()));
                v["timestamp"] = json!(format!("{:#x}", 1_000 + 12 * b));
                Answer::Result(v)
            }
            other => panic!("unexpected call {other}"),
        }
    });
    let el = fake_el(script).await;
    number.store(5, Ordering::Relaxed);
    let url = format!("http://{el}");
    let poll = Duration::from_millis(10);
    let feed = tokio::spawn(async move { leafsync_ingest::head_feed(&url, poll, None).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!feed.is_finished(), "no head yet: the feed waits");
    up.store(true, Ordering::Relaxed);
    let mut rx = feed.await.unwrap().unwrap();
    let first = *rx.borrow_and_update();
    assert_eq!((first.number, first.timestamp), (5, 1_060));
    assert_eq!(first.state_root, keccak256(5u64.to_be_bytes()));
    number.store(7, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(10), rx.changed()).await.unwrap().unwrap();
    assert_eq!(rx.borrow().number, 7);
    // A lower head (a flaky node behind a balancer) is not sent: looked at after the feed has
    // read it a few times.
    number.store(6, Ordering::Relaxed);
    let seen = polls.load(Ordering::Relaxed);
    let asked = Instant::now();
    while polls.load(Ordering::Relaxed) < seen + 3 {
        assert!(asked.elapsed() < Duration::from_secs(10), "the feed stopped polling");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!rx.has_changed().unwrap());
}

/// The pivot feed stays `PIVOT_CONFIRMATIONS` blocks behind the head (block 0 while the chain is
/// shorter), and follows it.
#[tokio::test]
async fn the_pivot_feed_stays_behind_the_head() {
    let number = Arc::new(std::sync::atomic::AtomicU64::new(2));
    let n = number.clone();
    let script: Script = Arc::new(move |method, params| match method {
        "eth_blockNumber" => Answer::Result(json!(format!("{:#x}", n.load(Ordering::Relaxed)))),
        "eth_getBlockByNumber" => {
            let q = params[0].as_str().unwrap().trim_start_matches("0x");
            let b = u64::from_str_radix(q, 16).unwrap();
            Answer::Result(block(b, B256::ZERO, keccak256(b.to_be_bytes())))
        }
        other => panic!("unexpected call {other}"),
    });
    let url = format!("http://{}", fake_el(script).await);
    let poll = Duration::from_millis(10);
    let behind = leafsync_ingest::PIVOT_CONFIRMATIONS;
    assert!(behind > 0);
    let mut rx = leafsync_ingest::head_feed_behind(&url, poll, None, behind).await.unwrap();
    assert_eq!(rx.borrow_and_update().number, 0, "a chain shorter than the confirmations");
    number.store(10, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(10), rx.changed()).await.unwrap().unwrap();
    let pivot = *rx.borrow_and_update();
    assert_eq!(pivot.number, 10 - behind);
    assert_eq!(pivot.state_root, keccak256((10 - behind).to_be_bytes()));
    number.store(11, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(10), rx.changed()).await.unwrap().unwrap();
    assert_eq!(rx.borrow().number, 11 - behind);
}

#[tokio::test]
async fn an_answer_over_the_cap_is_refused_naming_the_method() {
    const CAP: usize = 1 << 20;
    let script: Script = Arc::new(|method, _| match method {
        "eth_blockNumber" => Answer::HugeAnnounced(CAP + 1),
        "debug_traceBlockByHash" => Answer::HugeChunked(CAP * 4),
        other => panic!("unexpected call {other}"),
    });
    let el = fake_el(script).await;
    let mut rpc = RpcClient::new(&format!("http://{el}")).unwrap().max_response_bytes(CAP);

    // Announced too large: refused before a byte of the body is read.
    let err = rpc.block_number().await.unwrap_err();
    assert!(matches!(err, IngestError::TooLarge { method: "eth_blockNumber", .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("eth_blockNumber") && text.contains(&CAP.to_string()), "{text}");

    // Streamed past the cap without a length: refused as soon as it is crossed.
    let err = rpc.trace_block(B256::repeat_byte(1)).await.unwrap_err();
    assert!(matches!(err, IngestError::TooLarge { method: "debug_traceBlockByHash", .. }), "{err}");
    assert!(err.to_string().contains("debug_traceBlockByHash"), "{err}");
    assert!(err.is_retryable(), "a broken neighbour is retried after a backoff");
}

fn fixture(name: &str) -> Value {
    let path = package_dir(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/el").join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `eth_config` in EIP-7910's shape gives the current fork hash and the next fork's time; an
/// execution client without the method (anvil) gives `None`, any other error stays an error.
#[tokio::test]
async fn the_fork_id_comes_from_eth_config() {
    let config = fixture("eth_config_hoodi.json");
    let expected = ForkId { hash: ForkHash([0x09, 0x29, 0xe2, 0x4e]), next: 1_761_677_592 };
    let answer: EthConfigAnswer = serde_json::from_value(config.clone()).unwrap();
    assert_eq!(answer.fork_id(), expected);
    let mut last = config.clone();
    last["next"] = Value::Null;
    let answer: EthConfigAnswer = serde_json::from_value(last).unwrap();
    assert_eq!(answer.fork_id().next, 0, "no next fork: next is 0");

    let addr = fake_el(Arc::new(move |_, _| Answer::Result(config.clone()))).await;
    let mut rpc = RpcClient::new(&format!("http://{addr}")).unwrap();
    assert_eq!(rpc.fork_id().await.unwrap(), Some(expected));
    let addr = fake_el(Arc::new(|_, _| Answer::Error(-32601, "Method not found"))).await;
    let mut rpc = RpcClient::new(&format!("http://{addr}")).unwrap();
    assert_eq!(rpc.fork_id().await.unwrap(), None);
    let addr = fake_el(Arc::new(|_, _| Answer::Error(-32000, "busy"))).await;
    let mut rpc = RpcClient::new(&format!("http://{addr}")).unwrap();
    assert!(matches!(rpc.fork_id().await, Err(IngestError::Rpc(_))));
}

/// An execution client on another chain (its block 0 is not the configured genesis) is refused
/// by the follower before it applies anything, and by the head feed before its first head; the
/// error names the URL and both hashes. On the right chain both go on.
#[tokio::test]
async fn an_execution_client_on_another_chain_is_refused() {
    let (db, genesis, root) = generated(GenParams { accounts: 50, seed: 2 });
    let url = format!("http://{}", fake_el(one_empty_block(genesis.hash, root)).await);
    let other = B256::repeat_byte(0x5a);
    let says_both = |e: &IngestError| {
        let text = e.to_string();
        matches!(e, IngestError::WrongChain { .. })
            && !e.is_retryable()
            && [url.clone(), other.to_string(), genesis.hash.to_string()]
                .iter()
                .all(|part| text.contains(part.as_str()))
    };

    let poll = Duration::from_millis(10);
    let refused = leafsync_ingest::head_feed(&url, poll, Some(other)).await.unwrap_err();
    assert!(says_both(&refused), "{refused}");
    let feed = leafsync_ingest::head_feed(&url, poll, Some(genesis.hash)).await.unwrap();
    assert_eq!(feed.borrow().number, 1);

    let mut config = FollowerConfig::new(url.clone());
    config.genesis_hash = Some(other);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let run = Follower::new(Arc::clone(&db), config).unwrap().run(stopped.clone());
    let refused = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap_err();
    assert!(says_both(&refused), "{refused}");
    assert_eq!(db.head().unwrap().unwrap().number, 0, "nothing applied");

    let mut config = FollowerConfig::new(url);
    config.genesis_hash = Some(genesis.hash);
    config.poll_interval = Duration::from_millis(10);
    let task = tokio::spawn(Follower::new(Arc::clone(&db), config).unwrap().run(stopped));
    let started = Instant::now();
    while db.head().unwrap().unwrap().number < 1 {
        assert!(started.elapsed() < APPLY_DEADLINE, "block 1 not applied on the right chain");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
}

/// An execution client that does not serve block 0 (pruned history: a JSON-RPC error, or no
/// block) is not refused for it: its chain goes unchecked and its head is taken.
#[tokio::test]
async fn an_execution_client_without_block_0_is_not_refused() {
    for pruned in [true, false] {
        let script: Script = Arc::new(move |method, params| match (method, params[0].as_str()) {
            ("eth_blockNumber", _) => Answer::Result(json!("0x5")),
            ("eth_getBlockByNumber", Some("0x0")) if pruned => {
                Answer::Error(4444, "pruned history unavailable")
            }
            ("eth_getBlockByNumber", Some("0x0")) => Answer::Result(Value::Null),
            ("eth_getBlockByNumber", _) => Answer::Result(block(5, B256::ZERO, B256::ZERO)),
            (other, _) => panic!("unexpected call {other}"),
        });
        let url = format!("http://{}", fake_el(script).await);
        let poll = Duration::from_millis(10);
        let feed = leafsync_ingest::head_feed(&url, poll, Some(B256::repeat_byte(7)));
        let feed = tokio::time::timeout(Duration::from_secs(10), feed).await;
        let feed = feed.unwrap_or_else(|_| panic!("no head without block 0 (pruned: {pruned})"));
        assert_eq!(feed.unwrap().borrow().number, 5, "pruned: {pruned}");
    }
}

/// An execution client that is not listening is reported with the reason, not only "error
/// sending request" (reqwest's own message).
#[tokio::test]
async fn an_unreachable_execution_client_is_reported_with_the_reason() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let mut rpc = RpcClient::new(&format!("http://{addr}")).unwrap();
    let e = rpc.block_number().await.unwrap_err().to_string();
    assert!(e.contains("refused"), "{e}");
}

/// A real mainnet Prague header (block 23,094,898: every fork field up to `requestsHash`) is
/// re-encoded to its hash.
#[test]
fn a_mainnet_prague_header_hashes_to_its_hash() {
    let header: RpcHeader = serde_json::from_value(fixture("mainnet_block_23094898.json")).unwrap();
    assert_eq!(header.number, 23_094_898);
    let rlp = header.sealed_rlp().expect("keccak(rlp) is the block hash");
    assert_eq!(keccak256(&rlp), header.hash);
}

/// The head of the header tests' chain, and a header in it that does not hash to its hash.
const HEAD: u64 = 1200;
const BAD: u64 = 50;

/// Header queries are answered from the execution client: forwards, backwards, with skips, by
/// hash; bounded by [`MAX_HEADERS_PER_QUERY`]; cut at the first missing header or the first
/// that does not hash to its hash.
#[tokio::test]
async fn header_queries_are_answered_from_the_execution_client() {
    let mut chain = common::header_chain(HEAD, None);
    chain[BAD as usize]["gasUsed"] = json!("0x1"); // no longer hashes to its hash
    let chain = Arc::new(chain);
    // geth and reth answer `eth_getHeaderBy*` (a header without the transactions' hashes);
    // anvil has no such method, and blocks are read instead.
    for header_methods in [true, false] {
        let block_reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let addr = fake_el(header_source(Arc::clone(&chain), header_methods, &block_reads)).await;
        answers_header_queries(&chain, &ElHeaders::new(&format!("http://{addr}")).unwrap()).await;
        let reads = block_reads.load(Ordering::Relaxed);
        if header_methods {
            assert_eq!(reads, 0, "headers read as headers, not as blocks");
        } else {
            assert!(reads > 1000, "headers read as blocks: {reads}");
        }
    }
}

/// Only "method not found" makes the header queries read blocks: any other error (a busy
/// client, a rate-limiting proxy) ends that query, and the next reads headers again.
#[tokio::test]
async fn a_passing_error_does_not_switch_header_queries_to_blocks() {
    let chain = common::header_chain(10, None);
    let chain = Arc::new(chain);
    let block_reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let busy = Arc::new(AtomicBool::new(true));
    let serving = header_source(Arc::clone(&chain), true, &block_reads);
    let once = Arc::clone(&busy);
    let script: Script = Arc::new(move |method, params| {
        if method == "eth_getHeaderByNumber" && once.swap(false, Ordering::Relaxed) {
            return Answer::Error(-32005, "limit exceeded");
        }
        serving(method, params)
    });
    let headers = ElHeaders::new(&format!("http://{}", fake_el(script).await)).unwrap();
    let query = HeaderQuery { origin: HeaderOrigin::Number(3), amount: 2, skip: 0, reverse: false };
    assert!(headers.headers(query).await.is_empty(), "the failed query answers nothing");
    assert_eq!(headers.headers(query).await.len(), 2);
    assert_eq!(block_reads.load(Ordering::Relaxed), 0, "still read as headers");
}

/// A block number past `i64::MAX` comes from a peer (an eth/69 query's origin or skip), and
/// geth answers "invalid params" for it: that answer must not switch every later header read
/// to whole blocks (~20 times the bytes) for good, as "method not found" does.
#[tokio::test]
async fn a_number_the_client_refuses_does_not_switch_header_reads_to_blocks() {
    let chain = common::header_chain(10, None);
    let chain = Arc::new(chain);
    let block_reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let serving = header_source(Arc::clone(&chain), true, &block_reads);
    let head = chain[10].clone();
    let script: Script = Arc::new(move |method, params| {
        let number = params[0].as_str().unwrap_or_default();
        match method {
            "eth_getHeaderByNumber" if number == "latest" => Answer::Result(head.clone()),
            // geth: a number above int64 does not parse as a block number.
            "eth_getHeaderByNumber" | "eth_getBlockByNumber" if number.len() > 17 => {
                Answer::Error(-32602, "invalid argument 0: block number larger than int64")
            }
            _ => serving(method, params),
        }
    });
    let mut rpc = RpcClient::new(&format!("http://{}", fake_el(script).await)).unwrap();
    let refused = rpc.header(1 << 63).await.unwrap_err();
    assert!(matches!(&refused, IngestError::Rpc(e) if e.code == -32602), "{refused:?}");
    assert_eq!(rpc.header(3).await.unwrap().unwrap().number, 3);
    assert_eq!(block_reads.load(Ordering::Relaxed), 0, "still read as headers");
}

/// A fake execution client serving `chain`'s headers, by `eth_getHeaderBy*` when
/// `header_methods` (else those are unknown methods), and as blocks (counted in `block_reads`).
fn header_source(
    chain: Arc<Vec<Value>>,
    header_methods: bool,
    block_reads: &Arc<std::sync::atomic::AtomicU64>,
) -> Script {
    let block_reads = Arc::clone(block_reads);
    Arc::new(move |method, params| {
        let by_number = |chain: &[Value]| {
            let n = params[0].as_str().unwrap().trim_start_matches("0x");
            chain.get(u64::from_str_radix(n, 16).unwrap() as usize).cloned()
        };
        let by_hash = |chain: &[Value]| chain.iter().find(|h| h["hash"] == params[0]).cloned();
        let found = match method {
            "eth_getHeaderByNumber" | "eth_getHeaderByHash" if !header_methods => {
                return Answer::Error(-32601, "the method does not exist");
            }
            "eth_getHeaderByNumber" => by_number(&chain),
            "eth_getHeaderByHash" => by_hash(&chain),
            "eth_getBlockByNumber" | "eth_getBlockByHash" => {
                block_reads.fetch_add(1, Ordering::Relaxed);
                if method == "eth_getBlockByNumber" { by_number(&chain) } else { by_hash(&chain) }
            }
            _ => None,
        };
        Answer::Result(found.unwrap_or(Value::Null))
    })
}

/// The queries of [`header_queries_are_answered_from_the_execution_client`] against `headers`.
async fn answers_header_queries(chain: &[Value], headers: &ElHeaders) {
    let numbers = |answer: Vec<alloy_primitives::Bytes>| -> Vec<u64> {
        answer
            .iter()
            .map(|rlp| {
                let n = chain.iter().position(|h| h["hash"] == json!(keccak256(rlp))).unwrap();
                n as u64
            })
            .collect()
    };
    let query = |origin, amount, skip, reverse| HeaderQuery { origin, amount, skip, reverse };
    let by_number = HeaderOrigin::Number;

    assert_eq!(numbers(headers.headers(query(by_number(3), 3, 0, false)).await), [3, 4, 5]);
    assert_eq!(numbers(headers.headers(query(by_number(10), 3, 4, true)).await), [10, 5, 0]);
    assert_eq!(numbers(headers.headers(query(by_number(3), 3, 1, true)).await), [3, 1]);
    assert_eq!(
        numbers(headers.headers(query(by_number(HEAD - 2), 5, 0, false)).await),
        [HEAD - 2, HEAD - 1, HEAD]
    );
    assert_eq!(numbers(headers.headers(query(by_number(48), 5, 0, false)).await), [48, 49]);
    assert!(headers.headers(query(by_number(BAD), 1, 0, false)).await.is_empty());
    assert!(headers.headers(query(by_number(HEAD + 1), 1, 0, false)).await.is_empty());
    assert!(headers.headers(query(by_number(3), 0, 0, false)).await.is_empty());
    let hash_of_7: B256 = serde_json::from_value(chain[7]["hash"].clone()).unwrap();
    let by_hash = query(HeaderOrigin::Hash(hash_of_7), 2, 0, true);
    assert_eq!(numbers(headers.headers(by_hash).await), [7, 6]);
    assert!(headers.headers(query(HeaderOrigin::Hash(B256::ZERO), 1, 0, false)).await.is_empty());
    let many = headers.headers(query(by_number(HEAD - 50), 1000, 0, false)).await;
    assert_eq!(many.len(), 51, "up to the head");
    // geth's beacon sync asks for 512 headers back from a number and drops a peer that
    // answers fewer while the chain has them.
    let skeleton = numbers(headers.headers(query(by_number(900), 512, 0, true)).await);
    assert_eq!(skeleton, (389..=900).rev().collect::<Vec<u64>>());
    let many = headers.headers(query(by_number(BAD + 1), 5000, 0, false)).await;
    assert_eq!(many.len(), MAX_HEADERS_PER_QUERY, "bounded");
    assert_eq!(MAX_HEADERS_PER_QUERY, 1024, "geth's own bound on what it serves");
}

/// A genesis state loaded without its header (`tool init-genesis` writes block 0 with a zero
/// hash) is the execution client's block 0 when their state roots agree: block 1 follows it
/// without a reorg (before: a reorg warning and `reorgs == 1` on a chain that had none).
#[tokio::test]
async fn a_genesis_loaded_without_its_hash_is_followed_without_a_reorg() {
    let (db, genesis, root) = generated(GenParams { accounts: 50, seed: 4 });
    assert!(genesis.hash.is_zero(), "a generated state's block 0 has no hash");
    let real_genesis = B256::repeat_byte(0x6e);
    let el = fake_el(one_empty_block(real_genesis, root)).await;
    let running = common::spawn_follower(&db, format!("http://{el}"), |_| {});
    common::wait_for_head(&running.stats, 1).await;
    assert_eq!(running.stats.reorgs(), 0, "a reorg counted");
    assert!(db.account_root().unwrap() == root, "block 1 applied on the genesis state");
    running.stop().await;
}
