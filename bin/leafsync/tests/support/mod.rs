//! Running `leafsync` processes from tests: the binary, a daemon killed on drop, its stdout
//! lines, and a clean SIGTERM stop. Shared by the `cli_*` test binaries.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // each test binary uses a part

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// Bound on every wait for a daemon.
pub const WAIT: Duration = Duration::from_secs(60);

/// The binary under test, logging at `info`.
pub fn leafsync() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_leafsync"));
    c.env("RUST_LOG", "info");
    c
}

/// A child process, killed when dropped (a failing test leaves nothing running).
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `leafsync run --config config` with its log in `log` (a file: an unread pipe could
/// fill up and block the daemon); returns the process and its stdout lines.
pub fn spawn_daemon(config: &Path, log: &Path) -> (Killed, mpsc::Receiver<String>) {
    let mut child = leafsync()
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Killed(child), rx)
}

/// Starts daemon `name` of a test in `dir`: writes `toml` to `<dir>/<name>.toml` and runs it with
/// its log in `<dir>/<name>.log` (see [`spawn_daemon`]).
pub fn start_daemon(dir: &Path, name: &str, toml: &str) -> (Killed, mpsc::Receiver<String>) {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, toml).unwrap();
    spawn_daemon(&config, &dir.join(format!("{name}.log")))
}

/// The rest of the first stdout line starting with `prefix`.
pub fn line_with(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        match rx.recv_timeout(WAIT) {
            Ok(line) if line.starts_with(prefix) => return line[prefix.len()..].to_string(),
            Ok(_) => continue,
            Err(e) => panic!("no {prefix:?} line from the daemon: {e}"),
        }
    }
}

