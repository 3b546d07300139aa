//! Where a source partition goes: which task of its datastream reads it, and which destination partition
//! its records are written to.

use serde::{Deserialize, Serialize};

use crate::config::Partitioning;

/// One task of a datastream in a cluster: task `index` of `count`. It reads the partitions for which
/// [`task_for_partition`] with `count` tasks gives `index`, from every source cluster of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskSlice {
    pub index: u32,
    pub count: u32,
}

impl TaskSlice {
    /// Whether this task reads `topic`/`partition`.
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        task_for_partition(topic, partition, self.count as usize) == self.index as usize
    }
}

/// The task (0..`tasks`) that reads `topic`/`partition`. Stable: adding partitions or topics never moves an
/// existing partition to another task, and the partitions of one topic spread evenly over the tasks.
pub fn task_for_partition(topic: &str, partition: i32, tasks: usize) -> usize {
    debug_assert!(tasks > 0);
    // FNV-1a of the topic name, so topics start at different tasks.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    ((hash % tasks as u64) as usize + partition as usize) % tasks
}

/// The destination partition for a record of `source_partition`, or `None` to let the producer's key hash
/// (murmur2, as the Java client) choose.
pub fn destination_partition(
    partitioning: Partitioning,
    source_partition: i32,
    destination_partitions: i32,
) -> Option<i32> {
    match partitioning {
        Partitioning::Identity if source_partition < destination_partitions => {
            Some(source_partition)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_of_a_topic_spread_evenly() {
        let mut counts = [0usize; 4];
        for p in 0..16 {
            counts[task_for_partition("orders", p, 4)] += 1;
        }
        assert_eq!(counts, [4, 4, 4, 4]);
    }

    #[test]
    fn placement_is_pinned_and_stable_when_partitions_are_added() {
        // Pinned: nodes of different versions in one cluster must agree on every placement. The topic's
        // FNV-1a hash picks the first task (for "t": 2 of 3), then partitions go round the tasks.
        let first_eight: Vec<usize> = (0..8).map(|p| task_for_partition("t", p, 3)).collect();
        assert_eq!(first_eight, vec![2, 0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(task_for_partition("orders", 0, 3), 1);
        assert_eq!(task_for_partition("metrics.cpu", 0, 4), 2);
        // A partition's task depends on its own number only: a topic grown from 8 to 100 partitions keeps
        // the first eight where they were, and each new one takes the next task round.
        for p in 8..100 {
            let previous = task_for_partition("t", p - 1, 3);
            assert_eq!(
                task_for_partition("t", p, 3),
                (previous + 1) % 3,
                "partition {p}"
            );
        }
    }

    #[test]
    fn the_slices_of_a_stream_share_out_every_partition_once() {
        let slices: Vec<TaskSlice> = (0..3).map(|index| TaskSlice { index, count: 3 }).collect();
        for topic in ["a", "orders", "metrics.cpu"] {
            for p in 0..50 {
                assert_eq!(slices.iter().filter(|s| s.owns(topic, p)).count(), 1);
            }
        }
    }

    #[test]
    fn identity_falls_back_to_key_hash_when_the_destination_is_smaller() {
        assert_eq!(destination_partition(Partitioning::Identity, 2, 8), Some(2));
        assert_eq!(destination_partition(Partitioning::Identity, 8, 8), None);
        assert_eq!(destination_partition(Partitioning::KeyHash, 2, 8), None);
    }
}
