//! A cancel racing the request that sends an upload's bytes, a few hundred times over with the
//! cancel sent a little earlier or later each time: whoever wins, a cancelled job keeps no temp
//! file, no stored file is left without a job, and a request only succeeds if what it sent was
//! recorded before the cancel.
use crate::helpers::*;
use ingest::domain::{JobId, JobState};
use std::{collections::HashSet, time::Duration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RUNS: u64 = 200;
const ONE_SHOT_RUNS: u64 = 120;
/// Every run must end well within this.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// Spreads the cancel over the other request's life (a few milliseconds here, an fsync among
/// them): from at once to 19.5 ms after it, by run.
async fn stagger(run: u64) {
    if !run.is_multiple_of(40) {
        tokio::time::sleep(Duration::from_micros((run % 40) * 500)).await;
    }
}

fn temp_file(app: &TestApp, id: JobId) -> std::path::PathBuf {
    app.tmp_dir().join(format!("{id}.part"))
}

/// Every stored file belongs to a job that records it.
async fn assert_no_blob_without_a_job(app: &TestApp) {
    let mut referenced = HashSet::new();
    let mut before = String::new();
    loop {
        let page = app.list_jobs(&format!("limit=500{before}")).await;
        referenced.extend(
            page.jobs
                .iter()
                .filter_map(|job| job.sha256)
                .map(|d| d.to_hex()),
        );
        match page.next_before {
            Some(next) => before = format!("&before={next}"),
            None => break,
        }
    }
    let shards = std::fs::read_dir(app.data_dir.path().join("blobs")).unwrap();
    for shard in shards {
        for blob in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let name = blob.unwrap().file_name().into_string().unwrap();
            assert!(referenced.contains(&name), "blob {name} belongs to no job");
        }
    }
}

/// After a race: the job is cancelled, its bytes are gone, and the request's answer fits what
/// was recorded before the cancel.
async fn assert_settled(app: &TestApp, id: JobId, request: u16, stored: Option<&[u8]>) {
    let job = app.status_of(id).await;
    assert_eq!(job.status, JobState::Cancelled, "{job:?}");
    assert!(
        !temp_file(app, id).exists(),
        "a cancelled job kept its temp file"
    );
    match request {
        // Accepted: so it was in before the cancel, and the cancelled job still records it.
        204 | 202 => match stored {
            Some(file) => {
                let digest = job.sha256.expect("an accepted upload's file is recorded");
                assert_eq!(digest.to_hex(), sha256_hex(file));
                assert!(app.blob_file(&digest.to_hex()).exists());
            }
            None => assert!(job.bytes_done > 0, "accepted bytes were recorded: {job:?}"),
        },
        // Refused because of the cancel: nothing of it stays.
        409 | 410 => {
            assert_eq!(job.sha256, None, "{job:?}");
            if let Some(file) = stored {
                assert!(!app.blob_file(&sha256_hex(file)).exists());
            }
        }
        other => panic!("unexpected answer {other} to a request racing a cancel"),
    }
}

#[tokio::test]
async fn a_cancel_racing_a_patch_leaves_nothing_behind_and_the_patch_never_counts_after_it() {
    // Jobs stay queued once complete, so a cancel always finds an unfinished job.
    let app = spawn_app_with(|s| s.run_worker = false).await;
    let tus = app.tus();
    let mut accepted = 0;
    for run in 0..RUNS {
        tokio::time::timeout(RUN_LIMIT, async {
            let id = tus.created(64 * 1024, "{}").await;
            let patch = tus.patch(id, 0).body(vec![run as u8; 16 * 1024]).send();
            let cancelled = async {
                stagger(run).await;
                app.cancel(id).await
            };
            let (patch, cancelled) = tokio::join!(patch, cancelled);
            assert_eq!(cancelled.status(), 200);
            let patch = patch.unwrap().status().as_u16();
            accepted += u32::from(patch == 204);
            assert_settled(&app, id, patch, None).await;
            if patch == 204 {
                let job = app.status_of(id).await;
                assert_eq!(job.bytes_done, 16 * 1024, "the PATCH's bytes were recorded");
            }
            // And once the cancel has answered, no PATCH is taken.
            let late = tus.patch(id, 0).body(vec![0u8; 10]).send().await.unwrap();
            assert_error(late, 410, "gone").await;
        })
        .await
        .unwrap_or_else(|_| panic!("run {run} took longer than {RUN_LIMIT:?}"));
    }
    eprintln!("{accepted} of {RUNS} PATCHes got in before their cancel");
    assert!(app.temp_files().is_empty(), "{:?}", app.temp_files());
    assert_no_blob_without_a_job(&app).await;
}

