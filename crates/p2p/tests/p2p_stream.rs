//! The p2p base protocol between two of our own streams (duplex and TCP), and against a
//! hand-driven peer sending hostile input: each case ends with its error and, where one is due,
//! a Disconnect with the right reason on the wire — never a panic.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use leafsync_p2p::{
    CapabilityMessage, DisconnectReason, EciesStream, HelloMessage, HelloMessageWithProtocols,
    P2PError, P2PStream, PeerId, UnauthedP2PStream,
    ecies::id_from_pk,
    p2pstream::{
        Capability, MAX_MESSAGE_SIZE, PING_INTERVAL, PING_TIMEOUT, Protocol,
        stream::{
            HELLO_TIMEOUT, MAX_IGNORED_BYTES_PER_WINDOW, MAX_IGNORED_PER_WINDOW,
            MAX_PINGS_PER_WINDOW, decompress, encode_message, split_message,
        },
    },
};
use secp256k1::{PublicKey, SECP256K1, SecretKey};
use std::time::Duration;
use tokio::io::{DuplexStream, duplex};

type Ecies = EciesStream<DuplexStream>;

const PIPE: usize = 1 << 20;

fn key() -> (SecretKey, PeerId) {
    let sk = SecretKey::new(&mut rand::rng());
    (sk, id_from_pk(&PublicKey::from_secret_key(SECP256K1, &sk)))
}

fn hello(id: PeerId, protocols: Vec<Protocol>) -> HelloMessageWithProtocols {
    HelloMessageWithProtocols::new("leafsync-test/0.1.0", protocols, 30303, id)
}

fn leaf() -> Vec<Protocol> {
    vec![Protocol::new("leaf", 1, 10)]
}

async fn ecies_pair() -> (Ecies, Ecies, PeerId, PeerId) {
    let (ska, ida) = key();
    let (skb, idb) = key();
    let (x, y) = duplex(PIPE);
    let (a, b) = tokio::join!(EciesStream::connect(x, ska, idb), EciesStream::incoming(y, skb));
    (a.expect("a"), b.expect("b"), ida, idb)
}

/// Reads the next frame of a raw peer and returns its message id and decompressed payload.
async fn raw_next(raw: &mut Ecies) -> (u64, Vec<u8>) {
    let frame = raw.next().await.expect("frame").expect("ok");
    let (id, payload) = split_message(&frame).expect("id");
    (id, decompress(payload).expect("snappy"))
}

/// Expects the raw peer to receive a (compressed) Disconnect with `reason`.
async fn expect_disconnect(raw: &mut Ecies, reason: DisconnectReason) {
    let (id, payload) = raw_next(raw).await;
    assert_eq!(id, 0x01, "Disconnect");
    assert_eq!(DisconnectReason::decode_payload(&payload).expect("reason"), reason);
}

/// Our stream after Hello, and a raw peer (ECIES frames, p2p by hand) that sent a leaf/1 Hello.
async fn raw_peer() -> (P2PStream<Ecies>, Ecies) {
    let (mut raw, ours, ida, idb) = ecies_pair().await;
    let their_hello = hello(ida, leaf()).message();
    raw.send(encode_message(0, &alloy_rlp::encode(&their_hello), false).expect("hello"))
        .await
        .expect("send");
    let (p2p, got) =
        UnauthedP2PStream::new(ours).handshake(hello(idb, leaf())).await.expect("handshake");
    assert_eq!(got, their_hello);
    let frame = raw.next().await.expect("hello").expect("ok");
    assert_eq!(frame[0], 0x80, "our Hello, uncompressed");
    (p2p, raw)
}

