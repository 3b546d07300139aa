//! A mirror task: one consumer reading assigned source partitions and writing to a pooled producer.
//!
//! The loop runs on its own thread. Records are handed to the producer in offset order per partition; the
//! producer's delivery reports advance each partition's offsets; the task commits, at a fixed interval, the
//! offset below which everything was acknowledged (see `docs/adr/0001-offset-commit-rule.md`). Partitions
//! are assigned with `assign()`, never by consumer-group rebalancing (`docs/adr/0002-assignment-without-consumer-groups.md`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aqueduct_model::config::DatastreamConfig;
use aqueduct_model::placement::destination_partition;
use aqueduct_model::start::{offending_offset, start_offset, LogBounds, StartDecision};
use aqueduct_model::topic_id::{
    commit_metadata, incarnation, recreated_start, topic_id_in_commit_metadata, Incarnation,
    RecreatedStart, TopicId,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use crate::budget::InFlightBudget;
use crate::lease::Lease;
use crate::partition::{DeliveryFailure, FailureInbox, PartitionState, Route, Unresolved};
use crate::producer::{Delivery, ProducerLease, ProducerPool};
use crate::status::{PartitionHealth, PartitionStatus, TaskStatus};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping task waits for its records in flight to be acknowledged before its last commit.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an asynchronous commit may stay unanswered before the next one is sent anyway.
const COMMIT_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Lags per (topic, partition), as the consumer's statistics last reported them.
pub type Lags = Arc<Mutex<HashMap<(String, i32), i64>>>;

/// What the source cluster answered to one offset commit.
#[derive(Debug)]
pub struct CommitOutcome {
    pub result: Result<(), KafkaError>,
    /// (topic, partition, offset, topic id from the commit's metadata) of the commit.
    pub offsets: Vec<(String, i32, i64, Option<TopicId>)>,
}

/// The context of a task's consumer: it keeps the lag librdkafka reports in its statistics and the
/// answers to the task's offset commits (librdkafka reports nothing back for an asynchronous manual commit,
/// so the task's committer thread commits synchronously and leaves the answer here).
pub struct TaskConsumerContext {
    lags: Lags,
    commits: Mutex<Vec<CommitOutcome>>,
}

impl TaskConsumerContext {
    pub fn new() -> Self {
        Self {
            lags: Arc::new(Mutex::new(HashMap::new())),
            commits: Mutex::new(Vec::new()),
        }
    }

    fn take_commits(&self) -> Vec<CommitOutcome> {
        std::mem::take(&mut *self.commits.lock().expect("commit outcomes"))
    }

    fn record_commit(&self, result: Result<(), KafkaError>, offsets: &TopicPartitionList) {
        let offsets = offsets
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some((
                    e.topic().to_string(),
                    e.partition(),
                    offset,
                    topic_id_in_commit_metadata(e.metadata()),
                )),
                _ => None,
            })
            .collect();
        self.commits
            .lock()
            .expect("commit outcomes")
            .push(CommitOutcome { result, offsets });
    }
}

impl Default for TaskConsumerContext {
    fn default() -> Self {
        Self::new()
    }
}

