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
