//! Sequence-numbered records and the checker that proves nothing was lost.
//!
//! Each record's value starts with `<source partition>:<sequence>|` and is padded to the requested size;
//! the producer writes sequences 0.. to every partition with `acks=all`. The checker reads the destination
//! and reports gaps (loss), duplicates, out-of-order first deliveries and records on the wrong partition.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

/// Builds the value of sequence record `seq` of source partition `partition`, `size` bytes long at least.
pub fn sequence_value(partition: i32, seq: u64, size: usize) -> Vec<u8> {
    let mut value = format!("{partition}:{seq}|").into_bytes();
    if value.len() < size {
        value.resize(size, b'x');
    }
    value
}

/// Parses a value written by [`sequence_value`].
pub fn parse_sequence_value(value: &[u8]) -> Option<(i32, u64)> {
    let end = value.iter().position(|b| *b == b'|')?;
    let text = std::str::from_utf8(&value[..end]).ok()?;
    let (partition, seq) = text.split_once(':')?;
    Some((partition.parse().ok()?, seq.parse().ok()?))
}

/// Delivery reports of a [`SequenceProducer`]: per partition, the lowest sequence that failed.
#[derive(Default)]
pub struct SequenceContext {
    failed: std::sync::Mutex<HashMap<i32, (u64, String)>>,
}

impl rdkafka::ClientContext for SequenceContext {}

impl rdkafka::producer::ProducerContext for SequenceContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, seq: usize) {
        if let Err((error, message)) = result {
            let mut failed = self.failed.lock().expect("failed sequences");
            let entry = failed
                .entry(message.partition())
                .or_insert((seq as u64, error.to_string()));
            if (seq as u64) < entry.0 {
                *entry = (seq as u64, error.to_string());
            }
        }
    }
}

/// Writes sequence records with `acks=all` and an idempotent producer. A record counts as written only
/// once the source acknowledged it: [`SequenceProducer::written_per_partition`] stops at the first record
/// of a partition that failed.
pub struct SequenceProducer {
    producer: ThreadedProducer<SequenceContext>,
    topic: String,
    partitions: i32,
    next: Vec<u64>,
    size: usize,
}

impl SequenceProducer {
    pub fn new(bootstrap: &str, topic: &str, partitions: i32, size: usize) -> Result<Self> {
        Self::with_properties(bootstrap, topic, partitions, size, &[])
    }

    /// Like `new`, with extra producer properties (for example a `batch.size` that fits the topic).
    pub fn with_properties(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        size: usize,
        properties: &[(&str, &str)],
    ) -> Result<Self> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("queue.buffering.max.kbytes", "262144")
            .set("log_level", "3");
        for (key, value) in properties {
            config.set(*key, *value);
        }
        let producer = config
            .create_with_context(SequenceContext::default())
            .context("create sequence producer")?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
            partitions,
            next: vec![0; partitions as usize],
            size,
        })
    }

    /// Like `new`, continuing after `next[p]` records already written to each partition `p`.
    pub fn resume(bootstrap: &str, topic: &str, size: usize, next: Vec<u64>) -> Result<Self> {
        let mut producer = Self::new(bootstrap, topic, next.len() as i32, size)?;
        producer.next = next;
        Ok(producer)
    }

    /// Writes `per_partition` more records to every partition and waits until all are acknowledged; fails
    /// if any record was not.
    pub fn produce(&mut self, per_partition: u64) -> Result<()> {
        for _ in 0..per_partition {
            for partition in 0..self.partitions {
                let seq = self.next[partition as usize];
                let value = sequence_value(partition, seq, self.size);
                let key = format!("k{partition}-{seq}");
                loop {
                    let record =
                        BaseRecord::<_, _, usize>::with_opaque_to(&self.topic, seq as usize)
                            .partition(partition)
                            .key(key.as_bytes())
                            .payload(&value);
                    match self.producer.send(record) {
                        Ok(()) => break,
                        Err((err, _))
                            if err.rdkafka_error_code()
                                == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                        {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err((err, _)) => return Err(err.into()),
                    }
                }
                self.next[partition as usize] += 1;
            }
        }
        self.producer
            .flush(Duration::from_secs(120))
            .context("flush sequence producer")?;
        let failed = self
            .producer
            .context()
            .failed
            .lock()
            .expect("failed sequences");
        if let Some((partition, (seq, error))) = failed.iter().min_by_key(|(p, _)| **p) {
            bail!(
                "{} partition(s) of {} lost records at the source, first in partition {partition} at sequence {seq}: {error}",
                failed.len(),
                self.topic
            );
        }
        Ok(())
    }

    /// Per partition, the records written and acknowledged without a gap: up to the first that failed.
    pub fn written_per_partition(&self) -> Vec<u64> {
        let failed = self
            .producer
            .context()
            .failed
            .lock()
            .expect("failed sequences");
        self.next
            .iter()
            .enumerate()
            .map(|(partition, next)| {
                failed
                    .get(&(partition as i32))
                    .map_or(*next, |(seq, _)| (*seq).min(*next))
            })
            .collect()
    }
}

