//! Full consistency check: recompute every trie from the flat tables and compare it, node by
//! node, with the stored tries, the stored root and the head.

use alloy_primitives::{B256, KECCAK256_EMPTY};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles};

use crate::{
    db::{LeafDb, read_account_root},
    error::{LeafDbError, Result},
    kv::{KvRead, KvStore, Table, prefix_end},
    schema::{
        BlockHeader, decode_account, decode_slot_value, path_key, slot_leaf_value, storage_node_key,
    },
    trie::{NodeSink, StackBuilder},
};

/// What [`LeafDb::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Accounts in the flat table.
    pub accounts: u64,
    /// Storage slots in the flat table.
    pub slots: u64,
    /// Root recomputed from the flat accounts and storage.
    pub computed_root: B256,
    /// Root recorded in the metadata.
    pub stored_root: B256,
    /// The head, if any.
    pub head: Option<BlockHeader>,
    /// Accounts whose recorded storage root differs from the root of their flat storage.
    pub storage_root_mismatches: u64,
    /// Nodes of the recomputed tries missing from, or different in, the node tables.
    pub node_mismatches: u64,
    /// Nodes in the node tables that the recomputed tries do not have.
    pub extra_nodes: u64,
    /// Accounts whose code is missing.
    pub missing_code: u64,
    /// The first few problems, for people.
    pub problems: Vec<String>,
}

/// Problems listed in [`VerifyReport::problems`] at most.
pub const MAX_LISTED_PROBLEMS: usize = 20;

impl VerifyReport {
    /// Whether flat state, tries, stored root and head agree.
    pub fn ok(&self) -> bool {
        self.computed_root == self.stored_root
            && self.head.is_none_or(|h| h.state_root == self.computed_root)
            && self.storage_root_mismatches == 0
            && self.node_mismatches == 0
            && self.extra_nodes == 0
            && self.missing_code == 0
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(p);
        }
    }
}

/// Compares each emitted node with the stored one.
struct CompareSink<'a, R: ?Sized> {
    kv: &'a R,
    table: Table,
    owner: Option<B256>,
    mismatches: Vec<String>,
}

impl<R: KvRead + ?Sized> NodeSink for CompareSink<'_, R> {
    fn node(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()> {
        let key = match &self.owner {
            None => path_key(path),
            Some(o) => storage_node_key(o, path),
        };
        let stored = self.kv.get(self.table, &key)?;
        if stored.as_deref() != Some(rlp) {
            let what = if stored.is_some() { "differs" } else { "is missing" };
            let owner = self
                .owner
                .map_or_else(|| "account trie".to_string(), |o| format!("storage of {o}"));
            self.mismatches
                .push(format!("{owner}: node at path {} {what}", crate::trie::nibbles_hex(path)));
        }
        Ok(())
    }
}

fn count_keys<R: KvRead + ?Sized>(kv: &R, table: Table, prefix: &[u8]) -> Result<u64> {
    let end = prefix_end(prefix);
    let mut n = 0;
    for item in kv.iter_from(table, prefix) {
        let (k, _) = item?;
        if k.as_ref() >= end.as_slice() || !k.starts_with(prefix) {
            break;
        }
        n += 1;
    }
    Ok(n)
}

impl<S: KvStore> LeafDb<S> {
    /// Recomputes every root from the flat tables on a snapshot and compares; see
    /// [`VerifyReport`].
    pub fn verify(&self) -> Result<VerifyReport> {
        let snap = self.store().snapshot();
        let mut report = VerifyReport {
            stored_root: read_account_root(&snap)?,
            head: self.head()?,
            ..Default::default()
        };
        let mut accounts = StackBuilder::new(CompareSink {
            kv: &snap,
            table: Table::AccountNodes,
            owner: None,
            mismatches: Vec::new(),
        });
        let mut storage_nodes_expected = 0u64;
        for item in snap.iter_from(Table::Accounts, &[]) {
            let (key, value) = item?;
            let owner = B256::try_from(key.as_ref())
                .map_err(|_| LeafDbError::corrupt("accounts", "key", "not 32 bytes"))?;
            let account = decode_account(&value)?;
            report.accounts += 1;
            let mut storage = StackBuilder::new(CompareSink {
                kv: &snap,
                table: Table::StorageNodes,
                owner: Some(owner),
                mismatches: Vec::new(),
            });
            let end = prefix_end(owner.as_slice());
            for slot in snap.iter_from(Table::Storage, owner.as_slice()) {
                let (k, v) = slot?;
                if k.as_ref() >= end.as_slice() || k.len() != 64 {
                    break;
                }
                report.slots += 1;
                let value = decode_slot_value(&v)?;
                storage.add_leaf(Nibbles::unpack(&k[32..]), slot_leaf_value(&value))?;
            }
            let (built, sink) = storage.finish_into()?;
            storage_nodes_expected += built.stored_nodes;
            for m in sink.mismatches {
                report.node_mismatches += 1;
                report.problem(m);
            }
            if built.root != account.storage_root {
                report.storage_root_mismatches += 1;
                report.problem(format!(
                    "account {owner}: storage root {} recorded, {} computed",
                    account.storage_root, built.root
                ));
            }
            if account.code_hash != KECCAK256_EMPTY
                && snap.get(Table::Code, account.code_hash.as_slice())?.is_none()
            {
                report.missing_code += 1;
                report.problem(format!("account {owner}: code {} missing", account.code_hash));
            }
            accounts.add_leaf(Nibbles::unpack(owner), value.to_vec())?;
        }
        let (built, sink) = accounts.finish_into()?;
        report.computed_root = built.root;
        for m in sink.mismatches {
            report.node_mismatches += 1;
            report.problem(m);
        }
        let stored_account_nodes = count_keys(&snap, Table::AccountNodes, &[])?;
        let stored_storage_nodes = count_keys(&snap, Table::StorageNodes, &[])?;
        let extra = stored_account_nodes.saturating_sub(built.stored_nodes)
            + stored_storage_nodes.saturating_sub(storage_nodes_expected);
        if extra > 0 {
            report.extra_nodes = extra;
            report.problem(format!("{extra} stored trie nodes belong to no recomputed trie"));
        }
        if report.computed_root != report.stored_root {
            report.problem(format!(
                "recorded root {} but flat state gives {}",
                report.stored_root, report.computed_root
            ));
        }
        if report.accounts == 0 && report.computed_root != EMPTY_ROOT_HASH {
            report.problem("empty state with a non-empty root".into());
        }
        Ok(report)
    }
}
