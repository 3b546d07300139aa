//! The node configuration file (`aqueduct.toml`) and its validation.
//!
//! Layers, later wins: built-in defaults, the TOML file, then environment variables prefixed `AQUEDUCT__`
//! with `__` between nested keys (`AQUEDUCT__NODE__MAX_IN_FLIGHT_BYTES=1048576`). Unknown keys are errors.
//! Every validation error names the key it is about.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::client_properties::{self, ClientRole};
use crate::naming::TopicNaming;
use crate::tenancy::{Policies, TenantPolicy};
use crate::ConfigError;

/// The whole node configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Settings of this node.
    #[serde(default)]
    pub node: NodeSettings,
    /// Cluster membership and task assignment; without `zookeeper` the node runs standalone.
    #[serde(default)]
    pub cluster: ClusterSettings,
    /// The REST API of this node.
    #[serde(default)]
    pub api: ApiSettings,
    /// Kafka clusters by name; datastreams refer to them by name so credentials stay in this file.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Datastreams this node runs (single-node mode).
    #[serde(default)]
    pub datastreams: Vec<DatastreamConfig>,
    /// What each tenant's streams may read and write, by tenant name (the same on every node).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<String, TenantPolicy>,
}

/// Settings of one node.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// Cap on bytes handed to producers and not yet acknowledged, over all tasks of the node. When it is
    /// reached, consumption pauses until acknowledgements free room (backpressure).
    pub max_in_flight_bytes: u64,
    /// Producers kept per destination cluster and shared by the tasks writing there.
    pub producers_per_destination: usize,
    /// Bytes each task's consumer may prefetch (librdkafka `queued.max.messages.kbytes`, in bytes).
    pub consumer_prefetch_bytes: u64,
    /// How often acknowledged offsets are committed to the source cluster, in milliseconds.
    pub commit_interval_ms: u64,
    /// How often the node logs a status line per datastream, in seconds (0 turns it off).
    pub status_interval_secs: u64,
    /// Where the node writes its status snapshot (JSON) after every status interval; none by default.
    pub status_file: Option<String>,
    /// Per-partition metrics carry topic and partition labels; off folds them into one series per
    /// datastream (for clusters with tens of thousands of partitions).
    pub metrics_partition_labels: bool,
    /// Log format: `text` (human-readable) or `json` (one object per line).
    pub log_format: LogFormat,
}

/// How the node writes its log.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            max_in_flight_bytes: 64 * 1024 * 1024,
            producers_per_destination: 2,
            consumer_prefetch_bytes: 16 * 1024 * 1024,
            commit_interval_ms: 1000,
            status_interval_secs: 30,
            status_file: None,
            metrics_partition_labels: true,
            log_format: LogFormat::Text,
        }
    }
}

/// The REST API.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Address to serve the API on (`host:port`); unset: no API.
    pub listen: Option<String>,
    /// Requests with larger bodies are refused (413).
    pub max_body_bytes: usize,
    /// File the audit log (one JSON line per mutating call) is appended to; unset: the log target `audit`.
    pub audit_log: Option<String>,
    /// Bearer tokens, by their SHA-256. None: the API is open (a warning is logged at start).
    pub tokens: Vec<TokenConfig>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: None,
            max_body_bytes: 64 * 1024,
            audit_log: None,
            tokens: Vec::new(),
        }
    }
}

/// One accepted bearer token.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// SHA-256 of the token, 64 hex digits (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
    /// The tenant the token acts for: it sees and changes only the datastreams it owns.
    pub tenant: Option<String>,
    /// An admin token sees and changes every datastream.
    #[serde(default)]
    pub admin: bool,
}

