//! [`SyncConfig`] and the sync's limits, each a named constant saying why it has its value.

use std::time::Duration;

use leafsync_p2p::leaf::{
    ChainHead,
    protocol::{
        MAX_CODES_PER_REQUEST, MAX_IN_FLIGHT_REQUESTS, MAX_RESPONSE_BYTES, REQUEST_TIMEOUT,
    },
};

/// Default target size of one chunk (1 MiB): large enough that a peer's 16 requests in flight
/// fill a 200 ms, 100 Mbit/s link (2.5 MB), since the chunk depth rounds up and real chunks come
/// out at 40–100% of the target (a 1M-account state: depth 2, ~620 KB chunks, 1,856 requests
/// against 5,697 at 512 KiB; docs/benchmarks.md); half the 2 MiB response cap, so a chunk
/// denser than estimated still fits one answer.
pub const DEFAULT_CHUNK_TARGET_BYTES: u64 = 1024 * 1024;

/// Encoded bytes of an average account leaf in a chunk (≈ 110 for a plain account, more with
/// inline storage): turns the peers' account-count estimate into a chunk depth.
pub const BYTES_PER_ACCOUNT_ESTIMATE: u64 = 160;

/// Encoded bytes of an average storage slot in a storage chunk (48: a 33-byte hashed key, a
/// value of up to 9 bytes for counters and balances, list headers): turns the slot count of a
/// "large storage" mark into the size its storage units are batched by. An underestimate costs
/// nothing but a batch cut at `max_bytes` (its tail is asked again), so it leans low: values of
/// 20–32 bytes (addresses, hashes) make real slots up to ~70 bytes.
pub const BYTES_PER_SLOT_ESTIMATE: u64 = 48;

/// Most accounts a peer's estimate is taken for (2^30, about four times mainnet's): an
/// estimate is a peer's word, and `u64::MAX` would choose the deepest skeleton
/// ([`MAX_CHUNK_DEPTH`]) and size every unit as a whole answer, one request each.
pub const MAX_PLAUSIBLE_ACCOUNTS: u64 = 1 << 30;

/// Deepest account-trie level the skeleton is fetched to (16^6 ≈ 16.7M chunks). Beyond it the
/// skeleton would cost more round trips than the chunks save.
pub const MAX_CHUNK_DEPTH: usize = 6;

/// `max_bytes` asked of every chunk: the protocol's response cap (2 MiB). A chunk larger than
/// this is "too large" and split into its children; below it, the skeleton depth sizes chunks.
pub const CHUNK_MAX_BYTES: u64 = MAX_RESPONSE_BYTES;

/// Estimated bytes of chunk units asked in one `GetChunk` or `GetStorageChunk`: the chunk cap
/// (2 MiB), what one answer may carry. Account units are sized by the skeleton depth (a 1M state:
/// ~625 KB each, three to a request), storage units by their tries' slot counts; the server
/// cuts an underestimated batch before the piece that would cross `max_bytes` and the tail is
/// asked again.
pub const CHUNK_BATCH_BYTES: u64 = CHUNK_MAX_BYTES;

/// How much longer the sync's own request timeout is than the transport's (2 s): the p2p
/// layer times a request out after its `REQUEST_TIMEOUT` on the wire and penalises the peer
/// itself, so for a network peer that timeout always fires first; the sync's is only a guard for
/// peers without a transport timeout of their own (simulated peers, a future peer type) and for
/// time a request spends queued before it reaches the wire.
pub const REQUEST_TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// Default time a request may take before it is re-queued elsewhere (12 s): the protocol's 10 s
/// `REQUEST_TIMEOUT` (a 2 MiB answer needs ~8.4 s at 2 Mbit/s) plus [`REQUEST_TIMEOUT_GRACE`], a
/// strictly longer guard than the transport's, so the two never race.
pub const DEFAULT_REQUEST_TIMEOUT: Duration =
    Duration::from_secs(REQUEST_TIMEOUT.as_secs() + REQUEST_TIMEOUT_GRACE.as_secs());

/// Default staged bytes of verified chunks held back so that their writes share table files:
/// 64 MiB. Each table file a write makes costs about a millisecond of CPU beyond its bytes
/// (creating it, its sync, its manifest entry), and neighbouring chunks share files only when
/// they are written together (`Holding` in `holding.rs`, docs/sync.md "Writing chunks"). Held
/// chunks are lost to a crash (a resumed sync asks for them again) and they take memory: about
/// twice their staged bytes, with their accounts kept for the checks that follow the write.
pub const DEFAULT_HOLD_BYTES: usize = 64 << 20;

