//! Issue 14's end-to-end bootstrap over snap/1, with processes, from TOML files: anvil runs a
//! workload (transfers, deployments, storage writes); daemon A bootstraps from anvil's genesis,
//! follows it and serves eth/69 + snap/1 from its leafdb (`serve.snap = true`) with `leaf/1`
//! off (`serve.leaf = false`: a stand-in for geth); daemon B starts empty with anvil as its
//! execution client, A as its static peer and `sync.sources = ["snap"]`, syncs the state at
//! anvil's head over snap/1, then follows anvil's new blocks. Roots equal anvil's; `tool verify`
//! is clean on B's datadir. And a geth-like peer (eth/69 + snap/1 by hand) asking a daemon for
//! headers gets anvil's, each hashing to anvil's block hash. Fails, naming the install command,
//! when anvil is not installed.
#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

mod support;

use leafsync_ingest::test_utils as workload;
use leafsync_p2p::test_utils::raw;

use support::{
    both_follow_then_stop, line_with, sigterm_and_wait, start_daemon, wait_status, wait_synced_at,
};
use workload::{AnvilGenesis, Workload, anvil_genesis, anvil_turn, dump_state_alloc, mine_blocks};

/// Blocks mined before B starts: deployments every 4th block, storage writes from the second
/// deployment on.
const FIRST: u64 = 12;
/// Blocks mined while both follow.
const MORE: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_syncs_over_snap_from_a_snap_server_and_follows_anvil() {
    let AnvilGenesis { turn: _turn, anvil, mut rpc, dir, genesis_file, .. } = anvil_genesis().await;
    let genesis = rpc.block(0).await.unwrap();
    let chain = support::dev_chain(genesis.hash);
    let toml =
        |name: &str, extra: &str| support::daemon_toml(&dir.path().join(name), &chain, None, extra);

    // A: bootstraps from anvil's genesis, follows it, serves eth/69 + snap/1 and no leaf/1.
    let a_extra = format!(
        "[el]\nrpc = \"{}\"\ngenesis = {genesis_file:?}\n\n[serve]\nsnap = true\nleaf = false\n",
        anvil.ws()
    );
    let (mut a, a_lines) = start_daemon(dir.path(), "a", &toml("a", &a_extra));
    let a_enode = line_with(&a_lines, "enode: ");
    let a_admin = line_with(&a_lines, "admin: ");
    let mut workload = Workload::new(&mut rpc).await;
    for _ in 0..FIRST {
        let n = workload.mine_block(&mut rpc).await;
        support::wait_applied(&[&a_admin], n).await;
    }
    assert!(workload.contracts.len() >= 3, "deployments happened");
    wait_status(&a_admin, "A did not follow anvil", |s| s["sync"]["head"]["number"] == FIRST).await;

    // B: empty, anvil as its execution client (the pivot), A as its only peer, snap/1 only.
    let b_extra = format!("[el]\nrpc = \"{}\"\n\n[sync]\nsources = [\"snap\"]\n", anvil.ws());
    let b_toml = toml("b", &b_extra).replace(
        "discovery = false",
        &format!("discovery = false\nstatic_peers = [\"{a_enode}\"]"),
    );
    let (mut b, b_lines) = start_daemon(dir.path(), "b", &b_toml);
    let b_admin = line_with(&b_lines, "admin: ");
    let s = wait_synced_at(&b_admin, &mut rpc, FIRST).await;
    let synced = &s["sync"]["stateSync"];
    assert!(synced["slots"].as_u64().unwrap() > 0 && synced["codes"].as_u64().unwrap() > 0, "{s}");
    let peers = s["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "B's only peer is A: {s}");
    assert_eq!(peers[0]["syncsOver"], "snap", "{s}");
    assert_eq!(peers[0]["protocols"], serde_json::json!(["eth/69", "snap/1"]), "{s}");

    // New blocks: both follow them, B from its synced pivot on.
    for _ in 0..MORE {
        let n = workload.mine_block(&mut rpc).await;
        support::wait_applied(&[&a_admin, &b_admin], n).await;
    }
    both_follow_then_stop(
        (&mut a, &a_admin),
        (&mut b, &b_admin, &dir.path().join("b")),
        &mut rpc,
        FIRST + MORE,
        &["sync:    done at pivot", "syncs over snap (eth/69 snap/1)"],
    )
    .await;
}

/// Capability indexes on a raw peer offering eth/69 and snap/1 (sorted by name).
const ETH: usize = 0;

/// The headers of a `BlockHeaders` payload `[request_id, [header, ...]]`, each as its RLP.
fn block_headers(payload: &[u8]) -> (u64, Vec<Vec<u8>>) {
    let mut buf = payload;
    let outer = alloy_rlp::Header::decode(&mut buf).unwrap();
    assert!(outer.list);
    let id = <u64 as alloy_rlp::Decodable>::decode(&mut buf).unwrap();
    let list = alloy_rlp::Header::decode(&mut buf).unwrap();
    let mut items = &buf[..list.payload_length];
    let mut headers = Vec::new();
    while !items.is_empty() {
        let mut rest = items;
        let h = alloy_rlp::Header::decode(&mut rest).unwrap();
        let len = items.len() - rest.len() + h.payload_length;
        headers.push(items[..len].to_vec());
        items = &items[len..];
    }
    (id, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_geth_like_peer_gets_anvils_headers_from_a_daemon() {
    use alloy_primitives::keccak256;
    use leafsync_p2p::{
        CapabilityMessage,
        chain::ChainSpec,
        eth::{EthMessage, GetBlockHeaders, HashOrNumber, HeadersRequest},
        peers::{EthHead, NodeRecord},
        session::Subprotocol,
    };

    let (_turn, anvil) = anvil_turn().await;
    let mut rpc = anvil.rpc();
    mine_blocks(&mut rpc, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let genesis_file = dump_state_alloc(&mut rpc, dir.path()).await;
    let genesis = rpc.block(0).await.unwrap();
    let head = rpc.block(3).await.unwrap();
    let extra = format!(
        "[el]\nrpc = \"{}\"\ngenesis = {genesis_file:?}\n\n[serve]\nsnap = true\n",
        anvil.ws()
    );
    let chain_lines = support::dev_chain(genesis.hash);
    let toml = support::daemon_toml(&dir.path().join("a"), &chain_lines, None, &extra);
    let (mut daemon, lines) = start_daemon(dir.path(), "a", &toml);
    let enode: NodeRecord = line_with(&lines, "enode: ").parse().unwrap();

    // The eth/69 handshake, as geth does it, at anvil's head.
    let protocols = vec![Subprotocol::Eth.protocol(), Subprotocol::Snap.protocol()];
    let (mut p2p, _) = raw::raw_connect_offering(enode, protocols).await.unwrap();
    let chain = ChainSpec::preset("dev").unwrap().with_genesis_hash(genesis.hash);
    let ours = EthHead {
        number: head.number,
        hash: head.hash,
        timestamp: head.timestamp,
        earliest: 0,
        fork_id: None,
    };
    let status = alloy_rlp::encode(ours.status(&chain));
    let send =
        |id: u8, payload: Vec<u8>| CapabilityMessage { cap: ETH, id, payload: payload.into() };
    futures::SinkExt::send(&mut p2p, send(0x00, status)).await.unwrap();
    let theirs = raw::next_raw(&mut p2p).await.unwrap();
    match EthMessage::decode(theirs.id, &theirs.payload) {
        Ok(EthMessage::Status(s)) => {
            assert_eq!(s.genesis, genesis.hash);
            assert_eq!(s.earliest, s.latest, "a range from our head: we serve no history");
        }
        other => panic!("expected the daemon's eth Status, got {other:?}"),
    }

    // Backwards from the head by number, then forwards from a hash.
    for (request_id, origin, reverse, numbers) in [
        (1, HashOrNumber::Number(3), true, vec![3, 2, 1, 0]),
        (2, HashOrNumber::Hash(rpc.block(1).await.unwrap().hash), false, vec![1, 2, 3]),
    ] {
        let query = HeadersRequest { origin, amount: 4, skip: 0, reverse };
        let request = alloy_rlp::encode(GetBlockHeaders { request_id, query });
        futures::SinkExt::send(&mut p2p, send(0x03, request)).await.unwrap();
        let answer = loop {
            let msg = raw::next_raw(&mut p2p).await.unwrap();
            if (msg.cap, msg.id) == (ETH, 0x04) {
                break msg;
            }
        };
        let (id, headers) = block_headers(&answer.payload);
        assert_eq!((id, headers.len()), (request_id, numbers.len()));
        for (rlp, n) in headers.iter().zip(numbers) {
            assert_eq!(keccak256(rlp), rpc.block(n).await.unwrap().hash, "header {n}");
        }
    }
    sigterm_and_wait(&mut daemon);
}
