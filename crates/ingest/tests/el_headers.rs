//! [`ElHeaders`] against a scripted execution client that answers as geth does: what a peer's
//! `GetBlockHeaders` may make us ask it, and what an answer may hold (review findings on eth/69
//! header serving: block numbers above `i64::MAX`, answers whose headers do not chain).

#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

use leafsync_ingest::test_utils as common;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use alloy_primitives::{B256, Bytes, keccak256};
use common::{header_chain, header_hash, sealed_header};
use leafsync_ingest::{
    ElHeaders, HeaderOrigin, HeaderQuery, MAX_HEADERS_PER_QUERY, rpc::MAX_BATCH_CALLS,
};
use serde_json::{Value, json};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
};

/// What the scripted execution client received, and its batch limit.
#[derive(Debug, Default)]
struct Seen {
    /// Each call by number: `(method, block number)`.
    calls: Mutex<Vec<(String, u128)>>,
    /// HTTP requests (one a batch).
    posts: AtomicUsize,
    /// Most calls a batch may hold (geth's `--rpc.batch-request-limit`); 0: no batches at all.
    batch_limit: usize,
}

/// Serves `headers` (by number: the canonical chain) and `side` (by hash only: headers off it)
/// over JSON-RPC on `127.0.0.1:0`, as geth does: a block number above `i64::MAX` is "invalid
/// params" (-32602), an unknown block `null`, `latest` the last header, a batch over the limit
/// one "batch too large" error. Every call by number is noted in `seen`.
async fn geth_like(headers: Vec<Value>, side: Vec<Value>, seen: &Arc<Seen>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (headers, side, seen) = (Arc::new(headers), Arc::new(side), Arc::clone(seen));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let chain = (Arc::clone(&headers), Arc::clone(&side), Arc::clone(&seen));
            tokio::spawn(serve(stream, chain));
        }
    });
    addr
}

