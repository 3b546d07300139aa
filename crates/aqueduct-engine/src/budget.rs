//! Caps on bytes in flight (handed to a producer, not yet acknowledged by the destination).
//!
//! A node has one cap over all its tasks. When it writes to several destinations, each destination's
//! producer pool also has a share of that cap, so a destination that is down fills only its share and the
//! others keep flowing.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// librdkafka keeps a descriptor of a few hundred bytes per queued message; counting it keeps the cap honest
/// for small records.
pub const PER_RECORD_OVERHEAD: u64 = 256;

/// A cap on in-flight bytes, optionally inside a larger one. Tasks stop consuming while it, or its parent,
/// is exhausted (backpressure).
#[derive(Debug)]
pub struct InFlightBudget {
    cap: u64,
    used: AtomicI64,
    throttled: AtomicU64,
    parent: Option<Arc<InFlightBudget>>,
}

impl InFlightBudget {
    /// A node-wide budget.
    pub fn new(cap: u64) -> Self {
        Self {
            cap,
            used: AtomicI64::new(0),
            throttled: AtomicU64::new(0),
            parent: None,
        }
    }

    /// A share of `parent`: what is taken here is taken from the parent too.
    pub fn share(parent: &Arc<InFlightBudget>, cap: u64) -> Self {
        Self {
            cap: cap.min(parent.cap),
            used: AtomicI64::new(0),
            throttled: AtomicU64::new(0),
            parent: Some(Arc::clone(parent)),
        }
    }

    /// The cost of a record of `bytes` bytes against the cap.
    pub fn cost(bytes: usize) -> u64 {
        bytes as u64 + PER_RECORD_OVERHEAD
    }

    /// Takes `cost` (the record is being handed to a producer).
    pub fn take(&self, cost: u64) {
        self.used.fetch_add(cost as i64, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            parent.take(cost);
        }
    }

    /// Gives `cost` back (the record was acknowledged or failed).
    pub fn give(&self, cost: u64) {
        self.used.fetch_sub(cost as i64, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            parent.give(cost);
        }
    }

    /// True while this cap or a parent's is reached: consumption must wait.
    pub fn is_exhausted(&self) -> bool {
        self.used.load(Ordering::Relaxed) >= self.cap as i64
            || self.parent.as_ref().is_some_and(|p| p.is_exhausted())
    }

    /// Counts one wait of a task on the budget (and on its parent's).
    pub fn note_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            parent.note_throttled();
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed).max(0) as u64
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// How many times tasks waited for room.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_share_stops_only_its_destination() {
        let node = Arc::new(InFlightBudget::new(1000));
        let down = InFlightBudget::share(&node, 500);
        let up = InFlightBudget::share(&node, 500);
        down.take(500);
        assert!(down.is_exhausted());
        assert!(!up.is_exhausted(), "the other destination keeps room");
        assert_eq!(node.used(), 500);
        up.take(500);
        assert!(node.is_exhausted());
        down.give(500);
        up.give(500);
        assert_eq!(node.used(), 0);
        assert!(!down.is_exhausted() && !up.is_exhausted());
    }
}
