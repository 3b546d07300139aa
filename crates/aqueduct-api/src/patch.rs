//! What may change in a running datastream, and how pauses of single partitions combine. Pure logic.

use std::collections::{BTreeMap, BTreeSet};

use aqueduct_model::config::{validate_topic_name, AllPartitions, DatastreamConfig, PartitionSet};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::error::{field_of, ApiError};

/// Fields a PATCH may change at any time.
pub const MUTABLE: &[&str] = &[
    "owner",
    "sources",
    "consumer_properties",
    "producer_properties",
    "max_tasks",
    "max_tasks_per_instance",
    "topic_refresh_interval_secs",
    "start_position",
    "start_offsets",
    "on_offset_out_of_range",
    "on_source_topic_recreated",
    "create_topics",
    "replication_factor",
];

/// Fields that identify where records go or whose offsets they are: fixed for the stream's life.
pub const FIXED: &[&str] = &["name", "destination", "partitioning", "group_id"];

/// The result of applying a PATCH body.
#[derive(Debug, Clone, PartialEq)]
pub struct Patched {
    pub stream: DatastreamConfig,
    /// The destination topic name changes: allowed only while nothing was mirrored.
    pub renames_destination: bool,
}

fn unprocessable(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message).with_field(field)
}

/// Applies a PATCH body (a JSON object of fields to replace) to `current`.
pub fn apply(current: &DatastreamConfig, body: &Value) -> Result<Patched, ApiError> {
    let Some(changes) = body.as_object() else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object of the fields to change",
        ));
    };
    let mut merged: Map<String, Value> = match serde_json::to_value(current) {
        Ok(Value::Object(map)) => map,
        _ => {
            return Err(ApiError::bad_request(
                "the stored datastream cannot be patched",
            ))
        }
    };
    let mut renames_destination = false;
    for (field, value) in changes {
        let field = field.as_str();
        if MUTABLE.contains(&field) {
            merged.insert(field.to_string(), value.clone());
        } else if field == "destination_topic" {
            renames_destination = merged.get(field) != Some(value);
            merged.insert(field.to_string(), value.clone());
        } else if field == "paused" || field == "paused_partitions" {
            return Err(unprocessable(
                field,
                "pauses change through POST /v1/datastreams/{name}/pause, /resume, /partitions/pause and /partitions/resume",
            ));
        } else if FIXED.contains(&field) {
            if merged.get(field) != Some(value) {
                return Err(unprocessable(
                    field,
                    format!("`{field}` cannot change while the stream exists; create a new datastream instead"),
                ));
            }
        } else {
            return Err(ApiError::invalid(field, format!("unknown field `{field}`")));
        }
    }
    let stream: DatastreamConfig = serde_json::from_value(Value::Object(merged)).map_err(|e| {
        let message = e.to_string();
        let field = field_of(&message);
        let error = ApiError::bad_request(message);
        match field {
            Some(field) => error.with_field(field),
            None => error,
        }
    })?;
    let clusters = |s: &DatastreamConfig| -> Vec<String> {
        s.sources.iter().map(|s| s.cluster.clone()).collect()
    };
    if clusters(&stream) != clusters(current) {
        return Err(unprocessable(
            "sources",
            "the source clusters cannot change (topics, topic_pattern and exclude_pattern can); create a new datastream instead",
        ));
    }
    Ok(Patched {
        stream,
        renames_destination,
    })
}

/// A body such as `{"topic-a": [0, 3], "topic-b": "*"}`.
pub fn parse_selection(body: &Value) -> Result<BTreeMap<String, PartitionSet>, ApiError> {
    let Some(topics) = body.as_object() else {
        return Err(ApiError::bad_request(
            "the body must be an object of topic names to \"*\" or a list of partition numbers",
        ));
    };
    if topics.is_empty() {
        return Err(ApiError::bad_request("name at least one topic"));
    }
    let mut selection = BTreeMap::new();
    for (topic, partitions) in topics {
        validate_topic_name(topic, topic)
            .map_err(|e| ApiError::invalid(topic.clone(), e.reason))?;
        let set = match partitions {
            Value::String(star) if star == "*" => PartitionSet::All(AllPartitions),
            Value::Array(numbers) if !numbers.is_empty() => {
                let mut set = BTreeSet::new();
                for number in numbers {
                    let partition = number
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n < 1_000_000)
                        .ok_or_else(|| {
                            ApiError::invalid(
                                topic.clone(),
                                format!("`{number}` is not a partition number"),
                            )
                        })?;
                    set.insert(partition);
                }
                PartitionSet::Some(set)
            }
            other => {
                return Err(ApiError::invalid(
                    topic.clone(),
                    format!("expected \"*\" or a non-empty list of partition numbers, got {other}"),
                ))
            }
        };
        selection.insert(topic.clone(), set);
    }
    Ok(selection)
}

