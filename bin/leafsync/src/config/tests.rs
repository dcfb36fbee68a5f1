//! Tests of the configuration: the documented file, the fixtures, the errors.
#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

use leafsync_p2p::test_utils::package_dir;
use std::path::{Path, PathBuf};

use alloy_primitives::B256;
use leafsync_p2p::chain::PRESET_NAMES;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::validate(FileConfig::parse(Path::new("test.toml"), text)?, "test.toml")
}

/// `text` is refused, and the error says each of `says`.
fn refused(text: &str, says: &[&str]) {
    match parse(text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => {
            let e = e.to_string();
            assert!(says.iter().all(|s| e.contains(s)), "{text}: {e}");
        }
    }
}

/// The documented file is the defaults, key for key.
#[test]
fn documented_config_is_the_defaults() {
    let text = include_str!("../../../../config/leafsync.toml");
    let file = FileConfig::parse(Path::new("config/leafsync.toml"), text).unwrap();
    assert_eq!(file, FileConfig::default());
    assert!(Config::validate(file, "config/leafsync.toml").is_ok());
}

/// Every key of the documented file (set or shown commented out) is in the reference.
#[test]
fn every_key_is_in_the_configuration_reference() {
    let file = include_str!("../../../../config/leafsync.toml");
    let reference = include_str!("../../../../docs/configuration.md");
    let mut section = String::new();
    let mut keys = 0;
    for line in file.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else { continue };
        if key.contains(' ') {
            continue;
        }
        let full = if section.is_empty() { key.to_string() } else { format!("{section}.{key}") };
        let found = reference.contains(&format!("| `{key}` |"))
            || reference.contains(&format!("| `{full}` |"));
        assert!(found, "`{full}` is not in docs/configuration.md");
        keys += 1;
    }
    assert!(keys >= 30, "parsed only {keys} keys");
}

#[test]
fn every_preset_loads() {
    for name in PRESET_NAMES {
        let extra = if name == "dev" {
            "genesis_hash = \"0x0101010101010101010101010101010101010101010101010101010101010101\"\n"
        } else {
            ""
        };
        let config = parse(&format!("chain = \"{name}\"\n{extra}")).unwrap();
        assert_eq!(config.chain.name, name);
        assert!(!config.chain.has_placeholder_genesis());
    }
}

