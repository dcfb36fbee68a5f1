//! [`PenaltyClass`]: how much a peer's misbehaviour costs it. Every layer that can blame a peer
//! (the `leaf/1` decoder, request routing, the session, the sync) names one of these classes;
//! the peer manager's scoring ([`crate::peers::score`]) turns it into a score change.

/// How much a peer's misbehaviour costs it, in the classes of lighthouse-style peer scoring
/// (defined in `docs/leaf-protocol.md`, "Penalties"). The peer manager turns a class into a score
/// change; scores decay over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PenaltyClass {
    /// Certain protocol violation: disconnect and ban at once.
    Fatal,
    /// Serious but possibly accidental (e.g. a timed-out response): a few of these disconnect.
    High,
    /// Tolerated occasionally (an unsolicited or late response, an unknown message id).
    Mid,
    /// Minor (an empty answer where data was expected): many of these are needed to disconnect.
    Low,
}

/// What a subprotocol decoder's error (`eth/69`, `snap/1`, `leaf/1`) tells the session: whether
/// the peer broke the protocol, and from that the disconnect reason and the penalty.
pub trait MessageFault {
    /// Whether the peer broke the protocol (disconnect with reason 0x02 "breach of protocol").
    /// Only an unknown message id is not a breach: it is dropped and penalised.
    fn is_protocol_breach(&self) -> bool;

    /// The disconnect reason to send, `None` when the message is only dropped.
    fn disconnect_reason(&self) -> Option<crate::p2pstream::DisconnectReason> {
        self.is_protocol_breach().then_some(crate::p2pstream::DisconnectReason::ProtocolBreach)
    }

    /// The penalty the sending peer earns: fatal for a breach, mid for a dropped message.
    fn penalty(&self) -> PenaltyClass {
        if self.is_protocol_breach() { PenaltyClass::Fatal } else { PenaltyClass::Mid }
    }
}