/// How the node joins an Aqueduct cluster.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Name of the Aqueduct cluster; its state lives under `/aqueduct/<name>` in ZooKeeper.
    pub name: String,
    /// ZooKeeper connect string (`host:port[,host:port...]`). Without it the node runs standalone: it
    /// runs every datastream of its config file itself, with the same assignment code and caps.
    pub zookeeper: Option<String>,
    /// This node's name in the cluster; unique. Defaults to the host name.
    pub instance: Option<String>,
    /// ZooKeeper session timeout, in milliseconds. A node that loses its session for this long stops its
    /// tasks; the others take them over.
    pub session_timeout_ms: u64,
    /// No node runs more tasks than this; tasks beyond the cluster's capacity stay unassigned and visible.
    pub max_tasks_per_instance: u32,
    /// Tasks move between nodes only while (most loaded) - (least loaded) exceeds this many tasks.
    pub imbalance_threshold: u32,
    /// The leader waits this long after a change (node, datastream, partitions) before it rebalances, so a
    /// burst of changes causes one rebalance. In milliseconds.
    pub rebalance_delay_ms: u64,
    /// How often the leader counts the source partitions of every datastream (tasks per stream follow
    /// the partition count), in seconds.
    pub partition_refresh_interval_secs: u64,
    /// Standalone mode writes its assignment and task states here (none by default).
    pub data_dir: Option<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            name: "aqueduct".to_string(),
            zookeeper: None,
            instance: None,
            session_timeout_ms: 10_000,
            max_tasks_per_instance: 64,
            imbalance_threshold: 1,
            rebalance_delay_ms: 500,
            partition_refresh_interval_secs: 30,
            data_dir: None,
        }
    }
}

impl ClusterSettings {
    /// The instance name: the configured one, else the host name.
    pub fn instance_name(&self) -> String {
        self.instance.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "aqueduct".to_string())
        })
    }
}

/// A Kafka cluster known to the node.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// librdkafka properties for every client of this cluster (security settings go here).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Where a datastream starts reading a partition that has no committed offset.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StartPosition {
    #[default]
    Earliest,
    Latest,
}

/// What a datastream does when its committed offset is outside the source partition's log.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OutOfRangePolicy {
    /// Stop the partition in a visible error state (default: nothing is skipped silently).
    #[default]
    Fail,
    /// Restart the partition at the earliest offset still in the log.
    ResetEarliest,
    /// Restart the partition at the end of the log.
    ResetLatest,
}

/// What a datastream does when a source topic it mirrors was deleted and created again (a new topic id).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RecreatedTopicPolicy {
    /// Stop the topic's partitions in a visible error state: the old offsets mean nothing in the new log.
    #[default]
    Fail,
    /// Mirror the new topic from its earliest offset.
    RestartEarliest,
}

/// How destination partitions are chosen.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Partitioning {
    /// The source partition number when the destination has it, else the key hash.
    #[default]
    Identity,
    /// The Java client's key hash (murmur2), random for null keys.
    KeyHash,
}

/// One source of a datastream: a cluster and the topics to read from it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Name of a cluster in `[clusters]`.
    pub cluster: String,
    /// Topics by name.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Topics whose full name matches this regex (anchored).
    pub topic_pattern: Option<String>,
    /// Topics whose full name matches this regex are left out (anchored).
    pub exclude_pattern: Option<String>,
}

/// A datastream: topics of one or more source clusters copied to one destination cluster.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatastreamConfig {
    /// Unique name: letters, digits, `.`, `_`, `-`; at most 100 characters.
    pub name: String,
    /// The team that owns the stream.
    pub owner: Option<String>,
    /// Where records come from.
    pub sources: Vec<SourceConfig>,
    /// Name of the destination cluster in `[clusters]`.
    pub destination: String,
    /// Destination topic name; `{topic}` is the source topic, `{source}` the source cluster name.
    #[serde(default = "default_topic_template")]
    pub destination_topic: String,
    /// How destination partitions are chosen.
    #[serde(default)]
    pub partitioning: Partitioning,
    /// Where partitions without a committed offset start.
    #[serde(default)]
    pub start_position: StartPosition,
    /// Explicit start offsets: topic name to partition number to offset. Used when no offset is committed.
    #[serde(default)]
    pub start_offsets: BTreeMap<String, BTreeMap<String, i64>>,
    /// What happens when a committed offset is no longer in the source log.
    #[serde(default)]
    pub on_offset_out_of_range: OutOfRangePolicy,
    /// What happens when a source topic is deleted and created again under the same name.
    #[serde(default)]
    pub on_source_topic_recreated: RecreatedTopicPolicy,
    /// Consumer group under which source offsets are committed; `aqueduct-<name>` by default.
    pub group_id: Option<String>,
    /// Upper bound on the tasks the stream's partitions are split into; the stream has
    /// min(partitions, max_tasks) tasks, at least one. A task reads its partitions with one consumer per
    /// source cluster.
    #[serde(default = "default_max_tasks")]
    pub max_tasks: usize,
    /// At most this many of the stream's tasks on one node (the cluster's cap applies too).
    #[serde(default)]
    pub max_tasks_per_instance: Option<u32>,
    /// Create missing destination topics with the source's partition count and topic configs.
    #[serde(default = "default_true")]
    pub create_topics: bool,
    /// Replication factor of created destination topics; -1 takes the broker default.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// How often source topics and partitions are listed to pick up new ones, in seconds.
    #[serde(default = "default_refresh_secs")]
    pub topic_refresh_interval_secs: u64,
    /// librdkafka consumer properties for this stream (over the source cluster's).
    #[serde(default)]
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka producer properties for this stream's producers (over the destination cluster's).
    /// Streams with producer properties get producers of their own instead of the shared pool.
    #[serde(default)]
    pub producer_properties: BTreeMap<String, String>,
    /// Paused: the stream keeps its committed offsets and runs no task.
    #[serde(default)]
    pub paused: bool,
    /// Source partitions paused by hand, by topic name: `"*"` for every partition or a list of numbers. They
    /// keep their committed offsets and are not read until resumed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub paused_partitions: BTreeMap<String, PartitionSet>,
}