async fn p2p_pair() -> (P2PStream<Ecies>, P2PStream<Ecies>, HelloMessage, HelloMessage) {
    let (a, b, ida, idb) = ecies_pair().await;
    let protos_a =
        vec![Protocol::new("leaf", 1, 10), Protocol::new("aaa", 2, 3), Protocol::new("zzz", 1, 4)];
    let protos_b =
        vec![Protocol::new("zzz", 1, 4), Protocol::new("leaf", 1, 10), Protocol::new("aaa", 2, 3)];
    let (ra, rb) = tokio::join!(
        UnauthedP2PStream::new(a).handshake(hello(ida, protos_a)),
        UnauthedP2PStream::new(b).handshake(hello(idb, protos_b))
    );
    let ((a, hello_b), (b, hello_a)) = (ra.expect("a"), rb.expect("b"));
    (a, b, hello_a, hello_b)
}

#[tokio::test]
async fn hello_capabilities_messages_and_disconnect() {
    let (mut a, mut b, hello_a, hello_b) = p2p_pair().await;
    assert_eq!(hello_b.protocol_version, 5);
    assert_eq!(hello_a.capabilities.len(), 3);
    // sorted by name, offsets from 0x10 by message count
    let offsets: Vec<_> =
        a.shared_capabilities().iter().map(|c| (c.cap.name.clone(), c.offset)).collect();
    assert_eq!(offsets, vec![("aaa".into(), 0x10), ("leaf".into(), 0x13), ("zzz".into(), 0x1d)]);
    assert_eq!(a.shared_capabilities(), b.shared_capabilities());

    let (leaf, _) = a.capability("leaf").expect("leaf");
    for (id, size) in [(0u8, 0usize), (9, 10), (3, 100_000)] {
        let payload = Bytes::from(vec![id; size]);
        a.send(CapabilityMessage { cap: leaf, id, payload: payload.clone() }).await.expect("send");
        let got = b.next().await.expect("msg").expect("ok");
        assert_eq!(got, CapabilityMessage { cap: leaf, id, payload });
    }
    // ids outside the capability are refused on send
    let e = a
        .send(CapabilityMessage { cap: leaf, id: 10, payload: Bytes::new() })
        .await
        .expect_err("range");
    assert!(matches!(e, P2PError::MessageIdOutOfRange { id: 10, .. }), "{e}");

    a.disconnect(DisconnectReason::TooManyPeers).await.expect("disconnect");
    match b.next().await {
        Some(Err(P2PError::Disconnected(DisconnectReason::TooManyPeers))) => {}
        other => panic!("{other:?}"),
    }
    assert!(b.next().await.is_none(), "terminated after Disconnect");
}

#[tokio::test]
async fn hello_ping_pong_disconnect_over_tcp() {
    let (ska, ida) = key();
    let (skb, idb) = key();
    let (stream, server_stream) = leafsync_p2p::test_utils::ecies_pair(ska, skb).await;
    let server = tokio::spawn(async move {
        let (mut p2p, _) = UnauthedP2PStream::new(server_stream)
            .handshake(hello(idb, leaf()))
            .await
            .expect("hello");
        // echo capability messages until the client disconnects
        loop {
            match p2p.next().await {
                Some(Ok(msg)) => p2p.send(msg).await.expect("echo"),
                Some(Err(e)) => return e,
                None => panic!("ended without error"),
            }
        }
    });
    let (mut p2p, theirs) =
        UnauthedP2PStream::new(stream).handshake(hello(ida, leaf())).await.expect("hello");
    assert_eq!(theirs.id, idb);
    assert_eq!(theirs.port, 30303);
    let msg = CapabilityMessage { cap: 0, id: 2, payload: Bytes::from_static(b"\xc3\x01\x02\x03") };
    p2p.send(msg.clone()).await.expect("send");
    assert_eq!(p2p.next().await.expect("echo").expect("ok"), msg);
    p2p.send_ping();
    p2p.send(msg.clone()).await.expect("send");
    assert_eq!(p2p.next().await.expect("echo").expect("ok"), msg);
    assert_eq!(p2p.pongs_received(), 1, "Pong arrives before the echo sent after it");
    p2p.disconnect(DisconnectReason::ClientQuitting).await.expect("disconnect");
    let e = server.await.expect("server");
    assert!(matches!(e, P2PError::Disconnected(DisconnectReason::ClientQuitting)), "{e}");
    assert_eq!(e.disconnect_reason(), Some(DisconnectReason::ClientQuitting));
}

