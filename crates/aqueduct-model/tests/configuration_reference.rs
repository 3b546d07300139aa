//! `docs/configuration.md` documents every setting with the default the code uses.

use std::collections::BTreeMap;

use aqueduct_model::config::{ApiSettings, ClusterSettings, NodeConfig, NodeSettings};
use serde_json::Value;

/// The rows of the table under `heading`: key -> default cell.
fn table(markdown: &str, heading: &str) -> BTreeMap<String, String> {
    let start = markdown
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("docs/configuration.md has no section `{heading}`"));
    let section = &markdown[start + heading.len() + 2..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let key = cells[0]
            .trim_start_matches("| ")
            .trim_matches('`')
            .to_string();
        if cells.len() > 2 {
            rows.entry(key)
                .or_insert_with(|| cells[2].trim().to_string());
        }
    }
    rows
}

/// Whether a default cell states `value`.
fn states(cell: &str, value: &Value) -> bool {
    match value {
        Value::Null => !cell.starts_with('`'),
        Value::Bool(b) => cell.starts_with(&format!("`{b}`")),
        Value::Number(n) => cell.starts_with(&format!("`{n}`")),
        Value::String(s) => cell.starts_with(&format!("`\"{s}\"`")),
        Value::Array(a) if a.is_empty() => cell.starts_with("`[]`"),
        Value::Object(o) if o.is_empty() => cell.starts_with("`{}`"),
        _ => false,
    }
}

fn check(markdown: &str, heading: &str, defaults: Value) {
    let rows = table(markdown, heading);
    let Value::Object(fields) = defaults else {
        panic!("defaults of {heading} are not an object")
    };
    for (key, value) in fields {
        let cell = rows.get(&key).unwrap_or_else(|| {
            panic!("docs/configuration.md `{heading}` does not document `{key}`")
        });
        assert!(
            states(cell, &value),
            "docs/configuration.md `{heading}` `{key}`: the code's default is {value}, the docs say {cell}"
        );
    }
}

#[test]
fn every_setting_is_documented_with_its_default() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let markdown = std::fs::read_to_string(path).unwrap();
    check(
        &markdown,
        "## `[node]`",
        serde_json::to_value(NodeSettings::default()).unwrap(),
    );
    let mut cluster = serde_json::to_value(ClusterSettings::default()).unwrap();
    // The instance defaults to the host name, which the docs say in words.
    cluster["instance"] = Value::Null;
    check(&markdown, "## `[cluster]`", cluster);
    check(
        &markdown,
        "## `[api]`",
        serde_json::to_value(ApiSettings::default()).unwrap(),
    );

    // Datastream defaults: a minimal stream, with its required fields taken out.
    let config = NodeConfig::from_sources(
        "[clusters.a]\nbootstrap_servers = \"127.0.0.1:1\"\n[clusters.b]\nbootstrap_servers = \"127.0.0.1:2\"\n\
         [[datastreams]]\nname = \"s\"\ndestination = \"b\"\n[[datastreams.sources]]\ncluster = \"a\"\ntopic_pattern = \"x\"\n",
        Vec::new(),
    )
    .unwrap();
    let mut stream = serde_json::to_value(&config.datastreams[0]).unwrap();
    let object = stream.as_object_mut().unwrap();
    for required in ["name", "destination", "sources"] {
        object.remove(required);
    }
    // `group_id` defaults to `aqueduct-<name>`, which the docs spell out.
    object.remove("group_id");
    check(&markdown, "## `[[datastreams]]`", stream);
    let rows = table(&markdown, "## `[[datastreams]]`");
    assert!(rows["group_id"].contains("aqueduct-<name>"));
}
