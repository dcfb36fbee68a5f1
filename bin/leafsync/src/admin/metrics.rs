//! Prometheus text for `GET /metrics`, collected at scrape time from the counters the crates
//! already keep, recorded into a local `metrics` recorder and rendered by
//! `metrics-exporter-prometheus`. Names and help texts are listed in docs/operators.md.

use leafsync_sync::Phase;
use metrics::{describe_counter, describe_gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use super::AdminState;

/// The node's metrics: a recorder of its own (no global one), rendered on each scrape.
pub(crate) struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Exporter {
    /// An empty exporter.
    pub(crate) fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        Self { recorder, handle }
    }

    /// Reads every counter now and renders them as Prometheus text.
    pub(crate) async fn render(&self, state: &AdminState) -> String {
        let peers = state.network.peers().await.len();
        metrics::with_local_recorder(&self.recorder, || record(state, peers));
        self.handle.render()
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

/// Records every metric of the node with `peers` connected.
fn record(state: &AdminState, peers: usize) {
    let head = state.db.head().ok().flatten().map_or(0, |h| h.number);
    let (recent_nodes, recent_bytes) = state.db.recent_cache_size();
    let s = state.server.stats();
    gauge("leafsync_head_number", "Block number of the leafdb head.", head as f64);
    gauge("leafsync_peers", "Connected leaf/1 peers.", peers as f64);
    let mismatches = state.db.root_mismatches().unwrap_or(0);
    let help = "Blocks whose computed root differed from the header.";
    counter("leafsync_root_mismatches_total", help, mismatches);
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
    gauge("leafsync_recent_nodes", help, recent_nodes as f64);
    gauge(
        "leafsync_recent_nodes_bytes",
        "Bytes held by the recent-node cache.",
        recent_bytes as f64,
    );
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