/// SIGTERM, then the exit must be clean.
pub fn sigterm_and_wait(daemon: &mut Killed) {
    let sent = Command::new("kill").args(["-TERM", &daemon.0.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let exit = wait_for_exit(daemon, "daemon did not stop after SIGTERM");
    assert!(exit.success(), "{exit:?}");
}

/// Waits up to [`WAIT`] for the daemon to exit; panics with `why` if it does not.
pub fn wait_for_exit(daemon: &mut Killed, why: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `leafsync status --json` of the daemon whose admin JSON-RPC is `admin`.
pub fn status(admin: &str) -> serde_json::Value {
    let out = leafsync().args(["status", "--rpc", admin, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `leafsync status` (the text an operator reads) of the daemon whose admin JSON-RPC is `admin`.
pub fn status_text(admin: &str) -> String {
    let out = leafsync().args(["status", "--rpc", admin]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (bounded by [`WAIT`]) until every daemon of `admins` (admin JSON-RPC addresses) has
/// applied block `number`. Tests that mine blocks on anvil while daemons follow it call this
/// after each block: anvil 1.7.1 can hang for good when a block trace (a
/// follower's) overlaps its mining (seen in CI, and reproduced with three tracing clients
/// beside a mining loop), so mining waits for the followers' traces.
pub async fn wait_applied(admins: &[&str], number: u64) {
    for admin in admins {
        let mut rpc = leafsync_ingest::RpcClient::new(admin).unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let head: serde_json::Value =
                rpc.call("leaf_head", serde_json::json!([])).await.unwrap();
            if head["number"].as_u64().is_some_and(|n| n >= number) {
                break;
            }
            assert!(Instant::now() < deadline, "{admin} did not apply block {number}: {head}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Polls `leafsync status` until `done` accepts it (bounded by [`WAIT`]).
pub async fn wait_status(
    admin: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = status(admin);
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The daemon's head in `s` (its status) is the execution client's block `number`: same hash,
/// same state root.
pub async fn assert_head_is_els(
    s: &serde_json::Value,
    rpc: &mut leafsync_ingest::RpcClient,
    number: u64,
) {
    let block = rpc.block(number).await.unwrap();
    assert_eq!(s["sync"]["head"]["number"], number, "{s}");
    assert_eq!(s["sync"]["head"]["stateRoot"], block.state_root.to_string(), "{s}");
    assert_eq!(s["sync"]["head"]["hash"], block.hash.to_string(), "{s}");
}

/// Waits until the daemon at `admin` has synced its empty leafdb at the execution client's block
/// `pivot` and follows; returns its status.
pub async fn wait_synced_at(
    admin: &str,
    rpc: &mut leafsync_ingest::RpcClient,
    pivot: u64,
) -> serde_json::Value {
    let s = wait_status(admin, "the daemon did not sync and start following", |s| {
        s["sync"]["phase"] == "following" && !s["sync"]["head"].is_null()
    })
    .await;
    let synced = &s["sync"]["stateSync"];
    assert_eq!(synced["phase"], "done", "{s}");
    assert_eq!(synced["pivot"]["number"], pivot, "the pivot is the execution client's head: {s}");
    let block = rpc.block(pivot).await.unwrap();
    assert_eq!(synced["pivot"]["stateRoot"], block.state_root.to_string(), "{s}");
    s
}

/// Waits until every daemon of `admins` (name, admin URL) has followed the execution client to
/// block `number`, with its root and no mismatching block.
pub async fn wait_followed_to(
    admins: &[(&str, &str)],
    rpc: &mut leafsync_ingest::RpcClient,
    number: u64,
) {
    for (name, admin) in admins {
        let s = wait_status(admin, &format!("{name} did not follow the new blocks"), |s| {
            s["sync"]["head"]["number"] == number
        })
        .await;
        assert_head_is_els(&s, rpc, number).await;
        assert_eq!(s["sync"]["follow"]["mismatchingBlocks"], 0, "{name}: {s}");
    }
}

/// The end of a two-daemon scenario: both daemons follow the execution client to block `end`,
/// B's `leafsync status` says each of `b_says`, both stop on SIGTERM, and `tool verify` of B's
/// datadir finds the state at `end`.
pub async fn both_follow_then_stop(
    (a, a_admin): (&mut Killed, &str),
    (b, b_admin, b_datadir): (&mut Killed, &str, &Path),
    rpc: &mut leafsync_ingest::RpcClient,
    end: u64,
    b_says: &[&str],
) {
    wait_followed_to(&[("A", a_admin), ("B", b_admin)], rpc, end).await;
    let text = status_text(b_admin);
    assert!(b_says.iter().all(|s| text.contains(s)), "{text}");
    sigterm_and_wait(b);
    sigterm_and_wait(a);
    verify_clean(b_datadir, &rpc.block(end).await.unwrap().state_root.to_string());
}

/// `leafsync tool verify` on `datadir` succeeds and its report names `root`.
pub fn verify_clean(datadir: &Path, root: &str) {
    let verify = leafsync()
        .args(["tool", "verify", "--datadir", datadir.to_str().unwrap()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && report.contains(root), "{report}");
}

/// The genesis hash of the tests' dev chain.
pub const GENESIS: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

/// The `chain` lines of a dev chain whose genesis hash is `genesis`.
pub fn dev_chain(genesis: impl std::fmt::Display) -> String {
    format!("chain = \"dev\"\ngenesis_hash = \"{genesis}\"")
}

/// A daemon's config file: its datadir, the `chain` lines, RLPx on a free loopback port with
/// discv5 off (`None`) or on with `bootnodes`, the admin JSON-RPC on a free loopback port, then
/// `extra` sections.
pub fn daemon_toml(datadir: &Path, chain: &str, bootnodes: Option<&[&str]>, extra: &str) -> String {
    let discovery = match bootnodes {
        None => "discovery = false".to_string(),
        Some(list) => format!("discovery = true\nbootnodes = {list:?}"),
    };
    format!(
        r#"datadir = {datadir:?}
{chain}

[p2p]
listen_ip = "127.0.0.1"
port = 0
{discovery}

[admin]
listen = "127.0.0.1:0"

{extra}
"#
    )
}

/// The `[metrics]` section on a free loopback port.
pub const METRICS: &str = r#"[metrics]
listen = "127.0.0.1:0""#;

/// One HTTP/1.1 exchange with `authority` (`host:port`) on a fresh connection: `request_line`
/// (e.g. `POST / HTTP/1.1`) with a JSON `body`; returns the whole response.
pub fn http(authority: &str, request_line: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "{request_line}\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