/// Two of our streams, polled for longer than several ping intervals and timeouts: both ping,
/// both answer, neither times out.
#[tokio::test(start_paused = true)]
async fn keepalive_pings_are_answered() {
    let (mut a, mut b, _, _) = p2p_pair().await;
    let idle = PING_INTERVAL * 6 + PING_TIMEOUT;
    let (ra, rb) =
        tokio::join!(tokio::time::timeout(idle, a.next()), tokio::time::timeout(idle, b.next()));
    assert!(ra.is_err() && rb.is_err(), "nothing but keepalive in that time: {ra:?} {rb:?}");
    assert!(a.pongs_received() >= 5, "a got {} pongs", a.pongs_received());
    assert!(b.pongs_received() >= 5, "b got {} pongs", b.pongs_received());
}

#[tokio::test(start_paused = true)]
async fn silent_peer_hits_ping_timeout() {
    let (mut p2p, mut raw) = raw_peer().await;
    let start = tokio::time::Instant::now();
    let (ours, ping) = tokio::join!(p2p.next(), raw_next(&mut raw));
    assert_eq!(ping.0, 0x02, "our Ping");
    match ours {
        Some(Err(P2PError::PingTimeout)) => {}
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() >= PING_INTERVAL + PING_TIMEOUT);
    expect_disconnect(&mut raw, DisconnectReason::PingTimeout).await;
    assert!(p2p.next().await.is_none());
}

#[tokio::test]
async fn ping_is_answered_with_pong() {
    let (mut p2p, mut raw) = raw_peer().await;
    raw.send(encode_message(0x02, &[0xc0], true).expect("ping")).await.expect("send");
    // Our stream answers while it is polled (for as long as the pong takes: a loaded machine
    // may take longer than any fixed poll).
    let pong = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            pong = raw_next(&mut raw) => pong,
            item = p2p.next() => panic!("the stream yielded {item:?} instead of answering"),
        }
    })
    .await
    .expect("no pong in 30 s");
    assert_eq!(pong, (0x03, vec![0xc0]));
}

#[tokio::test(start_paused = true)]
async fn silent_peer_hits_hello_timeout() {
    let (_raw, ours, _, idb) = ecies_pair().await;
    let e = UnauthedP2PStream::new(ours).handshake(hello(idb, leaf())).await.expect_err("timeout");
    assert!(matches!(e, P2PError::HandshakeTimeout), "{e}");
    let _ = HELLO_TIMEOUT;
}

/// Sends `frame` from the raw peer; expects our stream to fail with `check` and the raw peer to
/// receive Disconnect(`reason`).
async fn hostile(frame: Bytes, check: impl Fn(&P2PError) -> bool, reason: DisconnectReason) {
    hostile_frames(vec![frame], check, reason).await;
}

/// [`hostile`] for frames sent one after the other (read as they are sent: a sender running
/// ahead of the reader would fill the socket's buffers).
async fn hostile_frames(
    frames: Vec<Bytes>,
    check: impl Fn(&P2PError) -> bool,
    reason: DisconnectReason,
) {
    let (mut p2p, mut raw) = raw_peer().await;
    let send = async {
        for frame in frames {
            raw.send(frame).await.expect("send");
        }
    };
    let ((), next) = tokio::join!(send, p2p.next());
    let e = next.expect("item").expect_err("must fail");
    assert!(check(&e), "unexpected error {e}");
    assert_eq!(e.disconnect_reason(), Some(reason), "{e}");
    expect_disconnect(&mut raw, reason).await;
    assert!(p2p.next().await.is_none(), "terminated");
}

