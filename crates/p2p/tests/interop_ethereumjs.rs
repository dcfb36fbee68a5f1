//! Interop with an independent devp2p implementation: `@ethereumjs/devp2p` (Node) against our
//! RLPx stack over loopback TCP, in both directions. The JS side (`tests/interop/peer.mjs`)
//! speaks a minimal `leaf/1` (GetCodes/Codes), compresses its messages with snappy as a real
//! peer does, and prints its events as JSON lines. Covered: the EIP-8 handshake, Hello with
//! `leaf/1` and capability offsets, one leaf request and response each way, Ping/Pong each way,
//! and Disconnect with a reason each way (geth's `[reason]` list from us, ethereumjs's bare
//! uncompressed integer from it).
//!
//! Fails, naming the install command, when `tests/interop/node_modules` is missing: the test
//! script installs it first (`scripts/setup.sh`), so a missing install is an error, not a skip.

use alloy_primitives::{B256, Bytes, keccak256};
use alloy_rlp::{Decodable, RlpDecodable, RlpEncodable};
use futures::{SinkExt, StreamExt};
use leafsync_p2p::{
    CapabilityMessage, DisconnectReason, EciesStream, HelloMessageWithProtocols, P2PError,
    P2PStream, PeerId, UnauthedP2PStream,
    ecies::id_from_pk,
    p2pstream::{Capability, Protocol},
    test_utils::{NodeScript, interop_dir},
};
use secp256k1::{PublicKey, SECP256K1, SecretKey};
use serde_json::Value;
use std::time::Duration;
use tokio::{net::TcpStream, time::timeout};

/// Bound on every wait for the other side.
const STEP: Duration = Duration::from_secs(15);
/// Most events the JS peer prints in one run; reading stops there.
const MAX_EVENTS: usize = 64;

const GET_CODES: u8 = 0x08;
const CODES: u8 = 0x09;
/// The code table the JS peer serves and asks for (keep in sync with peer.mjs).
const TABLE: [&[u8]; 3] = [
    &[0x60, 0x01, 0x60, 0x01, 0x01],
    &[0x00],
    &[0x60, 0xfe, 0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xf3],
];

/// `leaf/1` GetCodes (0x08): `[request_id, [code_hash, ...], max_bytes]`.
#[derive(Debug, PartialEq, RlpEncodable, RlpDecodable)]
struct GetCodes {
    request_id: u64,
    hashes: Vec<B256>,
    max_bytes: u64,
}

/// `leaf/1` Codes (0x09): `[request_id, [code, ...]]`.
#[derive(Debug, PartialEq, RlpEncodable, RlpDecodable)]
struct Codes {
    request_id: u64,
    codes: Vec<Bytes>,
}

/// The JS peer: its process (killed on drop) and its JSON events.
struct JsPeer {
    script: NodeScript,
    seen: Vec<Value>,
}

impl JsPeer {
    /// Starts `node peer.mjs <args>`; panics, naming the install command, when node_modules is
    /// missing.
    fn spawn(args: &[&str]) -> Self {
        let dir = interop_dir();
        assert!(
            dir.join("node_modules").is_dir(),
            "{} is missing: run `npm ci --prefix tests/interop` (scripts/setup.sh does) to run the ethereumjs interop test",
            dir.join("node_modules").display()
        );
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Self { script: NodeScript::spawn("peer.mjs", &args, MAX_EVENTS), seen: Vec::new() }
    }

    /// The next event named `name` (earlier ones of other names are kept for later calls).
    async fn wait_for(&mut self, name: &str) -> Value {
        if let Some(i) = self.seen.iter().position(|e| e["event"] == name) {
            return self.seen.remove(i);
        }
        loop {
            let event = timeout(STEP, self.script.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out waiting for JS event {name}; seen {:?}", self.seen)
                })
                .unwrap_or_else(|| {
                    panic!("JS peer exited before event {name}; seen {:?}", self.seen)
                });
            assert_ne!(event["event"], "error", "JS peer error: {event}");
            assert_ne!(event["event"], "unexpected", "JS peer got an unexpected message: {event}");
            if event["event"] == name {
                return event;
            }
            self.seen.push(event);
        }
    }
}

fn our_hello(sk: &SecretKey) -> HelloMessageWithProtocols {
    HelloMessageWithProtocols::new(
        "leafsync-interop/0.1.0",
        vec![Protocol::new("leaf", 1, 10)],
        0,
        id_from_pk(&PublicKey::from_secret_key(SECP256K1, sk)),
    )
}

async fn handshake(
    stream: EciesStream<TcpStream>,
    sk: &SecretKey,
) -> P2PStream<EciesStream<TcpStream>> {
    let remote = stream.remote_id();
    let (p2p, hello) = UnauthedP2PStream::new(stream)
        .with_remote_id(remote)
        .handshake(our_hello(sk))
        .await
        .expect("p2p handshake");
    assert_eq!(hello.protocol_version, 5);
    assert_eq!(hello.client_version, "ethereumjs-devp2p-interop");
    assert!(hello.capabilities.contains(&Capability::new("leaf", 1)), "{hello:?}");
    p2p
}

async fn next_message(p2p: &mut P2PStream<EciesStream<TcpStream>>) -> CapabilityMessage {
    timeout(STEP, p2p.next())
        .await
        .expect("message in time")
        .expect("stream open")
        .expect("message")
}

