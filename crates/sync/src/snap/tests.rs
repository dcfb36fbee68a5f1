use alloy_primitives::{B256, Bytes, U256, keccak256};
use alloy_rlp::Encodable;
use leafsync_p2p::leaf::{
    ChunkContent, GetStorageChunk, StoragePiece, StoragePrefix, StorageSlot, WirePath,
    protocol::MAX_IN_FLIGHT_REQUESTS,
};

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use leafsync_p2p::{
    PeerId, PenaltyClass,
    leaf::ChainHead,
    requests::{LeafRequest, LeafResponse, RequestError},
    snap::{
        ByteCodes, GetByteCodes, GetStorageRanges, SnapMessage, StorageData, StorageRanges,
        protocol::{SOFT_RESPONSE_LIMIT, STATE_LOOKUP_SLACK_PERCENT},
    },
};

use super::{
    Fault, INITIAL_RESPONSE_BYTES, MAX_ROUNDS_CAP, MIN_RESPONSE_BYTES, OVERSHOOT_ALLOWANCE,
    Outstanding, Pipe, SnapPeer, SnapTransport, density_estimate,
    items::match_by_hash,
    max_rounds,
    ranges::{KEPT_PAST_MAX, READS_AT_ONCE, SIZING_SHARE, prefix_bounds},
    storages::sized_from,
};
use crate::peer::{PeerFuture, SyncPeer};

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

/// Answers every request with what `answer` makes of it and records its penalties.
struct Answering {
    answer: fn(SnapMessage) -> SnapMessage,
    penalties: Mutex<Vec<PenaltyClass>>,
}

impl SnapTransport for Answering {
    fn id(&self) -> PeerId {
        PeerId::repeat_byte(7)
    }

    fn head(&self) -> ChainHead {
        ChainHead::default()
    }

    fn request(&self, request: SnapMessage) -> PeerFuture<SnapMessage> {
        let answer = (self.answer)(request);
        Box::pin(async move { Ok(answer) })
    }

    fn penalise(&self, class: PenaltyClass) {
        self.penalties.lock().unwrap().push(class);
    }
}

/// The penalties a peer answering `request` with `answer` gets; the answer is still used.
async fn penalties_for(
    request: SnapMessage,
    answer: fn(SnapMessage) -> SnapMessage,
) -> Vec<PenaltyClass> {
    let transport = Arc::new(Answering { answer, penalties: Mutex::new(Vec::new()) });
    let peer = SnapPeer::new(Arc::clone(&transport) as Arc<dyn SnapTransport>);
    let answer = peer.inner.ask(request).await;
    assert!(answer.is_ok(), "the answer is still used");
    transport.penalties.lock().unwrap().clone()
}

/// One code of `len` bytes.
fn one_code(len: usize) -> SnapMessage {
    SnapMessage::ByteCodes(ByteCodes { request_id: 0, codes: vec![Bytes::from(vec![0x60; len])] })
}

#[tokio::test]
async fn answers_far_over_their_budget_cost_the_peer() {
    const ASKED: u64 = 64 * 1024;
    let request = || {
        SnapMessage::GetByteCodes(GetByteCodes {
            request_id: 0,
            hashes: vec![B256::ZERO],
            bytes: ASKED,
        })
    };
    // One item past the budget, as servers stop: no penalty.
    assert!(penalties_for(request(), |_| one_code(ASKED as usize + 24 * 1024)).await.is_empty());
    // Far past it: a mid penalty.
    let over = |_| one_code((ASKED + OVERSHOOT_ALLOWANCE) as usize + 1);
    assert_eq!(penalties_for(request(), over).await, vec![PenaltyClass::Mid]);
}

