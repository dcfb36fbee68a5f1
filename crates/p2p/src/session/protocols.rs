//! Which subprotocols a session speaks: [`Subprotocol`], the capability indexes of one
//! connection ([`Caps`]) and the rule deciding whether a peer is worth keeping.

use super::SessionError;
use crate::{
    eth,
    leaf::protocol as leaf,
    p2pstream::{P2PStream, Protocol},
    snap,
};

/// One of the three capabilities leafsync speaks after Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subprotocol {
    /// `eth/69`: only so that `snap/1` may ride beside it (geth refuses snap without eth).
    Eth,
    /// `leaf/1`, ours.
    Leaf,
    /// `snap/1`.
    Snap,
}

impl Subprotocol {
    /// Its capability name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Eth => eth::protocol::PROTOCOL_NAME,
            Self::Leaf => leaf::PROTOCOL_NAME,
            Self::Snap => snap::protocol::PROTOCOL_NAME,
        }
    }

    /// Its entry in our Hello.
    pub fn protocol(self) -> Protocol {
        match self {
            Self::Eth => Protocol::new(
                eth::protocol::PROTOCOL_NAME,
                eth::protocol::PROTOCOL_VERSION,
                eth::protocol::MESSAGE_COUNT,
            ),
            Self::Leaf => Protocol::new(
                leaf::PROTOCOL_NAME,
                u64::from(leaf::PROTOCOL_VERSION),
                leaf::MESSAGE_COUNT,
            ),
            Self::Snap => Protocol::new(
                snap::protocol::PROTOCOL_NAME,
                snap::protocol::PROTOCOL_VERSION,
                snap::protocol::MESSAGE_COUNT,
            ),
        }
    }
}

/// The protocols of our Hello: `leaf/1` when `leaf`, and `eth/69` with `snap/1` when `eth`
/// (geth serves snap/1 only beside eth, so the two always go together).
pub fn hello_protocols(leaf: bool, eth: bool) -> Vec<Protocol> {
    let mut protocols = Vec::with_capacity(3);
    if eth {
        protocols.push(Subprotocol::Eth.protocol());
    }
    if leaf {
        protocols.push(Subprotocol::Leaf.protocol());
    }
    if eth {
        protocols.push(Subprotocol::Snap.protocol());
    }
    protocols
}

/// The capability index ([`crate::CapabilityMessage::cap`]) of each subprotocol a connection
/// shares, `None` for those it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Caps {
    pub(crate) eth: Option<usize>,
    pub(crate) leaf: Option<usize>,
    pub(crate) snap: Option<usize>,
}

impl Caps {
    /// The shared capabilities of `p2p`, checked against geth's rule and ours: a peer is kept if
    /// it shares `leaf/1`, or `eth/69` together with `snap/1`. `snap/1` without `eth/69` is
    /// refused ([`SessionError::SnapWithoutEth`], geth's "snap without compatible eth"); a snap
    /// beside a leaf without eth is not used. Anything else is useless
    /// ([`SessionError::NoSharedCapability`]).
    pub(crate) fn of<S>(p2p: &P2PStream<S>) -> Result<Self, SessionError>
    where
        S: futures::Stream<Item = Result<bytes::BytesMut, crate::EciesError>>
            + futures::Sink<bytes::Bytes, Error = crate::EciesError>
            + Unpin,
    {
        let index = |p: Subprotocol| p2p.capability(p.name()).map(|(cap, _)| cap);
        let mut caps = Self {
            eth: index(Subprotocol::Eth),
            leaf: index(Subprotocol::Leaf),
            snap: index(Subprotocol::Snap),
        };
        if caps.snap.is_some() && caps.eth.is_none() {
            if caps.leaf.is_none() {
                return Err(SessionError::SnapWithoutEth);
            }
            caps.snap = None;
        }
        if caps.leaf.is_none() && (caps.eth.is_none() || caps.snap.is_none()) {
            return Err(SessionError::NoSharedCapability);
        }
        Ok(caps)
    }

    /// The capability index of `protocol`, if shared.
    pub(crate) fn index(&self, protocol: Subprotocol) -> Option<usize> {
        match protocol {
            Subprotocol::Eth => self.eth,
            Subprotocol::Leaf => self.leaf,
            Subprotocol::Snap => self.snap,
        }
    }

    /// Which subprotocol capability index `cap` is.
    pub(crate) fn protocol_of(&self, cap: usize) -> Option<Subprotocol> {
        [Subprotocol::Eth, Subprotocol::Leaf, Subprotocol::Snap]
            .into_iter()
            .find(|p| self.index(*p) == Some(cap))
    }
}
