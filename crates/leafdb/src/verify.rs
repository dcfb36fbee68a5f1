//! Full consistency check: recompute every trie from the flat tables and compare it, node by
//! node, with the stored tries, the stored root and the head.

use alloy_primitives::{B256, KECCAK256_EMPTY};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles};

use crate::{
    db::{LeafDb, read_account_root},
    error::Result,
    keys::prefix_end,
    kv::{KvIter, KvPair, KvRead, KvStore, Reading, Table},
    schema::{BlockHeader, decode_account_row, decode_slot_value, slot_leaf_value},
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
    /// Flat storage rows of no account (or not 64 bytes long): left by a deletion that did not
    /// wipe, they would come back under an account created again at that address.
    pub orphan_slots: u64,
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
            && self.orphan_slots == 0
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(p);
        }
    }
}

/// The stored nodes of one node table in the order a [`StackBuilder`] emits them: post-order
/// (every node after its descendants, siblings in key order), made from the table's key order
/// (every node before its descendants) with a stack of at most one node per path length. Reads
/// the table once, in order, trie by trie: storage tries by owner as the accounts come.
struct StoredNodes<'a> {
    rows: std::iter::Fuse<KvIter<'a>>,
    /// The next row in key order, not yet on the stack.
    peeked: Option<KvPair>,
    /// Stored ancestors (in key order) of `peeked`, deepest last.
    stack: Vec<KvPair>,
    /// The next node in post-order, read but not yet matched.
    held: Option<KvPair>,
    /// Length of the owner prefix of every key (0 for the account trie, 32 for storage tries).
    owner_len: usize,
}

/// Order of two node paths (one byte per nibble) in a builder's output: a descendant before its
/// ancestor, otherwise key order.
fn post_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    if a.len() > b.len() && a.starts_with(b) {
        Ordering::Less
    } else if b.len() > a.len() && b.starts_with(a) {
        Ordering::Greater
    } else {
        a.cmp(b)
    }
}

impl<'a> StoredNodes<'a> {
    fn new<R: KvRead + ?Sized>(kv: &'a R, table: Table, owner_len: usize) -> Self {
        Self {
            rows: kv.range_from(table, &[], Reading::Scan).fuse(),
            peeked: None,
            stack: Vec::new(),
            held: None,
            owner_len,
        }
    }

    /// The next row in key order that belongs to `owner`, skipping rows of owners before it
    /// (nodes of no account: `verify` counts them as extra).
    fn peek_row(&mut self, owner: &[u8]) -> Result<bool> {
        loop {
            if self.peeked.is_none() {
                self.peeked = self.rows.next().transpose()?;
            }
            let Some((k, _)) = &self.peeked else { return Ok(false) };
            if k.starts_with(owner) {
                return Ok(true);
            }
            if k.as_ref() > owner {
                return Ok(false);
            }
            self.peeked = None;
        }
    }

    /// The next stored node of `owner`'s trie in post-order, kept until [`Self::take`].
    fn peek(&mut self, owner: &[u8]) -> Result<Option<&KvPair>> {
        if self.held.as_ref().is_some_and(|(k, _)| !k.starts_with(owner)) {
            self.held = None;
        }
        while self.held.is_none() {
            let next = if self.peek_row(owner)? { self.peeked.as_ref() } else { None };
            let next_is_below_top = match (next, self.stack.last()) {
                (None, None) => return Ok(None),
                (None, Some(_)) => false,
                (Some(_), None) => true,
                (Some((next, _)), Some((top, _))) => next.starts_with(top),
            };
            if next_is_below_top {
                self.stack.extend(self.peeked.take());
            } else {
                self.held = self.stack.pop();
            }
        }
        Ok(self.held.as_ref())
    }

    fn take(&mut self) {
        self.held = None;
    }

    /// Drops what is left of the trie being read (extra nodes, counted apart).
    fn end_trie(&mut self) {
        self.stack.clear();
        self.held = None;
    }
}

/// Compares each emitted node with the stored one, merging with the node table read in order.
/// A leaf may be absent (the flat entry it is rebuilt from is what the builder took); a stored
/// leaf must equal the built one.
struct CompareSink<'s, 'a> {
    stored: &'s mut StoredNodes<'a>,
    owner: Option<B256>,
    mismatches: Vec<String>,
    /// Built leaves that the node table does not hold.
    absent_leaves: u64,
}