/// The largest storage answer geth may send for `request`'s budget, `times` over: one account's
/// slots of two-byte values (the most encoding per counted byte) up to geth's hard limit (the
/// budget plus [`STATE_LOOKUP_SLACK_PERCENT`], counting a slot as its key and value bytes), and
/// two full proof paths.
fn geth_storage(request: SnapMessage, times: u64) -> SnapMessage {
    let SnapMessage::GetStorageRanges(request) = request else { panic!("storage only") };
    let hard_limit = request.bytes + request.bytes * STATE_LOOKUP_SLACK_PERCENT / 100;
    let slots = (0..hard_limit.div_ceil(32 + 2) * times)
        .map(|i| StorageData {
            hash: keccak256(i.to_be_bytes()),
            body: Bytes::from(vec![0x81, 0x80]),
        })
        .collect();
    let proof = vec![Bytes::from(vec![0xf9; 532]); 34];
    SnapMessage::StorageRanges(StorageRanges { request_id: 0, slots: vec![slots], proof })
}

#[tokio::test]
async fn a_storage_answer_as_large_as_geths_largest_costs_nothing() {
    let request = || {
        SnapMessage::GetStorageRanges(GetStorageRanges {
            request_id: 0,
            root: B256::ZERO,
            accounts: vec![B256::ZERO],
            origin: Bytes::new(),
            limit: Bytes::new(),
            bytes: SOFT_RESPONSE_LIMIT,
        })
    };
    // geth's largest answer for a 2 MiB budget (~2.4 MiB encoded): no penalty.
    assert!(penalties_for(request(), |r| geth_storage(r, 1)).await.is_empty());
    // Twice that: a mid penalty.
    assert_eq!(penalties_for(request(), |r| geth_storage(r, 2)).await, vec![PenaltyClass::Mid]);
}

/// When the answer for the chunk under nibble `n` comes.
#[derive(Clone, Copy)]
enum Delay {
    /// After the same time for every chunk.
    Same(Duration),
    /// After `(16 - n) ×` the time: later chunks first.
    Falling(Duration),
    /// After `(1 + n) ×` the time: later chunks last.
    Rising(Duration),
}

/// Serves the storage ranges of one account whose slots are `per_nibble` slots under each first
/// nibble of the hashed key (33 bytes each), each answer after its [`Delay`], cut after the slot
/// that crosses its byte budget. Counts a request outstanding until
/// its answer's time, whether or not the asker still waits for it (as the network's request
/// tracker does), and refuses one past the network's cap as the network does
/// ([`RequestError::TooManyInFlight`]).
struct SlowStorage {
    per_nibble: usize,
    delay: Delay,
    /// When each request outstanding is answered, and the most outstanding at once so far.
    outstanding: Mutex<(Vec<tokio::time::Instant>, usize)>,
    refused: Mutex<usize>,
    /// The slot bytes of each answer sent.
    answers: Mutex<Vec<u64>>,
    /// Ranges from this first nibble on are answered "no state" (no list, no proof), as by a
    /// server whose root fell out of its window.
    no_state_from: Option<u8>,
}

impl SlowStorage {
    fn new(per_nibble: usize, delay: Delay) -> Arc<Self> {
        Self::lacking(per_nibble, delay, None)
    }

    fn lacking(per_nibble: usize, delay: Delay, no_state_from: Option<u8>) -> Arc<Self> {
        Arc::new(Self {
            per_nibble,
            delay,
            outstanding: Mutex::new((Vec::new(), 0)),
            refused: Mutex::new(0),
            answers: Mutex::new(Vec::new()),
            no_state_from,
        })
    }

    /// The account's slots, in key order: under each nibble `per_nibble` keys.
    fn slots(&self) -> Vec<StorageData> {
        (0..16u8)
            .flat_map(|nibble| {
                (0..self.per_nibble).map(move |i| {
                    let mut key = [0u8; 32];
                    // Spread over the nibble's keys, as hashed keys are.
                    key[0] = nibble << 4 | (i * 16 / self.per_nibble) as u8;
                    key[1..3].copy_from_slice(&(i as u16).to_be_bytes());
                    StorageData { hash: B256::from(key), body: Bytes::from(vec![0x01]) }
                })
            })
            .collect()
    }

    /// The slots under nibble `nibble`, as a chunk's items.
    fn under(&self, nibble: u8) -> Vec<StorageSlot> {
        let slots = self.slots().into_iter().filter(|s| s.hash[0] >> 4 == nibble);
        slots.map(|s| StorageSlot { hashed_slot: s.hash, value: U256::from(1) }).collect()
    }