impl rdkafka::client::ClientContext for TaskConsumerContext {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        let mut lags = self.lags.lock().expect("lags");
        for (name, topic) in statistics.topics {
            for (number, partition) in topic.partitions {
                // -1 (the internal UA partition, or a lag not known yet) is left out.
                if number >= 0 && partition.consumer_lag >= 0 {
                    lags.insert((name.clone(), number), partition.consumer_lag);
                }
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for TaskConsumerContext {}

/// The consumer of a task.
pub type TaskConsumer = BaseConsumer<TaskConsumerContext>;

/// A source partition handed to a task.
#[derive(Debug, Clone)]
pub struct NewPartition {
    pub topic: String,
    pub partition: i32,
    pub route: Arc<Route>,
    /// The source topic's id now (`None` when the cluster did not say).
    pub topic_id: Option<TopicId>,
    /// The id of the topic of the same name that this stream mirrored before on this node, if any.
    pub last_seen_id: Option<TopicId>,
}

/// What a stream asks of its task.
enum TaskCommand {
    Add(Vec<NewPartition>),
    /// The source topic is gone (deleted, or deleted and created again): stop reading its partitions and
    /// forget them; the records already handed to a producer still count until they are resolved.
    Forget(String),
}

/// The running task as seen from its stream.
pub struct TaskHandle {
    pub id: String,
    pub source_cluster: String,
    stop: Arc<AtomicBool>,
    commands: Sender<TaskCommand>,
    partitions: Arc<Mutex<Vec<Arc<PartitionState>>>>,
    /// Partitions forgotten while records of theirs were still inside a producer.
    forgotten: Arc<Mutex<Vec<Arc<PartitionState>>>>,
    lags: Lags,
    thread: Option<JoinHandle<()>>,
}

impl TaskHandle {
    /// Hands new partitions to the task.
    pub fn add_partitions(&self, partitions: Vec<NewPartition>) {
        if self.commands.send(TaskCommand::Add(partitions)).is_err() {
            warn!(task = %self.id, "task is gone; partitions not added");
        }
    }

    /// Tells the task that a source topic is gone: its partitions are no longer read nor listed.
    pub fn forget_topic(&self, topic: &str) {
        let _ = self.commands.send(TaskCommand::Forget(topic.to_string()));
    }

    pub fn status(&self) -> TaskStatus {
        let partitions = self.partitions.lock().expect("task partitions");
        let lags = self.lags.lock().expect("lags");
        TaskStatus {
            id: self.id.clone(),
            source_cluster: self.source_cluster.clone(),
            partitions: partitions
                .iter()
                .map(|p| PartitionStatus {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    destination_topic: p.route.destination_topic.clone(),
                    health: p.health(),
                    committed_offset: p.committed(),
                    in_flight: p.in_flight(),
                    records_acked: p.records_acked.load(Ordering::Relaxed),
                    lag: lags.get(&(p.topic.clone(), p.partition)).copied(),
                })
                .collect(),
        }
    }

    /// Asks the task to stop without waiting.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Stops the task: no more consumption, in-flight records drained, offsets committed. Returns the
    /// partitions that still have records inside a producer (the drain timed out).
    pub fn stop(&mut self) -> Unresolved {
        self.request_stop();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!(task = %self.id, "task thread panicked");
            }
        }
        let forgotten = self.forgotten.lock().expect("forgotten partitions");
        Unresolved::new(
            self.partitions
                .lock()
                .expect("task partitions")
                .iter()
                .chain(forgotten.iter())
                .filter(|p| p.unresolved() > 0)
                .cloned()
                .collect(),
        )
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Everything a task needs to start.
pub struct TaskSpec {
    pub id: String,
    pub source_cluster: String,
    pub stream: Arc<DatastreamConfig>,
    pub consumer: TaskConsumer,
    /// The pool the task's producers come from.
    pub pool: Arc<ProducerPool>,
    pub budget: Arc<InFlightBudget>,
    pub lease: Arc<Lease>,
    pub commit_interval: Duration,
    /// Set when the stream should list its source topics now (a topic may be gone).
    pub rediscover: Arc<AtomicBool>,
}

/// Starts a task thread.
pub fn spawn(spec: TaskSpec) -> std::io::Result<TaskHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let (commands, inbox_rx) = std::sync::mpsc::channel();
    let partitions = Arc::new(Mutex::new(Vec::new()));
    let forgotten = Arc::new(Mutex::new(Vec::new()));
    let id = spec.id.clone();
    let source_cluster = spec.source_cluster.clone();
    let lags = Arc::clone(&spec.consumer.context().lags);
    let consumer = Arc::new(spec.consumer);
    // Commits go through a thread of their own: the task does not wait for the source's answer.
    let (commit_requests, requests) = std::sync::mpsc::sync_channel::<TopicPartitionList>(1);
    let committer = {
        let consumer = Arc::clone(&consumer);
        std::thread::Builder::new()
            .name(format!("commit-{id}"))
            .spawn(move || {
                for offsets in requests {
                    let result = consumer.commit(&offsets, CommitMode::Sync);
                    consumer.context().record_commit(result, &offsets);
                }
            })?
    };
    let metrics = Arc::new(crate::partition::PartitionMetrics::new(&spec.stream.name));
    let mut task = MirrorTask {
        metrics,
        id: spec.id,
        stream: spec.stream,
        consumer,
        commit_requests: Some(commit_requests),
        committer: Some(committer),
        producer: spec.pool.lease(),
        limited: Vec::new(),
        compresses: spec.pool.compresses(),
        pool: spec.pool,
        budget: spec.budget,
        lease: spec.lease,
        fenced: false,
        rediscover: spec.rediscover,
        commit_interval: spec.commit_interval,
        stop: Arc::clone(&stop),
        commands: inbox_rx,
        listed: Arc::clone(&partitions),
        forgotten: Arc::clone(&forgotten),
        by_topic: HashMap::new(),
        failures: Arc::new(FailureInbox::default()),
        last_commit: Instant::now(),
        commit_sent: None,
        deferred: Vec::new(),
        range_checks: Vec::new(),
        range_checked_at: Instant::now(),
        deferred_since: Instant::now(),
    };
    let span = tracing::info_span!("task", datastream = %task.stream.name, task = %id);
    let thread = std::thread::Builder::new()
        .name(format!("task-{id}"))
        .spawn(move || span.in_scope(|| task.run()))?;
    Ok(TaskHandle {
        id,
        source_cluster,
        stop,
        commands,
        partitions,
        forgotten,
        lags,
        thread: Some(thread),
    })
}

struct MirrorTask {
    id: String,
    /// Metric handles of the task's datastream, shared by its partitions.
    metrics: Arc<crate::partition::PartitionMetrics>,
    stream: Arc<DatastreamConfig>,
    consumer: Arc<TaskConsumer>,
    /// Offsets to commit, for the committer thread; its answers come back through the consumer's context.
    commit_requests: Option<std::sync::mpsc::SyncSender<TopicPartitionList>>,
    committer: Option<JoinHandle<()>>,
    producer: ProducerLease,
    /// Producers for destination topics whose `max.message.bytes` is below the pool's batch size, by limit.
    limited: Vec<(u32, ProducerLease)>,
    pool: Arc<ProducerPool>,
    /// The pool's producers compress batches.
    compresses: bool,
    budget: Arc<InFlightBudget>,
    lease: Arc<Lease>,
    /// The node's lease ran out: no record is forwarded until it is renewed.
    fenced: bool,
    rediscover: Arc<AtomicBool>,
    commit_interval: Duration,
    stop: Arc<AtomicBool>,
    commands: Receiver<TaskCommand>,
    /// Partitions as listed in the status, in the order they were added.
    listed: Arc<Mutex<Vec<Arc<PartitionState>>>>,
    /// Partitions of topics that are gone, kept while records of theirs are inside a producer.
    forgotten: Arc<Mutex<Vec<Arc<PartitionState>>>>,
    /// Partitions by topic name and partition number, for the hot path.
    by_topic: HashMap<String, Vec<Option<Arc<PartitionState>>>>,
    failures: Arc<FailureInbox>,
    last_commit: Instant,
    /// When the asynchronous commit the source has not answered yet was sent.
    commit_sent: Option<Instant>,
    /// Partitions whose start could not be determined yet.
    deferred: Vec<NewPartition>,
    /// Partitions out of range whose log bounds could not be read: checked again every housekeeping round.
    range_checks: Vec<Arc<PartitionState>>,
    range_checked_at: Instant,
    deferred_since: Instant,
}

/// Errors after which retrying the same record cannot succeed: the partition is paused with the reason.
fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTimestamp
                | RDKafkaErrorCode::PolicyViolation
                | RDKafkaErrorCode::InvalidRequiredAcks
        )
    )
}

