//! Prometheus text for `GET /metrics`, collected at scrape time from the counters the crates
//! already keep, recorded into a local `metrics` recorder and rendered by
//! `metrics-exporter-prometheus`. Names and help texts are listed in docs/operators.md.

use std::sync::atomic::{AtomicU64, Ordering};

use leafsync_leafdb::{BlockHeader, LeafDbError};
use leafsync_sync::Phase;
use metrics::{describe_counter, describe_gauge};
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing::debug;

use super::AdminState;

/// The node's metrics, read anew on each scrape into a recorder of that scrape's own (no global
/// one): a value that cannot be read is left out of that scrape, not shown as it last was.
pub(crate) struct Exporter {
    /// Reads of the leafdb that failed during scrapes since the daemon started
    /// (`leafsync_leafdb_read_errors_total`).
    read_errors: AtomicU64,
}

impl Exporter {
    /// An exporter that has counted no read error.
    pub(crate) fn new() -> Self {
        Self { read_errors: AtomicU64::new(0) }
    }

    /// Reads every counter now and renders them as Prometheus text.
    pub(crate) async fn render(&self, state: &AdminState) -> String {
        let peers = state.network.peers().await.len();
        let recorder = PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            self.record_leafdb(state.db.head(), state.db.root_mismatches());
            record(state, peers);
        });
        recorder.handle().render()
    }

    /// The leafdb's head and root mismatches, as read: a value that could not be read (a damaged
    /// table file, a disk error) is left out, since a 0 would tell Prometheus that the head went
    /// back to genesis and that the counter was reset; the failure is counted instead.
    fn record_leafdb(
        &self,
        head: Result<Option<BlockHeader>, LeafDbError>,
        mismatches: Result<u64, LeafDbError>,
    ) {
        match head {
            // No head yet (an empty or syncing leafdb) reads 0.
            Ok(head) => {
                let number = head.map_or(0, |h| h.number);
                gauge("leafsync_head_number", "Block number of the leafdb head.", number as f64);
            }
            Err(error) => self.read_failed("head", &error),
        }
        match mismatches {
            Ok(mismatches) => {
                let help = "Blocks whose computed root differed from the header.";
                counter("leafsync_root_mismatches_total", help, mismatches);
            }
            Err(error) => self.read_failed("root mismatches", &error),
        }
        let help = "Reads of the leafdb that failed during scrapes; the values they were for \
                    are left out of those scrapes.";
        let errors = self.read_errors.load(Ordering::Relaxed);
        counter("leafsync_leafdb_read_errors_total", help, errors);
    }

    /// Counts and logs a failed read of `what`.
    fn read_failed(&self, what: &'static str, error: &LeafDbError) {
        self.read_errors.fetch_add(1, Ordering::Relaxed);
        debug!(what, %error, "metrics: cannot read the leafdb; left out of this scrape");
    }
}

/// A gauge `name` (help `help`) at `value`.
fn gauge(name: &'static str, help: &'static str, value: f64) {
    describe_gauge!(name, help);
    metrics::gauge!(name).set(value);
}

/// A counter `name` (help `help`) at `value`.
fn counter(name: &'static str, help: &'static str, value: u64) {
    describe_counter!(name, help);
    metrics::counter!(name).absolute(value);
}

/// Records every metric of the node with `peers` connected, but those of
/// [`Exporter::record_leafdb`].
fn record(state: &AdminState, peers: usize) {
    let recent = state.db.recent_cache_size();
    let s = state.server.stats();
    gauge("leafsync_peers", "Connected leaf/1 peers.", peers as f64);
    let help =
        "Repairs of a state off the chain finished (synced back at the execution client's head).";
    counter(
        "leafsync_repairs_total",
        help,
        state.repairs.load(std::sync::atomic::Ordering::Relaxed),
    );
    counter("leafsync_serve_requests_total", "leaf/1 requests answered.", s.served);
    let help = "Requests answered empty on a database error.";
    counter("leafsync_serve_internal_errors_total", help, s.internal_errors);
    let help = "Chunk requests answered empty because the state is off the chain.";
    counter("leafsync_serve_off_chain_total", help, s.off_chain);
    counter("leafsync_serve_cache_hits_total", "Chunk cache hits.", s.cache.hits);
    counter("leafsync_serve_cache_misses_total", "Chunk cache misses.", s.cache.misses);
    let help = "Chunk cache hits that waited for another request reading the same chunk.";
    counter("leafsync_serve_cache_joined_total", help, s.cache.joined);
    gauge("leafsync_serve_cache_bytes", "Bytes held by the chunk cache.", s.cache.bytes as f64);
    let help = "Replaced trie nodes held for recent pivots.";
    gauge("leafsync_recent_nodes", help, recent.nodes as f64);
    let help = "Bytes held by the recent-node cache.";
    gauge("leafsync_recent_nodes_bytes", help, recent.bytes as f64);
    let help = "Blocks whose replaced nodes the recent-node cache holds (leafdb.recent_blocks at \
        most; fewer when leafdb.recent_cache_mib binds).";
    gauge("leafsync_recent_blocks", help, recent.blocks as f64);
    let help = "Blocks the recent-node cache's byte budget dropped before leafdb.recent_blocks.";
    counter("leafsync_recent_blocks_dropped_early_total", help, recent.dropped_early);
    let uptime = state.started.elapsed().as_secs_f64();
    gauge("leafsync_uptime_seconds", "Seconds since the daemon started.", uptime);
    record_sync(state);
    record_ingest(state);
}

