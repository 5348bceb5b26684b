//! `schemas/compose.schema.json` is generated from `spec::schema::json_schema()`; this test fails
//! when the committed file is stale. Refresh it with
//! `FLOTILLA_UPDATE_SCHEMAS=1 cargo test --test schema_file`.
//!
//! It also validates every `examples/**/compose.yaml` and `tests/fixtures/**/compose*.yaml`
//! against the committed schema, as an editor would see the raw file (anchors resolved, types
//! from the YAML core schema). The `jsonschema` crate would pull about 60 crates (about 40 new to
//! this crate's lock file), so a small validator of just the keywords the generator writes lives
//! here; it refuses any other keyword, so a schema that grows one fails loudly instead of passing
//! unchecked.

use std::path::{Path, PathBuf};

use flotilla::spec::node::{Node, Tag, Value};
use flotilla::spec::schema::{any_json, json_schema};
use flotilla::spec::yaml::parse;
use serde_json::{Map, Value as J};

const SCHEMA: &str = "schemas/compose.schema.json";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generated() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).expect("the schema serializes");
    text.push('\n');
    text
}

#[test]
fn schema_file_is_up_to_date() {
    let path = root().join(SCHEMA);
    let want = generated();
    if std::env::var_os("FLOTILLA_UPDATE_SCHEMAS").is_some_and(|v| v == "1") {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create schemas/");
        }
        std::fs::write(&path, &want).expect("write the schema file");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "its length".to_string(), |i| format!("line {}", i + 1));
        panic!(
            "{SCHEMA} is stale (it differs from spec::schema::json_schema() at {line}); \
             refresh it with\n\n    FLOTILLA_UPDATE_SCHEMAS=1 cargo test --test schema_file\n\n\
             and commit the result"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Validation of the stack files in the repository.
// ---------------------------------------------------------------------------------------------

/// Checks `v` against `schema`, pushing `path: problem` lines to `errs`.
fn validate(v: &J, schema: &J, path: &str, errs: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        if schema == &J::Bool(false) {
            errs.push(format!("{path}: not allowed"));
        }
        return;
    };
    for key in s.keys() {
        assert!(
            matches!(
                key.as_str(),
                "$schema"
                    | "$id"
                    | "title"
                    | "description"
                    | "type"
                    | "enum"
                    | "anyOf"
                    | "items"
                    | "properties"
                    | "patternProperties"
                    | "additionalProperties"
            ),
            "the schema uses `{key}`, which this test's validator does not know: teach it"
        );
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            J::String(one) => vec![one.as_str()],
            J::Array(many) => many.iter().filter_map(J::as_str).collect(),
            _ => panic!("bad `type` in schema at {path}"),
        };
        if !types.iter().any(|t| has_type(v, t)) {
            errs.push(format!(
                "{path}: expected {}, found {}",
                types.join(" or "),
                brief(v)
            ));
            return;
        }
    }
    if let Some(J::Array(vals)) = s.get("enum")
        && !vals.contains(v)
    {
        errs.push(format!(
            "{path}: {} is not one of {}",
            brief(v),
            J::Array(vals.clone())
        ));
    }
    if let Some(J::Array(alts)) = s.get("anyOf") {
        let results: Vec<Vec<String>> = alts
            .iter()
            .map(|alt| {
                let mut e = Vec::new();
                validate(v, alt, path, &mut e);
                e
            })
            .collect();
        if !results.iter().any(Vec::is_empty) {
            // When only one alternative takes this kind of value, its own problems say the most.
            let typed: Vec<&Vec<String>> = alts
                .iter()
                .zip(&results)
                .filter(|(alt, _)| type_allows(alt, v))
                .map(|(_, e)| e)
                .collect();
            match typed.as_slice() {
                [only] => errs.extend(only.iter().cloned()),
                _ => errs.push(format!(
                    "{path}: {} matches none of the alternatives",
                    brief(v)
                )),
            }
        }
    }
    if let (J::Array(items), Some(item)) = (v, s.get("items")) {
        for (i, it) in items.iter().enumerate() {
            validate(it, item, &format!("{path}[{i}]"), errs);
        }
    }
    if let J::Object(m) = v {
        validate_object(m, s, path, errs);
    }
}