impl MirrorTask {
    fn run(&mut self) {
        info!(task = %self.id, "task started");
        let mut last_housekeeping = Instant::now();
        let mut polls: u32 = 0;
        let mut idle = true;
        while !self.stop.load(Ordering::Acquire) {
            // Reading the clock for every record costs more than the rest of the loop: while records
            // flow, look every 64 polls.
            polls = polls.wrapping_add(1);
            if (idle || polls.is_multiple_of(64))
                && last_housekeeping.elapsed() >= Duration::from_millis(5)
            {
                self.housekeeping();
                last_housekeeping = Instant::now();
            }
            if self.fenced {
                std::thread::sleep(Duration::from_millis(10));
                idle = true;
                continue;
            }
            if self.budget.is_exhausted() {
                self.budget.note_throttled();
                std::thread::sleep(Duration::from_millis(2));
                idle = true;
                continue;
            }
            idle = false;
            let (failure, error) = match self.consumer.poll(Duration::from_millis(50)) {
                None => {
                    idle = true;
                    (None, None)
                }
                Some(Ok(message)) => (self.forward(&message), None),
                Some(Err(error)) => (None, Some(error)),
            };
            if let Some(failure) = failure {
                self.on_delivery_failure(failure);
            }
            if let Some(error) = error {
                self.on_consumer_error(error);
            }
        }
        self.drain_and_commit();
        info!(task = %self.id, "task stopped");
    }

    fn housekeeping(&mut self) {
        let fenced = !self.lease.is_valid();
        if fenced != self.fenced {
            if fenced {
                warn!(task = %self.id, "the node's lease ran out; forwarding stops until it is renewed, records not yet delivered are dropped and sent again later");
                // Whatever waits in the producer could land after the tasks' next owner started.
                self.purge_producers();
            } else {
                info!(task = %self.id, "lease renewed; forwarding again");
            }
            self.fenced = fenced;
        }
        if self.producer.is_fatal() || self.limited.iter().any(|(_, p)| p.is_fatal()) {
            self.replace_fatal_producers();
        }
        while let Ok(command) = self.commands.try_recv() {
            match command {
                TaskCommand::Add(partitions) => self.add_partitions(partitions),
                TaskCommand::Forget(topic) => self.forget_topic(&topic),
            }
        }
        self.forgotten
            .lock()
            .expect("forgotten partitions")
            .retain(|p| p.unresolved() > 0);
        if !self.deferred.is_empty() && self.deferred_since.elapsed() >= Duration::from_secs(1) {
            let retry = std::mem::take(&mut self.deferred);
            self.add_partitions(retry);
        }
        if !self.range_checks.is_empty()
            && self.range_checked_at.elapsed() >= Duration::from_secs(1)
        {
            self.check_ranges();
        }
        for failure in self.failures.take() {
            self.on_delivery_failure(failure);
        }
        for outcome in self.consumer.context().take_commits() {
            self.on_commit_outcome(outcome);
        }
        if self.last_commit.elapsed() >= self.commit_interval {
            self.commit(CommitMode::Async);
        }
    }

    /// The source answered a commit: only now does the committed offset move.
    fn on_commit_outcome(&mut self, outcome: CommitOutcome) {
        let metrics = crate::metrics::metrics();
        let label = [self.stream.name.as_str()];
        if let Some(sent) = self.commit_sent.take() {
            metrics
                .commit_latency
                .with_label_values(&label)
                .observe(sent.elapsed().as_secs_f64());
        }
        match outcome.result {
            Ok(()) => {
                for (topic, partition, offset, id) in outcome.offsets {
                    // A late answer for a topic that was since created again is not this partition's.
                    if let Some(state) = self
                        .partition(&topic, partition)
                        .filter(|state| id.is_none() || state.topic_id == id)
                    {
                        state.set_committed(offset);
                    }
                }
            }
            Err(error) => {
                metrics.commit_failures.with_label_values(&label).inc();
                warn!(task = %self.id, %error, "the source refused the offset commit; retried at the next interval");
            }
        }
    }