#[test]
fn config_0_1_keeps_loading() {
    let path = package_dir(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/leafsync-0.1.toml");
    let config = Config::validate(FileConfig::read(&path).unwrap(), "fixture").unwrap();
    assert_eq!(config.chain.name, "sepolia");
    assert_eq!(config.network.listen.port(), 30404);
    assert_eq!(config.network.static_peers.len(), 1);
    assert_eq!(config.leafdb.block_cache_bytes, 1024 << 20);
    assert_eq!(config.leafdb.recent_blocks, 128, "defaults fill what the file omits");
    assert!(config.leafdb.direct_writes, "defaults fill what the file omits");
}

#[test]
fn direct_writes_can_be_turned_off() {
    let config = parse("[leafdb]\ndirect_writes = false\n").unwrap();
    let (options, _) = config.leafdb.leafdb_options(64);
    assert!(!options.direct_writes);
    let (options, _) = parse("").unwrap().leafdb.leafdb_options(64);
    assert!(options.direct_writes);
}

#[test]
fn a_full_final_check_can_be_asked_for() {
    let config = parse("[sync]\nfull_final_check = true\n").unwrap();
    assert!(config.sync.sync_config().full_final_check);
    assert!(!parse("").unwrap().sync.sync_config().full_final_check);
}

#[test]
fn bad_files_name_the_file_the_key_and_the_reason() {
    refused("datadir = \"x\"\nchian = \"mainnet\"\n", &["test.toml", "chian"]);
    refused("[p2p]\nport = \"thirty\"\n", &["test.toml", "port"]);
    refused("[p2p]\nport = 70000\n", &["port"]);
    // A syntax error in one line: where, the line itself, and why.
    refused(
        "[p2p]\nport = 1\n[sync\n",
        &["test.toml: line 3, column 6 (`[sync`)", "unclosed table"],
    );
    // Columns count characters, not bytes.
    refused("datadir = \"é\" x\n", &["line 1, column 15 (`datadir = \"é\" x`)"]);
    refused("[serve]\nbogus = 1\n", &["bogus"]);
    refused("chain = \"goerli\"\n", &["`chain`", "goerli", "sepolia"]);
    refused("chain = \"dev\"\n", &["`genesis_hash`", "required"]);
    refused("chain = \"sepolia\"\ngenesis_hash = \"0x01\"\n", &["`genesis_hash`"]);
    refused(
        "chain = \"sepolia\"\ngenesis_hash = \"0x0101010101010101010101010101010101010101010101010101010101010101\"\n",
        &["differs"],
    );
    refused("[p2p]\nstatic_peers = [\"enode://abc@1.2.3.4:30303\"]\n", &["`p2p.static_peers[0]`"]);
    refused("[p2p]\nbootnodes = [\"enr:nope\"]\n", &["`p2p.bootnodes[0]`"]);
    refused("[el]\nrpc = \"localhost:8545\"\n", &["`el.rpc`"]);
    // Accepted here once, then refused by the follower at run time: refused at start now.
    refused("[el]\nrpc = \"https://node.example:8545\"\n", &["`el.rpc`", "TLS is not supported"]);
    refused("[el]\nrpc = \"wss://node.example:8546\"\n", &["`el.rpc`", "TLS is not supported"]);
    refused("[el]\ngenesis = \"genesis.json\"\n", &["`el.genesis`", "`el.rpc`"]);
    refused("datadir = \"\"\n", &["`datadir`", "empty"]);
    refused("[log]\nlevel = \"info,,[\"\n", &["`log.level`"]);
    refused("[log]\nlevel = \"warning\"\n", &["`log.level`", "`warning` is not a level"]);
    refused("[log]\nlevel = \"info,leafsync_p2p\"\n", &["`leafsync_p2p=debug`"]);
    for level in ["warn", "DEBUG", "off", "3", "leafsync_p2p=debug,info", "info,[sync]=trace"] {
        assert_eq!(parse(&format!("[log]\nlevel = \"{level}\"\n")).unwrap().log_level, level);
    }
    refused("[admin]\nlisten = \"localhost\"\n", &["`admin.listen`"]);
    refused("[leafdb]\nblock_cache_mib = 0\n", &["`leafdb.block_cache_mib`"]);
    refused("[sync]\npivot = \"el\"\n", &["`sync.pivot`", "el.rpc"]);
    refused("[sync]\npivot = \"majority\"\n", &["majority", "peers"]);
    refused("[sync]\nmode = \"snap\"\n", &["snap", "heal-only"]);
    refused("[sync]\nchunk_target_kib = 4096\n", &["`sync.chunk_target_kib`", "2048"]);
    refused("[sync]\npivot = \"peers\"\n", &["`sync.pivot`", "allow_peer_pivot"]);
    assert!(parse("[sync]\npivot = \"peers\"\nallow_peer_pivot = true\n").unwrap().sync.peer_pivot);
    assert!(!parse("").unwrap().sync.peer_pivot, "mainnet never trusts peers by default");
    refused("[sync]\npivot = \"checkpoint\"\n", &["`sync.checkpoint`"]);
    refused(
        "[sync.checkpoint]\nnumber = 5\nhash = \"0x12\"\nstate_root = \"0x12\"\n",
        &["`sync.checkpoint.hash`"],
    );
    let ok = parse(&format!(
        "[sync.checkpoint]\nnumber = 5\nhash = \"{}\"\nstate_root = \"{}\"\n",
        B256::repeat_byte(1),
        B256::repeat_byte(2)
    ))
    .unwrap();
    assert_eq!(ok.sync.checkpoint.map(|c| c.number), Some(5));
    refused("[sync]\nrepivot_distance = 500\n", &["`sync.repivot_distance`"]);
    refused("[sync]\nstall_timeout_secs = 0\n", &["`sync.stall_timeout_secs`"]);
}

#[test]
fn flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "chain = \"sepolia\"\n[p2p]\nport = 1000\n").unwrap();
    let flags = RunFlags {
        config: Some(path),
        chain: Some("hoodi".into()),
        port: Some(2000),
        datadir: Some(PathBuf::from("/tmp/x")),
        ..RunFlags::default()
    };
    let config = Config::load(&flags).unwrap();
    assert_eq!(config.chain.name, "hoodi");
    assert_eq!(config.network.listen.port(), 2000);
    assert_eq!(config.datadir, PathBuf::from("/tmp/x"));
    let missing = RunFlags {
        config: Some(PathBuf::from("/nonexistent/leafsync.toml")),
        ..RunFlags::default()
    };
    let e = Config::load(&missing).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/leafsync.toml"), "{e}");
}

