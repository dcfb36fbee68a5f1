//! State the protocol writes outside transactions, which a block's traces do not show: geth's
//! `debug_traceBlock*` runs the system calls on an EVM without the tracer (the pre-execution
//! calls before the first transaction) or not at all (the post-execution ones), and traces each
//! transaction alone.
//!
//! * Before the transactions (known from the header alone): EIP-4788 (Cancun) stores the
//!   timestamp and the parent beacon block root in the beacon roots contract's ring buffer, and
//!   EIP-2935 (Prague) stores the parent hash in the history contract's.
//! * After them (Prague): the EIP-7002 withdrawal and EIP-7251 consolidation request
//!   contracts dequeue, update their excess and reset their count, which depends on their queue:
//!   their four state slots after the block are read from the execution client
//!   ([`REQUEST_STATE_SLOTS`]).
//!
//! A system call to an address without code does nothing, so each write applies only to a
//! contract that exists ([`crate::fold::fold_full_block`] checks).

use alloy_primitives::{Address, B256, U256, address};

use crate::types::RpcBlock;

/// The EIP-4788 beacon roots contract.
pub const BEACON_ROOTS_ADDRESS: Address = address!("000F3df6D732807Ef1319fB7B8bB8522d0Beac02");

/// The length of the EIP-4788 ring buffer (8191): the timestamp goes to `timestamp % 8191`, the
/// root 8191 slots further.
pub const BEACON_ROOTS_BUFFER_LENGTH: u64 = 8191;

/// The EIP-2935 history storage contract.
pub const HISTORY_STORAGE_ADDRESS: Address = address!("0000F90827F1C53a10cb7A02335B175320002935");

/// The length of the EIP-2935 ring buffer (8191): block `n` stores its parent's hash at
/// `(n - 1) % 8191`.
pub const HISTORY_SERVE_WINDOW: u64 = 8191;

/// The EIP-7002 withdrawal request and EIP-7251 consolidation request contracts, whose
/// post-execution system calls change their state.
pub const REQUEST_CONTRACTS: [Address; 2] = [
    address!("00000961Ef480Eb55e80D19ad83579A64c007002"),
    address!("0000BBdDc7CE488642fb579F8B00f3a590007251"),
];

/// The slots a request contract's system call writes: the excess, the count, the queue's head
/// and tail (EIP-7002, EIP-7251). The queue's entries are only read.
pub const REQUEST_STATE_SLOTS: u64 = 4;

/// One storage slot a system call sets: `slot` of `address` holds `value` afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotWrite {
    /// The contract.
    pub address: Address,
    /// The slot (its key, not hashed).
    pub slot: B256,
    /// The value it holds after the call (zero: the slot is cleared).
    pub value: U256,
}

/// What the system calls of a block write, around its transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemWrites {
    /// Written before the first transaction.
    pub before: Vec<SlotWrite>,
    /// Holding after the block (read from the execution client).
    pub after: Vec<SlotWrite>,
}

fn slot(n: u64) -> B256 {
    B256::from(U256::from(n))
}

/// Whether `block` is of Prague or later: its header carries the EIP-7685 requests hash.
pub const fn is_prague(block: &RpcBlock) -> bool {
    block.requests_hash.is_some()
}

/// The pre-execution writes of `block`, from its header: EIP-4788's when it carries a parent
/// beacon block root (Cancun), EIP-2935's from Prague.
pub fn pre_execution_writes(block: &RpcBlock) -> Vec<SlotWrite> {
    let mut writes = Vec::new();
    if let Some(root) = block.parent_beacon_block_root {
        let index = block.timestamp % BEACON_ROOTS_BUFFER_LENGTH;
        writes.push(SlotWrite {
            address: BEACON_ROOTS_ADDRESS,
            slot: slot(index),
            value: U256::from(block.timestamp),
        });
        writes.push(SlotWrite {
            address: BEACON_ROOTS_ADDRESS,
            slot: slot(index + BEACON_ROOTS_BUFFER_LENGTH),
            value: U256::from_be_bytes(root.0),
        });
    }
    if is_prague(block) && block.number > 0 {
        writes.push(SlotWrite {
            address: HISTORY_STORAGE_ADDRESS,
            slot: slot((block.number - 1) % HISTORY_SERVE_WINDOW),
            value: U256::from_be_bytes(block.parent_hash.0),
        });
    }
    writes
}

/// The slots of a request contract to read after a Prague block ([`REQUEST_STATE_SLOTS`]).
pub fn request_state_slots() -> impl Iterator<Item = B256> {
    (0..REQUEST_STATE_SLOTS).map(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(number: u64, timestamp: u64, beacon: Option<B256>, prague: bool) -> RpcBlock {
        RpcBlock {
            number,
            hash: B256::repeat_byte(9),
            parent_hash: B256::repeat_byte(8),
            state_root: B256::ZERO,
            timestamp,
            withdrawals: Vec::new(),
            parent_beacon_block_root: beacon,
            requests_hash: prague.then_some(B256::repeat_byte(7)),
        }
    }

    #[test]
    fn the_header_says_what_the_pre_execution_calls_write() {
        assert!(pre_execution_writes(&block(5, 100, None, false)).is_empty(), "before Cancun");
        let root = B256::repeat_byte(0xbe);
        let cancun = pre_execution_writes(&block(5, 8191 + 100, Some(root), false));
        assert_eq!(
            cancun,
            [
                SlotWrite {
                    address: BEACON_ROOTS_ADDRESS,
                    slot: slot(100),
                    value: U256::from(8191 + 100)
                },
                SlotWrite {
                    address: BEACON_ROOTS_ADDRESS,
                    slot: slot(8291),
                    value: U256::from_be_bytes(root.0)
                },
            ]
        );
        let prague = pre_execution_writes(&block(8192 + 3, 100, Some(root), true));
        assert_eq!(prague.len(), 3);
        assert_eq!(
            prague[2],
            SlotWrite {
                address: HISTORY_STORAGE_ADDRESS,
                slot: slot(3),
                value: U256::from_be_bytes([8; 32])
            }
        );
        assert_eq!(request_state_slots().collect::<Vec<_>>(), [slot(0), slot(1), slot(2), slot(3)]);
    }
}
