//! [`WirePath`]: a trie path or chunk prefix of at most 64 nibbles as `leaf/1` sends it, in
//! hex-prefix ("compact") encoding; it converts to and from the trie's `alloy_trie::Nibbles`.

use super::protocol::MAX_PREFIX_NIBBLES;
use alloy_rlp::{Decodable, Encodable, Header};
use bytes::BufMut;

/// Largest compact encoding of a [`WirePath`]: one flag byte plus 32 bytes of nibbles.
const MAX_COMPACT_LEN: usize = MAX_PREFIX_NIBBLES / 2 + 1;

/// Flag nibble of a compact path with an even number of nibbles.
const FLAG_EVEN: u8 = 0x0;
/// Flag nibble of a compact path with an odd number of nibbles.
const FLAG_ODD: u8 = 0x1;

/// Why a nibble sequence was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WirePathError {
    /// A nibble value is above 15.
    #[error("nibble {value} at index {index} is above 15")]
    NibbleOutOfRange {
        /// Position of the offending nibble.
        index: usize,
        /// Its value.
        value: u8,
    },
    /// More than [`MAX_PREFIX_NIBBLES`] nibbles.
    #[error("{len} nibbles exceed the limit of {MAX_PREFIX_NIBBLES}")]
    TooLong {
        /// Number of nibbles given.
        len: usize,
    },
}

/// A sequence of 0..=64 nibbles (values 0..=15): a chunk prefix of hashed keys, or the path of a
/// trie node from its root.
///
/// On the wire it is an RLP string holding the hex-prefix encoding without the leaf flag: the
/// first byte is `0x00` for an even number of nibbles, or `0x1n` for an odd number whose first
/// nibble is `n`; the remaining nibbles follow two per byte, high nibble first. The empty path is
/// the single byte `0x00`. Anything else (other flags, a non-zero low nibble after an even flag,
/// an empty string, more than 33 bytes) is malformed.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WirePath(Vec<u8>);

impl WirePath {
    /// The empty path: the root of a trie, or the prefix of the whole key space.
    pub const fn root() -> Self {
        Self(Vec::new())
    }

    /// Builds a path from nibble values, refusing values above 15 and more than 64 nibbles.
    pub fn from_nibbles(nibbles: &[u8]) -> Result<Self, WirePathError> {
        if nibbles.len() > MAX_PREFIX_NIBBLES {
            return Err(WirePathError::TooLong { len: nibbles.len() });
        }
        if let Some((index, &value)) = nibbles.iter().enumerate().find(|&(_, &n)| n > 0x0f) {
            return Err(WirePathError::NibbleOutOfRange { index, value });
        }
        Ok(Self(nibbles.to_vec()))
    }

    /// The nibble values, each in 0..=15.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Number of nibbles.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether this is the empty path.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// This path extended by one nibble (`None` if `nibble > 15` or the path is already 64 long):
    /// how a client splits a "too large" chunk into its 16 children.
    pub fn child(&self, nibble: u8) -> Option<Self> {
        if nibble > 0x0f || self.0.len() >= MAX_PREFIX_NIBBLES {
            return None;
        }
        let mut nibbles = self.0.clone();
        nibbles.push(nibble);
        Some(Self(nibbles))
    }

    /// Whether the 32-byte key starts with this path.
    pub fn is_prefix_of(&self, key: &[u8; 32]) -> bool {
        self.0.iter().enumerate().all(|(i, &n)| {
            let byte = key[i / 2];
            let key_nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
            key_nibble == n
        })
    }

    /// The compact (hex-prefix) encoding described on the type.
    pub fn to_compact(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() / 2 + 1);
        let rest = if self.0.len() % 2 == 1 {
            out.push((FLAG_ODD << 4) | self.0[0]);
            &self.0[1..]
        } else {
            out.push(FLAG_EVEN << 4);
            &self.0[..]
        };
        out.extend(rest.chunks_exact(2).map(|pair| (pair[0] << 4) | pair[1]));
        out
    }

    /// Decodes the compact encoding, refusing every non-canonical form.
    pub fn from_compact(bytes: &[u8]) -> Result<Self, alloy_rlp::Error> {
        let (&first, rest) =
            bytes.split_first().ok_or(alloy_rlp::Error::Custom("empty compact nibble path"))?;
        if bytes.len() > MAX_COMPACT_LEN {
            return Err(alloy_rlp::Error::Custom("compact nibble path longer than 64 nibbles"));
        }
        let mut nibbles = Vec::with_capacity(rest.len() * 2 + 1);
        match first >> 4 {
            FLAG_EVEN if first & 0x0f == 0 => {}
            FLAG_EVEN => {
                return Err(alloy_rlp::Error::Custom("compact nibble path: padding nibble not 0"));
            }
            FLAG_ODD => nibbles.push(first & 0x0f),
            _ => return Err(alloy_rlp::Error::Custom("compact nibble path: invalid flag")),
        }
        for &byte in rest {
            nibbles.push(byte >> 4);
            nibbles.push(byte & 0x0f);
        }
        if nibbles.len() > MAX_PREFIX_NIBBLES {
            return Err(alloy_rlp::Error::Custom("compact nibble path longer than 64 nibbles"));
        }
        Ok(Self(nibbles))
    }
}