/// L1: ids 0x04..=0x0f are reserved for the base protocol; like go-ethereum we ignore them
/// (a newer devp2p may use them) instead of banning the peer.
#[tokio::test]
async fn reserved_base_protocol_ids_are_ignored() {
    let (mut p2p, mut raw) = raw_peer().await;
    for id in 0x04..=0x0f {
        // Payloads that are neither snappy nor RLP: ignored unread.
        raw.send(encode_message(id, &[0xde, 0xad], false).expect("msg")).await.expect("send");
    }
    let (leaf, _) = p2p.capability("leaf").expect("leaf");
    let (leaf, offset) = (leaf, p2p.shared_capabilities().get(leaf).expect("cap").offset);
    raw.send(encode_message(offset + 3, &[0xc0], true).expect("msg")).await.expect("send");
    let got = p2p.next().await.expect("item").expect("still connected");
    assert_eq!(got, CapabilityMessage { cap: leaf, id: 3, payload: Bytes::from_static(&[0xc0]) });
}

/// Pongs and reserved-id messages are ignored, but within a budget: past
/// `MAX_IGNORED_PER_WINDOW` of them, or `MAX_IGNORED_BYTES_PER_WINDOW` bytes of reserved
/// frames, in one window the peer is flooding us with frames we decrypt for nothing.
#[tokio::test]
async fn floods_of_ignored_messages_are_a_breach() {
    let flood = |e: &P2PError| matches!(e, P2PError::IgnoredFlood);
    let breach = DisconnectReason::ProtocolBreach;
    // Unsolicited Pongs, one past the budget.
    let pong = encode_message(0x03, &[0xc0], true).expect("pong");
    hostile_frames(vec![pong; MAX_IGNORED_PER_WINDOW as usize + 1], flood, breach).await;
    // Reserved ids, each small, one past the budget.
    let small = encode_message(0x05, &[0xde, 0xad], false).expect("msg");
    hostile_frames(vec![small; MAX_IGNORED_PER_WINDOW as usize + 1], flood, breach).await;
    // Few reserved frames, their bytes past the budget.
    let big = encode_message(0x06, &vec![0u8; 256 << 10], false).expect("msg");
    let frames = MAX_IGNORED_BYTES_PER_WINDOW / (256 << 10) + 1;
    hostile_frames(vec![big; frames], flood, breach).await;
}

/// L1: a Disconnect with an undefined reason code, an empty payload, garbage or a snappy header
/// announcing more than `MAX_DISCONNECT_SIZE` still just ends the connection (as go-ethereum
/// reads it): no breach, no penalty.
#[tokio::test]
async fn odd_disconnects_are_accepted() {
    for (payload, compressed) in [
        (vec![0xc1, 0x20], true), // [0x20]: undefined reason code
        (vec![0x20], false),      // bare undefined code, raw
        (Vec::new(), true),       // empty payload, snappy
        (Vec::new(), false),      // empty payload, raw
        (vec![0xc0], true),       // empty list
        (vec![0xc1], false),      // truncated list
        (vec![0xc1, 0x42], true), // [0x42]
        // [TooManyPeers] and 8 MiB of zeros: over `MAX_DISCONNECT_SIZE`, so read raw
        ([&[0xc1, 0x04][..], &vec![0; 8 << 20]].concat(), true),
    ] {
        let (mut p2p, mut raw) = raw_peer().await;
        raw.send(encode_message(0x01, &payload, compressed).expect("msg")).await.expect("send");
        match p2p.next().await {
            Some(Err(e @ P2PError::Disconnected(DisconnectReason::DisconnectRequested))) => {
                assert!(!e.is_protocol_breach(), "{e}");
            }
            other => panic!("{:02x?}: {other:?}", &payload[..payload.len().min(8)]),
        }
    }
}

/// L2: Ping and Pong must carry the empty list; a big payload is refused from its snappy
/// header, before any decompression.
#[tokio::test]
async fn keepalive_payloads_other_than_the_empty_list_are_a_breach() {
    let breach = DisconnectReason::ProtocolBreach;
    let big = snap::raw::Encoder::new().compress_vec(&vec![0u8; 8 << 20]).expect("compress");
    for id in [0x02u64, 0x03] {
        let mut f = alloy_rlp::encode(id);
        f.extend_from_slice(&big);
        hostile(Bytes::from(f), |e| matches!(e, P2PError::InvalidKeepalive), breach).await;
        let f = encode_message(id, &[0xc1, 0x80], true).expect("msg");
        hostile(f, |e| matches!(e, P2PError::InvalidKeepalive), breach).await;
    }
}

