//! The ECIES stream end to end: handshakes over in-memory duplex pipes and loopback TCP, the
//! legacy auth accepted on a live stream, and hostile input (malformed packets, wrong keys,
//! oversize announcements, silence, bad MACs, oversize frames) each failing with its error.

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use leafsync_p2p::ecies::{
    EciesError, EciesStream, FrameCodec, HANDSHAKE_TIMEOUT, MAX_FRAME_SIZE, PeerId,
    algorithm::{Ecies, LEGACY_ACK_LEN, encrypt_message, id_from_pk, pk_from_id},
};
use secp256k1::{PublicKey, SECP256K1, SecretKey};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex},
    task::JoinHandle,
};

const PIPE: usize = 1 << 20;

fn key() -> (SecretKey, PeerId) {
    let sk = SecretKey::new(&mut rand::rng());
    (sk, id_from_pk(&PublicKey::from_secret_key(SECP256K1, &sk)))
}

/// Each side knows the other's id (`ida` is `a`'s own), and frames of every size go both ways.
async fn exchange<A, B>(mut a: EciesStream<A>, mut b: EciesStream<B>, (ida, idb): (PeerId, PeerId))
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    assert_eq!(a.remote_id(), idb);
    assert_eq!(b.remote_id(), ida);
    for size in [0usize, 1, 15, 16, 17, 1000, 70_000] {
        let msg = Bytes::from((0..size).map(|i| i as u8).collect::<Vec<_>>());
        a.send(msg.clone()).await.expect("send a");
        assert_eq!(b.next().await.expect("frame").expect("ok"), msg);
        b.send(msg.clone()).await.expect("send b");
        assert_eq!(a.next().await.expect("frame").expect("ok"), msg);
    }
}

/// An initiator and a recipient after the handshake over an in-memory pipe, and their ids.
async fn duplex_pair() -> ((EciesStream<DuplexStream>, EciesStream<DuplexStream>), (PeerId, PeerId))
{
    let (ska, ida) = key();
    let (skb, idb) = key();
    let (x, y) = duplex(PIPE);
    let (a, b) = tokio::join!(EciesStream::connect(x, ska, idb), EciesStream::incoming(y, skb));
    ((a.expect("initiator"), b.expect("recipient")), (ida, idb))
}

#[tokio::test]
async fn handshake_and_frames_over_duplex() {
    let ((a, b), ids) = duplex_pair().await;
    exchange(a, b, ids).await;
}

#[tokio::test]
async fn handshake_and_frames_over_tcp() {
    let (ska, ida) = key();
    let (skb, idb) = key();
    let (a, b) = leafsync_p2p::test_utils::ecies_pair(ska, skb).await;
    exchange(a, b, (ida, idb)).await;
}

/// Our server's handshake running on one end of a pipe, and a hand-driven initiator on the other
/// (its raw end and its ECIES state) that has sent nothing yet.
fn raw_initiator()
-> (JoinHandle<Result<EciesStream<DuplexStream>, EciesError>>, DuplexStream, Ecies) {
    let (ska, _) = key();
    let (skb, idb) = key();
    let (x, y) = duplex(PIPE);
    let server = tokio::spawn(EciesStream::incoming(y, skb));
    (server, x, Ecies::new_initiator(ska, idb).expect("initiator"))
}

/// A pre-EIP-8 initiator (raw legacy auth) gets a legacy ack and a working frame stream.
#[tokio::test]
async fn legacy_initiator_is_accepted_on_a_live_stream() {
    let (server, mut x, mut a) = raw_initiator();
    x.write_all(&a.create_auth_legacy().expect("auth")).await.expect("write");
    let mut ack = vec![0u8; LEGACY_ACK_LEN];
    x.read_exact(&mut ack).await.expect("ack");
    a.read_ack(&ack).expect("legacy ack decodes");
    let mut codec = FrameCodec::new(a.secrets().expect("secrets"));
    let mut b = server.await.expect("join").expect("recipient");

    let mut out = BytesMut::new();
    codec.encode_frame(b"legacy hello", &mut out).expect("encode");
    x.write_all(&out).await.expect("write frame");
    assert_eq!(&b.next().await.expect("frame").expect("ok")[..], b"legacy hello");
    b.send(Bytes::from_static(b"reply")).await.expect("send");
    let mut buf = BytesMut::new();
    let frame = loop {
        if let Some(f) = codec.decode_frame(&mut buf).expect("decode") {
            break f;
        }
        let mut chunk = [0u8; 256];
        let n = x.read(&mut chunk).await.expect("read");
        assert!(n > 0, "eof");
        buf.extend_from_slice(&chunk[..n]);
    };
    assert_eq!(&frame[..], b"reply");
}