/// What the checker found on the destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Records the producer wrote (and had acknowledged).
    pub expected: u64,
    /// Distinct sequence records found.
    pub unique: u64,
    /// Records seen more than once (extra copies).
    pub duplicates: u64,
    /// Expected records never seen.
    pub missing: u64,
    /// First deliveries that arrived after a higher sequence of the same source partition.
    pub out_of_order: u64,
    /// Copies (first or not) that skipped ahead in their source partition's log: after a record, a copy
    /// must continue with the next record of the source log or go back (a replay after a crash or a move).
    /// A skip means a record of the partition arrived behind a later one, for example a record of a task's
    /// old owner landing after its new owner started. Counted only by [`check_mirror`].
    pub out_of_order_copies: u64,
    /// Records found on a destination partition other than their source partition.
    pub wrong_partition: u64,
    /// Records that did not parse as sequence records.
    pub foreign: u64,
}

impl CheckReport {
    /// True when nothing was lost and deliveries kept their order.
    pub fn is_lossless(&self) -> bool {
        self.missing == 0 && self.out_of_order == 0 && self.out_of_order_copies == 0
    }
}

/// Reads `topic` on the destination from the beginning until every expected record arrived or `timeout`
/// passed. `expected[p]` is the number of records written to source partition `p`. With
/// `identity_partitions` a record must arrive on its source partition number.
pub fn check_sequences(
    bootstrap: &str,
    topic: &str,
    expected: &[u64],
    identity_partitions: bool,
    timeout: Duration,
) -> Result<CheckReport> {
    check(
        bootstrap,
        topic,
        expected,
        identity_partitions,
        None,
        timeout,
    )
}

/// The order in which sequence records sit in the source log: per partition, each sequence's position.
#[derive(Debug, Clone, Default)]
pub struct SourceLog {
    positions: Vec<HashMap<u64, u64>>,
}

impl SourceLog {
    /// Reads every partition of `topic` from the beginning to its end offset now.
    pub fn read(bootstrap: &str, topic: &str) -> Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "aqueduct-source-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("log_level", "3")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len()) as i32;
        let mut positions = vec![HashMap::new(); partitions as usize];
        for partition in 0..partitions {
            let (low, high) =
                consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
            if high <= low {
                continue;
            }
            let mut assignment = TopicPartitionList::new();
            assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
            consumer.assign(&assignment)?;
            let deadline = Instant::now() + Duration::from_secs(120);
            let map = &mut positions[partition as usize];
            let mut next_position = 0u64;
            loop {
                if Instant::now() > deadline {
                    bail!("reading {topic}-{partition} of the source took too long");
                }
                let at_end = |consumer: &BaseConsumer| {
                    consumer.position().ok().is_some_and(|p| {
                        matches!(
                            p.find_partition(topic, partition).map(|e| e.offset()),
                            Some(Offset::Offset(o)) if o >= high
                        )
                    })
                };
                let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                    // A log that ends in a transaction marker has no record at its last offset.
                    if at_end(&consumer) {
                        break;
                    }
                    continue;
                };
                let message = message?;
                if let Some((_, seq)) = message.payload().and_then(parse_sequence_value) {
                    map.insert(seq, next_position);
                    next_position += 1;
                }
                if message.offset() + 1 >= high {
                    break;
                }
            }
        }
        Ok(Self { positions })
    }

    fn position(&self, partition: i32, seq: u64) -> Option<u64> {
        self.positions.get(partition as usize)?.get(&seq).copied()
    }
}

