//! The `eth/69` capability (EIP-7642) as leafsync speaks it: enough to stand beside `snap/1` on
//! a connection to geth (which refuses snap without a compatible eth) as a quiet, well-behaved
//! peer. [`protocol`] holds the ids and limits, [`EthMessage::decode`] checks every limit before
//! decoding, [`Status::validate`] checks a peer's handshake the way geth checks ours.

mod codec;
pub mod protocol;
mod status;
mod types;

pub use codec::{EthError, EthMessage};
pub use status::{BlockRangeError, EthForkCheck, EthStatusError};
pub use types::{
    BlockRangeUpdate, EmptyResponse, GetBlockHeaders, HashOrNumber, HeadersRequest, RequestIds,
    Status,
};
