//! The kill -9 harness shared by `kill.rs` (leaf/1 peers) and `snap_kill.rs` (snap/1 peers): a
//! child test syncs into a RocksDB directory; the parent SIGKILLs it at random moments, checks
//! the progress record after each kill, and lets the last run finish with the exact state (its
//! final check repairing nothing: the marks of the killed runs said what they left open).

use std::{path::Path, sync::Arc, time::Duration};

use leafsync_leafdb::{
    DbOptions, LeafDb, LeafDbConfig, MemStore, generate::SplitMix, test_utils::ChildTest,
};
use leafsync_sync::{SyncConfig, SyncPeer, SyncProgress, Syncer, link::Link};

use super::{Behaviour, SimPeer, assert_same_state, paced, source};

/// Accounts of the source state.
pub const ACCOUNTS: u64 = 3000;
/// Seed of the source state.
pub const SEED: u64 = 33;
/// One-way delay of each simulated peer's link in the child.
pub const LINK_DELAY: Duration = Duration::from_millis(8);
/// Bandwidth of each simulated peer's link in the child (384 KiB/s): two peers carry a full
/// sync (~0.94 MB) in about 2 s of real time however many requests the syncer keeps in flight,
/// so the kills (50-350 ms after each start) land at different points of it.
pub const LINK_BITS_PER_SEC: u64 = 384 * 1024 * 8;

/// Names the child's directory in its environment. Each test binary runs its own children, so
/// one name serves them all.
const CHILD_DIR_ENV: &str = "LEAFSYNC_KILL_TEST_DIR";

/// A simulated peer's link in the child (real time).
pub fn link() -> Arc<Link> {
    Arc::new(Link::new(LINK_DELAY, LINK_BITS_PER_SEC))
}

/// The child's leafdb in `dir`, with a small block cache.
pub fn open(dir: &Path) -> LeafDb {
    LeafDb::open(dir, &DbOptions::default().block_cache_bytes(16 << 20), LeafDbConfig::default())
        .unwrap()
}

/// Small chunks, one a request, and frequent progress records, so kills land between many of
/// both.
pub fn config() -> SyncConfig {
    SyncConfig {
        chunk_target_bytes: 16 * 1024,
        chunk_batch_bytes: 0,
        progress_interval: Duration::from_millis(50),
        ..Default::default()
    }
}

/// Two honest leaf/1 peers of `src`, each behind a slow [`link`].
pub fn linked_peers(src: &Arc<LeafDb<MemStore>>) -> Vec<Arc<dyn SyncPeer>> {
    (1..=2u8)
        .map(|i| paced(SimPeer::new(i, Arc::clone(src), Behaviour::Honest, ACCOUNTS), link()))
        .collect()
}

/// The child's body, run only in the child process (its test does nothing when run by the
/// test harness itself): syncs into the directory [`kill_and_resume`] names from the peers
/// `peers` makes of the source state, printing `syncing` when it starts and `done <root> <bytes
/// this run> <bytes all runs> <final repairs>` when it ends.
pub async fn child_sync(peers: impl AsyncFnOnce(Arc<LeafDb<MemStore>>) -> Vec<Arc<dyn SyncPeer>>) {
    if !ChildTest::is_child() {
        return; // run by its parent test only
    }
    let peers = peers(source(ACCOUNTS, SEED)).await;
    let dir = std::env::var(CHILD_DIR_ENV).expect("child needs its directory");
    let db = Arc::new(open(Path::new(&dir)));
    let prior =
        db.sync_progress().unwrap().map_or(0, |b| SyncProgress::decode(&b).unwrap().bytes_down);
    println!("syncing");
    let out = Syncer::new(db, config(), peers).run().await.unwrap();
    let (bytes, repairs) = (out.stats.bytes_down, out.stats.final_repairs);
    println!("done {} {bytes} {} {repairs}", out.root, prior + bytes);
}

/// Bytes an uninterrupted sync from `peers` into an empty leafdb downloads: what the last run
/// after the kills must stay under.
pub async fn full_sync_bytes(peers: Vec<Arc<dyn SyncPeer>>) -> u64 {
    let out = Syncer::new(Arc::new(LeafDb::in_memory()), config(), peers).run().await.unwrap();
    out.stats.bytes_down
}

