//! Every way to present (or fail to present) the token.
use crate::helpers::*;
use tokio_tungstenite::tungstenite::Error as WsError;

#[tokio::test]
async fn requests_without_a_valid_bearer_token_get_401_with_a_challenge() {
    let app = spawn_app().await;
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("wrong", Some("Bearer not-the-right-token-at-all".into())),
        ("not bearer", Some(format!("Basic {TOKEN}"))),
        ("empty bearer", Some("Bearer ".into())),
        ("bare token", Some(TOKEN.into())),
        (
            "placeholder",
            Some(format!("Bearer {}", "REPLACE_WITH_PROD_TOKEN")),
        ),
    ];
    for (case, header) in cases {
        for request in [
            app.client
                .post(app.url("/api/ingest"))
                .json(&serde_json::json!({})),
            app.client
                .get(app.url(&format!("/api/status/{}", ingest::domain::JobId::new()))),
            app.client.get(app.url("/api/jobs")),
        ] {
            let request = match &header {
                Some(value) => request.header("authorization", value),
                None => request,
            };
            let response = request.send().await.unwrap();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            assert!(
                challenge
                    .as_deref()
                    .is_some_and(|c| c.starts_with("Bearer")),
                "{case}: {challenge:?}"
            );
            assert_error(response, 401, "unauthorized").await;
        }
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/ingest"))
        .header("authorization", format!("bearer {TOKEN}"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn websocket_without_a_valid_token_is_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let id = accepted_id(app.ingest_json("{}").await).await;
    for url in [
        app.ws_url(&format!("/ws/status/{id}")),
        app.ws_url(&format!("/ws/status/{id}?token=wrong-token-0123456789")),
        app.ws_url(&format!("/ws/status/{id}?token=")),
    ] {
        match tokio_tungstenite::connect_async(&url).await {
            Err(WsError::Http(response)) => {
                assert_eq!(response.status(), 401, "{url}");
                let body: serde_json::Value =
                    serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["error"]["code"], "unauthorized");
            }
            other => panic!("{url}: expected an HTTP 401, got {other:?}"),
        }
    }
}

#[test]
fn the_server_refuses_to_start_with_the_placeholder_token() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ingest"))
        .env("INGEST_TOKEN", "REPLACE_WITH_PROD_TOKEN")
        .env("INGEST_CONFIG", "/nonexistent/Leptos.toml")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("placeholder"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "a one-line reason: {stderr}");
}
