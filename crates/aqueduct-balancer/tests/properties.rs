//! Property tests of the balancer over random clusters and histories: nodes joining and leaving, streams
//! added, removed, resized, paused and resumed.

use std::collections::BTreeSet;

use aqueduct_balancer::{
    moved_tasks, rebalance, Assignment, BalancerConfig, NodeId, StreamDemand, TaskId,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Event {
    Join,
    Leave(usize),
    AddStream { tasks: u32, cap: Option<u32> },
    RemoveStream(usize),
    Resize(usize, u32),
    TogglePause(usize),
}

fn event(stream_caps: bool) -> impl Strategy<Value = Event> {
    let cap = if stream_caps {
        proptest::option::of(1u32..4).boxed()
    } else {
        Just(None).boxed()
    };
    prop_oneof![
        3 => Just(Event::Join),
        2 => (0usize..64).prop_map(Event::Leave),
        4 => (1u32..12, cap).prop_map(|(tasks, cap)| Event::AddStream { tasks, cap }),
        1 => (0usize..64).prop_map(Event::RemoveStream),
        2 => (0usize..64, 1u32..12).prop_map(|(s, t)| Event::Resize(s, t)),
        1 => (0usize..64).prop_map(Event::TogglePause),
    ]
}

struct Cluster {
    nodes: Vec<NodeId>,
    streams: Vec<StreamDemand>,
    next_node: usize,
    next_stream: usize,
}

impl Cluster {
    /// Applies `event`; returns the node that joined or left, if any.
    fn apply(&mut self, event: &Event) -> Option<(bool, NodeId)> {
        match event {
            Event::Join => {
                let node = format!("node-{:03}", self.next_node);
                self.next_node += 1;
                self.nodes.push(node.clone());
                Some((true, node))
            }
            Event::Leave(i) if !self.nodes.is_empty() => {
                let node = self.nodes.remove(i % self.nodes.len());
                Some((false, node))
            }
            Event::AddStream { tasks, cap } => {
                self.streams.push(StreamDemand {
                    name: format!("stream-{:03}", self.next_stream),
                    tasks: *tasks,
                    max_tasks_per_instance: *cap,
                    paused: false,
                });
                self.next_stream += 1;
                None
            }
            Event::RemoveStream(i) if !self.streams.is_empty() => {
                let len = self.streams.len();
                self.streams.remove(i % len);
                None
            }
            Event::Resize(i, tasks) if !self.streams.is_empty() => {
                let len = self.streams.len();
                self.streams[i % len].tasks = *tasks;
                None
            }
            Event::TogglePause(i) if !self.streams.is_empty() => {
                let len = self.streams.len();
                let stream = &mut self.streams[i % len];
                stream.paused = !stream.paused;
                None
            }
            _ => None,
        }
    }

    fn wanted(&self) -> BTreeSet<TaskId> {
        self.streams
            .iter()
            .filter(|s| !s.paused)
            .flat_map(|s| (0..s.tasks).map(|i| TaskId::new(&s.name, i)))
            .collect()
    }

    fn stream_cap(&self, name: &str) -> u32 {
        self.streams
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.max_tasks_per_instance)
            .unwrap_or(u32::MAX)
    }
}

fn check_invariants(
    cluster: &Cluster,
    config: BalancerConfig,
    after: &Assignment,
) -> Result<(), TestCaseError> {
    // Every wanted task is on exactly one node or unassigned; nothing else is anywhere.
    let mut seen = BTreeSet::new();
    for tasks in after.nodes.values() {
        for task in tasks {
            prop_assert!(seen.insert(task.clone()), "{task:?} on two nodes");
        }
    }
    for task in &after.unassigned {
        prop_assert!(
            seen.insert(task.clone()),
            "{task:?} both placed and unassigned"
        );
    }
    prop_assert_eq!(&seen, &cluster.wanted());
    prop_assert_eq!(
        after.nodes.keys().cloned().collect::<BTreeSet<_>>(),
        cluster.nodes.iter().cloned().collect::<BTreeSet<_>>()
    );
    // Caps.
    for (node, tasks) in &after.nodes {
        prop_assert!(
            tasks.len() as u32 <= config.max_tasks_per_instance,
            "{node} holds {} > cap",
            tasks.len()
        );
        for stream in &cluster.streams {
            let count = tasks.iter().filter(|t| t.stream == stream.name).count() as u32;
            prop_assert!(count <= cluster.stream_cap(&stream.name));
        }
    }
    // A task is unassigned only when no node can take it.
    for task in &after.unassigned {
        let cap = cluster.stream_cap(&task.stream);
        for (node, tasks) in &after.nodes {
            let of_stream = tasks.iter().filter(|t| t.stream == task.stream).count() as u32;
            prop_assert!(
                tasks.len() as u32 >= config.max_tasks_per_instance || of_stream >= cap,
                "{task:?} unassigned although {node} has room"
            );
        }
    }
    Ok(())
}

