//! Every answer the node tests receive through the harness is checked against `/openapi.json`:
//! a success against its endpoint's generated response schema, an error against the error
//! schema. A handler whose answer drifts from its documented type fails whichever test met it.
//! The validator covers the JSON Schema keywords the generator writes (`$ref`, `type`,
//! `properties`, `required`, `additionalProperties`, `items`, `enum`, `const`, `pattern`,
//! `minimum`, `maxItems`, `anyOf`, `oneOf`, `allOf`); any other keyword is ignored.

use serde_json::Value;
use std::sync::OnceLock;

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(infhub_node::openapi::document)
}

/// The documented endpoint `method path` answers, by matching `{param}` segments.
fn endpoint(method: &str, path: &str) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    infhub_node::openapi::ENDPOINTS.iter().find_map(|(m, template, _, _)| {
        let t: Vec<&str> = template.split('/').collect();
        let fits = *m == method
            && t.len() == segments.len()
            && t.iter().zip(&segments).all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')));
        fits.then_some(*template)
    })
}

/// Checks an answer of the node against its documented schema; panics naming the mismatch.
pub(crate) fn check_answer(method: &str, path: &str, status: u16, body: &Value) {
    let Some(template) = endpoint(method, path) else { return };
    let doc = document();
    let op = &doc["paths"][template][method];
    let schema = if (200..300).contains(&status) {
        &op["responses"]["200"]["content"]["application/json"]["schema"]
    } else if body.is_object() {
        &op["responses"]["default"]["content"]["application/json"]["schema"]
    } else {
        return;
    };
    if schema.is_null() {
        return;
    }
    if let Err(e) = validate(doc, schema, body, "$") {
        panic!("{method} {path} answered {status} off its schema: {e}\nbody: {body}");
    }
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> Result<&'a Value, String> {
    let name = reference.strip_prefix("#/components/schemas/").ok_or_else(|| format!("foreign $ref {reference}"))?;
    let s = &doc["components"]["schemas"][name];
    if s.is_null() {
        return Err(format!("unresolved $ref {reference}"));
    }
    Ok(s)
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        _ => false,
    }
}

/// Validates `v` against `schema` (a subset of JSON Schema 2020-12, see the module header).
pub(crate) fn validate(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(format!("{at}: nothing is allowed here")),
        _ => {}
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        validate(doc, resolve(doc, r)?, v, at)?;
    }
    if let Some(t) = schema.get("type") {
        let ok = match t {
            Value::String(t) => type_matches(t, v),
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(|t| type_matches(t, v)),
            _ => true,
        };
        if !ok {
            return Err(format!("{at}: {v} is not of type {t}"));
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            return Err(format!("{at}: {v} is not one of {schema_enum}", schema_enum = Value::Array(values.clone())));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            return Err(format!("{at}: {v} is not {c}"));
        }
    }
    if let (Some(p), Some(s)) = (schema.get("pattern").and_then(Value::as_str), v.as_str()) {
        let re = regex_lite::Regex::new(p).map_err(|e| format!("{at}: bad pattern {p}: {e}"))?;
        if !re.is_match(s) {
            return Err(format!("{at}: {s:?} does not match {p}"));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if n < min {
            return Err(format!("{at}: {n} is below {min}"));
        }
    }
    if let (Some(max), Some(items)) = (schema.get("maxItems").and_then(Value::as_u64), v.as_array()) {
        if items.len() as u64 > max {
            return Err(format!("{at}: {} items, at most {max}", items.len()));
        }
    }
    if let (Some(item), Some(items)) = (schema.get("items"), v.as_array()) {
        for (i, x) in items.iter().enumerate() {
            validate(doc, item, x, &format!("{at}[{i}]"))?;
        }
    }
    if let Some(obj) = v.as_object() {
        check_object(doc, schema, obj, at)?;
    }
    check_combinators(doc, schema, v, at)
}

fn check_object(doc: &Value, schema: &Value, obj: &serde_json::Map<String, Value>, at: &str) -> Result<(), String> {
    let props = schema.get("properties").and_then(Value::as_object);
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(name) {
                return Err(format!("{at}: required field {name} is missing"));
            }
        }
    }
    for (k, x) in obj {
        match props.and_then(|p| p.get(k)) {
            Some(s) => validate(doc, s, x, &format!("{at}.{k}"))?,
            None => match schema.get("additionalProperties") {
                Some(Value::Bool(false)) => return Err(format!("{at}: field {k} is not documented")),
                Some(s @ Value::Object(_)) => validate(doc, s, x, &format!("{at}.{k}"))?,
                _ => {}
            },
        }
    }
    Ok(())
}

fn check_combinators(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            validate(doc, s, v, at)?;
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let errors: Vec<String> = any.iter().filter_map(|s| validate(doc, s, v, at).err()).collect();
        if errors.len() == any.len() {
            return Err(format!("{at}: matches none of anyOf: {}", errors.join(" | ")));
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let errors: Vec<String> = one.iter().filter_map(|s| validate(doc, s, v, at).err()).collect();
        let matched = one.len() - errors.len();
        if matched != 1 {
            return Err(format!("{at}: matches {matched} of oneOf (one expected): {}", errors.join(" | ")));
        }
    }
    Ok(())
}

#[test]
fn the_validator_refuses_what_the_schemas_forbid() {
    let doc = document();
    let schema = &doc["paths"]["/v1/auth/session"]["post"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(!schema.is_null(), "the session answer has a schema");
    let good =
        serde_json::json!({"token": "ab", "user": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "expiresInSecs": 60});
    validate(doc, schema, &good, "$").expect("a well-formed answer");
    for bad in [
        serde_json::json!({"token": "ab", "user": "0x7099", "expiresInSecs": 60}),
        serde_json::json!({"token": "ab", "user": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"}),
        serde_json::json!({"token": 5, "user": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "expiresInSecs": 60}),
        serde_json::json!({"token": "ab", "user": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "expiresInSecs": -1}),
    ] {
        assert!(validate(doc, schema, &bad, "$").is_err(), "{bad} must be refused");
    }
    let error = &doc["paths"]["/v1/info"]["get"]["responses"]["default"]["content"]["application/json"]["schema"];
    validate(doc, error, &serde_json::json!({"error": {"code": "unknown_account", "message": "no"}}), "$")
        .expect("error");
    assert!(validate(doc, error, &serde_json::json!({"error": {"code": "Bad Code", "message": "no"}}), "$").is_err());
}
