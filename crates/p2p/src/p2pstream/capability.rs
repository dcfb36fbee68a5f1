//! Capabilities (`name/version`), the protocols we offer, and the matching that assigns each
//! shared capability its message-id range after the base protocol.

use alloy_rlp::{BufMut, Decodable, Encodable, Header};

/// Message ids below this belong to the p2p base protocol; capabilities start here.
pub const BASE_PROTOCOL_MESSAGES: u64 = 0x10;

/// Longest capability name we accept: devp2p names are short ASCII words ("eth", "snap",
/// "leaf"); 32 bytes leaves room while refusing junk.
pub const MAX_CAPABILITY_NAME_LEN: usize = 32;

/// A capability as advertised in Hello: `[name, version]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capability {
    /// Capability name, e.g. `leaf`.
    pub name: String,
    /// Capability version.
    pub version: u64,
}

impl Capability {
    /// A capability from its name and version.
    pub fn new(name: impl Into<String>, version: u64) -> Self {
        Self { name: name.into(), version }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.name, self.version)
    }
}

impl Encodable for Capability {
    fn encode(&self, out: &mut dyn BufMut) {
        let payload_length = self.name.as_bytes().length() + self.version.length();
        Header { list: true, payload_length }.encode(out);
        self.name.as_bytes().encode(out);
        self.version.encode(out);
    }

    fn length(&self) -> usize {
        let payload_length = self.name.as_bytes().length() + self.version.length();
        payload_length + alloy_rlp::length_of_length(payload_length)
    }
}

/// Decodes `[name, version, ...]`; further elements are ignored (forward compatibility).
impl Decodable for Capability {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let mut body = Header::decode_bytes(buf, true)?;
        let name = Header::decode_bytes(&mut body, false)?;
        if name.len() > MAX_CAPABILITY_NAME_LEN {
            return Err(alloy_rlp::Error::Custom("capability name too long"));
        }
        let name = std::str::from_utf8(name)
            .map_err(|_| alloy_rlp::Error::Custom("capability name not UTF-8"))?;
        let version = u64::decode(&mut body)?;
        Ok(Self { name: name.to_owned(), version })
    }
}

/// A protocol we offer: a capability and how many message ids it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// The capability.
    pub cap: Capability,
    /// Number of message ids the capability uses (its id range after the offset).
    pub messages: u8,
}

impl Protocol {
    /// A protocol offering `name/version` with `messages` message ids.
    pub fn new(name: impl Into<String>, version: u64, messages: u8) -> Self {
        Self { cap: Capability::new(name, version), messages }
    }
}

/// A capability both sides support, with its place in the message-id space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCapability {
    /// The capability (highest version both sides support).
    pub cap: Capability,
    /// First absolute message id of this capability.
    pub offset: u64,
    /// Number of message ids it uses.
    pub messages: u8,
}

impl SharedCapability {
    /// Whether an absolute message id falls into this capability's range.
    pub fn contains(&self, id: u64) -> bool {
        id >= self.offset && id - self.offset < u64::from(self.messages)
    }
}

/// The shared capabilities of a connection, sorted by name, with consecutive offsets from
/// [`BASE_PROTOCOL_MESSAGES`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SharedCapabilities(Vec<SharedCapability>);

impl SharedCapabilities {
    /// Matches our protocols with the remote's capabilities: for each name both sides know, the
    /// highest version both support; sorted by name; offsets assigned in that order.
    pub fn new(ours: &[Protocol], theirs: &[Capability]) -> Self {
        let mut best: Vec<&Protocol> = Vec::new();
        for p in ours.iter().filter(|p| theirs.contains(&p.cap)) {
            match best.iter_mut().find(|b| b.cap.name == p.cap.name) {
                Some(b) if b.cap.version < p.cap.version => *b = p,
                Some(_) => {}
                None => best.push(p),
            }
        }
        best.sort_by(|a, b| a.cap.name.cmp(&b.cap.name));
        let mut offset = BASE_PROTOCOL_MESSAGES;
        let shared = best
            .into_iter()
            .map(|p| {
                let s = SharedCapability { cap: p.cap.clone(), offset, messages: p.messages };
                offset += u64::from(p.messages);
                s
            })
            .collect();
        Self(shared)
    }

    /// Whether nothing is shared.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The shared capabilities in offset order.
    pub fn iter(&self) -> impl Iterator<Item = &SharedCapability> {
        self.0.iter()
    }

    /// The shared capability at `index` (as carried in [`super::CapabilityMessage::cap`]).
    pub fn get(&self, index: usize) -> Option<&SharedCapability> {
        self.0.get(index)
    }

    /// Index of the shared capability with this name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|c| c.cap.name == name)
    }

    /// The capability an absolute message id belongs to, with its index.
    pub fn find_by_id(&self, id: u64) -> Option<(usize, &SharedCapability)> {
        self.0.iter().enumerate().find(|(_, c)| c.contains(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Highest version both sides know, per name; sorted by name; offsets from 0x10 by the
    /// message counts of the chosen versions; unshared names and versions dropped.
    #[test]
    fn matching_and_offsets() {
        let ours = [
            Protocol::new("leaf", 1, 10),
            Protocol::new("eth", 68, 17),
            Protocol::new("leaf", 2, 12),
            Protocol::new("eth", 67, 17),
            Protocol::new("snap", 1, 8),
        ];
        let theirs = [
            Capability::new("leaf", 1),
            Capability::new("leaf", 2),
            Capability::new("leaf", 3),
            Capability::new("eth", 67),
            Capability::new("wit", 0),
        ];
        let shared = SharedCapabilities::new(&ours, &theirs);
        let got: Vec<_> =
            shared.iter().map(|c| (c.cap.to_string(), c.offset, c.messages)).collect();
        assert_eq!(got, vec![("eth/67".into(), 0x10, 17), ("leaf/2".into(), 0x21, 12)]);
        assert_eq!(shared.find_by_id(0x20).map(|(i, _)| i), Some(0));
        assert_eq!(shared.find_by_id(0x21).map(|(i, _)| i), Some(1));
        assert_eq!(shared.find_by_id(0x2c).map(|(i, _)| i), Some(1));
        assert!(shared.find_by_id(0x2d).is_none());
        assert!(shared.find_by_id(0x0f).is_none());
        assert!(SharedCapabilities::new(&ours, &[Capability::new("leaf", 9)]).is_empty());
    }
}
