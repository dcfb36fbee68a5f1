//! Hello with `eth/69`, `leaf/1` and `snap/1` against an independent devp2p implementation,
//! `@ethereumjs/devp2p` (`tests/interop/snap_peer.mjs`), over loopback TCP: both sides must
//! agree on the shared capabilities and their offsets (eth 0x10, leaf 0x22, snap 0x2c); the JS
//! peer's eth/69 Status and snap/1 GetAccountRange arrive at those offsets and are answered by
//! our Status and by the snap/1 server over a leafdb, which the JS peer receives at the right
//! codes.
//!
//! Needs `tests/interop/node_modules` (`npm ci --prefix tests/interop`) and `node`; without them
//! the test fails and says so.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod snap_wire;

use std::time::Duration;

use alloy_primitives::{B256, hex};
use futures::{SinkExt, StreamExt};
use leafsync_p2p::{
    CapabilityMessage, DisconnectReason, EciesStream, HelloMessageWithProtocols, PeerId,
    UnauthedP2PStream,
    chain::ChainSpec,
    ecies::id_from_pk,
    eth::{BlockRangeUpdate, EthMessage, Status},
    p2pstream::Capability,
    test_utils::{NodeScript, interop_dir},
};
use leafsync_serve::snap::serve_message;
use secp256k1::{PublicKey, SECP256K1, SecretKey};
use serde_json::Value;
use tokio::{net::TcpStream, time::timeout};

/// Bound on every wait for the other side.
const STEP: Duration = Duration::from_secs(15);
/// Most events the JS peer prints; reading stops there.
const MAX_EVENTS: usize = 32;
/// Mainnet just after Prague (block 22_431_084), the head the JS peer's Status names.
const HEAD: (u64, u64) = (22_431_084, 1_746_612_400);

struct JsPeer(NodeScript);

impl JsPeer {
    fn spawn(root: B256) -> Self {
        let dir = interop_dir();
        assert!(
            dir.join("node_modules/@ethereumjs/devp2p").is_dir(),
            "{} is missing: run `npm ci --prefix tests/interop` (scripts/setup.sh does) to run \
             the eth/69 + snap/1 interop test",
            dir.join("node_modules").display()
        );
        let root = format!("0x{}", hex::encode(root));
        Self(NodeScript::spawn("snap_peer.mjs", &[root], MAX_EVENTS))
    }

    async fn next(&mut self) -> Value {
        let event = timeout(STEP, self.0.events.recv()).await.unwrap().unwrap();
        assert_ne!(event["event"], "error", "JS peer error: {event}");
        assert_ne!(event["event"], "peer_error", "JS peer error: {event}");
        event
    }
}

#[tokio::test]
async fn hello_offsets_and_messages_agree_with_ethereumjs() {
    let chain = ChainSpec::preset("mainnet").unwrap();
    let (db, root) = snap_wire::generated_state(300, 11);

    let mut js = JsPeer::spawn(root);
    let listening = js.next().await;
    assert_eq!(listening["event"], "listening");
    let port = listening["port"].as_u64().unwrap() as u16;
    let id: PeerId = listening["id"].as_str().unwrap().parse().unwrap();

    let sk = SecretKey::new(&mut rand::rng());
    let socket = timeout(STEP, TcpStream::connect(("127.0.0.1", port))).await.unwrap().unwrap();
    let stream = EciesStream::connect(socket, sk, id).await.unwrap();
    let protocols = snap_wire::eth_leaf_snap();
    let our_id = id_from_pk(&PublicKey::from_secret_key(SECP256K1, &sk));
    let (mut p2p, hello) = UnauthedP2PStream::new(stream)
        .with_remote_id(id)
        .handshake(HelloMessageWithProtocols::new("leafsync-interop/0.1.0", protocols, 0, our_id))
        .await
        .unwrap();
    assert_eq!(hello.client_version, "ethereumjs-devp2p-snap-interop");

    // Both sides agree on what is shared and where.
    let ours: Vec<_> =
        p2p.shared_capabilities().iter().map(|c| (c.cap.clone(), c.offset)).collect();
    assert_eq!(
        ours,
        vec![
            (Capability::new("eth", 69), 0x10),
            (Capability::new("leaf", 1), 0x22),
            (Capability::new("snap", 1), 0x2c)
        ]
    );
    let hello_event = js.next().await;
    assert_eq!(hello_event["event"], "hello");
    assert_eq!(hello_event["caps"], serde_json::json!(["eth/69", "leaf/1", "snap/1"]));
    assert_eq!(
        hello_event["offsets"],
        serde_json::json!({"eth": 0x10, "leaf": 0x22, "snap": 0x2c})
    );

    // The JS peer's Status and GetAccountRange, answered.
    let (eth_cap, _) = p2p.capability("eth").unwrap();
    let (snap_cap, _) = p2p.capability("snap").unwrap();
    let filter = chain.fork_filter(HEAD.0, HEAD.1);
    for _ in 0..2 {
        let msg = timeout(STEP, p2p.next()).await.unwrap().unwrap().unwrap();
        if msg.cap == eth_cap {
            let EthMessage::Status(theirs) = EthMessage::decode(msg.id, &msg.payload).unwrap()
            else {
                panic!("expected Status")
            };
            theirs
                .validate(
                    &chain,
                    &leafsync_p2p::eth::EthForkCheck::new(filter.clone(), filter.current()),
                )
                .unwrap();
            assert_eq!(theirs.latest, HEAD.0);
            let range =
                BlockRangeUpdate { earliest: 0, latest: HEAD.0, latest_hash: B256::repeat_byte(1) };
            let status = Status::ours(&chain, HEAD.0, HEAD.1, range);
            let payload = alloy_rlp::encode(status).into();
            p2p.send(CapabilityMessage { cap: eth_cap, id: msg.id, payload }).await.unwrap();
        } else {
            assert_eq!((msg.cap, msg.id), (snap_cap, 0x00), "GetAccountRange");
            let reply = serve_message(&db, msg.id, &msg.payload).unwrap().unwrap();
            let payload = reply.encoded().into();
            p2p.send(CapabilityMessage { cap: snap_cap, id: reply.id(), payload }).await.unwrap();
        }
    }
    // The JS peer got our Status as eth code 0 (seven fields) and the AccountRange as snap code
    // 1 (three fields, accounts in the second).
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = js.next().await;
        if event["event"] == "message" {
            seen.push(event);
        }
    }
    seen.sort_by_key(|e| e["proto"].as_str().unwrap().to_string());
    assert_eq!(
        (&seen[0]["proto"], &seen[0]["code"], &seen[0]["items"]),
        (&"eth".into(), &0.into(), &7.into())
    );
    assert_eq!(
        (&seen[1]["proto"], &seen[1]["code"], &seen[1]["items"]),
        (&"snap".into(), &1.into(), &3.into())
    );
    assert!(seen[1]["count"].as_i64().unwrap() > 5, "{}", seen[1]);

    p2p.disconnect(DisconnectReason::ClientQuitting).await.unwrap();
    let event = js.next().await;
    assert_eq!(event["event"], "disconnect");
    assert_eq!(event["reason"], DisconnectReason::ClientQuitting.code());
}
