//! `ingest upload` interrupted and run again: killed with SIGKILL, through a server restart,
//! and with the file changed in between. A slowed proxy in front of the server makes each
//! interruption land mid-upload.
use crate::{client_harness::*, helpers::*};
use ingest::domain::{JobId, JobState, JobStatus};
use std::{process::Child, time::Duration};

/// The upload's first bytes are on the server: a job in `receiving` with some bytes done.
async fn wait_until_part_is_in(base: &str, at_least: u64) -> JobStatus {
    let client = reqwest::Client::new();
    eventually(
        "part of the upload is on the server",
        Duration::from_secs(30),
        async || {
            let page = list_jobs(&client, base, "status=receiving").await;
            page.jobs.into_iter().find(|job| job.bytes_done >= at_least)
        },
    )
    .await
}

fn kill_9(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The arguments of every run here: small chunks, followed to the end, JSON out.
fn upload_args(file: &str) -> [&str; 6] {
    [
        "upload",
        "--follow",
        "--json",
        "--chunk-size",
        "256KiB",
        file,
    ]
}

/// Starts uploading `file` through a proxy that lets 2 MiB/s through (4 MiB: about two seconds),
/// kills the client with SIGKILL once a quarter of `size` is on the server, and waits until what
/// the dead client had handed to the kernel is through. The proxy (now at full speed, its URL the
/// server's for the client) and the job.
async fn killed_mid_upload(
    app: &TestApp,
    user: &ClientUser,
    file: &str,
    size: usize,
) -> (Proxy, JobStatus) {
    let slow = Proxy::start(app.address, Some(2 * 1024 * 1024)).await;
    let client = spawn_quietly(user.command(&slow.url, &upload_args(file)));
    let job = wait_until_part_is_in(&app.url(""), size as u64 / 4).await;
    kill_9(client);
    slow.unthrottle();
    slow.wait_until_quiet().await;
    (slow, job)
}

async fn server_offset(base: &str, id: JobId) -> u64 {
    let client = reqwest::Client::new();
    Tus::new(&client, base).offset(id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_killed_mid_way_continues_the_same_job_from_the_servers_offset() {
    let app = spawn_app().await;
    let user = ClientUser::new();
    let size = 4 * 1024 * 1024;
    let (file, bytes) = user.file("big.bin", size);
    let file = file.to_str().unwrap();
    let args = upload_args(file);
    let (slow, job) = killed_mid_upload(&app, &user, file, size).await;
    let offset = server_offset(&app.url(""), job.job_id).await;
    assert!(
        offset > 0 && offset < size as u64,
        "killed mid-upload: {offset}"
    );
    assert_eq!(user.cache_records().len(), 1, "the upload is remembered");
    let sent_before = slow.sent();

    // The same command, at full speed (the server's URL is part of what is remembered).
    let output = user.run(&slow.url, &args).await;
    let sent_again = slow.sent() - sent_before;

    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("continuing job {} from byte {offset}", job.job_id)),
        "{}",
        stderr(&output)
    );
    let done = &json_jobs(&output)[0];
    assert_eq!(done.job_id, job.job_id, "the same job");
    assert_eq!(done.status, JobState::Completed);
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&bytes));
    // The second run sent what the server lacked (and headers), not the file again.
    let remaining = size as u64 - offset;
    assert!(
        sent_again < remaining + 64 * 1024,
        "{sent_again} for {remaining}"
    );
    assert!(sent_before + sent_again < 2 * size as u64);
    assert_eq!(app.list_jobs("").await.jobs.len(), 1, "no second job");
    assert!(user.cache_records().is_empty(), "forgotten once in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_survives_a_server_restart_mid_way() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Server::start_on(&data, "server-1.log", port, &[]).await;
    let user = ClientUser::new();
    let size = 4 * 1024 * 1024;
    let (file, bytes) = user.file("big.bin", size);
    let slow = Proxy::start(server.address(), Some(2 * 1024 * 1024)).await;

    let client = spawn_quietly(user.command(
        &slow.url,
        &[
            "upload",
            "--follow",
            "--json",
            "--chunk-size",
            "256KiB",
            file.to_str().unwrap(),
        ],
    ));
    let job = wait_until_part_is_in(&server.base, size as u64 / 4).await;
    server.kill_9();
    // Down for a moment: the client's retries meet a closed port, then the server again.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let server = Server::start_on(&data, "server-2.log", port, &[]).await;

    let output = tokio::task::spawn_blocking(move || client.wait_with_output().unwrap())
        .await
        .unwrap();

    assert_eq!(
        exit_code(&output),
        0,
        "{}\n{}",
        stderr(&output),
        server.log()
    );
    let done = &json_jobs(&output)[0];
    assert_eq!(done.job_id, job.job_id, "the same job");
    assert_eq!(done.status, JobState::Completed);
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&bytes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_between_runs_is_refused_not_mixed() {
    let app = spawn_app().await;
    let user = ClientUser::new();
    let size = 4 * 1024 * 1024;
    let (path, _) = user.file("data.bin", size);
    let file = path.to_str().unwrap();
    let args = upload_args(file);
    let (slow, job) = killed_mid_upload(&app, &user, file, size).await;
    // Rewritten in place behind the client's back: same size, same modification time.
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let changed = random_bytes(size);
    std::fs::write(&path, &changed).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();

    let refused = user.run(&slow.url, &args).await;

    assert_eq!(exit_code(&refused), 1, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("changed since the upload"),
        "{}",
        stderr(&refused)
    );
    let old = app.status_of(job.job_id).await;
    assert_eq!(
        old.status,
        JobState::Cancelled,
        "the old upload was ended, not continued"
    );
    assert!(
        app.jobs_in(JobState::Completed).await.is_empty(),
        "nothing mixed was stored"
    );

    // Run again: the file as it is now, as a new job.
    let output = user.run(&slow.url, &args).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let done = &json_jobs(&output)[0];
    assert_ne!(done.job_id, job.job_id);
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&changed));

    // A file changed the ordinary way (a new modification time) starts afresh at once.
    let (slow, started) = killed_mid_upload(&app, &user, file, size).await;
    let rewritten = random_bytes(size / 2);
    std::fs::write(&path, &rewritten).unwrap();
    let output = user.run(&slow.url, &args).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let done = &json_jobs(&output)[0];
    assert_ne!(done.job_id, started.job_id);
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&rewritten));
    assert_eq!(
        app.status_of(started.job_id).await.status,
        JobState::Cancelled
    );
}
