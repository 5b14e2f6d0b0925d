//! The partner JSON Schemas of `schemas/` (verdict, verify result, tap
//! event), compiled once, for tests to validate every JSON they see.

use std::sync::OnceLock;

use jsonschema::{Resource, Validator};
use serde_json::Value;

const BASE: &str = "https://citycard.example.invalid/schemas/";

/// The schema files, by name.
pub const FILES: [(&str, &str); 3] = [
    (
        "verdict.v1.json",
        include_str!("../../../schemas/verdict.v1.json"),
    ),
    (
        "verify.v1.json",
        include_str!("../../../schemas/verify.v1.json"),
    ),
    (
        "tap-event.v1.json",
        include_str!("../../../schemas/tap-event.v1.json"),
    ),
];

/// Which document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// `verdict.v1.json`.
    Verdict,
    /// `verify.v1.json`: what `verify --json` prints.
    Verify,
    /// `tap-event.v1.json`: one event line.
    TapEvent,
}

fn parse(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("schema is not JSON: {e}"))
}

fn compile(index: usize) -> Result<Validator, String> {
    let (_, text) = FILES.get(index).ok_or("no such schema")?;
    let mut options = jsonschema::options();
    for (name, text) in FILES {
        let resource = Resource::from_contents(parse(text)?);
        options = options.with_resource(format!("{BASE}{name}"), resource);
    }
    options
        .build(&parse(text)?)
        .map_err(|e| format!("schema does not compile: {e}"))
}

static VALIDATORS: OnceLock<Vec<Result<Validator, String>>> = OnceLock::new();

/// The problems of `doc` against `schema`: empty when it is valid.
pub fn problems(schema: Schema, doc: &Value) -> Vec<String> {
    let validators = VALIDATORS.get_or_init(|| (0..FILES.len()).map(compile).collect());
    let index = match schema {
        Schema::Verdict => 0,
        Schema::Verify => 1,
        Schema::TapEvent => 2,
    };
    match validators.get(index) {
        Some(Ok(v)) => v
            .iter_errors(doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect(),
        Some(Err(e)) => vec![e.clone()],
        None => vec!["no such schema".into()],
    }
}

/// Fails (panics, for tests) with every problem if `doc` is not valid.
#[allow(clippy::panic)]
pub fn assert_valid(schema: Schema, doc: &Value) {
    let p = problems(schema, doc);
    assert!(
        p.is_empty(),
        "{schema:?} schema violated by {doc}:\n{}",
        p.join("\n")
    );
}

/// [`assert_valid`] on a JSON text (one document or one line).
#[allow(clippy::panic)]
pub fn assert_valid_text(schema: Schema, text: &str) -> Value {
    let doc: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    assert_valid(schema, &doc);
    doc
}