    fn refused(&self) -> usize {
        *self.refused.lock().unwrap()
    }

    fn most_at_once(&self) -> usize {
        self.outstanding.lock().unwrap().1
    }
}

impl SnapTransport for SlowStorage {
    fn id(&self) -> PeerId {
        PeerId::repeat_byte(9)
    }

    fn head(&self) -> ChainHead {
        ChainHead::default()
    }

    fn request(&self, request: SnapMessage) -> PeerFuture<SnapMessage> {
        let SnapMessage::GetStorageRanges(request) = request else {
            return Box::pin(async { Err(RequestError::NotSupported) });
        };
        let origin = B256::left_padding_from(&request.origin);
        let limit = B256::left_padding_from(&request.limit);
        let nibble = u32::from(origin[0] >> 4);
        let delay = match self.delay {
            Delay::Same(d) => d,
            Delay::Falling(d) => d * (16 - nibble),
            Delay::Rising(d) => d * (1 + nibble),
        };
        let now = tokio::time::Instant::now();
        {
            let mut outstanding = self.outstanding.lock().unwrap();
            outstanding.0.retain(|answered| *answered > now);
            if outstanding.0.len() == MAX_IN_FLIGHT_REQUESTS {
                *self.refused.lock().unwrap() += 1;
                return Box::pin(async { Err(RequestError::TooManyInFlight) });
            }
            outstanding.0.push(now + delay);
            outstanding.1 = outstanding.1.max(outstanding.0.len());
        }
        // As servers do: up to the slot that crosses the budget, with a proof if cut.
        let (mut list, mut bytes) = (Vec::new(), 0u64);
        let mut within = self.slots().into_iter().filter(|s| s.hash >= origin && s.hash <= limit);
        for slot in within.by_ref() {
            bytes += 32 + slot.body.len() as u64;
            list.push(slot);
            if bytes >= request.bytes {
                break;
            }
        }
        let cut = within.next().is_some();
        let proof = if cut { vec![Bytes::from_static(&[0xc0])] } else { Vec::new() };
        self.answers.lock().unwrap().push(bytes);
        let slots = match self.no_state_from {
            Some(from) if origin[0] >> 4 >= from => Vec::new(),
            _ => vec![list],
        };
        let proof = if slots.is_empty() { Vec::new() } else { proof };
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(SnapMessage::StorageRanges(StorageRanges { request_id: 0, slots, proof }))
        })
    }

    fn penalise(&self, _class: PenaltyClass) {}
}

/// A `GetStorageChunk` of the account's sixteen first-nibble chunks.
fn sixteen_chunks(max_bytes: u64) -> LeafRequest {
    let account = B256::repeat_byte(1);
    let chunks = (0..16u8)
        .map(|n| StoragePrefix { account, prefix: WirePath::from_nibbles(&[n]).unwrap() })
        .collect();
    LeafRequest::GetStorageChunk(GetStorageChunk { chunks, max_bytes })
}

/// The slot lists of a `StorageChunk` answer, `None` for "too large".
fn piece_slots(answer: LeafResponse) -> Vec<Option<Vec<StorageSlot>>> {
    let LeafResponse::StorageChunk(chunk) = answer else { panic!("{answer:?}") };
    let content = |piece: StoragePiece| match piece.content {
        ChunkContent::Items(slots) => Some(slots),
        ChunkContent::TooLarge => None,
    };
    chunk.pieces.into_iter().map(content).collect()
}

