//! Deterministic synthetic states with a realistic shape, for demos, tests and benchmarks.
//!
//! Shape (per account, decided by a per-account random stream so the output depends only on the
//! seed and the count): one account in ten is a contract; a contract's slot count is Pareto
//! distributed (most have a handful, a few thousands), and states of 50,000 accounts or more
//! also hold a few giant contracts with 100k–150k slots; codes are 1–8 KiB, drawn from a pool a
//! quarter the size of the contract count with a skew towards popular ones, so many are shared.

use alloy_primitives::{Address, B256, U256, keccak256};

use crate::{
    bulk::{BulkImport, ImportAccount, ImportOutcome},
    db::{EMPTY_CODE_HASH, LeafDb},
    diff::{AccountChange, AccountUpdate, BlockDiff},
    error::Result,
    kv::KvStore,
    schema::BlockHeader,
};

/// One contract in this many accounts.
pub const CONTRACT_EVERY: u64 = 10;
/// Pareto shape of contract slot counts: 1.15 puts ~1% of contracts above 1,000 slots.
pub const SLOT_PARETO_ALPHA: f64 = 1.15;
/// Pareto scale (minimum slot count) of ordinary contracts: 6 gives a mean near 36, so a
/// 1M-account state holds about 4M slots (the size the benchmarks are specified for).
pub const SLOT_PARETO_MIN: f64 = 6.0;
/// Cap on an ordinary contract's slots, so giants stay the only >100k tries.
pub const MAX_ORDINARY_SLOTS: u64 = 50_000;
/// Accounts per giant contract (at least one giant from [`GIANT_MIN_ACCOUNTS`] accounts on).
pub const ACCOUNTS_PER_GIANT: u64 = 250_000;
/// Smallest state that gets a giant contract.
pub const GIANT_MIN_ACCOUNTS: u64 = 50_000;

/// splitmix64: tiny, fast and stable across versions (unlike `StdRng`), so a seed always gives
/// the same state.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A stream from a seed.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Parameters of a synthetic state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenParams {
    /// Number of accounts.
    pub accounts: u64,
    /// Seed.
    pub seed: u64,
}

/// What one synthetic account looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticAccount {
    /// Its address.
    pub address: Address,
    /// Nonce.
    pub nonce: u64,
    /// Balance.
    pub balance: U256,
    /// Index into the code pool, for contracts.
    pub code: Option<u64>,
    /// Number of storage slots.
    pub slots: u64,
}

/// One account of a synthetic state as stored: hashed address, fields, and hashed storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenAccount {
    /// Its index in the generator (`GenParams::account(index)`).
    pub index: u64,
    /// keccak256 of its address.
    pub hashed_address: B256,
    /// Nonce.
    pub nonce: u64,
    /// Balance.
    pub balance: U256,
    /// Code hash ([`EMPTY_CODE_HASH`] for none).
    pub code_hash: B256,
    /// Storage as `(hashed slot, value)`, sorted by hashed slot; values are non-zero.
    pub slots: Vec<(B256, U256)>,
}

impl GenAccount {
    /// The account as the bulk importer takes it (its storage goes alongside).
    pub const fn import_account(&self) -> ImportAccount {
        ImportAccount {
            hashed_address: self.hashed_address,
            nonce: self.nonce,
            balance: self.balance,
            code_hash: self.code_hash,
        }
    }
}

/// Accounts a synthetic block creates, per hundred it changes.
pub const NEW_ACCOUNTS_PER_100: u64 = 10;
/// Storage slots a synthetic block writes in each contract it changes, at most.
pub const BLOCK_SLOTS_PER_CONTRACT: u64 = 4;
/// Seconds between synthetic blocks (the post-merge slot time).
pub const BLOCK_TIME: u64 = 12;

impl GenParams {
    fn contracts(&self) -> u64 {
        self.accounts / CONTRACT_EVERY
    }