/// The parent: runs the child test `child` (its body [`child_sync`]) `kills` times, SIGKILLing
/// it at a random moment each time and checking that the record keeps its pivot and never loses
/// progress, then once to the end: the state must equal the source state and the last run must
/// download less than a sync from nothing from the peers `peers` makes of the source state.
/// Three kills in four must land before the sync first finished: later ones test a finished
/// state and a sync over it, so a sync grown too fast for the schedule fails here rather than
/// testing less. The kill times are drawn; a soak (`LEAFSYNC_SOAK_SEED`, `LEAFSYNC_SOAK_ROUNDS`:
/// docs/testing.md) runs that many sequences, each into a new directory.
pub async fn kill_and_resume(
    child: &str,
    kills: usize,
    peers: impl AsyncFnOnce(Arc<LeafDb<MemStore>>) -> Vec<Arc<dyn SyncPeer>>,
) {
    let src = source(ACCOUNTS, SEED);
    let full_bytes = full_sync_bytes(peers(Arc::clone(&src)).await).await;
    let (mut rng, sequences) = super::drawn_rounds(0x6b11, 1);
    for sequence in 0..sequences {
        eprintln!("{child}: kill sequence {sequence}");
        kill_sequence(child, kills, &src, full_bytes, &mut rng);
    }
}

/// One sequence of [`kill_and_resume`], its kill times drawn from `rng`.
fn kill_sequence(
    child: &str,
    kills: usize,
    src: &LeafDb<MemStore>,
    full_bytes: u64,
    rng: &mut SplitMix,
) {
    let dir = tempfile::tempdir().unwrap();
    let root = src.account_root().unwrap();
    let mut last_total = 0;
    let (mut mid_sync, mut finished) = (0, false);
    for round in 0..=kills {
        let run = ChildTest::spawn(child, [(CHILD_DIR_ENV, dir.path().as_os_str())]).unwrap();
        // libtest may print "test <child> ... " on the same line.
        let started = run
            .wait_for(Duration::from_secs(120), |line| line.contains("syncing").then_some(()))
            .is_some();
        assert!(started, "round {round}: child did not start");
        if round < kills {
            std::thread::sleep(Duration::from_millis(50 + rng.below(300)));
            run.kill().unwrap(); // SIGKILL
            let db = open(dir.path());
            match db.sync_progress().unwrap() {
                Some(bytes) => {
                    let record = SyncProgress::decode(&bytes).unwrap();
                    assert_eq!(record.pivot.state_root, root, "round {round}");
                    assert!(
                        record.bytes_down >= last_total,
                        "round {round}: progress lost ({} bytes recorded, {last_total} before)",
                        record.bytes_down
                    );
                    last_total = record.bytes_down;
                    mid_sync += usize::from(!finished);
                    eprintln!("round {round}: killed, {last_total} bytes downloaded so far");
                }
                // Killed after it finished: nothing left to resume, and the whole state there,
                // codes included (written without the log; flushed before the head). The next
                // run is a new sync over that state, counting its bytes from nothing.
                None => {
                    assert_same_state(&db, src, root);
                    (last_total, finished) = (0, true);
                    eprintln!("round {round}: killed after the sync finished");
                }
            }
            continue;
        }
        let (status, lines) = run.wait().unwrap();
        assert!(status.success());
        let done: Vec<String> =
            lines.iter().filter_map(|l| l.find("done ").map(|i| l[i..].to_string())).collect();
        let db = open(dir.path());
        assert_same_state(&db, src, root);
        let last: Vec<&str> = done.last().unwrap().split(' ').collect();
        let (this_run, total): (u64, u64) = (last[2].parse().unwrap(), last[3].parse().unwrap());
        let repairs: u64 = last[4].parse().unwrap();
        println!(
            "{child}: kill -9 x{kills}: full sync {full_bytes} bytes; last restart {this_run} bytes; all runs {total} bytes; final repairs {repairs}"
        );
        assert!(this_run < full_bytes, "the last restart started over");
        // A kill loses nothing the log has: the killed runs' marks name every storage and code
        // they left open, so the final check finds nothing (a power cut may lose the log's tail).
        assert_eq!(repairs, 0, "the last restart's final check found what the marks missed");
    }
    assert!(
        mid_sync * 4 >= kills * 3,
        "only {mid_sync} of {kills} kills landed before the sync first finished: it is too short \
         for the kill schedule"
    );
}
