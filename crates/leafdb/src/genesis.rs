//! Genesis allocations and state dumps, read with errors that name the offending field, and
//! loaded into an empty leafdb. Three shapes are accepted:
//! - a geth genesis file (`{"alloc": {...}, ...}`);
//! - a bare alloc object (`{"0xaddress": {"balance", "nonce", "code", "storage"}}`);
//! - a state dump as `geth dump` prints it (`{"root": …, "accounts": {"0xaddress": {"balance",
//!   "nonce", "root", "codeHash", "code", "storage", "address", "key"}}}`), whose `root` is kept
//!   as the expected state root so callers can check it.

use std::{collections::BTreeMap, path::Path};

use alloy_primitives::{Address, B256, Bytes, KECCAK256_EMPTY, U256, keccak256};
use serde_json::Value;

pub use crate::error::GenesisError;
use crate::{
    bulk::{BulkImport, ImportAccount, ImportOutcome},
    db::LeafDb,
    error::Result,
    kv::KvStore,
    schema::BlockHeader,
};

fn field_err(field: impl Into<String>, reason: impl Into<String>) -> GenesisError {
    GenesisError::Field { field: field.into(), reason: reason.into() }
}

/// One account of an allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenesisAccount {
    /// Nonce.
    pub nonce: u64,
    /// Balance in wei.
    pub balance: U256,
    /// Code, if any.
    pub code: Option<Bytes>,
    /// Storage by (unhashed) slot.
    pub storage: BTreeMap<B256, U256>,
}

/// A parsed allocation.
pub type GenesisAlloc = BTreeMap<Address, GenesisAccount>;

/// An allocation read from a file, with the state root the file claims for it (a `geth dump`
/// carries one; genesis files and bare allocs do not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateFile {
    /// The accounts.
    pub alloc: GenesisAlloc,
    /// The state root the file states, to be checked against the computed one.
    pub expected_root: Option<B256>,
}

/// Reads an allocation file (any of the three shapes), dropping a dump's stated root.
pub fn read_alloc_file(path: &Path) -> Result<GenesisAlloc, GenesisError> {
    read_state_file(path).map(|f| f.alloc)
}

/// Reads an allocation file (any of the three shapes) with the root it states, if any.
pub fn read_state_file(path: &Path) -> Result<StateFile, GenesisError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|source| GenesisError::Read { path: name.clone(), source })?;
    let value: Value =
        serde_json::from_str(&text).map_err(|source| GenesisError::Json { path: name, source })?;
    parse_state(&value)
}

/// Parses an allocation from JSON: a geth genesis (with `alloc`) or a bare alloc object.
pub fn parse_alloc(value: &Value) -> Result<GenesisAlloc, GenesisError> {
    parse_state(value).map(|f| f.alloc)
}

/// Parses any of the three shapes, keeping a dump's stated root.
pub fn parse_state(value: &Value) -> Result<StateFile, GenesisError> {
    let obj = value.as_object().ok_or_else(|| field_err("<root>", "expected a JSON object"))?;
    if let Some(accounts) = obj.get("accounts") {
        // `geth dump`: `accounts` cannot be an address, so the shape is unambiguous.
        let accounts =
            accounts.as_object().ok_or_else(|| field_err("accounts", "expected an object"))?;
        let expected_root = obj.get("root").map(|v| hex_word("root", v)).transpose()?;
        for key in obj.keys() {
            if key != "root" && key != "accounts" && key != "next" {
                return Err(field_err(key, "unknown state dump field"));
            }
        }
        return Ok(StateFile { alloc: parse_accounts("accounts", accounts)?, expected_root });
    }
    let (prefix, alloc) = match obj.get("alloc") {
        Some(a) => {
            ("alloc", a.as_object().ok_or_else(|| field_err("alloc", "expected an object"))?)
        }
        None => ("", obj),
    };
    Ok(StateFile { alloc: parse_accounts(prefix, alloc)?, expected_root: None })
}

