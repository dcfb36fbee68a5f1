//! [`LeafSnapshot`]: a consistent, read-only view of the leafdb at one head, for serving and for
//! anything else that must not see a block half-applied (it never blocks block application).

use alloy_primitives::{B256, U256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};

use crate::{
    db::{AccountNodes, LeafDb, StorageNodes, read_account_root},
    error::{LeafDbError, Result},
    kv::{KvRead, KvStore, Table},
    schema::{BlockHeader, decode_account, decode_head, decode_slot_value, meta},
    trie::NodeSource,
};

/// A read-only view of the state at the moment [`LeafDb::snapshot`] was called.
pub struct LeafSnapshot<'a, S: KvStore> {
    snap: S::Snapshot<'a>,
    db: &'a LeafDb<S>,
    head: Option<BlockHeader>,
    account_root: B256,
}

impl<S: KvStore> std::fmt::Debug for LeafSnapshot<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafSnapshot").field("head", &self.head).finish_non_exhaustive()
    }
}

/// Nibbles of the key-space slice [`LeafDb::estimate_accounts`] counts: 2 nibbles are 1/256 of
/// the accounts, a few thousand reads on mainnet (cheap at start-up) and within about 10% of the
/// total on large states (hashed addresses are uniform).
pub const ESTIMATE_SAMPLE_NIBBLES: usize = 2;

impl<S: KvStore> LeafDb<S> {
    /// Takes a consistent snapshot.
    pub fn snapshot(&self) -> Result<LeafSnapshot<'_, S>> {
        let snap = self.store().snapshot();
        let head = snap.get(Table::Meta, meta::HEAD)?.map(|b| decode_head(&b)).transpose()?;
        let account_root = read_account_root(&snap)?;
        Ok(LeafSnapshot { snap, db: self, head, account_root })
    }

    /// An estimate of the number of accounts: those under the prefix `00` (see
    /// [`ESTIMATE_SAMPLE_NIBBLES`]) times the number of such slices.
    pub fn estimate_accounts(&self) -> Result<u64> {
        let snap = self.snapshot()?;
        let prefix = Nibbles::from_nibbles([0; ESTIMATE_SAMPLE_NIBBLES]);
        let mut slice = 0u64;
        for item in snap.accounts_with_prefix(&prefix) {
            item?;
            slice += 1;
        }
        Ok(slice << (4 * ESTIMATE_SAMPLE_NIBBLES))
    }
}

/// The smallest 32-byte key under a nibble prefix.
fn prefix_start(prefix: &Nibbles) -> [u8; 32] {
    let mut key = [0u8; 32];
    for i in 0..prefix.len().min(64) {
        let n = prefix.get_unchecked(i);
        key[i / 2] |= if i % 2 == 0 { n << 4 } else { n };
    }
    key
}

/// Whether the first `prefix.len()` nibbles of `key` are `prefix`.
fn has_prefix(key: &[u8], prefix: &Nibbles) -> bool {
    (0..prefix.len()).all(|i| {
        let b = key.get(i / 2).copied().unwrap_or(0);
        let n = if i % 2 == 0 { b >> 4 } else { b & 0x0f };
        n == prefix.get_unchecked(i)
    })
}

impl<'a, S: KvStore> LeafSnapshot<'a, S> {
    /// The head block the snapshot belongs to.
    pub const fn head(&self) -> Option<BlockHeader> {
        self.head
    }

    /// Root of the stored account trie.
    pub const fn account_root(&self) -> B256 {
        self.account_root
    }

    /// An account by hashed address.
    pub fn account(&self, hashed: &B256) -> Result<Option<TrieAccount>> {
        self.snap.get(Table::Accounts, hashed.as_slice())?.map(|b| decode_account(&b)).transpose()
    }

    /// Accounts whose hashed address starts with `prefix`, in key order, with their encoded
    /// size (the RLP stored, which is also the trie leaf value).
    pub fn accounts_with_prefix<'s>(
        &'s self,
        prefix: &Nibbles,
    ) -> impl Iterator<Item = Result<(B256, TrieAccount)>> + 's {
        let prefix = *prefix;
        let start = prefix_start(&prefix);
        self.snap
            .iter_from(Table::Accounts, &start)
            .take_while(move |item| item.as_ref().map_or(true, |(k, _)| has_prefix(k, &prefix)))
            .map(|item| {
                let (k, v) = item?;
                let key = B256::try_from(k.as_ref())
                    .map_err(|_| LeafDbError::corrupt("accounts", "key", "not 32 bytes"))?;
                Ok((key, decode_account(&v)?))
            })
    }

    /// Storage slots of `account` whose hashed slot starts with `prefix`, in key order.
    pub fn storage_with_prefix<'s>(
        &'s self,
        account: &B256,
        prefix: &Nibbles,
    ) -> impl Iterator<Item = Result<(B256, U256)>> + 's {
        let prefix = *prefix;
        let account = *account;
        let mut start = account.to_vec();
        start.extend_from_slice(&prefix_start(&prefix));
        self.snap
            .iter_from(Table::Storage, &start)
            .take_while(move |item| {
                item.as_ref().map_or(true, |(k, _)| {
                    k.len() == 64 && k[..32] == account[..] && has_prefix(&k[32..], &prefix)
                })
            })
            .map(|item| {
                let (k, v) = item?;
                let slot = B256::try_from(&k[32..])
                    .map_err(|_| LeafDbError::corrupt("storage", "key", "not 64 bytes"))?;
                Ok((slot, decode_slot_value(&v)?))
            })
    }

    /// The stored node at `path` of the account trie (`owner` `None`) or of a storage trie.
    pub fn node(&self, owner: Option<&B256>, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        match owner {
            None => AccountNodes(&self.snap).node(path),
            Some(owner) => StorageNodes { kv: &self.snap, owner: *owner }.node(path),
        }
    }

    /// A node replaced in a recent block, by hash. The cache is shared, not snapshotted: a
    /// node is content-addressed, so whatever it returns for a hash is that node.
    pub fn recent_node(&self, hash: &B256) -> Result<Option<Vec<u8>>> {
        self.db.recent_node(hash)
    }

    /// Bytecode by hash.
    pub fn code(&self, hash: &B256) -> Result<Option<Vec<u8>>> {
        self.snap.get(Table::Code, hash.as_slice())
    }

    /// The storage root of an account (the empty root when it has none or does not exist).
    pub fn storage_root(&self, account: &B256) -> Result<B256> {
        Ok(self.account(account)?.map_or(EMPTY_ROOT_HASH, |a| a.storage_root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_helpers() {
        let p = Nibbles::from_nibbles([0xa, 0xb, 0xc]);
        let start = prefix_start(&p);
        assert_eq!(&start[..2], &[0xab, 0xc0]);
        assert!(has_prefix(&start, &p));
        assert!(has_prefix(&[0xab, 0xcf], &p));
        assert!(!has_prefix(&[0xab, 0xdf], &p));
        assert!(has_prefix(&[0x00], &Nibbles::new()));
    }
}
