//! Whatever a snap/1 server answers, the `leaf/1` answer [`SnapPeer`] assembles from it keeps
//! each piece in its chunk's place, and every slot of a piece under that chunk's prefix, in
//! order and non-zero; or the request fails. The syncer's hash checks judge the contents after
//! that, so this is what stands between a hostile server and a misplaced piece. The answers are
//! honest, made up (any keys, any values, with or without a proof) or failures, in any mix, to
//! requests of account chunks (with their storages inlined) and of whole storages and storage
//! chunks, read side by side.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use alloy_primitives::{B256, Bytes, U256, keccak256};
use alloy_rlp::Encodable;
use leafsync_p2p::{
    PeerId, PenaltyClass,
    leaf::{
        AccountStorage, ChainHead, ChunkContent, GetChunk, GetStorageChunk, StoragePrefix,
        StorageSlot, WirePath, protocol::MAX_INLINE_STORAGE_SLOTS,
    },
    requests::{LeafRequest, LeafResponse, RequestError},
    snap::{
        AccountData, AccountRange, GetAccountRange, GetStorageRanges, SlimAccount, SnapMessage,
        StorageData, StorageRanges,
    },
};
use proptest::prelude::*;

use super::{SnapPeer, SnapTransport, ranges::prefix_bounds};
use crate::peer::{PeerFuture, SyncPeer};

/// Accounts with storage on the server.
const ACCOUNTS: usize = 4;

/// Accounts without storage on the server, spread over the key space.
const PLAIN_ACCOUNTS: usize = 200;

/// What the server does with its next request (honest once the script runs out).
#[derive(Debug, Clone)]
enum Answer {
    /// Serves its storages, cut after the slot that crosses the budget (with a proof).
    Honest,
    /// Per account list, slots as (first key byte, second key byte, value byte), and whether a
    /// proof follows.
    MadeUp { lists: Vec<Vec<(u8, u8, u8)>>, proof: bool },
    /// Fails the request.
    Fails,
}

/// A snap/1 server of [`ACCOUNTS`] accounts with storage and [`PLAIN_ACCOUNTS`] without, that
/// answers as its script says.
struct Scripted {
    accounts: Vec<AccountData>,
    storages: Vec<Vec<StorageData>>,
    script: Mutex<VecDeque<Answer>>,
}

/// The hashed address of account `i`.
fn account(i: usize) -> B256 {
    B256::repeat_byte(i as u8 + 1)
}

impl Scripted {
    fn new(sizes: &[usize], script: Vec<Answer>) -> Arc<Self> {
        let storage = |(a, n): (usize, &usize)| -> Vec<StorageData> {
            (0..*n)
                .map(|j| {
                    let mut key = [0u8; 32];
                    key[..2].copy_from_slice(&((j * 65_536 / n) as u16).to_be_bytes());
                    key[2] = a as u8;
                    StorageData {
                        hash: B256::from(key),
                        body: Bytes::from(vec![1 + j as u8 % 100]),
                    }
                })
                .collect()
        };
        let storages = sizes.iter().enumerate().map(storage).collect();
        let with_storage = (0..ACCOUNTS).map(|i| (account(i), keccak256([i as u8])));
        let plain = (0..PLAIN_ACCOUNTS).map(|j| {
            let mut key = [0u8; 32];
            key[..2].copy_from_slice(&((j * 65_536 / PLAIN_ACCOUNTS) as u16).to_be_bytes());
            key[2] = 0xee;
            (B256::from(key), alloy_trie::EMPTY_ROOT_HASH)
        });
        let mut accounts: Vec<AccountData> = with_storage
            .chain(plain)
            .map(|(hash, root)| AccountData {
                hash,
                account: SlimAccount::new(1, U256::from(7), root, alloy_trie::KECCAK_EMPTY),
            })
            .collect();
        accounts.sort_by_key(|a| a.hash);
        Arc::new(Self { accounts, storages, script: Mutex::new(script.into()) })
    }

    fn honest_accounts(&self, request: &GetAccountRange) -> AccountRange {
        let (mut accounts, mut bytes, mut proof) = (Vec::new(), 0u64, Vec::new());
        let mut within =
            self.accounts.iter().filter(|a| a.hash >= request.origin && a.hash <= request.limit);
        for account in within.by_ref() {
            bytes += 32 + account.account.length() as u64;
            accounts.push(account.clone());
            if bytes >= request.bytes {
                break;
            }
        }
        // An edge proof when cut, or when nothing came (the range is empty, and proven so).
        if within.next().is_some() || accounts.is_empty() {
            proof.push(Bytes::from_static(&[0xc0]));
        }
        AccountRange { request_id: 0, accounts, proof }
    }

