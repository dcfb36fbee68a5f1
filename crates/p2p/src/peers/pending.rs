//! [`PendingInbound`]: the inbound handshakes in progress, counted in total and per remote host
//! (an IPv4 address or an IPv6 /64, [`host_of`]).
//! Each handshake task holds a [`PendingSlot`] that gives its place back when dropped, so that a
//! handshake that fails, is aborted or panics can never leak a slot (review finding L10).

use super::host::host_of;
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PendingFull {
    /// [`super::MAX_PENDING_INBOUND`] handshakes run already.
    Total,
    /// The IP's host has its share of pending handshakes already.
    PerIp,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Keyed by [`host_of`].
    per_host: HashMap<IpAddr, usize>,
}

/// The counters; cloned cheaply into the manager, shared with every [`PendingSlot`].
#[derive(Debug, Clone)]
pub(crate) struct PendingInbound {
    counts: Arc<Mutex<Counts>>,
    max_total: usize,
    max_per_ip: usize,
}

/// One pending inbound handshake; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct PendingSlot {
    counts: Arc<Mutex<Counts>>,
    host: IpAddr,
}

fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    // The counters stay consistent even if a holder panicked (each update is one statement).
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PendingInbound {
    /// At most `max_total` handshakes at once, and `max_per_ip` from one host.
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self { counts: Arc::default(), max_total, max_per_ip }
    }

    /// Takes a place for a handshake with `ip`, or says which limit is reached.
    pub(crate) fn try_acquire(&self, ip: IpAddr) -> Result<PendingSlot, PendingFull> {
        let host = host_of(ip);
        let mut counts = lock(&self.counts);
        if counts.total >= self.max_total {
            return Err(PendingFull::Total);
        }
        let from_host = counts.per_host.entry(host).or_insert(0);
        if *from_host >= self.max_per_ip {
            return Err(PendingFull::PerIp);
        }
        *from_host += 1;
        counts.total += 1;
        Ok(PendingSlot { counts: Arc::clone(&self.counts), host })
    }

    /// Handshakes in progress.
    pub(crate) fn total(&self) -> usize {
        lock(&self.counts).total
    }

    /// Handshakes in progress with `ip`'s host.
    #[cfg(test)]
    pub(crate) fn count_for(&self, ip: IpAddr) -> usize {
        lock(&self.counts).per_host.get(&host_of(ip)).copied().unwrap_or(0)
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(from_host) = counts.per_host.get_mut(&self.host) {
            *from_host = from_host.saturating_sub(1);
            if *from_host == 0 {
                counts.per_host.remove(&self.host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn limits_apply_in_total_and_per_ip() {
        let pending = PendingInbound::new(3, 2);
        let a1 = pending.try_acquire(A).expect("first from A");
        let _a2 = pending.try_acquire(A).expect("second from A");
        assert_eq!(pending.try_acquire(A).map(|_| ()), Err(PendingFull::PerIp));
        let _b1 = pending.try_acquire(B).expect("B has its own share");
        assert_eq!(pending.try_acquire(B).map(|_| ()), Err(PendingFull::Total));
        drop(a1);
        assert_eq!(pending.total(), 2);
        assert_eq!(pending.count_for(A), 1);
        let _a3 = pending.try_acquire(A).expect("A's freed place");
        // An IPv4-mapped IPv6 address is the same IP.
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped());
        assert_eq!(pending.try_acquire(mapped).map(|_| ()), Err(PendingFull::Total));
    }

    /// One host with a /64 cannot take more pending slots than one IPv4 address by using many
    /// of its addresses; another /64 has its own share.
    #[test]
    fn an_ipv6_64_is_one_host() {
        let pending = PendingInbound::new(32, 4);
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        let _slots: Vec<_> = (1..=4)
            .map(|n| pending.try_acquire(ip(&format!("2001:db8::{n}"))).expect("within the share"))
            .collect();
        assert_eq!(pending.try_acquire(ip("2001:db8::5")).map(|_| ()), Err(PendingFull::PerIp));
        assert_eq!(pending.count_for(ip("2001:db8::ffff")), 4);
        assert!(pending.try_acquire(ip("2001:db8:0:1::1")).is_ok(), "another /64");
    }

    /// L10: a handshake task that panics (or is aborted) still gives its slot back.
    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_or_aborted_handshake_frees_its_slot() {
        let pending = PendingInbound::new(1, 1);
        let slot = pending.try_acquire(A).expect("slot");
        let task = tokio::spawn(async move {
            let _slot = slot;
            panic!("handshake bug");
        });
        assert!(task.await.is_err_and(|e| e.is_panic()));
        assert_eq!(pending.total(), 0);
        assert_eq!(pending.count_for(A), 0);

        let slot = pending.try_acquire(A).expect("the slot is free again");
        let task = tokio::spawn(async move {
            let _slot = slot;
            std::future::pending::<()>().await;
        });
        task.abort();
        assert!(task.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(pending.total(), 0);
        assert!(pending.try_acquire(A).is_ok());
    }
}
