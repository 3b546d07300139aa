//! State of one source partition, shared by the task that reads it and the producer callbacks that
//! acknowledge its records.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aqueduct_model::offsets::{AckOutcome, PartitionOffsets};
use aqueduct_model::topic_id::TopicId;
use rdkafka::error::KafkaError;

use crate::status::PartitionHealth;

/// Where the records of a source topic go.
#[derive(Debug)]
pub struct Route {
    pub destination_topic: String,
    /// Partition count of the destination topic, refreshed by discovery.
    pub destination_partitions: AtomicI32,
    /// The largest record batch the destination topic accepts: its `max.message.bytes`, or the broker's
    /// `message.max.bytes` when the topic has none of its own. Learned before the route is used.
    pub max_message_bytes: AtomicU32,
}

impl Route {
    pub fn max_message_bytes(&self) -> u32 {
        self.max_message_bytes.load(Ordering::Relaxed)
    }
}

/// A failed delivery, handled by the owning task (rewind or pause).
#[derive(Debug)]
pub struct DeliveryFailure {
    pub partition: Arc<PartitionState>,
    pub offset: i64,
    pub generation: u64,
    /// Key, value and header bytes of the record.
    pub bytes: u64,
    pub error: KafkaError,
}

/// Failures reported by producer callbacks to a task.
#[derive(Debug, Default)]
pub struct FailureInbox {
    failures: Mutex<Vec<DeliveryFailure>>,
}

impl FailureInbox {
    pub fn push(&self, failure: DeliveryFailure) {
        self.failures.lock().expect("failure inbox").push(failure);
    }

    pub fn take(&self) -> Vec<DeliveryFailure> {
        std::mem::take(&mut *self.failures.lock().expect("failure inbox"))
    }
}

/// Metric handles of one partition's datastream, resolved once.
#[derive(Debug)]
pub struct PartitionMetrics {
    pub datastream: String,
    pub records_consumed: prometheus::IntCounter,
    pub bytes_consumed: prometheus::IntCounter,
    pub records_produced: prometheus::IntCounter,
    pub bytes_produced: prometheus::IntCounter,
    pub latency: prometheus::Histogram,
    pub retries: prometheus::IntCounter,
}

impl PartitionMetrics {
    pub fn new(datastream: &str) -> Self {
        let m = crate::metrics::metrics();
        let label = [datastream];
        Self {
            datastream: datastream.to_string(),
            records_consumed: m.records_consumed.with_label_values(&label),
            bytes_consumed: m.bytes_consumed.with_label_values(&label),
            records_produced: m.records_produced.with_label_values(&label),
            bytes_produced: m.bytes_produced.with_label_values(&label),
            latency: m.replication_latency.with_label_values(&label),
            retries: m.retries.with_label_values(&label),
        }
    }
}

/// One source partition of a task.
#[derive(Debug)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    /// The id of the source topic the partition was started for, committed with its offsets.
    pub topic_id: Option<TopicId>,
    pub route: Arc<Route>,
    offsets: Mutex<PartitionOffsets>,
    /// Bumped on every rewind; acknowledgements of an older generation are ignored.
    generation: AtomicU64,
    health: Mutex<PartitionHealth>,
    /// `health == Running`, readable without a lock on the hot path.
    running: AtomicBool,
    /// Where failed deliveries of this partition are reported.
    pub inbox: Arc<FailureInbox>,
    pub records_acked: AtomicU64,
    pub bytes_acked: AtomicU64,
    /// The last offset committed to the source cluster.
    committed: AtomicU64,
    /// Records handed to a producer whose delivery report (success or failure) has not arrived: while any
    /// is left, a record of this partition may still land on the destination.
    outstanding: AtomicI64,
    /// Stopped at its start: it never read a record.
    never_ran: AtomicBool,
    pub metrics: Arc<PartitionMetrics>,
}

