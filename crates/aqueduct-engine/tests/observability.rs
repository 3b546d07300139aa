//! The Grafana dashboard, the Prometheus alert rules and `docs/metrics.md` name only metrics Aqueduct exports,
//! and the dashboard loads: every panel has a query, every variable uses a real label.

use std::collections::BTreeSet;
use std::path::PathBuf;

use aqueduct_engine::metrics::METRICS;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `aqueduct_*` name in `text`.
fn names(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(start) = text[i..].find("aqueduct_").map(|s| s + i) {
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end] == b'_'
                || bytes[end].is_ascii_digit())
        {
            end += 1;
        }
        // `aqueduct_<subsystem>...` in prose is a pattern, not a name.
        if before_ok && !text[start..end].ends_with('_') {
            found.insert(text[start..end].to_string());
        }
        i = end.max(start + 1);
    }
    found
}

/// Whether `name` is an exported series name: a declared metric, or a histogram's bucket, sum or count.
fn exported(name: &str) -> bool {
    METRICS.iter().any(|(declared, kind, _)| {
        name == *declared
            || (*kind == "histogram"
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(declared)))
    })
}

/// Labels a metric carries, as the exporter writes them (plus the ones Prometheus adds).
fn labels_of(metric: &str) -> BTreeSet<&'static str> {
    let mut labels: BTreeSet<&str> = ["instance", "job"].into();
    let own: &[&str] = match metric {
        "aqueduct_producer_errors_total" => &["datastream", "code"],
        "aqueduct_partition_lag_records" => &["datastream", "topic", "partition"],
        "aqueduct_partition_paused_partitions" => &["datastream", "reason"],
        "aqueduct_producer_pool_producers" | "aqueduct_producer_pool_queued_records" => &["pool"],
        m if m.starts_with("aqueduct_stream_") => &["datastream"],
        _ => &[],
    };
    labels.extend(own);
    labels
}

#[test]
fn the_dashboard_loads_and_queries_only_exported_metrics() {
    let text =
        std::fs::read_to_string(root().join("deploy/grafana/aqueduct-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    let mut queried = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("panel `{title}` has no query"));
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel `{title}`: a target without expr"));
            let used = names(expr);
            assert!(
                !used.is_empty(),
                "panel `{title}` queries no Aqueduct metric: {expr}"
            );
            for name in used {
                assert!(
                    exported(&name),
                    "panel `{title}` queries `{name}`, which Aqueduct does not export"
                );
                queried.insert(name);
            }
            // Selectors on the dashboard's variables use labels the metric has.
            for (variable, label) in [("$datastream", "datastream"), ("$node", "instance")] {
                if expr.contains(variable) {
                    for name in names(expr) {
                        let base = name.trim_end_matches("_bucket");
                        assert!(
                            labels_of(base).contains(label),
                            "panel `{title}`: `{base}` has no label `{label}`"
                        );
                    }
                }
            }
        }
    }
    // The variables exist and read real labels of real metrics.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let by_name: Vec<&str> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(by_name, ["datastream", "node"]);
    for variable in variables {
        let query = variable["query"].as_str().unwrap();
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .expect("label_values(metric, label)");
        let (metric, label) = inner.split_once(',').unwrap();
        let (metric, label) = (metric.trim(), label.trim());
        assert!(exported(metric), "variable queries `{metric}`");
        assert!(
            labels_of(metric).contains(label),
            "`{metric}` has no label `{label}`"
        );
    }
    // The dashboard covers what operators watch.
    for needed in [
        "aqueduct_stream_records_produced_total",
        "aqueduct_partition_lag_records",
        "aqueduct_stream_replication_latency_seconds_bucket",
        "aqueduct_producer_errors_total",
        "aqueduct_node_tasks",
        "aqueduct_cluster_leader",
        "aqueduct_cluster_unassigned_tasks",
    ] {
        assert!(queried.contains(needed), "no panel shows {needed}");
    }
}

#[test]
fn alert_rules_use_only_exported_metrics() {
    let text = std::fs::read_to_string(root().join("deploy/grafana/aqueduct-alerts.yml")).unwrap();
    let exprs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .collect();
    let alerts: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    assert_eq!(exprs.len(), alerts.len(), "every alert has one expression");
    for wanted in [
        "AqueductLagGrowing",
        "AqueductStreamInError",
        "AqueductUnassignedTasks",
        "AqueductNoLeader",
        "AqueductNodeDown",
    ] {
        assert!(alerts.contains(&wanted), "missing alert {wanted}");
    }
    for expr in exprs {
        for name in names(expr) {
            assert!(
                exported(&name),
                "alert rule uses `{name}`, which Aqueduct does not export: {expr}"
            );
        }
        assert!(
            !names(expr).is_empty() || expr.contains("up{job=\"aqueduct\"}"),
            "{expr}"
        );
    }
}

#[test]
fn the_metrics_page_lists_exactly_the_exported_metrics() {
    let text = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    let documented = names(&text);
    for (name, _, _) in METRICS {
        assert!(
            documented.contains(*name),
            "docs/metrics.md does not list {name}"
        );
    }
    for name in &documented {
        assert!(
            exported(name),
            "docs/metrics.md names `{name}`, which is not exported"
        );
    }
}
