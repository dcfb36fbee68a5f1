//! Block headers as the execution client sends them over JSON-RPC, re-encoded as the RLP that
//! eth/69 `BlockHeaders` carries.
//!
//! The consensus fields come from `eth_getBlockByNumber(n, false)` (or `…ByHash`). The encoding
//! is the header's RLP list: the 15 fields of the original header, then each field a fork added
//! at the end, present from that fork on (`baseFeePerGas` London, `withdrawalsRoot` Shanghai,
//! `blobGasUsed` and `excessBlobGas` Cancun, `parentBeaconBlockRoot` Cancun, `requestsHash`
//! Prague). A header is served only when the keccak of its encoding is the hash the execution
//! client gave ([`RpcHeader::sealed_rlp`]): a field this encoder does not know (a later fork's)
//! makes the hashes differ, and the header is skipped rather than sent wrong.
//!
//! A hand-written encoder over `alloy-rlp` (already a dependency of the workspace), not
//! `alloy-consensus`: that crate is not in the lock file, and brings 9 crates we do not have
//! (`alloy-eips`, `darling`, …; 8 s of build) for one RLP list.

use alloy_primitives::{Address, B64, B256, Bloom, Bytes, U256, keccak256};
use alloy_rlp::Encodable;
use serde::Deserialize;

use crate::types::quantity;

/// One block header as `eth_getBlockByNumber(n, false)` returns it: the block hash and every
/// consensus field. Fields added by a fork are `None` before it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcHeader {
    /// The block hash the execution client computed.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
    /// Ommers hash (`sha3Uncles`).
    #[serde(rename = "sha3Uncles")]
    pub ommers_hash: B256,
    /// Fee recipient (`miner`).
    #[serde(rename = "miner")]
    pub beneficiary: Address,
    /// State root.
    pub state_root: B256,
    /// Transactions root.
    pub transactions_root: B256,
    /// Receipts root.
    pub receipts_root: B256,
    /// Logs bloom.
    pub logs_bloom: Bloom,
    /// Difficulty (zero after the merge).
    pub difficulty: U256,
    /// Block number.
    #[serde(deserialize_with = "quantity")]
    pub number: u64,
    /// Gas limit.
    #[serde(deserialize_with = "quantity")]
    pub gas_limit: u64,
    /// Gas used.
    #[serde(deserialize_with = "quantity")]
    pub gas_used: u64,
    /// Timestamp, seconds since the Unix epoch.
    #[serde(deserialize_with = "quantity")]
    pub timestamp: u64,
    /// Extra data.
    pub extra_data: Bytes,
    /// Mix hash (`prevRandao` after the merge).
    pub mix_hash: B256,
    /// Proof-of-work nonce (zero after the merge).
    pub nonce: B64,
    /// EIP-1559 base fee (London).
    #[serde(default)]
    pub base_fee_per_gas: Option<U256>,
    /// EIP-4895 withdrawals root (Shanghai).
    #[serde(default)]
    pub withdrawals_root: Option<B256>,
    /// EIP-4844 blob gas used (Cancun).
    #[serde(default)]
    pub blob_gas_used: Option<U256>,
    /// EIP-4844 excess blob gas (Cancun).
    #[serde(default)]
    pub excess_blob_gas: Option<U256>,
    /// EIP-4788 parent beacon block root (Cancun).
    #[serde(default)]
    pub parent_beacon_block_root: Option<B256>,
    /// EIP-7685 requests hash (Prague).
    #[serde(default)]
    pub requests_hash: Option<B256>,
}

impl RpcHeader {
    /// The header's RLP: the 15 original fields, then the fork fields up to the first absent
    /// one (a fork field after an absent one would be a header no fork defines; the hash check
    /// of [`RpcHeader::sealed_rlp`] then fails).
    pub fn rlp(&self) -> Vec<u8> {
        let fields: [&dyn Encodable; 15] = [
            &self.parent_hash,
            &self.ommers_hash,
            &self.beneficiary,
            &self.state_root,
            &self.transactions_root,
            &self.receipts_root,
            &self.logs_bloom,
            &self.difficulty,
            &self.number,
            &self.gas_limit,
            &self.gas_used,
            &self.timestamp,
            &self.extra_data,
            &self.mix_hash,
            &self.nonce,
        ];
        let forks: [Option<&dyn Encodable>; 6] = [
            self.base_fee_per_gas.as_ref().map(|v| v as &dyn Encodable),
            self.withdrawals_root.as_ref().map(|v| v as &dyn Encodable),
            self.blob_gas_used.as_ref().map(|v| v as &dyn Encodable),
            self.excess_blob_gas.as_ref().map(|v| v as &dyn Encodable),
            self.parent_beacon_block_root.as_ref().map(|v| v as &dyn Encodable),
            self.requests_hash.as_ref().map(|v| v as &dyn Encodable),
        ];
        let present = fields.into_iter().chain(forks.into_iter().map_while(|f| f));
        let items: Vec<&dyn Encodable> = present.collect();
        let mut out = Vec::new();
        alloy_rlp::encode_list::<_, dyn Encodable>(&items, &mut out);
        out
    }

    /// The header's RLP when its keccak is the block hash the execution client gave, else
    /// `None` (a field of a fork this encoder does not know, or a wrong answer).
    pub fn sealed_rlp(&self) -> Option<Bytes> {
        let rlp = self.rlp();
        (keccak256(&rlp) == self.hash).then(|| rlp.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mainnet's genesis header (block 0: the 15 original fields), hash `0xd4e5…8fa3`.
    const MAINNET_GENESIS: &str = r#"{
        "hash": "0xd4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3",
        "parentHash": "0x0000000000000000000000000000000000000000000000000000000000000000",
        "sha3Uncles": "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347",
        "miner": "0x0000000000000000000000000000000000000000",
        "stateRoot": "0xd7f8974fb5ac78d9ac099b9ad5018bedc2ce0a72dad1827a1709da30580f0544",
        "transactionsRoot": "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421",
        "receiptsRoot": "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421",
        "logsBloom": "0x00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "difficulty": "0x400000000",
        "number": "0x0",
        "gasLimit": "0x1388",
        "gasUsed": "0x0",
        "timestamp": "0x0",
        "extraData": "0x11bbe8db4e347b4e8c937c1c8370e4b5ed33adb3db69cbdb7a38e1e50b1b82fa",
        "mixHash": "0x0000000000000000000000000000000000000000000000000000000000000000",
        "nonce": "0x0000000000000042"
    }"#;

    #[test]
    fn mainnet_genesis_hashes_to_its_hash() {
        let header: RpcHeader = serde_json::from_str(MAINNET_GENESIS).unwrap();
        assert!(header.sealed_rlp().is_some(), "keccak(rlp) = {}", keccak256(header.rlp()));
    }

    #[test]
    fn a_changed_field_or_an_unknown_fork_is_not_served() {
        let mut header: RpcHeader = serde_json::from_str(MAINNET_GENESIS).unwrap();
        header.gas_used = 1;
        assert_eq!(header.sealed_rlp(), None);
        let mut header: RpcHeader = serde_json::from_str(MAINNET_GENESIS).unwrap();
        header.withdrawals_root = Some(B256::ZERO); // after an absent base fee: not encoded
        assert!(header.sealed_rlp().is_some());
        header.base_fee_per_gas = Some(U256::from(7));
        assert_eq!(header.sealed_rlp(), None);
    }
}
