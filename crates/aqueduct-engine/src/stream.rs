//! A datastream on this node: discovery of its source topics and partitions, creation of its destination
//! topics, and the tasks that copy the records.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aqueduct_model::config::{ClusterConfig, DatastreamConfig, NodeSettings};
use aqueduct_model::naming::{is_replicated_topic_config, TopicFilter, TopicNaming};
use aqueduct_model::placement::{task_for_partition, TaskSlice};
use aqueduct_model::tenancy::Policy;
use aqueduct_model::time::now_unix_ms;
use aqueduct_model::topic_id::TopicId;
use aqueduct_rdkafka_ext::{describe_topic_ids, TopicLookup};
use futures_executor::block_on;
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use tracing::{error, info, warn};

use crate::budget::InFlightBudget;
use crate::client::{admin_config, consumer_config};
use crate::lease::Lease;
use crate::partition::{Route, Unresolved};
use crate::producer::ProducerPool;
use crate::status::{DeletedTopic, StreamStatus, UnreachableCluster};
use crate::task::{self, NewPartition, TaskHandle, TaskSpec};
use crate::EngineError;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long new partitions of a topic the cluster lists without an id wait for one.
const ID_WAIT: Duration = Duration::from_secs(10);
/// How often the ids of the topics being read are compared with the cluster's, between full rounds.
const INCARNATION_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What a stream needs from its node.
pub struct StreamContext {
    pub stream: Arc<DatastreamConfig>,
    pub clusters: BTreeMap<String, ClusterConfig>,
    pub node: NodeSettings,
    pub pool: Arc<ProducerPool>,
    pub budget: Arc<InFlightBudget>,
    /// Run only this task of the stream (cluster mode); `None` runs all of it, split into up to
    /// `max_tasks` tasks per source cluster.
    pub slice: Option<TaskSlice>,
    /// Tasks forward records only while the node's lease is valid.
    pub lease: Arc<Lease>,
    /// The policy of the stream's owner, when it has one: only what it grants is read and written.
    pub policy: Option<Policy>,
}

#[derive(Default)]
struct StreamShared {
    tasks: Mutex<BTreeMap<String, TaskHandle>>,
    errors: Mutex<Vec<String>>,
    unreachable: Mutex<Vec<UnreachableCluster>>,
    deleted_topics: Mutex<Vec<DeletedTopic>>,
    /// Set by a task that saw a sign of a deleted topic: discovery lists the topics without waiting for
    /// its interval.
    rediscover: Arc<AtomicBool>,
}

/// A running datastream.
pub struct StreamRunner {
    name: String,
    paused: bool,
    stop: Arc<AtomicBool>,
    shared: Arc<StreamShared>,
    thread: Option<JoinHandle<()>>,
}

impl StreamRunner {
    /// Starts discovery (and with it the tasks) of a stream; a paused stream runs nothing.
    pub fn start(context: StreamContext) -> Result<Self, EngineError> {
        let name = context.stream.name.clone();
        let paused = context.stream.paused;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(StreamShared::default());
        let thread = if paused {
            info!(stream = %name, "stream is paused");
            None
        } else {
            let span = tracing::info_span!("discovery", datastream = %name);
            let mut discovery = Discovery::new(context, Arc::clone(&shared))?;
            let stop = Arc::clone(&stop);
            Some(
                std::thread::Builder::new()
                    .name(format!("discovery-{name}"))
                    .spawn(move || span.in_scope(|| discovery.run(&stop)))
                    .map_err(|e| EngineError::Start(e.to_string()))?,
            )
        };
        Ok(Self {
            name,
            paused,
            stop,
            shared,
            thread,
        })
    }

    pub fn status(&self) -> StreamStatus {
        StreamStatus {
            name: self.name.clone(),
            paused: self.paused,
            tasks: self
                .shared
                .tasks
                .lock()
                .expect("stream tasks")
                .values()
                .map(TaskHandle::status)
                .collect(),
            errors: self.shared.errors.lock().expect("stream errors").clone(),
            unreachable: self
                .shared
                .unreachable
                .lock()
                .expect("stream unreachable")
                .clone(),
            deleted_topics: self
                .shared
                .deleted_topics
                .lock()
                .expect("stream deleted topics")
                .clone(),
        }
    }

