//! Producers shared by the tasks that write to one destination cluster.
//!
//! A pool holds a fixed number of producers; a task borrows the least-loaded one and gives it back when it
//! stops. A task never closes a producer, so a failing task cannot break the others. A producer that hit a
//! fatal error (an idempotent producer out of sync with the broker) can send nothing more: the pool replaces
//! it, its records fail back to their tasks (which rewind and send them again), and the tasks borrow anew.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use tracing::{error, info, warn};

use crate::budget::InFlightBudget;
use crate::partition::{DeliveryFailure, PartitionState};

/// What travels with a record through the producer and comes back in its delivery report.
#[derive(Debug)]
pub struct Delivery {
    pub partition: Arc<PartitionState>,
    pub offset: i64,
    pub generation: u64,
    /// Cost against the in-flight budget.
    pub cost: u64,
    /// Key and value bytes.
    pub bytes: u64,
    /// The source record's timestamp (ms since the epoch), kept for one record in 16 to measure latency.
    pub timestamp_ms: Option<i64>,
}

/// Handles delivery reports: acknowledgements advance the partition's offsets, failures go to its task.
pub struct MirrorContext {
    budget: Arc<InFlightBudget>,
    name: String,
    /// Set once the producer hit a fatal error.
    fatal: Arc<AtomicBool>,
}

impl ClientContext for MirrorContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::Global(rdkafka::types::RDKafkaErrorCode::Fatal)
        ) {
            if !self.fatal.swap(true, Ordering::AcqRel) {
                error!(producer = %self.name, %error, reason, "fatal producer error; the producer is replaced and its records are sent again");
            }
        } else {
            warn!(producer = %self.name, %error, reason, "producer error");
        }
    }
}

impl ProducerContext for MirrorContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<Delivery>) {
        self.budget.give(delivery.cost);
        match result {
            Ok(message) => {
                debug_assert!(message.offset() >= 0);
                delivery
                    .partition
                    .acked(delivery.offset, delivery.generation, delivery.bytes);
                let metrics = &delivery.partition.metrics;
                metrics.records_produced.inc();
                metrics.bytes_produced.inc_by(delivery.bytes);
                if let Some(timestamp) = delivery.timestamp_ms {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    metrics
                        .latency
                        .observe((now - timestamp).max(0) as f64 / 1000.0);
                }
            }
            Err((error, _)) => {
                let code = error
                    .rdkafka_error_code()
                    .map_or_else(|| "unknown".to_string(), |c| format!("{c:?}"));
                crate::metrics::metrics()
                    .produce_errors
                    .with_label_values(&[delivery.partition.metrics.datastream.as_str(), &code])
                    .inc();
                let partition = Arc::clone(&delivery.partition);
                partition.inbox.push(DeliveryFailure {
                    partition: Arc::clone(&delivery.partition),
                    offset: delivery.offset,
                    generation: delivery.generation,
                    bytes: delivery.bytes,
                    error: error.clone(),
                });
            }
        }
        // Last: whoever waits for the partition's records to resolve sees the outcome recorded first.
        delivery.partition.resolved();
    }
}

pub type MirrorProducer = ThreadedProducer<MirrorContext>;

/// A producer of the pool with the number of tasks using it.
pub struct PooledProducer {
    pub producer: MirrorProducer,
    users: AtomicUsize,
    fatal: Arc<AtomicBool>,
}

impl Drop for PooledProducer {
    /// Whatever the producer still holds is dropped and reported as failed before it goes: a record whose
    /// report never came would keep its partition unresolved (and its task claimed) for good.
    fn drop(&mut self) {
        if self.producer.in_flight_count() == 0 {
            return;
        }
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
            let _ = self.producer.flush(Duration::from_millis(100));
        }
    }
}

impl PooledProducer {
    /// Whether the producer hit a fatal error and can send nothing more.
    pub fn is_fatal(&self) -> bool {
        if self.fatal.load(Ordering::Acquire) {
            return true;
        }
        if self.producer.client().fatal_error().is_some() {
            self.fatal.store(true, Ordering::Release);
            return true;
        }
        false
    }
}

