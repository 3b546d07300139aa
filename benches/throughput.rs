//! Aqueduct against Kafka MirrorMaker 2, a `kcat` consume-to-produce pipe and the ceiling of the setup.
//!
//! One run, one source and one destination Kafka broker on this machine. For every workload (record size x
//! partition count) a source topic is preloaded, then copied, one pipeline after the other, by:
//! - **ceiling**: a bare librdkafka consumer draining the source while a bare librdkafka producer writes the
//!   same volume to the destination, both flat out and uncoupled, in this process;
//! - **kcat**: `kcat -C ... | kcat -P ...`;
//! - **aqueduct**: the release `aqueduct` binary with a datastream from its config file;
//! - **mm2**: Kafka MirrorMaker 2 in dedicated mode, from the same Apache Kafka release.
//!
//! Then Aqueduct and MirrorMaker 2 each copy a fresh topic written at a fixed moderate rate, and a consumer
//! on the destination measures the end-to-end latency of every record.
//!
//! `cargo bench -p aqueduct-benches --bench throughput` (`make bench`). Settings, all optional:
//! `AQUEDUCT_BENCH_SIZES` (bytes, default `100,1024,32768`), `AQUEDUCT_BENCH_PARTITIONS` (default `10,100`),
//! `AQUEDUCT_BENCH_MB` (backlog per workload, default 600), `AQUEDUCT_BENCH_SCALE` (multiplies it; 0.1 for a
//! quick run), `AQUEDUCT_BENCH_LATENCY_MBPS` (default 5) and `AQUEDUCT_BENCH_LATENCY_SECS` (default 20),
//! `AQUEDUCT_BENCH_TASKS` and `AQUEDUCT_BENCH_PRODUCERS`, `AQUEDUCT_BENCH_MM2=0` to leave MirrorMaker 2 out,
//! `AQUEDUCT_BENCH_BINARY` to measure another build of the `aqueduct` binary.
//! The tables are also written to `target/bench-throughput.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aqueduct_testkit::sequence::sequence_value;
use aqueduct_testkit::{
    create_topic, delete_topics, end_offsets, random_name, total_records, KafkaCluster,
    KafkaOptions, LiveLatency, ManagedChild,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// Bytes of key each benchmark record carries (`key-00000000`).
const KEY_BYTES: usize = 12;

/// One record size and partition count.
#[derive(Debug, Clone, Copy)]
struct Workload {
    size: usize,
    partitions: i32,
    records: u64,
}

impl Workload {
    fn label(&self) -> String {
        let size = match self.size {
            s if s >= 1024 && s % 1024 == 0 => format!("{} KiB", s / 1024),
            s => format!("{s} B"),
        };
        format!("{size}, {} partitions", self.partitions)
    }
}

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
    /// End-to-end latency (p50, p99) in seconds at the fixed rate, for the pipelines measured that way.
    latency: Option<(f64, f64)>,
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
    /// MB moved per CPU-second in the steady state (start-up left out), else over the whole run.
    fn mb_per_cpu_second(&self) -> f64 {
        let cpu = self.steady.map_or(self.cpu_seconds, |(_, cpu)| cpu);
        self.bytes as f64 / 1e6 / cpu
    }
}

/// The two mirroring services compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Aqueduct,
    MirrorMaker,
}

