//! Throughput of Aqueduct against a `kcat` consume-to-produce pipe and the ceiling of the setup.
//!
//! One run, one source and one destination Kafka broker on this machine. For 100-byte and 1 KiB records a
//! source topic (8 partitions) is preloaded, then copied by:
//! - **ceiling**: a bare librdkafka consumer draining the source while a bare librdkafka producer writes the
//!   same volume to the destination, both flat out and uncoupled, in this process;
//! - **kcat**: `kcat -C ... | kcat -P ...`;
//! - **aqueduct**: the release `aqueduct` binary with a datastream from its config file.
//!
//! Each prints records/s, MB/s (key + value bytes) and CPU seconds per GB, and the ratios between them.
//! `cargo bench -p aqueduct-benches --bench throughput`; `AQUEDUCT_BENCH_SCALE=0.1` for a quick run.
//! The table is also written to `target/bench-throughput.md`.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aqueduct_testkit::{create_topic, random_name, total_records, KafkaCluster, KafkaOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 8;

struct Measurement {
    name: &'static str,
    records: u64,
    bytes: u64,
    seconds: f64,
    cpu_seconds: f64,
    /// Peak resident memory of the pipeline's process (VmHWM), when it is one process.
    peak_rss: Option<u64>,
    /// From the first record at the destination to the last, without the process's start-up: (seconds,
    /// CPU seconds), for the processes the bench starts.
    steady: Option<(f64, f64)>,
}

impl Measurement {
    fn records_per_second(&self) -> f64 {
        self.records as f64 / self.seconds
    }
    fn mb_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }
    fn cpu_per_gb(&self) -> f64 {
        self.cpu_seconds / (self.bytes as f64 / 1e9)
    }
}