impl CompareSink<'_, '_> {
    /// Whether the stored node at `path` equals `rlp`: `None` if there is none.
    fn stored_equals(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<Option<bool>> {
        let owner: &[u8] = self.owner.as_ref().map_or(&[], |o| o.as_slice());
        let owner_len = self.stored.owner_len;
        let want = path.to_vec();
        loop {
            let Some((k, v)) = self.stored.peek(owner)? else { return Ok(None) };
            let order = post_order(k.get(owner_len..).unwrap_or_default(), &want);
            let same = v.as_ref() == rlp;
            match order {
                std::cmp::Ordering::Less => self.stored.take(),
                std::cmp::Ordering::Equal => {
                    self.stored.take();
                    return Ok(Some(same));
                }
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
    }

    fn mismatch(&mut self, path: &Nibbles, what: &str) {
        let owner =
            self.owner.map_or_else(|| "account trie".to_string(), |o| format!("storage of {o}"));
        self.mismatches
            .push(format!("{owner}: node at path {} {what}", crate::trie::nibbles_hex(path)));
    }
}

impl NodeSink for CompareSink<'_, '_> {
    fn node(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()> {
        match self.stored_equals(path, rlp)? {
            Some(true) => {}
            Some(false) => self.mismatch(path, "differs"),
            None => self.mismatch(path, "is missing"),
        }
        Ok(())
    }

    fn leaf(&mut self, path: &Nibbles, rlp: &[u8]) -> Result<()> {
        match self.stored_equals(path, rlp)? {
            Some(true) => {}
            Some(false) => self.mismatch(path, "differs"),
            None => self.absent_leaves += 1,
        }
        Ok(())
    }
}

/// The flat storage table read once in order, account by account.
struct StorageRows<'a> {
    rows: std::iter::Fuse<KvIter<'a>>,
    peeked: Option<KvPair>,
    /// Rows passed over: of owners no account has, or malformed.
    orphans: u64,
    /// The owner of the first row passed over.
    first_orphan: Option<Vec<u8>>,
}

impl StorageRows<'_> {
    fn pass_over(&mut self) {
        if let Some((k, _)) = self.peeked.take() {
            self.orphans += 1;
            if self.first_orphan.is_none() {
                self.first_orphan = Some(k.get(..32).unwrap_or(&k).to_vec());
            }
        }
    }

    /// Passes over every row left: after the last account, they are all orphans.
    fn pass_over_rest(&mut self) -> Result<()> {
        loop {
            if self.peeked.is_none() {
                self.peeked = self.rows.next().transpose()?;
            }
            if self.peeked.is_none() {
                return Ok(());
            }
            self.pass_over();
        }
    }

    /// The next slot of `owner` (slots of owners before it, which no account has, are passed
    /// over and counted). A malformed key (not 64 bytes) ends the owner's slots, as a range scan
    /// that stops there; it and the owner's rows after it are counted as orphans.
    fn next_slot(&mut self, owner: &B256) -> Result<Option<KvPair>> {
        loop {
            if self.peeked.is_none() {
                self.peeked = self.rows.next().transpose()?;
            }
            let Some((k, _)) = &self.peeked else { return Ok(None) };
            if k.starts_with(owner.as_slice()) {
                if k.len() != 64 {
                    self.skip_owner(owner)?;
                    return Ok(None);
                }
                return Ok(self.peeked.take());
            }
            if k.as_ref() > owner.as_slice() {
                return Ok(None);
            }
            self.pass_over();
        }
    }

    fn skip_owner(&mut self, owner: &B256) -> Result<()> {
        while let Some((k, _)) = &self.peeked {
            if !k.starts_with(owner.as_slice()) {
                break;
            }
            self.pass_over();
            self.peeked = self.rows.next().transpose()?;
        }
        Ok(())
    }
}

fn count_keys<R: KvRead + ?Sized>(kv: &R, table: Table, prefix: &[u8]) -> Result<u64> {
    let end = prefix_end(prefix);
    let mut n = 0;
    for item in kv.range_from(table, prefix, Reading::Scan) {
        let (k, _) = item?;
        if k.as_ref() >= end.as_slice() || !k.starts_with(prefix) {
            break;
        }
        n += 1;
    }
    Ok(n)
}

/// How far a [`LeafDb::verify_with`] has come: given to its callback every `every` accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Accounts checked so far.
    pub accounts: u64,
    /// Storage slots checked so far.
    pub slots: u64,
    /// The last account checked (hashed address). Hashed addresses spread evenly, so its
    /// position in the key space is the share of the accounts checked: see [`Self::fraction`].
    pub last: B256,
}

impl VerifyProgress {
    /// The share of the key space behind [`Self::last`], 0.0 to 1.0.
    pub fn fraction(&self) -> f64 {
        let mut top = [0u8; 8];
        top.copy_from_slice(&self.last[..8]);
        u64::from_be_bytes(top) as f64 / (u64::MAX as f64 + 1.0)
    }
}

impl<S: KvStore> LeafDb<S> {
    /// Recomputes every root from the flat tables on a snapshot and compares; see
    /// [`VerifyReport`]. Reads by merge-scan: the accounts, the storage and both node tables
    /// each once in key order beside the builders (the node tables turned into the builders'
    /// children-first order by `StoredNodes`); only code is read by point.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_with(u64::MAX, |_| {})
    }