async fn serve(
    mut stream: TcpStream,
    (headers, side, seen): (Arc<Vec<Value>>, Arc<Vec<Value>>, Arc<Seen>),
) {
    let mut buf = Vec::new();
    while let Some(body) = common::read_http_request(&mut stream, &mut buf).await {
        seen.posts.fetch_add(1, Ordering::Relaxed);
        let request: Value = serde_json::from_slice(&body).unwrap();
        let answer = match request.as_array() {
            Some(calls) if calls.len() > seen.batch_limit => {
                let error = json!({"code": -32600, "message": "batch too large"});
                match seen.batch_limit {
                    0 => json!({"jsonrpc": "2.0", "id": null, "error": error}),
                    _ => json!([{"jsonrpc": "2.0", "id": calls[0]["id"], "error": error}]),
                }
            }
            Some(calls) => calls.iter().map(|c| answer(c, &headers, &side, &seen)).collect(),
            None => answer(&request, &headers, &side, &seen),
        };
        let body = answer.to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// geth's answer to one call.
fn answer(request: &Value, headers: &[Value], side: &[Value], seen: &Seen) -> Value {
    let method = request["method"].as_str().unwrap_or_default().to_owned();
    let param = &request["params"][0];
    let mut answer = if method.ends_with("ByNumber") && param == "latest" {
        json!({"result": headers.last()})
    } else if method.ends_with("ByNumber") {
        let number = u128::from_str_radix(param.as_str().unwrap().trim_start_matches("0x"), 16);
        let number = number.unwrap();
        seen.calls.lock().unwrap().push((method, number));
        if number > i64::MAX as u128 {
            json!({"error": {"code": -32602, "message": "invalid argument 0: block number larger than int64"}})
        } else {
            let found = usize::try_from(number).ok().and_then(|n| headers.get(n));
            json!({"result": found.cloned().unwrap_or(Value::Null)})
        }
    } else {
        let found = headers.iter().chain(side.iter()).find(|h| h["hash"] == *param);
        json!({"result": found.cloned().unwrap_or(Value::Null)})
    };
    answer["jsonrpc"] = json!("2.0");
    answer["id"] = request["id"].clone();
    answer
}

/// Each answered header named by its block number, with a `'` when it is not in `chain`.
fn names(chain: &[Value], side: &[Value], answer: &[Bytes]) -> Vec<String> {
    answer
        .iter()
        .map(|rlp| {
            let h = json!(keccak256(rlp));
            match chain.iter().position(|c| c["hash"] == h) {
                Some(n) => n.to_string(),
                None => {
                    let s = side.iter().find(|c| c["hash"] == h).unwrap();
                    let n = u64::from_str_radix(s["number"].as_str().unwrap()[2..].as_ref(), 16);
                    format!("{}'", n.unwrap())
                }
            }
        })
        .collect()
}

fn query(origin: HeaderOrigin, amount: u64, skip: u64, reverse: bool) -> HeaderQuery {
    HeaderQuery { origin, amount, skip, reverse }
}

/// A block number above `i64::MAX` (a peer's origin, or a skip stepping there) is a header no
/// chain has: the answer stops there without asking the execution client, which answers such a
/// number "invalid params" (geth) rather than "no such block", and the client read every header
/// as a whole block from then on.
#[tokio::test]
async fn block_numbers_above_int64_are_absent_without_a_call() {
    let chain = header_chain(10, None);
    let seen = Arc::new(Seen { batch_limit: 1000, ..Seen::default() });
    let el = geth_like(chain.clone(), Vec::new(), &seen).await;
    let headers = ElHeaders::new(&format!("http://{el}")).unwrap();
    let by_number = HeaderOrigin::Number;

    assert!(headers.headers(query(by_number(1 << 63), 1, 0, false)).await.is_empty());
    assert!(headers.headers(query(by_number(u64::MAX), 3, 0, true)).await.is_empty());
    let skip_past = i64::MAX as u64 - 5; // from 5, the next header is block 2^63
    let answer = headers.headers(query(by_number(5), 2, skip_past, false)).await;
    assert_eq!(names(&chain, &[], &answer), ["5"]);
    // Later queries still read headers, not whole blocks.
    let answer = headers.headers(query(by_number(3), 2, 0, false)).await;
    assert_eq!(names(&chain, &[], &answer), ["3", "4"]);

    let seen = seen.calls.lock().unwrap().clone();
    assert!(seen.iter().all(|(_, n)| *n <= i64::MAX as u128), "asked: {seen:?}");
    assert!(seen.iter().all(|(method, _)| method == "eth_getHeaderByNumber"), "asked: {seen:?}");
}

/// Each header after the first is read by number from the execution client's canonical chain,
/// so a reorg during a query, or an origin hash off that chain, gave headers that do not chain
/// (geth drops a peer for that: "invalid hash progression"). Without skips each header must be
/// the parent (backwards) or the child (forwards) of the one before: the answer stops at the
/// first that is not.
#[tokio::test]
async fn answers_stop_where_the_headers_stop_chaining() {
    // Block 10 is not the child of block 9: the execution client reorged between two reads.
    let chain = header_chain(20, Some(10));
    // A block 7 off the canonical chain, child of block 6, served by its hash.
    let side = vec![sealed_header(7, header_hash(&chain[6]), B256::repeat_byte(7))];
    let seen = Arc::new(Seen { batch_limit: 1000, ..Seen::default() });
    let el = geth_like(chain.clone(), side.clone(), &seen).await;
    let headers = ElHeaders::new(&format!("http://{el}")).unwrap();
    let (c, s, h) = (&chain, &side, &headers);
    let ask = move |q| async move { names(c, s, &h.headers(q).await) };
    let (by_number, side_7) = (HeaderOrigin::Number, HeaderOrigin::Hash(header_hash(&side[0])));

    assert_eq!(ask(query(by_number(8), 5, 0, false)).await, ["8", "9"]);
    assert_eq!(ask(query(by_number(12), 5, 0, true)).await, ["12", "11", "10"]);
    assert_eq!(ask(query(side_7, 3, 0, false)).await, ["7'"], "block 8's parent is block 7");
    assert_eq!(ask(query(side_7, 3, 0, true)).await, ["7'", "6", "5"]);
    // Headers that skip blocks have nothing to chain to: they are served as read.
    assert_eq!(ask(query(by_number(8), 3, 1, false)).await, ["8", "10", "12"]);
    assert_eq!(ask(query(by_number(2), 5, 0, false)).await, ["2", "3", "4", "5", "6"]);
}

/// A query's headers after the first are read in batches of `MAX_BATCH_CALLS` calls, one HTTP
/// request each (11 for 1,024 headers, not 1,024); a client whose batch limit is lower (geth
/// under a lower `--rpc.batch-request-limit`: "batch too large") is asked in halves, one that
/// takes no batches call by call, and the answer is the same.
#[tokio::test]
async fn headers_are_read_in_batches_unless_the_client_refuses_them() {
    let chain = header_chain(MAX_HEADERS_PER_QUERY as u64 + 10, None);
    let expected: Vec<String> = (5..5 + MAX_HEADERS_PER_QUERY).map(|n| n.to_string()).collect();
    for batch_limit in [1000, 50, 0] {
        let seen = Arc::new(Seen { batch_limit, ..Seen::default() });
        let el = geth_like(chain.clone(), Vec::new(), &seen).await;
        let headers = ElHeaders::new(&format!("http://{el}")).unwrap();
        let amount = MAX_HEADERS_PER_QUERY as u64;
        for _ in 0..2 {
            let answer = headers.headers(query(HeaderOrigin::Number(5), amount, 0, false)).await;
            assert_eq!(names(&chain, &[], &answer), expected, "batch limit {batch_limit}");
        }
        let posts = seen.posts.load(Ordering::Relaxed);
        let batches = |size: usize| (MAX_HEADERS_PER_QUERY - 1).div_ceil(size);
        let expected = match batch_limit {
            // Per query: the origin, then the batches.
            1000 => 2 * (1 + batches(MAX_BATCH_CALLS)),
            // The first batch is too large; then batches of half as many calls.
            50 => 1 + 2 * (1 + batches(MAX_BATCH_CALLS / 2)),
            // The first batch is refused; every call after it is one request.
            _ => 1 + 2 * MAX_HEADERS_PER_QUERY,
        };
        assert_eq!(posts, expected, "batch limit {batch_limit}");
    }
}