fn main() -> Result<()> {
    let scale: f64 = std::env::var("AQUEDUCT_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let count = |var: &str, default: u64| -> u64 {
        std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(((default as f64) * scale) as u64)
            .max(1000)
    };
    let cases = [
        (100usize, count("AQUEDUCT_BENCH_RECORDS_100", 5_000_000)),
        (1024usize, count("AQUEDUCT_BENCH_RECORDS_1K", 1_500_000)),
    ];
    let binary = aqueduct_testkit::aqueduct_binary()?;
    let machine = machine_description();
    println!("{machine}");

    let options = KafkaOptions {
        heap: Some("1g".into()),
        ..KafkaOptions::default()
    };
    let source_options = options.clone();
    let source = std::thread::spawn(move || KafkaCluster::start_with("source", source_options));
    let destination = KafkaCluster::start_with("destination", options)?;
    let source = source.join().expect("source thread")?;

    let mut report = format!(
        "{machine}\n\nApache Kafka {} (KRaft, one broker per cluster, local processes), {PARTITIONS} partitions, \
         acks=all and idempotence on every producer.\n",
        aqueduct_testkit::kafka::KAFKA_VERSION.trim()
    );
    // Warm the brokers up (JIT, page cache, log segments) so the first measurement is not penalised.
    {
        let topic = random_name("warmup");
        create_topic(&source.bootstrap(), &topic, PARTITIONS, &[])?;
        preload(&source.bootstrap(), &topic, cases[0].1 / 4, 100)?;
        measure_ceiling(
            &source.bootstrap(),
            &destination.bootstrap(),
            &topic,
            cases[0].1 / 4,
            100,
        )?;
    }
    for (size, records) in cases {
        let topic = random_name(&format!("bench-{size}"));
        create_topic(&source.bootstrap(), &topic, PARTITIONS, &[])?;
        let bytes = preload(&source.bootstrap(), &topic, records, size)?;
        println!(
            "\n== {size}-byte values: {records} records, {:.1} MB",
            bytes as f64 / 1e6
        );

        let ceiling = measure_ceiling(
            &source.bootstrap(),
            &destination.bootstrap(),
            &topic,
            records,
            size,
        )?;
        print_row(&ceiling);
        let kcat = measure_kcat(
            &source.bootstrap(),
            &destination.bootstrap(),
            &topic,
            records,
            bytes,
        )?;
        print_row(&kcat);
        let aqueduct = measure_aqueduct(
            &binary,
            &source.bootstrap(),
            &destination.bootstrap(),
            &topic,
            records,
            bytes,
        )?;
        print_row(&aqueduct);
        let mm2 = if std::env::var("AQUEDUCT_BENCH_MM2").as_deref() == Ok("0") {
            None
        } else {
            let mm2 = measure_mm2(
                &source.bootstrap(),
                &destination.bootstrap(),
                &topic,
                records,
                bytes,
            )?;
            print_row(&mm2);
            Some(mm2)
        };

        let mut ratios = format!(
            "aqueduct / kcat: {:.2}x throughput, {:.2}x CPU per GB; aqueduct / ceiling: {:.2} of throughput, {:.2}x CPU per GB",
            aqueduct.records_per_second() / kcat.records_per_second(),
            aqueduct.cpu_per_gb() / kcat.cpu_per_gb(),
            aqueduct.records_per_second() / ceiling.records_per_second(),
            aqueduct.cpu_per_gb() / ceiling.cpu_per_gb(),
        );
        if let Some(mm2) = &mm2 {
            let mb_per_cpu = |m: &Measurement| m.bytes as f64 / 1e6 / m.cpu_seconds;
            let steady = |m: &Measurement| {
                m.steady
                    .map(|(s, c)| (m.bytes as f64 / 1e6 / c, m.bytes as f64 / 1e6 / s))
            };
            if let (Some((a_cpu, a_rate)), Some((m_cpu, m_rate))) = (steady(&aqueduct), steady(mm2))
            {
                write!(
                    ratios,
                    "\nsteady state (first record at the destination to the last): aqueduct {a_rate:.1} MB/s, {a_cpu:.1} MB per CPU-second; \
                     MirrorMaker 2 {m_rate:.1} MB/s, {m_cpu:.1} MB per CPU-second; aqueduct / MirrorMaker 2: {:.2}x MB per CPU-second, {:.2}x throughput",
                    a_cpu / m_cpu,
                    a_rate / m_rate
                )?;
            }
            write!(
                ratios,
                "\naqueduct / MirrorMaker 2, start-up included: {:.2}x MB per CPU-second, {:.2}x throughput, peak memory {}",
                mb_per_cpu(&aqueduct) / mb_per_cpu(mm2),
                aqueduct.records_per_second() / mm2.records_per_second(),
                match (aqueduct.peak_rss, mm2.peak_rss) {
                    (Some(a), Some(m)) => format!("{:.0} MiB vs {:.0} MiB = 1/{:.1}", a as f64 / 1048576.0, m as f64 / 1048576.0, m as f64 / a as f64),
                    _ => "unknown".to_string(),
                }
            )?;
        }
        println!("{ratios}");
        write!(
            report,
            "\n### {size}-byte values, {records} records ({:.1} MB of keys and values)\n\n\
             | pipeline | records/s | MB/s | CPU s | CPU s per GB | peak RSS |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
            bytes as f64 / 1e6
        )?;
        for m in [Some(&ceiling), Some(&kcat), Some(&aqueduct), mm2.as_ref()]
            .into_iter()
            .flatten()
        {
            writeln!(
                report,
                "| {} | {:.0} | {:.1} | {:.2} | {:.1} | {} |",
                m.name,
                m.records_per_second(),
                m.mb_per_second(),
                m.cpu_seconds,
                m.cpu_per_gb(),
                m.peak_rss.map_or("-".to_string(), |b| format!(
                    "{:.0} MiB",
                    b as f64 / 1048576.0
                ))
            )?;
        }
        writeln!(report, "\n{ratios}")?;
    }
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-throughput.md");
    std::fs::write(&out, report)?;
    println!("\nwritten to {}", out.display());
    Ok(())
}

fn print_row(m: &Measurement) {
    println!(
        "{:<9} {:>10.0} records/s {:>8.1} MB/s {:>7.2} CPU s {:>7.1} CPU s/GB ({:.2} s){}",
        m.name,
        m.records_per_second(),
        m.mb_per_second(),
        m.cpu_seconds,
        m.cpu_per_gb(),
        m.seconds,
        m.peak_rss.map_or(String::new(), |b| format!(
            ", peak RSS {:.0} MiB",
            b as f64 / 1048576.0
        ))
    );
}

fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or("unknown".into(), |kb| {
            format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0)
        });
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("Machine: {cpus} CPUs ({model}), {memory} memory; brokers, pipelines and this bench share them.")
}

/// Printable values of `size` bytes without tabs or newlines, prepared once so that producing them costs
/// nothing but the send.
fn values(size: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..1024)
        .map(|_| {
            (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b'a' + (x % 26) as u8
                })
                .collect()
        })
        .collect()
}

fn fast_producer(
    bootstrap: &str,
    idempotent: bool,
) -> Result<ThreadedProducer<DefaultProducerContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", idempotent.to_string())
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "2000000")
        .set("log_level", "3")
        .create()?)
}

fn send_all(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    records: u64,
    size: usize,
) -> Result<u64> {
    let values = values(size);
    let mut bytes = 0;
    let mut key = String::with_capacity(16);
    for i in 0..records {
        key.clear();
        write!(key, "key-{:08}", i % 100_000_000)?;
        let value = &values[i as usize % values.len()];
        bytes += (key.len() + value.len()) as u64;
        let mut pending = BaseRecord::to(topic).key(&key).payload(value);
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    pending = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(bytes)
}

fn preload(bootstrap: &str, topic: &str, records: u64, size: usize) -> Result<u64> {
    let producer = fast_producer(bootstrap, false)?;
    let bytes = send_all(&producer, topic, records, size)?;
    if total_records(bootstrap, topic)? != records as i64 {
        bail!("preload of {topic} incomplete");
    }
    Ok(bytes)
}

/// CPU seconds (user + system) of this process, or of its reaped children.
fn cpu_seconds(who: i32) -> f64 {
    #[allow(unsafe_code)]
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn measure_ceiling(
    source: &str,
    destination: &str,
    topic: &str,
    records: u64,
    size: usize,
) -> Result<Measurement> {
    let target = random_name("ceiling");
    create_topic(destination, &target, PARTITIONS, &[])?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", source)
        .set("group.id", random_name("ceiling"))
        .set("enable.auto.commit", "false")
        // Flat out: refetch as soon as the prefetch queue has room (librdkafka waits 1 s by default).
        .set("fetch.queue.backoff.ms", "10")
        .set("log_level", "3")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    let producer = fast_producer(destination, true)?;
    let cpu_before = cpu_seconds(libc::RUSAGE_SELF);
    let started = Instant::now();
    consumer.assign(&assignment)?;
    let drain = std::thread::spawn(move || -> Result<u64> {
        let mut seen = 0;
        let mut bytes = 0u64;
        let deadline = Instant::now() + Duration::from_secs(600);
        while seen < records {
            if Instant::now() > deadline {
                bail!("ceiling consumer saw only {seen} records");
            }
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message?;
                bytes += (message.key_len() + message.payload_len()) as u64;
                seen += 1;
            }
        }
        Ok(bytes)
    });
    let produced = send_all(&producer, &target, records, size)?;
    let consumed = drain.join().expect("drain thread")?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds(libc::RUSAGE_SELF) - cpu_before;
    debug_assert_eq!(produced, consumed);
    Ok(Measurement {
        name: "ceiling",
        records,
        bytes: consumed,
        seconds,
        cpu_seconds,
        peak_rss: None,
        steady: None,
    })
}

fn measure_kcat(
    source: &str,
    destination: &str,
    topic: &str,
    records: u64,
    bytes: u64,
) -> Result<Measurement> {
    let target = random_name("kcat");
    create_topic(destination, &target, PARTITIONS, &[])?;
    let pipe = format!(
        "kcat -C -b {source} -t {topic} -o beginning -e -q -f '%k\\t%s\\n' | \
         kcat -P -b {destination} -t {target} -K '\\t' -X acks=all -X enable.idempotence=true \
         -X linger.ms=5 -X batch.size=1000000"
    );
    let cpu_before = cpu_seconds(libc::RUSAGE_CHILDREN);
    let started = Instant::now();
    let status = Command::new("sh")
        .args(["-c", &pipe])
        .stdin(Stdio::null())
        .status()
        .context("run the kcat pipe")?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds(libc::RUSAGE_CHILDREN) - cpu_before;
    if !status.success() {
        bail!("kcat pipe failed: {status}");
    }
    let copied = total_records(destination, &target)?;
    if copied != records as i64 {
        bail!("kcat copied {copied} of {records} records");
    }
    Ok(Measurement {
        name: "kcat",
        records,
        bytes,
        seconds,
        cpu_seconds,
        peak_rss: None,
        steady: None,
    })
}

/// CPU seconds of a running process, from /proc.
fn process_cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')').context("parse /proc stat")? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    #[allow(unsafe_code)]
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

