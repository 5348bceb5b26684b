//! `schemas/openapi.json` is generated from the API routes (`api::server::openapi()`); this test
//! fails when the committed file is stale. Refresh it with
//! `FLOTILLA_UPDATE_SCHEMAS=1 cargo test --test openapi_file`.

use std::path::PathBuf;

const FILE: &str = "schemas/openapi.json";

fn generated() -> String {
    let mut text = flotilla::api::server::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

#[test]
fn openapi_file_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(FILE);
    let want = generated();
    if std::env::var_os("FLOTILLA_UPDATE_SCHEMAS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &want).expect("write the OpenAPI file");
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
            "{FILE} is stale (it differs from api::server::openapi() at {line}); refresh it \
             with\n\n    FLOTILLA_UPDATE_SCHEMAS=1 cargo test --test openapi_file\n\nand commit \
             the result"
        );
    }
}

#[test]
fn every_error_response_uses_the_error_schema() {
    let doc: serde_json::Value = serde_json::from_str(&generated()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            for (status, res) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &res["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}
