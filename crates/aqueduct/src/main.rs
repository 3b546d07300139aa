//! The `aqueduct` node binary.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use aqueduct_engine::status::NodeStatus;
use aqueduct_model::config::NodeConfig;
use clap::{Parser, Subcommand};
use tracing::{info, warn};

// Records cross threads (allocated by a task, freed by a producer's delivery thread); mimalloc handles that
// without the lock contention of the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;

#[derive(Debug, Parser)]
#[command(name = "aqueduct", version, about = "Multi-tenant Kafka mirroring")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a node with the datastreams declared in its config file.
    Server {
        /// Path of the TOML config file; `AQUEDUCT__`-prefixed environment variables override it.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validates a config file (with environment overrides) and prints the datastreams it declares.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Config files: `aqueduct config check FILE`.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manages datastreams through the REST API of any node.
    Stream {
        #[command(flatten)]
        connection: client::Connection,
        #[command(subcommand)]
        command: client::StreamCommand,
    },
    /// Shows the cluster's nodes, leader, tasks per node and unassigned tasks.
    Instances {
        #[command(flatten)]
        connection: client::Connection,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validates a config file (with environment overrides) and explains what is wrong with it.
    Check { file: PathBuf },
}

/// The section of docs/configuration.md that documents `key`.
fn section_of(key: &str) -> &'static str {
    match key.split(['.', '[']).next().unwrap_or_default() {
        "node" => "[node]",
        "cluster" => "[cluster]",
        "api" => "[api]",
        "clusters" => "[clusters.<name>]",
        "datastreams" if key.contains(".sources") => "[[datastreams.sources]]",
        "datastreams" => "[[datastreams]]",
        _ => "the top of the page (file format and layers)",
    }
}

fn config_check(path: &Path) -> Result<()> {
    match NodeConfig::load(path) {
        Ok(_) => check_config(path),
        Err(error) => {
            eprintln!("{}: invalid", path.display());
            eprintln!("  setting: {}", error.key);
            eprintln!("  problem: {}", error.reason);
            eprintln!(
                "  see:     docs/configuration.md, {} (every setting, its default and allowed values)",
                section_of(&error.key)
            );
            eprintln!("  (the first problem found is reported; run again after fixing it)");
            Err(error.into())
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // A server logs in the format its config asks for; a bad config is reported below, as text.
    let json = match &cli.command {
        Command::Server { config } => NodeConfig::load(config)
            .is_ok_and(|c| c.node.log_format == aqueduct_model::config::LogFormat::Json),
        _ => false,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AQUEDUCT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if json {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let result = match cli.command {
        Command::Server { config } => server(&config),
        Command::CheckConfig { config } => check_config(&config),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Stream {
            connection,
            command,
        } => client::stream(&connection, command),
        Command::Instances { connection } => client::instances(&connection),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The API refused the request: its answer is the message.
        Err(error) if error.downcast_ref::<client::Refused>().is_some() => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn check_config(path: &Path) -> Result<()> {
    let config = NodeConfig::load(path)?;
    println!("{}: valid", path.display());
    for stream in &config.datastreams {
        let sources: Vec<&str> = stream.sources.iter().map(|s| s.cluster.as_str()).collect();
        println!(
            "  datastream {}: {} -> {} ({})",
            stream.name,
            sources.join(","),
            stream.destination,
            stream.destination_topic
        );
    }
    Ok(())
}

fn server(path: &Path) -> Result<()> {
    let config = NodeConfig::load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the runtime")?;
    let status_every = config.node.status_interval_secs;
    let status_file = config.node.status_file.clone().map(PathBuf::from);
    let engine = runtime.block_on(async {
        let listen = config.api.listen.clone();
        let node = aqueduct_control::Node::start(config).context("start the node")?;
        let engine = Arc::clone(&node.engine);
        let (api_stop, mut api_stopped) = tokio::sync::watch::channel(false);
        if let Some(address) = listen {
            let listener = tokio::net::TcpListener::bind(&address)
                .await
                .with_context(|| format!("api.listen: cannot listen on {address}"))?;
            let state = Arc::new(
                aqueduct_api::ApiState::new(Arc::clone(&node.handle))
                    .context("api.audit_log: cannot open the audit log")?,
            );
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = api_stopped.wait_for(|stop| *stop).await;
                };
                if let Err(error) = aqueduct_api::serve(listener, state, shutdown).await {
                    warn!(%error, "the REST API stopped");
                }
            });
        }
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("listen for SIGTERM")?;
        if status_every > 0 {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_secs(status_every));
                loop {
                    ticker.tick().await;
                    report(&engine.status(), status_file.as_deref());
                }
            });
        }
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => info!("interrupted; shutting down"),
                _ = terminate.recv() => info!("terminated; shutting down"),
            }
            let _ = api_stop.send(true);
        };
        node.run(shutdown).await;
        anyhow::Ok(engine)
    })?;
    // Every task is stopped and committed; end the status reporter, then flush what the producers hold.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match Arc::try_unwrap(engine) {
        Ok(engine) => engine.shutdown(),
        Err(engine) => drop(engine),
    }
    info!("stopped");
    Ok(())
}

/// Logs one line per datastream and writes the status snapshot file, if one is configured.
fn report(status: &NodeStatus, file: Option<&Path>) {
    for stream in &status.streams {
        let partitions = stream.partitions().count();
        let unhealthy: Vec<String> = stream
            .partitions()
            .filter(|p| !matches!(p.health, aqueduct_engine::status::PartitionHealth::Running))
            .map(|p| format!("{}-{}", p.topic, p.partition))
            .collect();
        info!(
            stream = %stream.name,
            tasks = stream.tasks.len(),
            partitions,
            records = stream.records_acked(),
            unhealthy = ?unhealthy,
            errors = ?stream.errors,
            "status"
        );
    }
    if let Some(file) = file {
        let write = serde_json::to_vec_pretty(status)
            .map_err(anyhow::Error::from)
            .and_then(|json| {
                let tmp = file.with_extension("tmp");
                std::fs::write(&tmp, json)?;
                std::fs::rename(&tmp, file)?;
                Ok(())
            });
        if let Err(error) = write {
            warn!(file = %file.display(), %error, "cannot write status file");
        }
    }
}