fn measure_aqueduct(
    binary: &std::path::Path,
    source: &str,
    destination: &str,
    topic: &str,
    records: u64,
    bytes: u64,
) -> Result<Measurement> {
    let stream = random_name("bench").replace('-', "_");
    let setting = |var: &str, default: u32| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(default)
    };
    let tasks = setting("AQUEDUCT_BENCH_TASKS", 4);
    let producers = setting("AQUEDUCT_BENCH_PRODUCERS", 2);
    let target = format!("aqueduct.{topic}");
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("aqueduct.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[node]
status_interval_secs = 0
producers_per_destination = {producers}

[clusters.source]
bootstrap_servers = "{source}"
[clusters.destination]
bootstrap_servers = "{destination}"

[[datastreams]]
name = "{stream}"
destination = "destination"
destination_topic = "aqueduct.{{topic}}"
max_tasks = {tasks}
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#
        ),
    )?;
    let started = Instant::now();
    let mut command = Command::new(binary);
    command
        .arg("server")
        .arg("--config")
        .arg(&config)
        .env("AQUEDUCT_LOG", "warn")
        .stdin(Stdio::null());
    let mut node = aqueduct_testkit::ManagedChild::spawn("aqueduct", command)?;
    let watched = watch_copy(&mut node, started, destination, &target, records, 600)
        .context("aqueduct did not copy the backlog")?;
    // Not timed: the committed offsets catch up within a commit interval.
    wait_for_commits(source, topic, &format!("aqueduct-{stream}"))?;
    let exit = node.terminate(Duration::from_secs(60));
    if exit != Some(0) {
        bail!("aqueduct exited with {exit:?}");
    }
    let copied = total_records(destination, &target)?;
    if copied != records as i64 {
        bail!("aqueduct copied {copied} records for {records}");
    }
    Ok(Measurement {
        name: "aqueduct",
        records,
        bytes,
        seconds: watched.seconds,
        cpu_seconds: watched.cpu_seconds,
        peak_rss: watched.peak_rss,
        steady: watched.steady,
    })
}

/// What watching a pipeline process copy the backlog measured.
struct Watched {
    seconds: f64,
    cpu_seconds: f64,
    peak_rss: Option<u64>,
    steady: Option<(f64, f64)>,
}

