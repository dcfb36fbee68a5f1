//! Enode URLs, `enode://<128 hex digits of the node id>@<ip>:<tcp port>[?discport=<udp>]`, for
//! static and trusted peers and for our own address.

use crate::PeerId;
use std::{fmt, net::SocketAddr, str::FromStr};

/// A node's RLPx identity and TCP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeRecord {
    /// The node id (64-byte public key).
    pub id: PeerId,
    /// Its RLPx TCP address.
    pub addr: SocketAddr,
}

/// Why an enode URL does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnodeError {
    /// It does not start with `enode://`.
    #[error("enode URL must start with enode://")]
    Scheme,
    /// No `@` between the id and the address.
    #[error("enode URL has no '@' between node id and address")]
    MissingAt,
    /// The id is not 128 hex digits.
    #[error("node id must be 128 hex digits, got {0} characters")]
    IdLength(usize),
    /// The id has a non-hex character.
    #[error("node id is not hex")]
    IdHex,
    /// The id is not a valid secp256k1 public key.
    #[error("node id is not a secp256k1 public key")]
    IdNotOnCurve,
    /// The address is not `ip:port` (IPv6 in brackets).
    #[error("invalid address {0:?}: expected ip:port")]
    Address(String),
    /// Port 0 cannot be dialed.
    #[error("tcp port 0")]
    ZeroPort,
}

impl FromStr for NodeRecord {
    type Err = EnodeError;

    fn from_str(s: &str) -> Result<Self, EnodeError> {
        let rest = s.trim().strip_prefix("enode://").ok_or(EnodeError::Scheme)?;
        let (id_hex, addr) = rest.split_once('@').ok_or(EnodeError::MissingAt)?;
        if id_hex.len() != 128 {
            return Err(EnodeError::IdLength(id_hex.len()));
        }
        let bytes = hex::decode(id_hex).map_err(|_| EnodeError::IdHex)?;
        let id = PeerId::from_slice(&bytes);
        crate::ecies::pk_from_id(&id).map_err(|_| EnodeError::IdNotOnCurve)?;
        // The query (`?discport=`) concerns discovery v4 only; RLPx needs the TCP address.
        let addr = addr.split_once('?').map_or(addr, |(a, _)| a);
        let addr: SocketAddr = addr.parse().map_err(|_| EnodeError::Address(addr.to_owned()))?;
        if addr.port() == 0 {
            return Err(EnodeError::ZeroPort);
        }
        Ok(Self { id, addr })
    }
}

impl fmt::Display for NodeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "enode://{}@{}", hex::encode(self.id.as_slice()), self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real mainnet bootnode of go-ethereum (`params/bootnodes.go`).
    const GETH_BOOTNODE: &str = "enode://d860a01f9722d78051619d1e2351aba3f43f943f6f00718d1b9baa4101932a1f5011f16bb2b1bb35db20d6fe28fa0bf09636d26a87d31de9ec6203eeedb1f666@18.138.108.67:30303";

    #[test]
    fn parses_and_prints_a_real_enode() {
        let record: NodeRecord = GETH_BOOTNODE.parse().expect("valid enode");
        assert_eq!(record.addr, "18.138.108.67:30303".parse().expect("addr"));
        assert_eq!(record.to_string(), GETH_BOOTNODE);
        let with_query: NodeRecord =
            format!("{GETH_BOOTNODE}?discport=30301").parse().expect("query ignored");
        assert_eq!(with_query, record);
    }

    #[test]
    fn rejects_bad_urls_with_clear_errors() {
        let id = &GETH_BOOTNODE[8..136];
        let cases = [
            ("enr://abc".to_owned(), EnodeError::Scheme),
            (format!("enode://{id}"), EnodeError::MissingAt),
            (format!("enode://{}@1.2.3.4:1", &id[2..]), EnodeError::IdLength(126)),
            (format!("enode://{}zz@1.2.3.4:1", &id[2..]), EnodeError::IdHex),
            (format!("enode://{}@1.2.3.4:1", "0".repeat(128)), EnodeError::IdNotOnCurve),
            (format!("enode://{id}@1.2.3.4"), EnodeError::Address("1.2.3.4".to_owned())),
            (format!("enode://{id}@1.2.3.4:0"), EnodeError::ZeroPort),
        ];
        for (url, expected) in cases {
            assert_eq!(url.parse::<NodeRecord>(), Err(expected), "{url}");
        }
    }
}