/// L2: more than `MAX_PINGS_PER_WINDOW` Pings in one window is a flood.
#[tokio::test]
async fn ping_floods_are_a_breach() {
    let (mut p2p, mut raw) = raw_peer().await;
    for _ in 0..=MAX_PINGS_PER_WINDOW {
        raw.send(encode_message(0x02, &[0xc0], true).expect("ping")).await.expect("send");
    }
    let e = tokio::time::timeout(Duration::from_secs(5), p2p.next())
        .await
        .expect("in time")
        .expect("item")
        .expect_err("flood");
    assert!(matches!(e, P2PError::PingFlood), "{e}");
    assert_eq!(e.disconnect_reason(), Some(DisconnectReason::ProtocolBreach));
    // The Pongs for the allowed Pings, then the Disconnect.
    loop {
        let (id, payload) = raw_next(&mut raw).await;
        if id == 0x03 {
            continue;
        }
        assert_eq!(id, 0x01);
        assert_eq!(
            DisconnectReason::decode_payload(&payload).expect("reason"),
            DisconnectReason::ProtocolBreach
        );
        break;
    }
}

#[tokio::test]
async fn unknown_message_ids_are_a_breach() {
    let breach = DisconnectReason::ProtocolBreach;
    // past leaf/1 (0x10..0x1a)
    let f = encode_message(0x1a, &[0xc0], true).expect("msg");
    hostile(f, |e| matches!(e, P2PError::UnknownMessageId(0x1a)), breach).await;
    // a second Hello
    let f = encode_message(0x00, &[0xc0], true).expect("msg");
    hostile(f, |e| matches!(e, P2PError::UnexpectedHello), breach).await;
}

#[tokio::test]
async fn malformed_frames_are_a_breach() {
    let breach = DisconnectReason::ProtocolBreach;
    hostile(Bytes::new(), |e| matches!(e, P2PError::EmptyMessage), breach).await;
    // message id as a list, as a non-canonical integer, as a truncated string
    for id in [&[0xc1, 0x10][..], &[0x81, 0x10], &[0x82, 0x01]] {
        hostile(Bytes::copy_from_slice(id), |e| matches!(e, P2PError::Rlp(_)), breach).await;
    }
}

#[tokio::test]
async fn snappy_bombs_and_bad_snappy_are_a_breach() {
    let breach = DisconnectReason::ProtocolBreach;
    // header announcing 1 GiB, then a few bytes: refused before any allocation
    let mut bomb = vec![0x10];
    let mut n = 1usize << 30;
    while n >= 0x80 {
        bomb.push((n as u8) | 0x80);
        n >>= 7;
    }
    bomb.push(n as u8);
    bomb.extend([0u8; 8]);
    let f = Bytes::from(bomb);
    hostile(f, |e| matches!(e, P2PError::MessageTooLarge { size, .. } if *size == 1 << 30), breach)
        .await;
    // just over the limit, with a real snappy stream (a run-length encoded message)
    let compressed =
        snap::raw::Encoder::new().compress_vec(&vec![0u8; MAX_MESSAGE_SIZE + 1]).expect("compress");
    let mut f = vec![0x10];
    f.extend(compressed);
    hostile(Bytes::from(f), |e| matches!(e, P2PError::MessageTooLarge { .. }), breach).await;
    // valid length, corrupt body
    hostile(
        Bytes::from_static(&[0x10, 0x05, 0xff, 0xff]),
        |e| matches!(e, P2PError::Snappy(_)),
        breach,
    )
    .await;
    // an uncompressed Ping after Hello (v5 requires snappy)
    hostile(Bytes::from_static(&[0x02, 0xc0]), |e| matches!(e, P2PError::InvalidKeepalive), breach)
        .await;
}

