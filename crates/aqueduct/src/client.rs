//! `aqueduct stream ...` and `aqueduct instances`: the REST API from the command line. Human-readable tables
//! by default, the API's JSON with `--json`.

use std::io::Read;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// Where the API is and who calls it.
#[derive(Debug, Args)]
pub struct Connection {
    /// Base URL of any node's API.
    #[arg(
        long,
        env = "AQUEDUCT_API",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    api: String,
    /// Bearer token (the secret, not its hash).
    #[arg(long, env = "AQUEDUCT_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Creates a datastream from a JSON definition (a file, or `-` for standard input).
    Create {
        #[arg(long, short)]
        file: String,
    },
    /// Lists datastreams.
    List {
        #[arg(long)]
        owner: Option<String>,
        /// initializing, running, paused or error.
        #[arg(long)]
        status: Option<String>,
    },
    /// Shows a datastream: definition, tasks, paused partitions, lag.
    Get { name: String },
    /// Changes what may change at run time, from a JSON object of fields (a file, or `-`).
    Update {
        name: String,
        #[arg(long, short)]
        file: String,
    },
    /// Deletes a datastream (its destination topics are kept).
    Delete { name: String },
    /// Pauses a datastream on every node.
    Pause { name: String },
    /// Resumes a datastream from its committed offsets.
    Resume { name: String },
    /// Pauses source partitions: `--topic orders --partitions 0,3` or `--partitions '*'`.
    PausePartitions {
        name: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partitions: String,
    },
    /// Resumes source partitions (same arguments as pause-partitions).
    ResumePartitions {
        name: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partitions: String,
    },
}

/// What a call got back: the status and the JSON body.
struct Answer {
    status: u16,
    body: Value,
}

impl Connection {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Answer> {
        let url = format!("{}{path}", self.api.trim_end_matches('/'));
        let mut request = ureq::request(method, &url).timeout(Duration::from_secs(60));
        if let Some(token) = &self.token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => request.send_json(body.clone()),
            None => request.call(),
        };
        let (status, response) = match result {
            Ok(response) => (response.status(), response),
            Err(ureq::Error::Status(status, response)) => (status, response),
            Err(error) => bail!("cannot reach the API at {}: {error}", self.api),
        };
        let text = response.into_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }
}

/// An API refusal: printed, and the process exits with status 1.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn expect_success(answer: Answer) -> Result<Value> {
    if (200..300).contains(&answer.status) {
        return Ok(answer.body);
    }
    let error = answer.body["error"].as_str().unwrap_or("no reason given");
    let field = answer.body["field"]
        .as_str()
        .map(|f| format!(" (field `{f}`)"))
        .unwrap_or_default();
    Err(Refused(format!("{}: {error}{field}", answer.status)).into())
}

fn read_json(file: &str) -> Result<Value> {
    let mut text = String::new();
    if file == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("read standard input")?;
    } else {
        text = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
    }
    serde_json::from_str(&text).with_context(|| format!("{file} is not valid JSON"))
}

fn selection(topic: &str, partitions: &str) -> Result<Value> {
    if partitions.trim() == "*" {
        return Ok(json!({ topic: "*" }));
    }
    let numbers = partitions
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .with_context(|| format!("`{p}` is not a partition number (use 0,3 or '*')"))
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok(json!({ topic: numbers }))
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints rows as aligned columns.
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn print_stream(stream: &Value) {
    let definition = &stream["definition"];
    let status = &stream["status"];
    println!("name:         {}", text(&stream["name"]));
    println!("owner:        {}", text(&definition["owner"]));
    println!("state:        {}", text(&status["state"]));
    println!("version:      {}", text(&stream["version"]));
    println!(
        "destination:  {} ({})",
        text(&definition["destination"]),
        text(&definition["destination_topic"])
    );
    for source in definition["sources"].as_array().into_iter().flatten() {
        let topics = if source["topics"].as_array().is_some_and(|t| !t.is_empty()) {
            text(&source["topics"])
        } else {
            text(&source["topic_pattern"])
        };
        println!("source:       {} {topics}", text(&source["cluster"]));
    }
    if let Some(paused) = status["paused_partitions"]
        .as_object()
        .filter(|p| !p.is_empty())
    {
        println!("paused partitions: {}", Value::Object(paused.clone()));
    }
    for problem in status["auto_paused_partitions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!("stopped:      {}", text(problem));
    }
    println!();
    let rows: Vec<Vec<String>> = status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                format!("{}/{}", text(&t["index"]), text(&t["count"])),
                text(&t["node"]),
                text(&t["state"]),
                text(&t["partitions"]),
                text(&t["reason"]),
            ]
        })
        .collect();
    table(&["TASK", "NODE", "STATE", "PARTITIONS", "REASON"], &rows);
    if let Some(lag) = stream["lag"].as_array() {
        println!();
        let rows: Vec<Vec<String>> = lag
            .iter()
            .map(|p| {
                vec![
                    format!(
                        "{}/{}-{}",
                        text(&p["source"]),
                        text(&p["topic"]),
                        text(&p["partition"])
                    ),
                    text(&p["end_offset"]),
                    text(&p["committed_offset"]),
                    text(&p["lag"]),
                ]
            })
            .collect();
        table(&["PARTITION", "END", "COMMITTED", "LAG"], &rows);
    } else if let Some(error) = stream["lag_error"].as_str() {
        println!("\nlag: {error}");
    }
}

