//! kill -9 over snap/1: a child process syncing into a RocksDB leafdb from simulated snap/1
//! servers is killed (SIGKILL) at random moments, five times; every reopen finds a consistent
//! progress record, and the last restart finishes with exactly the source's state, downloading
//! less than a full sync.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use common::{
    assert_same_state,
    snap::{SimSnap, SnapBehaviour, probed_snap_peers},
    source,
};
use leafsync_leafdb::{DbOptions, LeafDb, LeafDbConfig, generate::SplitMix};
use leafsync_sync::{SyncConfig, SyncPeer, SyncProgress, Syncer};

const CHILD_ENV: &str = "LEAFSYNC_SNAP_KILL_TEST_DIR";
const ACCOUNTS: u64 = 3000;
const SEED: u64 = 33;
/// Real delay per answer in the child, so that a sync lasts a few seconds and kills land at
/// different points of it.
const ANSWER_DELAY: Duration = Duration::from_millis(8);
const KILLS: usize = 5;

fn open(dir: &std::path::Path) -> LeafDb {
    LeafDb::open(dir, &DbOptions::default().block_cache_bytes(16 << 20), LeafDbConfig::default())
        .unwrap()
}

fn config() -> SyncConfig {
    SyncConfig {
        chunk_target_bytes: 16 * 1024,
        progress_interval: Duration::from_millis(50),
        ..Default::default()
    }
}

/// The child: syncs into the directory, printing `syncing` when it starts and the bytes when
/// done.
#[tokio::test]
#[ignore = "run by killed_snap_syncs_resume_to_the_exact_state as a child process"]
async fn snap_kill_child_syncer() {
    let dir = std::env::var(CHILD_ENV).expect("child needs its directory");
    let src = source(ACCOUNTS, SEED);
    let db = Arc::new(open(std::path::Path::new(&dir)));
    let prior =
        db.sync_progress().unwrap().map_or(0, |b| SyncProgress::decode(&b).unwrap().bytes_down);
    let servers: Vec<Arc<SimSnap>> = (1..=2u8)
        .map(|i| SimSnap::with(i, Arc::clone(&src), SnapBehaviour::Honest, ANSWER_DELAY, None))
        .collect();
    let peers: Vec<Arc<dyn SyncPeer>> = probed_snap_peers(&servers).await;
    println!("syncing");
    let out = Syncer::new(db, config(), peers).run().await.unwrap();
    println!("done {} {} {}", out.root, out.stats.bytes_down, prior + out.stats.bytes_down);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_snap_syncs_resume_to_the_exact_state() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let src = source(ACCOUNTS, SEED);
    let root = src.account_root().unwrap();
    let full = Syncer::new(
        Arc::new(LeafDb::in_memory()),
        config(),
        probed_snap_peers(&[SimSnap::new(1, Arc::clone(&src), SnapBehaviour::Honest)]).await,
    )
    .run()
    .await
    .unwrap();
    let mut rng = SplitMix::new(0x6b11);
    let mut last_total = 0;
    for round in 0..=KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "snap_kill_child_syncer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut started = false;
        while !started && Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                // libtest may print "test kill_child_syncer ... " on the same line.
                started = line.contains("syncing");
            }
        }
        assert!(started, "round {round}: child did not start");
        if round < KILLS {
            std::thread::sleep(Duration::from_millis(50 + rng.below(500)));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            reader.join().unwrap();
            let db = open(dir.path());
            match db.sync_progress().unwrap() {
                Some(bytes) => {
                    let record = SyncProgress::decode(&bytes).unwrap();
                    assert_eq!(record.pivot.state_root, root, "round {round}");
                    assert!(record.bytes_down >= last_total, "round {round}: progress lost");
                    last_total = record.bytes_down;
                }
                // Killed after it finished: nothing left to resume.
                None => assert_eq!(db.account_root().unwrap(), root, "round {round}"),
            }
            eprintln!("round {round}: killed, {last_total} bytes downloaded so far");
            continue;
        }
        let status = child.wait().unwrap();
        reader.join().unwrap();
        assert!(status.success());
        let done: Vec<String> =
            rx.try_iter().filter_map(|l| l.find("done ").map(|i| l[i..].to_string())).collect();
        let db = open(dir.path());
        assert_same_state(&db, &src, root);
        let last: Vec<&str> = done.last().unwrap().split(' ').collect();
        let (this_run, total): (u64, u64) = (last[2].parse().unwrap(), last[3].parse().unwrap());
        println!(
            "snap kill -9 x{KILLS}: full sync {} bytes; last restart {this_run} bytes; all runs {total} bytes",
            full.stats.bytes_down
        );
        assert!(this_run < full.stats.bytes_down, "the last restart started over");
    }
}
