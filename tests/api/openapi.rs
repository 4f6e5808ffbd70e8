//! The OpenAPI document covers every routed API path (and only those), and Swagger UI works
//! offline.
use crate::helpers::*;
use serde_json::Value;

/// `(path, method)` of every API operation clients rely on. The server builds its router and
/// the document from one list, so this is the contract both must keep: removing a route from
/// that list takes it out of both, and fails here.
const API: [(&str, &str); 33] = [
    ("/api/ingest", "post"),
    ("/api/uploads", "options"),
    ("/api/uploads", "post"),
    ("/api/uploads/{job_id}", "head"),
    ("/api/uploads/{job_id}", "patch"),
    ("/api/uploads/{job_id}", "delete"),
    ("/api/status/{job_id}", "get"),
    ("/api/jobs", "get"),
    ("/api/jobs/{job_id}/cancel", "post"),
    ("/api/jobs/{job_id}/content", "get"),
    ("/api/jobs/{job_id}", "delete"),
    ("/ws/status/{job_id}", "get"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/metrics", "get"),
    ("/api/session", "post"),
    ("/api/session", "delete"),
    ("/api/me", "get"),
    ("/api/accounts", "post"),
    ("/api/accounts", "get"),
    ("/api/accounts/{name}", "delete"),
    ("/api/accounts/{name}/quotas", "put"),
    ("/api/accounts/{name}/keys", "post"),
    ("/api/accounts/{name}/keys", "get"),
    ("/api/keys/{key_id}", "delete"),
    ("/api/webhooks", "post"),
    ("/api/webhooks", "get"),
    ("/api/webhooks/{id}", "get"),
    ("/api/webhooks/{id}", "patch"),
    ("/api/webhooks/{id}", "delete"),
    ("/api/webhooks/{id}/deliveries", "get"),
    ("/api/webhooks/{id}/deliveries/{delivery_id}/retry", "post"),
    ("/api/webhooks/{id}/ping", "post"),
];

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "options", "head"];

/// Sends `method` to `path` (a job id in place of `{job_id}`) without credentials, and says
/// whether a route took it: anything but the JSON 404 for unknown paths, the page's 404 and
/// the JSON 405 for methods a path does not have.
async fn routed(app: &TestApp, path: &str, method: &str) -> bool {
    let path = path.replace("{job_id}", &ingest::domain::JobId::new().to_string());
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let response = app
        .client
        .request(method, app.url(&path))
        .send()
        .await
        .unwrap();
    !matches!(response.status().as_u16(), 404 | 405)
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

    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in API {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let statuses = operation["responses"].as_object().unwrap();
        assert!(
            !statuses.is_empty(),
            "{method} {path} documents no responses"
        );
    }
    // Every documented operation is routed, and every method a documented path answers is
    // documented (HEAD comes with GET in axum, so it is not asked of GET paths).
    for (path, item) in paths {
        let documented = item.as_object().unwrap();
        for method in METHODS {
            let implied = method == "head" && documented.contains_key("get");
            let answered = routed(&app, path, method).await;
            if documented.contains_key(method) {
                assert!(answered, "{method} {path} is documented but not routed");
            } else if !implied {
                assert!(!answered, "{method} {path} is routed but not documented");
            }
        }
    }
    assert_eq!(
        paths
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum::<usize>(),
        API.len(),
        "the document has operations this test does not know: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
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
