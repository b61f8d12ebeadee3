//! The admin API's OpenAPI document: the committed `docs/openapi.json` is the
//! generated one, the gateway serves it behind the token, and every route the
//! admin router serves is in it with exactly the methods it answers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{client, Gateway, ADMIN_TOKEN};

const REGENERATE: &str = "cargo run --quiet -- openapi > docs/openapi.json";

fn generated() -> Value {
    serde_json::from_str(hookgate::admin::openapi::document_json()).unwrap()
}

/// The operations of a document: path to methods (lower case).
fn operations(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| {
                    [
                        "get", "put", "post", "delete", "options", "head", "patch", "trace",
                    ]
                    .contains(&k.as_str())
                })
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == hookgate::admin::openapi::document_json(),
        "docs/openapi.json differs from the document the code generates; regenerate it with\n    {REGENERATE}\nand commit it"
    );
}

#[test]
fn the_document_is_openapi_3_1_with_the_bearer_scheme_on_the_api_only() {
    let doc = generated();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], serde_json::json!(["error"]));
    for (path, methods) in operations(&doc) {
        for m in methods {
            let op = &doc["paths"][&path][&m];
            let secured = op["security"] == serde_json::json!([{"bearer": []}]);
            assert_eq!(secured, path.starts_with("/api/v1/"), "{m} {path}");
            assert_eq!(
                op["responses"].get("401").is_some(),
                secured,
                "{m} {path}: a 401 answer exactly where the token is needed"
            );
            assert!(
                op["operationId"].is_string(),
                "{m} {path} has no operationId"
            );
        }
    }
    // Stateful tests follow the links from what creates a resource.
    let links = &doc["paths"]["/api/v1/destinations"]["post"]["responses"]["201"]["links"];
    assert_eq!(
        links["GetDestination"]["parameters"]["name"],
        "$response.body#/name"
    );
    let links = &doc["paths"]["/api/v1/events"]["post"]["responses"]["202"]["links"];
    assert_eq!(links["GetMessage"]["operationId"], "get_message");
}

#[tokio::test]
async fn the_gateway_serves_the_document_behind_the_token() {
    let g = Gateway::start("").await;
    let url = g.admin_url("/api/v1/openapi.json");
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let r = client()
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served: Value = r.json().await.unwrap();
    assert_eq!(served, generated());
}

/// The path literals of every `.route("…", …)` in the admin API's modules.
fn routes_in_source() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for piece in text.split(".route(").skip(1) {
            let lit = piece.trim_start();
            if let Some(rest) = lit.strip_prefix('"') {
                out.insert(rest[..rest.find('"').unwrap()].to_string());
            }
        }
    }
    out
}

/// Every route of the admin API is in the document, and each documented path
/// answers exactly the documented methods on the live router (HEAD aside, which
/// axum answers wherever GET is): a new route or method cannot be forgotten.
#[tokio::test]
async fn every_route_of_the_admin_api_is_in_the_document() {
    let doc = generated();
    let documented = operations(&doc);
    let in_source = routes_in_source();
    assert!(in_source.len() >= 15, "found too few routes: {in_source:?}");
    let missing: Vec<&String> = in_source
        .iter()
        .filter(|p| !documented.contains_key(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "routes not in the OpenAPI document: {missing:?} (add a #[utoipa::path] and list it in src/admin/openapi.rs)"
    );

    let g = Gateway::start("").await;
    let c = client();
    for (path, methods) in &documented {
        let concrete = path.replace("{id}", "msg_probe").replace("{name}", "probe");
        let mut served = BTreeSet::new();
        for m in ["GET", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE"] {
            let r = c
                .request(
                    Method::from_bytes(m.as_bytes()).unwrap(),
                    g.admin_url(&concrete),
                )
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let fallback = status == StatusCode::NOT_FOUND
                && body["error"]["message"] == "API route not found";
            if status != StatusCode::METHOD_NOT_ALLOWED && !fallback {
                served.insert(m.to_ascii_lowercase());
            }
        }
        assert_eq!(&served, methods, "methods served on {path}");
    }
}