fn print(connection: &Connection, value: &Value, human: impl FnOnce(&Value)) {
    if connection.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        human(value);
    }
}

pub fn stream(connection: &Connection, command: StreamCommand) -> Result<()> {
    let path = |name: &str, action: &str| format!("/v1/datastreams/{name}{action}");
    let (answer, single) = match &command {
        StreamCommand::Create { file } => (
            connection.call("POST", "/v1/datastreams", Some(&read_json(file)?))?,
            true,
        ),
        StreamCommand::List { owner, status } => {
            let mut query = vec!["limit=1000".to_string()];
            if let Some(owner) = owner {
                query.push(format!("owner={owner}"));
            }
            if let Some(status) = status {
                query.push(format!("status={status}"));
            }
            (
                connection.call("GET", &format!("/v1/datastreams?{}", query.join("&")), None)?,
                false,
            )
        }
        StreamCommand::Get { name } => (connection.call("GET", &path(name, ""), None)?, true),
        StreamCommand::Update { name, file } => (
            connection.call("PATCH", &path(name, ""), Some(&read_json(file)?))?,
            true,
        ),
        StreamCommand::Delete { name } => {
            expect_success(connection.call("DELETE", &path(name, ""), None)?)?;
            if !connection.json {
                println!("datastream {name} deleted (its destination topics are kept)");
            }
            return Ok(());
        }
        StreamCommand::Pause { name } => {
            (connection.call("POST", &path(name, "/pause"), None)?, true)
        }
        StreamCommand::Resume { name } => {
            (connection.call("POST", &path(name, "/resume"), None)?, true)
        }
        StreamCommand::PausePartitions {
            name,
            topic,
            partitions,
        }
        | StreamCommand::ResumePartitions {
            name,
            topic,
            partitions,
        } => {
            let action = if matches!(command, StreamCommand::PausePartitions { .. }) {
                "/partitions/pause"
            } else {
                "/partitions/resume"
            };
            let body = selection(topic, partitions)?;
            (
                connection.call("POST", &path(name, action), Some(&body))?,
                true,
            )
        }
    };
    let body = expect_success(answer)?;
    if single {
        print(connection, &body, print_stream);
    } else {
        print(connection, &body, |list| {
            let rows: Vec<Vec<String>> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    vec![
                        text(&s["name"]),
                        text(&s["owner"]),
                        text(&s["state"]),
                        text(&s["version"]),
                    ]
                })
                .collect();
            table(&["NAME", "OWNER", "STATE", "VERSION"], &rows);
        });
    }
    Ok(())
}

pub fn instances(connection: &Connection) -> Result<()> {
    let body = expect_success(connection.call("GET", "/v1/instances", None)?)?;
    print(connection, &body, |view| {
        println!(
            "mode: {}   leader: {}   generation: {}",
            text(&view["mode"]),
            text(&view["leader"]),
            text(&view["generation"])
        );
        let rows: Vec<Vec<String>> = view["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                let tasks = i["tasks"].as_array().map_or(0, Vec::len);
                vec![
                    text(&i["name"]),
                    if i["leader"] == true {
                        "yes".to_string()
                    } else {
                        String::new()
                    },
                    format!("{tasks}/{}", text(&i["max_tasks"])),
                ]
            })
            .collect();
        table(&["INSTANCE", "LEADER", "TASKS/CAP"], &rows);
        let unassigned: Vec<String> = view["unassigned"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "{}[{}/{}]",
                    text(&t["stream"]),
                    text(&t["index"]),
                    text(&t["count"])
                )
            })
            .collect();
        if unassigned.is_empty() {
            println!("unassigned tasks: none");
        } else {
            println!(
                "unassigned tasks ({}): {}",
                unassigned.len(),
                unassigned.join(", ")
            );
        }
    });
    Ok(())
}
