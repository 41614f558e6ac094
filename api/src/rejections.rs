//! The refusals that come before a handler runs, written into the OpenAPI
//! document for every operation they can reach: a path id that is not a
//! UUID ([`crate::auth`] and [`crate::problem::Path`]), a bad query
//! ([`crate::problem::Query`]), and a JSON body that is not JSON, too large,
//! not sent as JSON, or not of the schema ([`crate::problem::Json`]). Added
//! once, from the route list, so no annotation can forget them; what a
//! handler decides itself stays in its own annotation.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, ResponseBuilder};

type Schemas = std::collections::BTreeMap<String, RefOr<Schema>>;

/// Lists the extractors' refusals on every operation of `openapi`.
pub fn document(openapi: &mut OpenApi) {
    let no_schemas = Schemas::new();
    let schemas = openapi
        .components
        .as_ref()
        .map_or(&no_schemas, |c| &c.schemas);
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            document_operation(operation, schemas);
        }
    }
}

fn document_operation(operation: &mut Operation, schemas: &Schemas) {
    let ids = path_ids(operation, schemas);
    if !ids.is_empty() {
        let names = ids.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>();
        add(
            operation,
            "400",
            &format!("the path's {} is not a UUID", names.join(" or ")),
        );
        let things = ids
            .iter()
            .map(|id| id.trim_end_matches("_id").replace('_', " "));
        let things = things.collect::<Vec<_>>().join(" or ");
        add_if_absent(operation, "404", &format!("no such {things}"));
    }
    if has_query(operation) {
        add(
            operation,
            "400",
            "a query parameter is unknown, missing or has an unusable value",
        );
    }
    if parses_json_body(operation) {
        add(operation, "400", "the body is not well-formed JSON");
        add_if_absent(
            operation,
            "413",
            "the body is larger than this server accepts",
        );
        add_if_absent(
            operation,
            "415",
            "the body is not sent with `Content-Type: application/json`",
        );
        add(
            operation,
            "422",
            "the JSON does not fit the schema (a missing, unknown or mistyped field)",
        );
    }
}

/// The path parameters that are ids: UUIDs, whether inline or a named schema.
fn path_ids(operation: &Operation, schemas: &Schemas) -> Vec<String> {
    let parameters = operation.parameters.iter().flatten();
    parameters
        .filter_map(|parameter| match parameter {
            RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Path) => Some(p),
            _ => None,
        })
        .filter(|p| p.schema.as_ref().is_some_and(|s| is_uuid(s, schemas)))
        .map(|p| p.name.clone())
        .collect()
}

fn is_uuid(schema: &RefOr<Schema>, schemas: &Schemas) -> bool {
    let named = match schema {
        RefOr::Ref(r) => r
            .ref_location
            .strip_prefix("#/components/schemas/")
            .and_then(|name| schemas.get(name)),
        RefOr::T(_) => Some(schema),
    };
    matches!(named, Some(RefOr::T(Schema::Object(o)))
        if o.format == Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
}

fn has_query(operation: &Operation) -> bool {
    operation
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query)))
}

/// Whether the body is JSON parsed into a schema. A JSON body declared as a
/// plain string is taken as raw bytes (the Stripe webhook, whose signature
/// covers the exact bytes) and gets none of these refusals.
fn parses_json_body(operation: &Operation) -> bool {
    let Some(RefOr::T(body)) = &operation.request_body else {
        return false;
    };
    match body.content.get("application/json") {
        Some(RefOr::T(content)) => match &content.schema {
            Some(RefOr::T(Schema::Object(o))) => o.schema_type != SchemaType::Type(Type::String),
            Some(_) => true,
            None => false,
        },
        _ => false,
    }
}

/// Lists `status` with `why`, or adds `why` to what the handler's annotation says of it.
fn add(operation: &mut Operation, status: &str, why: &str) {
    match operation.responses.responses.get_mut(status) {
        Some(RefOr::T(listed)) => {
            if !listed.description.contains(why) {
                listed.description = format!("{}; or {why}", listed.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => add_if_absent(operation, status, why),
    }
}

/// Lists `status` with `why` unless the handler's annotation says better.
fn add_if_absent(operation: &mut Operation, status: &str, why: &str) {
    let mut description = why.to_owned();
    if let Some(first) = description.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    let problem = Content::new(Some(Ref::from_schema_name("ProblemDetails")));
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content("application/problem+json", problem)
                .build()
                .into()
        });
}