#[tokio::test]
async fn remote_disconnect_in_either_encoding() {
    for (payload, compressed, reason) in [
        (vec![0xc1, 0x04], true, DisconnectReason::TooManyPeers), // [reason], snappy (geth)
        (vec![0x03], false, DisconnectReason::UselessPeer),       // bare integer, raw (ethereumjs)
        (vec![0x0b], true, DisconnectReason::PingTimeout),        // bare integer, snappy
        (vec![0xc1, 0x80], false, DisconnectReason::DisconnectRequested), // [0], raw
    ] {
        let (mut p2p, mut raw) = raw_peer().await;
        raw.send(encode_message(0x01, &payload, compressed).expect("msg")).await.expect("send");
        match p2p.next().await {
            Some(Err(P2PError::Disconnected(r))) => assert_eq!(r, reason),
            other => panic!("{other:?}"),
        }
    }
}

/// Hello exchange failures: each with its error and (where due) the Disconnect reason we send.
#[tokio::test]
async fn hello_failures() {
    async fn run(
        their_first: Bytes,
        our_protocols: Vec<Protocol>,
    ) -> (P2PError, Option<(u64, Vec<u8>)>) {
        let (mut raw, ours, _, idb) = ecies_pair().await;
        raw.send(their_first).await.expect("send");
        let e = UnauthedP2PStream::new(ours)
            .handshake(hello(idb, our_protocols))
            .await
            .expect_err("fails");
        let _our_hello = raw.next().await.expect("hello").expect("ok");
        let reply = match raw.next().await {
            Some(Ok(f)) => {
                let (id, p) = split_message(&f).expect("id");
                Some((id, p.to_vec()))
            }
            _ => None,
        };
        (e, reply)
    }
    let (_, ida) = key();
    let hello_frame = |version: u64, caps: Vec<Capability>| {
        let h = HelloMessage {
            protocol_version: version,
            client_version: "x".into(),
            capabilities: caps,
            port: 0,
            id: ida,
        };
        encode_message(0, &alloy_rlp::encode(&h), false).expect("hello")
    };

    // no shared capability: UselessPeer, compressed (they speak v5)
    let (e, reply) = run(hello_frame(5, vec![Capability::new("eth", 68)]), leaf()).await;
    assert!(matches!(e, P2PError::NoSharedCapabilities), "{e}");
    let (id, p) = reply.expect("disconnect");
    assert_eq!(id, 1);
    assert_eq!(
        DisconnectReason::decode_payload(&decompress(&p).expect("snappy")).expect("r"),
        DisconnectReason::UselessPeer
    );

    // same name, other version only: nothing shared either
    let (e, _) = run(hello_frame(5, vec![Capability::new("leaf", 2)]), leaf()).await;
    assert!(matches!(e, P2PError::NoSharedCapabilities), "{e}");

    // p2p v4: no snappy; refused with an uncompressed Disconnect
    let (e, reply) = run(hello_frame(4, vec![Capability::new("leaf", 1)]), leaf()).await;
    assert!(matches!(e, P2PError::IncompatibleProtocolVersion(4)), "{e}");
    let (id, p) = reply.expect("disconnect");
    assert_eq!(
        (id, DisconnectReason::decode_payload(&p).expect("r")),
        (1, DisconnectReason::IncompatibleP2PProtocolVersion)
    );

    // a Ping instead of Hello
    let (e, reply) = run(encode_message(2, &[0xc0], false).expect("ping"), leaf()).await;
    assert!(matches!(e, P2PError::ExpectedHello(2)), "{e}");
    assert_eq!(
        reply.map(|r| DisconnectReason::decode_payload(&r.1).expect("r")),
        Some(DisconnectReason::ProtocolBreach)
    );

    // a Disconnect instead of Hello, raw or compressed
    for compressed in [false, true] {
        let f = encode_message(1, &alloy_rlp::encode(DisconnectReason::TooManyPeers), compressed)
            .expect("d");
        let (e, reply) = run(f, leaf()).await;
        assert!(matches!(e, P2PError::Disconnected(DisconnectReason::TooManyPeers)), "{e}");
        assert!(reply.is_none(), "no Disconnect back to a Disconnect");
    }

    // malformed Hello RLP, and an oversize Hello
    let (e, _) = run(Bytes::from_static(&[0x80, 0xc3, 0x05, 0x80]), leaf()).await;
    assert!(matches!(e, P2PError::Rlp(_)) && e.is_protocol_breach(), "{e}");
    let big: Vec<_> = (0..60).map(|i| Capability::new(format!("cap{i:028}"), 1)).collect();
    let (e, _) = run(hello_frame(5, big), leaf()).await;
    assert!(matches!(e, P2PError::HelloTooLarge(_)), "{e}");

    // our own node id
    let (mut raw, ours, _, idb) = ecies_pair().await;
    let h = HelloMessage {
        protocol_version: 5,
        client_version: "me".into(),
        capabilities: vec![Capability::new("leaf", 1)],
        port: 0,
        id: idb,
    };
    raw.send(encode_message(0, &alloy_rlp::encode(&h), false).expect("hello")).await.expect("send");
    let e = UnauthedP2PStream::new(ours).handshake(hello(idb, leaf())).await.expect_err("self");
    assert_eq!(e.disconnect_reason(), Some(DisconnectReason::ConnectedToSelf));
}