fn validate_object(m: &Map<String, J>, s: &Map<String, J>, path: &str, errs: &mut Vec<String>) {
    let empty = Map::new();
    let props = s.get("properties").and_then(J::as_object).unwrap_or(&empty);
    let patterns = s
        .get("patternProperties")
        .and_then(J::as_object)
        .unwrap_or(&empty);
    for (k, val) in m {
        let sub = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let mut matched = false;
        if let Some(p) = props.get(k) {
            validate(val, p, &sub, errs);
            matched = true;
        }
        for (pattern, p) in patterns {
            let prefix = pattern.strip_prefix('^').filter(|rest| {
                !rest.contains(['^', '$', '.', '*', '+', '?', '(', '[', '{', '|', '\\'])
            });
            let prefix = prefix.unwrap_or_else(|| {
                panic!("the schema uses the pattern {pattern:?}; this test only knows `^literal`")
            });
            if k.starts_with(prefix) {
                validate(val, p, &sub, errs);
                matched = true;
            }
        }
        if !matched && let Some(extra) = s.get("additionalProperties") {
            if extra == &J::Bool(false) {
                errs.push(format!("{sub}: unknown key"));
            } else {
                validate(val, extra, &sub, errs);
            }
        }
    }
}

/// Whether the `type` of `schema` (if it has one) admits `v`.
fn type_allows(schema: &J, v: &J) -> bool {
    match schema.get("type") {
        Some(J::String(t)) => has_type(v, t),
        Some(J::Array(ts)) => ts.iter().filter_map(J::as_str).any(|t| has_type(v, t)),
        _ => true,
    }
}

fn has_type(v: &J, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => panic!("unknown JSON type {other:?} in the schema"),
    }
}

fn brief(v: &J) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}…", &s[..s.floor_char_boundary(40)])
    } else {
        s
    }
}

/// The raw file as an editor sees it, less `!reset` values: the loader drops those in the merge
/// without checking them (`ports: !reset []`, `FEATURE: !reset null`).
fn editor_json(n: &Node) -> J {
    match &n.value {
        Value::Seq(items) => J::Array(
            items
                .iter()
                .filter(|i| i.tag != Some(Tag::Reset))
                .map(editor_json)
                .collect(),
        ),
        Value::Map(m) => J::Object(
            m.iter()
                .filter(|(_, v)| v.tag != Some(Tag::Reset))
                .map(|(k, v)| (k.name.clone(), editor_json(v)))
                .collect(),
        ),
        _ => any_json(n),
    }
}

fn stack_files(dir: &Path, is_stack: &dyn Fn(&str) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            stack_files(&p, is_stack, out);
        } else if p.file_name().and_then(|n| n.to_str()).is_some_and(is_stack) {
            out.push(p);
        }
    }
}

#[test]
fn repository_stacks_validate_against_the_schema() {
    let schema: J = serde_json::from_str(&generated()).expect("the schema is JSON");
    let mut files = Vec::new();
    stack_files(
        &root().join("examples"),
        &|n| n == "compose.yaml",
        &mut files,
    );
    stack_files(
        &root().join("tests/fixtures"),
        &|n| n.starts_with("compose") && (n.ends_with(".yaml") || n.ends_with(".yml")),
        &mut files,
    );
    let mut problems = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap_or(f).display().to_string();
        let text = std::fs::read_to_string(f).expect("read stack file");
        let docs = match parse(&text, &rel) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{rel}: {e}"));
                continue;
            }
        };
        for doc in &docs {
            let mut errs = Vec::new();
            validate(&editor_json(doc), &schema, "", &mut errs);
            problems.extend(errs.into_iter().map(|e| format!("{rel}: {e}")));
        }
    }
    assert!(
        problems.is_empty(),
        "stack files the schema rejects:\n{}",
        problems.join("\n")
    );
    eprintln!("{} stack files validated", files.len());
}

#[test]
fn validator_catches_what_the_schema_forbids() {
    let schema = json_schema();
    let check = |text: &str| {
        let docs = parse(text, "t.yaml").expect("yaml");
        let mut errs = Vec::new();
        validate(&editor_json(&docs[0]), &schema, "", &mut errs);
        errs
    };
    assert!(
        check("services:\n  a:\n    image: x\n    ports: [\"80:80\"]\n    x-y: 1\n").is_empty()
    );
    let errs = check("services:\n  a:\n    imag: x\n    ports: {a: 1}\nfoo: 1\n");
    assert!(
        errs.contains(&"services.a.imag: unknown key".to_string()),
        "{errs:?}"
    );
    assert!(errs.contains(&"foo: unknown key".to_string()), "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("services.a.ports: expected")),
        "{errs:?}"
    );
}