/// Some partitions of a topic, or all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PartitionSet {
    /// `"*"`.
    All(AllPartitions),
    /// `[0, 3]`.
    Some(std::collections::BTreeSet<u32>),
}

/// The string `"*"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllPartitions;

impl Serialize for AllPartitions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("*")
    }
}

impl<'de> Deserialize<'de> for AllPartitions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == "*" {
            Ok(AllPartitions)
        } else {
            Err(serde::de::Error::custom(format!(
                "expected \"*\" or a list of partition numbers, got \"{text}\""
            )))
        }
    }
}

impl PartitionSet {
    pub fn contains(&self, partition: i32) -> bool {
        match self {
            PartitionSet::All(_) => true,
            PartitionSet::Some(set) => u32::try_from(partition).is_ok_and(|p| set.contains(&p)),
        }
    }
}

fn default_topic_template() -> String {
    "{topic}".to_string()
}
fn default_max_tasks() -> usize {
    4
}
fn default_true() -> bool {
    true
}
fn default_replication_factor() -> i32 {
    -1
}
fn default_refresh_secs() -> u64 {
    30
}

impl DatastreamConfig {
    /// Whether `topic`/`partition` was paused by hand.
    pub fn is_partition_paused(&self, topic: &str, partition: i32) -> bool {
        self.paused_partitions
            .get(topic)
            .is_some_and(|set| set.contains(partition))
    }

    /// The consumer group of the stream.
    pub fn group_id(&self) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("aqueduct-{}", self.name))
    }

    /// The explicit start offset of `topic`/`partition`, if one is configured.
    pub fn start_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.start_offsets
            .get(topic)?
            .get(&partition.to_string())
            .copied()
    }
}

/// librdkafka properties (and their aliases) Aqueduct sets itself; overriding them would break its
/// guarantees.
pub const RESERVED_CONSUMER_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "auto.commit.enable",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "topic.auto.offset.reset",
];
/// See [`RESERVED_CONSUMER_PROPERTIES`].
pub const RESERVED_PRODUCER_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "transactional.id",
];

/// The largest in-flight cap: librdkafka's producer queue holds at most 2,097,151 KiB.
pub const MAX_IN_FLIGHT_BYTES: u64 = 2_097_151 * 1024;

