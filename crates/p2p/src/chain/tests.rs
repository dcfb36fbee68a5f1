//! Chain presets: they parse, their fork ids match go-ethereum's vectors, bad TOML is reported
//! with the key at fault.

use super::*;
use crate::test_utils::package_dir;
use alloy_eip2124::ValidationError;
use serde_json::Value;

/// The shared EIP-2124 vectors (go-ethereum `core/forkid/forkid_test.go`, EIP-2124), read at
/// test time, never copied into the repository.
fn vectors() -> Value {
    let path = package_dir(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/forkid/forkid-vectors.json");
    let text = std::fs::read_to_string(path).expect("forkid vectors are readable");
    serde_json::from_str(&text).expect("forkid vectors are JSON")
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

fn fork_hash_of(v: &Value) -> ForkHash {
    let text = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    let bytes = hex::decode(text.trim_start_matches("0x")).expect("hex fork hash");
    ForkHash(bytes.try_into().expect("4-byte fork hash"))
}

#[test]
fn all_presets_parse() {
    for name in PRESET_NAMES {
        let spec = ChainSpec::preset(name).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(spec.name, name);
        assert_eq!(spec.ports, Ports::default());
        // Only the dev chain drops the public chains' defences (pivot confirmations, the
        // peers' pivot refused, discv5's limits on private addresses).
        assert_eq!(spec.dev, name == "dev", "{name}");
    }
    let bootnodes = |name| ChainSpec::preset(name).map(|s| s.bootnodes.len()).unwrap_or(0);
    for name in ["mainnet", "sepolia", "holesky", "hoodi"] {
        assert!(bootnodes(name) >= 5, "{name} has real discv5 bootnodes");
    }
    assert!(matches!(ChainSpec::preset("ropsten"), Err(ChainSpecError::UnknownPreset(_))));
}

#[test]
fn presets_have_the_real_network_ids_and_genesis_hashes() {
    let vectors = vectors();
    for (name, network_id) in
        [("mainnet", 1), ("sepolia", 11_155_111), ("holesky", 17_000), ("hoodi", 560_048)]
    {
        let spec = ChainSpec::preset(name).expect("preset parses");
        let net = &vectors["networks"][name];
        assert_eq!(spec.network_id, network_id, "{name}");
        assert_eq!(spec.genesis_hash.to_string(), net["genesis_hash"].as_str().unwrap_or(""));
        assert_eq!(spec.genesis_timestamp, u64_of(&net["genesis_timestamp"]), "{name}");
        assert!(!spec.has_placeholder_genesis());
    }
    // The mainnet genesis hash is also the one of the shared genesis test file.
    let genesis = package_dir(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/genesis/genesishashestest.json");
    let genesis: Value =
        serde_json::from_str(&std::fs::read_to_string(genesis).expect("readable")).expect("JSON");
    let mainnet = ChainSpec::preset("mainnet").expect("preset parses");
    assert_eq!(
        hex::encode(mainnet.genesis_hash),
        genesis["genesis_hash"].as_str().unwrap_or_default()
    );
}

#[test]
fn fork_ids_match_every_creation_vector() {
    let vectors = vectors();
    let mut checked = 0;
    for name in ["mainnet", "sepolia", "holesky", "hoodi"] {
        let spec = ChainSpec::preset(name).expect("preset parses");
        let cases = vectors["networks"][name]["creation_cases"].as_array().expect("cases");
        assert!(!cases.is_empty());
        for case in cases {
            let (head, time) = (u64_of(&case["head"]), u64_of(&case["time"]));
            let id = spec.fork_id(head, time);
            let want = ForkId { hash: fork_hash_of(&case["hash"]), next: u64_of(&case["next"]) };
            assert_eq!(id, want, "{name} head {head} time {time}: {}", case["comment"]);
            checked += 1;
        }
    }
    assert_eq!(checked, 38 + 16 + 14 + 10);
}

#[test]
fn eip2124_mainnet_vectors_with_the_petersburg_fork_list() {
    let vectors = vectors();
    let mut spec = ChainSpec::preset("mainnet").expect("preset parses");
    let forks = [1_150_000, 1_920_000, 2_463_000, 2_675_000, 4_370_000, 7_280_000];
    spec.forks = ForkSchedule {
        blocks: forks.iter().map(|b| (b.to_string(), *b)).collect(),
        times: BTreeMap::new(),
    };
    for case in vectors["eip2124_mainnet_petersburg_cap"]["cases"].as_array().expect("cases") {
        let head = u64_of(&case["head"]);
        let want = ForkId { hash: fork_hash_of(&case["hash"]), next: u64_of(&case["next"]) };
        assert_eq!(spec.fork_id(head, 0), want, "head {head}");
    }
}

#[test]
fn fork_filter_matches_geth_validation_vectors() {
    let vectors = vectors();
    let mainnet = ChainSpec::preset("mainnet").expect("preset parses");
    let mut without_time_forks = mainnet.clone();
    without_time_forks.forks.times.clear();
    let cases = vectors["validation"]["cases"].as_array().expect("cases");
    let mut failures = Vec::new();
    for case in cases {
        let spec = match case["config"].as_str() {
            Some("mainnet") => &mainnet,
            Some("mainnet_without_time_forks") => &without_time_forks,
            other => panic!("unknown config {other:?}"),
        };
        let filter = spec.fork_filter(u64_of(&case["head"]), u64_of(&case["time"]));
        let remote =
            ForkId { hash: fork_hash_of(&case["remote_hash"]), next: u64_of(&case["remote_next"]) };
        let got = match filter.validate(remote) {
            Ok(()) => None,
            Err(ValidationError::RemoteStale { .. }) => Some("ErrRemoteStale"),
            Err(ValidationError::LocalIncompatibleOrStale { .. }) => {
                Some("ErrLocalIncompatibleOrStale")
            }
        };
        if got != case["expected_error"].as_str() {
            failures.push(format!("{}: got {got:?}", case["comment"]));
        }
    }
    assert_eq!(cases.len(), 45);
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn dev_preset_has_a_placeholder_genesis_until_set() {
    let dev = ChainSpec::preset("dev").expect("preset parses");
    assert_eq!(dev.network_id, 1337);
    assert!(dev.has_placeholder_genesis());
    assert!(matches!(dev.ensure_genesis_known(), Err(ChainSpecError::PlaceholderGenesis(_))));
    let genesis = B256::repeat_byte(0x42);
    let dev = dev.with_genesis_hash(genesis);
    assert!(dev.ensure_genesis_known().is_ok());
    // Every dev fork is at 0, so the fork id is the genesis CRC32 with nothing next.
    assert_eq!(dev.fork_id(100, 1_000_000), ForkId { hash: ForkHash::from(genesis), next: 0 });
}

const MINIMAL: &str = r#"
name = "x"
network_id = 5
genesis_hash = "0x1111111111111111111111111111111111111111111111111111111111111111"
"#;

#[test]
fn minimal_spec_uses_documented_defaults() {
    let spec = ChainSpec::from_toml_str(MINIMAL).expect("minimal spec parses");
    assert_eq!(spec.ports, Ports { tcp: DEFAULT_PORT, udp: DEFAULT_PORT });
    assert_eq!(spec.genesis_timestamp, 0);
    assert!(spec.bootnodes.is_empty());
    assert_eq!(spec.fork_id(0, 0).hash, spec.genesis_fork_hash());
}

#[test]
fn bad_toml_errors_name_the_key() {
    let cases = [
        (MINIMAL.replace("network_id = 5", "network_id = \"five\""), "network_id"),
        (MINIMAL.replace("network_id = 5", ""), "network_id"),
        (MINIMAL.replace("0x1111", "0xzz11"), "genesis_hash"),
        (format!("{MINIMAL}netwrk = 1\n"), "netwrk"),
        (format!("{MINIMAL}bootnodes = [\"enr:-notanenr\"]\n"), "bootnodes"),
        (format!("{MINIMAL}[forks.blocks]\nlondon = -1\n"), "london"),
        (format!("{MINIMAL}[ports]\ntcp = 70000\n"), "tcp"),
    ];
    for (toml, key) in cases {
        let err = ChainSpec::from_toml_str(&toml).expect_err("bad spec must fail");
        let message = err.to_string();
        assert!(message.contains(key), "error for bad {key} does not name it: {message}");
    }
}