    /// Size of the code pool.
    pub fn code_pool(&self) -> u64 {
        (self.contracts() / 4).max(1)
    }

    fn giants(&self) -> u64 {
        if self.accounts >= GIANT_MIN_ACCOUNTS {
            (self.accounts / ACCOUNTS_PER_GIANT).max(1)
        } else {
            0
        }
    }

    /// The address of account `i`.
    pub fn address(&self, i: u64) -> Address {
        let mut pre = [0u8; 16];
        pre[..8].copy_from_slice(&self.seed.to_be_bytes());
        pre[8..].copy_from_slice(&i.to_be_bytes());
        Address::from_slice(&keccak256(pre)[12..])
    }

    /// Account `i` of the state.
    pub fn account(&self, i: u64) -> SyntheticAccount {
        let mut rng = SplitMix::new(self.seed ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let address = self.address(i);
        let balance = U256::from(rng.next_u64()) * U256::from(1_000_000_000u64);
        // Giants are the first accounts of the order, contracts every CONTRACT_EVERY-th.
        let giant = i < self.giants();
        if !giant && i % CONTRACT_EVERY != CONTRACT_EVERY - 1 {
            return SyntheticAccount {
                address,
                nonce: rng.below(1000),
                balance,
                code: None,
                slots: 0,
            };
        }
        let slots = if giant {
            100_000 + rng.below(50_000)
        } else {
            let pareto = SLOT_PARETO_MIN / rng.unit().powf(1.0 / SLOT_PARETO_ALPHA);
            (pareto as u64).min(MAX_ORDINARY_SLOTS)
        };
        let u = rng.unit();
        let code = ((self.code_pool() as f64) * u * u) as u64 % self.code_pool();
        SyntheticAccount { address, nonce: 1, balance, code: Some(code), slots }
    }

    /// Slot `j` of account `i`: its key and a non-zero value.
    pub fn slot(&self, i: u64, j: u64) -> (B256, U256) {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&i.to_be_bytes());
        key[8..16].copy_from_slice(&j.to_be_bytes());
        key[16..24].copy_from_slice(&self.seed.to_be_bytes());
        let mut rng = SplitMix::new(self.seed ^ i.rotate_left(17) ^ j.wrapping_mul(0x9e37_79b9));
        (B256::from(key), U256::from(rng.next_u64() | 1))
    }

    /// Code `k` of the pool: 1–8 KiB of deterministic bytes.
    pub fn code(&self, k: u64) -> Vec<u8> {
        let mut rng = SplitMix::new(self.seed.wrapping_add(k).wrapping_mul(0x5851_f42d_4c95_7f2d));
        let len = 1024 + rng.below(7 * 1024) as usize;
        let mut code = Vec::with_capacity(len);
        while code.len() < len {
            code.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        code.truncate(len);
        code
    }
}

impl GenParams {
    /// Hashes of the code pool, by pool index.
    pub fn code_hashes(&self) -> Vec<B256> {
        (0..self.code_pool()).map(|k| keccak256(self.code(k))).collect()
    }

    /// Every account of the state as stored, in hashed-address order (the order of the tables
    /// and of the trie): the one materialisation the importer, the benchmarks and the reference
    /// models share. Storage is hashed and sorted account by account, as the iterator goes.
    pub fn hashed_accounts(&self) -> impl Iterator<Item = GenAccount> + '_ {
        let mut order: Vec<(B256, u64)> =
            (0..self.accounts).map(|i| (keccak256(self.address(i)), i)).collect();
        order.sort_unstable();
        let code_hashes = self.code_hashes();
        order.into_iter().map(move |(hashed_address, index)| {
            let a = self.account(index);
            GenAccount {
                index,
                hashed_address,
                nonce: a.nonce,
                balance: a.balance,
                code_hash: a.code.map_or(EMPTY_CODE_HASH, |k| code_hashes[k as usize]),
                slots: self.hashed_slots(index, a.slots),
            }
        })
    }