/// The shared scenario after Hello. `we_disconnect`: we end with ClientQuitting; otherwise the
/// JS peer ends with UselessPeer.
async fn scenario(
    mut p2p: P2PStream<EciesStream<TcpStream>>,
    js: &mut JsPeer,
    we_disconnect: bool,
) {
    let hello = js.wait_for("hello").await;
    assert_eq!(hello["client"], "leafsync-interop/0.1.0");
    assert_eq!(hello["protocol_version"], 5);
    assert_eq!(hello["caps"], serde_json::json!(["leaf/1"]));
    let (leaf, cap) = p2p.capability("leaf").expect("leaf shared");
    assert_eq!((cap.offset, cap.messages), (0x10, 10));

    // 1. the JS peer's GetCodes, answered from the table
    let msg = next_message(&mut p2p).await;
    assert_eq!((msg.cap, msg.id), (leaf, GET_CODES));
    let req = GetCodes::decode(&mut &msg.payload[..]).expect("GetCodes RLP");
    assert_eq!(req.request_id, 7);
    assert_eq!(req.hashes, vec![keccak256(TABLE[0]), keccak256(TABLE[1])]);
    assert_eq!(req.max_bytes, 1 << 20);
    let codes = req
        .hashes
        .iter()
        .map(|h| {
            TABLE
                .iter()
                .find(|c| keccak256(c) == *h)
                .map(|c| Bytes::copy_from_slice(c))
                .unwrap_or_default()
        })
        .collect();
    let resp = Codes { request_id: req.request_id, codes };
    p2p.send(CapabilityMessage { cap: leaf, id: CODES, payload: alloy_rlp::encode(&resp).into() })
        .await
        .expect("send Codes");
    assert_eq!(js.wait_for("codes").await["ok"], true, "JS peer verified our Codes");

    // 2. our GetCodes: one known hash, one unknown (answered empty)
    let req = GetCodes {
        request_id: 9,
        hashes: vec![keccak256(TABLE[2]), B256::repeat_byte(0xab)],
        max_bytes: 1000,
    };
    p2p.send(CapabilityMessage {
        cap: leaf,
        id: GET_CODES,
        payload: alloy_rlp::encode(&req).into(),
    })
    .await
    .expect("send GetCodes");
    let msg = next_message(&mut p2p).await;
    assert_eq!((msg.cap, msg.id), (leaf, CODES));
    let resp = Codes::decode(&mut &msg.payload[..]).expect("Codes RLP");
    assert_eq!(
        resp,
        Codes { request_id: 9, codes: vec![Bytes::from_static(TABLE[2]), Bytes::new()] }
    );
    assert_eq!(js.wait_for("get_codes").await["request_id"], 9);

    // 3. Ping/Pong both ways: our Ping is answered; the JS peer's Ping (sent after it got our
    //    Codes) was answered by our stream while we polled it.
    p2p.send_ping();
    let mut remote_reason = None;
    for _ in 0..150 {
        if p2p.pongs_received() > 0 {
            break;
        }
        match timeout(Duration::from_millis(100), p2p.next()).await {
            Err(_) => continue,
            Ok(Some(Err(P2PError::Disconnected(reason)))) => {
                remote_reason = Some(reason);
                break;
            }
            Ok(other) => panic!("unexpected while waiting for Pong: {other:?}"),
        }
    }
    assert_eq!(p2p.pongs_received(), 1, "the JS peer answered our Ping");
    js.wait_for("pong").await;
    js.wait_for("ping_answered").await;

    // 4. Disconnect with a reason
    if we_disconnect {
        p2p.disconnect(DisconnectReason::ClientQuitting).await.expect("disconnect");
        let event = js.wait_for("disconnect").await;
        assert_eq!(event["reason"], DisconnectReason::ClientQuitting.code(), "{event}");
        assert_eq!(event["by_us"], false);
    } else {
        let reason = match remote_reason {
            Some(reason) => reason,
            None => match timeout(STEP, p2p.next()).await.expect("disconnect in time") {
                Some(Err(P2PError::Disconnected(reason))) => reason,
                other => panic!("expected Disconnect, got {other:?}"),
            },
        };
        assert_eq!(reason, DisconnectReason::UselessPeer);
        // the stream has ended; close our side of the socket so the JS peer sees the close
        drop(p2p);
        let event = js.wait_for("disconnect").await;
        assert_eq!(event["by_us"], true);
    }
}

fn our_key() -> SecretKey {
    SecretKey::new(&mut rand::rng())
}

#[tokio::test]
async fn we_dial_ethereumjs() {
    let mut js = JsPeer::spawn(&["listen"]);
    let listening = js.wait_for("listening").await;
    let port = listening["port"].as_u64().expect("port") as u16;
    let id: PeerId = listening["id"].as_str().expect("id").parse().expect("node id hex");
    let sk = our_key();
    let socket = timeout(STEP, TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("in time")
        .expect("connect");
    let stream =
        EciesStream::connect(socket, sk, id).await.expect("ECIES handshake with ethereumjs");
    assert_eq!(stream.remote_id(), id);
    let p2p = handshake(stream, &sk).await;
    scenario(p2p, &mut js, true).await;
}

#[tokio::test]
async fn ethereumjs_dials_us() {
    let sk = our_key();
    let our_id = id_from_pk(&PublicKey::from_secret_key(SECP256K1, &sk));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let mut js = JsPeer::spawn(&["dial", &hex::encode(our_id), &port]);
    let (socket, peer_addr) =
        timeout(STEP, listener.accept()).await.expect("JS dials in time").expect("accept");
    assert!(peer_addr.ip().is_loopback());
    let stream = EciesStream::incoming(socket, sk).await.expect("ECIES handshake from ethereumjs");
    let listening = js.wait_for("listening").await;
    assert_eq!(hex::encode(stream.remote_id()), listening["id"].as_str().expect("id"));
    let p2p = handshake(stream, &sk).await;
    scenario(p2p, &mut js, false).await;
}