/// A bad value a flag set is blamed on the flag, not on the file (which holds no such key);
/// one from the file still names the file.
#[test]
fn an_error_in_a_value_a_flag_set_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        "[p2p]
port = 1000
",
    )
    .unwrap();
    let with = |flags: RunFlags| {
        Config::load(&RunFlags { config: Some(path.clone()), ..flags }).unwrap_err().to_string()
    };
    let e = with(RunFlags { metrics: Some("9403".into()), ..RunFlags::default() });
    assert!(e.contains("--metrics") && e.contains("`metrics.listen`"), "{e}");
    assert!(!e.contains("node.toml"), "{e}");
    let e = with(RunFlags { bootnodes: Some(vec!["enr:-nope".into()]), ..RunFlags::default() });
    assert!(e.contains("--bootnodes") && e.contains("`p2p.bootnodes[0]`"), "{e}");
    let e = with(RunFlags { el_rpc: Some("https://x:1".into()), ..RunFlags::default() });
    assert!(e.contains("--el-rpc"), "{e}");
    std::fs::write(&path, "[metrics]\nlisten = \"9403\"\n").unwrap();
    let e = with(RunFlags { log: Some("info".into()), ..RunFlags::default() });
    assert!(e.contains("node.toml") && e.contains("`metrics.listen`"), "{e}");
}