async fn recipient_error(bytes: Vec<u8>, skb: SecretKey) -> EciesError {
    let (mut x, y) = duplex(PIPE);
    let server = tokio::spawn(EciesStream::incoming(y, skb));
    x.write_all(&bytes).await.expect("write");
    drop(x);
    server.await.expect("no panic").expect_err("must fail")
}

#[tokio::test]
async fn malformed_auth_packets_fail_cleanly() {
    let (skb, idb) = key();
    let pkb = pk_from_id(&idb).expect("pk");

    // random bytes behind a plausible EIP-8 prefix: the ECIES point or tag is wrong
    let mut junk = vec![0x01, 0x90];
    junk.extend((0..400).map(|_| rand::random::<u8>()));
    let e = recipient_error(junk, skb).await;
    assert!(e.is_protocol_breach(), "{e}");

    // junk starting with 0x04: tried as legacy (307 bytes), then as EIP-8 (0x0400 = 1024
    // bytes after the prefix); both fail
    let mut junk = vec![0x04, 0x00];
    junk.extend((0..1024).map(|_| rand::random::<u8>()));
    let e = recipient_error(junk, skb).await;
    assert!(e.is_protocol_breach(), "{e}");
    // the same, cut after the legacy length: waits for the EIP-8 rest, then sees the EOF
    let mut junk = vec![0x04, 0x00];
    junk.extend((0..305).map(|_| rand::random::<u8>()));
    assert!(matches!(recipient_error(junk, skb).await, EciesError::UnexpectedEof));

    // announced size over the limit
    let e = recipient_error(vec![0xff, 0xff, 1, 2, 3], skb).await;
    assert!(matches!(e, EciesError::HandshakePacketTooLarge { size: 65535, .. }), "{e}");

    // announced size below the ECIES overhead
    let mut tiny = vec![0x00, 0x10];
    tiny.extend([0u8; 16]);
    assert!(matches!(recipient_error(tiny, skb).await, EciesError::MessageTooShort(16)));

    // valid ECIES to the right key, but the plaintext is not an auth RLP list
    let prefix = 400u16.to_be_bytes();
    let mut packet = prefix.to_vec();
    packet.extend(encrypt_message(&pkb, &[0x42u8; 400 - 113], &prefix));
    let e = recipient_error(packet, skb).await;
    assert!(matches!(e, EciesError::Rlp(_)), "{e}");

    // valid ECIES, RLP list with a short signature
    let body = alloy_rlp::encode(vec![
        Bytes::from(vec![1u8; 10]),
        Bytes::from(vec![2u8; 64]),
        Bytes::from(vec![3u8; 32]),
    ]);
    let mut plain = body.clone();
    plain.extend([0u8; 100]);
    let prefix = ((plain.len() + 113) as u16).to_be_bytes();
    let mut packet = prefix.to_vec();
    packet.extend(encrypt_message(&pkb, &plain, &prefix));
    let e = recipient_error(packet, skb).await;
    assert!(matches!(e, EciesError::BadFieldLength { field: "signature", .. }), "{e}");

    // truncated: the connection ends mid-packet
    let e = recipient_error(vec![0x01, 0x90, 1, 2, 3], skb).await;
    assert!(matches!(e, EciesError::UnexpectedEof), "{e}");
}

/// An auth addressed to another node id fails the tag check at the recipient.
#[tokio::test]
async fn auth_to_wrong_key_fails() {
    let (ska, _) = key();
    let (skb, _) = key();
    let (_, other) = key();
    let (x, y) = duplex(PIPE);
    let client = tokio::spawn(EciesStream::connect(x, ska, other));
    let e = EciesStream::incoming(y, skb).await.expect_err("wrong key");
    assert!(matches!(e, EciesError::TagMismatch), "{e}");
    drop(client);
}

/// A malformed ack fails the initiator.
#[tokio::test]
async fn malformed_ack_fails() {
    let (ska, _) = key();
    let (_, idb) = key();
    let (x, mut y) = duplex(PIPE);
    let client = tokio::spawn(EciesStream::connect(x, ska, idb));
    let mut prefix = [0u8; 2];
    y.read_exact(&mut prefix).await.expect("auth");
    let mut junk = vec![0x01, 0x20];
    junk.extend((0..0x120).map(|_| rand::random::<u8>()));
    y.write_all(&junk).await.expect("write");
    let e = client.await.expect("no panic").expect_err("bad ack");
    assert!(e.is_protocol_breach(), "{e}");
}