/// Default bytes of verified codes that make one table file: 64 MiB, what a memtable flush of
/// them made before (as many files, so no more compaction). Written as a sorted file past the
/// page cache, their memtable's flush no longer copies them through it (at 4M accounts 2.0 s of
/// the client's CPU went there; docs/benchmarks.md). Codes are held until those below the
/// watermark fill a file, and at most twice this (docs/sync.md, "Persistence and restart").
pub const DEFAULT_CODE_FILE_BYTES: usize = 64 << 20;

/// Requests in flight per peer at most: the protocol's limit (16); more is a breach.
pub const MAX_IN_FLIGHT_PER_PEER: usize = MAX_IN_FLIGHT_REQUESTS;

/// Default number of verification failures of chunks read at the pivot head after which a server
/// is banned (3): one can be a race with its head moving, three are junk.
pub const DEFAULT_JUNK_BAN_THRESHOLD: u32 = 3;

/// Consecutive timeouts after which a peer is dropped from the sync (2): a silent peer costs a
/// timeout per request, so it must not keep getting work; one lost answer is forgiven (the first
/// timeout also halves the peer's capacity, so the second costs one request, not a window).
pub const MAX_CONSECUTIVE_TIMEOUTS: u32 = 2;

/// Consecutive empty answers after which a peer is dropped (8): servers at other heads may lack
/// a few items honestly, a peer that never has anything wastes round trips.
pub const MAX_CONSECUTIVE_EMPTIES: u32 = 8;

/// Rounds over all peers an item is asked for before it is parked (5).
pub const MAX_TASK_ROUNDS: u32 = 5;

/// How long an item nobody delivered in [`MAX_TASK_ROUNDS`] rounds waits before it is asked
/// again (10 s): the rest of the sync goes on meanwhile, and a peer that joins or reaches the
/// pivot may have it by then.
pub const PARK_INTERVAL: Duration = Duration::from_secs(10);

/// Times an item is parked before the sync gives up on it with `Unavailable` (6, about a minute
/// of asking): long enough for a transient gap, short enough that a sync that cannot finish
/// says so well within [`DEFAULT_STALL_TIMEOUT`].
pub const MAX_PARKS: u32 = 6;

/// Blocks a chunk's claimed `head_number` may lie outside the heads its server announced from
/// when it was asked until the answer is applied (2): a server announces its head after
/// applying the block, so an answer may come from one block later than the announcement we
/// hold. A claim further off is a lie, counted as junk.
pub const HEAD_CLAIM_SLACK: u64 = 2;

/// Chunks of a server at another head that failed verification (healed, no penalty) after
/// which it gets no more chunks while its announced head stays the same and another peer can
/// take them (4): an honest stale server costs a few heals, a liar claiming another head
/// cannot turn the whole sync into heal.
pub const MAX_STALE_HEALS: u32 = 4;

/// "Too large" claims a server may make that the units they split into belie (together less
/// than half the bytes asked for) before it gets no more chunks in a sync (4): the claim is not
/// provably a lie (an honest server out of time answers so too), but a server making it again
/// and again costs the sync splits and gives nothing.
pub const MAX_IMPLAUSIBLE_SPLITS: u32 = 4;

/// Peer slots a sync keeps (256): a new identity beyond it takes the slot of a dropped peer,
/// and is turned away when every slot is active or banned, so churning identities cannot grow
/// the sync's per-peer scans.
pub const MAX_SYNC_PEERS: usize = 256;

/// Bytes all requests in flight may ask for together (256 MiB, the sum of their `max_bytes`):
/// bounds the answers held in memory across every peer, whatever the peer count.
pub const MAX_IN_FLIGHT_BYTES: u64 = 256 * 1024 * 1024;

/// Times the final check may send the sync back for what it found missing (3) before the sync
/// fails: one pass repairs what hostile peers left; more means something keeps breaking it.
pub const MAX_FINAL_REPAIRS: u32 = 3;

/// Times a sync may re-pivot after a final check that scanned the flat state (3; see
/// `Syncer::catch_up`) before it records its head however far the trusted head has moved on:
/// a catch-up round scans again only where it is told to (`full_final_check`) or something in it
/// is unaccounted for, and a scan that falls behind every time must not keep the sync from ever
/// ending.
pub const MAX_CATCH_UPS: u32 = 3;

