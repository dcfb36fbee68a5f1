//! Review finding M2: inbound handshakes against slow and oversized input. Slow connections from
//! one IP cannot take every pending slot, established sessions are capped per IP, and a frame
//! larger than a Hello is refused at its header before Hello.

mod support;

use bytes::BytesMut;
use leafsync_p2p::{
    EciesError, EciesStream, P2PError,
    p2pstream::{DisconnectReason, HelloMessageWithProtocols, hello::MAX_HELLO_SIZE},
    peers::{
        DEFAULT_MAX_INBOUND_PER_IP, DEFAULT_MAX_PENDING_INBOUND_PER_IP, MAX_PENDING_INBOUND,
        NetworkEvent,
    },
    session::{LocalStatus, SessionError, SessionParams, establish_inbound, leaf_protocol},
};
use std::{net::Ipv4Addr, sync::Arc, time::Duration};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The IP of the honest peer: another loopback address than the attackers' 127.0.0.1.
const HONEST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// How long a slow client takes per byte: its handshake would take minutes.
const TRICKLE: Duration = Duration::from_millis(200);

/// A slowloris client: sends an EIP-8 size prefix and then one junk byte per [`TRICKLE`]; returns
/// whether the node closed the connection within `within`.
async fn slow_client(addr: std::net::SocketAddr, within: Duration) -> bool {
    // A connection never made was not closed by the node.
    let Ok(tcp) = tcp_from(Ipv4Addr::LOCALHOST, addr).await else { return false };
    let (mut read, mut write) = tcp.into_split();
    let trickle = async move {
        // An EIP-8 auth announcing 512 bytes, of which only a few ever come.
        let _ = write.write_all(&[0x02, 0x00]).await;
        loop {
            tokio::time::sleep(TRICKLE).await;
            if write.write_all(&[0x42]).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let closed = async move {
        let mut buf = [0u8; 64];
        // EOF (or a reset) ends the read: the node gave up on us.
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = trickle => false,
        () = closed => true,
        () = tokio::time::sleep(within) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_from_one_ip_cannot_lock_out_honest_peers() {
    let (mut cfg, head) = config(Arc::new(TestHandler::default()));
    cfg.max_pending_inbound_per_ip = DEFAULT_MAX_PENDING_INBOUND_PER_IP;
    cfg.max_inbound_per_ip = DEFAULT_MAX_INBOUND_PER_IP;
    let mut node = start(cfg, head).await;
    let addr = node.handle.local_addr();

    // As many slow connections from 127.0.0.1 as there are pending slots in all.
    let slow: Vec<_> = (0..MAX_PENDING_INBOUND)
        .map(|_| tokio::spawn(slow_client(addr, Duration::from_secs(3))))
        .collect();
    // Let the node accept them all before the honest peer comes.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (p2p, id) = raw_connect_from(node.handle.local_enode(), HONEST_IP)
        .await
        .expect("the honest peer gets a pending slot and through Hello");
    let (_p2p, _) = exchange_status(p2p, id).await;
    wait_event(&mut node.events, |e| match e {
        NetworkEvent::PeerConnected { peer, addr, .. } if *peer == id => Some(addr.ip()),
        _ => None,
    })
    .await;

    // All but the per-IP share were closed at once.
    let mut closed = 0;
    for client in slow {
        if client.await.expect("client task") {
            closed += 1;
        }
    }
    assert!(
        closed >= MAX_PENDING_INBOUND - DEFAULT_MAX_PENDING_INBOUND_PER_IP,
        "only {closed} of {MAX_PENDING_INBOUND} slow connections were closed at once"
    );
    node.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn established_inbound_sessions_are_capped_per_ip() {
    let (mut cfg, head) = config(Arc::new(TestHandler::default()));
    cfg.max_inbound_per_ip = 2;
    let mut node = start(cfg, head).await;
    let record = node.handle.local_enode();
    let _first = connected_peer(&mut node).await;
    let _second = connected_peer(&mut node).await;
    match raw_connect(record).await {
        Err(P2PError::Disconnected(reason)) => assert_eq!(reason, DisconnectReason::TooManyPeers),
        Err(other) => panic!("expected TooManyPeers, got {other:?}"),
        Ok(_) => panic!("a third session from 127.0.0.1 was admitted"),
    }
    // Another IP is not affected.
    let (p2p, id) = raw_connect_from(record, HONEST_IP).await.expect("other IP admitted");
    let _third = exchange_status(p2p, id).await;
    // Our side has its Status; the node registers the session when it has ours.
    wait_event(&mut node.events, |e| match e {
        NetworkEvent::PeerConnected { peer, .. } if *peer == id => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(node.handle.peers().await.len(), 3);
    node.handle.shutdown().await;
}

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
        let ours = LocalStatus::leaf(good_status(), chain().fork_filter(0, 0));
        establish_inbound(tcp, &params, &ours).await
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