/// Waits until `process` has copied `records` records into `target`; measures from `started`, and from the
/// first record at the destination (the steady state).
fn watch_copy(
    process: &mut aqueduct_testkit::ManagedChild,
    started: Instant,
    destination: &str,
    target: &str,
    records: u64,
    timeout_secs: u64,
) -> Result<Watched> {
    let pid = process.pid().context("pipeline pid")?;
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut first: Option<(Instant, f64)> = None;
    loop {
        let copied = total_records(destination, target).unwrap_or(0);
        if copied > 0 && first.is_none() {
            first = Some((Instant::now(), process_cpu_seconds(pid)?));
        }
        if copied >= records as i64 {
            break;
        }
        if Instant::now() > deadline || !process.is_running() {
            bail!("{copied} of {records} records copied");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu_seconds = process_cpu_seconds(pid)?;
    Ok(Watched {
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds,
        peak_rss: peak_rss(pid),
        steady: first.map(|(at, cpu)| (at.elapsed().as_secs_f64(), cpu_seconds - cpu)),
    })
}

/// Peak resident memory of a running process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Kafka MirrorMaker 2 in dedicated mode, from the same Apache Kafka release, tuned as its documentation
/// suggests for throughput: as many tasks as Aqueduct's, larger fetches and polls, batching producers with
/// `acks=all` and idempotence (the same guarantees as Aqueduct), heartbeats, checkpoints and config sync off.
fn measure_mm2(
    source: &str,
    destination: &str,
    topic: &str,
    records: u64,
    bytes: u64,
) -> Result<Measurement> {
    let libs = aqueduct_testkit::kafka::mirrormaker_libs()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("mm2.properties");
    let tasks = std::env::var("AQUEDUCT_BENCH_TASKS").unwrap_or_else(|_| "4".into());
    std::fs::write(
        &config,
        format!(
            "clusters = src, dst\n\
             src.bootstrap.servers = {source}\n\
             dst.bootstrap.servers = {destination}\n\
             src->dst.enabled = true\n\
             src->dst.topics = {topic}\n\
             dst->src.enabled = false\n\
             tasks.max = {tasks}\n\
             replication.factor = 1\n\
             offset-syncs.topic.replication.factor = 1\n\
             heartbeats.topic.replication.factor = 1\n\
             checkpoints.topic.replication.factor = 1\n\
             offset.storage.replication.factor = 1\n\
             status.storage.replication.factor = 1\n\
             config.storage.replication.factor = 1\n\
             emit.heartbeats.enabled = false\n\
             emit.checkpoints.enabled = false\n\
             sync.topic.configs.enabled = false\n\
             sync.topic.acls.enabled = false\n\
             sync.group.offsets.enabled = false\n\
             refresh.topics.interval.seconds = 5\n\
             src.consumer.max.poll.records = 10000\n\
             src.consumer.fetch.max.bytes = 52428800\n\
             src.consumer.max.partition.fetch.bytes = 10485760\n\
             dst.producer.acks = all\n\
             dst.producer.enable.idempotence = true\n\
             dst.producer.linger.ms = 5\n\
             dst.producer.batch.size = 1000000\n\
             dst.producer.buffer.memory = 268435456\n\
             dst.producer.max.request.size = 10485760\n"
        ),
    )?;
    // MirrorMaker names the copy `src.<topic>`.
    let target = format!("src.{topic}");
    let log = std::fs::File::create(dir.path().join("mm2.log"))?;
    let started = Instant::now();
    let mut command = Command::new("java");
    // The heap connect-mirror-maker.sh of the release sets.
    command
        .arg("-Xms256m")
        .arg("-Xmx2g")
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .arg("org.apache.kafka.connect.mirror.MirrorMaker")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut mm2 = aqueduct_testkit::ManagedChild::spawn("mirrormaker", command)?;
    let watched = match watch_copy(&mut mm2, started, destination, &target, records, 900) {
        Ok(watched) => watched,
        Err(error) => {
            let log = std::fs::read_to_string(dir.path().join("mm2.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            bail!(
                "MirrorMaker 2 did not copy the backlog ({error}):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    };
    mm2.terminate(Duration::from_secs(60));
    let copied = total_records(destination, &target)?;
    if copied < records as i64 {
        bail!("MirrorMaker 2 copied {copied} records for {records}");
    }
    Ok(Measurement {
        name: "mm2",
        records,
        bytes,
        seconds: watched.seconds,
        cpu_seconds: watched.cpu_seconds,
        peak_rss: watched.peak_rss,
        steady: watched.steady,
    })
}

fn wait_for_commits(source: &str, topic: &str, group: &str) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", source)
        .set("group.id", group)
        .set("log_level", "3")
        .create()?;
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition(topic, p);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let committed = consumer.committed_offsets(list.clone(), Duration::from_secs(10))?;
        let mut done = true;
        for p in 0..PARTITIONS {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            let offset = committed.find_partition(topic, p).map(|e| e.offset());
            if offset != Some(Offset::Offset(high)) {
                done = false;
            }
        }
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("committed offsets of {group} did not reach the end of {topic}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
