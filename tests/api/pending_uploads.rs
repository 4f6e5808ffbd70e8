//! Unfinished resumable uploads: each credential may leave `max_pending_uploads` of them, and
//! waiting ones cost no memory (they live in the store), neither while the server runs nor
//! after a restart.
use crate::helpers::*;
use ingest::domain::JobState;
use std::time::Duration;

/// Metadata as large as a tus creation can carry: its base64 must fit the 32 KiB of headers a
/// request may have.
const METADATA_BYTES: usize = 23_000;

#[tokio::test]
async fn a_credential_past_its_pending_upload_cap_gets_429_and_creates_nothing() {
    let app = spawn_app_with(|s| s.max_pending_uploads = 3).await;
    let token = app.tus();
    let metadata = bulky_metadata(METADATA_BYTES);
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(token.created(100, &metadata).await);
    }

    let refused = token.create(100, &metadata).send().await.unwrap();
    assert_eq!(refused.headers()["retry-after"], "60");
    assert_eq!(refused.headers()["tus-resumable"], "1.0.0");
    let message = assert_error(refused, 429, "too_many_pending_uploads").await;
    assert!(message.contains('3'), "{message}");
    assert_eq!(app.list_jobs("").await.jobs.len(), 3, "nothing was created");

    // Another credential, a browser session, has its own allowance.
    let browser = Tus::with_cookie(&app.client, &app.url(""), app.sign_in().await);
    for _ in 0..3 {
        browser.created(100, &metadata).await;
    }
    assert_error(
        browser.create(100, &metadata).send().await.unwrap(),
        429,
        "too_many_pending_uploads",
    )
    .await;

    // An upload that is complete, or ended, no longer counts.
    let complete = token
        .patch(waiting[0], 0)
        .body(vec![1u8; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(complete.status(), 204);
    let fourth = token.created(100, &metadata).await;
    let ended = app
        .client
        .delete(app.url(&format!("/api/uploads/{}", waiting[1])))
        .bearer_auth(TOKEN)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 204);
    token.created(100, &metadata).await;
    assert_error(
        token.create(100, &metadata).send().await.unwrap(),
        429,
        "too_many_pending_uploads",
    )
    .await;
    assert_eq!(token.status(fourth).await.status, JobState::Receiving);
    // One-shot uploads and metadata-only jobs are not resumable uploads: never capped.
    accepted_id(app.ingest_file("x.bin", vec![1, 2, 3], "{}").await).await;
    accepted_id(app.ingest_json("{}").await).await;
}

/// Creates `count` uploads of 1 KiB with `metadata`, eight at a time.
async fn create_many(tus: &Tus<'_>, count: usize, metadata: &str) {
    use futures::StreamExt;
    let created: Vec<u16> = futures::stream::iter(0..count)
        .map(|_| async {
            let response = tus.create(1024, metadata).send().await.unwrap();
            response.status().as_u16()
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(created.iter().all(|status| *status == 201), "{created:?}");
}

const MIB: f64 = 1024.0 * 1024.0;

#[tokio::test]
async fn hundreds_of_waiting_uploads_with_bulky_metadata_cost_no_memory_even_after_a_restart() {
    // Each upload carries 23 KB of metadata: 600 of them are 13 MiB of it, which memory held
    // twice over (snapshot and parsed JSON) when waiting uploads were kept live.
    const PENDING: usize = 600;
    const WARM_UP: usize = 50;
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let client = reqwest::Client::new();
    let cap = PENDING.to_string();
    let env = [
        ("INGEST_MAX_PENDING_UPLOADS", cap.as_str()),
        ("INGEST_RATE_LIMIT_PER_SECOND", "0"),
        ("RUST_LOG", "info"),
    ];
    let mut server = Server::start_with(&data_dir, "first.log", &env).await;
    let started = server.rss_bytes();
    let tus = Tus::new(&client, &server.base);
    let metadata = bulky_metadata(METADATA_BYTES);
    // Warm-up: the database's page cache, the allocator's arenas, connection buffers.
    let probe = tus.created(1024, &metadata).await;
    create_many(&tus, WARM_UP - 1, &metadata).await;
    let warm = server.rss_bytes();
    create_many(&tus, PENDING - WARM_UP, &metadata).await;
    let full = server.rss_bytes();
    assert_error(
        tus.create(1024, &metadata).send().await.unwrap(),
        429,
        "too_many_pending_uploads",
    )
    .await;
    let browser = Tus::with_cookie(
        &client,
        &server.base,
        session_cookie(&client, &server.base).await,
    );
    browser.created(1024, &metadata).await;

    // One of them, half sent, must come back after the restart exactly as it was.
    let half = tus
        .patch(probe, 0)
        .body(vec![7u8; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(half.status(), 204);
    let before = tus.status(probe).await;

    assert_eq!(server.terminate().await, Some(0), "{}", server.log());
    let server = Server::start_with(&data_dir, "second.log", &env).await;
    // Past start-up (recovery), with a request served.
    let tus = Tus::new(&client, &server.base);
    assert_eq!(tus.offset(probe).await, 512);
    let after = tus.status(probe).await;
    let restarted = server.rss_bytes();

    let growth = (full as f64 - warm as f64) / MIB;
    let per_upload = (full as f64 - warm as f64) / (PENDING - WARM_UP) as f64;
    eprintln!(
        "RSS: {:.1} MiB at start, {:.1} MiB after {WARM_UP} uploads, {:.1} MiB after {PENDING} \
         ({growth:+.1} MiB, {per_upload:.0} bytes per upload); {:.1} MiB after a restart with \
         {PENDING} waiting",
        started as f64 / MIB,
        warm as f64 / MIB,
        full as f64 / MIB,
        restarted as f64 / MIB,
    );
    // What may still grow once warm is SQLite's page cache (2 MiB per connection at most),
    // whatever the number of uploads; their metadata alone is 12 MiB.
    assert!(
        growth < 4.0,
        "{growth:.1} MiB for {} waiting uploads",
        PENDING - WARM_UP
    );
    // A restart reads every waiting upload's id, nothing more: it ends up where the first life
    // was once warm, not where it was with all of them.
    assert!(
        (restarted as f64) < (warm as f64) + 4.0 * MIB,
        "{:.1} MiB after a restart, {:.1} MiB once warm",
        restarted as f64 / MIB,
        warm as f64 / MIB
    );

    // The same numbers as before the restart; only the expiry clock starts again.
    assert_eq!(
        (
            after.status,
            after.bytes_done,
            after.progress,
            after.bytes_total
        ),
        (
            before.status,
            before.bytes_done,
            before.progress,
            before.bytes_total
        )
    );
    assert_eq!((after.bytes_done, after.progress), (512, 45));
    assert!(after.updated_at >= before.updated_at);
    // Still capped after the restart: the count is in the store.
    assert_error(
        tus.create(1024, &metadata).send().await.unwrap(),
        429,
        "too_many_pending_uploads",
    )
    .await;
    let rest = tus
        .patch(probe, 512)
        .body(vec![7u8; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 204);
    let done = wait_for_state(&client, &server.base, probe, JobState::is_terminal).await;
    assert_eq!(done.status, JobState::Completed);
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&[7u8; 1024]));
    tokio::time::timeout(Duration::from_secs(10), tus.created(1024, "{}"))
        .await
        .expect("a place came free");
}
