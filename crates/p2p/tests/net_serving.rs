//! Review finding H3 (p2p part): serving is capped globally, over all sessions, and a closed
//! session's queued requests never reach the handler.

mod support;

use alloy_primitives::B256;
use leafsync_p2p::{
    EncodedResponse, PeerId,
    leaf::protocol::MAX_IN_FLIGHT_REQUESTS,
    peers::{MAX_CONCURRENT_HANDLER_CALLS_PER_PEER, NetworkEvent, RequestHandler},
    requests::LeafRequest,
};
use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use support::*;

/// A handler whose every call takes [`CALL_TIME`] on its blocking thread, counting calls and how
/// many run at once.
#[derive(Default)]
struct SlowHandler {
    calls: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

const CALL_TIME: Duration = Duration::from_millis(200);

impl RequestHandler for SlowHandler {
    fn handle(&self, _peer: PeerId, request: &LeafRequest) -> EncodedResponse {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(CALL_TIME);
        self.running.fetch_sub(1, Ordering::SeqCst);
        request.empty_response().encoded()
    }
}

/// The global cap of this test: below what the sessions would run under the per-peer cap alone.
const GLOBAL_CAP: usize = 3;

/// Sessions opened at once.
const SESSIONS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_calls_are_capped_globally_and_stop_with_their_session() {
    let handler = Arc::new(SlowHandler::default());
    let (mut cfg, head) = config(handler.clone());
    cfg.max_concurrent_handler_calls = GLOBAL_CAP;
    let mut node = start(cfg, head).await;
    const { assert!(SESSIONS * MAX_CONCURRENT_HANDLER_CALLS_PER_PEER > GLOBAL_CAP) };

    let mut peers = Vec::new();
    for _ in 0..SESSIONS {
        let (mut p2p, id) = connected_peer(&mut node).await;
        for request_id in 0..MAX_IN_FLIGHT_REQUESTS as u64 {
            send_leaf(
                &mut p2p,
                get_codes_message(request_id, &[B256::repeat_byte(request_id as u8)]),
            )
            .await;
        }
        peers.push((p2p, id));
    }
    // Some calls run, most wait for a permit.
    let deadline = tokio::time::Instant::now() + WAIT;
    while handler.calls.load(Ordering::SeqCst) < GLOBAL_CAP {
        assert!(tokio::time::Instant::now() < deadline, "no handler call started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Every session closes, with most of its requests still queued.
    let ids: HashSet<PeerId> = peers.iter().map(|(_, id)| *id).collect();
    drop(peers);
    let mut open = ids.clone();
    while !open.is_empty() {
        let gone = wait_event(&mut node.events, |e| match e {
            NetworkEvent::PeerDisconnected { peer, .. } => Some(*peer),
            _ => None,
        })
        .await;
        open.remove(&gone);
    }
    // Calls that had started finish; nothing new starts afterwards.
    let deadline = tokio::time::Instant::now() + WAIT;
    while handler.running.load(Ordering::SeqCst) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "handler calls did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let settled = handler.calls.load(Ordering::SeqCst);
    tokio::time::sleep(CALL_TIME * 5).await;
    let calls = handler.calls.load(Ordering::SeqCst);
    let max_running = handler.max_running.load(Ordering::SeqCst);
    eprintln!("{calls} handler calls of {} requests, at most {max_running} at once", SESSIONS * 16);
    assert_eq!(calls, settled, "a closed session's request reached the handler");
    assert!(max_running <= GLOBAL_CAP, "{max_running} calls ran at once");
    assert!(calls < SESSIONS * MAX_IN_FLIGHT_REQUESTS / 2, "{calls} calls: queued ones ran");
    node.handle.shutdown().await;
}