/// Parses the address-keyed account map of any shape; `prefix` is its JSON path.
fn parse_accounts(
    prefix: &str,
    alloc: &serde_json::Map<String, Value>,
) -> Result<GenesisAlloc, GenesisError> {
    let mut out = GenesisAlloc::new();
    for (addr, acct) in alloc {
        let field = if prefix.is_empty() { addr.clone() } else { format!("{prefix}.{addr}") };
        if addr.starts_with("pre(") {
            return Err(field_err(
                &field,
                "the dump lacks this account's address (no preimage); dump with preimages",
            ));
        }
        let address = parse_hex_fixed::<20>(addr)
            .map(Address::from)
            .ok_or_else(|| field_err(&field, "key is not a 20-byte hex address"))?;
        let acct = acct.as_object().ok_or_else(|| field_err(&field, "expected an object"))?;
        let mut account = GenesisAccount::default();
        let mut code_hash = None;
        for (k, v) in acct {
            let f = format!("{field}.{k}");
            match k.as_str() {
                "balance" => account.balance = parse_quantity(&f, v)?,
                "nonce" => {
                    account.nonce = u64::try_from(parse_quantity(&f, v)?)
                        .map_err(|_| field_err(&f, "does not fit in 64 bits"))?;
                }
                "code" => {
                    let s = v.as_str().ok_or_else(|| field_err(&f, "expected a hex string"))?;
                    let code = parse_hex_bytes(s).ok_or_else(|| field_err(&f, "invalid hex"))?;
                    account.code = (!code.is_empty()).then(|| Bytes::from(code));
                }
                "storage" => {
                    let map = v.as_object().ok_or_else(|| field_err(&f, "expected an object"))?;
                    for (slot, val) in map {
                        let sf = format!("{f}.{slot}");
                        let slot = parse_word(slot)
                            .ok_or_else(|| field_err(&sf, "key is not a hex word"))?;
                        let s =
                            val.as_str().ok_or_else(|| field_err(&sf, "expected a hex string"))?;
                        let val = parse_word(s)
                            .ok_or_else(|| field_err(&sf, "value is not a hex word"))?;
                        account.storage.insert(slot, U256::from_be_bytes(val.0));
                    }
                }
                // A dump's derived fields: checked where they can be, never trusted.
                "codeHash" => code_hash = Some(hex_word(&f, v)?),
                "address" => {
                    let stated = v
                        .as_str()
                        .and_then(parse_hex_fixed::<20>)
                        .ok_or_else(|| field_err(&f, "expected a 20-byte hex address"))?;
                    if Address::from(stated) != address {
                        return Err(field_err(&f, "differs from the account's key"));
                    }
                }
                "key" => {
                    if hex_word(&f, v)? != keccak256(address) {
                        return Err(field_err(&f, "is not keccak256 of the address"));
                    }
                }
                // The storage root is recomputed from `storage`; the state root check covers it.
                "root" => {
                    hex_word(&f, v)?;
                }
                // Fields geth writes that do not affect the state.
                "privateKey" | "secretKey" | "comment" => {}
                other => return Err(field_err(f, format!("unknown account field `{other}`"))),
            }
        }
        if let Some(stated) = code_hash {
            let actual = account.code.as_ref().map_or(KECCAK256_EMPTY, keccak256);
            if stated != actual {
                return Err(field_err(
                    format!("{field}.codeHash"),
                    format!("states {stated} but the code hashes to {actual}"),
                ));
            }
        }
        out.insert(address, account);
    }
    Ok(out)
}

fn strip(s: &str) -> &str {
    s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s)
}

fn parse_hex_bytes(s: &str) -> Option<Vec<u8>> {
    let h = strip(s);
    if h.len() % 2 == 1 {
        alloy_primitives::hex::decode(format!("0{h}")).ok()
    } else {
        alloy_primitives::hex::decode(h).ok()
    }
}

fn parse_hex_fixed<const N: usize>(s: &str) -> Option<alloy_primitives::FixedBytes<N>>
where
    alloy_primitives::FixedBytes<N>: From<[u8; N]>,
{
    let b = parse_hex_bytes(s)?;
    let arr: [u8; N] = b.try_into().ok()?;
    Some(arr.into())
}

/// A JSON string holding exactly 32 hex bytes (a hash), or an error naming `field`.
fn hex_word(field: &str, v: &Value) -> Result<B256, GenesisError> {
    v.as_str()
        .and_then(parse_hex_fixed::<32>)
        .ok_or_else(|| field_err(field, "expected a 32-byte hex string"))
}

/// A hex word of at most 32 bytes, left-padded.
fn parse_word(s: &str) -> Option<B256> {
    let b = parse_hex_bytes(s)?;
    (b.len() <= 32).then(|| B256::left_padding_from(&b))
}

/// A quantity: `0x` hex or decimal, as a string or a JSON number.
fn parse_quantity(field: &str, v: &Value) -> Result<U256, GenesisError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(U256::from)
            .ok_or_else(|| field_err(field, "expected a non-negative integer")),
        Value::String(s) if s.starts_with("0x") || s.starts_with("0X") => {
            let h = strip(s);
            if h.is_empty() {
                return Ok(U256::ZERO);
            }
            U256::from_str_radix(h, 16)
                .map_err(|e| field_err(field, format!("invalid hex `{s}`: {e}")))
        }
        Value::String(s) => U256::from_str_radix(s, 10)
            .map_err(|e| field_err(field, format!("invalid decimal `{s}`: {e}"))),
        _ => Err(field_err(field, "expected a quantity (hex or decimal)")),
    }
}

