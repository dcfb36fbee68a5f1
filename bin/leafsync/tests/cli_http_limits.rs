//! The admin and metrics HTTP servers under a slowloris: stalled connections are closed after the
//! header read timeout, idle kept-alive ones too, connections over the cap at once, and the admin
//! JSON-RPC keeps answering meanwhile (review finding M6); clients trickling their bodies hold
//! no call turn; and calls a web page could make are refused.
#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

mod support;

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use support::{GENESIS, leafsync, line_with, sigterm_and_wait, spawn_daemon};

/// `admin::HTTP_HEADER_READ_TIMEOUT`: a stalled request head is dropped after this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// `admin::MAX_HTTP_CONNECTIONS`: connections each endpoint serves at once.
const CAP: usize = 256;
/// Slack on top of the server's timeouts for a loaded 2-core test machine.
const SLACK: Duration = Duration::from_secs(5);

/// Connections that sent part of a request line and stall.
fn slowloris(authority: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(authority).unwrap();
            s.write_all(b"GET /metr").unwrap();
            s
        })
        .collect()
}

/// Whether the server closed `s` (EOF or reset), without waiting.
fn closed_now(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            // A response (hyper may answer a timed-out head before closing): read on.
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// Waits until the server closes `s`, at most `within`; returns whether it did.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// A daemon serving a small generated state, with admin and metrics on loopback; returns it and
/// the admin URL and metrics URL.
fn start_daemon(dir: &std::path::Path) -> (support::Killed, String, String) {
    let datadir = dir.join("data");
    let out = leafsync()
        .args(["tool", "gen-state", "--datadir", datadir.to_str().unwrap(), "--accounts", "200"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = dir.join("leafsync.toml");
    std::fs::write(
        &config,
        support::daemon_toml(&datadir, &support::dev_chain(GENESIS), None, support::METRICS),
    )
    .unwrap();
    let (daemon, rx) = spawn_daemon(&config, &dir.join("run.log"));
    let admin = line_with(&rx, "admin: ");
    let metrics = line_with(&rx, "metrics: http://");
    (daemon, admin, metrics)
}

#[test]
fn admin_add_peer_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, admin, _) = start_daemon(dir.path());
    let add = |i: u64| {
        let key =
            secp256k1::SecretKey::from_byte_array(alloy_primitives::keccak256(i.to_be_bytes()).0)
                .unwrap();
        let id = leafsync_p2p::ecies::id_from_pk(&key.public_key(secp256k1::SECP256K1));
        // Port 1 on loopback: the dials fail at once.
        let enode = format!("enode://{}@127.0.0.1:1", alloy_primitives::hex::encode(id));
        rpc(&admin, "admin_addPeer", &enode)
    };
    for i in 0..32 {
        let answer = add(i);
        assert!(answer.contains("\"result\":true"), "peer {i}: {answer}");
    }
    // Adding one already added again is fine; a 33rd is refused with the reason.
    assert!(add(5).contains("\"result\":true"));
    let answer = add(32);
    assert!(answer.contains("-32000") && answer.contains("already added 32 peers"), "{answer}");
    sigterm_and_wait(&mut daemon);
}

/// `leaf_head` posted with `headers` (each line ending in CRLF); returns the whole response.
fn post_with(authority: &str, headers: &str) -> String {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"leaf_head"}"#;
    let mut s = TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(support::WAIT)).unwrap();
    let (len, close) = (body.len(), "Connection: close\r\n");
    write!(s, "POST / HTTP/1.1\r\n{headers}Content-Length: {len}\r\n{close}\r\n{body}").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A page in a browser on the operator's machine can POST to `127.0.0.1` without asking (a
/// "simple" request, `text/plain`), or read answers through a DNS name pointed at it: the admin
/// JSON-RPC refuses a call without `application/json`, one with an `Origin`, and one whose
/// `Host` is a DNS name other than `localhost`; local tools' calls are answered.
#[test]
fn calls_a_web_page_could_make_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, admin, _) = start_daemon(dir.path());
    let authority = admin.strip_prefix("http://").unwrap();
    let json = "Content-Type: application/json\r\n";
    let local = format!("Host: {authority}\r\n");
    let cases = [
        (format!("{local}Content-Type: text/plain\r\n"), "415"),
        (local.clone(), "415"),
        (format!("{local}{json}Origin: http://evil.example\r\n"), "403"),
        (format!("Host: evil.example:{}\r\n{json}", authority.rsplit(':').next().unwrap()), "403"),
        (format!("{local}{json}"), "200"),
        (format!("Host: localhost\r\n{json}"), "200"),
        (format!("Host: [::1]:8647\r\n{json}"), "200"),
    ];
    for (headers, status) in cases {
        let answer = post_with(authority, &headers);
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{headers:?}: {answer}");
        assert_eq!(answer.contains("\"result\""), status == "200", "{headers:?}: {answer}");
    }
    sigterm_and_wait(&mut daemon);
}