impl PartitionState {
    pub fn new(
        topic: &str,
        partition: i32,
        route: Arc<Route>,
        position: i64,
        inbox: Arc<FailureInbox>,
        metrics: Arc<PartitionMetrics>,
    ) -> Self {
        Self {
            topic: topic.to_string(),
            partition,
            topic_id: None,
            route,
            offsets: Mutex::new(PartitionOffsets::new(position)),
            generation: AtomicU64::new(0),
            health: Mutex::new(PartitionHealth::Running),
            running: AtomicBool::new(true),
            inbox,
            records_acked: AtomicU64::new(0),
            bytes_acked: AtomicU64::new(0),
            committed: AtomicU64::new(u64::MAX),
            outstanding: AtomicI64::new(0),
            never_ran: AtomicBool::new(false),
            metrics,
        }
    }

    /// The partition was stopped at its start and never read.
    pub fn never_ran(&self) {
        self.never_ran.store(true, Ordering::Relaxed);
    }

    pub fn has_never_run(&self) -> bool {
        self.never_ran.load(Ordering::Relaxed)
    }

    /// The partition belongs to the topic with this id.
    pub fn with_topic_id(mut self, id: Option<TopicId>) -> Self {
        self.topic_id = id;
        self
    }

    /// A record is about to be handed to a producer.
    pub fn handed(&self) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
    }

    /// The producer reported on a record (delivered or failed), or refused it at once.
    pub fn resolved(&self) {
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
    }

    /// Records handed to a producer that it has not reported on yet.
    pub fn unresolved(&self) -> usize {
        self.outstanding.load(Ordering::Acquire).max(0) as usize
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records that `offset` was handed to a producer.
    pub fn sent(&self, offset: i64) {
        self.offsets.lock().expect("offsets").sent(offset);
    }

    /// Records an acknowledgement from the destination.
    pub fn acked(&self, offset: i64, generation: u64, bytes: u64) {
        let mut offsets = self.offsets.lock().expect("offsets");
        if generation != self.generation.load(Ordering::Acquire) {
            return;
        }
        if offsets.acked(offset) == AckOutcome::Recorded {
            self.records_acked.fetch_add(1, Ordering::Relaxed);
            self.bytes_acked.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// The offset below which every record was acknowledged.
    pub fn committable(&self) -> i64 {
        self.offsets.lock().expect("offsets").committable()
    }

    pub fn in_flight(&self) -> usize {
        self.offsets.lock().expect("offsets").in_flight()
    }

    /// Moves the committable offset to the consumer's `position` when nothing of the partition is in flight
    /// or inside a producer: what lies between held no record to copy (transaction markers).
    pub fn skip_idle_to(&self, position: i64) -> bool {
        if !self.is_running() || self.unresolved() > 0 {
            return false;
        }
        self.offsets.lock().expect("offsets").skip_idle_to(position)
    }

    /// Drops everything in flight and restarts bookkeeping at `position`; late acknowledgements of the
    /// records dropped here are ignored.
    pub fn rewind(&self, position: i64) {
        let mut offsets = self.offsets.lock().expect("offsets");
        self.generation.fetch_add(1, Ordering::AcqRel);
        offsets.reset(position);
    }

    pub fn health(&self) -> PartitionHealth {
        self.health.lock().expect("health").clone()
    }

    pub fn set_health(&self, health: PartitionHealth) {
        let mut current = self.health.lock().expect("health");
        self.running.store(
            matches!(health, PartitionHealth::Running),
            Ordering::Release,
        );
        *current = health;
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// The last committed offset, if any commit happened.
    pub fn committed(&self) -> Option<i64> {
        match self.committed.load(Ordering::Relaxed) {
            u64::MAX => None,
            offset => Some(offset as i64),
        }
    }

    pub fn set_committed(&self, offset: i64) {
        self.committed.store(offset as u64, Ordering::Relaxed);
    }
}

/// The partitions of stopped tasks that still have records inside a producer. Until they are resolved, a
/// record of these partitions may land on the destination, so the tasks' claims are kept.
#[derive(Debug, Default)]
pub struct Unresolved {
    partitions: Vec<Arc<PartitionState>>,
}

impl Unresolved {
    pub fn new(partitions: Vec<Arc<PartitionState>>) -> Self {
        Self { partitions }
    }

    pub fn extend(&mut self, other: Unresolved) {
        self.partitions.extend(other.partitions);
    }

    /// Records still inside a producer.
    pub fn count(&self) -> usize {
        self.partitions.iter().map(|p| p.unresolved()).sum()
    }
}
