//! `ingest upload` run as a real process against a real server: chunked tus uploads followed
//! to the end, `--json`, standard input, and the exit codes scripts rely on.
use crate::{client_harness::*, helpers::*};
use ingest::domain::JobState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_chunk_upload_followed_to_the_end_exits_0_with_the_servers_digest() {
    let app = spawn_app().await;
    let user = ClientUser::new();
    let (file, bytes) = user.file("report.bin", 3 * 1024 * 1024 + 123);
    let proxy = Proxy::start(app.address, None).await;

    let output = user
        .run(
            &proxy.url,
            &[
                "upload",
                "--follow",
                "--json",
                "--chunk-size",
                "256KiB",
                "--metadata",
                r#"{"source":"cli-test"}"#,
                file.to_str().unwrap(),
            ],
        )
        .await;

    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let jobs = json_jobs(&output);
    assert_eq!(jobs.len(), 1, "one object per job: {}", stdout(&output));
    let job = &jobs[0];
    assert_eq!(job.status, JobState::Completed);
    assert_eq!(job.sha256.unwrap().to_hex(), sha256_hex(&bytes));
    assert_eq!(job.size, Some(bytes.len() as u64));
    assert_eq!(job.filename.as_deref(), Some("report.bin"));
    assert_eq!(job.metadata["source"], "cli-test");
    // What the server holds is what it says.
    assert_eq!(app.status_of(job.job_id).await.sha256, job.sha256);
    // Thirteen PATCHes of at most 256 KiB went through the proxy, with their headers, once.
    assert!(proxy.sent() >= bytes.len() as u64);
    assert!(
        proxy.sent() < bytes.len() as u64 + 64 * 1024,
        "{}",
        proxy.sent()
    );
    assert!(
        user.cache_records().is_empty(),
        "a finished upload is forgotten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_prints_one_status_per_job_on_stdout_and_quiet_prints_nothing_else() {
    let app = spawn_app().await;
    let user = ClientUser::new();
    let (first, first_bytes) = user.file("a.bin", 200_000);
    let (second, second_bytes) = user.file("b.bin", 300_000);

    let output = user
        .run(
            &app.url(""),
            &[
                "upload",
                "--json",
                "--quiet",
                "--parallel",
                "2",
                first.to_str().unwrap(),
                second.to_str().unwrap(),
            ],
        )
        .await;

    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(stderr(&output), "", "--quiet");
    let mut jobs = json_jobs(&output);
    jobs.sort_by(|a, b| a.filename.cmp(&b.filename));
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].sha256.unwrap().to_hex(), sha256_hex(&first_bytes));
    assert_eq!(jobs[1].sha256.unwrap().to_hex(), sha256_hex(&second_bytes));
    // Without --follow the upload is in, and the job at least queued.
    for job in &jobs {
        assert!(job.status != JobState::Receiving, "{job:?}");
    }
    // The status as the API gives it, field for field.
    for line in stdout(&output).lines() {
        let raw: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = raw["job_id"].as_str().unwrap();
        let answer = app.status(id).await;
        assert_eq!(answer.status(), 200);
        let api: serde_json::Value = answer.json().await.unwrap();
        let keys = |value: &serde_json::Value| {
            value
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&raw), keys(&api));
        assert_eq!(raw["sha256"], api["sha256"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_input_is_uploaded_in_chunks_with_its_length_declared_at_the_end() {
    let app = spawn_app().await;
    let user = ClientUser::new();
    let (file, bytes) = user.file("piped.bin", 600 * 1024);
    let mut command = user.command(
        &app.url(""),
        &[
            "upload",
            "--follow",
            "--json",
            "--chunk-size",
            "128KiB",
            "-",
        ],
    );
    command.stdin(std::fs::File::open(&file).unwrap());

    let output = output_of(command).await;

    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot be continued"),
        "{}",
        stderr(&output)
    );
    let job = &json_jobs(&output)[0];
    assert_eq!(job.status, JobState::Completed);
    assert_eq!(job.size, Some(bytes.len() as u64));
    assert_eq!(job.sha256.unwrap().to_hex(), sha256_hex(&bytes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_exits_3_with_the_servers_message_and_creates_nothing() {
    let app = spawn_app().await;
    let user = ClientUser::new();
    let (file, _) = user.file("x.bin", 1000);

    let output = output_of(user.command_with_key(
        &app.url(""),
        "not-the-token-0123456789",
        &["upload", file.to_str().unwrap()],
    ))
    .await;

    assert_eq!(exit_code(&output), 3, "{}", stderr(&output));
    assert!(stderr(&output).contains("401"), "{}", stderr(&output));
    assert_eq!(stdout(&output), "");
    assert!(app.list_jobs("").await.jobs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_answer_exits_4_after_its_retries() {
    let user = ClientUser::new();
    let (file, _) = user.file("x.bin", 1000);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");

    let output = user
        .run(
            &server,
            &["upload", "--retries", "2", file.to_str().unwrap()],
        )
        .await;
    assert_eq!(exit_code(&output), 4, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("gave up after 2 retries"),
        "{}",
        stderr(&output)
    );

    let status = user.run(&server, &["ls", "--retries", "0"]).await;
    assert_eq!(exit_code(&status), 4, "{}", stderr(&status));
}

#[tokio::test]
async fn usage_errors_exit_2_with_one_line() {
    let user = ClientUser::new();
    let (file, _) = user.file("x.bin", 10);
    let file = file.to_str().unwrap();
    let server = "http://127.0.0.1:9";
    for args in [
        vec!["upload", "--chunk-size", "lots", file],
        vec!["upload", "--metadata", "[1,2]", file],
        vec!["upload", "no-such-file.bin"],
        vec!["status", "not-a-job-id"],
        vec!["upload"],
    ] {
        let output = user.run(server, &args).await;
        assert_eq!(exit_code(&output), 2, "{args:?}: {}", stderr(&output));
        assert_eq!(
            stderr(&output).trim_end().lines().count(),
            1,
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let mut no_key = user.command(server, &["upload", file]);
    no_key.env_remove("INGEST_TOKEN");
    let output = output_of(no_key).await;
    assert_eq!(exit_code(&output), 2);
    assert!(
        stderr(&output).contains("INGEST_TOKEN"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_may_come_from_a_file() {
    let app = spawn_app().await;
    let user = ClientUser::new();
    let (file, _) = user.file("x.bin", 1000);
    let key_file = user.path("key");
    std::fs::write(&key_file, format!("{TOKEN}\n")).unwrap();
    let mut command = user.command(&app.url(""), &["upload", "--quiet", file.to_str().unwrap()]);
    command
        .env_remove("INGEST_TOKEN")
        .env("INGEST_TOKEN_FILE", &key_file);

    let output = output_of(command).await;

    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(app.list_jobs("").await.jobs.len(), 1);
}