/// The keys of the snap/1 bootstrap: `serve.snap`, `sync.sources`, `el.enode`.
#[test]
fn snap_keys_are_checked() {
    const ENODE: &str = "enode://a979fb575495b8d6db44f750317d0f4622bf4c2aa3365d6af7c284339968eef29b69ad0dce72a4d8db5ebb4968de0e3bec910127f134779fbcb0cb6d3331163c@127.0.0.1:30303";
    let defaults = parse("").unwrap();
    assert_eq!(defaults.sync.sources, SyncSources { leaf: true, snap: false });
    assert!(!defaults.serve_snap);
    // A public chain's sync beside its execution client takes snap/1 peers too, unless listed:
    // its first leafsync has no leaf/1 peer to sync from.
    let public_el = "chain = \"sepolia\"\n[el]\nrpc = \"ws://127.0.0.1:8546\"\n";
    let public = parse(public_el).unwrap();
    assert_eq!(public.sync.sources, SyncSources { leaf: true, snap: true });
    let listed = parse(&format!("{public_el}[sync]\nsources = [\"leaf\"]\n")).unwrap();
    assert_eq!(listed.sync.sources, SyncSources { leaf: true, snap: false });
    let serve_only = format!("{public_el}[serve]\nleaf = false\nsnap = true\n");
    assert_eq!(parse(&serve_only).unwrap().sync.sources, SyncSources { leaf: false, snap: true });
    let no_el = parse(
        "chain = \"sepolia\"\n[sync]\ncheckpoint = { number = 5, hash = \"0x0000000000000000000000000000000000000000000000000000000000000001\", state_root = \"0x0000000000000000000000000000000000000000000000000000000000000002\" }\n",
    );
    assert_eq!(no_el.unwrap().sync.sources, SyncSources { leaf: true, snap: false });
    assert!(parse("[serve]\nsnap = true\n").unwrap().serve_snap);

    refused("[sync]\nsources = [\"snap\"]\n", &["`sync.sources`", "el.rpc"]);
    let el = "[el]\nrpc = \"ws://127.0.0.1:8546\"\n";
    let both = parse(&format!("{el}[sync]\nsources = [\"leaf\", \"snap\"]\n")).unwrap();
    assert_eq!(both.sync.sources, SyncSources { leaf: true, snap: true });
    refused(
        &format!("{el}[sync]\nsources = [\"snap\"]\npivot = \"peers\"\nallow_peer_pivot = true\n"),
        &["`sync.sources`", "sync.pivot"],
    );
    let checkpoint = format!(
        "{el}[sync]\nsources = [\"snap\"]\ncheckpoint = {{ number = 5, hash = \"{}\", state_root = \"{}\" }}\n",
        B256::repeat_byte(1),
        B256::repeat_byte(2)
    );
    refused(&checkpoint, &["`sync.sources`", "checkpoint"]);
    refused(
        &format!("{el}[sync]\nsources = [\"snap\", \"snap\"]\n"),
        &["`sync.sources[1]`", "twice"],
    );
    refused("[sync]\nsources = []\n", &["`sync.sources`", "empty"]);
    refused("[sync]\nsources = [\"eth\"]\n", &["eth", "snap"]);

    let leaf_only = format!("{el}enode = \"{ENODE}\"\n[sync]\nsources = [\"leaf\"]\n");
    refused(&leaf_only, &["`el.enode`", "eth/69"]);
    // On a public chain (mainnet here) with `el.rpc`, the default sources take snap/1 peers.
    assert!(parse(&format!("{el}enode = \"{ENODE}\"\n")).is_ok());
    let config =
        parse(&format!("{el}enode = \"{ENODE}\"\n[sync]\nsources = [\"leaf\", \"snap\"]\n"))
            .unwrap();
    let peer = config.network.el_peer.unwrap();
    assert_eq!(peer.to_string(), ENODE);
    let net = config.network.network_config(
        secp256k1::SecretKey::from_byte_array([7; 32]).unwrap(),
        config.chain.clone(),
        tokio::sync::watch::channel(leafsync_p2p::peers::LocalHead::default()).1,
        std::sync::Arc::new(leafsync_p2p::peers::EmptyHandler),
    );
    assert!(net.static_peers.contains(&peer) && net.trusted_peers.contains(&peer));
    refused("[serve]\nleaf = false\n", &["`serve.leaf`", "serve.snap"]);
    // Clients take a piece older than the protocol's bound for a lie.
    refused("[serve]\ncache_reuse_blocks = 17\n", &["`serve.cache_reuse_blocks`", "17"]);
    assert!(parse("[serve]\ncache_reuse_blocks = 16\n").is_ok());
    refused(
        "[serve]\nleaf = false\nsnap = true\n[sync]\nsources = [\"leaf\"]\n",
        &["`serve.leaf`", "sync.sources"],
    );
    let server = parse("[serve]\nleaf = false\nsnap = true\n").unwrap();
    assert!(!server.serve_leaf);
    assert_eq!(server.sync.sources, SyncSources { leaf: false, snap: false }, "no leaf/1 peers");
    let snap_only =
        format!("{el}[serve]\nleaf = false\nsnap = true\n[sync]\nsources = [\"snap\"]\n");
    assert_eq!(parse(&snap_only).unwrap().sync.sources, SyncSources { leaf: false, snap: true });
    refused("[el]\nenode = \"enode://abc@1.2.3.4:30303\"\n", &["`el.enode`", "enode://abc"]);
}

/// `check-config` prints the file as TOML that reads back to the same file: the defaults, and a
/// file with every optional key set.
#[test]
fn the_printed_config_reads_back_the_same() {
    let full = format!(
        r#"datadir = "/var/lib/leafsync"
chain = "dev"
genesis_hash = "{genesis}"

[p2p]
listen_ip = "127.0.0.1"
port = 30999
external_ip = "203.0.113.7"
bootnodes = ["enr:-a", "enr:-b"]
static_peers = ["enode://x@127.0.0.1:1"]

[el]
rpc = "ws://127.0.0.1:8546"
genesis = "/etc/genesis.json"
enode = "enode://y@127.0.0.1:2"

[sync]
sources = ["leaf", "snap"]
pivot = "checkpoint"
checkpoint = {{ number = 5, hash = "{hash}", state_root = "{root}" }}
mode = "heal-only"

[serve]
snap = true

[metrics]
listen = "127.0.0.1:9100"

[log]
level = "debug"
"#,
        genesis = B256::repeat_byte(1),
        hash = B256::repeat_byte(2),
        root = B256::repeat_byte(3),
    );
    for file in [FileConfig::default(), FileConfig::parse(Path::new("full.toml"), &full).unwrap()] {
        let text = file.to_toml("test").unwrap();
        let back = FileConfig::parse(Path::new("printed.toml"), &text).unwrap();
        assert_eq!(back, file, "{text}");
    }
    let printed = FileConfig::parse(Path::new("full.toml"), &full).unwrap().to_toml("t").unwrap();
    for key in ["checkpoint", "heal-only", "bootnodes", "enode", "sources", "genesis_hash"] {
        assert!(printed.contains(key), "{key} missing from\n{printed}");
    }
}

