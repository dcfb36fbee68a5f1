use alloy_primitives::{B256, Bytes, keccak256};
use leafsync_p2p::leaf::WirePath;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use leafsync_p2p::{
    PeerId, PenaltyClass,
    leaf::ChainHead,
    snap::{ByteCodes, GetByteCodes, SnapMessage, protocol::SOFT_RESPONSE_LIMIT},
};

use super::{
    Fault, INITIAL_RESPONSE_BYTES, MAX_ROUNDS_CAP, MIN_RESPONSE_BYTES, OVERSHOOT_ALLOWANCE,
    Outstanding, Pipe, SnapPeer, SnapTransport, density_estimate, items::match_by_hash, max_rounds,
    ranges::prefix_bounds,
};
use crate::peer::PeerFuture;

#[test]
fn prefix_bounds_pad_with_zero_and_f_nibbles() {
    let (low, high) = prefix_bounds(&WirePath::from_nibbles(&[0xa, 0xb, 0xc]).unwrap());
    assert_eq!(&low.0[..2], &[0xab, 0xc0]);
    assert!(low.0[2..].iter().all(|b| *b == 0));
    assert_eq!(&high.0[..2], &[0xab, 0xcf]);
    assert!(high.0[2..].iter().all(|b| *b == 0xff));
    assert_eq!(prefix_bounds(&WirePath::root()), (B256::ZERO, B256::repeat_byte(0xff)));
}

#[test]
fn rounds_are_bounded_by_the_smallest_budget() {
    assert_eq!(max_rounds(2 * 1024 * 1024), 32 + 3);
    assert_eq!(max_rounds(1), 4);
    assert_eq!(max_rounds(u64::MAX), MAX_ROUNDS_CAP);
}

#[test]
fn answers_are_matched_to_requests_by_hash() {
    let items: Vec<Bytes> = (0u8..4).map(|i| Bytes::from(vec![0xc1, i])).collect();
    let hashes: Vec<B256> = items.iter().map(keccak256).collect();
    // The second left out, an empty entry before the fourth.
    let answer = vec![items[0].clone(), items[2].clone(), Bytes::new(), items[3].clone()];
    let got = match_by_hash(&hashes, answer).unwrap();
    assert_eq!(got, vec![items[0].clone(), Bytes::new(), items[2].clone(), items[3].clone()]);
    // Out of request order, unrequested, or too many: refused.
    let swapped = vec![items[1].clone(), items[0].clone()];
    assert!(matches!(match_by_hash(&hashes, swapped), Err(Fault::Malformed(_))));
    let stranger = vec![Bytes::from(vec![0xc0])];
    assert!(matches!(match_by_hash(&hashes, stranger), Err(Fault::Malformed(_))));
    assert!(matches!(match_by_hash(&hashes[..1], items), Err(Fault::Malformed(_))));
}

#[test]
fn density_estimate_scales_by_the_key_span() {
    let mut quarter = [0u8; 32];
    quarter[0] = 0x40;
    assert_eq!(density_estimate(1000, B256::from(quarter)), 4000);
    assert_eq!(density_estimate(10, B256::repeat_byte(0xff)), 10);
}

/// Sixteen 128 KiB answers behind a 50 ms, 100 Mbit/s link: each one's own bytes over its own
/// round trip is 0.6–2.4 MB/s (the answers queue behind each other), the pipe delivers
/// ~9.6 MB/s. The budget follows the pipe, up to geth's soft limit; a request that then times
/// out brings it down, and one the syncer drops is not counted against the peer.
#[tokio::test(start_paused = true)]
async fn the_budget_follows_the_pipe_not_each_answer() {
    const ANSWER: u64 = 128 * 1024;
    let pipe = Mutex::new(Pipe::default());
    let budget = || pipe.lock().unwrap().budget();
    assert_eq!(budget(), INITIAL_RESPONSE_BYTES);
    let outstanding: Vec<_> = (0..16).map(|_| Outstanding::start(&pipe)).collect();
    tokio::time::advance(Duration::from_millis(50)).await;
    for request in outstanding {
        tokio::time::advance(Duration::from_micros(10_500)).await;
        request.finish(Some(ANSWER));
    }
    assert_eq!(pipe.lock().unwrap().in_flight, 0);
    assert_eq!(budget(), SOFT_RESPONSE_LIMIT);

    let dropped = Outstanding::start(&pipe);
    tokio::time::advance(Duration::from_secs(5)).await;
    drop(dropped);
    assert_eq!(pipe.lock().unwrap().in_flight, 0);
    assert_eq!(budget(), SOFT_RESPONSE_LIMIT, "a dropped request is not the peer's fault");

    for _ in 0..3 {
        let stalled = Outstanding::start(&pipe);
        tokio::time::advance(Duration::from_secs(10)).await;
        stalled.finish(None);
    }
    assert_eq!(budget(), MIN_RESPONSE_BYTES, "timeouts shrink the budget");
}

/// Answers every request with one code of `code_len` bytes and records its penalties.
struct OneCode {
    code_len: usize,
    penalties: Mutex<Vec<PenaltyClass>>,
}

impl SnapTransport for OneCode {
    fn id(&self) -> PeerId {
        PeerId::repeat_byte(7)
    }

    fn head(&self) -> ChainHead {
        ChainHead::default()
    }

    fn request(&self, _request: SnapMessage) -> PeerFuture<SnapMessage> {
        let codes = vec![Bytes::from(vec![0x60; self.code_len])];
        Box::pin(async move { Ok(SnapMessage::ByteCodes(ByteCodes { request_id: 0, codes })) })
    }

    fn penalise(&self, class: PenaltyClass) {
        self.penalties.lock().unwrap().push(class);
    }
}

#[tokio::test]
async fn answers_far_over_their_budget_cost_the_peer() {
    const ASKED: u64 = 64 * 1024;
    let ask = |code_len: usize| async move {
        let transport = Arc::new(OneCode { code_len, penalties: Mutex::new(Vec::new()) });
        let peer = SnapPeer::new(Arc::clone(&transport) as Arc<dyn SnapTransport>);
        let request = GetByteCodes { request_id: 0, hashes: vec![B256::ZERO], bytes: ASKED };
        let answer = peer.inner.ask(SnapMessage::GetByteCodes(request)).await;
        assert!(matches!(answer, Ok(SnapMessage::ByteCodes(_))), "the answer is still used");
        transport.penalties.lock().unwrap().clone()
    };
    // One item past the budget, as servers stop: no penalty.
    assert!(ask(ASKED as usize + 24 * 1024).await.is_empty());
    // Far past it: a mid penalty.
    let over = (ASKED + OVERSHOOT_ALLOWANCE) as usize + 1;
    assert_eq!(ask(over).await, vec![PenaltyClass::Mid]);
}
