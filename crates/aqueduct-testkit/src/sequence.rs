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

/// Writes sequence records with `acks=all` and an idempotent producer.
pub struct SequenceProducer {
    producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    topic: String,
    partitions: i32,
    next: Vec<u64>,
    size: usize,
}

impl SequenceProducer {
    pub fn new(bootstrap: &str, topic: &str, partitions: i32, size: usize) -> Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("queue.buffering.max.kbytes", "262144")
            .set("log_level", "3")
            .create()
            .context("create sequence producer")?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
            partitions,
            next: vec![0; partitions as usize],
            size,
        })
    }

    /// Writes `per_partition` more records to every partition and waits until all are acknowledged.
    pub fn produce(&mut self, per_partition: u64) -> Result<()> {
        for _ in 0..per_partition {
            for partition in 0..self.partitions {
                let seq = self.next[partition as usize];
                let value = sequence_value(partition, seq, self.size);
                let key = format!("k{partition}-{seq}");
                loop {
                    let record = BaseRecord::<_, _>::to(&self.topic)
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
        Ok(())
    }

    /// Number of records written per partition so far.
    pub fn written_per_partition(&self) -> &[u64] {
        &self.next
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
    /// Records found on a destination partition other than their source partition.
    pub wrong_partition: u64,
    /// Records that did not parse as sequence records.
    pub foreign: u64,
}

impl CheckReport {
    /// True when nothing was lost and first deliveries kept their order.
    pub fn is_lossless(&self) -> bool {
        self.missing == 0 && self.out_of_order == 0
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