/// Adds `selection` to the paused partitions.
pub fn pause(
    paused: &BTreeMap<String, PartitionSet>,
    selection: &BTreeMap<String, PartitionSet>,
) -> BTreeMap<String, PartitionSet> {
    let mut result = paused.clone();
    for (topic, set) in selection {
        let merged = match (result.get(topic), set) {
            (Some(PartitionSet::All(_)), _) | (_, PartitionSet::All(_)) => {
                PartitionSet::All(AllPartitions)
            }
            (Some(PartitionSet::Some(old)), PartitionSet::Some(new)) => {
                PartitionSet::Some(old.union(new).copied().collect())
            }
            (None, new) => new.clone(),
        };
        result.insert(topic.clone(), merged);
    }
    result
}

/// Removes `selection` from the paused partitions. A topic paused as a whole resumes only as a whole.
pub fn resume(
    paused: &BTreeMap<String, PartitionSet>,
    selection: &BTreeMap<String, PartitionSet>,
) -> Result<BTreeMap<String, PartitionSet>, ApiError> {
    let mut result = paused.clone();
    for (topic, set) in selection {
        match (result.get(topic), set) {
            (None, _) => {}
            (Some(_), PartitionSet::All(_)) => {
                result.remove(topic);
            }
            (Some(PartitionSet::All(_)), PartitionSet::Some(_)) => {
                return Err(ApiError::conflict(format!(
                    "topic `{topic}` is paused as a whole; resume it with \"*\""
                ))
                .with_field(topic.clone()))
            }
            (Some(PartitionSet::Some(old)), PartitionSet::Some(new)) => {
                let left: BTreeSet<u32> = old.difference(new).copied().collect();
                if left.is_empty() {
                    result.remove(topic);
                } else {
                    result.insert(topic.clone(), PartitionSet::Some(left));
                }
            }
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aqueduct_model::config::NodeConfig;
    use serde_json::json;

    fn stream() -> DatastreamConfig {
        NodeConfig::from_sources(
            "[clusters.a]\nbootstrap_servers = \"127.0.0.1:1\"\n[clusters.b]\nbootstrap_servers = \"127.0.0.1:2\"\n\
             [[datastreams]]\nname = \"s\"\ndestination = \"b\"\n[[datastreams.sources]]\ncluster = \"a\"\ntopic_pattern = \"x.*\"\n",
            Vec::new(),
        )
        .unwrap()
        .datastreams
        .remove(0)
    }

    #[test]
    fn run_time_fields_change_and_the_rest_is_refused_with_a_reason() {
        let current = stream();
        let patched = apply(
            &current,
            &json!({"max_tasks": 8, "sources": [{"cluster": "a", "topic_pattern": "y.*"}]}),
        )
        .unwrap();
        assert_eq!(patched.stream.max_tasks, 8);
        assert_eq!(
            patched.stream.sources[0].topic_pattern.as_deref(),
            Some("y.*")
        );
        assert!(!patched.renames_destination);

        let error = apply(&current, &json!({"destination": "a"})).unwrap_err();
        assert_eq!(
            (error.status, error.field.as_deref()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("destination"))
        );
        let error = apply(&current, &json!({"paused": true})).unwrap_err();
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        let error = apply(&current, &json!({"colour": "red"})).unwrap_err();
        assert_eq!(
            (error.status, error.field.as_deref()),
            (StatusCode::BAD_REQUEST, Some("colour"))
        );
        let error = apply(&current, &json!({"max_tasks": "many"})).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        let error = apply(
            &current,
            &json!({"sources": [{"cluster": "b", "topics": ["t"]}]}),
        )
        .unwrap_err();
        assert_eq!(error.field.as_deref(), Some("sources"));
        assert_eq!(
            apply(&current, &json!([1])).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        // Repeating a fixed field unchanged is fine; renaming the destination is flagged.
        assert!(apply(&current, &json!({"name": "s"})).is_ok());
        assert!(
            apply(&current, &json!({"destination_topic": "m.{topic}"}))
                .unwrap()
                .renames_destination
        );
    }

    #[test]
    fn partition_pauses_combine_and_resume() {
        let a = parse_selection(&json!({"t1": [0, 3], "t2": "*"})).unwrap();
        let paused = pause(&BTreeMap::new(), &a);
        let more = pause(&paused, &parse_selection(&json!({"t1": [5]})).unwrap());
        assert_eq!(more["t1"], PartitionSet::Some(BTreeSet::from([0, 3, 5])));
        let resumed = resume(&more, &parse_selection(&json!({"t1": [0, 3, 5]})).unwrap()).unwrap();
        assert!(!resumed.contains_key("t1"));
        assert!(resume(&more, &parse_selection(&json!({"t2": [1]})).unwrap()).is_err());
        assert!(
            !resume(&more, &parse_selection(&json!({"t2": "*"})).unwrap())
                .unwrap()
                .contains_key("t2")
        );
        for bad in [
            json!({}),
            json!([]),
            json!({"t": []}),
            json!({"t": "all"}),
            json!({"t": [-1]}),
            json!({"bad name": "*"}),
        ] {
            assert_eq!(
                parse_selection(&bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
