//! Review finding M2: inbound handshakes against oversized input: a frame larger than a Hello is
//! refused at its header before Hello.

mod support;

use bytes::BytesMut;
use leafsync_p2p::{
    EciesError, EciesStream, P2PError,
    p2pstream::{HelloMessageWithProtocols, hello::MAX_HELLO_SIZE},
    session::{SessionError, SessionParams, establish_inbound, leaf_protocol},
};
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;

/// Before Hello only a Hello may come: a frame announcing 3 KiB is refused from its header (the
/// body is never sent here), at once rather than after `HELLO_TIMEOUT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_frame_before_hello_is_refused_at_its_header() {
    let (node_sk, node_id) = key();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let params = SessionParams {
            secret_key: node_sk,
            hello: HelloMessageWithProtocols::new(
                "leafsync/test",
                vec![leaf_protocol()],
                0,
                node_id,
            ),
            chain: chain(),
        };
        let filter = chain().fork_filter(0, 0);
        establish_inbound(tcp, &params, good_status(), &filter).await
    });

    let (sk, _) = key();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut ecies = EciesStream::connect(tcp, sk, node_id).await.expect("ecies");
    let mut frame = BytesMut::new();
    ecies.codec_mut().encode_frame(&[0u8; 3 * 1024], &mut frame).expect("encode");
    // Only the header and its MAC.
    ecies.get_mut().write_all(&frame[..32]).await.expect("write header");

    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("refused before the Hello timeout")
        .expect("server task");
    match result {
        Err(SessionError::P2P(P2PError::Ecies(EciesError::FrameTooLarge { size, limit }))) => {
            assert_eq!((size, limit), (3 * 1024, MAX_HELLO_SIZE));
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
}
