//! Webhooks end to end: a real receiver on loopback (`webhooks_receiver`), signatures checked
//! by the test's own implementation of the specification, every event type once per job,
//! retries with growing gaps, final failures, rotation, replay, ping, per-account isolation,
//! the destination guard, and a pending delivery surviving SIGKILL.
use super::{
    helpers::{
        accepted_id, assert_error, random_bytes, sha256_hex, spawn_app_with, within, ApiClient,
        Server, TestApp, TOKEN,
    },
    webhooks_receiver::{verify, Answer, Received, Receiver},
};
use base64::{engine::general_purpose::STANDARD, Engine};
use ingest::domain::{JobId, JobState};
use reqwest::Method;
use serde_json::{json, Value};
use std::{collections::BTreeMap, time::Duration};

/// A test app whose webhooks may go to loopback, retrying quickly.
async fn app_with_webhooks(retry_base_ms: u64) -> TestApp {
    spawn_app_with(|settings| {
        settings.webhook_allow_private = true;
        settings.webhook_retry_base = Duration::from_millis(retry_base_ms);
    })
    .await
}

/// Registers an endpoint; returns its id and secret.
pub async fn register(caller: &ApiClient, url: &str, events: Value) -> (String, String) {
    let response = caller
        .request(Method::POST, "/api/webhooks")
        .json(&json!({"url": url, "events": events, "description": "test receiver"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let secret = body["secret"]
        .as_str()
        .expect("the secret, once")
        .to_owned();
    assert!(secret.starts_with("whsec_"));
    (body["id"].as_str().unwrap().to_owned(), secret)
}

pub async fn deliveries(caller: &ApiClient, endpoint: &str) -> Vec<Value> {
    let log = caller
        .get_json(&format!("/api/webhooks/{endpoint}/deliveries"))
        .await;
    log.as_array().unwrap().clone()
}

/// Waits until the endpoint's log has no pending delivery; returns the log.
pub async fn settled(caller: &ApiClient, endpoint: &str) -> Vec<Value> {
    within(Duration::from_secs(15), async || {
        let log = deliveries(caller, endpoint).await;
        log.iter()
            .all(|delivery| delivery["status"] != "pending")
            .then_some(log)
    })
    .await
    .expect("every delivery settles")
}

pub async fn metadata_job(caller: &ApiClient, metadata: Value) -> JobId {
    let response = caller
        .request(Method::POST, "/api/ingest")
        .json(&json!({ "metadata": metadata }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    accepted_id(response).await
}

/// The events each job got, by job id: their types in order of arrival.
pub fn events_by_job(received: &[Received]) -> BTreeMap<String, Vec<String>> {
    let mut events: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for request in received {
        events
            .entry(request.job_id())
            .or_default()
            .push(request.event_type());
    }
    events
}

#[tokio::test]
async fn every_event_type_comes_once_per_job_signed_as_the_standard_says() {
    let app = app_with_webhooks(50).await;
    let receiver = Receiver::start().await;
    let admin = app.admin();
    let (_, secret) = register(&admin, &receiver.url("/hooks/ingest"), json!(["*"])).await;

    // completed: a metadata job the worker finishes.
    let completed = metadata_job(&admin, json!({"n": 1})).await;
    assert_eq!(
        app.wait_until_finished(completed).await.status,
        JobState::Completed
    );
    // failed: a resumable upload whose bytes do not match the digest it declared.
    let tus = app.tus();
    let file = random_bytes(1000);
    let response = app
        .client
        .post(app.url("/api/uploads"))
        .bearer_auth(TOKEN)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", file.len())
        .header(
            "Upload-Metadata",
            format!("sha256 {}", STANDARD.encode(sha256_hex(b"other"))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let failed = JobId::parse(location.trim_start_matches("/api/uploads/")).unwrap();
    tus.patch(failed, 0).body(file).send().await.unwrap();
    assert_eq!(
        app.wait_until_finished(failed).await.status,
        JobState::Failed
    );
    // cancelled: a resumable upload terminated before its bytes came.
    let cancelled = tus.created(100, "{}").await;
    assert_eq!(tus.terminate(cancelled).send().await.unwrap().status(), 204);

    let received = receiver.wait_for(6, Duration::from_secs(15)).await;
    // Nothing more comes: each event exactly once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = if receiver.received().len() > received.len() {
        receiver.received()
    } else {
        received
    };
    let events = events_by_job(&received);
    let expect = |id: JobId, last: &str| {
        assert_eq!(
            events.get(&id.to_string()).cloned().unwrap_or_default(),
            ["job.created", last],
            "events of {id}: {events:?}"
        );
    };
    expect(completed, "job.completed");
    expect(failed, "job.failed");
    expect(cancelled, "job.cancelled");
    assert_eq!(received.len(), 6, "{events:?}");

    for request in &received {
        assert!(verify(request, &secret), "a signature that does not verify");
        assert!(!verify(
            request,
            &format!("whsec_{}", STANDARD.encode([7u8; 32]))
        ));
        assert!(request.header("webhook-id").starts_with("msg_"));
        assert_eq!(request.header("content-type"), "application/json");
        let body = request.json();
        assert!(body["timestamp"].as_str().unwrap().contains('T'));
        // The data is the job as GET /api/status shows it, as it was at the event.
        let job = &body["data"];
        let state = job["status"].as_str().unwrap();
        match body["type"].as_str().unwrap() {
            "job.created" => assert!(["queued", "receiving"].contains(&state)),
            finished => assert_eq!(format!("job.{state}"), finished),
        }
    }
    let completed_event = received
        .iter()
        .find(|r| r.event_type() == "job.completed")
        .unwrap();
    let status = admin.get_json(&format!("/api/status/{completed}")).await;
    assert_eq!(completed_event.json()["data"], status);
    // A tampered body no longer verifies.
    let mut tampered = completed_event.clone();
    tampered.body = completed_event.body.slice(1..);
    assert!(!verify(&tampered, &secret));
}

#[tokio::test]
async fn a_receiver_answering_503_is_retried_with_growing_gaps_under_one_id() {
    let app = app_with_webhooks(300).await;
    let receiver = Receiver::start().await;
    receiver.then([
        Answer::status(503),
        Answer::status(503),
        Answer::status(503),
    ]);
    let admin = app.admin();
    let (endpoint, secret) = register(&admin, &receiver.url("/"), json!(["job.created"])).await;
    let job = metadata_job(&admin, json!({})).await;

    let received = receiver.wait_for(4, Duration::from_secs(15)).await;
    let ids: Vec<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert!(received.iter().all(|r| verify(r, &secret)));
    assert!(received.iter().all(|r| r.job_id() == job.to_string()));
    let gaps: Vec<Duration> = received.windows(2).map(|w| w[1].at - w[0].at).collect();
    // 300 ms doubling, each with a jitter of ±20 % (and up to 100 ms until the sender next
    // looks): 240–460, 480–820, 960–1540 ms.
    assert!(gaps[0] >= Duration::from_millis(240), "{gaps:?}");
    assert!(gaps[1] > gaps[0] && gaps[2] > gaps[1], "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(960), "{gaps:?}");

    let log = settled(&admin, &endpoint).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["id"], ids[0]);
    assert_eq!(log[0]["status"], "delivered");
    assert_eq!(log[0]["attempts"], 4);
    assert_eq!(log[0]["last_response_code"], 204);
    assert_eq!(log[0]["event_type"], "job.created");
}

#[tokio::test]
async fn a_4xx_answer_is_final_and_a_retry_sends_it_again_with_its_id() {
    let app = app_with_webhooks(50).await;
    let receiver = Receiver::start().await;
    receiver.then([Answer::status(410)]);
    let admin = app.admin();
    let (endpoint, _) = register(&admin, &receiver.url("/"), json!(["job.created"])).await;
    metadata_job(&admin, json!({})).await;

    let log = settled(&admin, &endpoint).await;
    assert_eq!(log[0]["status"], "failed");
    assert_eq!(log[0]["attempts"], 1);
    assert_eq!(log[0]["last_response_code"], 410);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "a final answer is not retried"
    );

    let delivery = log[0]["id"].as_str().unwrap();
    let retry = admin
        .send(
            Method::POST,
            &format!("/api/webhooks/{endpoint}/deliveries/{delivery}/retry"),
        )
        .await;
    assert_eq!(retry.status(), 202);
    let received = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(received[1].header("webhook-id"), delivery);
    let log = settled(&admin, &endpoint).await;
    assert_eq!(log[0]["status"], "delivered");
    assert_eq!(log[0]["attempts"], 2);

    let missing = admin
        .send(
            Method::POST,
            &format!("/api/webhooks/{endpoint}/deliveries/msg_nope/retry"),
        )
        .await;
    assert_error(missing, 404, "not_found").await;
}

#[tokio::test]
async fn a_ping_arrives_signed_and_shows_in_the_log() {
    let app = app_with_webhooks(50).await;
    let receiver = Receiver::start().await;
    let admin = app.admin();
    let (endpoint, secret) = register(&admin, &receiver.url("/"), json!(["job.failed"])).await;
    let response = admin
        .send(Method::POST, &format!("/api/webhooks/{endpoint}/ping"))
        .await;
    assert_eq!(response.status(), 202);
    let queued: Value = response.json().await.unwrap();
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(verify(&received[0], &secret));
    assert_eq!(received[0].event_type(), "webhook.ping");
    assert_eq!(received[0].json()["data"]["endpoint_id"], endpoint);
    assert_eq!(received[0].header("webhook-id"), queued["delivery_id"]);
    let log = settled(&admin, &endpoint).await;
    assert_eq!(log[0]["event_type"], "webhook.ping");
    assert_eq!(log[0]["status"], "delivered");
}

#[tokio::test]
async fn after_a_rotation_old_and_new_secrets_both_sign() {
    let app = app_with_webhooks(50).await;
    let receiver = Receiver::start().await;
    let admin = app.admin();
    let (endpoint, old) = register(&admin, &receiver.url("/"), json!(["job.created"])).await;
    let rotated: Value = admin
        .request(Method::PATCH, &format!("/api/webhooks/{endpoint}"))
        .json(&json!({"rotate_secret": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated["previous_secret_until"].is_string());
    // The secret is shown only when made.
    let shown = admin.get_json(&format!("/api/webhooks/{endpoint}")).await;
    assert!(shown.get("secret").is_none(), "{shown}");

    metadata_job(&admin, json!({})).await;
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        received[0].header("webhook-signature").split(' ').count(),
        2
    );
    assert!(verify(&received[0], &new));
    assert!(verify(&received[0], &old));
}

#[tokio::test]
async fn an_endpoint_failing_again_and_again_is_disabled_and_says_so() {
    let app = spawn_app_with(|settings| {
        settings.webhook_allow_private = true;
        settings.webhook_retry_base = Duration::from_millis(10);
        settings.webhook_disable_after_failures = 3;
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Answer::status(500));
    let admin = app.admin();
    let (endpoint, _) = register(&admin, &receiver.url("/"), json!(["*"])).await;
    metadata_job(&admin, json!({})).await;
    let disabled = within(Duration::from_secs(10), async || {
        let shown = admin.get_json(&format!("/api/webhooks/{endpoint}")).await;
        (shown["enabled"] == false).then_some(shown)
    })
    .await
    .expect("the endpoint is disabled");
    assert!(disabled["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("3 failed attempts"));
    // Attempts already in flight when it was disabled are counted too; nothing more is sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shown = admin.get_json(&format!("/api/webhooks/{endpoint}")).await;
    let failures = shown["consecutive_failures"].as_u64().unwrap();
    assert!((3..=4).contains(&failures), "{shown}");
    let sent = receiver.received().len();
    assert_eq!(
        sent as u64, failures,
        "nothing is sent to a disabled endpoint"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), sent);
    // A ping to a disabled endpoint would only wait; it is refused.
    let ping = admin
        .send(Method::POST, &format!("/api/webhooks/{endpoint}/ping"))
        .await;
    assert_error(ping, 409, "conflict").await;

    // Re-enabled, it gets its pending deliveries again.
    receiver.otherwise(Answer::status(200));
    let enabled: Value = admin
        .request(Method::PATCH, &format!("/api/webhooks/{endpoint}"))
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(enabled["enabled"], true);
    assert!(enabled["disabled_reason"].is_null());
    receiver.wait_for(sent + 1, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn accounts_see_only_their_endpoints_and_their_jobs_events() {
    let app = app_with_webhooks(50).await;
    let (alice, bob) = (app.member("alice").await, app.member("bob").await);
    let (for_alice, for_bob, for_all) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let (alices, _) = register(&alice, &for_alice.url("/"), json!(["job.created"])).await;
    register(&bob, &for_bob.url("/"), json!(["job.created"])).await;
    let everything = app.admin();
    let made = everything
        .request(Method::POST, "/api/webhooks")
        .json(&json!({"url": for_all.url("/"), "events": ["job.created"], "all_accounts": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    // A member may not ask for everyone's events.
    let refused = alice
        .request(Method::POST, "/api/webhooks")
        .json(&json!({"url": for_all.url("/"), "events": ["*"], "all_accounts": true}))
        .send()
        .await
        .unwrap();
    assert_error(refused, 403, "forbidden").await;

    let alices_job = metadata_job(&alice, json!({"who": "alice"})).await;
    let bobs_job = metadata_job(&bob, json!({"who": "bob"})).await;
    let to_alice = for_alice.wait_for(1, Duration::from_secs(10)).await;
    let to_bob = for_bob.wait_for(1, Duration::from_secs(10)).await;
    let to_all = for_all.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(for_alice.received().len(), 1);
    assert_eq!(for_bob.received().len(), 1);
    assert_eq!(to_alice[0].job_id(), alices_job.to_string());
    assert_eq!(to_bob[0].job_id(), bobs_job.to_string());
    let mut all: Vec<String> = to_all.iter().map(Received::job_id).collect();
    all.sort();
    let mut both = vec![alices_job.to_string(), bobs_job.to_string()];
    both.sort();
    assert_eq!(all, both);

    // Bob cannot see, change, ping or read the log of Alice's endpoint.
    for (method, path) in [
        (Method::GET, format!("/api/webhooks/{alices}")),
        (Method::DELETE, format!("/api/webhooks/{alices}")),
        (Method::GET, format!("/api/webhooks/{alices}/deliveries")),
        (Method::POST, format!("/api/webhooks/{alices}/ping")),
    ] {
        assert_error(bob.send(method, &path).await, 404, "not_found").await;
    }
    let listed = bob.get_json("/api/webhooks").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_ne!(listed[0]["id"], alices.as_str());
    assert_eq!(
        alice
            .send(Method::DELETE, &format!("/api/webhooks/{alices}"))
            .await
            .status(),
        204
    );
    assert_eq!(alice.get_json("/api/webhooks").await, json!([]));
}

#[tokio::test]
async fn private_destinations_and_bad_registrations_are_refused() {
    let app = spawn_app_with(|_| {}).await;
    let admin = app.admin();
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",
    ] {
        let response = admin
            .request(Method::POST, "/api/webhooks")
            .json(&json!({"url": url, "events": ["*"]}))
            .send()
            .await
            .unwrap();
        let message = assert_error(response, 400, "invalid_body").await;
        assert!(
            message.contains("refused") || message.contains("resolve"),
            "{url}: {message}"
        );
    }
    for body in [
        json!({"url": "ftp://example.com/", "events": ["*"]}),
        json!({"url": "https://user:pw@example.com/", "events": ["*"]}),
        json!({"url": format!("https://example.com/{}", "a".repeat(3000)), "events": ["*"]}),
        json!({"url": "https://example.com/", "events": []}),
        json!({"url": "https://example.com/", "events": ["job.exploded"]}),
        json!({"url": "https://example.com/", "events": ["*"], "description": "x".repeat(501)}),
        json!({"url": "https://example.com/", "events": ["*"], "extra": 1}),
        json!({"events": ["*"]}),
    ] {
        let response = admin
            .request(Method::POST, "/api/webhooks")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "invalid_body").await;
    }
    assert_eq!(admin.get_json("/api/webhooks").await, json!([]));
    assert_error(
        admin.send(Method::GET, "/api/webhooks/not-a-uuid").await,
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn an_account_has_at_most_twenty_endpoints() {
    let app = app_with_webhooks(50).await;
    let receiver = Receiver::start().await;
    let admin = app.admin();
    for _ in 0..20 {
        register(&admin, &receiver.url("/"), json!(["job.completed"])).await;
    }
    let response = admin
        .request(Method::POST, "/api/webhooks")
        .json(&json!({"url": receiver.url("/"), "events": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_error(response, 409, "conflict").await;
}

#[tokio::test]
async fn a_pending_delivery_is_delivered_after_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = Receiver::start().await;
    // The first attempt fails; the retry is due 3 s later, by when the server is dead.
    receiver.then([Answer::status(503)]);
    let env = [
        ("INGEST_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("INGEST_WEBHOOK_RETRY_BASE_MS", "3000"),
    ];
    let mut server = Server::start_with(&data, "webhooks-before-kill.log", &env).await;
    let caller = ApiClient::at(
        server.address(),
        super::helpers::Credential::Bearer(TOKEN.to_owned()),
    );
    let (endpoint, secret) = register(&caller, &receiver.url("/"), json!(["job.created"])).await;
    let job = metadata_job(&caller, json!({"survives": true})).await;
    let first = receiver.wait_for(1, Duration::from_secs(10)).await;
    let id = first[0].header("webhook-id").to_owned();
    let pending = within(Duration::from_secs(5), async || {
        let log = deliveries(&caller, &endpoint).await;
        (log[0]["attempts"] == 1).then_some(log)
    })
    .await
    .expect("the failed attempt is recorded");
    assert_eq!(pending[0]["status"], "pending");
    server.kill_9();
    assert_eq!(receiver.received().len(), 1);

    let server = Server::start_with(&data, "webhooks-after-kill.log", &env).await;
    let received = receiver.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(received[1].header("webhook-id"), id);
    assert!(verify(&received[1], &secret));
    assert_eq!(received[1].job_id(), job.to_string());
    let caller = ApiClient::at(
        server.address(),
        super::helpers::Credential::Bearer(TOKEN.to_owned()),
    );
    let log = settled(&caller, &endpoint).await;
    assert_eq!(log[0]["status"], "delivered");
    assert_eq!(log[0]["attempts"], 2);
}

#[tokio::test]
async fn a_slow_receiver_does_not_slow_ingestion() {
    let app = app_with_webhooks(50).await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Answer::status(200).after(Duration::from_secs(2)));
    let admin = app.admin();
    register(&admin, &receiver.url("/"), json!(["*"])).await;
    let started = std::time::Instant::now();
    for n in 0..50 {
        metadata_job(&admin, json!({ "n": n })).await;
    }
    // 50 jobs, each answered once durable, while every delivery waits 2 s for its answer.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    receiver.wait_for(32, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_removed_accounts_endpoints_go_with_it() {
    let app = app_with_webhooks(50).await;
    let (everyones, own) = (Receiver::start().await, Receiver::start().await);
    let boss = app.account("boss", "admin").await;
    let made = boss
        .request(Method::POST, "/api/webhooks")
        .json(&json!({"url": everyones.url("/"), "events": ["job.created"], "all_accounts": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let alice = app.member("alice").await;
    register(&alice, &own.url("/"), json!(["job.created"])).await;
    metadata_job(&alice, json!({"n": 1})).await;
    everyones.wait_for(1, Duration::from_secs(10)).await;

    // The admin account is removed: its endpoint, which saw every account's jobs, must not
    // go on receiving them.
    let admin = app.admin();
    assert_eq!(
        admin
            .send(Method::DELETE, "/api/accounts/boss")
            .await
            .status(),
        204
    );
    metadata_job(&alice, json!({"n": 2})).await;
    own.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        everyones.received().len(),
        1,
        "a removed account's endpoint still receives"
    );
}