    /// A producer of the task hit a fatal error: borrow a new one in its place, and start every partition
    /// again from its committed position. The old producer delivers nothing more; what it held fails back
    /// (ignored: older generation), so the new producer's records cannot be overtaken by a late one.
    fn replace_fatal_producers(&mut self) {
        if self.producer.is_fatal() {
            self.producer = self.pool.lease();
        }
        let fatal: Vec<u32> = self
            .limited
            .iter()
            .filter(|(_, p)| p.is_fatal())
            .map(|(limit, _)| *limit)
            .collect();
        self.limited.retain(|(_, p)| !p.is_fatal());
        for limit in fatal {
            if let Ok(Some(producer)) = self.pool.lease_limited(limit) {
                self.limited.push((limit, producer));
            }
        }
        let states: Vec<Arc<PartitionState>> = self
            .listed
            .lock()
            .expect("task partitions")
            .iter()
            .filter(|s| s.is_running())
            .cloned()
            .collect();
        for state in states {
            let position = state.committable();
            state.rewind(position);
            state.metrics.retries.inc();
            self.reposition(&state, position);
        }
    }

    /// Moves the consumer of `state`'s partition to `position`: a seek, or when the consumer refuses it, the
    /// partition unassigned and assigned again at the position. When neither works the partition is stopped
    /// in the `error` state, so it never sits silently without fetching.
    fn reposition(&self, state: &Arc<PartitionState>, position: i64) {
        let Err(error) = self.consumer.seek(
            &state.topic,
            state.partition,
            Offset::Offset(position),
            METADATA_TIMEOUT,
        ) else {
            return;
        };
        warn!(task = %self.id, topic = %state.topic, partition = state.partition, position, %error, "seek failed; reassigning partition");
        let _ = self.consumer.incremental_unassign(&tpl(
            &state.topic,
            state.partition,
            Offset::Invalid,
        ));
        if let Err(error) = self.consumer.incremental_assign(&tpl(
            &state.topic,
            state.partition,
            Offset::Offset(position),
        )) {
            let reason = format!(
                "cannot move the consumer to offset {position}: the seek and the assignment failed: {error}"
            );
            error!(task = %self.id, topic = %state.topic, partition = state.partition, %reason, "partition stopped");
            state.set_health(PartitionHealth::Error(reason));
        }
    }

    fn purge_producers(&self) {
        self.producer.purge();
        for (_, producer) in &self.limited {
            producer.purge();
        }
    }

    /// The producer whose batches fit a destination topic that accepts at most `limit` bytes.
    fn producer_for(&self, limit: u32) -> &ProducerLease {
        self.limited
            .iter()
            .find(|(l, _)| *l == limit)
            .map_or(&self.producer, |(_, producer)| producer)
    }

    /// Makes sure a producer whose batches fit `route` exists; false if it cannot be made now.
    fn prepare_producer(&mut self, route: &Route) -> bool {
        let limit = route.max_message_bytes();
        if self.limited.iter().any(|(l, _)| *l == limit) {
            return true;
        }
        match self.pool.lease_limited(limit) {
            Ok(Some(producer)) => {
                self.limited.push((limit, producer));
                true
            }
            Ok(None) => true,
            Err(error) => {
                warn!(task = %self.id, topic = %route.destination_topic, %error, "cannot create a producer for the topic's max.message.bytes");
                false
            }
        }
    }

    fn partition(&self, topic: &str, partition: i32) -> Option<&Arc<PartitionState>> {
        self.by_topic.get(topic)?.get(partition as usize)?.as_ref()
    }

