//! A real Apache Kafka broker (KRaft, combined broker and controller) as a local process.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::{free_port, wait_for_port, ManagedChild};
use crate::proxy::TcpProxy;

/// The pinned Kafka version (shared with `tools/install-kafka.sh`).
pub const KAFKA_VERSION: &str = include_str!("../../../tools/kafka-version");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Directory holding the Kafka jars; installs them with `tools/install-kafka.sh` when missing.
pub fn kafka_libs() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("AQUEDUCT_KAFKA_LIBS") {
        return Ok(PathBuf::from(dir));
    }
    cached_libs("broker", "")
}

/// Directory holding the MirrorMaker 2 jars (for the comparison benchmark); installs them when missing.
pub fn mirrormaker_libs() -> Result<PathBuf> {
    cached_libs("mirrormaker", "-mirrormaker")
}

fn cached_libs(flavour: &str, suffix: &str) -> Result<PathBuf> {
    let version = KAFKA_VERSION.trim();
    let cache = match std::env::var_os("AQUEDUCT_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(dir) => PathBuf::from(dir).join("aqueduct"),
            None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
                .join(".cache/aqueduct"),
        },
    };
    let dir = cache.join(format!("kafka-{version}{suffix}"));
    if !dir.join(".complete").exists() {
        let status = Command::new(repo_root().join("tools/install-kafka.sh"))
            .arg(flavour)
            .status()
            .context("run tools/install-kafka.sh")?;
        if !status.success() {
            bail!("tools/install-kafka.sh {flavour} failed: {status}");
        }
    }
    Ok(dir.join("libs"))
}

/// Settings of a local broker.
#[derive(Debug, Clone, Default)]
pub struct KafkaOptions {
    /// Extra `server.properties` lines (`key=value`).
    pub properties: Vec<(String, String)>,
    /// Java heap, for example `512m`.
    pub heap: Option<String>,
    /// A second client listener reached only through a [`TcpProxy`] the test can cut (see
    /// [`KafkaCluster::proxy`]); the brokers talk to each other on the direct listener.
    pub proxied: bool,
}

/// One KRaft broker on 127.0.0.1 with random ports and a temporary data directory. Killed on drop.
#[derive(Debug)]
pub struct KafkaCluster {
    name: String,
    port: u16,
    dir: tempfile::TempDir,
    options: KafkaOptions,
    process: Option<ManagedChild>,
    proxy: Option<TcpProxy>,
}

impl KafkaCluster {
    /// Starts a broker with default settings.
    pub fn start(name: &str) -> Result<Self> {
        Self::start_with(name, KafkaOptions::default())
    }

    /// Starts a broker with `options`.
    pub fn start_with(name: &str, options: KafkaOptions) -> Result<Self> {
        let port = free_port();
        let controller_port = free_port();
        let voters = format!("1@127.0.0.1:{controller_port}");
        let mut broker = Self::prepare(name, options, 1, port, controller_port, &voters, 1)?;
        broker.launch()?;
        Ok(broker)
    }

    /// Starts `brokers` brokers forming one cluster (each a KRaft controller too), with internal topics
    /// replicated to all of them (at most 3) and `min.insync.replicas` = replicas - 1. Returns the brokers;
    /// any of them bootstraps a client, [`bootstrap_all`] lists them all.
    pub fn start_cluster(name: &str, brokers: usize, options: KafkaOptions) -> Result<Vec<Self>> {
        let ports: Vec<(u16, u16)> = (0..brokers).map(|_| (free_port(), free_port())).collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, (_, controller))| format!("{}@127.0.0.1:{controller}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let replicas = brokers.min(3);
        let mut cluster = Vec::new();
        for (i, (port, controller)) in ports.iter().enumerate() {
            cluster.push(Self::prepare(
                &format!("{name}-{}", i + 1),
                options.clone(),
                i + 1,
                *port,
                *controller,
                &voters,
                replicas,
            )?);
        }
        // A quorum needs a majority up: start every broker, then wait for each.
        for broker in &mut cluster {
            broker.spawn()?;
        }
        for broker in &mut cluster {
            broker.wait_ready(Duration::from_secs(90))?;
        }
        Ok(cluster)
    }

