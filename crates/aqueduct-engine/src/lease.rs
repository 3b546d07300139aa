//! The node's lease on its tasks. In a cluster, a node may copy records only while it knows its
//! coordination session is alive: the control plane renews the lease after every successful round trip to
//! ZooKeeper, and tasks stop forwarding records once it runs out. A node that was frozen (or cut off) past
//! its session timeout therefore copies nothing more before it learns that its tasks run elsewhere.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A deadline shared by the control plane (which renews it) and the tasks (which check it).
#[derive(Debug)]
pub struct Lease {
    epoch: Instant,
    /// Milliseconds after `epoch` until which tasks may forward records; `u64::MAX` is forever.
    until_ms: AtomicU64,
    /// The session whose round trips renew the lease; 0 is none.
    holder: AtomicU64,
    /// Held while the holder and the deadline change together, so a renewal cannot undo a revocation.
    changing: Mutex<()>,
}

impl Lease {
    /// A lease that never runs out (a node on its own).
    pub fn unlimited() -> Self {
        Self {
            epoch: Instant::now(),
            until_ms: AtomicU64::new(u64::MAX),
            holder: AtomicU64::new(0),
            changing: Mutex::new(()),
        }
    }

    /// A lease that has run out until it is renewed.
    pub fn expired() -> Self {
        Self {
            epoch: Instant::now(),
            until_ms: AtomicU64::new(0),
            holder: AtomicU64::new(0),
            changing: Mutex::new(()),
        }
    }

    /// Hands the lease to session `session` (a number greater than 0); it stays expired until that
    /// session renews it.
    pub fn grant(&self, session: u64) {
        let _changing = self.changing.lock().expect("lease");
        self.holder.store(session, Ordering::Release);
    }

    /// The session that may renew the lease, if any.
    pub fn holder(&self) -> Option<u64> {
        match self.holder.load(Ordering::Acquire) {
            0 => None,
            session => Some(session),
        }
    }

    /// Extends the lease to `duration` from now if `session` holds it; returns whether it did.
    pub fn renew(&self, session: u64, duration: Duration) -> bool {
        let _changing = self.changing.lock().expect("lease");
        if session == 0 || self.holder.load(Ordering::Acquire) != session {
            return false;
        }
        let until = self.epoch.elapsed() + duration;
        self.until_ms
            .store(until.as_millis() as u64, Ordering::Release);
        true
    }

    /// Ends the lease now and takes it from its session.
    pub fn revoke(&self) {
        let _changing = self.changing.lock().expect("lease");
        self.holder.store(0, Ordering::Release);
        self.until_ms.store(0, Ordering::Release);
    }

    /// Whether tasks may forward records now.
    pub fn is_valid(&self) -> bool {
        match self.until_ms.load(Ordering::Acquire) {
            u64::MAX => true,
            until => (self.epoch.elapsed().as_millis() as u64) < until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_until_its_deadline() {
        assert!(Lease::unlimited().is_valid());
        let lease = Lease::expired();
        assert!(!lease.is_valid());
        lease.grant(1);
        assert!(lease.renew(1, Duration::from_secs(60)));
        assert!(lease.is_valid());
        lease.renew(1, Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!lease.is_valid(), "ran out");
        lease.renew(1, Duration::from_secs(60));
        lease.revoke();
        assert!(!lease.is_valid());
    }

    #[test]
    fn only_the_holding_session_renews() {
        let lease = Lease::expired();
        assert!(!lease.renew(1, Duration::from_secs(60)), "nobody holds it");
        lease.grant(1);
        assert!(lease.renew(1, Duration::from_secs(60)));
        lease.revoke();
        assert_eq!(lease.holder(), None);
        assert!(!lease.renew(1, Duration::from_secs(60)), "revoked");
        assert!(!lease.is_valid());
        lease.grant(2);
        assert!(!lease.renew(1, Duration::from_secs(60)), "an older session");
        assert!(!lease.is_valid());
        assert!(lease.renew(2, Duration::from_secs(60)));
        assert!(lease.is_valid());
    }
}
