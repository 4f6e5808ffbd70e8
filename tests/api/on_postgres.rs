//! The real server with `database_url` set: jobs, sessions and accounts in a fresh PostgreSQL
//! database (blobs and staging still in the data dir), end to end; the CLI against the same
//! database; and the refusals to start when the URL is bad or the server cannot be reached.
use crate::{helpers::*, postgres::TestDatabase};
use ingest::{
    domain::{JobId, JobState},
    server::store::{JobStore, PgStore},
};
use std::process::{Command, Output};

async fn download(app: &TestApp, id: JobId) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/api/jobs/{id}/content")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_server_on_postgresql_ingests_serves_deletes_and_resumes_uploads() {
    let database = TestDatabase::create().await;
    let url = database.url.clone();
    let app = spawn_app_with(|settings| settings.database_url = Some(url)).await;

    // One-shot upload → completed → download → delete.
    let bytes = random_bytes(100_000);
    let id = accepted_id(
        app.ingest_file("data.bin", bytes.clone(), "{\"n\": 0.1}")
            .await,
    )
    .await;
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.status, JobState::Completed, "{done:?}");
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&bytes));
    assert_eq!(done.metadata, serde_json::json!({ "n": 0.1 }));
    let whole = download(&app, id).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.unwrap(), bytes);
    // The record is in PostgreSQL, not in a SQLite file beside the blobs.
    let direct = PgStore::open(&database.url).await.unwrap();
    assert_eq!(direct.get(id).await.unwrap(), Some(done));
    assert!(!app.data_dir.path().join("ingest.db").exists());
    let deleted = app
        .client
        .delete(app.url(&format!("/api/jobs/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.status(&id.to_string()).await.status(), 404);
    assert_eq!(download(&app, id).await.status(), 404);
    assert_eq!(direct.get(id).await.unwrap(), None);

    // A metadata-only job.
    let meta = accepted_id(app.ingest_json("{\"kind\": \"metadata\"}").await).await;
    assert_eq!(
        app.wait_until_finished(meta).await.status,
        JobState::Completed
    );

    // A resumable upload in two PATCHes, its offset read back in between; with a session
    // (stored in PostgreSQL too) instead of the token.
    let cookie = app.sign_in().await;
    let tus = Tus::with_cookie(&app.client, &app.url(""), cookie);
    let bytes = random_bytes(300_000);
    let upload = tus.created(bytes.len() as u64, "{\"via\": \"tus\"}").await;
    let first = tus
        .patch(upload, 0)
        .body(bytes[..120_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 204);
    assert_eq!(tus.offset(upload).await, 120_000);
    assert_eq!(
        direct
            .upload(upload)
            .await
            .unwrap()
            .map(|record| record.offset),
        Some(120_000)
    );
    let rest = tus
        .patch(upload, 120_000)
        .body(bytes[120_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 204);
    let finished = app.wait_until_finished(upload).await;
    assert_eq!(finished.status, JobState::Completed, "{finished:?}");
    assert_eq!(finished.sha256.unwrap().to_hex(), sha256_hex(&bytes));

    let page = app.list_jobs("limit=10").await;
    assert_eq!(
        page.jobs.iter().map(|job| job.job_id).collect::<Vec<_>>(),
        [upload, meta]
    );
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    direct.close().await;
}

/// Runs the binary with `args` and `env` (the test token, no settings file).
fn ingest(args: &[&str], env: &[(&str, &str)]) -> Output {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ingest"));
    command
        .args(args)
        .env("INGEST_CONFIG", "/nonexistent/Leptos.toml")
        .env("INGEST_DATA_DIR", data.path())
        .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
        .env("INGEST_TOKEN", TOKEN)
        .env_remove("INGEST_DATABASE_URL");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[tokio::test]
async fn accounts_made_with_the_cli_in_postgresql_sign_in_on_a_server_using_it() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let url = database.url_text();
    let env = [
        ("INGEST_DATABASE_URL", url.as_str()),
        ("INGEST_RATE_LIMIT_PER_SECOND", "0"),
        ("RUST_LOG", "info"),
    ];
    let server = Server::start_with(&dir.path().join("data"), "server.log", &env).await;

    let added = ingest(&["accounts", "add", "alice"], &env);
    assert!(added.status.success(), "{added:?}");
    let key = ingest(&["keys", "add", "alice"], &env);
    assert!(key.status.success(), "{key:?}");
    let stdout = String::from_utf8(key.stdout).unwrap();
    let secret = stdout.lines().last().unwrap().to_owned();

    let client = reqwest::Client::new();
    let me = eventually(
        "the server accepts the key made by the CLI",
        std::time::Duration::from_secs(5),
        async || {
            let answer = client
                .get(format!("{}/api/me", server.base))
                .bearer_auth(&secret)
                .send()
                .await
                .ok()?;
            (answer.status() == 200).then_some(answer)
        },
    )
    .await;
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["account"], "alice", "{me}");
}

#[tokio::test]
async fn a_bad_or_unreachable_database_url_refuses_to_start_without_showing_the_password() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("postgres://ingest:s3cret-pw@127.0.0.1:{closed}/ingest");
    let cases = [
        unreachable.as_str(),
        "postgres://ingest:s3cret-pw@host:notaport/ingest",
        "mysql://ingest:s3cret-pw@127.0.0.1/ingest",
    ];
    for url in cases {
        for args in [&[][..], &["accounts", "list"][..]] {
            let output = ingest(args, &[("INGEST_DATABASE_URL", url)]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{url} {args:?}: {stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
            assert!(stderr.contains("database"), "{stderr}");
            assert!(
                !stderr.contains("s3cret"),
                "the password is shown: {stderr}"
            );
        }
    }
}
