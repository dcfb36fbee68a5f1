//! eth/69 and snap/1 over a real RLPx connection (ECIES, framing, snappy) with the capability
//! offsets geth would see: a hand-driven peer offering what geth offers (`eth/69`, `eth/70`,
//! `snap/1`) talks to our stream offering `eth/69`, `leaf/1` and `snap/1`. Absolute wire ids are
//! checked on the peer side: eth's Status at 0x10, `GetBlockBodies` at 0x15 answered at 0x16,
//! snap's `GetAccountRange` at 0x22 answered at 0x23 by the snap/1 server over a leafdb.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod snap_wire;

use alloy_primitives::B256;
use futures::{SinkExt, StreamExt};
use leafsync_leafdb::{KvStore, LeafDb};
use leafsync_p2p::{
    CapabilityMessage, EciesStream, HelloMessageWithProtocols, P2PStream, PeerId,
    UnauthedP2PStream,
    chain::ChainSpec,
    ecies::id_from_pk,
    eth::{self, BlockRangeUpdate, EthMessage, RequestIds, Status},
    p2pstream::{
        Capability, Protocol,
        stream::{decompress, encode_message, split_message},
    },
    snap::{AccountRange, GetAccountRange, SnapMessage},
};
use leafsync_serve::snap::serve_message;
use secp256k1::{PublicKey, SECP256K1, SecretKey};
use tokio::io::{DuplexStream, duplex};

type Ecies = EciesStream<DuplexStream>;

/// Mainnet just after Prague (block 22_431_084).
const HEAD: (u64, u64) = (22_431_084, 1_746_612_400);

fn key() -> (SecretKey, PeerId) {
    let sk = SecretKey::new(&mut rand::rng());
    (sk, id_from_pk(&PublicKey::from_secret_key(SECP256K1, &sk)))
}

fn status(chain: &ChainSpec) -> Status {
    let range = BlockRangeUpdate { earliest: 0, latest: HEAD.0, latest_hash: B256::repeat_byte(1) };
    Status::ours(chain, HEAD.0, HEAD.1, range)
}

/// Sends a message at an absolute id from the raw peer (snappy-compressed, as after Hello).
async fn raw_send(raw: &mut Ecies, id: u64, payload: &[u8]) {
    raw.send(encode_message(id, payload, true).unwrap()).await.unwrap();
}

/// The raw peer's next message: absolute id and decompressed payload.
async fn raw_next(raw: &mut Ecies) -> (u64, Vec<u8>) {
    let frame = raw.next().await.unwrap().unwrap();
    let (id, payload) = split_message(&frame).unwrap();
    (id, decompress(payload).unwrap())
}

/// Our side: answers eth requests empty and snap requests from the leafdb, `count` messages.
async fn serve<S: KvStore>(
    mut p2p: P2PStream<Ecies>,
    db: &LeafDb<S>,
    chain: &ChainSpec,
    count: usize,
) {
    let (eth_cap, _) = p2p.capability("eth").unwrap();
    let (snap_cap, _) = p2p.capability("snap").unwrap();
    let filter = chain.fork_filter(HEAD.0, HEAD.1);
    for _ in 0..count {
        let msg = p2p.next().await.unwrap().unwrap();
        let reply = if msg.cap == eth_cap {
            match EthMessage::decode(msg.id, &msg.payload).unwrap() {
                EthMessage::Status(theirs) => {
                    theirs
                        .validate(
                            chain,
                            &leafsync_p2p::eth::EthForkCheck::new(filter.clone(), filter.current()),
                        )
                        .unwrap();
                    Some((eth_cap, eth::protocol::ids::STATUS, alloy_rlp::encode(status(chain))))
                }
                other => other.empty_answer().map(|(id, payload)| (eth_cap, id, payload)),
            }
        } else {
            assert_eq!(msg.cap, snap_cap);
            serve_message(db, msg.id, &msg.payload)
                .unwrap()
                .map(|m: SnapMessage| (snap_cap, m.id(), m.encoded()))
        };
        if let Some((cap, id, payload)) = reply {
            p2p.send(CapabilityMessage { cap, id, payload: payload.into() }).await.unwrap();
        }
    }
}