/// Default distance (64 blocks) the pivot source's head (the trusted feed's, else the head most
/// peers announce where peers may choose the pivot) may move past the pivot before the sync
/// re-pivots: well inside the 128 blocks for which servers keep replaced nodes, so heal requests
/// for the old pivot keep being answered until the move.
pub const DEFAULT_REPIVOT_DISTANCE: u64 = 64;

/// Default time a sync may go without any request it can send (2 min) before it fails with
/// `NoPeers`: every peer is gone, or none has the pivot's nodes. The daemon then waits for peers
/// and starts again from the progress record.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Codes asked per `GetCodes` until [`CODE_SIZE_SAMPLE`] codes have arrived, and the fewest
/// asked after (256): codes are 1–24 KiB, so 256 of them mostly fill a 2 MiB answer; a tail the
/// answer had no room for is asked again, at no cost but its hashes.
pub const CODES_PER_REQUEST: usize = 256;

/// Codes whose sizes are averaged before code batches are sized from them (64).
pub const CODE_SIZE_SAMPLE: u64 = 64;

/// Bytes of codes asked per `GetCodes` once their average size is known: the 2 MiB response
/// cap, so that one answer carries as many codes as fit (between [`CODES_PER_REQUEST`] and the
/// protocol's 1024). Smaller codes than 2 KiB on average make batches of 1024 (a 1M-account
/// synthetic state has 4.5 KiB codes: ~460 a request instead of 256).
pub const CODE_BATCH_BYTES: u64 = MAX_RESPONSE_BYTES;

/// The most codes asked per `GetCodes`: the protocol's limit (1024).
pub const MAX_CODES_PER_BATCH: usize = MAX_CODES_PER_REQUEST;

/// Default time a chunk unit waits in the queue for its rendezvous home before a peer with
/// none of its own left may take it (1 s). Within it a unit is left to its home, which takes it
/// at its next free slot (in the same dispatch if it has room), not to whichever peer comes
/// first; past it a slow, stalled or overloaded home holds it back no longer (a stalled home's
/// requests would otherwise keep it until their 12 s timeout). A unit taken from its home is
/// asked elsewhere, so another client asking its home misses that server's chunk cache
/// (docs/benchmarks.md, issue 15 goal 6).
pub const DEFAULT_STEAL_AFTER: Duration = Duration::from_secs(1);

/// Most queued items looked at to find one a peer has not tried (4096): bounds a dispatch's
/// cost when many items wait for other peers.
pub const QUEUE_SCAN_LIMIT: usize = 4096;

/// How often a sync with nothing to send looks again at its peers' heads (500 ms): a peer may
/// reach the pivot, and only then be asked for its nodes.
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(500);

/// How long a peer whose network session refused a request as busy gets no new one, unless one
/// of its requests finishes first (250 ms): its slots are held by requests that timed out and
/// wait for their late answers, which a busy honest server sends within seconds.
pub const BUSY_REST: Duration = Duration::from_millis(250);

/// How long a peer dropped for silence rests before it is asked again (30 s): a stalled honest
/// server (a pause, a congested link) comes back; a dead one costs one timeout per rest.
pub const SILENT_REVIVE_AFTER: Duration = Duration::from_secs(30);

/// Shortest interval between two publications of the counters on the progress channel (250 ms).
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

/// Bound of the channel of peers that join a running sync (256, [`MAX_SYNC_PEERS`]): the watcher
/// of [`crate::watch_network_peers`] hands each connected peer over at most once per session;
/// while the channel is full the peers due wait in the watcher, one entry per connected peer
/// (its newest session), so a burst of joins is held back, never dropped, and a sync that does
/// not read the channel cannot make anything grow with reconnects.
pub const NEW_PEERS_CHANNEL_BOUND: usize = MAX_SYNC_PEERS;

/// Pause before [`crate::run_until_done`] starts a sync again that stopped for a transient
/// reason (5 s): peers come back, and the new sync resumes from the progress record.
pub const SYNC_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// How often [`crate::run_until_done`] looks for a first peer to sync from (500 ms).
pub const PEER_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// How long [`crate::run_until_done`] waits for its first peer before it says so in the log
/// again (30 s; it keeps waiting).
pub const PEER_WAIT_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Default interval of the progress log line (8 s, as go-ethereum's snap sync logs).
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(8);

/// How a state is downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Chunks of leaves verified against a skeleton, healed where they differ (the default).
    #[default]
    Leaf,
    /// Every trie node from the root down, as fast sync did (the benchmark's baseline).
    HealOnly,
}

