//! `docs/p2p.md` states every limit, timeout, bound and score as `NAME = value`; each must equal
//! the constant of that name.

use leafsync_p2p::{
    discovery::{
        DEFAULT_CANDIDATE_CHANNEL_CAPACITY, DISCV5_MAX_PACKETS_PER_IP_PER_SECOND,
        DISCV5_MAX_PACKETS_PER_NODE_PER_SECOND, DISCV5_MAX_PACKETS_PER_SECOND,
        MAX_REMEMBERED_CANDIDATES, REOFFER_AFTER,
    },
    ecies::HANDSHAKE_TIMEOUT,
    leaf::protocol::{MAX_IN_FLIGHT_REQUESTS, REQUEST_TIMEOUT, STATUS_TIMEOUT},
    p2pstream::{
        PING_INTERVAL, PING_TIMEOUT,
        hello::MAX_HELLO_SIZE,
        stream::{
            DISCONNECT_TIMEOUT, HELLO_TIMEOUT, MAX_DISCONNECT_SIZE, MAX_PINGS_PER_WINDOW,
            PING_RATE_WINDOW,
        },
    },
    peers::{
        ACCEPT_ERROR_BACKOFF, BLOCK_RANGE_UPDATE_INTERVAL, COMMAND_CHANNEL_CAPACITY,
        DEFAULT_DIAL_INTERVAL, DEFAULT_MAX_INBOUND, DEFAULT_MAX_INBOUND_PER_IP,
        DEFAULT_MAX_OUTBOUND, DEFAULT_MAX_PENDING_INBOUND_PER_IP, DEFAULT_MAX_STATIC_PEERS,
        DIAL_BACKOFF_BASE, DIAL_BACKOFF_MAX, EVENT_CHANNEL_CAPACITY, HANDLER_CALLS_PER_CORE,
        HANDSHAKE_EVENT_CHANNEL_CAPACITY, HEADER_SOURCE_TIMEOUT, INBOUND_HANDSHAKE_TIMEOUT,
        INBOUND_THROTTLE, MAX_BACKOFF_ENTRIES, MAX_CONCURRENT_HANDLER_CALLS,
        MAX_CONCURRENT_HANDLER_CALLS_PER_PEER, MAX_CONCURRENT_HEADER_CALLS_PER_PEER,
        MAX_HEAD_NUMBER, MAX_HEAD_REWIND, MAX_HEADERS_RESPONSE_BYTES, MAX_PENDING_INBOUND,
        MAX_QUEUED_CANDIDATES, MAX_QUEUED_CANDIDATES_PER_IP, MAX_QUEUED_CANDIDATES_PER_SUBNET,
        MAX_THROTTLED_HOSTS, MIN_CONCURRENT_HANDLER_CALLS, NEW_HEAD_MIN_INTERVAL,
        OUTBOUND_HANDSHAKE_TIMEOUT, SESSION_CLOSE_TIMEOUT, SESSION_COMMAND_CHANNEL_CAPACITY,
        SESSION_EVENT_CHANNEL_CAPACITY, SESSION_SEND_TIMEOUT, SHUTDOWN_TIMEOUT,
        STALL_PENALTY_WINDOW, score,
    },
    session::{DIAL_TIMEOUT, MAX_ETH_SESSION_FRAME_SIZE, MAX_SESSION_FRAME_SIZE},
};
use std::time::Duration;

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