#[tokio::test(start_paused = true)]
async fn silent_peer_hits_handshake_timeout() {
    let (skb, idb) = key();
    let (ska, _) = key();
    let (x, _keep_open) = duplex(PIPE);
    let start = tokio::time::Instant::now();
    let e = EciesStream::incoming(x, skb).await.expect_err("timeout");
    assert!(matches!(e, EciesError::HandshakeTimeout), "{e}");
    assert!(start.elapsed() >= HANDSHAKE_TIMEOUT);

    let (x, _keep_open) = duplex(PIPE);
    let e = EciesStream::connect(x, ska, idb).await.expect_err("timeout");
    assert!(matches!(e, EciesError::HandshakeTimeout), "{e}");
}

/// A hand-driven initiator: our server's stream plus the attacker's raw socket and codec.
async fn raw_session() -> (EciesStream<DuplexStream>, DuplexStream, FrameCodec) {
    let (server, mut x, mut a) = raw_initiator();
    x.write_all(&a.create_auth().expect("auth")).await.expect("write");
    let mut ack = vec![0u8; 2];
    x.read_exact(&mut ack).await.expect("prefix");
    let len = u16::from_be_bytes([ack[0], ack[1]]) as usize;
    ack.resize(2 + len, 0);
    x.read_exact(&mut ack[2..]).await.expect("ack");
    a.read_ack(&ack).expect("ack decodes");
    let codec = FrameCodec::new(a.secrets().expect("secrets"));
    (server.await.expect("join").expect("server"), x, codec)
}

#[tokio::test]
async fn bad_header_mac_is_rejected() {
    let (mut server, mut x, mut codec) = raw_session().await;
    let mut out = BytesMut::new();
    codec.encode_frame(b"hello", &mut out).expect("encode");
    out[20] ^= 0x80; // inside the header MAC
    x.write_all(&out).await.expect("write");
    let e = server.next().await.expect("item").expect_err("mac");
    assert!(matches!(e, EciesError::HeaderMacMismatch) && e.is_protocol_breach(), "{e}");
}

#[tokio::test]
async fn bad_body_mac_is_rejected() {
    let (mut server, mut x, mut codec) = raw_session().await;
    let mut out = BytesMut::new();
    codec.encode_frame(b"first frame is fine", &mut out).expect("encode");
    let good = out.len();
    codec.encode_frame(b"hello", &mut out).expect("encode");
    out[good + 32] ^= 1; // first byte of the second frame's body ciphertext
    x.write_all(&out).await.expect("write");
    assert_eq!(&server.next().await.expect("item").expect("first ok")[..], b"first frame is fine");
    let e = server.next().await.expect("item").expect_err("mac");
    assert!(matches!(e, EciesError::BodyMacMismatch), "{e}");
}

#[tokio::test]
async fn oversize_frames_are_refused() {
    let (mut server, mut x, mut codec) = raw_session().await;
    // we never send a frame over 16 MiB - 1: the 24-bit size field cannot carry it
    let e = codec
        .encode_frame(&vec![0u8; MAX_FRAME_SIZE + 1], &mut BytesMut::new())
        .expect_err("too big");
    assert!(matches!(e, EciesError::FrameTooLarge { size, .. } if size == MAX_FRAME_SIZE + 1));
    // a receiver with a lower limit refuses a frame header announcing more, before its body
    server.codec_mut().set_max_frame_size(1024);
    let mut out = BytesMut::new();
    codec.encode_frame(&[7u8; 2048], &mut out).expect("encode");
    x.write_all(&out[..32]).await.expect("header only");
    let e = server.next().await.expect("item").expect_err("too big");
    assert!(matches!(e, EciesError::FrameTooLarge { size: 2048, limit: 1024 }), "{e}");
}

/// A full-size frame (16 MiB - 1) goes through.
#[tokio::test]
async fn largest_frame_roundtrips() {
    let ((mut a, mut b), _) = duplex_pair().await;
    let msg = Bytes::from(vec![0x5a; MAX_FRAME_SIZE]);
    let (sent, got) = tokio::join!(a.send(msg.clone()), b.next());
    sent.expect("send");
    assert_eq!(got.expect("frame").expect("ok").len(), MAX_FRAME_SIZE);
}