fn run_history(
    events: Vec<Event>,
    cap: u32,
    threshold: u32,
    stream_caps: bool,
) -> Result<(), TestCaseError> {
    let config = BalancerConfig {
        max_tasks_per_instance: cap,
        imbalance_threshold: threshold,
    };
    let mut cluster = Cluster {
        nodes: Vec::new(),
        streams: Vec::new(),
        next_node: 0,
        next_stream: 0,
    };
    let mut assignment = Assignment::default();
    for event in &events {
        let change = cluster.apply(event);
        let after = rebalance(&assignment, &cluster.nodes, &cluster.streams, config);
        check_invariants(&cluster, config, &after)?;
        if !stream_caps {
            // All tasks placed whenever the caps allow it.
            let capacity = cap as usize * cluster.nodes.len();
            prop_assert_eq!(
                after.unassigned.len(),
                cluster.wanted().len().saturating_sub(capacity)
            );
            // Spread within the threshold.
            prop_assert!(
                after.spread() <= threshold as usize,
                "spread {} > {threshold}",
                after.spread()
            );
            match &change {
                // A node leaving moves only its own tasks.
                Some((false, gone)) => {
                    for (node, tasks) in &assignment.nodes {
                        if node == gone {
                            continue;
                        }
                        for task in tasks {
                            if cluster.wanted().contains(task) {
                                prop_assert_eq!(
                                    after.node_of(task),
                                    Some(node),
                                    "{:?} moved",
                                    task
                                );
                            }
                        }
                    }
                }
                // A node joining receives every task that moves, and only as many as the threshold needs.
                Some((true, joined)) => {
                    let moved = moved_tasks(&assignment, &after);
                    for (node, tasks) in &assignment.nodes {
                        for task in tasks {
                            let now = after.node_of(task);
                            prop_assert!(
                                now == Some(node) || now == Some(joined),
                                "{:?} moved",
                                task
                            );
                        }
                    }
                    let previously_unassigned = assignment.unassigned.len();
                    if previously_unassigned == 0 {
                        prop_assert_eq!(moved, reference_join_moves(&assignment, threshold));
                    }
                }
                None => {}
            }
        }
        assignment = after;
    }
    Ok(())
}

/// The fewest moves that bring a cluster with one new empty node within the threshold: repeatedly take one
/// task from the most loaded old node until the spread is small enough.
fn reference_join_moves(before: &Assignment, threshold: u32) -> usize {
    let mut loads: Vec<usize> = before.nodes.values().map(BTreeSet::len).collect();
    let mut new = 0usize;
    let mut moves = 0;
    loop {
        let max = loads.iter().copied().max().unwrap_or(0).max(new);
        let min = loads.iter().copied().min().unwrap_or(new).min(new);
        if max - min <= threshold as usize {
            return moves;
        }
        let donor = loads
            .iter()
            .enumerate()
            .max_by_key(|(_, l)| **l)
            .map(|(i, _)| i)
            .expect("an old node");
        loads[donor] -= 1;
        new += 1;
        moves += 1;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn histories_without_stream_caps(
        events in proptest::collection::vec(event(false), 1..60),
        cap in 1u32..25,
        threshold in 1u32..4,
    ) {
        run_history(events, cap, threshold, false)?;
    }

    #[test]
    fn histories_with_stream_caps(
        events in proptest::collection::vec(event(true), 1..60),
        cap in 1u32..25,
        threshold in 1u32..4,
    ) {
        run_history(events, cap, threshold, true)?;
    }
}