/// Junk instead of a frame from an established peer: the header MAC fails, our stream ends
/// as a breach and still tells the peer why (our egress direction is intact).
#[tokio::test]
async fn bad_mac_after_hello_is_a_breach() {
    use tokio::io::AsyncWriteExt;
    let (mut p2p, mut raw) = raw_peer().await;
    raw.get_mut().write_all(&[0x42; 64]).await.expect("write");
    let e = p2p.next().await.expect("item").expect_err("mac");
    assert!(matches!(e, P2PError::Ecies(leafsync_p2p::EciesError::HeaderMacMismatch)), "{e}");
    assert!(e.is_protocol_breach());
    assert_eq!(e.disconnect_reason(), Some(DisconnectReason::ProtocolBreach));
    expect_disconnect(&mut raw, DisconnectReason::ProtocolBreach).await;
}

/// The Hello's node id must be the one ECIES authenticated (when asked), and never all zeros.
#[tokio::test]
async fn hello_identity_checks() {
    for (their_id, expect_reason) in [
        (None, DisconnectReason::UnexpectedHandshakeIdentity),
        (Some(PeerId::ZERO), DisconnectReason::NullNodeIdentity),
    ] {
        let (mut raw, ours, ida, idb) = ecies_pair().await;
        let (_, stranger) = key();
        let h = hello(their_id.unwrap_or(stranger), leaf()).message();
        raw.send(encode_message(0, &alloy_rlp::encode(&h), false).expect("hello"))
            .await
            .expect("send");
        let e = UnauthedP2PStream::new(ours)
            .with_remote_id(ida)
            .handshake(hello(idb, leaf()))
            .await
            .expect_err("identity");
        assert_eq!(e.disconnect_reason(), Some(expect_reason), "{e}");
        let _our_hello = raw.next().await.expect("hello").expect("ok");
        let (id, payload) = raw_next(&mut raw).await;
        assert_eq!(id, 1);
        assert_eq!(DisconnectReason::decode_payload(&payload).expect("reason"), expect_reason);
    }
    // the right id passes
    let (mut raw, ours, ida, idb) = ecies_pair().await;
    let h = hello(ida, leaf()).message();
    raw.send(encode_message(0, &alloy_rlp::encode(&h), false).expect("hello")).await.expect("send");
    let (_, got) = UnauthedP2PStream::new(ours)
        .with_remote_id(ida)
        .handshake(hello(idb, leaf()))
        .await
        .expect("matching id");
    assert_eq!(got.id, ida);
}
