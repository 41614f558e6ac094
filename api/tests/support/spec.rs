//! The OpenAPI document as the tests read it, independently of how the
//! crate builds it: which path parameters are ids and which operations
//! parse a JSON body.

use serde_json::Value;

/// `schema`, or the component it refers to.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        Some(name) => &spec["components"]["schemas"][name],
        None => schema,
    }
}

/// The operation's path parameters that are ids (UUIDs), in path order.
pub fn path_ids(spec: &Value, operation: &Value) -> Vec<String> {
    operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "path" && resolve(spec, &p["schema"])["format"] == "uuid")
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

/// Whether the operation parses a JSON body into a schema. A body declared
/// as a plain string is taken as raw bytes (the Stripe webhook, whose
/// signature covers the exact bytes), not parsed.
pub fn parses_json_body(operation: &Value) -> bool {
    let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    !schema.is_null() && schema["type"] != "string"
}
