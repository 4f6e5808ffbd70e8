//! Security rules seen from a client: cookies work only from our own pages, sessions end with
//! their token, failed sign-ins are throttled per address, forwarded headers count only from
//! trusted proxies, server functions keep to the same limits, pages carry a strict CSP, request
//! ids are plain, and readiness is cheap.
use crate::{binary::BinaryServer, helpers::*};
use ingest::server::auth::ApiToken;
use serde_json::Value;
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

const EVIL: &str = "http://evil.example";

fn own_origin(app: &TestApp) -> String {
    format!("http://{}", app.address)
}

#[tokio::test]
async fn cookie_requests_from_another_origin_are_refused_and_bearer_ones_are_not() {
    let app = spawn_app().await;
    let cookie = app.sign_in().await;
    let list = |headers: &[(&str, &str)], bearer: bool| {
        let mut request = app.client.get(app.url("/api/jobs"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if bearer {
            request = request.bearer_auth(TOKEN);
        } else {
            request = request.header("cookie", &cookie);
        }
        request.send()
    };
    assert_error(
        list(&[("origin", EVIL)], false).await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    // Another port on the same host is another origin, though the same "site".
    let sibling = format!("http://127.0.0.1:{}", app.address.port() + 1);
    assert_error(
        list(&[("origin", &sibling)], false).await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_error(
        list(&[("sec-fetch-site", "same-site")], false)
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_error(
        list(&[("origin", "null")], false).await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    let ours = own_origin(&app);
    let from_us = [("origin", ours.as_str()), ("sec-fetch-site", "same-origin")];
    assert_eq!(list(&from_us, false).await.unwrap().status(), 200);
    assert_eq!(
        list(&[("sec-fetch-site", "none")], false)
            .await
            .unwrap()
            .status(),
        200
    );
    // A bearer token is not sent by browsers on their own: no origin rule for it.
    assert_eq!(list(&[("origin", EVIL)], true).await.unwrap().status(), 200);

    // Starting a job, a server function and the WebSocket upgrade follow the same rule.
    let ingest = app
        .client
        .post(app.url("/api/ingest"))
        .header("cookie", &cookie)
        .header("origin", EVIL)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_error(ingest, 403, "forbidden").await;
    let rpc = app
        .client
        .post(app.url("/rpc/start_ingest"))
        .header("cookie", &cookie)
        .header("origin", EVIL)
        .form(&[("metadata", "{}")])
        .send()
        .await
        .unwrap();
    assert_eq!(rpc.status(), 403);
    assert!(
        app.list_jobs("").await.jobs.is_empty(),
        "no job was created"
    );

    let id = accepted_id(app.ingest_json("{}").await).await;
    let upgrade = |origin: &str| {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                app.ws_url(&format!("/ws/status/{id}")),
            )
            .unwrap();
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    match upgrade(EVIL).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!(
            "a cross-site WebSocket was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    assert!(
        upgrade(&ours).await.is_ok(),
        "our own page's WebSocket works"
    );
}

#[tokio::test]
async fn a_new_token_ends_every_session_opened_with_the_old_one() {
    let app = spawn_app().await;
    let cookie = app.sign_in().await;
    let data_dir = app.stop().await;
    // Same token: the session survives the restart.
    let app = spawn_app_in(data_dir, |_| {}).await;
    let list = |app: &TestApp| {
        app.client
            .get(app.url("/api/jobs"))
            .header("cookie", &cookie)
            .send()
    };
    assert_eq!(list(&app).await.unwrap().status(), 200);
    let data_dir = app.stop().await;
    let app = spawn_app_in(data_dir, |settings| {
        settings.token = ApiToken::parse("a-rotated-token-9876543210").unwrap();
    })
    .await;
    assert_error(list(&app).await.unwrap(), 401, "unauthorized").await;
}

fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn sign_in_from(client: &reqwest::Client, base: &str, token: &str) -> u16 {
    client
        .post(format!("{base}/api/session"))
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_address_and_logged_without_the_guess() {
    let server = BinaryServer::start(&[
        ("INGEST_SIGN_IN_FAILURES_PER_MINUTE", "5"),
        ("INGEST_RATE_LIMIT_PER_SECOND", "20"),
        ("INGEST_RATE_LIMIT_BURST", "40"),
    ])
    .await;
    let base = server.url("");
    let guess = "guess-0123456789-not-it";
    // Two guessing addresses, each far over the throttle and the rate limit.
    for attacker in ["127.0.0.2", "127.0.0.3"] {
        let client = client_from(attacker);
        let mut statuses = Vec::new();
        for _ in 0..30 {
            statuses.push(sign_in_from(&client, &base, guess).await);
        }
        assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
        assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
        // Locked out even with the right token until the minute is over.
        assert_eq!(sign_in_from(&client, &base, TOKEN).await, 429);
    }
    // Guessing through the API with a Bearer token counts the same.
    let api_guesser = client_from("127.0.0.5");
    let list = |token: &'static str| {
        api_guesser
            .get(format!("{base}/api/jobs"))
            .bearer_auth(token)
            .send()
    };
    for _ in 0..5 {
        assert_eq!(list(guess).await.unwrap().status(), 401);
    }
    assert_eq!(list(guess).await.unwrap().status(), 429);
    assert_eq!(list(TOKEN).await.unwrap().status(), 429);
    // A third address signs in every time, also through the server function.
    let person = client_from("127.0.0.4");
    for _ in 0..6 {
        assert_eq!(sign_in_from(&person, &base, TOKEN).await, 204);
    }
    let rpc = person
        .post(format!("{base}/rpc/sign_in"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(rpc.status(), 200);
    let log = server.log();
    assert!(log.contains("sign-in failed"), "{log}");
    assert!(
        log.contains("127.0.0.2") && log.contains("127.0.0.3"),
        "{log}"
    );
    assert!(!log.contains(guess), "a guessed token reached the log");
    assert!(!log.contains(TOKEN), "the token reached the log");
}

#[tokio::test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let app = spawn_app().await;
    let spoofed = app
        .client
        .post(app.url("/api/ingest"))
        .bearer_auth(TOKEN)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "198.51.100.7")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let body: Value = spoofed.json().await.unwrap();
    let expected = format!("http://{}/api/status/", app.address);
    assert!(
        body["status_url"].as_str().unwrap().starts_with(&expected),
        "{body}"
    );
    let cookie = app
        .client
        .post(app.url("/api/session"))
        .header("x-forwarded-proto", "https")
        .json(&serde_json::json!({ "token": TOKEN }))
        .send()
        .await
        .unwrap();
    let header = cookie.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        !header.contains("Secure"),
        "an untrusted peer chose Secure: {header}"
    );

    // With a public URL, answers use it whatever Host the client sent.
    let app = spawn_app_with(|s| {
        s.public_url =
            Some(ingest::server::config::PublicUrl::parse("https://ingest.example.com").unwrap())
    })
    .await;
    let answer = app
        .client
        .post(app.url("/api/ingest"))
        .bearer_auth(TOKEN)
        .header("host", "attacker.example")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let body: Value = answer.json().await.unwrap();
    assert!(
        body["status_url"]
            .as_str()
            .unwrap()
            .starts_with("https://ingest.example.com/api/status/"),
        "{body}"
    );
    assert!(body["ws_url"]
        .as_str()
        .unwrap()
        .starts_with("wss://ingest.example.com/ws/"));
}

#[tokio::test]
async fn a_spoofed_forwarded_for_does_not_escape_the_rate_limit() {
    let app = spawn_app_with(|s| {
        s.rate_limit_per_second = 1;
        s.rate_limit_burst = 3;
    })
    .await;
    let mut limited = false;
    for i in 0..8 {
        let response = app
            .client
            .get(app.url("/api/jobs"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        limited |= response.status() == 429;
    }
    assert!(limited, "each made-up address got a fresh allowance");
}

#[tokio::test]
async fn server_functions_answer_bad_calls_with_4xx_and_keep_to_the_limits() {
    let app = spawn_app_with(|s| {
        s.rate_limit_per_second = 1;
        s.rate_limit_burst = 5;
    })
    .await;
    let bad = app
        .client
        .post(app.url("/rpc/start_ingest"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.expect("a JSON body");
    assert_eq!(body["status"], 400, "{body}");
    let huge = app
        .client
        .post(app.url("/rpc/start_ingest"))
        .bearer_auth(TOKEN)
        .form(&[("metadata", "x".repeat(1024 * 1024))])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let call = app
            .client
            .post(app.url("/rpc/start_ingest"))
            .bearer_auth(TOKEN)
            .form(&[("metadata", "{}")])
            .send()
            .await
            .unwrap();
        statuses.push(call.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(app.list_jobs("limit=500").await.jobs.len() < 10);
}

#[tokio::test]
async fn pages_carry_a_strict_policy_with_the_hydration_scripts_nonce() {
    let app = spawn_app().await;
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let policy = headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a nonce in the policy");
    assert!(nonce.len() >= 16);
    assert!(
        html.contains(&format!("nonce=\"{nonce}\"")),
        "the inline script carries it"
    );
    for directive in [
        "frame-ancestors 'none'",
        "'wasm-unsafe-eval'",
        "object-src 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} missing: {policy}");
    }
    assert!(!policy.contains("'unsafe-eval'") && !policy.contains("'unsafe-inline'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(
        headers.get("strict-transport-security").is_none(),
        "no HSTS over http"
    );
    // A fresh nonce every time.
    let again = app.client.get(app.url("/jobs")).send().await.unwrap();
    let second = again.headers()["content-security-policy"].to_str().unwrap();
    assert!(!second.contains(nonce));
    // Other HTML (Swagger UI, the 404 page) has a policy too.
    for path in ["/docs/", "/no-such-page"] {
        let other = app.client.get(app.url(path)).send().await.unwrap();
        let policy = other.headers().get("content-security-policy");
        assert!(
            policy.is_some_and(|p| p.to_str().unwrap().contains("frame-ancestors 'none'")),
            "{path}"
        );
    }
}

#[tokio::test]
async fn only_short_plain_request_ids_are_echoed() {
    let app = spawn_app().await;
    let echo = |id: String| {
        app.client
            .get(app.url("/healthz"))
            .header("x-request-id", id)
            .send()
    };
    let plain = echo("abc-123_trace.1".into()).await.unwrap();
    assert_eq!(plain.headers()["x-request-id"], "abc-123_trace.1");
    for forged in [
        "x".repeat(500),
        "a b \"level=ERROR\"".to_owned(),
        "id\u{7f}".to_owned(),
    ] {
        let Ok(answer) = echo(forged.clone()).await else {
            continue;
        };
        let id = answer.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, forged);
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "a fresh id instead of {forged:?}: {id}"
        );
    }
}

#[tokio::test]
async fn readiness_checks_run_at_most_once_a_second_and_failures_are_logged_once() {
    let app = spawn_app().await;
    let probe_time = || async {
        let path = app.data_dir.path().join("ingest.db");
        let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
            "sqlite://{}?mode=ro",
            path.display()
        ))
        .await
        .unwrap();
        sqlx::query_scalar::<_, i64>("SELECT at_us FROM write_probe")
            .fetch_one(&mut db)
            .await
            .unwrap()
    };
    // A burst of calls within one second makes at most one probe write.
    let mut bursts_within_a_second = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let first = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(first.status(), 200);
        let probed = probe_time().await;
        for _ in 0..50 {
            app.client.get(app.url("/readyz")).send().await.unwrap();
        }
        if started.elapsed() < Duration::from_millis(900) {
            bursts_within_a_second += 1;
            assert_eq!(
                probe_time().await,
                probed,
                "a burst wrote more than one probe"
            );
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(
        bursts_within_a_second > 0,
        "the machine was too slow to tell"
    );
    // A later call checks again.
    let before = probe_time().await;
    app.client.get(app.url("/readyz")).send().await.unwrap();
    assert!(probe_time().await > before);

    // Unready: one warning, not one per call.
    let server =
        BinaryServer::start(&[("INGEST_MIN_FREE_DISK_BYTES", "18446744073709551615")]).await;
    let client = reqwest::Client::new();
    for _ in 0..30 {
        let answer = client.get(server.url("/readyz")).send().await.unwrap();
        assert_eq!(answer.status(), 503);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warnings = server.log().matches("not ready").count();
    assert_eq!(warnings, 1, "{}", server.log());
}