    fn honest(&self, request: &GetStorageRanges) -> StorageRanges {
        let single = request.accounts.len() == 1;
        let origin = if single { B256::left_padding_from(&request.origin) } else { B256::ZERO };
        let limit = match single && !request.limit.is_empty() {
            true => B256::left_padding_from(&request.limit),
            false => B256::repeat_byte(0xff),
        };
        let (mut slots, mut bytes, mut proof) = (Vec::new(), 0u64, Vec::new());
        'accounts: for hashed in &request.accounts {
            let Some(i) = (0..ACCOUNTS).find(|i| account(*i) == *hashed) else { break };
            let mut list = Vec::new();
            let within = self.storages[i].iter().filter(|s| s.hash >= origin && s.hash <= limit);
            let mut within = within.peekable();
            while let Some(slot) = within.next() {
                bytes += 32 + slot.body.len() as u64;
                list.push(slot.clone());
                if bytes >= request.bytes {
                    if within.peek().is_some() {
                        proof.push(Bytes::from_static(&[0xc0]));
                    }
                    slots.push(list);
                    break 'accounts;
                }
            }
            slots.push(list);
        }
        StorageRanges { request_id: 0, slots, proof }
    }
}

impl SnapTransport for Scripted {
    fn id(&self) -> PeerId {
        PeerId::repeat_byte(3)
    }

    fn head(&self) -> ChainHead {
        ChainHead::default()
    }

    fn request(&self, request: SnapMessage) -> PeerFuture<SnapMessage> {
        let next = self.script.lock().unwrap().pop_front().unwrap_or(Answer::Honest);
        let key = |a: u8, b: u8| {
            let mut key = [0u8; 32];
            key[..2].copy_from_slice(&[a, b]);
            B256::from(key)
        };
        let proof = |proof: bool| if proof { vec![Bytes::from_static(&[0xc0])] } else { vec![] };
        let answer = match (request, next) {
            (_, Answer::Fails) => Err(RequestError::Timeout),
            (SnapMessage::GetStorageRanges(request), Answer::Honest) => {
                Ok(SnapMessage::StorageRanges(self.honest(&request)))
            }
            (SnapMessage::GetStorageRanges(_), Answer::MadeUp { lists, proof: cut }) => {
                let slot = |(a, b, v): (u8, u8, u8)| StorageData {
                    hash: key(a, b),
                    body: Bytes::from(vec![v]),
                };
                let slots = lists.into_iter().map(|l| l.into_iter().map(slot).collect()).collect();
                Ok(SnapMessage::StorageRanges(StorageRanges {
                    request_id: 0,
                    slots,
                    proof: proof(cut),
                }))
            }
            (SnapMessage::GetAccountRange(request), Answer::Honest) => {
                Ok(SnapMessage::AccountRange(self.honest_accounts(&request)))
            }
            (SnapMessage::GetAccountRange(_), Answer::MadeUp { lists, proof: cut }) => {
                // Storage roots and code hashes empty, 32 bytes or of a length no slim
                // account has.
                let field = |v: u8| Bytes::from(vec![v; [0, 32, 5][usize::from(v % 3)]]);
                let account = |(a, b, v): (u8, u8, u8)| AccountData {
                    hash: key(a, b),
                    account: SlimAccount {
                        nonce: u64::from(v),
                        balance: U256::from(v),
                        storage_root: field(v),
                        code_hash: field(v / 3),
                    },
                };
                let accounts = lists.into_iter().flatten().map(account).collect();
                Ok(SnapMessage::AccountRange(AccountRange {
                    request_id: 0,
                    accounts,
                    proof: proof(cut),
                }))
            }
            _ => Err(RequestError::NotSupported),
        };
        Box::pin(async move { answer })
    }

    fn penalise(&self, _class: PenaltyClass) {}
}

fn answer() -> impl Strategy<Value = Answer> {
    let slot = (any::<u8>(), any::<u8>(), any::<u8>());
    let lists = prop::collection::vec(prop::collection::vec(slot, 0..6), 0..4);
    prop_oneof![
        12 => Just(Answer::Honest),
        3 => (lists, any::<bool>()).prop_map(|(lists, proof)| Answer::MadeUp { lists, proof }),
        1 => Just(Answer::Fails),
    ]
}

/// A chunk: an account and a prefix of up to two nibbles (none: its whole storage).
fn chunk() -> impl Strategy<Value = StoragePrefix> {
    (0..ACCOUNTS, prop::collection::vec(0u8..16, 0..3)).prop_map(|(a, nibbles)| StoragePrefix {
        account: account(a),
        prefix: WirePath::from_nibbles(&nibbles).unwrap(),
    })
}

/// Runs `request` against a server of storages of `sizes` slots answering as `script` says;
/// also says whether the peer was then marked as without state for the root.
fn ask(
    sizes: &[usize],
    script: Vec<Answer>,
    request: LeafRequest,
) -> (Result<LeafResponse, RequestError>, bool) {
    let peer = SnapPeer::new(Scripted::new(sizes, script) as Arc<dyn SnapTransport>);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answer = runtime.block_on(peer.request_at(&ChainHead::default(), request));
    (answer, peer.lacks_state(&ChainHead::default().state_root))
}

