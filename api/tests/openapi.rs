//! `openapi/openapi.json` is what the code generates (regenerate with
//! `UPDATE_OPENAPI=1 cargo test -p api --test openapi` or
//! `cargo run -- openapi > openapi/openapi.json`), and every operation is
//! documented well enough for a reseller to generate a client from it,
//! with every answer it can give: the extractors' refusals included; and
//! every reference in it resolves.

#[path = "support/spec.rs"]
mod spec;

use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json")
}

#[test]
fn committed_spec_is_current() {
    let generated = api::openapi_json();
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write openapi/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p api --test openapi` and commit it"
    );
}

#[test]
fn every_operation_is_documented() {
    let spec = serde_json::to_value(api::openapi()).unwrap();
    let mut ids = std::collections::HashSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let name = format!("{method} {path}");
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no operationId"));
            assert!(
                ids.insert(id.to_owned()),
                "{name}: duplicate operationId {id}"
            );
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: no summary"
            );
            assert!(op.get("security").is_some(), "{name}: security not stated");
            let responses = op["responses"].as_object().unwrap();
            let secured = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if secured {
                assert!(responses.contains_key("401"), "{name}: 401 not documented");
                let problem = &responses["401"]["content"]["application/problem+json"];
                assert!(problem.is_object(), "{name}: 401 is not problem+json");
            }
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{name}: no success response"
            );
        }
    }
}

/// Asserts that `op` lists `status` as a problem+json answer.
fn lists_problem(name: &str, op: &serde_json::Value, status: &str, why: &str) {
    let problem = &op["responses"][status]["content"]["application/problem+json"];
    assert!(
        problem.is_object(),
        "{name}: {status} ({why}) is not listed as problem+json"
    );
}

#[test]
fn every_refusal_is_listed() {
    let spec = serde_json::to_value(api::openapi()).unwrap();
    let (mut with_ids, mut with_bodies) = (0, 0);
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let name = format!("{method} {path}");
            if !spec::path_ids(&spec, op).is_empty() {
                lists_problem(&name, op, "400", "a malformed id in the path");
                lists_problem(&name, op, "404", "an id that names nothing");
                with_ids += 1;
            }
            if spec::parses_json_body(op) {
                lists_problem(&name, op, "400", "a body that is not JSON");
                lists_problem(&name, op, "413", "a body over the size limit");
                lists_problem(&name, op, "415", "a body not sent as JSON");
                lists_problem(&name, op, "422", "JSON that does not fit the schema");
                with_bodies += 1;
            }
        }
    }
    assert!(with_ids >= 60, "only {with_ids} operations with path ids");
    assert!(
        with_bodies >= 25,
        "only {with_bodies} operations with JSON bodies"
    );
}

/// Every `$ref` names a component the document holds: generated clients
/// (openapi-typescript) refuse the whole document otherwise.
#[test]
fn every_reference_resolves() {
    fn walk<'a>(value: &'a serde_json::Value, at: String, out: &mut Vec<(String, &'a str)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    if key == "$ref" {
                        if let Some(target) = inner.as_str() {
                            out.push((at.clone(), target));
                        }
                    } else {
                        walk(inner, format!("{at}/{key}"), out);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for (i, inner) in items.iter().enumerate() {
                    walk(inner, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let spec = serde_json::to_value(api::openapi()).unwrap();
    let mut references = Vec::new();
    walk(&spec, String::new(), &mut references);
    assert!(
        references.len() > 100,
        "only {} references found",
        references.len()
    );
    for (at, target) in references {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: `{target}` is not local"));
        assert!(
            spec.pointer(pointer).is_some(),
            "{at}: `{target}` names nothing in the document"
        );
    }
}
