//! The OpenAPI document covers every routed API path, and Swagger UI works offline.
use crate::helpers::*;
use serde_json::Value;

/// `(path, method)` of every route in the router's source, catch-alls left out.
fn routed() -> Vec<(String, String)> {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/server/routes/mod.rs"
    ))
    .unwrap();
    // Whitespace removed, so rustfmt's line breaks do not matter.
    let flat: String = source.split_whitespace().collect();
    let mut routes = Vec::new();
    for piece in flat.split(".route(").skip(1) {
        let Some(path) = piece
            .trim_start()
            .strip_prefix('"')
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        if path.contains('*') || path == "/api" {
            continue;
        }
        let route = piece.split(".route_layer(").next().unwrap_or(piece);
        let methods: Vec<&str> = ["get", "post", "delete", "put", "patch", "head", "options"]
            .into_iter()
            .filter(|m| {
                route.contains(&format!("with_json_405({m}(")) || route.contains(&format!(").{m}("))
            })
            .collect();
        assert!(!methods.is_empty(), "route {path} has no method");
        for method in methods {
            routes.push((path.to_owned(), method.to_owned()));
        }
    }
    routes
}

#[tokio::test]
async fn every_routed_api_path_is_in_the_openapi_document() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    let routes = routed();
    assert!(
        routes.len() >= 9,
        "the route scan found too little: {routes:?}"
    );
    for (path, method) in &routes {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let statuses = operation["responses"].as_object().unwrap();
        assert!(
            !statuses.is_empty(),
            "{method} {path} documents no responses"
        );
    }
    // And the other way round: every documented operation is routed.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                routes.iter().any(|(p, m)| p == path && m == method),
                "{method} {path} is documented but not routed"
            );
        }
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["token_query"]["in"], "query");
    for schema in [
        "ErrorBody",
        "JobStatus",
        "IngestAccepted",
        "JobPage",
        "IngestForm",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    let ingest = &doc["paths"]["/api/ingest"]["post"];
    for content_type in [
        "application/json",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
    ] {
        assert!(
            ingest["requestBody"]["content"][content_type].is_object(),
            "{content_type}"
        );
    }
    assert_eq!(
        ingest["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let app = spawn_app().await;
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://"),
        "nothing is fetched from elsewhere: {html}"
    );
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let response = app.client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        let body = response.text().await.unwrap();
        assert!(body.len() > 100, "{asset}");
        if asset.ends_with("initializer.js") {
            assert!(body.contains("/api/openapi.json"), "{body}");
        }
    }
}