/// Like [`check_sequences`] with identity partitioning, and checks the order of every copy against the
/// source log (see [`CheckReport::out_of_order_copies`]).
pub fn check_mirror(
    bootstrap: &str,
    topic: &str,
    expected: &[u64],
    source: &SourceLog,
    timeout: Duration,
) -> Result<CheckReport> {
    check(bootstrap, topic, expected, true, Some(source), timeout)
}

fn check(
    bootstrap: &str,
    topic: &str,
    expected: &[u64],
    identity_partitions: bool,
    source: Option<&SourceLog>,
    timeout: Duration,
) -> Result<CheckReport> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "aqueduct-sequence-checker")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("log_level", "3")
        .create()?;
    let deadline = Instant::now() + timeout;
    let partitions = loop {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
        let count = metadata
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if count > 0 {
            break count as i32;
        }
        if Instant::now() > deadline {
            bail!("destination topic {topic} does not exist");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;

    let total_expected: u64 = expected.iter().sum();
    let mut seen: Vec<Vec<u64>> = expected
        .iter()
        .map(|n| vec![0u64; (*n as usize).div_ceil(64)])
        .collect();
    let mut highest_first: HashMap<i32, u64> = HashMap::new();
    // Per destination partition: the source position of the last copy seen.
    let mut last_position: HashMap<i32, i64> = HashMap::new();
    let mut follow_copy =
        |partition: i32, source_partition: i32, seq: u64, report: &mut CheckReport| {
            let Some(position) = source.and_then(|s| s.position(source_partition, seq)) else {
                return;
            };
            let last = last_position.entry(partition).or_insert(-1);
            if position as i64 > *last + 1 {
                report.out_of_order_copies += 1;
            }
            *last = position as i64;
        };
    let mut report = CheckReport {
        expected: total_expected,
        ..CheckReport::default()
    };
    while report.unique < total_expected && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        let Some((source_partition, seq)) = message.payload().and_then(parse_sequence_value) else {
            report.foreign += 1;
            continue;
        };
        if identity_partitions && message.partition() != source_partition {
            report.wrong_partition += 1;
        }
        follow_copy(message.partition(), source_partition, seq, &mut report);
        let Some(bits) = seen.get_mut(source_partition as usize) else {
            report.foreign += 1;
            continue;
        };
        if seq >= expected[source_partition as usize] {
            report.foreign += 1;
            continue;
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if bits[word] & (1 << bit) != 0 {
            report.duplicates += 1;
            continue;
        }
        bits[word] |= 1 << bit;
        report.unique += 1;
        let highest = highest_first.entry(source_partition).or_insert(0);
        if seq < *highest {
            report.out_of_order += 1;
        }
        *highest = (*highest).max(seq);
    }
    // Drain what is already there, so duplicates delivered after the last new record are counted too.
    let quiet_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet_until {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            if let Some((p, seq)) = message.payload().and_then(parse_sequence_value) {
                follow_copy(message.partition(), p, seq, &mut report);
                if let Some(bits) = seen.get(p as usize) {
                    let (word, bit) = ((seq / 64) as usize, seq % 64);
                    if bits.get(word).is_some_and(|w| w & (1 << bit) != 0) {
                        report.duplicates += 1;
                    }
                }
            }
        }
    }
    report.missing = total_expected - report.unique;
    Ok(report)
}

/// Sequence producers writing into topics at a steady pace until stopped, one thread per topic.
pub struct SequenceLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<u64>>>,
}

impl SequenceLoad {
    /// Writes `per_round` records to every partition of each topic, then pauses `pause`, until stopped.
    pub fn start(
        bootstrap: &str,
        topics: &[String],
        partitions: i32,
        per_round: u64,
        pause: Duration,
    ) -> Self {
        let next = vec![vec![0; partitions as usize]; topics.len()];
        Self::resume(bootstrap, topics, next, per_round, pause)
    }