impl NodeConfig {
    /// Reads `path` and the `AQUEDUCT__` environment overrides, then validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::invalid(
                "config",
                format!("file {} does not exist", path.display()),
            ));
        }
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("AQUEDUCT__"))
            .collect();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::invalid("config", format!("{}: {e}", path.display())))?;
        Self::from_sources(&text, env)
    }

    /// Builds the configuration from TOML text and `(name, value)` environment overrides.
    pub fn from_sources(
        toml: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: std::collections::HashMap<String, String> = env.into_iter().collect();
        let built = config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("AQUEDUCT")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env)),
            )
            .build()
            .map_err(|e| ConfigError::invalid("config", e.to_string()))?;
        let config: NodeConfig = built
            .try_deserialize()
            .map_err(|e| ConfigError::invalid("config", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-field checks; the error names the offending key.
    fn validate_tenants(&self) -> Result<(), ConfigError> {
        for (tenant, policy) in &self.tenants {
            validate_name(&format!("tenants.{tenant}"), tenant)?;
            for (what, grants) in [("read", &policy.read), ("write", &policy.write)] {
                for (i, grant) in grants.iter().enumerate() {
                    if !self.clusters.contains_key(&grant.cluster) {
                        return Err(ConfigError::invalid(
                            format!("tenants.{tenant}.{what}[{i}].cluster"),
                            format!("unknown cluster `{}`", grant.cluster),
                        ));
                    }
                }
            }
            if policy
                .group_prefix
                .as_deref()
                .is_some_and(|p| p.trim().is_empty())
            {
                return Err(ConfigError::invalid(
                    format!("tenants.{tenant}.group_prefix"),
                    "must not be empty",
                ));
            }
        }
        Policies::new(&self.tenants).map(|_| ())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let node = &self.node;
        if !(1024 * 1024..=MAX_IN_FLIGHT_BYTES).contains(&node.max_in_flight_bytes) {
            return Err(ConfigError::invalid(
                "node.max_in_flight_bytes",
                format!(
                    "must be between 1048576 (1 MiB) and {MAX_IN_FLIGHT_BYTES} (2 GiB - 1 KiB)"
                ),
            ));
        }
        if node.producers_per_destination == 0 || node.producers_per_destination > 64 {
            return Err(ConfigError::invalid(
                "node.producers_per_destination",
                "must be between 1 and 64",
            ));
        }
        if node.consumer_prefetch_bytes < 1024 {
            return Err(ConfigError::invalid(
                "node.consumer_prefetch_bytes",
                "must be at least 1024",
            ));
        }
        if node.commit_interval_ms == 0 {
            return Err(ConfigError::invalid(
                "node.commit_interval_ms",
                "must be greater than 0",
            ));
        }
        self.validate_cluster()?;
        self.validate_api()?;
        self.validate_tenants()?;
        for (name, cluster) in &self.clusters {
            let key = format!("clusters.{name}");
            validate_name(&key, name)?;
            if cluster.bootstrap_servers.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.bootstrap_servers"),
                    "must not be empty",
                ));
            }
            for server in cluster.bootstrap_servers.split(',') {
                let server = server.trim();
                let valid = server
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !valid {
                    return Err(ConfigError::invalid(
                        format!("{key}.bootstrap_servers"),
                        format!("`{server}` is not host:port"),
                    ));
                }
            }
            let reserved = RESERVED_CONSUMER_PROPERTIES
                .iter()
                .chain(RESERVED_PRODUCER_PROPERTIES)
                .find(|name| cluster.properties.contains_key(**name));
            if let Some(name) = reserved {
                let reason = if name.ends_with("servers") || name.ends_with("list") {
                    "set bootstrap_servers instead"
                } else {
                    "is managed by aqueduct and cannot be overridden"
                };
                return Err(ConfigError::invalid(
                    format!("{key}.properties.{name}"),
                    reason,
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, stream) in self.datastreams.iter().enumerate() {
            let key = format!("datastreams[{i}]");
            if !names.insert(stream.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("datastream `{}` is declared twice", stream.name),
                ));
            }
            self.validate_stream(&key, stream)?;
        }
        // The streams of a tenant with a policy stay inside it, from a node file too.
        let policies = Policies::new(&self.tenants)?;
        for (i, stream) in self.datastreams.iter().enumerate() {
            let policy = stream.owner.as_deref().and_then(|o| policies.get(o));
            if let Some(Err(violation)) = policy.map(|p| p.check(stream)) {
                return Err(ConfigError::invalid(
                    format!("datastreams[{i}].{}", violation.field()),
                    violation.to_string(),
                ));
            }
        }
        Ok(())
    }

    fn validate_api(&self) -> Result<(), ConfigError> {
        let api = &self.api;
        if let Some(listen) = &api.listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError::invalid(
                    "api.listen",
                    format!("`{listen}` is not an address such as 127.0.0.1:8080"),
                ));
            }
        }
        if !(1024..=64 * 1024 * 1024).contains(&api.max_body_bytes) {
            return Err(ConfigError::invalid(
                "api.max_body_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, token) in api.tokens.iter().enumerate() {
            let key = format!("api.tokens[{i}]");
            let hash = token.sha256.to_ascii_lowercase();
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ConfigError::invalid(
                    format!("{key}.sha256"),
                    "must be the 64 hex digits of the token's SHA-256",
                ));
            }
            if !seen.insert(hash) {
                return Err(ConfigError::invalid(
                    format!("{key}.sha256"),
                    "the same token is listed twice",
                ));
            }
            match (&token.tenant, token.admin) {
                (Some(tenant), false) => validate_name(&format!("{key}.tenant"), tenant)?,
                (None, true) => {}
                _ => {
                    return Err(ConfigError::invalid(
                        key,
                        "set either tenant = \"<name>\" or admin = true",
                    ))
                }
            }
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        validate_name("cluster.name", &cluster.name)?;
        if let Some(instance) = &cluster.instance {
            validate_name("cluster.instance", instance)?;
        }
        if let Some(zookeeper) = &cluster.zookeeper {
            let valid = !zookeeper.trim().is_empty()
                && zookeeper.split(',').all(|server| {
                    let server = server.split('/').next().unwrap_or_default().trim();
                    server
                        .rsplit_once(':')
                        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                });
            if !valid {
                return Err(ConfigError::invalid(
                    "cluster.zookeeper",
                    format!("`{zookeeper}` is not host:port[,host:port...]"),
                ));
            }
        }
        if !(1000..=600_000).contains(&cluster.session_timeout_ms) {
            return Err(ConfigError::invalid(
                "cluster.session_timeout_ms",
                "must be between 1000 and 600000",
            ));
        }
        if cluster.max_tasks_per_instance == 0 {
            return Err(ConfigError::invalid(
                "cluster.max_tasks_per_instance",
                "must be at least 1",
            ));
        }
        if cluster.imbalance_threshold == 0 {
            return Err(ConfigError::invalid(
                "cluster.imbalance_threshold",
                "must be at least 1",
            ));
        }
        if cluster.rebalance_delay_ms > 60_000 {
            return Err(ConfigError::invalid(
                "cluster.rebalance_delay_ms",
                "must be at most 60000",
            ));
        }
        if cluster.partition_refresh_interval_secs == 0 {
            return Err(ConfigError::invalid(
                "cluster.partition_refresh_interval_secs",
                "must be greater than 0",
            ));
        }
        Ok(())
    }

    /// Validates one datastream against this node's clusters (as a request to add it would be); errors name
    /// the field without a `datastreams[i].` prefix.
    pub fn validate_datastream(&self, stream: &DatastreamConfig) -> Result<(), ConfigError> {
        self.validate_stream("", stream).map_err(|mut error| {
            error.key = error.key.trim_start_matches('.').to_string();
            error
        })
    }

    fn validate_stream(&self, key: &str, stream: &DatastreamConfig) -> Result<(), ConfigError> {
        validate_name(&format!("{key}.name"), &stream.name)?;
        if let Some(owner) = &stream.owner {
            validate_name(&format!("{key}.owner"), owner)?;
        }
        if stream.sources.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.sources"),
                "needs at least one source",
            ));
        }
        if !self.clusters.contains_key(&stream.destination) {
            return Err(ConfigError::invalid(
                format!("{key}.destination"),
                format!("unknown cluster `{}`", stream.destination),
            ));
        }
        let naming = TopicNaming::parse(&stream.destination_topic)
            .map_err(|reason| ConfigError::invalid(format!("{key}.destination_topic"), reason))?;
        for (j, source) in stream.sources.iter().enumerate() {
            let skey = format!("{key}.sources[{j}]");
            if !self.clusters.contains_key(&source.cluster) {
                return Err(ConfigError::invalid(
                    format!("{skey}.cluster"),
                    format!("unknown cluster `{}`", source.cluster),
                ));
            }
            if source.topics.is_empty() && source.topic_pattern.is_none() {
                return Err(ConfigError::invalid(
                    format!("{skey}.topics"),
                    "set topics or topic_pattern",
                ));
            }
            for (t, topic) in source.topics.iter().enumerate() {
                validate_topic_name(&format!("{skey}.topics[{t}]"), topic)?;
            }
            for (field, pattern) in [
                ("topic_pattern", &source.topic_pattern),
                ("exclude_pattern", &source.exclude_pattern),
            ] {
                if let Some(pattern) = pattern {
                    Regex::new(pattern).map_err(|e| {
                        ConfigError::invalid(
                            format!("{skey}.{field}"),
                            format!("invalid regex: {e}"),
                        )
                    })?;
                }
            }
            let same_cluster = source.cluster == stream.destination
                || shares_a_server(
                    &self.clusters[&source.cluster].bootstrap_servers,
                    &self.clusters[&stream.destination].bootstrap_servers,
                );
            if same_cluster && naming.is_identity_for(&source.cluster) {
                return Err(ConfigError::invalid(
                    format!("{key}.destination_topic"),
                    "source and destination are the same cluster: the topic name must change, \
                     or records would be copied into the topic they come from",
                ));
            }
        }
        if stream.max_tasks == 0 || stream.max_tasks > 1024 {
            return Err(ConfigError::invalid(
                format!("{key}.max_tasks"),
                "must be between 1 and 1024",
            ));
        }
        if stream.max_tasks_per_instance == Some(0) {
            return Err(ConfigError::invalid(
                format!("{key}.max_tasks_per_instance"),
                "must be at least 1",
            ));
        }
        if stream.replication_factor == 0 || stream.replication_factor < -1 {
            return Err(ConfigError::invalid(
                format!("{key}.replication_factor"),
                "must be -1 (broker default) or at least 1",
            ));
        }
        if stream.topic_refresh_interval_secs == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.topic_refresh_interval_secs"),
                "must be greater than 0",
            ));
        }
        if let Some(group) = &stream.group_id {
            if group.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.group_id"),
                    "must not be empty",
                ));
            }
        }
        for topic in stream.paused_partitions.keys() {
            validate_topic_name(&format!("{key}.paused_partitions.{topic}"), topic)?;
        }
        for (topic, partitions) in &stream.start_offsets {
            for (partition, offset) in partitions {
                let pkey = format!("{key}.start_offsets.{topic}.{partition}");
                if partition.parse::<u32>().is_err() {
                    return Err(ConfigError::invalid(pkey, "partition must be a number"));
                }
                if *offset < 0 {
                    return Err(ConfigError::invalid(pkey, "offset must not be negative"));
                }
            }
        }
        // Datastream definitions come through the REST API from tenants: only tunables, within bounds.
        // Credentials, files, plugins and security settings belong to the clusters of the node file.
        for (role, properties) in [
            (ClientRole::Consumer, &stream.consumer_properties),
            (ClientRole::Producer, &stream.producer_properties),
        ] {
            for (name, value) in properties {
                if let Err(error) = client_properties::check(role, name, value) {
                    return Err(ConfigError::invalid(
                        format!("{key}.{}", error.key()),
                        error.to_string(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// librdkafka properties that carry secrets.
pub fn is_credential(property: &str) -> bool {
    let property = property.to_ascii_lowercase();
    property.contains("password")
        || property.contains("secret")
        || property.starts_with("sasl.")
        || property == "ssl.key.pem"
        || property == "ssl.keystore.location"
        || property == "ssl.key.location"
        || property == "ssl_key"
}

/// True when two bootstrap lists name a common `host:port` (compared without case and spaces): they are
/// the same cluster.
fn shares_a_server(a: &str, b: &str) -> bool {
    let servers = |list: &str| -> std::collections::BTreeSet<String> {
        list.split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    };
    !servers(a).is_disjoint(&servers(b))
}

/// Names of clusters and datastreams: 1-100 of `[A-Za-z0-9._-]`.
pub fn validate_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(ConfigError::invalid(
            key,
            format!("`{name}` must be 1-100 characters of letters, digits, `.`, `_` and `-`"),
        ));
    }
    // Names become path segments (ZooKeeper nodes, files, URLs), where these two mean something else.
    if name == "." || name == ".." {
        return Err(ConfigError::invalid(
            key,
            format!("`{name}` is not a name: `.` and `..` are refused"),
        ));
    }
    Ok(())
}

/// Kafka topic names: 1-249 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(key: &str, topic: &str) -> Result<(), ConfigError> {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("`{topic}` is not a valid Kafka topic name"),
        ))
    }
}
