//! The node-wide cap on bytes in flight (handed to a producer, not yet acknowledged by the destination).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// librdkafka keeps a descriptor of a few hundred bytes per queued message; counting it keeps the cap honest
/// for small records.
pub const PER_RECORD_OVERHEAD: u64 = 256;

/// Shared by every task of a node. Tasks stop consuming while it is over its cap (backpressure).
#[derive(Debug)]
pub struct InFlightBudget {
    cap: u64,
    used: AtomicI64,
    throttled: AtomicU64,
}

impl InFlightBudget {
    pub fn new(cap: u64) -> Self {
        Self {
            cap,
            used: AtomicI64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// The cost of a record of `bytes` bytes against the cap.
    pub fn cost(bytes: usize) -> u64 {
        bytes as u64 + PER_RECORD_OVERHEAD
    }

    /// Takes `cost` (the record is being handed to a producer).
    pub fn take(&self, cost: u64) {
        self.used.fetch_add(cost as i64, Ordering::Relaxed);
    }

    /// Gives `cost` back (the record was acknowledged or failed).
    pub fn give(&self, cost: u64) {
        self.used.fetch_sub(cost as i64, Ordering::Relaxed);
    }

    /// True while the cap is reached: consumption must wait.
    pub fn is_exhausted(&self) -> bool {
        self.used.load(Ordering::Relaxed) >= self.cap as i64
    }

    /// Counts one wait of a task on the budget.
    pub fn note_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
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