#[test]
fn every_constant_in_the_p2p_doc_matches_the_code() {
    let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/p2p.md"));
    let constants = [
        ("DIAL_TIMEOUT", secs(DIAL_TIMEOUT)),
        ("HANDSHAKE_TIMEOUT", secs(HANDSHAKE_TIMEOUT)),
        ("HELLO_TIMEOUT", secs(HELLO_TIMEOUT)),
        ("PING_INTERVAL", secs(PING_INTERVAL)),
        ("PING_TIMEOUT", secs(PING_TIMEOUT)),
        ("DISCONNECT_TIMEOUT", secs(DISCONNECT_TIMEOUT)),
        ("STATUS_TIMEOUT", secs(STATUS_TIMEOUT)),
        ("REQUEST_TIMEOUT", secs(REQUEST_TIMEOUT)),
        ("MAX_IN_FLIGHT_REQUESTS", MAX_IN_FLIGHT_REQUESTS.to_string()),
        (
            "MAX_CONCURRENT_HANDLER_CALLS_PER_PEER",
            MAX_CONCURRENT_HANDLER_CALLS_PER_PEER.to_string(),
        ),
        ("COMMAND_CHANNEL_CAPACITY", COMMAND_CHANNEL_CAPACITY.to_string()),
        ("SESSION_EVENT_CHANNEL_CAPACITY", SESSION_EVENT_CHANNEL_CAPACITY.to_string()),
        ("HANDSHAKE_EVENT_CHANNEL_CAPACITY", HANDSHAKE_EVENT_CHANNEL_CAPACITY.to_string()),
        ("SESSION_COMMAND_CHANNEL_CAPACITY", SESSION_COMMAND_CHANNEL_CAPACITY.to_string()),
        ("DEFAULT_CANDIDATE_CHANNEL_CAPACITY", DEFAULT_CANDIDATE_CHANNEL_CAPACITY.to_string()),
        ("EVENT_CHANNEL_CAPACITY", EVENT_CHANNEL_CAPACITY.to_string()),
        ("DEFAULT_MAX_INBOUND", DEFAULT_MAX_INBOUND.to_string()),
        ("DEFAULT_MAX_OUTBOUND", DEFAULT_MAX_OUTBOUND.to_string()),
        ("MAX_PENDING_INBOUND", MAX_PENDING_INBOUND.to_string()),
        ("MAX_QUEUED_CANDIDATES", MAX_QUEUED_CANDIDATES.to_string()),
        ("DEFAULT_DIAL_INTERVAL", secs(DEFAULT_DIAL_INTERVAL)),
        ("DIAL_BACKOFF_BASE", secs(DIAL_BACKOFF_BASE)),
        ("DIAL_BACKOFF_MAX", secs(DIAL_BACKOFF_MAX)),
        ("MAX_BACKOFF_ENTRIES", MAX_BACKOFF_ENTRIES.to_string()),
        ("SHUTDOWN_TIMEOUT", secs(SHUTDOWN_TIMEOUT)),
        ("ACCEPT_ERROR_BACKOFF", format!("{}ms", ACCEPT_ERROR_BACKOFF.as_millis())),
        ("SESSION_CLOSE_TIMEOUT", secs(SESSION_CLOSE_TIMEOUT)),
        ("SESSION_SEND_TIMEOUT", secs(SESSION_SEND_TIMEOUT)),
        ("MAX_SCORE", score::MAX_SCORE.to_string()),
        ("MIN_SCORE", score::MIN_SCORE.to_string()),
        ("SCORE_HALF_LIFE", secs(score::SCORE_HALF_LIFE)),
        ("HIGH_PENALTY", score::HIGH_PENALTY.to_string()),
        ("MID_PENALTY", score::MID_PENALTY.to_string()),
        ("LOW_PENALTY", score::LOW_PENALTY.to_string()),
        ("MIN_SCORE_BEFORE_DISCONNECT", score::MIN_SCORE_BEFORE_DISCONNECT.to_string()),
        ("MIN_SCORE_BEFORE_BAN", score::MIN_SCORE_BEFORE_BAN.to_string()),
        ("BAN_DURATION", secs(score::BAN_DURATION)),
        ("MAX_REMEMBERED_SCORES", score::MAX_REMEMBERED_SCORES.to_string()),
        ("SCORES_AFTER_PRUNE", score::SCORES_AFTER_PRUNE.to_string()),
        ("MAX_BANS", score::MAX_BANS.to_string()),
        ("MAX_HELLO_SIZE", MAX_HELLO_SIZE.to_string()),
        ("MAX_SESSION_FRAME_SIZE", MAX_SESSION_FRAME_SIZE.to_string()),
        ("MAX_ETH_SESSION_FRAME_SIZE", MAX_ETH_SESSION_FRAME_SIZE.to_string()),
        ("HEADER_SOURCE_TIMEOUT", secs(HEADER_SOURCE_TIMEOUT)),
        ("MAX_CONCURRENT_HEADER_CALLS_PER_PEER", MAX_CONCURRENT_HEADER_CALLS_PER_PEER.to_string()),
        ("MAX_HEADERS_RESPONSE_BYTES", MAX_HEADERS_RESPONSE_BYTES.to_string()),
        ("BLOCK_RANGE_UPDATE_INTERVAL", BLOCK_RANGE_UPDATE_INTERVAL.to_string()),
        ("MAX_PINGS_PER_WINDOW", MAX_PINGS_PER_WINDOW.to_string()),
        ("MAX_DISCONNECT_SIZE", MAX_DISCONNECT_SIZE.to_string()),
        ("PING_RATE_WINDOW", secs(PING_RATE_WINDOW)),
        ("MAX_HEAD_NUMBER", MAX_HEAD_NUMBER.to_string()),
        ("MAX_HEAD_REWIND", MAX_HEAD_REWIND.to_string()),
        ("NEW_HEAD_MIN_INTERVAL", secs(NEW_HEAD_MIN_INTERVAL)),
        ("HANDLER_CALLS_PER_CORE", HANDLER_CALLS_PER_CORE.to_string()),
        ("MIN_CONCURRENT_HANDLER_CALLS", MIN_CONCURRENT_HANDLER_CALLS.to_string()),
        ("MAX_CONCURRENT_HANDLER_CALLS", MAX_CONCURRENT_HANDLER_CALLS.to_string()),
        ("STALL_PENALTY_WINDOW", secs(STALL_PENALTY_WINDOW)),
        ("DEFAULT_MAX_PENDING_INBOUND_PER_IP", DEFAULT_MAX_PENDING_INBOUND_PER_IP.to_string()),
        ("INBOUND_HANDSHAKE_TIMEOUT", secs(INBOUND_HANDSHAKE_TIMEOUT)),
        ("OUTBOUND_HANDSHAKE_TIMEOUT", secs(OUTBOUND_HANDSHAKE_TIMEOUT)),
        ("DEFAULT_MAX_INBOUND_PER_IP", DEFAULT_MAX_INBOUND_PER_IP.to_string()),
        ("INBOUND_THROTTLE", secs(INBOUND_THROTTLE)),
        ("MAX_THROTTLED_HOSTS", MAX_THROTTLED_HOSTS.to_string()),
        ("MAX_QUEUED_CANDIDATES_PER_IP", MAX_QUEUED_CANDIDATES_PER_IP.to_string()),
        ("MAX_QUEUED_CANDIDATES_PER_SUBNET", MAX_QUEUED_CANDIDATES_PER_SUBNET.to_string()),
        ("DEFAULT_MAX_STATIC_PEERS", DEFAULT_MAX_STATIC_PEERS.to_string()),
        ("DISCV5_MAX_PACKETS_PER_SECOND", DISCV5_MAX_PACKETS_PER_SECOND.to_string()),
        ("REOFFER_AFTER", secs(REOFFER_AFTER)),
        ("MAX_REMEMBERED_CANDIDATES", MAX_REMEMBERED_CANDIDATES.to_string()),
        ("DISCV5_MAX_PACKETS_PER_IP_PER_SECOND", DISCV5_MAX_PACKETS_PER_IP_PER_SECOND.to_string()),
        (
            "DISCV5_MAX_PACKETS_PER_NODE_PER_SECOND",
            DISCV5_MAX_PACKETS_PER_NODE_PER_SECOND.to_string(),
        ),
    ];
    for (name, value) in &constants {
        let needle = format!("`{name} = {value}`");
        assert!(doc.contains(&needle), "docs/p2p.md must state {needle}");
    }
    // And every `NAME = value` the doc states is checked above.
    for code in doc.split('`').skip(1).step_by(2) {
        if let Some((name, _)) = code.split_once(" = ")
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        {
            assert!(constants.iter().any(|(n, _)| *n == name), "{name} in the doc is not checked");
        }
    }
}