/// Settings of a sync. Every field's default is the constant named in its doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// The pivot, when a trusted source (the neighbour EL, a checkpoint) gives one; default
    /// `None`: the pivot feed's head, else the head most peers announce if
    /// [`Self::peer_pivot`] allows it.
    pub pivot: Option<ChainHead>,
    /// Whether the pivot may be the head most peers announce, and move with it, when no
    /// trusted pivot is given; default `true`. Peer heads are unauthenticated: Sybil peers can
    /// choose such a pivot, so the daemon allows it only on a dev chain or by explicit opt-in.
    pub peer_pivot: bool,
    /// Leaf sync or heal-only; default [`SyncMode::Leaf`].
    pub mode: SyncMode,
    /// Target chunk size; default [`DEFAULT_CHUNK_TARGET_BYTES`].
    pub chunk_target_bytes: u64,
    /// `max_bytes` of every chunk request (a larger chunk is split); default
    /// [`CHUNK_MAX_BYTES`].
    pub chunk_max_bytes: u64,
    /// Estimated bytes of the units batched into one chunk request, at most
    /// [`Self::chunk_max_bytes`] (0: one unit a request); default [`CHUNK_BATCH_BYTES`].
    pub chunk_batch_bytes: u64,
    /// Per-request timeout, a guard longer than the transport's (see
    /// [`REQUEST_TIMEOUT_GRACE`]); default [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// Junk chunks at the pivot head before a ban; default [`DEFAULT_JUNK_BAN_THRESHOLD`].
    pub junk_ban_threshold: u32,
    /// Blocks the pivot source's head may pass the pivot before a re-pivot: the trusted feed's
    /// head (`Syncer::with_pivot_feed`) when there is one, else, only where [`Self::peer_pivot`]
    /// allows it, the head most peers announce. A configured [`Self::pivot`] never moves. Also
    /// how far past a progress record's pivot the feed's head may be for the record to be
    /// resumed. Default [`DEFAULT_REPIVOT_DISTANCE`].
    pub repivot_distance: u64,
    /// Progress log interval; default [`DEFAULT_PROGRESS_INTERVAL`].
    pub progress_interval: Duration,
    /// Longest time without a request to send before the sync fails; default
    /// [`DEFAULT_STALL_TIMEOUT`].
    pub stall_timeout: Duration,
    /// How long a chunk unit waits in the queue for its rendezvous home before another peer
    /// with nothing of its own to do may take it; default [`DEFAULT_STEAL_AFTER`].
    pub steal_after: Duration,
    /// Staged bytes of verified chunks held back so that their writes share table files (0:
    /// each answer's are written as it comes); whatever is held is also written at every
    /// progress interval. Default [`DEFAULT_HOLD_BYTES`].
    pub hold_bytes: usize,
    /// Bytes of verified codes written as one table file, ranges disjoint where the codes'
    /// order allows; at most twice this is held. Default [`DEFAULT_CODE_FILE_BYTES`].
    pub code_file_bytes: usize,
    /// Whether every sync ends by scanning and hashing the whole flat state, even a clean run
    /// whose imports already prove it (docs/sync.md step 8); default `false`. The scan takes
    /// seconds per million accounts; it is the net under the syncer's own bugs and writes
    /// behind its back.
    pub full_final_check: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            pivot: None,
            peer_pivot: true,
            mode: SyncMode::Leaf,
            chunk_target_bytes: DEFAULT_CHUNK_TARGET_BYTES,
            chunk_max_bytes: CHUNK_MAX_BYTES,
            chunk_batch_bytes: CHUNK_BATCH_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            junk_ban_threshold: DEFAULT_JUNK_BAN_THRESHOLD,
            repivot_distance: DEFAULT_REPIVOT_DISTANCE,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            steal_after: DEFAULT_STEAL_AFTER,
            hold_bytes: DEFAULT_HOLD_BYTES,
            code_file_bytes: DEFAULT_CODE_FILE_BYTES,
            full_final_check: false,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The protocol document states the slack a client allows a piece's head claim, which a
    /// server must stay within (docs/leaf-protocol.md, "Piece semantics").
    #[test]
    fn the_head_claim_slack_matches_the_spec_document() {
        let spec = include_str!("../../../docs/leaf-protocol.md");
        let stated = format!("`HEAD_CLAIM_SLACK = {}`", super::HEAD_CLAIM_SLACK);
        assert!(spec.contains(&stated), "docs/leaf-protocol.md does not state {stated}");
    }
}
