//! `docs/rest-api.md` and the OpenAPI document agree: every curl example is a documented operation, and
//! every operation has a curl example.

use std::collections::BTreeSet;

use serde_json::Value;

/// (method, path) of every curl example, with the path as written.
fn curl_examples(markdown: &str) -> Vec<(String, String)> {
    let mut calls = Vec::new();
    for line in markdown
        .lines()
        .filter(|l| l.trim_start().starts_with("curl "))
    {
        let method = line
            .split_whitespace()
            .skip_while(|w| *w != "-X")
            .nth(1)
            .unwrap_or("GET")
            .to_string();
        let start = line
            .find("\"$API")
            .expect("curl examples call \"$API/...\"")
            + 5;
        let rest = &line[start..];
        let end = rest.find(['"', '?']).expect("the URL is quoted");
        calls.push((method, rest[..end].to_string()));
    }
    calls
}

/// Whether a concrete path matches a templated one (`{name}` matches one segment).
fn matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

#[test]
fn every_curl_example_is_an_operation_and_every_operation_has_one() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let markdown = std::fs::read_to_string(root.join("docs/rest-api.md")).unwrap();
    let doc: Value = serde_json::from_str(aqueduct_api::OPENAPI).unwrap();
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "patch", "delete", "put"] {
            if item.get(method).is_some() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let examples = curl_examples(&markdown);
    assert!(examples.len() >= operations.len());
    let mut covered = BTreeSet::new();
    for (method, path) in &examples {
        let operation = operations
            .iter()
            .find(|(m, p)| m == method && matches(p, path))
            .unwrap_or_else(|| {
                panic!("docs/rest-api.md: `{method} {path}` is not in the OpenAPI document")
            });
        covered.insert(operation.clone());
    }
    let missing: Vec<_> = operations.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "operations without a curl example in docs/rest-api.md: {missing:?}"
    );
}
