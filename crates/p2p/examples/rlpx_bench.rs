//! RLPx throughput benchmark: frame codec MB/s (snappy + AES-256-CTR + keccak MAC, and the
//! reverse) for 1 KiB, 64 KiB and 1 MiB messages, and completed handshakes (ECIES + Hello) per
//! second over loopback TCP. Prints one JSON object per line.
//!
//! Run: `cargo run -p leafsync-p2p --example rlpx_bench` (add `-- --quick` for a short run).

use bytes::{Bytes, BytesMut};
use leafsync_p2p::{
    EciesStream, HelloMessageWithProtocols, UnauthedP2PStream,
    ecies::algorithm::id_from_pk,
    p2pstream::{
        Protocol,
        stream::{decompress, encode_message, split_message},
    },
    test_utils::frame_codecs,
};
use rand::RngCore;
use secp256k1::{PublicKey, SECP256K1, SecretKey};
use std::time::{Duration, Instant};

/// Wire bytes encoded per batch before decoding them (bounds memory; the MAC chain requires
/// decoding in the order of encoding).
const BATCH_BYTES: usize = 16 << 20;

/// Half random bytes (hashes do not compress), half zero runs (RLP padding, empty fields).
fn payload(size: usize) -> Vec<u8> {
    let mut p = vec![0u8; size];
    rand::rng().fill_bytes(&mut p[..size / 2]);
    p
}

fn bench_codec(size: usize, duration: Duration) {
    let (mut tx, mut rx) = frame_codecs();
    let msg = payload(size);
    let per_batch = (BATCH_BYTES / size).max(1);
    let (mut enc, mut dec, mut n) = (Duration::ZERO, Duration::ZERO, 0u64);
    let mut wire = BytesMut::new();
    let start = Instant::now();
    while start.elapsed() < duration {
        wire.clear();
        let t = Instant::now();
        for _ in 0..per_batch {
            let body: Bytes = encode_message(0x13, &msg, true).expect("encode");
            tx.encode_frame(&body, &mut wire).expect("frame");
        }
        enc += t.elapsed();
        let wire_len = wire.len();
        let t = Instant::now();
        for _ in 0..per_batch {
            let frame = rx.decode_frame(&mut wire).expect("decode").expect("complete");
            let (_, compressed) = split_message(&frame).expect("id");
            let plain = decompress(compressed).expect("snappy");
            assert_eq!(plain.len(), size);
        }
        dec += t.elapsed();
        assert!(wire.is_empty(), "{wire_len} wire bytes fully consumed");
        n += per_batch as u64;
    }
    let mb = (n as f64) * (size as f64) / 1e6;
    println!(
        "{{\"bench\":\"frame_codec\",\"message_bytes\":{size},\"messages\":{n},\"encode_mb_per_s\":{:.1},\"decode_mb_per_s\":{:.1},\"note\":\"snappy+AES-256-CTR+keccak MAC; payload half random, half zeros\"}}",
        mb / enc.as_secs_f64(),
        mb / dec.as_secs_f64()
    );
}

async fn bench_handshakes(duration: Duration, concurrency: usize) {
    let server_key = SecretKey::new(&mut rand::rng());
    let server_id = id_from_pk(&PublicKey::from_secret_key(SECP256K1, &server_key));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let protocols = vec![Protocol::new("leaf", 1, 10)];
    let server_hello =
        HelloMessageWithProtocols::new("leafsync-bench", protocols.clone(), addr.port(), server_id);
    let server = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { return };
            let hello = server_hello.clone();
            tokio::spawn(async move {
                if let Ok(stream) = EciesStream::incoming(socket, server_key).await {
                    let _ = UnauthedP2PStream::new(stream).handshake(hello).await;
                }
            });
        }
    });
    let start = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let protocols = protocols.clone();
        clients.push(tokio::spawn(async move {
            let mut done = 0u64;
            while start.elapsed() < duration {
                let key = SecretKey::new(&mut rand::rng());
                let id = id_from_pk(&PublicKey::from_secret_key(SECP256K1, &key));
                let socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let stream = EciesStream::connect(socket, key, server_id).await.expect("ecies");
                let hello =
                    HelloMessageWithProtocols::new("leafsync-bench", protocols.clone(), 0, id);
                UnauthedP2PStream::new(stream).handshake(hello).await.expect("hello");
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for c in clients {
        total += c.await.expect("client");
    }
    let secs = start.elapsed().as_secs_f64();
    server.abort();
    println!(
        "{{\"bench\":\"handshake\",\"transport\":\"tcp 127.0.0.1\",\"concurrency\":{concurrency},\"handshakes\":{total},\"handshakes_per_s\":{:.1},\"note\":\"ECIES EIP-8 auth/ack + p2p Hello both ways, client and server on this machine\"}}",
        total as f64 / secs
    );
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let run = if quick { Duration::from_millis(300) } else { Duration::from_secs(3) };
    for size in [1 << 10, 64 << 10, 1 << 20] {
        bench_codec(size, run);
    }
    bench_handshakes(run, 1).await;
    bench_handshakes(run, 4).await;
}