impl<S: KvStore> LeafDb<S> {
    /// Loads `alloc` into this empty leafdb as the state of `head` (its state root is filled in
    /// when zero) and returns what was written.
    pub fn init_genesis(&self, alloc: &GenesisAlloc, head: BlockHeader) -> Result<ImportOutcome> {
        let mut sorted: Vec<(B256, &GenesisAccount)> =
            alloc.iter().map(|(a, acct)| (keccak256(a), acct)).collect();
        sorted.sort_by_key(|(h, _)| *h);
        let mut import = BulkImport::start(self, "genesis allocation")?;
        for (hashed_address, acct) in sorted {
            let code_hash = match &acct.code {
                Some(code) => import.add_code(code)?,
                None => KECCAK256_EMPTY,
            };
            let mut slots: Vec<(B256, U256)> =
                acct.storage.iter().map(|(s, v)| (keccak256(s), *v)).collect();
            slots.sort_by_key(|(h, _)| *h);
            let account = ImportAccount {
                hashed_address,
                nonce: acct.nonce,
                balance: acct.balance,
                code_hash,
            };
            import.add_account(account, slots)?;
        }
        import.finish(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_field() {
        let bad =
            json!({"alloc": {"0x00000000000000000000000000000000000000aa": {"balance": "0xzz"}}});
        let e = parse_alloc(&bad).unwrap_err().to_string();
        assert!(e.contains("alloc.0x00000000000000000000000000000000000000aa.balance"), "{e}");
        let bad = json!({"0x12": {"balance": "1"}});
        assert!(parse_alloc(&bad).unwrap_err().to_string().contains("0x12"));
        let bad =
            json!({"0x00000000000000000000000000000000000000aa": {"nonce": "0x1ffffffffffffffff"}});
        assert!(parse_alloc(&bad).unwrap_err().to_string().contains(".nonce"));
        let bad = json!({"0x00000000000000000000000000000000000000aa": {"storage": {"0x01": 5}}});
        assert!(parse_alloc(&bad).unwrap_err().to_string().contains(".storage.0x01"));
        let bad = json!({"0x00000000000000000000000000000000000000aa": {"balanse": "1"}});
        assert!(parse_alloc(&bad).unwrap_err().to_string().contains("balanse"));
    }

    #[test]
    fn reads_a_geth_dump_with_its_root() {
        let dump = json!({
            "root": "8fcfb02cfca007773bd55bc1c3e50a3c8612a59c87ce057e5957e8bf17c1728b",
            "accounts": {"0x00000000000000000000000000000000000000aa": {
                "balance": "1000", "nonce": 2,
                "root": "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421",
                "codeHash": "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470",
                "storage": {"0x0000000000000000000000000000000000000000000000000000000000000004": "7435ed"},
                "address": "0x00000000000000000000000000000000000000AA",
                "key": format!("{}", keccak256(Address::with_last_byte(0xaa))),
            }}
        });
        let f = parse_state(&dump).unwrap();
        assert_eq!(
            f.expected_root.map(|r| r.to_string()).as_deref(),
            Some("0x8fcfb02cfca007773bd55bc1c3e50a3c8612a59c87ce057e5957e8bf17c1728b")
        );
        let acct = f.alloc.values().next().unwrap();
        assert_eq!(acct.balance, U256::from(1000));
        assert_eq!(acct.storage.values().next(), Some(&U256::from(0x7435ed)));
    }

    #[test]
    fn dump_fields_that_contradict_the_account_are_refused() {
        let addr = "0x00000000000000000000000000000000000000aa";
        let bad_key =
            json!({"accounts": {addr: {"balance": "1", "key": format!("{}", B256::ZERO)}}});
        assert!(parse_state(&bad_key).unwrap_err().to_string().contains(".key"));
        let bad_code = json!({"accounts": {addr: {"balance": "1", "code": "0x6000",
            "codeHash": "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"}}});
        assert!(parse_state(&bad_code).unwrap_err().to_string().contains(".codeHash"));
        let no_preimage = json!({"accounts": {"pre(0x01)": {"balance": "1"}}});
        assert!(parse_state(&no_preimage).unwrap_err().to_string().contains("preimage"));
        let bad_root = json!({"root": "0x12", "accounts": {}});
        assert!(parse_state(&bad_root).unwrap_err().to_string().starts_with("root:"));
    }

    #[test]
    fn accepts_decimal_hex_and_numbers() {
        let ok = json!({"00000000000000000000000000000000000000aa": {"balance": "100", "nonce": 3, "code": "0x6000", "storage": {"0x1": "0x2"}}});
        let a = parse_alloc(&ok).unwrap();
        let acct = a.values().next().unwrap();
        assert_eq!(acct.balance, U256::from(100));
        assert_eq!(acct.nonce, 3);
        assert_eq!(acct.storage.values().next(), Some(&U256::from(2)));
    }
}
