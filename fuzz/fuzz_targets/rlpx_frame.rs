//! The RLPx frame decoder: arbitrary bytes into a keyed codec (any result but a panic), and the
//! input as a frame body through a matching pair of codecs (must roundtrip).
#![no_main]

use alloy_primitives::B256;
use bytes::BytesMut;
use leafsync_p2p::ecies::{FrameCodec, Secrets, algorithm::initial_mac};
use libfuzzer_sys::fuzz_target;

fn codec(egress_nonce: u8, ingress_nonce: u8) -> FrameCodec {
    let mac_secret = B256::repeat_byte(0x33);
    FrameCodec::new(Secrets {
        aes_secret: B256::repeat_byte(0x44),
        mac_secret,
        egress_mac: initial_mac(mac_secret, B256::repeat_byte(egress_nonce), b"init"),
        ingress_mac: initial_mac(mac_secret, B256::repeat_byte(ingress_nonce), b"init"),
    })
}

fuzz_target!(|data: &[u8]| {
    let mut rx = codec(1, 2);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = rx.decode_frame(&mut buf) {}

    let (mut a, mut b) = (codec(1, 2), codec(2, 1));
    let mut wire = BytesMut::new();
    a.encode_frame(data, &mut wire).expect("small frames encode");
    let got = b.decode_frame(&mut wire).expect("valid MACs").expect("complete frame");
    assert_eq!(&got[..], data);
});