/// Whole storages read before the server says it has no state for the root (any more) are
/// answered, to be judged by the syncer as any others, and the peer is marked.
#[test]
fn whole_storages_before_a_no_state_answer_are_answered() {
    let whole = vec![vec![(1, 0, 1)], vec![(2, 0, 1)]];
    let script = vec![
        Answer::MadeUp { lists: whole, proof: false },
        Answer::MadeUp { lists: Vec::new(), proof: false },
    ];
    let chunks = (0..ACCOUNTS)
        .map(|a| StoragePrefix { account: account(a), prefix: WirePath::root() })
        .collect();
    let request = LeafRequest::GetStorageChunk(GetStorageChunk { chunks, max_bytes: 1 << 20 });
    let (answer, lacks_state) = ask(&[1; ACCOUNTS], script, request);
    let Ok(LeafResponse::StorageChunk(answer)) = answer else { panic!("{answer:?}") };
    assert_eq!(answer.pieces.len(), 2, "{answer:?}");
    assert!(lacks_state);
}

/// A storage that comes whole but has more slots than a chunk may inline becomes a storage unit
/// marked with its exact slot count, so that the syncer can batch it with others; the small
/// ones beside it are inlined.
#[test]
fn a_whole_storage_too_large_to_inline_is_marked_with_its_count() {
    let sizes = [3, MAX_INLINE_STORAGE_SLOTS + 100, 2, 1];
    let request =
        LeafRequest::GetChunk(GetChunk { prefixes: vec![WirePath::root()], max_bytes: 1 << 20 });
    let (answer, _) = ask(&sizes, Vec::new(), request);
    let Ok(LeafResponse::Chunk(answer)) = answer else { panic!("{answer:?}") };
    let ChunkContent::Items(leaves) = &answer.pieces[0].content else { panic!("{answer:?}") };
    let storage =
        |i: usize| &leaves.iter().find(|l| l.hashed_address == account(i)).unwrap().storage;
    let count = (MAX_INLINE_STORAGE_SLOTS + 100) as u64;
    assert!(matches!(storage(1), AccountStorage::Large { slot_count } if *slot_count == count));
    for (i, size) in [(0, 3), (2, 2), (3, 1)] {
        assert!(matches!(storage(i), AccountStorage::Inline(s) if s.len() == size), "{i}");
    }
}

/// Slots strictly increasing, all between `low` and `high`, none zero.
fn check_slots(slots: &[StorageSlot], low: B256, high: B256) -> Result<(), TestCaseError> {
    for pair in slots.windows(2) {
        prop_assert!(pair[0].hashed_slot < pair[1].hashed_slot, "slots out of order");
    }
    for slot in slots {
        prop_assert!(slot.hashed_slot >= low && slot.hashed_slot <= high, "slot outside");
        prop_assert!(!slot.value.is_zero(), "zero value");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(leafsync_p2p::test_utils::proptest_cases(512)))]

    #[test]
    fn account_pieces_stay_in_place_whatever_the_server_answers(
        sizes in prop::collection::vec(1usize..400, ACCOUNTS),
        script in prop::collection::vec(answer(), 0..24),
        prefixes in prop::collection::vec(prop::collection::vec(0u8..16, 0..3), 1..6),
        max_bytes in 256u64..32_768,
    ) {
        let prefixes: Vec<WirePath> =
            prefixes.iter().map(|p| WirePath::from_nibbles(p).unwrap()).collect();
        let request = LeafRequest::GetChunk(GetChunk { prefixes: prefixes.clone(), max_bytes });
        let Ok(answer) = ask(&sizes, script, request).0 else { return Ok(()) };
        let LeafResponse::Chunk(answer) = answer else {
            return Err(TestCaseError::fail(format!("not a chunk: {answer:?}")));
        };
        prop_assert!(answer.pieces.len() <= prefixes.len());
        for (piece, prefix) in answer.pieces.iter().zip(&prefixes) {
            let ChunkContent::Items(leaves) = &piece.content else { continue };
            let (low, high) = prefix_bounds(prefix);
            for pair in leaves.windows(2) {
                prop_assert!(pair[0].hashed_address < pair[1].hashed_address, "out of order");
            }
            for leaf in leaves {
                prop_assert!(leaf.hashed_address >= low && leaf.hashed_address <= high, "outside");
                if let AccountStorage::Inline(slots) = &leaf.storage {
                    check_slots(slots, B256::ZERO, B256::repeat_byte(0xff))?;
                }
            }
        }
    }

    #[test]
    fn storage_pieces_stay_in_place_whatever_the_server_answers(
        sizes in prop::collection::vec(1usize..400, ACCOUNTS),
        script in prop::collection::vec(answer(), 0..24),
        chunks in prop::collection::vec(chunk(), 1..12),
        max_bytes in 256u64..32_768,
    ) {
        let request = GetStorageChunk { chunks: chunks.clone(), max_bytes };
        let Ok(answer) = ask(&sizes, script, LeafRequest::GetStorageChunk(request)).0 else {
            return Ok(());
        };
        let LeafResponse::StorageChunk(answer) = answer else {
            return Err(TestCaseError::fail(format!("not a storage chunk: {answer:?}")));
        };
        prop_assert!(answer.pieces.len() <= chunks.len());
        for (piece, chunk) in answer.pieces.iter().zip(&chunks) {
            let ChunkContent::Items(slots) = &piece.content else { continue };
            let (low, high) = prefix_bounds(&chunk.prefix);
            check_slots(slots, low, high)?;
        }
    }
}
