//! Time to compute an assignment for a large cluster: 2,000 datastreams with 100,000 partitions in all on
//! 200 nodes, from scratch, and after one node leaves or joins.
//! `cargo bench -p aqueduct-benches --bench balancer`

use std::time::{Duration, Instant};

use aqueduct_balancer::{
    moved_tasks, rebalance, task_count, Assignment, BalancerConfig, StreamDemand,
};

const STREAMS: usize = 2_000;
const PARTITIONS: u32 = 100_000;
const NODES: usize = 200;
const MAX_TASKS: u32 = 8;
const RUNS: usize = 7;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(mut f: impl FnMut() -> Assignment) -> (Duration, Assignment) {
    let mut samples = Vec::new();
    let mut last = Assignment::default();
    for _ in 0..RUNS {
        let started = Instant::now();
        last = f();
        samples.push(started.elapsed());
    }
    (median(samples), last)
}

fn main() {
    // Partition counts from 1 to 99, deterministic, adding up to 100,000.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut counts: Vec<u32> = (0..STREAMS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + (x % 99) as u32
        })
        .collect();
    let sum: u32 = counts.iter().sum();
    let mut excess = sum as i64 - PARTITIONS as i64;
    for count in counts.iter_mut() {
        if excess == 0 {
            break;
        }
        let change = excess.clamp(-(99 - *count as i64), *count as i64 - 1);
        *count = (*count as i64 - change) as u32;
        excess -= change;
    }
    assert_eq!(counts.iter().sum::<u32>(), PARTITIONS);
    let streams: Vec<StreamDemand> = counts
        .iter()
        .enumerate()
        .map(|(i, partitions)| StreamDemand {
            name: format!("stream-{i:04}"),
            tasks: task_count(*partitions, MAX_TASKS),
            max_tasks_per_instance: None,
            paused: false,
        })
        .collect();
    let tasks: u32 = streams.iter().map(|s| s.tasks).sum();
    let nodes: Vec<String> = (0..NODES).map(|i| format!("node-{i:03}")).collect();
    let config = BalancerConfig {
        max_tasks_per_instance: tasks.div_ceil(NODES as u32) * 2,
        imbalance_threshold: 1,
    };
    println!(
        "{STREAMS} datastreams, {PARTITIONS} partitions, {tasks} tasks (max_tasks {MAX_TASKS}), {NODES} nodes, \
         cap {} tasks per node; median of {RUNS} runs",
        config.max_tasks_per_instance
    );

    let (scratch, full) = time(|| rebalance(&Assignment::default(), &nodes, &streams, config));
    assert!(full.unassigned.is_empty());
    println!(
        "from scratch:        {scratch:>10.2?}  spread {}",
        full.spread()
    );

    let fewer: Vec<String> = nodes[1..].to_vec();
    let (leave, after_leave) = time(|| rebalance(&full, &fewer, &streams, config));
    println!(
        "one node leaves:     {leave:>10.2?}  moved {} tasks (the leaver had {}), spread {}",
        moved_tasks(&full, &after_leave),
        full.nodes[&nodes[0]].len(),
        after_leave.spread()
    );

    let mut more = nodes.clone();
    more.push("node-new".to_string());
    let (join, after_join) = time(|| rebalance(&full, &more, &streams, config));
    println!(
        "one node joins:      {join:>10.2?}  moved {} tasks, spread {}",
        moved_tasks(&full, &after_join),
        after_join.spread()
    );
}