    /// Asks discovery and every task to stop without waiting.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        for task in self.shared.tasks.lock().expect("stream tasks").values() {
            task.request_stop();
        }
    }

    /// Stops discovery and every task (each drains and commits). The tasks are told first: discovery may
    /// be in the middle of a slow metadata call, and the tasks must not forward records meanwhile. Returns
    /// the partitions whose records are still inside a producer.
    pub fn stop(&mut self) -> Unresolved {
        self.request_stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let mut tasks = std::mem::take(&mut *self.shared.tasks.lock().expect("stream tasks"));
        for task in tasks.values() {
            task.request_stop();
        }
        let mut unresolved = Unresolved::default();
        for task in tasks.values_mut() {
            unresolved.extend(task.stop());
        }
        unresolved
    }
}

impl Drop for StreamRunner {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

struct Source {
    cluster: String,
    filter: TopicFilter,
    metadata: BaseConsumer,
    admin: AdminClient<DefaultClientContext>,
}

struct Discovery {
    context: StreamContext,
    shared: Arc<StreamShared>,
    naming: TopicNaming,
    sources: Vec<Source>,
    destination_metadata: BaseConsumer,
    destination_admin: AdminClient<DefaultClientContext>,
    routes: HashMap<String, Arc<Route>>,
    known: HashSet<(usize, String, i32)>,
    /// The id of each source topic whose partitions were handed to tasks: the incarnation being mirrored,
    /// kept after the topic is gone so that a topic created again under its name is told apart.
    ids: HashMap<(usize, String), TopicId>,
    /// Source topics that were mirrored and are gone, since when (milliseconds since the Unix epoch).
    deleted: BTreeMap<(usize, String), u64>,
    /// Topics the cluster listed without an id, since when.
    without_id: HashMap<(usize, String), Instant>,
    /// Source clusters whose topics could not be listed, with the start of the failures and the last error.
    unreachable: BTreeMap<String, UnreachableCluster>,
}

impl Discovery {
    fn new(context: StreamContext, shared: Arc<StreamShared>) -> Result<Self, EngineError> {
        let stream = &context.stream;
        let naming = TopicNaming::parse(&stream.destination_topic).map_err(EngineError::Config)?;
        let mut sources = Vec::new();
        for source in &stream.sources {
            let cluster = cluster(&context.clusters, &source.cluster)?;
            let filter = TopicFilter::new(
                &source.topics,
                source.topic_pattern.as_deref(),
                source.exclude_pattern.as_deref(),
            )
            .map_err(|e| EngineError::Config(e.to_string()))?;
            sources.push(Source {
                cluster: source.cluster.clone(),
                filter,
                metadata: admin_config(cluster).create()?,
                admin: admin_config(cluster).create()?,
            });
        }
        let destination = cluster(&context.clusters, &stream.destination)?;
        Ok(Self {
            destination_metadata: admin_config(destination).create()?,
            destination_admin: admin_config(destination).create()?,
            context,
            shared,
            naming,
            sources,
            routes: HashMap::new(),
            known: HashSet::new(),
            ids: HashMap::new(),
            deleted: BTreeMap::new(),
            without_id: HashMap::new(),
            unreachable: BTreeMap::new(),
        })
    }

