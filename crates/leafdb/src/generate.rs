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

impl<S: KvStore> LeafDb<S> {
    /// Writes the synthetic state of `params` into this empty leafdb as block 0.
    pub fn generate(&self, params: GenParams) -> Result<ImportOutcome> {
        let mut order: Vec<(B256, u64)> =
            (0..params.accounts).map(|i| (keccak256(params.address(i)), i)).collect();
        order.sort_unstable();
        let mut import = BulkImport::start(self, "synthetic state")?;
        let code_hashes: Vec<B256> =
            (0..params.code_pool()).map(|k| keccak256(params.code(k))).collect();
        if params.contracts() > 0 || params.giants() > 0 {
            for k in 0..params.code_pool() {
                import.add_code(&params.code(k))?;
            }
        }
        for (hashed_address, i) in order {
            let a = params.account(i);
            let code_hash = a.code.map_or(EMPTY_CODE_HASH, |k| code_hashes[k as usize]);
            let mut slots: Vec<(B256, U256)> = (0..a.slots)
                .map(|j| {
                    let (k, v) = params.slot(i, j);
                    (keccak256(k), v)
                })
                .collect();
            slots.sort_unstable();
            let account =
                ImportAccount { hashed_address, nonce: a.nonce, balance: a.balance, code_hash };
            import.add_account(account, slots)?;
        }
        import.finish(BlockHeader::default())
    }
}