#[tokio::test]
async fn a_cancel_racing_the_last_patch_leaves_no_blob_without_a_job() {
    let app = spawn_app_with(|s| s.run_worker = false).await;
    let tus = app.tus();
    let mut accepted = 0;
    for run in 0..RUNS {
        tokio::time::timeout(RUN_LIMIT, async {
            let file = random_bytes(16 * 1024);
            let id = tus.created(file.len() as u64, "{}").await;
            // One byte in first, so the PATCH below is a resumed upload's last.
            let first = tus.patch(id, 0).body(file[..1].to_vec()).send().await;
            assert_eq!(first.unwrap().status(), 204);
            let last = tus.patch(id, 1).body(file[1..].to_vec()).send();
            let cancelled = async {
                stagger(run).await;
                app.cancel(id).await
            };
            let (last, cancelled) = tokio::join!(last, cancelled);
            assert_eq!(cancelled.status(), 200);
            let last = last.unwrap().status().as_u16();
            accepted += u32::from(last == 204);
            assert_settled(&app, id, last, Some(&file)).await;
        })
        .await
        .unwrap_or_else(|_| panic!("run {run} took longer than {RUN_LIMIT:?}"));
    }
    eprintln!("{accepted} of {RUNS} last PATCHes got in before their cancel");
    assert!(app.temp_files().is_empty(), "{:?}", app.temp_files());
    assert_no_blob_without_a_job(&app).await;
}

/// A one-shot upload of `file` with all but its last `held_back` bytes sent, on a connection
/// that closes after the answer.
async fn one_shot_in_flight(app: &TestApp, file: &[u8], held_back: usize) -> tokio::net::TcpStream {
    let preamble = "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"r.bin\"\r\n\
                    Content-Type: application/octet-stream\r\n\r\n";
    let epilogue = "\r\n--XYZ--\r\n";
    let length = preamble.len() + file.len() + epilogue.len();
    let head = format!(
        "POST /api/ingest HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Connection: close\r\nContent-Type: multipart/form-data; boundary=XYZ\r\n\
         Content-Length: {length}\r\n\r\n",
        app.address
    );
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(preamble.as_bytes()).await.unwrap();
    stream
        .write_all(&file[..file.len() - held_back])
        .await
        .unwrap();
    stream.flush().await.unwrap();
    stream
}

/// Sends the rest of the upload and reads the answer's status code.
async fn finish_one_shot(mut stream: tokio::net::TcpStream, rest: &[u8]) -> u16 {
    // The server may already have answered (cancelled) and closed: writing may then fail.
    let _ = stream.write_all(rest).await;
    let _ = stream.write_all(b"\r\n--XYZ--\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"))
}

#[tokio::test]
async fn a_cancel_racing_the_end_of_a_one_shot_upload_leaves_nothing_behind() {
    let app = spawn_app_with(|s| s.run_worker = false).await;
    let mut accepted = 0;
    for run in 0..ONE_SHOT_RUNS {
        tokio::time::timeout(RUN_LIMIT, async {
            let file = random_bytes(32 * 1024);
            let held_back = 1024;
            let stream = one_shot_in_flight(&app, &file, held_back).await;
            let job = app.receiving_job().await;
            let rest = &file[file.len() - held_back..];
            let upload = finish_one_shot(stream, rest);
            let cancelled = async {
                stagger(run).await;
                app.cancel(job.job_id).await
            };
            let (upload, cancelled) = tokio::join!(upload, cancelled);
            assert_eq!(cancelled.status(), 200);
            accepted += u32::from(upload == 202);
            assert_settled(&app, job.job_id, upload, Some(&file)).await;
        })
        .await
        .unwrap_or_else(|_| panic!("run {run} took longer than {RUN_LIMIT:?}"));
    }
    eprintln!("{accepted} of {ONE_SHOT_RUNS} one-shot uploads got in before their cancel");
    assert!(app.temp_files().is_empty(), "{:?}", app.temp_files());
    assert_no_blob_without_a_job(&app).await;
}