    /// Hands one source record to the producer, keeping key, value, headers and timestamp. Returns the
    /// failure when the producer refused the record at once.
    fn forward(&self, message: &BorrowedMessage<'_>) -> Option<DeliveryFailure> {
        let Some(state) = self.partition(message.topic(), message.partition()) else {
            debug!(task = %self.id, topic = message.topic(), "record of an unknown partition");
            return None;
        };
        if !state.is_running() {
            // Paused or in error: the record stays uncommitted and is read again on resume.
            return None;
        }
        let state = Arc::clone(state);
        let offset = message.offset();
        let key = message.key();
        let payload = message.payload();
        let mut bytes = key.map_or(0, <[u8]>::len) + payload.map_or(0, <[u8]>::len);
        let headers = message.headers().map(|headers| {
            let mut owned = OwnedHeaders::new_with_capacity(headers.count());
            for header in headers.iter() {
                bytes += header.key.len() + header.value.map_or(0, <[u8]>::len);
                owned = owned.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
            owned
        });
        let route = Arc::clone(&state.route);
        let limit = route.max_message_bytes();
        // Compressed batches may fit where the raw record does not: then only the broker can tell.
        if limit > 0 && bytes > limit as usize && !self.compresses {
            // It cannot fit the destination topic in any batch: stop here rather than send it.
            let reason = format!(
                "destination cannot take offset {offset} for good: the record is {bytes} bytes, over the destination topic's max.message.bytes {limit}"
            );
            error!(task = %self.id, topic = %state.topic, partition = state.partition, %reason, "partition paused");
            state.set_health(PartitionHealth::Paused(reason));
            state.rewind(state.committable());
            if let Err(error) =
                self.consumer
                    .pause(&tpl(&state.topic, state.partition, Offset::Invalid))
            {
                warn!(task = %self.id, %error, "pause failed");
            }
            return None;
        }
        let cost = InFlightBudget::cost(bytes);
        state.metrics.records_consumed.inc();
        state.metrics.bytes_consumed.inc_by(bytes as u64);
        let timestamp = message.timestamp().to_millis();
        let delivery = Box::new(Delivery {
            partition: Arc::clone(&state),
            offset,
            generation: state.generation(),
            cost,
            bytes: bytes as u64,
            // Latency is sampled: one record in 16 reads the clock when it is acknowledged.
            timestamp_ms: timestamp.filter(|_| offset % 16 == 0),
        });
        let mut record: BaseRecord<'_, [u8], [u8], Box<Delivery>> =
            BaseRecord::with_opaque_to(&route.destination_topic, delivery);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        if let Some(timestamp) = timestamp {
            record = record.timestamp(timestamp);
        }
        if let Some(partition) = destination_partition(
            self.stream.partitioning,
            message.partition(),
            route.destination_partitions.load(Ordering::Relaxed),
        ) {
            record = record.partition(partition);
        }
        state.sent(offset);
        state.handed();
        self.budget.take(cost);
        let producer = self.producer_for(limit).producer();
        loop {
            match producer.send(record) {
                Ok(()) => return None,
                Err((error, returned))
                    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                {
                    // The producer queue is full: wait for deliveries (the budget normally prevents this).
                    record = returned;
                    std::thread::sleep(Duration::from_millis(1));
                    if self.stop.load(Ordering::Acquire) {
                        self.budget.give(cost);
                        state.resolved();
                        return None;
                    }
                }
                Err((error, _)) => {
                    self.budget.give(cost);
                    state.resolved();
                    return Some(DeliveryFailure {
                        generation: state.generation(),
                        partition: state,
                        offset,
                        bytes: bytes as u64,
                        error,
                    });
                }
            }
        }
    }

    /// A record could not be delivered. Permanent rejections pause the partition with the reason; anything
    /// else rewinds the partition to its committable offset and sends again (duplicates, never loss).
    fn on_delivery_failure(&mut self, failure: DeliveryFailure) {
        let state = &failure.partition;
        if failure.generation != state.generation() || !state.is_running() {
            return;
        }
        let tp = tpl(&state.topic, state.partition, Offset::Invalid);
        if is_permanent(&failure.error) {
            let limit = state.route.max_message_bytes();
            let size = if matches!(
                failure.error.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge
                )
            ) && limit > 0
            {
                format!(
                    " (the record is {} bytes; the destination topic's max.message.bytes is {limit})",
                    failure.bytes
                )
            } else {
                String::new()
            };
            let reason = format!(
                "destination rejected offset {} for good: {}{size}",
                failure.offset, failure.error
            );
            error!(task = %self.id, topic = %state.topic, partition = state.partition, %reason, "partition paused");
            state.set_health(PartitionHealth::Paused(reason));
            // Nothing of this partition is sent any more: forget what is in flight, keeping the commit
            // where it is (at or below the rejected record); late acknowledgements are ignored.
            state.rewind(state.committable());
            if let Err(error) = self.consumer.pause(&tp) {
                warn!(task = %self.id, %error, "pause failed");
            }
            return;
        }
        if matches!(
            failure.error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::UnknownPartition | RDKafkaErrorCode::UnknownTopic)
        ) {
            // The producer's metadata predates a destination topic or partition discovery just created.
            let _ = self
                .producer
                .producer()
                .client()
                .fetch_metadata(Some(&state.route.destination_topic), METADATA_TIMEOUT);
        }
        let position = state.committable();
        warn!(
            task = %self.id,
            topic = %state.topic,
            partition = state.partition,
            offset = failure.offset,
            error = %failure.error,
            rewind_to = position,
            "delivery failed; rewinding partition"
        );
        state.rewind(position);
        state.metrics.retries.inc();
        self.reposition(state, position);
    }

    fn on_consumer_error(&mut self, error: KafkaError) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AutoOffsetReset) => self.check_ranges(),
            Some(
                RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::UnknownTopicId,
            ) => {
                // A source topic may have been deleted (and created again): the stream looks now rather
                // than at its next round, so the task stops reading it before the new topic fills.
                warn!(task = %self.id, %error, "consumer error; the stream lists its source topics again");
                self.rediscover.store(true, Ordering::Release);
            }
            _ => warn!(task = %self.id, %error, "consumer error"),
        }
    }

    /// Stops reading the partitions of a topic that is gone and forgets them.
    fn forget_topic(&mut self, topic: &str) {
        self.deferred.retain(|p| p.topic != topic);
        let Some(slots) = self.by_topic.remove(topic) else {
            return;
        };
        let gone: Vec<Arc<PartitionState>> = slots.into_iter().flatten().collect();
        for state in &gone {
            // Late reports of its records neither rewind nor move anything: the partition is retired (a
            // new generation, not running), whatever comes of the topic's name next.
            state.set_health(PartitionHealth::Error("the source topic is gone".into()));
            state.rewind(state.committable());
            // One at a time: a partition that is not assigned (stopped at its start) makes librdkafka refuse
            // the whole list.
            let _ =
                self.consumer
                    .incremental_unassign(&tpl(topic, state.partition, Offset::Invalid));
        }
        self.range_checks.retain(|s| s.topic != topic);
        self.listed
            .lock()
            .expect("task partitions")
            .retain(|s| s.topic != topic);
        self.consumer
            .context()
            .lags
            .lock()
            .expect("lags")
            .retain(|(t, _), _| t != topic);
        info!(task = %self.id, %topic, partitions = gone.len(), "source topic is gone; its partitions are no longer read");
        self.forgotten
            .lock()
            .expect("forgotten partitions")
            .extend(gone.into_iter().filter(|p| p.unresolved() > 0));
    }

    /// After an out-of-range error (librdkafka does not say which partition, and stops fetching it): find
    /// the partitions whose fetch position or committable offset left the log and apply the policy. A
    /// partition whose log bounds cannot be read is checked again at the next housekeeping round, and shows
    /// as stopped until then.
    fn check_ranges(&mut self) {
        let states: Vec<Arc<PartitionState>> = self
            .listed
            .lock()
            .expect("task partitions")
            .iter()
            .filter(|s| s.is_running() || self.range_checks.iter().any(|p| Arc::ptr_eq(p, s)))
            .cloned()
            .collect();
        self.range_checks.clear();
        self.range_checked_at = Instant::now();
        let positions = self.consumer.position().ok();
        for state in states {
            let bounds = match self.log_bounds(&state.topic, state.partition) {
                Ok(bounds) => bounds,
                Err(error) => {
                    let reason = format!(
                        "offset out of range, and the log bounds to apply on_offset_out_of_range cannot be read ({error}); trying again"
                    );
                    warn!(task = %self.id, topic = %state.topic, partition = state.partition, %reason);
                    state.set_health(PartitionHealth::Error(reason));
                    self.range_checks.push(state);
                    continue;
                }
            };
            let fetching = positions
                .as_ref()
                .and_then(|p| p.find_partition(&state.topic, state.partition))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            let committable = state.committable();
            let Some(offending) = offending_offset(fetching, committable, bounds) else {
                if !state.is_running() || fetching.is_none() {
                    // Checked again after a failed read: in range after all. Records read meanwhile were
                    // dropped (the partition was stopped), so reading resumes at the committable offset.
                    state.set_health(PartitionHealth::Running);
                    state.rewind(committable);
                    self.reposition(&state, committable);
                } else if let Some(position) = fetching {
                    // In range now, yet it may be the partition librdkafka stopped (its log grew while the
                    // bounds were read): a seek to where it reads restarts its fetching and skips nothing.
                    self.reposition(&state, position);
                }
                continue;
            };
            if !state.is_running() {
                state.set_health(PartitionHealth::Running);
            }
            self.apply_out_of_range(&state, offending, bounds);
        }
    }

    /// The log bounds of a source partition, read up to three times.
    fn log_bounds(&self, topic: &str, partition: i32) -> Result<LogBounds, KafkaError> {
        let mut attempt = 0;
        loop {
            match self
                .consumer
                .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
            {
                Ok((low, high)) => return Ok(LogBounds { low, high }),
                Err(error) if attempt >= 2 => return Err(error),
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(200 * attempt));
                }
            }
        }
    }

    fn apply_out_of_range(
        &mut self,
        state: &Arc<PartitionState>,
        position: i64,
        bounds: LogBounds,
    ) {
        let policy = self.stream.on_offset_out_of_range;
        match start_offset(
            Some(position),
            None,
            self.stream.start_position,
            policy,
            bounds,
        ) {
            StartDecision::At(offset) => {
                warn!(
                    task = %self.id, topic = %state.topic, partition = state.partition,
                    from = position, to = offset, ?policy,
                    "offset out of range; reset by the stream's policy"
                );
                state.rewind(offset);
                self.reposition(state, offset);
            }
            StartDecision::OutOfRange { committed, bounds } => {
                let reason = out_of_range_reason(committed, bounds);
                error!(task = %self.id, topic = %state.topic, partition = state.partition, %reason, "partition stopped");
                state.set_health(PartitionHealth::Error(reason));
                let _ = self
                    .consumer
                    .pause(&tpl(&state.topic, state.partition, Offset::Invalid));
            }
        }
    }

    /// Starts reading new partitions from their committed offsets (or the stream's start position).
    fn add_partitions(&mut self, partitions: Vec<NewPartition>) {
        let mut lookup = TopicPartitionList::new();
        for p in &partitions {
            let _ = lookup.add_partition_offset(&p.topic, p.partition, Offset::Invalid);
        }
        let committed = match self.consumer.committed_offsets(lookup, METADATA_TIMEOUT) {
            Ok(list) => list,
            Err(error) => {
                // Without the committed offsets the start is unknown: try again shortly.
                warn!(task = %self.id, %error, "cannot read committed offsets; partitions start later");
                self.defer(partitions);
                return;
            }
        };
        let mut assignment = TopicPartitionList::new();
        let mut assigned: Vec<NewPartition> = Vec::new();
        let mut later = Vec::new();
        for p in partitions {
            if self.partition(&p.topic, p.partition).is_some() {
                continue;
            }
            if !self.prepare_producer(&p.route) {
                later.push(p);
                continue;
            }
            let committed_element = committed.find_partition(&p.topic, p.partition);
            let mut committed_offset = committed_element.as_ref().and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
            let committed_id = committed_element
                .as_ref()
                .filter(|_| committed_offset.is_some())
                .and_then(|e| topic_id_in_commit_metadata(e.metadata()));
            let (low, high) = match self.consumer.fetch_watermarks(
                &p.topic,
                p.partition,
                METADATA_TIMEOUT,
            ) {
                Ok(bounds) => bounds,
                Err(error) => {
                    warn!(task = %self.id, topic = %p.topic, partition = p.partition, %error, "cannot read log bounds; partition starts later");
                    later.push(p);
                    continue;
                }
            };
            let recreated = match &p.topic_id {
                Some(current) => {
                    match incarnation(committed_id.as_ref(), p.last_seen_id.as_ref(), current) {
                        Incarnation::Recreated { previous } => Some(recreated_start(
                            &p.topic,
                            &previous,
                            current,
                            self.stream.on_source_topic_recreated,
                        )),
                        Incarnation::Same | Incarnation::Unknown => None,
                    }
                }
                None => None,
            };
            let (position, health) = match recreated {
                Some(RecreatedStart::Earliest) => {
                    warn!(task = %self.id, topic = %p.topic, partition = p.partition, committed = ?committed_offset, earliest = low,
                        "source topic was created again; its partition starts at the earliest offset of the new topic (on_source_topic_recreated = restart-earliest)");
                    crate::metrics::metrics()
                        .source_topic_recreations
                        .with_label_values(&[self.stream.name.as_str()])
                        .inc();
                    // The offset committed for the old topic is not this partition's.
                    committed_offset = None;
                    (low, PartitionHealth::Running)
                }
                Some(RecreatedStart::Stop(reason)) => {
                    error!(task = %self.id, topic = %p.topic, partition = p.partition, %reason, "partition not started");
                    (
                        committed_offset.unwrap_or(low),
                        PartitionHealth::Error(reason),
                    )
                }
                None => match start_offset(
                    committed_offset,
                    self.stream.start_offset(&p.topic, p.partition),
                    self.stream.start_position,
                    self.stream.on_offset_out_of_range,
                    LogBounds { low, high },
                ) {
                    StartDecision::At(offset) => (offset, PartitionHealth::Running),
                    StartDecision::OutOfRange { committed, bounds } => {
                        let reason = out_of_range_reason(committed, bounds);
                        error!(task = %self.id, topic = %p.topic, partition = p.partition, %reason, "partition not started");
                        (committed, PartitionHealth::Error(reason))
                    }
                },
            };
            let state = Arc::new(
                PartitionState::new(
                    &p.topic,
                    p.partition,
                    Arc::clone(&p.route),
                    position,
                    Arc::clone(&self.failures),
                    Arc::clone(&self.metrics),
                )
                .with_topic_id(p.topic_id.clone().or(committed_id.clone())),
            );
            if let Some(offset) = committed_offset {
                state.set_committed(offset);
            }
            let running = matches!(health, PartitionHealth::Running);
            if !running {
                state.never_ran();
            }
            state.set_health(health);
            if running {
                let _ = assignment.add_partition_offset(
                    &p.topic,
                    p.partition,
                    Offset::Offset(position),
                );
                assigned.push(p.clone());
                info!(task = %self.id, topic = %p.topic, partition = p.partition, position, topic_id = ?state.topic_id, "partition started");
            }
            let slots = self.by_topic.entry(p.topic.clone()).or_default();
            if slots.len() <= p.partition as usize {
                slots.resize(p.partition as usize + 1, None);
            }
            slots[p.partition as usize] = Some(Arc::clone(&state));
            self.listed.lock().expect("task partitions").push(state);
        }
        if assignment.count() > 0 {
            match self.consumer.incremental_assign(&assignment) {
                Ok(()) => {
                    // librdkafka keeps a partition's pause across unassign and assign: a partition of a
                    // topic forgotten while stopped (out of range in a re-created topic) would never fetch
                    // again.
                    let _ = self.consumer.resume(&assignment);
                }
                Err(error) => {
                    // Nothing of the list was assigned: the partitions are taken back and tried again.
                    warn!(task = %self.id, %error, partitions = assigned.len(), "the consumer refused the assignment; the partitions start later");
                    for p in &assigned {
                        if let Some(slots) = self.by_topic.get_mut(&p.topic) {
                            if let Some(slot) = slots.get_mut(p.partition as usize) {
                                *slot = None;
                            }
                        }
                    }
                    self.listed.lock().expect("task partitions").retain(|s| {
                        !assigned
                            .iter()
                            .any(|p| p.topic == s.topic && p.partition == s.partition)
                    });
                    later.extend(assigned);
                }
            }
        }
        self.defer(later);
    }

    /// Keeps partitions that could not start yet; housekeeping retries them every second.
    fn defer(&mut self, partitions: Vec<NewPartition>) {
        if self.deferred.is_empty() {
            self.deferred_since = Instant::now();
        }
        self.deferred.extend(partitions);
    }

    /// Commits, for every partition, the offset below which the destination acknowledged everything. An
    /// asynchronous commit moves the committed offsets only when the source answers it (see
    /// [`MirrorTask::on_commit_outcome`]); one is outstanding at a time.
    fn commit(&mut self, mode: CommitMode) {
        self.last_commit = Instant::now();
        if matches!(mode, CommitMode::Async)
            && self
                .commit_sent
                .is_some_and(|sent| sent.elapsed() < COMMIT_ANSWER_TIMEOUT)
        {
            return;
        }
        let listed = self.listed.lock().expect("task partitions").clone();
        // The consumer's position passes transaction markers the task never sees as records: a partition
        // with nothing in flight may commit up to it, or its lag would never reach 0.
        let positions = self.consumer.position().ok();
        let mut offsets = TopicPartitionList::new();
        let mut changed = Vec::new();
        for state in &listed {
            if let Some(Offset::Offset(position)) = positions
                .as_ref()
                .and_then(|p| p.find_partition(&state.topic, state.partition))
                .map(|e| e.offset())
            {
                state.skip_idle_to(position);
            }
            // A partition stopped at its start without a committed offset keeps none: a commit would make
            // its start position look like a resumable one (a re-created topic under `fail`).
            if state.has_never_run() && state.committed().is_none() {
                continue;
            }
            let committable = state.committable();
            if state.committed() != Some(committable) {
                let mut element = offsets.add_partition(&state.topic, state.partition);
                let _ = element.set_offset(Offset::Offset(committable));
                // The topic's id goes with the offset: a later start can tell a re-created topic.
                if let Some(id) = &state.topic_id {
                    element.set_metadata(commit_metadata(id));
                }
                changed.push((state, committable));
            }
        }
        if changed.is_empty() {
            return;
        }
        let sent = Instant::now();
        if matches!(mode, CommitMode::Async) {
            if let Some(requests) = &self.commit_requests {
                if requests.try_send(offsets).is_ok() {
                    self.commit_sent = Some(sent);
                }
            }
            return;
        }
        let result = self.consumer.commit(&offsets, CommitMode::Sync);
        crate::metrics::metrics()
            .commit_latency
            .with_label_values(&[self.stream.name.as_str()])
            .observe(sent.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                for (state, offset) in changed {
                    state.set_committed(offset);
                }
            }
            Err(error) => {
                crate::metrics::metrics()
                    .commit_failures
                    .with_label_values(&[self.stream.name.as_str()])
                    .inc();
                warn!(task = %self.id, %error, "the source refused the final offset commit; the records after the last commit will be copied again")
            }
        }
    }

    /// Stops consuming, waits until the producer reported on every record the task handed it, and commits
    /// what was acknowledged. A fenced node drops what its producers hold instead of waiting for it.
    fn drain_and_commit(&mut self) {
        let _ = self.consumer.unassign();
        if !self.lease.is_valid() {
            self.purge_producers();
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            // Failed deliveries: forget what is in flight so the commit stays below it.
            for failure in self.failures.take() {
                let state = &failure.partition;
                if failure.generation == state.generation() {
                    state.rewind(state.committable());
                }
            }
            let unresolved = self.unresolved();
            if unresolved == 0 || Instant::now() >= deadline {
                if unresolved > 0 {
                    warn!(task = %self.id, unresolved, "stopping with records still in the producer; the task is not let go until they are resolved");
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for failure in self.failures.take() {
            let state = &failure.partition;
            if failure.generation == state.generation() {
                state.rewind(state.committable());
            }
        }
        // The committer's last commit lands before the final one, never after it.
        self.commit_requests = None;
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
        for outcome in self.consumer.context().take_commits() {
            self.on_commit_outcome(outcome);
        }
        self.commit(CommitMode::Sync);
    }

    fn unresolved(&self) -> usize {
        let forgotten: usize = self
            .forgotten
            .lock()
            .expect("forgotten partitions")
            .iter()
            .map(|s| s.unresolved())
            .sum();
        forgotten
            + self
                .listed
                .lock()
                .expect("task partitions")
                .iter()
                .map(|s| s.unresolved())
                .sum::<usize>()
    }
}

fn tpl(topic: &str, partition: i32, offset: Offset) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    let _ = list.add_partition_offset(topic, partition, offset);
    list
}

fn out_of_range_reason(committed: i64, bounds: LogBounds) -> String {
    let what = if committed < bounds.low {
        "the source log was truncated past it"
    } else {
        "it is beyond the end of the source log (topic re-created?)"
    };
    format!(
        "committed offset {committed} is out of range [{}, {}]: {what}; set on_offset_out_of_range to reset",
        bounds.low, bounds.high
    )
}