    /// The first `count` slots of account `index` as stored: `(hashed slot, value)`, sorted.
    pub fn hashed_slots(&self, index: u64, count: u64) -> Vec<(B256, U256)> {
        let mut slots: Vec<(B256, U256)> =
            (0..count).map(|j| self.slot(index, j)).map(|(k, v)| (keccak256(k), v)).collect();
        slots.sort_unstable();
        slots
    }

    /// Hash of synthetic block `n`; block 0 is the generated state, whose head hash is zero.
    pub fn block_hash(n: u64) -> B256 {
        if n == 0 { B256::ZERO } else { keccak256(n.to_be_bytes()) }
    }

    /// Header of synthetic block `n` on top of the generated state: hashes from
    /// [`Self::block_hash`], timestamp `n` × [`BLOCK_TIME`], and a zero state root (the root is
    /// what applying the block computes).
    pub fn block_header(n: u64) -> BlockHeader {
        BlockHeader {
            number: n,
            hash: Self::block_hash(n),
            parent_hash: if n == 0 { B256::ZERO } else { Self::block_hash(n - 1) },
            state_root: B256::ZERO,
            timestamp: n * BLOCK_TIME,
        }
    }

    /// Synthetic block `n` over this state, changing `changes` accounts: [`NEW_ACCOUNTS_PER_100`]
    /// in a hundred are new, the rest existing accounts whose balance and nonce change; a
    /// changed contract also gets up to [`BLOCK_SLOTS_PER_CONTRACT`] slot writes (existing or
    /// new slots; one write in eight clears). The diff depends only on the parameters, `n` and
    /// `changes`, and is valid on any state grown from this one.
    pub fn block(&self, n: u64, changes: u64) -> (BlockHeader, BlockDiff) {
        let mut rng = SplitMix::new(self.seed ^ n.wrapping_mul(0xb10c_b10c_b10c_b10d));
        let code_hashes = self.code_hashes();
        let mut diff = BlockDiff::default();
        for c in 0..changes {
            if self.accounts == 0 || rng.below(100) < NEW_ACCOUNTS_PER_100 {
                let address = self.address(self.accounts + n * changes + c);
                let update = AccountUpdate {
                    nonce: 1,
                    balance: U256::from(rng.next_u64()),
                    code_hash: EMPTY_CODE_HASH,
                    ..Default::default()
                };
                diff.accounts.insert(address, AccountChange::Updated(update));
                continue;
            }
            let index = rng.below(self.accounts);
            let a = self.account(index);
            let mut update = AccountUpdate {
                nonce: a.nonce + n,
                balance: U256::from(rng.next_u64()),
                code_hash: a.code.map_or(EMPTY_CODE_HASH, |k| code_hashes[k as usize]),
                ..Default::default()
            };
            if a.code.is_some() {
                for _ in 0..=rng.below(BLOCK_SLOTS_PER_CONTRACT) {
                    let (slot, _) = self.slot(index, rng.below(a.slots + 2));
                    let value =
                        if rng.below(8) == 0 { U256::ZERO } else { U256::from(rng.next_u64() | 1) };
                    update.storage.insert(slot, value);
                }
            }
            diff.accounts.insert(a.address, AccountChange::Updated(update));
        }
        (Self::block_header(n), diff)
    }
}

impl<S: KvStore> LeafDb<S> {
    /// Writes the synthetic state of `params` into this empty leafdb as block 0.
    pub fn generate(&self, params: GenParams) -> Result<ImportOutcome> {
        let mut import = BulkImport::start(self, "synthetic state")?;
        if params.contracts() > 0 || params.giants() > 0 {
            for k in 0..params.code_pool() {
                import.add_code(&params.code(k))?;
            }
        }
        for a in params.hashed_accounts() {
            import.add_account(a.import_account(), a.slots)?;
        }
        import.finish(BlockHeader::default())
    }
}
