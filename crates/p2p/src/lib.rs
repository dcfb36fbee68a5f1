//! leafsync networking: the RLPx transport (EIP-8 ECIES handshake, framing, MACs, snappy), the
//! devp2p base protocol, the `leaf/1` capability, discv5 discovery and peer management.
//!
//! Being built: the layers land in the following commits.
