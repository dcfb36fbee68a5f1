//! The session layer alone (no peer manager): `establish_outbound` against `establish_inbound`
//! over loopback TCP, typed messages both ways, and the Status checks on both sides.

mod support;

use alloy_primitives::B256;
use futures::{SinkExt, StreamExt};
use leafsync_p2p::{
    leaf::Status,
    p2pstream::{DisconnectReason, HelloMessageWithProtocols, P2PError},
    session::{
        LocalStatus, PeerMessage, SessionError, SessionParams, establish_inbound,
        establish_outbound, leaf_protocol,
    },
};
use support::*;
use tokio::net::TcpListener;

fn params() -> (SessionParams, leafsync_p2p::PeerId) {
    let (secret_key, id) = key();
    let hello = HelloMessageWithProtocols::new("session-test/0", vec![leaf_protocol()], 0, id);
    (SessionParams { secret_key, hello, chain: chain() }, id)
}

/// Runs both sides; `theirs` is the Status the accepting side announces.
async fn pair(
    theirs: Status,
) -> (
    Result<leafsync_p2p::session::Established, SessionError>,
    Result<leafsync_p2p::session::Established, SessionError>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (dialer, _) = params();
    let (acceptor, acceptor_id) = params();
    let filter = chain().fork_filter(0, 0);
    let (acceptor_status, dialer_status) =
        (LocalStatus::leaf(theirs, filter.clone()), LocalStatus::leaf(good_status(), filter));
    let accept = async {
        let (tcp, _) = listener.accept().await.expect("accept");
        establish_inbound(tcp, &acceptor, &acceptor_status).await
    };
    let dial = establish_outbound(addr, acceptor_id, &dialer, &dialer_status);
    tokio::time::timeout(WAIT, async { tokio::join!(dial, accept) }).await.expect("bounded")
}

#[tokio::test]
async fn both_directions_establish_and_exchange_typed_messages() {
    let (dialed, accepted) = Box::pin(pair(good_status())).await;
    let (mut a, mut b) = (dialed.expect("outbound"), accepted.expect("inbound"));
    assert_eq!(a.status.leaf, Some(good_status()));
    assert_eq!(b.status.leaf, Some(good_status()));
    assert_eq!((a.status.eth, a.status.snap), (None, false));
    assert_eq!(a.hello.client_version, "session-test/0");

    let request = get_codes_message(0, &[B256::repeat_byte(3)]);
    a.stream.send(request.clone()).await.expect("send");
    let got = b.stream.next().await.expect("message").expect("valid");
    assert_eq!(got, PeerMessage::Leaf(request));
    b.stream.send(codes(0, 1)).await.expect("send");
    assert_eq!(b.stream.disconnect(DisconnectReason::ClientQuitting).await.ok(), Some(()));
    assert_eq!(a.stream.next().await.expect("message").expect("valid"), codes(0, 1).into());
    match a.stream.next().await {
        Some(Err(SessionError::P2P(P2PError::Disconnected(reason)))) => {
            assert_eq!(reason, DisconnectReason::ClientQuitting)
        }
        other => panic!("expected the Disconnect, got {other:?}"),
    }
}

#[tokio::test]
async fn a_mismatching_status_fails_both_sides_with_its_reason() {
    let wrong = Status { network_id: 12345, ..good_status() };
    let (dialed, accepted) = Box::pin(pair(wrong)).await;
    // The dialer sees the acceptor's wrong network and disconnects with "useless peer". The
    // acceptor's own check passes (the dialer is on its chain); it then reads the Disconnect.
    match dialed {
        Err(SessionError::Status(e)) => {
            assert_eq!(e.disconnect_reason(), DisconnectReason::UselessPeer);
            assert!(e.should_ban());
        }
        other => panic!("dialer: {other:?}"),
    }
    let mut accepted = accepted.expect("the acceptor's check passes");
    match accepted.stream.next().await {
        Some(Err(SessionError::P2P(P2PError::Disconnected(reason)))) => {
            assert_eq!(reason, DisconnectReason::UselessPeer)
        }
        other => panic!("acceptor expected the Disconnect, got {other:?}"),
    }
}