    /// Like `start`, continuing after `next[t][p]` records already written to partition `p` of topic `t`.
    pub fn resume(
        bootstrap: &str,
        topics: &[String],
        next: Vec<Vec<u64>>,
        per_round: u64,
        pause: Duration,
    ) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = topics
            .iter()
            .zip(next)
            .map(|(topic, next)| {
                let (flag, bootstrap, topic) = (
                    std::sync::Arc::clone(&stop),
                    bootstrap.to_string(),
                    topic.clone(),
                );
                std::thread::spawn(move || {
                    let mut producer = SequenceProducer::resume(&bootstrap, &topic, 100, next)
                        .expect("sequence producer");
                    while !flag.load(Ordering::Acquire) {
                        // A broker restart can fail a round after its retries: the round is written again,
                        // and the checker counts only acknowledged sequences.
                        if producer.produce(per_round).is_err() {
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        std::thread::sleep(pause);
                    }
                    producer.written_per_partition()
                })
            })
            .collect();
        Self { stop, threads }
    }

    /// Stops writing; returns, per topic, the records written to each partition.
    pub fn stop(mut self) -> Vec<Vec<u64>> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        std::mem::take(&mut self.threads)
            .into_iter()
            .map(|t| t.join().expect("load thread"))
            .collect()
    }
}

impl Drop for SequenceLoad {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// End-to-end latency, measured live: a consumer on the destination topics notes, for the first copy of
/// every sequence record, the time from the record's (source) timestamp to its arrival.
pub struct LiveLatency {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<f64>>>,
}

impl LiveLatency {
    /// Starts measuring; returns once the consumer has its partitions, so that the latency of records
    /// written from then on does not include the consumer's own start-up.
    pub fn start(bootstrap: &str, topics: &[String]) -> Result<Self> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set(
                "group.id",
                format!("aqueduct-live-latency-{:x}", rand::random::<u32>()),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "20")
            .set("topic.metadata.refresh.interval.ms", "1000")
            .set("log_level", "3")
            .create()?;
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&refs)?;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let ready = std::sync::Arc::new(AtomicBool::new(false));
        let (flag, assigned) = (std::sync::Arc::clone(&stop), std::sync::Arc::clone(&ready));
        let thread = std::thread::spawn(move || {
            // First copies only: one bit per (topic, source partition, sequence).
            let mut seen: HashMap<(String, i32), Vec<u64>> = HashMap::new();
            let mut latencies = Vec::new();
            while !flag.load(Ordering::Acquire) {
                let polled = consumer.poll(Duration::from_millis(100));
                if !assigned.load(Ordering::Relaxed)
                    && consumer.assignment().is_ok_and(|a| a.count() > 0)
                {
                    assigned.store(true, Ordering::Release);
                }
                let Some(Ok(message)) = polled else {
                    continue;
                };
                let Some((partition, seq)) = message.payload().and_then(parse_sequence_value)
                else {
                    continue;
                };
                let bits = seen
                    .entry((message.topic().to_string(), partition))
                    .or_default();
                let (word, bit) = ((seq / 64) as usize, seq % 64);
                if bits.len() <= word {
                    bits.resize(word + 1, 0);
                }
                if bits[word] & (1 << bit) != 0 {
                    continue;
                }
                bits[word] |= 1 << bit;
                if let Some(timestamp) = message.timestamp().to_millis() {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    latencies.push((now - timestamp).max(0) as f64 / 1000.0);
                }
            }
            latencies
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.load(Ordering::Acquire) {
            if Instant::now() > deadline {
                stop.store(true, Ordering::Release);
                bail!("the latency consumer got no partitions of {topics:?} in 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops measuring; returns (p50, p99) in seconds (0 without samples).
    pub fn stop(mut self) -> (f64, f64) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let mut latencies = self
            .thread
            .take()
            .expect("thread")
            .join()
            .expect("latency thread");
        if latencies.is_empty() {
            return (0.0, 0.0);
        }
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        (at(0.5), at(0.99))
    }
}

impl Drop for LiveLatency {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
    }
}