/// discv5's defences (public records only, its IP limit, its packet filter) are off only on a
/// loopback address, or a private one on the `dev` chain: a cloud VM listening on its private
/// address on a public chain keeps them. An IPv6 loopback runs discv5 on IPv4's.
#[test]
fn discovery_keeps_its_defences_on_a_private_address_of_a_public_chain() {
    let discovery = |listen_ip: &str, chain: &str| {
        let text = format!("[p2p]\nlisten_ip = \"{listen_ip}\"\n");
        let dev = leafsync_p2p::chain::ChainSpec::preset(chain).unwrap().dev;
        parse(&text).unwrap().network.discovery_config(dev)
    };
    let defended = |d: &leafsync_p2p::discovery::DiscoveryConfig| {
        !d.allow_local_addresses && d.ip_limit && d.packet_filter
    };
    assert!(defended(&discovery("10.0.0.5", "sepolia")));
    assert!(defended(&discovery("0.0.0.0", "sepolia")));
    assert!(!defended(&discovery("10.0.0.5", "dev")));
    assert!(!defended(&discovery("127.0.0.1", "sepolia")));
    let v6 = discovery("::1", "sepolia");
    assert_eq!(*v6.listen_addr.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert!(!defended(&v6));
}

/// `p2p.external_ip` is the address our discv5 record announces (a node behind NAT); one no
/// peer can reach is refused, naming the key.
#[test]
fn the_external_ip_is_announced() {
    assert_eq!(parse("").unwrap().network.discovery_config(false).external_ip, None);
    let config = parse("[p2p]\nexternal_ip = \"203.0.113.7\"\n").unwrap();
    let announced = config.network.discovery_config(false).external_ip;
    assert_eq!(announced, Some(std::net::Ipv4Addr::new(203, 0, 113, 7)));
    refused("[p2p]\nexternal_ip = \"0.0.0.0\"\n", &["`p2p.external_ip`", "0.0.0.0"]);
    refused("[p2p]\nexternal_ip = \"my-host\"\n", &["external_ip"]);
}

/// Sizes and intervals past what makes sense are refused, naming the key: a cache size given in
/// bytes where MiB are asked (it would ask for terabytes, or wrap around to nothing), and an
/// interval so long that its timer overflows the clock.
#[test]
fn sizes_and_intervals_past_sense_are_refused() {
    refused(
        "[leafdb]\nblock_cache_mib = 268435456\n",
        &["`leafdb.block_cache_mib`", "1048576 MiB"],
    );
    refused("[leafdb]\nrecent_cache_mib = 17592186044416\n", &["`leafdb.recent_cache_mib`"]);
    // 0 turned the serving of recent pivots off without a word.
    refused("[leafdb]\nrecent_blocks = 0\n", &["`leafdb.recent_blocks`", "128"]);
    assert!(parse("[leafdb]\nrecent_blocks = 256\n").is_ok());
    let huge = i64::MAX;
    refused(
        &format!("[sync]\nprogress_interval_secs = {huge}\n"),
        &["`sync.progress_interval_secs`"],
    );
    refused(&format!("[sync]\nstall_timeout_secs = {huge}\n"), &["`sync.stall_timeout_secs`"]);
    assert!(parse("[leafdb]\nblock_cache_mib = 1048576\n").is_ok());
}