/// The chunks of one request are read side by side: sixteen storage chunks, each a snap/1
/// round trip of 100 ms, take four round trips ([`READS_AT_ONCE`] at a time), not sixteen; five
/// such requests at once keep within the network's cap of requests in flight (20 would be
/// refused past 16), and every piece is the right one, in order.
#[tokio::test(start_paused = true)]
async fn the_chunks_of_a_request_are_read_side_by_side_within_the_cap() {
    let server = SlowStorage::new(4, Delay::Same(Duration::from_millis(100)));
    let peer = SnapPeer::new(Arc::clone(&server) as Arc<dyn SnapTransport>);
    let pivot = ChainHead::default();
    let started = tokio::time::Instant::now();
    let answer = peer.request_at(&pivot, sixteen_chunks(2 * 1024 * 1024)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(100) * (16 / READS_AT_ONCE) as u32);
    let expected: Vec<_> = (0..16).map(|n| Some(server.under(n))).collect();
    assert_eq!(piece_slots(answer), expected);

    let asks = (0..5).map(|_| peer.request_at(&pivot, sixteen_chunks(2 * 1024 * 1024)));
    let answers = futures::future::join_all(asks).await;
    assert_eq!(server.refused(), 0, "no request past the cap");
    assert_eq!(server.most_at_once(), MAX_IN_FLIGHT_REQUESTS);
    for answer in answers {
        assert_eq!(piece_slots(answer.unwrap()), expected);
    }
}

/// A server of four slots under each nibble answering later chunks first, its peer, and the
/// encoded size of one chunk's piece.
fn later_reads_first() -> (Arc<SlowStorage>, SnapPeer, u64) {
    let server = SlowStorage::new(4, Delay::Falling(Duration::from_millis(10)));
    let peer = SnapPeer::new(Arc::clone(&server) as Arc<dyn SnapTransport>);
    let piece_bytes = StoragePiece { head_number: 0, content: ChunkContent::Items(server.under(0)) }
        .length() as u64;
    (server, peer, piece_bytes)
}

/// Read side by side, the pieces are still in request order, though the later reads finish
/// first. A read starts as one before it ends while the pieces so far are short of
/// `max_bytes`; once they reach it none does, and the reads running are kept until the pieces
/// reach [`KEPT_PAST_MAX`] times `max_bytes`: with three pieces to reach it, the four started at
/// first and one after each of the first two (six reads), of which five are kept (five pieces
/// pass twice `max_bytes`).
#[tokio::test(start_paused = true)]
async fn pieces_read_side_by_side_stop_in_order_at_max_bytes() {
    let (server, peer, piece_bytes) = later_reads_first();
    let answer = peer.request_at(&ChainHead::default(), sixteen_chunks(2 * piece_bytes + 1));
    let started = READS_AT_ONCE + 2;
    let expected: Vec<_> = (0..started as u8 - 1).map(|n| Some(server.under(n))).collect();
    assert_eq!(piece_slots(answer.await.unwrap()), expected);
    assert_eq!(server.answers.lock().unwrap().len(), started, "none started after");
}

/// However a peer times its answers, an answer holds at most [`KEPT_PAST_MAX`] times
/// `max_bytes` and one read more: with one piece reaching `max_bytes` and the first read
/// answered last, two pieces (all four reads running were kept before: four times `max_bytes`).
#[tokio::test(start_paused = true)]
async fn an_answer_keeps_at_most_twice_max_bytes_and_one_read() {
    let (server, peer, piece_bytes) = later_reads_first();
    let answer = peer.request_at(&ChainHead::default(), sixteen_chunks(piece_bytes));
    let pieces = piece_slots(answer.await.unwrap());
    assert!(pieces.len() as u64 <= KEPT_PAST_MAX + 1, "{} pieces", pieces.len());
    assert_eq!(pieces, (0..2).map(|n| Some(server.under(n))).collect::<Vec<_>>());
}

/// A server whose root falls out of its window in the middle of a request: the pieces read
/// before the first read that finds no state are answered (the syncer judges them as any
/// others, so good ones are kept and a lie in them costs the peer), and the peer is marked as
/// without state for the root. A request whose first read finds no state is the no-state answer
/// itself: empty.
#[tokio::test(start_paused = true)]
async fn pieces_before_a_no_state_read_are_answered_and_the_peer_marked() {
    let pivot = ChainHead::default();
    let ask = |from: u8| {
        let server = SlowStorage::lacking(4, Delay::Same(Duration::from_millis(10)), Some(from));
        let peer = SnapPeer::new(Arc::clone(&server) as Arc<dyn SnapTransport>);
        async move {
            let answer = peer.request_at(&pivot, sixteen_chunks(2 * 1024 * 1024)).await;
            (server, peer.lacks_state(&pivot.state_root), piece_slots(answer.unwrap()))
        }
    };
    let (server, lacks, pieces) = ask(5).await;
    assert_eq!(pieces, (0..5).map(|n| Some(server.under(n))).collect::<Vec<_>>());
    assert!(lacks, "the peer is marked");
    let (_, lacks, pieces) = ask(0).await;
    assert_eq!(pieces, Vec::new());
    assert!(lacks);
}