impl Encodable for WirePath {
    fn encode(&self, out: &mut dyn BufMut) {
        self.to_compact().as_slice().encode(out);
    }

    fn length(&self) -> usize {
        self.to_compact().as_slice().length()
    }
}

impl Decodable for WirePath {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let bytes = Header::decode_bytes(buf, false)?;
        Self::from_compact(bytes)
    }
}

/// The trie's nibble type (`alloy_trie::Nibbles`) for a wire path. A `WirePath` holds at most 64
/// nibbles of at most 15 each (its constructor and decoder refuse anything else), so the
/// conversion is total.
impl From<&WirePath> for alloy_trie::Nibbles {
    fn from(path: &WirePath) -> Self {
        Self::from_nibbles_unchecked(path.as_slice())
    }
}

impl From<WirePath> for alloy_trie::Nibbles {
    fn from(path: WirePath) -> Self {
        Self::from(&path)
    }
}

/// A trie path as a wire path; refused beyond 64 nibbles.
impl TryFrom<&alloy_trie::Nibbles> for WirePath {
    type Error = WirePathError;

    fn try_from(nibbles: &alloy_trie::Nibbles) -> Result<Self, WirePathError> {
        Self::from_nibbles(&nibbles.to_vec())
    }
}

impl TryFrom<alloy_trie::Nibbles> for WirePath {
    type Error = WirePathError;

    fn try_from(nibbles: alloy_trie::Nibbles) -> Result<Self, WirePathError> {
        Self::try_from(&nibbles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_encoding_matches_hex_prefix_examples() {
        // Hex-prefix examples from the Ethereum yellow paper, appendix C, without the leaf flag.
        let cases: [(&[u8], &[u8]); 4] = [
            (&[], &[0x00]),
            (&[1, 2, 3, 4, 5], &[0x11, 0x23, 0x45]),
            (&[0, 1, 2, 3, 4, 5], &[0x00, 0x01, 0x23, 0x45]),
            (&[0x0f, 1, 0x0c, 0x0b, 8], &[0x1f, 0x1c, 0xb8]),
        ];
        for (nibbles, compact) in cases {
            let path = WirePath::from_nibbles(nibbles).expect("valid test nibbles");
            assert_eq!(path.to_compact(), compact);
            assert_eq!(WirePath::from_compact(compact), Ok(path.clone()));
            let rlp = alloy_rlp::encode(&path);
            assert_eq!(rlp.len(), path.length(), "length() must match encode() for {nibbles:?}");
            assert_eq!(alloy_rlp::decode_exact::<WirePath>(&rlp), Ok(path));
        }
    }

    #[test]
    fn constructor_refuses_bad_nibbles() {
        assert_eq!(
            WirePath::from_nibbles(&[1, 16]),
            Err(WirePathError::NibbleOutOfRange { index: 1, value: 16 })
        );
        assert_eq!(WirePath::from_nibbles(&[0; 65]), Err(WirePathError::TooLong { len: 65 }));
        assert!(WirePath::from_nibbles(&[0x0f; 64]).is_ok());
    }

    #[test]
    fn decoder_refuses_non_canonical_compact_forms() {
        for bad in [&[][..], &[0x01], &[0x20], &[0x30, 0x12], &[0xff]] {
            assert!(WirePath::from_compact(bad).is_err(), "{bad:?} must be refused");
        }
        // 65 nibbles: odd flag plus 32 bytes.
        let mut too_long = vec![0x11];
        too_long.extend([0u8; 32]);
        assert!(WirePath::from_compact(&too_long).is_err());
        // 66 nibbles: even flag plus 33 bytes.
        let mut too_long = vec![0x00];
        too_long.extend([0u8; 33]);
        assert!(WirePath::from_compact(&too_long).is_err());
    }

    #[test]
    fn child_and_prefix_logic() {
        let root = WirePath::root();
        let a = root.child(0x0a).expect("room for a child");
        let ab = a.child(0x0b).expect("room for a child");
        assert!(root.child(16).is_none());
        let mut key = [0u8; 32];
        key[0] = 0xab;
        assert!(root.is_prefix_of(&key));
        assert!(a.is_prefix_of(&key));
        assert!(ab.is_prefix_of(&key));
        assert!(!a.child(0x0c).expect("room").is_prefix_of(&key));
        let full = WirePath::from_nibbles(&[0; 64]).expect("64 nibbles are legal");
        assert!(full.child(0).is_none());
    }
}
