//! Wire shapes of the JSON-RPC answers ingest reads: block headers with withdrawals
//! (`eth_getBlockByNumber`) and diff-mode prestate traces (`debug_traceBlockByHash`).

use std::collections::BTreeMap;

use alloy_eip2124::{ForkHash, ForkId};
use alloy_primitives::{Address, B256, Bytes, FixedBytes, U256};
use leafsync_leafdb::BlockHeader;
use serde::{Deserialize, Deserializer, de::Error as _};

/// The header fields of `eth_getBlockByNumber` that ingest uses, and the withdrawals.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcBlock {
    /// Block number.
    #[serde(deserialize_with = "quantity")]
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
    /// State root after the block.
    pub state_root: B256,
    /// Block timestamp, seconds since the Unix epoch (0 when the answer leaves it out, as some
    /// test fixtures do; every execution client sends it).
    #[serde(default, deserialize_with = "quantity")]
    pub timestamp: u64,
    /// Withdrawals (Shanghai and later; absent before).
    #[serde(default)]
    pub withdrawals: Vec<Withdrawal>,
    /// The EIP-4788 parent beacon block root (Cancun and later): what the beacon roots
    /// contract stores before the transactions ([`crate::system`]).
    #[serde(default)]
    pub parent_beacon_block_root: Option<B256>,
    /// The EIP-7685 requests hash (Prague and later): marks a block whose system calls include
    /// EIP-2935's and the request contracts' ([`crate::system`]).
    #[serde(default)]
    pub requests_hash: Option<B256>,
}

impl RpcBlock {
    /// The leafdb header of this block.
    pub const fn header(&self) -> BlockHeader {
        BlockHeader {
            number: self.number,
            hash: self.hash,
            parent_hash: self.parent_hash,
            state_root: self.state_root,
            timestamp: self.timestamp,
        }
    }
}

/// One EIP-4895 withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Withdrawal {
    /// The credited address.
    pub address: Address,
    /// The amount in gwei.
    #[serde(deserialize_with = "quantity")]
    pub amount: u64,
}

/// One transaction's entry in a `debug_traceBlockByHash` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxTrace {
    /// The transaction hash (geth ≥ 1.11, reth, anvil).
    #[serde(default)]
    pub tx_hash: Option<B256>,
    /// The diff, when tracing succeeded.
    #[serde(default)]
    pub result: Option<DiffTrace>,
    /// The tracer's error, when it failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// A diff-mode prestate trace: touched accounts before the transaction and the fields that
/// changed after it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct DiffTrace {
    /// Touched accounts before the transaction, with all fields (geth omits a zero nonce and
    /// empty code) and the storage slots that changed.
    #[serde(default)]
    pub pre: BTreeMap<Address, TracedAccount>,
    /// Accounts alive after the transaction, with only the fields that changed.
    #[serde(default)]
    pub post: BTreeMap<Address, TracedAccount>,
}

/// An account in a prestate trace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracedAccount {
    /// Balance in wei.
    #[serde(default)]
    pub balance: Option<U256>,
    /// Nonce.
    #[serde(default, deserialize_with = "opt_quantity")]
    pub nonce: Option<u64>,
    /// Code.
    #[serde(default)]
    pub code: Option<Bytes>,
    /// Code hash (newer geth writes it beside `code`).
    #[serde(default)]
    pub code_hash: Option<B256>,
    /// Storage slots and values.
    #[serde(default, deserialize_with = "opt_words")]
    pub storage: Option<BTreeMap<B256, U256>>,
}

/// The answer to `eth_config` (EIP-7910): the chain's configuration at the current fork, the
/// next scheduled one and the last one; only what the eth/69 fork id needs is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EthConfigAnswer {
    /// The fork active at the execution client's head.
    pub current: ForkConfig,
    /// The next scheduled fork, `null` when none is scheduled.
    #[serde(default)]
    pub next: Option<ForkConfig>,
}

/// One fork's configuration in an [`EthConfigAnswer`] (the fields leafsync reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForkConfig {
    /// The fork's activation time, seconds since the Unix epoch (timestamp-scheduled forks,
    /// Cancun and later).
    #[serde(deserialize_with = "quantity")]
    pub activation_time: u64,
    /// The EIP-2124 fork hash with this fork active: four bytes as `0x` hex.
    pub fork_id: FixedBytes<4>,
}

impl EthConfigAnswer {
    /// The EIP-2124 fork id at the execution client's head: the current fork's hash, and the
    /// next fork's activation time (0 when none is scheduled).
    pub fn fork_id(&self) -> ForkId {
        ForkId {
            hash: ForkHash(self.current.fork_id.0),
            next: self.next.as_ref().map_or(0, |next| next.activation_time),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(u64),
    Str(String),
}

fn parse_quantity<E: serde::de::Error>(v: NumOrStr) -> Result<u64, E> {
    match v {
        NumOrStr::Num(n) => Ok(n),
        NumOrStr::Str(s) => match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some("") => Ok(0),
            Some(h) => u64::from_str_radix(h, 16).map_err(E::custom),
            None => s.parse().map_err(E::custom),
        },
    }
}

/// A `u64` quantity: `0x` hex string, decimal string or JSON number.
pub(crate) fn quantity<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    parse_quantity(NumOrStr::deserialize(d)?)
}

pub(crate) fn opt_quantity<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<NumOrStr>::deserialize(d)?.map(parse_quantity).transpose()
}

/// A hex word of at most 32 bytes, left-padded (clients differ in zero-padding).
fn word<E: serde::de::Error>(s: &str) -> Result<B256, E> {
    let h = s.strip_prefix("0x").unwrap_or(s);
    let h = if h.len() % 2 == 1 { format!("0{h}") } else { h.to_owned() };
    let bytes = alloy_primitives::hex::decode(&h).map_err(E::custom)?;
    if bytes.len() > 32 {
        return Err(E::custom(format!("storage word `{s}` longer than 32 bytes")));
    }
    Ok(B256::left_padding_from(&bytes))
}

fn opt_words<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BTreeMap<B256, U256>>, D::Error> {
    let Some(raw) = Option::<BTreeMap<String, String>>::deserialize(d)? else {
        return Ok(None);
    };
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        let key = word::<D::Error>(&k)?;
        let value = word::<D::Error>(&v)?;
        if out.insert(key, U256::from_be_bytes(value.0)).is_some() {
            return Err(D::Error::custom(format!("storage slot `{k}` listed twice")));
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_short_words() {
        let b: RpcBlock = serde_json::from_str(
            r#"{"number":"0x1a","hash":"0x0000000000000000000000000000000000000000000000000000000000000001",
                "parentHash":"0x0000000000000000000000000000000000000000000000000000000000000002",
                "stateRoot":"0x0000000000000000000000000000000000000000000000000000000000000003",
                "withdrawals":[{"index":"0x0","validatorIndex":"0x1","address":"0x00000000000000000000000000000000000000aa","amount":"0x10"}]}"#,
        )
        .unwrap();
        assert_eq!((b.number, b.withdrawals[0].amount), (26, 16));
        let a: TracedAccount =
            serde_json::from_str(r#"{"nonce":7,"storage":{"0x1":"0x02"}}"#).unwrap();
        assert_eq!(a.nonce, Some(7));
        assert_eq!(a.storage.unwrap()[&B256::with_last_byte(1)], U256::from(2));
        assert!(serde_json::from_str::<TracedAccount>(r#"{"nonce":"zz"}"#).is_err());
    }
}