/// A request dropped with reads running (the syncer's timeout, a re-pivot) leaves their
/// snap/1 requests outstanding at the network until answered, and their permits with them:
/// the next requests' reads wait for those answers rather than be refused past the network's
/// cap.
#[tokio::test(start_paused = true)]
async fn a_dropped_read_keeps_its_place_until_answered() {
    let server = SlowStorage::new(4, Delay::Rising(Duration::from_millis(100)));
    let peer = SnapPeer::new(Arc::clone(&server) as Arc<dyn SnapTransport>);
    let pivot = ChainHead::default();
    let first = peer.request_at(&pivot, sixteen_chunks(2 * 1024 * 1024));
    assert!(tokio::time::timeout(Duration::from_millis(150), first).await.is_err());
    // Three requests are still outstanding: of the next sixteen reads, three wait for them.
    let asks = (0..4).map(|_| peer.request_at(&pivot, sixteen_chunks(2 * 1024 * 1024)));
    let answers = futures::future::join_all(asks).await;
    assert_eq!(server.refused(), 0, "no request past the cap");
    for answer in answers {
        let all: Vec<_> = (0..16).map(|n| Some(server.under(n))).collect();
        assert_eq!(piece_slots(answer.unwrap()), all);
    }
}

/// A storage cut in the answer for a chunk's storages is marked large with the slot count its
/// beginning makes over the key space, as a leaf/1 server sizes the mark; no beginning is an
/// unknown size (0).
#[test]
fn a_cut_storage_is_sized_from_its_beginning() {
    // 100 slots over the first quarter of the key space: about 400 in all.
    let beginning: Vec<StorageData> = (0..100u8)
        .map(|i| {
            let mut key = [0u8; 32];
            key[0] = (u32::from(i) * 0x40 / 100) as u8;
            key[1] = i;
            StorageData { hash: B256::from(key), body: Bytes::from(vec![0x01]) }
        })
        .collect();
    let estimate = sized_from(&beginning);
    assert!((395..=410).contains(&estimate), "{estimate}");
    assert_eq!(sized_from(&[]), 0);
}

/// A storage far larger than `max_bytes` shows so in one round of an eighth of it, where it was
/// read up to `max_bytes` before being called "too large"; one that fits is read whole, its
/// first round an eighth and its second the rest.
#[tokio::test(start_paused = true)]
async fn a_far_too_large_storage_shows_so_in_one_small_round() {
    const MAX: u64 = 1024 * 1024;
    let whole = |server: &Arc<SlowStorage>| {
        let peer = SnapPeer::new(Arc::clone(server) as Arc<dyn SnapTransport>);
        let chunks =
            vec![StoragePrefix { account: B256::repeat_byte(1), prefix: WirePath::root() }];
        let request = LeafRequest::GetStorageChunk(GetStorageChunk { chunks, max_bytes: MAX });
        async move { peer.request_at(&ChainHead::default(), request).await.unwrap() }
    };
    // 64,000 slots, ~2.1 MB: twice the chunk's max_bytes.
    let large = SlowStorage::new(4000, Delay::Same(Duration::from_millis(50)));
    assert_eq!(piece_slots(whole(&large).await), vec![None]);
    let answers = large.answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(answers[0] <= MAX / SIZING_SHARE + 33, "{answers:?}");

    // 24,000 slots, ~790 KB: within it.
    let fits = SlowStorage::new(1500, Delay::Same(Duration::from_millis(50)));
    let all: Vec<StorageSlot> = (0..16).flat_map(|n| fits.under(n)).collect();
    assert_eq!(piece_slots(whole(&fits).await), vec![Some(all)]);
    assert_eq!(fits.answers.lock().unwrap().len(), 2);
}