/// A mirroring service copying one topic.
struct Running {
    process: ManagedChild,
    /// The topic it writes at the destination.
    target: String,
    /// Aqueduct's consumer group on the source.
    group: Option<String>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

fn setting<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn list_setting<T: std::str::FromStr + Clone>(var: &str, default: &[T]) -> Vec<T> {
    std::env::var(var)
        .ok()
        .and_then(|v| v.split(',').map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn main() -> Result<()> {
    let scale: f64 = setting("AQUEDUCT_BENCH_SCALE", 1.0);
    let backlog_mb: f64 = setting("AQUEDUCT_BENCH_MB", 600.0) * scale;
    let sizes: Vec<usize> = list_setting("AQUEDUCT_BENCH_SIZES", &[100, 1024, 32768]);
    let partition_counts: Vec<i32> = list_setting("AQUEDUCT_BENCH_PARTITIONS", &[10, 100]);
    let latency_mbps: f64 = setting("AQUEDUCT_BENCH_LATENCY_MBPS", 5.0);
    let latency_secs: u64 = setting("AQUEDUCT_BENCH_LATENCY_SECS", 20);
    let with_mm2 = std::env::var("AQUEDUCT_BENCH_MM2").as_deref() != Ok("0");
    let workloads: Vec<Workload> = sizes
        .iter()
        .flat_map(|&size| {
            partition_counts.iter().map(move |&partitions| Workload {
                size,
                partitions,
                records: ((backlog_mb * 1e6 / (size + KEY_BYTES) as f64) as u64).max(1000),
            })
        })
        .collect();
    // Another build of Aqueduct (an earlier commit, say) can be measured on the same harness.
    let binary = match std::env::var_os("AQUEDUCT_BENCH_BINARY") {
        Some(path) => PathBuf::from(path),
        None => aqueduct_testkit::aqueduct_binary()?,
    };
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
    let (source, destination) = (source.bootstrap(), destination.bootstrap());

    let mut report = format!(
        "{machine}\n\nApache Kafka {} (KRaft, one broker per cluster, local processes), acks=all and idempotence \
         on every producer; latency at {latency_mbps} MB/s for {latency_secs} s.\n",
        aqueduct_testkit::kafka::KAFKA_VERSION.trim()
    );
    // Warm the brokers up (JIT, page cache, log segments) so the first measurement is not penalised.
    {
        let warmup = Workload {
            size: 100,
            partitions: 10,
            records: (backlog_mb * 1e6 / 4.0 / 112.0) as u64 + 1000,
        };
        let topic = random_name("warmup");
        create_topic(&source, &topic, warmup.partitions, &[])?;
        preload(&source, &topic, warmup)?;
        let ceiling = measure_ceiling(&source, &destination, &topic, warmup)?;
        delete_topics(&source, &[&topic])?;
        delete_topics(&destination, &[ceiling.1.as_str()])?;
    }
    let mut summary = String::from(
        "| workload | MB per CPU-second, aqueduct / mm2 | peak memory, aqueduct / mm2 | p99 latency, aqueduct / mm2 | drain, aqueduct / ceiling |\n\
         | --- | ---: | ---: | ---: | ---: |\n",
    );
    for workload in workloads {
        let (results, direct) = run_workload(
            &binary,
            &source,
            &destination,
            workload,
            with_mm2,
            latency_mbps,
            latency_secs,
        )?;
        let [ceiling, kcat, aqueduct] = [&results[0], &results[1], &results[2]];
        let mm2 = results.get(3);
        let mut ratios = format!(
            "aqueduct / kcat: {:.2}x throughput, {:.2}x CPU per GB; aqueduct / ceiling: {:.2} of throughput, {:.2}x CPU per GB",
            aqueduct.records_per_second() / kcat.records_per_second(),
            aqueduct.cpu_per_gb() / kcat.cpu_per_gb(),
            aqueduct.records_per_second() / ceiling.records_per_second(),
            aqueduct.cpu_per_gb() / ceiling.cpu_per_gb(),
        );
        if let Some(mm2) = mm2 {
            let memory = match (aqueduct.peak_rss, mm2.peak_rss) {
                (Some(a), Some(m)) => format!("1/{:.1}", m as f64 / a as f64),
                _ => "-".into(),
            };
            let p99 = match (aqueduct.latency, mm2.latency) {
                (Some((_, a)), Some((_, m))) => format!("{:.2}", a / m),
                _ => "-".into(),
            };
            write!(
                ratios,
                "\naqueduct / mm2: {:.2}x MB per CPU-second (steady state), {:.2}x throughput (with start-up), peak memory {memory}, p99 latency {p99}x",
                aqueduct.mb_per_cpu_second() / mm2.mb_per_cpu_second(),
                aqueduct.records_per_second() / mm2.records_per_second(),
            )?;
            writeln!(
                summary,
                "| {} | {:.2}x | {memory} | {p99} | {:.2} |",
                workload.label(),
                aqueduct.mb_per_cpu_second() / mm2.mb_per_cpu_second(),
                aqueduct.records_per_second() / ceiling.records_per_second(),
            )?;
        }
        println!("{ratios}");
        write!(
            report,
            "\n### {}: {} records ({:.0} MB of keys and values)\n\n\
             | pipeline | records/s | MB/s | CPU s per GB | MB per CPU-s, steady | peak RSS | p50 / p99 latency |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
            workload.label(),
            workload.records,
            aqueduct.bytes as f64 / 1e6
        )?;
        for m in &results {
            writeln!(
                report,
                "| {} | {:.0} | {:.1} | {:.1} | {} | {} | {} |",
                m.name,
                m.records_per_second(),
                m.mb_per_second(),
                m.cpu_per_gb(),
                m.steady
                    .map_or("-".to_string(), |_| format!("{:.1}", m.mb_per_cpu_second())),
                m.peak_rss.map_or("-".to_string(), |b| format!(
                    "{:.0} MiB",
                    b as f64 / 1048576.0
                )),
                m.latency.map_or("-".to_string(), |(p50, p99)| format!(
                    "{:.0} / {:.0} ms",
                    p50 * 1000.0,
                    p99 * 1000.0
                )),
            )?;
        }
        writeln!(
            report,
            "| direct (no mirror) | - | - | - | - | - | {:.0} / {:.0} ms |",
            direct.0 * 1000.0,
            direct.1 * 1000.0
        )?;
        writeln!(report, "\n{ratios}")?;
    }
    if with_mm2 {
        write!(
            report,
            "\n### Summary (targets: >= 2.5x, <= 1/4, <= 1, >= 0.8)\n\n{summary}"
        )?;
        println!("\n{summary}");
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-throughput.md");
    std::fs::write(&out, report)?;
    println!("\nwritten to {}", out.display());
    Ok(())
}

/// Preloads one topic, copies it with every pipeline, then measures latency; returns ceiling, kcat,
/// aqueduct and (unless left out) mm2, and deletes the topics it made.
fn run_workload(
    binary: &Path,
    source: &str,
    destination: &str,
    workload: Workload,
    with_mm2: bool,
    latency_mbps: f64,
    latency_secs: u64,
) -> Result<(Vec<Measurement>, (f64, f64))> {
    let topic = random_name(&format!("bench-{}-{}", workload.size, workload.partitions));
    create_topic(source, &topic, workload.partitions, &[])?;
    let bytes = preload(source, &topic, workload)?;
    println!(
        "\n== {}: {} records, {:.1} MB",
        workload.label(),
        workload.records,
        bytes as f64 / 1e6
    );
    let mut targets = Vec::new();
    let (ceiling, target) = measure_ceiling(source, destination, &topic, workload)?;
    targets.push(target);
    print_row(&ceiling);
    let (kcat, target) = measure_kcat(source, destination, &topic, workload, bytes)?;
    targets.push(target);
    print_row(&kcat);
    let latency_of = |service: Option<Service>| {
        measure_latency(
            service,
            binary,
            source,
            destination,
            workload,
            latency_mbps,
            latency_secs,
        )
    };
    let direct = latency_of(None)?;
    delete_topics(source, &[direct.source_topic.as_str()])?;
    let direct = direct.percentiles;
    println!(
        "direct (no mirror): latency p50 {:.0} ms p99 {:.0} ms",
        direct.0 * 1000.0,
        direct.1 * 1000.0
    );
    let mut services = vec![Service::Aqueduct];
    if with_mm2 {
        services.push(Service::MirrorMaker);
    }
    let mut results = vec![ceiling, kcat];
    for service in services {
        let (mut measurement, target) = measure_drain(
            service,
            binary,
            source,
            destination,
            &topic,
            workload,
            bytes,
        )?;
        targets.push(target);
        let latency = latency_of(Some(service))?;
        measurement.latency = Some(latency.percentiles);
        print_row(&measurement);
        results.push(measurement);
        delete_topics(source, &[latency.source_topic.as_str()])?;
        targets.extend(latency.destination_topic);
    }
    delete_topics(source, &[&topic])?;
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    delete_topics(destination, &targets)?;
    Ok((results, direct))
}

fn print_row(m: &Measurement) {
    println!(
        "{:<9} {:>10.0} records/s {:>8.1} MB/s {:>7.2} CPU s {:>7.1} CPU s/GB ({:.2} s){}{}",
        m.name,
        m.records_per_second(),
        m.mb_per_second(),
        m.cpu_seconds,
        m.cpu_per_gb(),
        m.seconds,
        m.peak_rss.map_or(String::new(), |b| format!(
            ", peak RSS {:.0} MiB",
            b as f64 / 1048576.0
        )),
        m.latency.map_or(String::new(), |(p50, p99)| format!(
            ", latency p50 {:.0} ms p99 {:.0} ms",
            p50 * 1000.0,
            p99 * 1000.0
        )),
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

/// Peak resident memory of a running process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
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

/// Sends one record, waiting while the producer's queue is full.
fn send_one(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
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
        send_one(
            producer,
            BaseRecord::to(topic).key(key.as_bytes()).payload(value),
        )?;
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(bytes)
}

fn preload(bootstrap: &str, topic: &str, workload: Workload) -> Result<u64> {
    let producer = fast_producer(bootstrap, false)?;
    let bytes = send_all(&producer, topic, workload.records, workload.size)?;
    if total_records(bootstrap, topic)? != workload.records as i64 {
        bail!("preload of {topic} incomplete");
    }
    Ok(bytes)
}

/// Returns the measurement and the destination topic it wrote.
fn measure_ceiling(
    source: &str,
    destination: &str,
    topic: &str,
    workload: Workload,
) -> Result<(Measurement, String)> {
    let records = workload.records;
    let target = random_name("ceiling");
    create_topic(destination, &target, workload.partitions, &[])?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", source)
        .set("group.id", random_name("ceiling"))
        .set("enable.auto.commit", "false")
        // Flat out: refetch as soon as the prefetch queue has room (librdkafka waits 1 s by default).
        .set("fetch.queue.backoff.ms", "10")
        .set("log_level", "3")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..workload.partitions {
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
    let produced = send_all(&producer, &target, records, workload.size)?;
    let consumed = drain.join().expect("drain thread")?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds(libc::RUSAGE_SELF) - cpu_before;
    debug_assert_eq!(produced, consumed);
    let measurement = Measurement {
        name: "ceiling",
        records,
        bytes: consumed,
        seconds,
        cpu_seconds,
        peak_rss: None,
        steady: None,
        latency: None,
    };
    Ok((measurement, target))
}

/// Returns the measurement and the destination topic it wrote.
fn measure_kcat(
    source: &str,
    destination: &str,
    topic: &str,
    workload: Workload,
    bytes: u64,
) -> Result<(Measurement, String)> {
    let target = random_name("kcat");
    create_topic(destination, &target, workload.partitions, &[])?;
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
    if copied != workload.records as i64 {
        bail!("kcat copied {copied} of {} records", workload.records);
    }
    let measurement = Measurement {
        name: "kcat",
        records: workload.records,
        bytes,
        seconds,
        cpu_seconds,
        peak_rss: None,
        steady: None,
        latency: None,
    };
    Ok((measurement, target))
}

/// Starts `service` copying `topic` with the settings the bench compares: as many tasks each
/// (`AQUEDUCT_BENCH_TASKS`, default 4), batching producers with `acks=all` and idempotence.
fn start_service(
    service: Service,
    binary: &Path,
    source: &str,
    destination: &str,
    topic: &str,
) -> Result<Running> {
    match service {
        Service::Aqueduct => start_aqueduct(binary, source, destination, topic),
        Service::MirrorMaker => start_mm2(source, destination, topic),
    }
}

/// The release `aqueduct` binary with one datastream from its config file, default settings otherwise.
fn start_aqueduct(binary: &Path, source: &str, destination: &str, topic: &str) -> Result<Running> {
    let stream = random_name("bench").replace('-', "_");
    let tasks: u32 = setting("AQUEDUCT_BENCH_TASKS", 4);
    let producers: u32 = setting("AQUEDUCT_BENCH_PRODUCERS", 2);
    // Extra settings of the datastream, as TOML lines (for tuning experiments).
    let extra = std::env::var("AQUEDUCT_BENCH_STREAM_SETTINGS").unwrap_or_default();
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
{extra}
[[datastreams.sources]]
cluster = "source"
topics = ["{topic}"]
"#
        ),
    )?;
    let log = dir.path().join("aqueduct.log");
    let output = std::fs::File::create(&log)?;
    let mut command = Command::new(binary);
    command
        .arg("server")
        .arg("--config")
        .arg(&config)
        .env("AQUEDUCT_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output);
    Ok(Running {
        process: ManagedChild::spawn("aqueduct", command)?,
        target: format!("aqueduct.{topic}"),
        group: Some(format!("aqueduct-{stream}")),
        log,
        _dir: dir,
    })
}

/// Kafka MirrorMaker 2 in dedicated mode, from the same Apache Kafka release, tuned as its documentation
/// suggests for throughput: as many tasks as Aqueduct's, larger fetches and polls, batching producers with
/// `acks=all` and idempotence (the same guarantees as Aqueduct), heartbeats, checkpoints and config sync off.
fn start_mm2(source: &str, destination: &str, topic: &str) -> Result<Running> {
    let libs = aqueduct_testkit::kafka::mirrormaker_libs()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("mm2.properties");
    let tasks: u32 = setting("AQUEDUCT_BENCH_TASKS", 4);
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
    let log = dir.path().join("mm2.log");
    let output = std::fs::File::create(&log)?;
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
        .stdout(output.try_clone()?)
        .stderr(output);
    Ok(Running {
        process: ManagedChild::spawn("mirrormaker", command)?,
        // MirrorMaker names the copy `src.<topic>`.
        target: format!("src.{topic}"),
        group: None,
        log,
        _dir: dir,
    })
}

/// Times `service` copying the preloaded `topic`, from its start until the destination holds every record;
/// returns the measurement and the destination topic.
fn measure_drain(
    service: Service,
    binary: &Path,
    source: &str,
    destination: &str,
    topic: &str,
    workload: Workload,
    bytes: u64,
) -> Result<(Measurement, String)> {
    let started = Instant::now();
    let mut running = start_service(service, binary, source, destination, topic)?;
    let watched = watch_copy(
        &mut running,
        started,
        destination,
        workload.partitions,
        workload.records,
    )?;
    if let Some(group) = &running.group {
        // Not timed: the committed offsets catch up within a commit interval.
        wait_for_commits(source, topic, workload.partitions, group)?;
    }
    let exit = running.process.terminate(Duration::from_secs(60));
    if service == Service::Aqueduct && exit != Some(0) {
        bail!("aqueduct exited with {exit:?}:\n{}", running.log_tail());
    }
    let copied = total_records(destination, &running.target)?;
    if copied != workload.records as i64 {
        bail!(
            "{service:?} copied {copied} records for {}",
            workload.records
        );
    }
    let measurement = Measurement {
        name: match service {
            Service::Aqueduct => "aqueduct",
            Service::MirrorMaker => "mm2",
        },
        records: workload.records,
        bytes,
        seconds: watched.seconds,
        cpu_seconds: watched.cpu_seconds,
        peak_rss: watched.peak_rss,
        steady: watched.steady,
        latency: None,
    };
    Ok((measurement, running.target.clone()))
}

/// Starts `service` on a fresh topic, waits until it copies, then writes records at `mbps` MB/s for
/// `seconds` while a consumer on the destination notes each record's end-to-end latency (from its source
/// timestamp). Without a service the consumer reads the source topic itself: the latency of the measuring
/// clients and the source broker alone.
fn measure_latency(
    service: Option<Service>,
    binary: &Path,
    source: &str,
    destination: &str,
    workload: Workload,
    mbps: f64,
    seconds: u64,
) -> Result<LatencyRun> {
    let topic = random_name(&format!(
        "latency-{}-{}",
        workload.size, workload.partitions
    ));
    create_topic(source, &topic, workload.partitions, &[])?;
    let mut running = service
        .map(|service| start_service(service, binary, source, destination, &topic))
        .transpose()?;
    let (read_from, target) = match &running {
        Some(running) => (destination, running.target.clone()),
        None => (source, topic.clone()),
    };
    let producer = fast_producer(source, true)?;
    // A first record per partition (not a sequence record, so the latency consumer skips it) shows that the
    // service is up and copying before the measured records are written.
    for partition in 0..workload.partitions {
        send_one(
            &producer,
            BaseRecord::to(&topic)
                .partition(partition)
                .key(b"warm-up".as_slice())
                .payload(b"warm-up".as_slice()),
        )?;
    }
    producer.flush(Duration::from_secs(30))?;
    let watcher = watcher(read_from)?;
    let copying = |expected: i64| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let copied: i64 = end_offsets(&watcher, &target, workload.partitions)
                .map_or(0, |ends| ends.iter().sum());
            if copied >= expected {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{service:?} copied {copied} of {expected} latency records:\n{}",
                    running.as_ref().map(Running::log_tail).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    copying(workload.partitions as i64)?;
    let latency = LiveLatency::start(read_from, std::slice::from_ref(&target))?;
    let rate = mbps * 1e6 / (workload.size + KEY_BYTES) as f64;
    let total = (rate * seconds as f64) as u64;
    let started = Instant::now();
    let mut next = vec![0u64; workload.partitions as usize];
    for i in 0..total {
        // Stay on schedule: record i goes out at i / rate seconds.
        let due = Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let partition = (i % workload.partitions as u64) as i32;
        let seq = next[partition as usize];
        next[partition as usize] += 1;
        let value = sequence_value(partition, seq, workload.size);
        let key = format!("k{partition}-{seq:08}");
        send_one(
            &producer,
            BaseRecord::to(&topic)
                .partition(partition)
                .key(key.as_bytes())
                .payload(value.as_slice()),
        )?;
    }
    producer.flush(Duration::from_secs(60))?;
    copying(workload.partitions as i64 + total as i64)?;
    std::thread::sleep(Duration::from_millis(500));
    let percentiles = latency.stop();
    let destination_topic = running.as_mut().map(|running| {
        running.process.terminate(Duration::from_secs(60));
        running.target.clone()
    });
    Ok(LatencyRun {
        percentiles,
        source_topic: topic,
        destination_topic,
    })
}

/// What a latency run measured, and the topics it made.
struct LatencyRun {
    /// (p50, p99) in seconds.
    percentiles: (f64, f64),
    source_topic: String,
    destination_topic: Option<String>,
}

/// A consumer for polling end offsets.
fn watcher(bootstrap: &str) -> Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()?)
}

/// What watching a pipeline process copy the backlog measured.
struct Watched {
    seconds: f64,
    cpu_seconds: f64,
    peak_rss: Option<u64>,
    steady: Option<(f64, f64)>,
}

/// Waits until `running` has copied `records` records; measures from `started`, and from the first record
/// at the destination (the steady state).
fn watch_copy(
    running: &mut Running,
    started: Instant,
    destination: &str,
    partitions: i32,
    records: u64,
) -> Result<Watched> {
    let pid = running.process.pid().context("pipeline pid")?;
    let watcher = watcher(destination)?;
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut first: Option<(Instant, f64)> = None;
    loop {
        let copied: i64 =
            end_offsets(&watcher, &running.target, partitions).map_or(0, |ends| ends.iter().sum());
        if copied > 0 && first.is_none() {
            first = Some((Instant::now(), process_cpu_seconds(pid)?));
        }
        if copied >= records as i64 {
            break;
        }
        if Instant::now() > deadline || !running.process.is_running() {
            bail!(
                "{} copied {copied} of {records} records:\n{}",
                running.process.name(),
                running.log_tail()
            );
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

fn wait_for_commits(source: &str, topic: &str, partitions: i32, group: &str) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", source)
        .set("group.id", group)
        .set("log_level", "3")
        .create()?;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let ends = end_offsets(&consumer, topic, partitions)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let committed = consumer.committed_offsets(list.clone(), Duration::from_secs(10))?;
        let done = (0..partitions).all(|p| {
            committed.find_partition(topic, p).map(|e| e.offset())
                == Some(Offset::Offset(ends[p as usize]))
        });
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("committed offsets of {group} did not reach the end of {topic}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