/// The sync's metrics, once this run syncs.
fn record_sync(state: &AdminState) {
    let sync = state.sync.borrow().clone();
    if sync.requests == 0 && sync.phase != Phase::Done {
        return;
    }
    let phase = match sync.phase {
        Phase::Chunks => 0.0,
        Phase::Heal => 1.0,
        Phase::Done => 2.0,
    };
    gauge("leafsync_sync_phase", "Sync phase: 0 chunks, 1 heal, 2 done.", phase);
    gauge("leafsync_sync_pivot", "Block number of the sync pivot.", sync.pivot.number as f64);
    gauge("leafsync_sync_chunks_total", "Chunks known so far.", sync.chunks_total as f64);
    gauge("leafsync_sync_chunks_done", "Chunks imported.", sync.chunks_done as f64);
    gauge("leafsync_sync_chunks_healed", "Chunks that needed heal.", sync.chunks_healed as f64);
    gauge("leafsync_sync_accounts", "Accounts imported from chunks.", sync.accounts as f64);
    gauge("leafsync_sync_slots", "Storage slots imported from chunks.", sync.slots as f64);
    gauge("leafsync_sync_codes", "Codes written.", sync.codes as f64);
    gauge("leafsync_sync_healed_nodes", "Trie nodes written by heal.", sync.healed_nodes as f64);
    gauge("leafsync_sync_heal_queue", "Heal nodes waiting or in flight.", sync.heal_queue as f64);
    counter("leafsync_sync_requests_total", "Sync requests sent.", sync.requests);
    counter("leafsync_sync_bytes_down_total", "Bytes of sync answers received.", sync.bytes_down);
    counter("leafsync_sync_timeouts_total", "Sync requests timed out.", sync.timeouts);
    gauge("leafsync_sync_peers", "Peers the sync uses.", sync.peers as f64);
    counter("leafsync_sync_peers_banned_total", "Peers banned by the sync.", sync.peers_banned);
    let help = "Peers new to the sync that it took.";
    counter("leafsync_sync_peers_joined_total", help, sync.peers_joined);
    let help = "New sessions of peers the sync already had.";
    counter("leafsync_sync_peers_back_total", help, sync.peers_back);
    counter("leafsync_sync_repivots_total", "Pivot moves.", sync.repivots);
}

/// The follower's metrics, while it follows.
fn record_ingest(state: &AdminState) {
    let Some(i) = state.ingest.get() else { return };
    let help = "Head block number of the execution client.";
    gauge("leafsync_ingest_el_head", help, i.el_head() as f64);
    let help = "Blocks the leafdb is behind the execution client.";
    gauge("leafsync_ingest_blocks_behind", help, i.blocks_behind() as f64);
    let help = "Blocks applied from the execution client.";
    counter("leafsync_ingest_blocks_applied_total", help, i.blocks_applied());
    let help = "Followed blocks whose root differed from the header.";
    counter("leafsync_ingest_mismatching_blocks_total", help, i.mismatching_blocks());
    counter("leafsync_ingest_reorgs_total", "Reorgs detected.", i.reorgs());
    let help = "Blocks rolled back by reorgs.";
    counter("leafsync_ingest_blocks_reverted_total", help, i.blocks_reverted());
    let help = "Fold and apply time of the last block.";
    gauge("leafsync_ingest_last_apply_seconds", help, i.last_apply_micros() as f64 / 1e6);
    let help = "Block the execution client keeps failing to trace (0: none).";
    gauge("leafsync_ingest_stuck_block", help, i.stuck_block() as f64);
}

#[cfg(test)]
mod tests {
    use leafsync_leafdb::{BlockHeader, LeafDbError};
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::Exporter;

    /// The Prometheus text of one scrape of the leafdb's values, read as `head` and
    /// `mismatches`.
    fn scrape(
        exporter: &Exporter,
        head: Result<Option<BlockHeader>, LeafDbError>,
        mismatches: Result<u64, LeafDbError>,
    ) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, || exporter.record_leafdb(head, mismatches));
        recorder.handle().render()
    }

    /// The value of the sample `name` in `text`, if there is one.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// A failed read leaves its sample out and is counted: a head of 0 would read as a fall to
    /// genesis, and a counter of 0 as a counter reset.
    #[test]
    fn leafdb_read_errors_leave_the_sample_out() {
        let exporter = Exporter::new();
        let head = BlockHeader { number: 7, ..BlockHeader::default() };
        let text = scrape(&exporter, Ok(Some(head)), Ok(3));
        assert_eq!(sample(&text, "leafsync_head_number"), Some(7.0), "{text}");
        assert_eq!(sample(&text, "leafsync_root_mismatches_total"), Some(3.0), "{text}");
        assert_eq!(sample(&text, "leafsync_leafdb_read_errors_total"), Some(0.0), "{text}");

        let text = scrape(&exporter, Err(LeafDbError::WorkerPanicked), Err(LeafDbError::Stopped));
        assert_eq!(sample(&text, "leafsync_head_number"), None, "{text}");
        assert_eq!(sample(&text, "leafsync_root_mismatches_total"), None, "{text}");
        assert_eq!(sample(&text, "leafsync_leafdb_read_errors_total"), Some(2.0), "{text}");

        // No head yet reads 0; the errors counted stay counted.
        let text = scrape(&exporter, Ok(None), Ok(3));
        assert_eq!(sample(&text, "leafsync_head_number"), Some(0.0), "{text}");
        assert_eq!(sample(&text, "leafsync_root_mismatches_total"), Some(3.0), "{text}");
        assert_eq!(sample(&text, "leafsync_leafdb_read_errors_total"), Some(2.0), "{text}");
    }
}