/// Four clients (the endpoint's call turns) sending their bodies a byte now and then hold no
/// turn: `leafsync status` still answers at once.
#[test]
fn clients_trickling_their_bodies_hold_no_call_turn() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, admin, _) = start_daemon(dir.path());
    let authority = admin.strip_prefix("http://").unwrap();
    let trickling: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(authority).unwrap();
            let head = format!(
                "POST / HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: 65536\r\n\r\n{{"
            );
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let status = support::status(&admin);
    assert!(t.elapsed() < Duration::from_secs(3), "status took {:?}", t.elapsed());
    assert!(status["sync"].is_object(), "{status}");
    drop(trickling);
    sigterm_and_wait(&mut daemon);
}

/// One JSON-RPC call with one string parameter on a fresh connection; returns the response body.
fn rpc(url: &str, method: &str, param: &str) -> String {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": [param]});
    support::http(url.strip_prefix("http://").unwrap(), "POST / HTTP/1.1", &body.to_string())
}

#[test]
fn stalled_http_clients_are_dropped_and_the_admin_rpc_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, admin, metrics) = start_daemon(dir.path());
    let admin_authority = admin.strip_prefix("http://").unwrap().to_string();
    let metrics_authority = metrics.trim_end_matches("/metrics").to_string();

    // 200 stalled heads on the admin endpoint: `leafsync status` still answers at once.
    let opened = Instant::now();
    let mut stalled = slowloris(&admin_authority, 200);
    let t = Instant::now();
    let status = support::status(&admin);
    assert_eq!(status["sync"]["phase"], "serving", "{status}");
    assert!(t.elapsed() < HEADER_TIMEOUT, "status took {:?} behind stalled clients", t.elapsed());

    // Over the cap, the metrics endpoint closes new connections at once.
    let crowd_opened = Instant::now();
    let mut crowd = slowloris(&metrics_authority, CAP + 44);
    // Polled (a loaded machine may take a while to close them), until before the header timeout
    // could close the others too.
    let mut closed = vec![false; crowd.len()];
    let refused = loop {
        for (s, c) in crowd.iter_mut().zip(&mut closed) {
            *c = *c || closed_now(s);
        }
        let refused = closed.iter().filter(|c| **c).count();
        if refused >= 44 || crowd_opened.elapsed() >= HEADER_TIMEOUT - Duration::from_secs(1) {
            break refused;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Those under the cap stay open: a last look a little later, still before the timeout.
    std::thread::sleep(Duration::from_millis(300));
    let refused = refused.max(crowd.iter_mut().map(closed_now).filter(|c| *c).count());
    assert!(refused >= 44, "{refused} of {} connections closed over a cap of {CAP}", CAP + 44);
    assert!(refused < 100, "{refused} connections closed: the cap is {CAP}");

    // A kept-alive connection that goes idle after one scrape is closed too.
    let mut idle = TcpStream::connect(&admin_authority).unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"leaf_head"}"#;
    write!(
        idle,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let idle_since = Instant::now();

    // Every stalled head is dropped within the header timeout (plus slack), none long before.
    for (i, s) in stalled.iter_mut().enumerate() {
        let left = (HEADER_TIMEOUT + SLACK).saturating_sub(opened.elapsed());
        assert!(
            closed_within(s, left),
            "stalled admin connection {i} still open after {:?}",
            opened.elapsed()
        );
    }
    assert!(opened.elapsed() >= HEADER_TIMEOUT - Duration::from_secs(1), "closed too early");
    for (i, s) in crowd.iter_mut().enumerate() {
        let left = (HEADER_TIMEOUT + SLACK * 2).saturating_sub(opened.elapsed());
        assert!(closed_within(s, left), "stalled metrics connection {i} still open");
    }
    let left = (HEADER_TIMEOUT + SLACK).saturating_sub(idle_since.elapsed());
    assert!(closed_within(&mut idle, left), "an idle kept-alive connection stays open");

    // The slots are free again: the endpoints serve.
    let out = leafsync().args(["status", "--rpc", &admin, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // 64 scrapes at once take turns (a few at a time) and all get their answer.
    let scrapes: Vec<_> = (0..64)
        .map(|_| {
            let authority = metrics_authority.clone();
            std::thread::spawn(move || {
                let mut scrape = TcpStream::connect(&authority).unwrap();
                scrape.set_read_timeout(Some(support::WAIT)).unwrap();
                scrape
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .unwrap();
                let mut text = String::new();
                scrape.read_to_string(&mut text).unwrap();
                text
            })
        })
        .collect();
    for scrape in scrapes {
        let text = scrape.join().unwrap();
        assert!(text.contains("leafsync_uptime_seconds"), "{text}");
    }
    sigterm_and_wait(&mut daemon);
}
