//! The node's lease on its tasks. In a cluster, a node may copy records only while it knows its
//! coordination session is alive: the control plane renews the lease after every successful round trip to
//! ZooKeeper, and tasks stop forwarding records once it runs out. A node that was frozen (or cut off) past
//! its session timeout therefore copies nothing more before it learns that its tasks run elsewhere.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A deadline shared by the control plane (which renews it) and the tasks (which check it).
#[derive(Debug)]
pub struct Lease {
    epoch: Instant,
    /// Milliseconds after `epoch` until which tasks may forward records; `u64::MAX` is forever.
    until_ms: AtomicU64,
}

impl Lease {
    /// A lease that never runs out (a node on its own).
    pub fn unlimited() -> Self {
        Self {
            epoch: Instant::now(),
            until_ms: AtomicU64::new(u64::MAX),
        }
    }

    /// A lease that has run out until it is renewed.
    pub fn expired() -> Self {
        Self {
            epoch: Instant::now(),
            until_ms: AtomicU64::new(0),
        }
    }

    /// Extends the lease to `duration` from now.
    pub fn renew(&self, duration: Duration) {
        let until = self.epoch.elapsed() + duration;
        self.until_ms
            .store(until.as_millis() as u64, Ordering::Release);
    }

    /// Ends the lease now.
    pub fn revoke(&self) {
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
        lease.renew(Duration::from_secs(60));
        assert!(lease.is_valid());
        lease.renew(Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!lease.is_valid(), "ran out");
        lease.renew(Duration::from_secs(60));
        lease.revoke();
        assert!(!lease.is_valid());
    }
}
