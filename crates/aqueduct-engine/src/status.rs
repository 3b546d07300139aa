//! What a node reports about its datastreams: every task, its partitions, their health and offsets.

pub use aqueduct_model::topic_id::DeletedTopic;
use serde::Serialize;

/// Health of one source partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "kebab-case")]
pub enum PartitionHealth {
    /// Records flow.
    Running,
    /// Stopped because the destination rejects a record for good (too large, not authorized...). The record
    /// is not dropped: the partition's committed offset stays below it.
    Paused(String),
    /// Stopped because its committed offset is no longer in the source log (truncated or re-created topic)
    /// and the stream's policy is not to skip.
    Error(String),
}

/// One partition of a task.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    pub destination_topic: String,
    #[serde(flatten)]
    pub health: PartitionHealth,
    /// The offset last committed to the source cluster.
    pub committed_offset: Option<i64>,
    /// Records sent and not yet acknowledged.
    pub in_flight: usize,
    pub records_acked: u64,
    /// Source end offset minus committed offset, from the consumer's statistics (none until reported).
    pub lag: Option<i64>,
}

/// One task: a consumer and the partitions it reads.
#[derive(Debug, Clone, Serialize)]
pub struct TaskStatus {
    pub id: String,
    pub source_cluster: String,
    pub partitions: Vec<PartitionStatus>,
}

/// A cluster a stream cannot reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreachableCluster {
    pub cluster: String,
    /// When the first failed attempt in a row began (milliseconds since the Unix epoch).
    pub since_unix_ms: u64,
    /// The last error.
    pub error: String,
}

/// One datastream on this node.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub paused: bool,
    pub tasks: Vec<TaskStatus>,
    /// Problems of the stream as a whole (for example a destination topic that cannot be created, or a
    /// source cluster that cannot be reached).
    pub errors: Vec<String>,
    /// Source clusters the stream cannot reach now.
    pub unreachable: Vec<UnreachableCluster>,
    /// Source topics the stream mirrored that are gone (deleted and not created again).
    pub deleted_topics: Vec<DeletedTopic>,
}

impl StreamStatus {
    /// All partitions of all tasks.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionStatus> {
        self.tasks.iter().flat_map(|t| t.partitions.iter())
    }

    pub fn records_acked(&self) -> u64 {
        self.partitions().map(|p| p.records_acked).sum()
    }

    /// Why the stream does not copy everything it should, one line each: stopped partitions
    /// (`topic-partition: reason`) and the stream's own errors.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .partitions()
            .filter_map(|p| match &p.health {
                PartitionHealth::Running => None,
                PartitionHealth::Paused(reason) | PartitionHealth::Error(reason) => {
                    Some(format!("{}-{}: {reason}", p.topic, p.partition))
                }
            })
            .collect();
        problems.extend(self.stream_errors());
        problems
    }

    /// Problems of the stream as a whole: its errors and the clusters it cannot reach (with since when).
    pub fn stream_errors(&self) -> Vec<String> {
        let mut errors = self.errors.clone();
        errors.extend(self.unreachable.iter().map(|c| {
            format!(
                "source cluster {} unreachable since {}: {}",
                c.cluster,
                aqueduct_model::time::rfc3339_utc(c.since_unix_ms),
                c.error
            )
        }));
        errors
    }
}

/// The whole node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub streams: Vec<StreamStatus>,
    pub in_flight_bytes: u64,
    pub max_in_flight_bytes: u64,
    /// How many times tasks waited because the in-flight cap was reached.
    pub backpressure_waits: u64,
    /// The producer pools.
    pub pools: Vec<PoolStatus>,
}

/// One producer pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub producers: usize,
    /// Records queued in its producers and not yet acknowledged.
    pub queued_records: i32,
}

impl NodeStatus {
    pub fn stream(&self, name: &str) -> Option<&StreamStatus> {
        self.streams.iter().find(|s| s.name == name)
    }
}