    fn run(&mut self, stop: &AtomicBool) {
        let interval = Duration::from_secs(self.context.stream.topic_refresh_interval_secs);
        while !stop.load(Ordering::Acquire) {
            let started = Instant::now();
            let errors = self.discover();
            *self.shared.errors.lock().expect("stream errors") = errors;
            *self.shared.unreachable.lock().expect("stream unreachable") =
                self.unreachable.values().cloned().collect();
            self.publish_deleted();
            let next = started + interval;
            // Early when a task asks or a mirrored topic changed, but not more than once a second.
            let mut checked = Instant::now();
            while Instant::now() < next && !stop.load(Ordering::Acquire) {
                if checked.elapsed() >= INCARNATION_CHECK_INTERVAL {
                    checked = Instant::now();
                    if self.check_incarnations() {
                        self.publish_deleted();
                        self.shared.rediscover.store(true, Ordering::Release);
                    }
                }
                if started.elapsed() >= Duration::from_secs(1)
                    && self.shared.rediscover.swap(false, Ordering::AcqRel)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    fn publish_deleted(&self) {
        *self
            .shared
            .deleted_topics
            .lock()
            .expect("stream deleted topics") = self
            .deleted
            .iter()
            .map(|((index, topic), since)| DeletedTopic {
                cluster: self.sources[*index].cluster.clone(),
                topic: topic.clone(),
                since_unix_ms: *since,
            })
            .collect();
    }

    /// Between full rounds: asks for the ids of the topics the tasks read, so that a topic deleted (and
    /// perhaps created again) stops being read within about a second rather than at the next round, before
    /// the consumer can continue at its old position in a new log. Returns whether a full round is due: a
    /// topic was forgotten, or a gone one is back.
    fn check_incarnations(&mut self) -> bool {
        let mut forgot = false;
        for index in 0..self.sources.len() {
            let read: BTreeSet<String> = self
                .known
                .iter()
                .filter(|(i, _, _)| *i == index)
                .map(|(_, topic, _)| topic.clone())
                .collect();
            let gone: BTreeSet<String> = self
                .deleted
                .keys()
                .filter(|(i, _)| *i == index)
                .map(|(_, topic)| topic.clone())
                .collect();
            if read.is_empty() && gone.is_empty() {
                continue;
            }
            let names: Vec<&str> = read.iter().chain(&gone).map(String::as_str).collect();
            // A failed request proves nothing; the next check or round asks again.
            let Ok(lookups) = describe_topic_ids(
                self.sources[index].metadata.client(),
                &names,
                METADATA_TIMEOUT,
            ) else {
                continue;
            };
            let listed: HashSet<&str> = read
                .iter()
                .map(String::as_str)
                .filter(|t| lookups.get(*t) != Some(&TopicLookup::Missing))
                .collect();
            forgot |= self.forget_gone_topics(index, &listed, &lookups);
            // A gone topic that is back is handed out by a full round now.
            forgot |= gone
                .iter()
                .any(|t| matches!(lookups.get(t), Some(TopicLookup::Exists(_))));
        }
        forgot
    }

    /// Lists the source topics, prepares their destinations and hands new partitions to tasks. Returns the
    /// problems found (they are retried at the next round).
    fn discover(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for index in 0..self.sources.len() {
            let topics = match self.list_source_topics(index) {
                Ok(topics) => {
                    if let Some(gone) = self.unreachable.remove(&self.sources[index].cluster) {
                        info!(stream = %self.context.stream.name, cluster = %gone.cluster, "source cluster reachable again");
                    }
                    topics
                }
                Err(error) => {
                    let cluster = self.sources[index].cluster.clone();
                    let now = now_unix_ms();
                    let entry = self.unreachable.entry(cluster.clone()).or_insert_with(|| {
                        UnreachableCluster {
                            cluster: cluster.clone(),
                            since_unix_ms: now,
                            error: String::new(),
                        }
                    });
                    entry.error = error.to_string();
                    let seconds = now.saturating_sub(entry.since_unix_ms) / 1000;
                    // Reported through `unreachable` (the status lists it among the stream's problems).
                    warn!(stream = %self.context.stream.name, %cluster, %error, seconds, "cannot reach the source cluster");
                    continue;
                }
            };
            // Which incarnation of each topic is there now (KIP-516 topic ids).
            let names: Vec<&str> = topics.iter().map(|(t, _)| t.as_str()).collect();
            let lookups = match describe_topic_ids(
                self.sources[index].metadata.client(),
                &names,
                METADATA_TIMEOUT,
            ) {
                Ok(lookups) => lookups,
                Err(error) => {
                    // New partitions wait: they must not start without knowing which topic they are of.
                    let error = format!(
                        "cannot read the topic ids of source cluster {}: {error}",
                        self.sources[index].cluster
                    );
                    warn!(stream = %self.context.stream.name, %error, "new partitions wait");
                    errors.push(error);
                    self.shared.rediscover.store(true, Ordering::Release);
                    topics
                        .iter()
                        .map(|(t, _)| (t.clone(), TopicLookup::Failed("no answer".into())))
                        .collect()
                }
            };
            // A topic whose id could not be read waits for the next round (asked for within a second):
            // its partitions must not start without knowing which topic they belong to.
            let mut unsure = false;
            for (topic, lookup) in &lookups {
                if let TopicLookup::Failed(error) = lookup {
                    warn!(stream = %self.context.stream.name, %topic, %error, "cannot read the source topic's id; its new partitions wait");
                    unsure = true;
                }
            }
            if unsure {
                self.shared.rediscover.store(true, Ordering::Release);
            }
            let topics: Vec<(String, i32)> = topics
                .into_iter()
                .filter(|(t, _)| lookups.get(t) != Some(&TopicLookup::Missing))
                .collect();
            // A broker may answer without an id for a topic it has just created: its partitions wait a
            // little for the id (a cluster that never gives ids, Kafka before 2.8, is mirrored without).
            let now = Instant::now();
            let mut waiting_for_id = HashSet::new();
            for (topic, lookup) in &lookups {
                let key = (index, topic.clone());
                if matches!(lookup, TopicLookup::Exists(None)) {
                    let since = *self.without_id.entry(key).or_insert(now);
                    if now.duration_since(since) < ID_WAIT {
                        waiting_for_id.insert(topic.clone());
                        self.shared.rediscover.store(true, Ordering::Release);
                    }
                } else {
                    self.without_id.remove(&key);
                }
            }
            let failed = |topic: &str| {
                waiting_for_id.contains(topic)
                    || matches!(lookups.get(topic), Some(TopicLookup::Failed(_)))
            };
            let listed: HashSet<&str> = topics.iter().map(|(t, _)| t.as_str()).collect();
            self.forget_gone_topics(index, &listed, &lookups);
            let mut by_task: BTreeMap<usize, Vec<NewPartition>> = BTreeMap::new();
            for (topic, partitions) in topics {
                let slice = self.context.slice;
                let new: Vec<i32> = (0..partitions)
                    .filter(|p| slice.is_none_or(|s| s.owns(&topic, *p)))
                    // Paused by hand: not read until the stream's definition resumes it.
                    .filter(|p| !self.context.stream.is_partition_paused(&topic, *p))
                    .filter(|p| !self.known.contains(&(index, topic.clone(), *p)))
                    .collect();
                if new.is_empty() || failed(&topic) {
                    continue;
                }
                let route = match self.prepare_destination(index, &topic, partitions) {
                    Ok(route) => route,
                    Err(error) => {
                        error!(stream = %self.context.stream.name, %topic, %error, "destination not ready");
                        errors.push(error);
                        continue;
                    }
                };
                let tasks = self.context.stream.max_tasks;
                let topic_id = lookups.get(&topic).and_then(TopicLookup::id);
                let last_seen_id = self.ids.get(&(index, topic.clone())).cloned();
                for partition in new {
                    let task = match slice {
                        Some(slice) => slice.index as usize,
                        None => task_for_partition(&topic, partition, tasks),
                    };
                    by_task.entry(task).or_default().push(NewPartition {
                        topic: topic.clone(),
                        partition,
                        route: Arc::clone(&route),
                        topic_id: topic_id.clone(),
                        last_seen_id: last_seen_id.clone(),
                    });
                }
            }
            for (task_index, partitions) in by_task {
                let handed: Vec<(usize, String, i32)> = partitions
                    .iter()
                    .map(|p| (index, p.topic.clone(), p.partition))
                    .collect();
                let ids: Vec<((usize, String), TopicId)> = partitions
                    .iter()
                    .filter_map(|p| Some(((index, p.topic.clone()), p.topic_id.clone()?)))
                    .collect();
                match self.hand_to_task(index, task_index, partitions) {
                    // Known only once a task has them, so a failure is retried at the next round.
                    Ok(()) => {
                        self.known.extend(handed);
                        self.ids.extend(ids);
                    }
                    Err(error) => {
                        error!(stream = %self.context.stream.name, %error, "cannot start task");
                        errors.push(error.to_string());
                    }
                }
            }
        }
        errors
    }

    /// Finds the topics of source `index` that tasks read and that are gone (`listed` no longer has them) or
    /// were created again (another id), and makes the tasks forget their partitions. A topic created again
    /// is then handed out as new, and each partition's start applies the stream's
    /// `on_source_topic_recreated`; a gone topic is reported until it comes back.
    fn forget_gone_topics(
        &mut self,
        index: usize,
        listed: &HashSet<&str>,
        lookups: &BTreeMap<String, TopicLookup>,
    ) -> bool {
        let mut forgot = false;
        self.deleted
            .retain(|(i, topic), _| *i != index || !listed.contains(topic.as_str()));
        let read: HashSet<String> = self
            .known
            .iter()
            .filter(|(i, _, _)| *i == index)
            .map(|(_, topic, _)| topic.clone())
            .collect();
        for topic in read {
            let gone = !listed.contains(topic.as_str());
            let recreated = !gone
                && match (
                    self.ids.get(&(index, topic.clone())),
                    lookups.get(&topic).and_then(TopicLookup::id),
                ) {
                    (Some(before), Some(now)) => *before != now,
                    _ => false,
                };
            if !gone && !recreated {
                continue;
            }
            forgot = true;
            let cluster = self.sources[index].cluster.clone();
            if gone {
                warn!(stream = %self.context.stream.name, %cluster, %topic, "source topic is gone; its partitions are no longer read");
                self.deleted.insert((index, topic.clone()), now_unix_ms());
            } else {
                warn!(stream = %self.context.stream.name, %cluster, %topic, "source topic was deleted and created again; its partitions start over under the stream's on_source_topic_recreated");
            }
            self.known.retain(|(i, t, _)| !(*i == index && *t == topic));
            for task in self.shared.tasks.lock().expect("stream tasks").values() {
                if task.source_cluster == cluster {
                    task.forget_topic(&topic);
                }
            }
        }
        forgot
    }

    /// Matching topics of source `index` with their partition counts.
    fn list_source_topics(&self, index: usize) -> Result<Vec<(String, i32)>, EngineError> {
        let source = &self.sources[index];
        let metadata = source.metadata.fetch_metadata(None, METADATA_TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && source.filter.matches(t.name()))
            // The owner's policy narrows what the stream's topics and pattern select.
            .filter(|t| {
                self.context
                    .policy
                    .as_ref()
                    .is_none_or(|p| p.may_read(&source.cluster, t.name()))
            })
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .filter(|(_, partitions)| *partitions > 0)
            .collect())
    }

    /// Makes sure the destination topic of `topic` exists with at least `partitions` partitions.
    fn prepare_destination(
        &mut self,
        index: usize,
        topic: &str,
        partitions: i32,
    ) -> Result<Arc<Route>, String> {
        let source_cluster = &self.sources[index].cluster;
        let destination = self.naming.destination(source_cluster, topic);
        let stream = Arc::clone(&self.context.stream);
        if let Some(policy) = &self.context.policy {
            if !policy.may_write(&stream.destination, &destination) {
                return Err(format!(
                    "tenant {} may not write topic {destination} of cluster {} (tenants.{}.write): source topic {topic} is not mirrored",
                    policy.tenant(),
                    stream.destination,
                    policy.tenant()
                ));
            }
        }
        let existing = self
            .destination_partitions(&destination)
            .map_err(|e| format!("cannot read destination topic {destination}: {e}"))?;
        let count = match existing {
            None if !stream.create_topics => {
                return Err(format!(
                    "destination topic {destination} does not exist and create_topics is off"
                ));
            }
            None => {
                self.create_destination(index, topic, &destination, partitions)?;
                partitions
            }
            Some(count) if count < partitions && stream.create_topics => {
                self.grow_destination(&destination, partitions)?;
                partitions
            }
            Some(count) => count,
        };
        let known_limit = self
            .routes
            .get(&destination)
            .map_or(0, |route| route.max_message_bytes());
        let limit = if known_limit > 0 {
            known_limit
        } else {
            // Batches must fit the destination topic's limit: learn it before the first record goes.
            match self.destination_max_message_bytes(&destination) {
                Ok(limit) => limit,
                Err(DescribeError::NotAuthorized(error)) => {
                    // Without DescribeConfigs on the destination the limit cannot be known: the pool's
                    // batches are used as they are, and a topic with a smaller limit may refuse them.
                    warn!(stream = %stream.name, topic = %destination, %error, "cannot read the destination topic's max.message.bytes; batches are not fitted to it");
                    0
                }
                Err(DescribeError::Other(error)) => return Err(error),
            }
        };
        let route = self
            .routes
            .entry(destination.clone())
            .or_insert_with(|| {
                Arc::new(Route {
                    destination_topic: destination,
                    destination_partitions: AtomicI32::new(count),
                    max_message_bytes: AtomicU32::new(limit),
                })
            })
            .clone();
        route
            .destination_partitions
            .fetch_max(count, Ordering::Relaxed);
        route.max_message_bytes.store(limit, Ordering::Relaxed);
        Ok(route)
    }

    /// The destination topic's `max.message.bytes` (the broker's `message.max.bytes` when the topic has no
    /// value of its own: the describe answer gives the value in force).
    fn destination_max_message_bytes(&self, topic: &str) -> Result<u32, DescribeError> {
        let other = |e: String| {
            DescribeError::Other(format!(
                "cannot read configs of destination topic {topic}: {e}"
            ))
        };
        let configs = block_on(self.destination_admin.describe_configs(
            [&ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT)),
        ))
        .map_err(|e| other(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| other("no answer".to_string()))?;
        let configs = match configs {
            Ok(configs) => configs,
            Err(
                code @ (RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed),
            ) => return Err(DescribeError::NotAuthorized(code.to_string())),
            Err(code) => return Err(other(code.to_string())),
        };
        configs
            .get("max.message.bytes")
            .and_then(|entry| entry.value.as_deref())
            .and_then(|value| value.parse::<u32>().ok())
            .ok_or_else(|| other("no max.message.bytes in the answer".to_string()))
    }

    fn destination_partitions(&self, topic: &str) -> Result<Option<i32>, EngineError> {
        let metadata = self
            .destination_metadata
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
        Ok(metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as i32))
    }

    /// Creates the destination topic with the source's partition count and topic configs.
    fn create_destination(
        &self,
        index: usize,
        topic: &str,
        destination: &str,
        partitions: i32,
    ) -> Result<(), String> {
        let source = &self.sources[index];
        let configs = block_on(source.admin.describe_configs(
            [&ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT)),
        ))
        .map_err(|e| format!("cannot read configs of source topic {topic}: {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("no configs returned for source topic {topic}"))?
        .map_err(|e| format!("cannot read configs of source topic {topic}: {e}"))?;
        let overrides: Vec<(String, String)> = configs
            .entries
            .into_iter()
            .filter(|e| matches!(e.source, ConfigSource::DynamicTopic))
            .filter(|e| is_replicated_topic_config(&e.name))
            .filter_map(|e| e.value.map(|v| (e.name, v)))
            .collect();
        let mut new_topic = NewTopic::new(
            destination,
            partitions,
            TopicReplication::Fixed(self.context.stream.replication_factor),
        );
        for (key, value) in &overrides {
            new_topic = new_topic.set(key, value);
        }
        let results = block_on(self.destination_admin.create_topics(
            [&new_topic],
            &AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT)),
        ))
        .map_err(|e| format!("cannot create destination topic {destination}: {e}"))?;
        for result in results {
            match result {
                Ok(_) => info!(
                    stream = %self.context.stream.name,
                    topic = destination,
                    partitions,
                    configs = ?overrides,
                    "destination topic created"
                ),
                // Another stream or node created it first: fine.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(format!(
                        "cannot create destination topic {destination}: {code}"
                    ))
                }
            }
        }
        self.wait_for_destination(destination, partitions)
    }

    /// Adds partitions to an existing destination topic so identity partitioning keeps working.
    fn grow_destination(&self, destination: &str, partitions: i32) -> Result<(), String> {
        let results = block_on(self.destination_admin.create_partitions(
            [&NewPartitions::new(destination, partitions as usize)],
            &AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT)),
        ))
        .map_err(|e| format!("cannot add partitions to {destination}: {e}"))?;
        for result in results {
            match result {
                Ok(_) => {
                    info!(stream = %self.context.stream.name, topic = destination, partitions, "destination partitions added")
                }
                Err((_, RDKafkaErrorCode::InvalidPartitions)) => {}
                Err((_, code)) => {
                    return Err(format!("cannot add partitions to {destination}: {code}"))
                }
            }
        }
        self.wait_for_destination(destination, partitions)
    }

    fn wait_for_destination(&self, destination: &str, partitions: i32) -> Result<(), String> {
        let deadline = Instant::now() + METADATA_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(count)) = self.destination_partitions(destination) {
                if count >= partitions {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "destination topic {destination} did not show {partitions} partitions in time"
        ))
    }

    fn hand_to_task(
        &self,
        source_index: usize,
        task_index: usize,
        partitions: Vec<NewPartition>,
    ) -> Result<(), EngineError> {
        let stream = &self.context.stream;
        let source_cluster = &self.sources[source_index].cluster;
        let id = match self.context.slice {
            Some(slice) => format!(
                "{}-{}of{}-{source_cluster}",
                stream.name, task_index, slice.count
            ),
            None => format!("{}-{source_cluster}-{task_index}", stream.name),
        };
        let mut tasks = self.shared.tasks.lock().expect("stream tasks");
        if !tasks.contains_key(&id) {
            let cluster = cluster(&self.context.clusters, source_cluster)?;
            let consumer: task::TaskConsumer = consumer_config(
                cluster,
                &stream.consumer_properties,
                &stream.group_id(),
                &format!("aqueduct-{id}"),
                self.context.node.consumer_prefetch_bytes,
            )
            .create_with_context(task::TaskConsumerContext::new())?;
            let handle = task::spawn(TaskSpec {
                id: id.clone(),
                source_cluster: source_cluster.clone(),
                stream: Arc::clone(stream),
                consumer,
                pool: Arc::clone(&self.context.pool),
                budget: Arc::clone(&self.context.budget),
                lease: Arc::clone(&self.context.lease),
                commit_interval: Duration::from_millis(self.context.node.commit_interval_ms),
                rediscover: Arc::clone(&self.shared.rediscover),
            })
            .map_err(|e| EngineError::Start(e.to_string()))?;
            tasks.insert(id.clone(), handle);
        }
        tasks[&id].add_partitions(partitions);
        Ok(())
    }
}

/// Why a destination topic's configs could not be read.
enum DescribeError {
    /// The node may not describe the topic: asking again will not help.
    NotAuthorized(String),
    Other(String),
}

fn cluster<'a>(
    clusters: &'a BTreeMap<String, ClusterConfig>,
    name: &str,
) -> Result<&'a ClusterConfig, EngineError> {
    clusters
        .get(name)
        .ok_or_else(|| EngineError::Config(format!("unknown cluster `{name}`")))
}
