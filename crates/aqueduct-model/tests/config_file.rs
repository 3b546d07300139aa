//! Loading and validating `aqueduct.toml`.

use aqueduct_model::config::{NodeConfig, OutOfRangePolicy, Partitioning, StartPosition};

const VALID: &str = r#"
[node]
max_in_flight_bytes = 67108864

[clusters.dc1]
bootstrap_servers = "127.0.0.1:9092"
[clusters.dc1.properties]
"security.protocol" = "plaintext"
"client.id" = "aqueduct-DC1"

[clusters.agg]
bootstrap_servers = "127.0.0.1:9093,127.0.0.1:9094"

[[datastreams]]
name = "dc1-orders"
destination = "agg"
destination_topic = "dc1.{topic}"
partitioning = "key-hash"
start_position = "latest"
on_offset_out_of_range = "reset-earliest"
[[datastreams.sources]]
cluster = "dc1"
topic_pattern = "orders\\..*"
exclude_pattern = ".*\\.tmp"
[datastreams.producer_properties]
"compression.type" = "lz4"
"#;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn error_of(toml: &str) -> String {
    NodeConfig::from_sources(toml, no_env())
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn a_full_config_loads_with_defaults_filled_in() {
    let config = NodeConfig::from_sources(VALID, no_env()).unwrap();
    assert_eq!(config.node.max_in_flight_bytes, 64 * 1024 * 1024);
    assert_eq!(config.node.producers_per_destination, 2);
    assert_eq!(
        config.clusters["dc1"].properties["client.id"], "aqueduct-DC1",
        "property names with dots and values keep their case"
    );
    let stream = &config.datastreams[0];
    assert_eq!(stream.partitioning, Partitioning::KeyHash);
    assert_eq!(stream.start_position, StartPosition::Latest);
    assert_eq!(
        stream.on_offset_out_of_range,
        OutOfRangePolicy::ResetEarliest
    );
    assert_eq!(stream.group_id(), "aqueduct-dc1-orders");
    assert_eq!(stream.max_tasks, 4);
    assert_eq!(stream.producer_properties["compression.type"], "lz4");
}

#[test]
fn environment_overrides_the_file() {
    let env = vec![
        (
            "AQUEDUCT__NODE__MAX_IN_FLIGHT_BYTES".to_string(),
            "2097152".to_string(),
        ),
        (
            "AQUEDUCT__CLUSTERS__AGG__BOOTSTRAP_SERVERS".to_string(),
            "127.0.0.1:19092".to_string(),
        ),
    ];
    let config = NodeConfig::from_sources(VALID, env).unwrap();
    assert_eq!(config.node.max_in_flight_bytes, 2 * 1024 * 1024);
    assert_eq!(config.clusters["agg"].bootstrap_servers, "127.0.0.1:19092");
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let error = error_of(&VALID.replace("[node]", "[node]\nmax_inflight = 3"));
    assert!(error.contains("max_inflight"), "{error}");
    let error = NodeConfig::from_sources(
        VALID,
        vec![("AQUEDUCT__NODE__BOGUS".to_string(), "1".to_string())],
    )
    .expect_err("unknown env key")
    .to_string();
    assert!(error.contains("bogus"), "{error}");
}

#[test]
fn validation_names_the_key() {
    let cases = [
        (
            VALID.replace("orders\\\\..*", "orders(["),
            "datastreams[0].sources[0].topic_pattern",
        ),
        (
            VALID.replace("cluster = \"dc1\"", "cluster = \"nowhere\""),
            "datastreams[0].sources[0].cluster",
        ),
        (
            VALID.replace("destination = \"agg\"", "destination = \"nowhere\""),
            "datastreams[0].destination",
        ),
        (
            VALID.replace("dc1.{topic}", "{topic}-{partition}"),
            "datastreams[0].destination_topic",
        ),
        (
            VALID.replace("name = \"dc1-orders\"", "name = \"bad name!\""),
            "datastreams[0].name",
        ),
        (
            VALID.replace("127.0.0.1:9092\"", "localhost\""),
            "clusters.dc1.bootstrap_servers",
        ),
        (
            VALID.replace("max_in_flight_bytes = 67108864", "max_in_flight_bytes = 10"),
            "node.max_in_flight_bytes",
        ),
        (
            VALID.replace("\"compression.type\"", "\"acks\""),
            "datastreams[0].producer_properties.acks",
        ),
        (
            VALID.replace(
                "partitioning = \"key-hash\"",
                "partitioning = \"round-robin\"",
            ),
            "round-robin",
        ),
        (
            VALID.replace("\"compression.type\"", "\"request.required.acks\""),
            "datastreams[0].producer_properties.request.required.acks",
        ),
        (
            VALID.replace("\"client.id\"", "\"enable.idempotence\""),
            "clusters.dc1.properties.enable.idempotence",
        ),
        (
            VALID.replace(
                "max_in_flight_bytes = 67108864",
                "max_in_flight_bytes = 4294967296",
            ),
            "node.max_in_flight_bytes",
        ),
    ];
    for (toml, key) in cases {
        let error = error_of(&toml);
        assert!(error.contains(key), "expected `{key}` in: {error}");
    }
}

#[test]
fn dot_names_are_refused_with_their_key() {
    for dots in [".", ".."] {
        let error =
            error_of(&VALID.replace("name = \"dc1-orders\"", &format!("name = \"{dots}\"")));
        assert!(
            error.contains("datastreams[0].name") && error.contains("refused"),
            "{error}"
        );
        let error = error_of(&format!("[cluster]\ninstance = \"{dots}\"\n{VALID}"));
        assert!(
            error.contains("cluster.instance") && error.contains("refused"),
            "{error}"
        );
        let error = error_of(
            &VALID
                .replace("[clusters.agg]", &format!("[clusters.\"{dots}\"]"))
                .replace(
                    "destination = \"agg\"",
                    &format!("destination = \"{dots}\""),
                ),
        );
        assert!(error.contains("refused"), "{error}");
    }
    // Dots inside a name stay allowed.
    assert!(NodeConfig::from_sources(&VALID.replace("dc1-orders", "dc1.orders"), no_env()).is_ok());
}

#[test]
fn mirroring_a_cluster_into_itself_needs_a_new_topic_name() {
    let toml = VALID
        .replace("destination = \"agg\"", "destination = \"dc1\"")
        .replace("dc1.{topic}", "{topic}");
    let error = error_of(&toml);
    assert!(
        error.contains("datastreams[0].destination_topic"),
        "{error}"
    );
    // The same cluster under another name and spelling is still the same cluster.
    let toml = VALID
        .replace(
            "127.0.0.1:9093,127.0.0.1:9094",
            "127.0.0.1:9093, 127.0.0.1:9092",
        )
        .replace("dc1.{topic}", "{topic}");
    let error = error_of(&toml);
    assert!(
        error.contains("datastreams[0].destination_topic"),
        "{error}"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let error = NodeConfig::load(std::path::Path::new("/nonexistent/aqueduct.toml"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("does not exist"), "{error}");
}