/// The producers of one destination cluster (or of one stream with its own producer settings).
///
/// librdkafka fills batches up to `batch.size` and never splits one the broker refuses, so a destination
/// topic whose `max.message.bytes` is below the pool's batch size gets producers of its own whose batches
/// fit its limit: one per limit, made when the first task needs it.
pub struct ProducerPool {
    name: String,
    config: ClientConfig,
    producers: Mutex<Vec<Arc<PooledProducer>>>,
    /// Producers made so far, for the client ids of replacements.
    made: AtomicUsize,
    /// Producers for topics with a smaller limit, by that limit.
    limited: Mutex<BTreeMap<u32, Arc<PooledProducer>>>,
    /// The pool's share of the node's in-flight cap.
    budget: Arc<InFlightBudget>,
}

/// Room left in a batch for what librdkafka adds to the records (batch header, record framing).
const BATCH_FRAMING: u32 = 256;
/// librdkafka's default `batch.size`.
const DEFAULT_BATCH_SIZE: u64 = 1_000_000;

/// A producer lent to a task; returned to the pool on drop.
pub struct ProducerLease {
    pooled: Arc<PooledProducer>,
}

impl ProducerLease {
    pub fn producer(&self) -> &MirrorProducer {
        &self.pooled.producer
    }

    /// Whether the lent producer hit a fatal error: borrow another.
    pub fn is_fatal(&self) -> bool {
        self.pooled.is_fatal()
    }

    /// Drops every record the producer holds (see [`ProducerPool::purge`]).
    pub fn purge(&self) {
        self.pooled
            .producer
            .purge(PurgeConfig::default().queue().inflight());
    }
}