    fn prepare(
        name: &str,
        options: KafkaOptions,
        node_id: usize,
        port: u16,
        controller_port: u16,
        voters: &str,
        replicas: usize,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("aqueduct-kafka-{name}-"))
            .tempdir()?;
        let config = dir.path().join("server.properties");
        let data = dir.path().join("data");
        let mut text = String::new();
        let min_isr = replicas.saturating_sub(1).max(1).to_string();
        // With a proxied listener, clients that bootstrap through the proxy get the proxy's address for
        // every broker (Kafka answers metadata with the addresses of the listener asked).
        let proxy = if options.proxied {
            let listener_port = free_port();
            Some((
                listener_port,
                TcpProxy::start(free_port(), &format!("127.0.0.1:{listener_port}"))?,
            ))
        } else {
            None
        };
        let (listeners, advertised, protocols) = match &proxy {
            Some((listener_port, proxy)) => (
                format!(
                    "PLAINTEXT://127.0.0.1:{port},PROXIED://127.0.0.1:{listener_port},CONTROLLER://127.0.0.1:{controller_port}"
                ),
                format!("PLAINTEXT://127.0.0.1:{port},PROXIED://{}", proxy.address()),
                "PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ),
            None => (
                format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"),
                format!("PLAINTEXT://127.0.0.1:{port}"),
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ),
        };
        let replicas = replicas.to_string();
        let defaults = [
            ("process.roles", "broker,controller".to_string()),
            ("node.id", node_id.to_string()),
            ("controller.quorum.voters", voters.to_string()),
            ("default.replication.factor", replicas.clone()),
            ("min.insync.replicas", min_isr.clone()),
            ("listeners", listeners),
            ("advertised.listeners", advertised),
            ("controller.listener.names", "CONTROLLER".to_string()),
            ("listener.security.protocol.map", protocols.to_string()),
            ("inter.broker.listener.name", "PLAINTEXT".to_string()),
            ("log.dirs", data.display().to_string()),
            ("offsets.topic.replication.factor", replicas.clone()),
            ("offsets.topic.num.partitions", "4".to_string()),
            ("transaction.state.log.replication.factor", replicas.clone()),
            ("transaction.state.log.min.isr", min_isr.clone()),
            (
                "share.coordinator.state.topic.replication.factor",
                replicas.clone(),
            ),
            ("share.coordinator.state.topic.min.isr", min_isr.clone()),
            ("group.initial.rebalance.delay.ms", "0".to_string()),
            ("auto.create.topics.enable", "false".to_string()),
            ("num.partitions", "1".to_string()),
            (
                "log.flush.interval.messages",
                "9223372036854775807".to_string(),
            ),
        ];
        for (key, value) in defaults {
            if !options.properties.iter().any(|(k, _)| k == key) {
                writeln!(text, "{key}={value}")?;
            }
        }
        for (key, value) in &options.properties {
            writeln!(text, "{key}={value}")?;
        }
        fs::write(&config, text)?;

        let libs = kafka_libs()?;
        let classpath = format!("{}/*", libs.display());
        let output = Command::new("java")
            .args(["-cp", &classpath, "kafka.tools.StorageTool", "format"])
            .args(["-t", "MkU3OEVBNTcwNTJENDM2Qk"])
            .arg("-c")
            .arg(&config)
            .output()
            .context("run kafka StorageTool")?;
        if !output.status.success() {
            bail!(
                "formatting kafka storage failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(Self {
            name: name.to_string(),
            port,
            dir,
            options,
            process: None,
            proxy: proxy.map(|(_, proxy)| proxy),
        })
    }

    fn launch(&mut self) -> Result<()> {
        self.spawn()?;
        self.wait_ready(Duration::from_secs(60))
    }

    fn spawn(&mut self) -> Result<()> {
        let libs = kafka_libs()?;
        let classpath = format!("{}/*", libs.display());
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let heap = self.options.heap.clone().unwrap_or_else(|| "768m".into());
        let log4j = self.dir.path().join("log4j2.properties");
        fs::write(
            &log4j,
            "rootLogger.level=WARN\nrootLogger.appenderRef.stdout.ref=STDOUT\n\
             appender.stdout.type=Console\nappender.stdout.name=STDOUT\n\
             appender.stdout.layout.type=PatternLayout\n\
             appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n",
        )?;
        let mut command = Command::new("java");
        command
            .arg(format!("-Xmx{heap}"))
            .arg(format!("-Xms{heap}"))
            .args(["-XX:+UseG1GC", "-XX:TieredStopAtLevel=1", "-Xshare:auto"])
            .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
            .args(["-cp", &classpath, "kafka.Kafka"])
            .arg(self.dir.path().join("server.properties"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = ManagedChild::spawn(&format!("kafka-{}", self.name), command)?;
        self.process = Some(child);
        Ok(())
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        if !wait_for_port(self.port, timeout) {
            bail!(
                "kafka {} did not open port {}: {}",
                self.name,
                self.port,
                self.log_tail()
            );
        }
        // The port opens before the broker has registered with its controller: wait for metadata.
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("log_level", "3")
            .create()?;
        while Instant::now() < deadline {
            if let Ok(metadata) = consumer.fetch_metadata(None, Duration::from_secs(2)) {
                if !metadata.brokers().is_empty() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "kafka {} never became ready: {}",
            self.name,
            self.log_tail()
        )
    }

    /// The proxy in front of this broker's proxied listener, when it has one.
    pub fn proxy(&self) -> Option<&TcpProxy> {
        self.proxy.as_ref()
    }

    /// `127.0.0.1:<port>`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("kafka.log")
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Pid of the broker process while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ManagedChild::pid)
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 20 s), keeping its data for [`Self::restart`].
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.terminate(Duration::from_secs(20));
        }
    }

    /// Kills the broker with SIGKILL, keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts a stopped broker again on the same ports with the same data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch()
    }
}

/// Every broker of a cluster started with [`KafkaCluster::start_cluster`], comma-separated.
pub fn bootstrap_all(brokers: &[KafkaCluster]) -> String {
    brokers
        .iter()
        .map(KafkaCluster::bootstrap)
        .collect::<Vec<_>>()
        .join(",")
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The proxied addresses of brokers started with [`KafkaOptions::proxied`], for a client's bootstrap list.
pub fn proxied_bootstrap_all(brokers: &[KafkaCluster]) -> Option<String> {
    brokers
        .iter()
        .map(|b| b.proxy().map(TcpProxy::address))
        .collect::<Option<Vec<_>>>()
        .map(|addresses| addresses.join(","))
}