#[tokio::test]
async fn eth_and_snap_ids_on_the_wire_as_geth_sees_them() {
    let chain = ChainSpec::preset("mainnet").unwrap();
    let (db, root) = snap_wire::generated_state(500, 3);

    let (ska, ida) = key();
    let (skb, idb) = key();
    let (x, y) = duplex(1 << 20);
    let (raw, ours) =
        tokio::join!(EciesStream::connect(x, ska, idb), EciesStream::incoming(y, skb));
    let (mut raw, ours) = (raw.unwrap(), ours.unwrap());

    // The peer's Hello: geth's capabilities.
    let geth_protocols = vec![
        Protocol::new("eth", 69, 18),
        Protocol::new("eth", 70, 18),
        Protocol::new("snap", 1, 8),
    ];
    let theirs = HelloMessageWithProtocols::new("Geth/v1.17.1", geth_protocols, 30303, ida);
    raw_send_hello(&mut raw, &theirs).await;
    let our_protocols = snap_wire::eth_leaf_snap();
    let (p2p, _) = UnauthedP2PStream::new(ours)
        .handshake(HelloMessageWithProtocols::new("leafsync/test", our_protocols, 30403, idb))
        .await
        .unwrap();
    let shared: Vec<_> =
        p2p.shared_capabilities().iter().map(|c| (c.cap.clone(), c.offset)).collect();
    assert_eq!(
        shared,
        vec![(Capability::new("eth", 69), 0x10), (Capability::new("snap", 1), 0x22)]
    );
    let frame = raw.next().await.unwrap().unwrap();
    assert_eq!(split_message(&frame).unwrap().0, 0x00, "our Hello");

    let server = tokio::spawn({
        let chain = chain.clone();
        async move {
            serve(p2p, &db, &chain, 3).await;
        }
    });

    // eth Status at 0x10, ours back at 0x10.
    raw_send(&mut raw, 0x10, &alloy_rlp::encode(status(&chain))).await;
    let (id, payload) = raw_next(&mut raw).await;
    assert_eq!(id, 0x10);
    assert_eq!(EthMessage::decode(0, &payload).unwrap(), EthMessage::Status(status(&chain)));

    // GetBlockBodies at 0x15 → empty BlockBodies at 0x16.
    let req = RequestIds { request_id: 77, hashes: vec![B256::repeat_byte(2)] };
    raw_send(&mut raw, 0x15, &alloy_rlp::encode(&req)).await;
    let (id, payload) = raw_next(&mut raw).await;
    assert_eq!((id, payload), (0x16, vec![0xc2, 77, 0xc0]));

    // snap GetAccountRange at 0x22 → AccountRange at 0x23.
    let req = GetAccountRange {
        request_id: 5,
        root,
        origin: B256::ZERO,
        limit: B256::repeat_byte(0xff),
        bytes: 1000,
    };
    raw_send(&mut raw, 0x22, &alloy_rlp::encode(req)).await;
    let (id, payload) = raw_next(&mut raw).await;
    assert_eq!(id, 0x23);
    let SnapMessage::AccountRange(AccountRange { request_id, accounts, proof }) =
        SnapMessage::decode(1, &payload).unwrap()
    else {
        panic!("not an AccountRange")
    };
    assert_eq!(request_id, 5);
    assert!(accounts.len() > 10 && !proof.is_empty(), "{} accounts", accounts.len());
    server.await.unwrap();
}

async fn raw_send_hello(raw: &mut Ecies, hello: &HelloMessageWithProtocols) {
    raw.send(encode_message(0, &alloy_rlp::encode(hello.message()), false).unwrap()).await.unwrap();
}