impl Drop for ProducerLease {
    fn drop(&mut self) {
        self.pooled.users.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ProducerPool {
    /// Creates `size` producers from `config`.
    pub fn new(
        name: &str,
        config: &ClientConfig,
        size: usize,
        budget: Arc<InFlightBudget>,
    ) -> Result<Self, KafkaError> {
        let mut producers = Vec::with_capacity(size);
        for index in 0..size {
            producers.push(Arc::new(Self::create(config, &index.to_string(), &budget)?));
        }
        Ok(Self {
            name: name.to_string(),
            config: config.clone(),
            producers: Mutex::new(producers),
            made: AtomicUsize::new(size),
            limited: Mutex::new(BTreeMap::new()),
            budget,
        })
    }

    fn create(
        config: &ClientConfig,
        suffix: &str,
        budget: &Arc<InFlightBudget>,
    ) -> Result<PooledProducer, KafkaError> {
        let mut config = config.clone();
        let client_id = format!(
            "{}-{suffix}",
            config.get("client.id").unwrap_or("aqueduct-producer")
        );
        config.set("client.id", client_id.clone());
        let fatal = Arc::new(AtomicBool::new(false));
        let producer: MirrorProducer = config.create_with_context(MirrorContext {
            budget: Arc::clone(budget),
            name: client_id,
            fatal: Arc::clone(&fatal),
        })?;
        Ok(PooledProducer {
            producer,
            users: AtomicUsize::new(0),
            fatal,
        })
    }

    /// Replaces the producers that hit a fatal error. The old ones stay with the tasks that still hold
    /// them until those borrow anew; their records come back as failed deliveries.
    fn replace_fatal(&self, producers: &mut [Arc<PooledProducer>]) {
        for slot in producers.iter_mut().filter(|p| p.is_fatal()) {
            let index = self.made.fetch_add(1, Ordering::Relaxed);
            let reason = slot
                .producer
                .client()
                .fatal_error()
                .map_or_else(String::new, |(code, reason)| format!("{code:?}: {reason}"));
            match Self::create(&self.config, &index.to_string(), &self.budget) {
                Ok(fresh) => {
                    crate::metrics::metrics()
                        .producer_fatal_errors
                        .with_label_values(&[self.name.as_str()])
                        .inc();
                    error!(pool = %self.name, %reason, "a producer hit a fatal error; replaced, its records are sent again");
                    *slot = Arc::new(fresh);
                }
                Err(error) => {
                    warn!(pool = %self.name, %error, "cannot replace a producer that hit a fatal error")
                }
            }
        }
    }

    /// Whether the pool's producers compress their batches.
    pub fn compresses(&self) -> bool {
        ["compression.type", "compression.codec"].iter().any(|key| {
            self.config
                .get(key)
                .is_some_and(|codec| !codec.eq_ignore_ascii_case("none"))
        })
    }

    /// The batch size of the pool's producers.
    pub fn batch_size(&self) -> u64 {
        self.config
            .get("batch.size")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_BATCH_SIZE)
    }

    /// A producer whose batches fit a destination topic that accepts at most `max_message_bytes`; `None`
    /// when the pool's own producers already do.
    pub fn lease_limited(
        &self,
        max_message_bytes: u32,
    ) -> Result<Option<ProducerLease>, KafkaError> {
        if max_message_bytes == 0
            || u64::from(max_message_bytes) >= self.batch_size() + u64::from(BATCH_FRAMING)
        {
            return Ok(None);
        }
        let mut limited = self.limited.lock().expect("limited producers");
        if limited
            .get(&max_message_bytes)
            .is_some_and(|pooled| pooled.is_fatal())
        {
            if let Some(old) = limited.remove(&max_message_bytes) {
                crate::metrics::metrics()
                    .producer_fatal_errors
                    .with_label_values(&[self.name.as_str()])
                    .inc();
                warn!(pool = %self.name, max_message_bytes, "a producer hit a fatal error; replaced");
                drop(old);
            }
        }
        let pooled = match limited.get(&max_message_bytes) {
            Some(pooled) => Arc::clone(pooled),
            None => {
                let mut config = self.config.clone();
                let batch = max_message_bytes.saturating_sub(BATCH_FRAMING).max(1);
                config.set("batch.size", batch.to_string());
                let pooled = Arc::new(Self::create(
                    &config,
                    &format!("max{max_message_bytes}"),
                    &self.budget,
                )?);
                info!(pool = %self.name, max_message_bytes, batch_size = batch, "producer for a destination topic with a smaller limit");
                limited.insert(max_message_bytes, Arc::clone(&pooled));
                pooled
            }
        };
        pooled.users.fetch_add(1, Ordering::Relaxed);
        Ok(Some(ProducerLease { pooled }))
    }

    /// Every producer of the pool, the limited ones included.
    fn all(&self) -> Vec<Arc<PooledProducer>> {
        let mut all = self.producers.lock().expect("producers").clone();
        all.extend(
            self.limited
                .lock()
                .expect("limited producers")
                .values()
                .cloned(),
        );
        all
    }

    /// The in-flight budget of the tasks writing through this pool.
    pub fn budget(&self) -> &Arc<InFlightBudget> {
        &self.budget
    }

    /// Lends the producer with the fewest tasks (replacing first any that hit a fatal error).
    pub fn lease(&self) -> ProducerLease {
        let mut producers = self.producers.lock().expect("producers");
        if producers.iter().any(|p| p.is_fatal()) {
            self.replace_fatal(&mut producers);
        }
        let pooled = producers
            .iter()
            .min_by_key(|p| (p.is_fatal(), p.users.load(Ordering::Relaxed)))
            .expect("a pool has at least one producer");
        pooled.users.fetch_add(1, Ordering::Relaxed);
        ProducerLease {
            pooled: Arc::clone(pooled),
        }
    }

    /// Records queued in the pool's producers and not yet acknowledged.
    pub fn queued(&self) -> i32 {
        self.all()
            .iter()
            .map(|p| p.producer.in_flight_count())
            .sum()
    }

    /// Waits until every queued record is acknowledged or failed.
    pub fn flush(&self, timeout: Duration) {
        for pooled in &self.all() {
            if let Err(error) = pooled.producer.flush(timeout) {
                warn!(pool = %self.name, %error, "flush did not complete");
            }
        }
    }

    /// Closes the pool: waits up to `timeout` for what its producers hold, then drops what is left (each
    /// such record is reported as failed, so its partition's records resolve and nothing lands later).
    pub fn close(&self, timeout: Duration) {
        self.flush(timeout);
        if self.queued() > 0 {
            warn!(pool = %self.name, records = self.queued(), "closing with records not delivered; they are dropped and copied again from the source");
            self.purge();
            self.flush(Duration::from_secs(5));
        }
    }

    /// Drops every record the pool's producers hold, queued or in flight: each is reported as failed (and
    /// its partition rewound by its task), so nothing the node sent before it was fenced arrives later.
    pub fn purge(&self) {
        for pooled in &self.all() {
            pooled
                .producer
                .purge(PurgeConfig::default().queue().inflight());
        }
    }

    pub fn size(&self) -> usize {
        self.producers.lock().expect("producers").len()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}
