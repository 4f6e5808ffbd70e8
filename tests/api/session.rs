//! Browser sessions: the token buys an HttpOnly, SameSite=Strict cookie that the API and the
//! WebSocket accept until it expires or the user signs out.
use crate::helpers::*;
use std::time::Duration;

async fn sign_in(app: &TestApp, token: &str, https: bool) -> reqwest::Response {
    let request = app
        .client
        .post(app.url("/api/session"))
        .json(&serde_json::json!({ "token": token }));
    let request = if https {
        request.header("x-forwarded-proto", "https")
    } else {
        request
    };
    request.send().await.unwrap()
}

/// The `name=value` part of the answer's Set-Cookie, and the whole header.
fn cookie_of(response: &reqwest::Response) -> (String, String) {
    let header = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    (header.split(';').next().unwrap().to_owned(), header)
}

async fn list_with_cookie(app: &TestApp, cookie: &str) -> reqwest::Response {
    app.client
        .get(app.url("/api/jobs"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn signing_in_gives_a_strict_http_only_cookie_the_api_accepts() {
    // The test client plays the reverse proxy that says the browser used https.
    let app = spawn_app_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let response = sign_in(&app, TOKEN, false).await;
    assert_eq!(response.status(), 204);
    let (cookie, header) = cookie_of(&response);
    assert!(cookie.starts_with("ingest_session="));
    assert!(!cookie.contains(TOKEN), "the cookie is not the token");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(header.contains(attribute), "{attribute} missing: {header}");
    }
    assert!(!header.contains("Secure"), "plain http: {header}");
    let (_, https_header) = cookie_of(&sign_in(&app, TOKEN, true).await);
    assert!(https_header.contains("; Secure"), "{https_header}");

    assert_eq!(list_with_cookie(&app, &cookie).await.status(), 200);
    let ingest = app
        .client
        .post(app.url("/api/ingest"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let id = accepted_id(ingest).await;
    let ws = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        app.ws_url(&format!("/ws/status/{id}")),
    )
    .map(|mut request| {
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
        request
    })
    .unwrap();
    assert!(
        tokio_tungstenite::connect_async(ws).await.is_ok(),
        "the WebSocket takes the cookie"
    );
}

#[tokio::test]
async fn a_wrong_token_or_a_made_up_cookie_is_refused() {
    let app = spawn_app().await;
    assert_error(
        sign_in(&app, "not-the-token-0123456789", false).await,
        401,
        "unauthorized",
    )
    .await;
    let malformed = app
        .client
        .post(app.url("/api/session"))
        .header("content-type", "application/json")
        .body("{\"tok\": 1}")
        .send()
        .await
        .unwrap();
    assert_error(malformed, 400, "invalid_body").await;
    let made_up = list_with_cookie(&app, "ingest_session=0123456789abcdef").await;
    assert_error(made_up, 401, "unauthorized").await;
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let app = spawn_app().await;
    let (cookie, _) = cookie_of(&sign_in(&app, TOKEN, false).await);
    let out = app
        .client
        .delete(app.url("/api/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_error(list_with_cookie(&app, &cookie).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn sessions_expire() {
    let app = spawn_app_with(|s| s.session_ttl = Duration::from_secs(1)).await;
    let (cookie, _) = cookie_of(&sign_in(&app, TOKEN, false).await);
    assert_eq!(list_with_cookie(&app, &cookie).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let message = assert_error(list_with_cookie(&app, &cookie).await, 401, "unauthorized").await;
    assert!(message.contains("expired"), "{message}");
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let app = spawn_app().await;
    let (cookie, _) = cookie_of(&sign_in(&app, TOKEN, false).await);
    let data_dir = app.stop().await;
    let app = spawn_app_in(data_dir, |_| {}).await;
    assert_eq!(list_with_cookie(&app, &cookie).await.status(), 200);
}
