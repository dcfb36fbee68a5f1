//! Walking RLP headers without decoding: how the `snap/1` and `leaf/1` decoders count the items
//! of a list before anything is allocated.

use alloy_rlp::Header;

/// Splits the next RLP item off `buf`: whether it is a list, and its payload. Allocates nothing.
pub(crate) fn split_item<'a>(buf: &mut &'a [u8]) -> alloy_rlp::Result<(bool, &'a [u8])> {
    let header = Header::decode(buf)?;
    let (payload, rest) =
        buf.split_at_checked(header.payload_length).ok_or(alloy_rlp::Error::InputTooShort)?;
    *buf = rest;
    Ok((header.list, payload))
}

/// Number of items in a list payload, counted from their headers (no allocation).
pub(crate) fn count_items(mut list: &[u8]) -> alloy_rlp::Result<usize> {
    let mut count = 0;
    while !list.is_empty() {
        split_item(&mut list)?;
        count += 1;
    }
    Ok(count)
}

/// The payload of field `index` of the RLP list `item` when that field is a list, `None` when it
/// is a string.
pub(crate) fn list_field(item: &[u8], index: usize) -> alloy_rlp::Result<Option<&[u8]>> {
    let mut outer = item;
    let (is_list, mut fields) = split_item(&mut outer)?;
    if !is_list {
        return Err(alloy_rlp::Error::UnexpectedString);
    }
    for _ in 0..index {
        split_item(&mut fields)?;
    }
    let (is_list, field) = split_item(&mut fields)?;
    Ok(is_list.then_some(field))
}