    /// [`Self::verify`], calling `progress` after every `every` accounts (a check of mainnet's
    /// state takes long enough that its operator wants to see it move).
    pub fn verify_with(
        &self,
        every: u64,
        mut progress: impl FnMut(&VerifyProgress),
    ) -> Result<VerifyReport> {
        let snap = self.store().snapshot();
        let mut report = VerifyReport {
            stored_root: read_account_root(&snap)?,
            head: self.head()?,
            ..Default::default()
        };
        let mut account_nodes = StoredNodes::new(&snap, Table::AccountNodes, 0);
        let mut storage_nodes = StoredNodes::new(&snap, Table::StorageNodes, 32);
        let mut storage_rows = StorageRows {
            rows: snap.range_from(Table::Storage, &[], Reading::Scan).fuse(),
            peeked: None,
            orphans: 0,
            first_orphan: None,
        };
        let mut accounts = StackBuilder::new(CompareSink {
            stored: &mut account_nodes,
            owner: None,
            mismatches: Vec::new(),
            absent_leaves: 0,
        });
        let mut storage_nodes_expected = 0u64;
        for item in snap.range_from(Table::Accounts, &[], Reading::Scan) {
            let (key, value) = item?;
            let (owner, account) = decode_account_row(&key, &value)?;
            report.accounts += 1;
            let mut storage = StackBuilder::new(CompareSink {
                stored: &mut storage_nodes,
                owner: Some(owner),
                mismatches: Vec::new(),
                absent_leaves: 0,
            });
            while let Some((k, v)) = storage_rows.next_slot(&owner)? {
                report.slots += 1;
                let value = decode_slot_value(&v)?;
                storage.add_leaf(Nibbles::unpack(&k[32..]), slot_leaf_value(&value))?;
            }
            let (built, sink) = storage.finish_into()?;
            sink.stored.end_trie();
            storage_nodes_expected += built.stored_nodes - sink.absent_leaves;
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
            if report.accounts.is_multiple_of(every) {
                let (accounts, slots) = (report.accounts, report.slots);
                progress(&VerifyProgress { accounts, slots, last: owner });
            }
        }
        storage_rows.pass_over_rest()?;
        report.orphan_slots = storage_rows.orphans;
        if let Some(owner) = &storage_rows.first_orphan {
            report.problem(format!(
                "{} flat storage rows belong to no account (the first under {})",
                report.orphan_slots,
                alloy_primitives::hex::encode_prefixed(owner)
            ));
        }
        let (built, sink) = accounts.finish_into()?;
        let sink_absent = sink.absent_leaves;
        report.computed_root = built.root;
        for m in sink.mismatches {
            report.node_mismatches += 1;
            report.problem(m);
        }
        let stored_account_nodes = count_keys(&snap, Table::AccountNodes, &[])?;
        let stored_storage_nodes = count_keys(&snap, Table::StorageNodes, &[])?;
        let extra = stored_account_nodes.saturating_sub(built.stored_nodes - sink_absent)
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
