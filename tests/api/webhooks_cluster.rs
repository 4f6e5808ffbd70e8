//! Webhooks on PostgreSQL: the outbox triggers and the leased claims of the PostgreSQL store,
//! in process and across two real nodes whose senders share one outbox (each delivery sent by
//! one node, once).
use super::{
    cluster::Cluster,
    helpers::{spawn_app_with, ApiClient},
    postgres::TestDatabase,
    webhooks::{events_by_job, metadata_job, register, settled},
    webhooks_receiver::{verify, Answer, Receiver},
};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn on_postgresql_events_are_recorded_retried_and_pinged() {
    let database = TestDatabase::create().await;
    let url = database.url.clone();
    let app = spawn_app_with(|settings| {
        settings.database_url = Some(url);
        settings.webhook_allow_private = true;
        settings.webhook_retry_base = Duration::from_millis(100);
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.then([Answer::status(503)]);
    let admin = app.admin();
    let (endpoint, secret) = register(&admin, &receiver.url("/"), json!(["*"])).await;
    let job = metadata_job(&admin, json!({"on": "postgres"})).await;
    app.wait_until_finished(job).await;
    // created (503, then again), completed.
    let received = receiver.wait_for(3, Duration::from_secs(15)).await;
    assert!(received.iter().all(|r| verify(r, &secret)));
    let events = events_by_job(&received);
    let mut types = events[&job.to_string()].clone();
    types.sort();
    assert_eq!(types, ["job.completed", "job.created", "job.created"]);
    let log = settled(&admin, &endpoint).await;
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|delivery| delivery["status"] == "delivered"));
    let retried = log
        .iter()
        .find(|d| d["event_type"] == "job.created")
        .unwrap();
    assert_eq!(retried["attempts"], 2);

    let ping = admin
        .send(Method::POST, &format!("/api/webhooks/{endpoint}/ping"))
        .await;
    assert_eq!(ping.status(), 202);
    let received = receiver.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(received[3].event_type(), "webhook.ping");
}

#[tokio::test]
async fn two_nodes_share_the_outbox_and_send_each_delivery_once() {
    let cluster = Cluster::start_with(
        2,
        &[
            ("INGEST_WEBHOOK_ALLOW_PRIVATE", "true"),
            ("INGEST_WEBHOOK_RETRY_BASE_MS", "100"),
        ],
    )
    .await;
    let receiver = Receiver::start().await;
    // Slow enough that both nodes' senders are busy at once.
    receiver.otherwise(Answer::status(204).after(Duration::from_millis(50)));
    let (endpoint, secret) = register(&cluster.admin(0), &receiver.url("/"), json!(["*"])).await;
    let callers: Vec<ApiClient> = (0..2).map(|index| cluster.admin(index)).collect();
    let mut jobs = Vec::new();
    for n in 0..20 {
        jobs.push(metadata_job(&callers[n % 2], json!({ "n": n })).await);
    }
    receiver.wait_for(40, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 40, "each delivery is sent once");
    assert!(received.iter().all(|r| verify(r, &secret)));
    let events = events_by_job(&received);
    for job in &jobs {
        let mut types = events[&job.to_string()].clone();
        types.sort();
        assert_eq!(types, ["job.completed", "job.created"], "{job}");
    }
    let log = settled(&callers[1], &endpoint).await;
    assert_eq!(log.len(), 40);
}
