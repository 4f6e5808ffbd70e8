//! The multipart framing a client can make the server hold: the preamble before the first
//! boundary and each part's headers are capped, so a body that never gets to the point is
//! refused early with a JSON 400 and costs the server next to no memory.
use crate::{binary::BinaryServer, helpers::*};
use ingest::domain::JobState;
use serde_json::Value;
use std::{net::SocketAddr, time::Duration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MULTIPART: &str = "multipart/form-data; boundary=XYZ";

/// A file part's start: its boundary and headers.
fn file_part_head(name: &str) -> String {
    format!(
        "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
}

/// `count` header lines of padding inside a part's header block, with no blank line after.
fn header_padding(bytes: usize) -> Vec<u8> {
    let line = format!("X-Padding: {}\r\n", "p".repeat(1000));
    line.repeat(bytes / line.len() + 1).into_bytes()
}

/// An answer read off a raw connection.
struct RawAnswer {
    status: u16,
    body: Value,
}

/// POSTs `head_of_body` then `filler` bytes of `fill` (announced in Content-Length, so
/// `total` is what the server is told to expect) over a raw connection, reading the answer
/// while still sending, as a client that streams its body does. Sending stops at the answer.
async fn post_raw(
    address: SocketAddr,
    head_of_body: &[u8],
    fill: u8,
    filler: usize,
    tail: &[u8],
) -> RawAnswer {
    let length = head_of_body.len() + filler + tail.len();
    let head = format!(
        "POST /api/ingest HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: {MULTIPART}\r\nContent-Length: {length}\r\n\r\n"
    );
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let mut body = head.into_bytes();
    body.extend_from_slice(head_of_body);
    let tail = tail.to_vec();
    let sending = tokio::spawn(async move {
        // Errors are expected once the server has answered and closed the connection.
        writer.write_all(&body).await?;
        let block = vec![fill; 64 * 1024];
        let mut left = filler;
        while left > 0 {
            let n = left.min(block.len());
            writer.write_all(&block[..n]).await?;
            left -= n;
        }
        writer.write_all(&tail).await?;
        writer.flush().await?;
        // Handed back, not dropped: dropping it would half-close the connection, which the
        // server takes as the client going away.
        Ok::<_, std::io::Error>(writer)
    });
    let answer = tokio::time::timeout(Duration::from_secs(60), read_answer(&mut reader))
        .await
        .expect("an answer within 60 s");
    sending.abort();
    answer
}

/// Reads one HTTP/1.1 answer with a Content-Length body.
async fn read_answer(reader: &mut tokio::net::tcp::OwnedReadHalf) -> RawAnswer {
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let n = reader
            .read(&mut buffer)
            .await
            .expect("the answer is readable");
        assert!(n > 0, "connection closed before an answer: {received:?}");
        received.extend_from_slice(&buffer[..n]);
        let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
        let status = head[9..12].parse().expect("a status code");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| value.trim().parse().unwrap());
        if received.len() >= end + 4 + length {
            let body =
                serde_json::from_slice(&received[end + 4..end + 4 + length]).unwrap_or(Value::Null);
            return RawAnswer { status, body };
        }
    }
}

fn assert_framing_refused(answer: &RawAnswer) {
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "invalid_multipart");
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("16384 bytes"), "{message}");
}

#[tokio::test]
async fn a_multi_mib_preamble_is_refused_and_creates_nothing() {
    let app = spawn_app().await;
    let answer = post_raw(
        app.address,
        b"",
        b'.',
        8 << 20,
        file_part_head("late.bin").as_bytes(),
    )
    .await;
    assert_framing_refused(&answer);
    assert!(app.list_jobs("").await.jobs.is_empty());
    assert!(app.temp_files().is_empty());
}

#[tokio::test]
async fn a_huge_part_header_block_is_refused_and_creates_nothing() {
    let app = spawn_app().await;
    let mut start = b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"\r\n".to_vec();
    start.extend(header_padding(4 << 20));
    let answer = post_raw(app.address, &start, b'p', 4 << 20, b"\r\n\r\n").await;
    assert_framing_refused(&answer);
    assert!(app.list_jobs("").await.jobs.is_empty());
    assert!(app.temp_files().is_empty());
}

#[tokio::test]
async fn huge_headers_on_a_part_after_the_file_fail_its_job_and_leave_no_bytes() {
    let app = spawn_app().await;
    let mut start = file_part_head("first.bin").into_bytes();
    start.extend(random_bytes(100 * 1024));
    start.extend(b"\r\n--XYZ\r\nContent-Disposition: form-data; name=\"metadata\"\r\n");
    start.extend(header_padding(2 << 20));
    let answer = post_raw(app.address, &start, b'p', 2 << 20, b"\r\n\r\n").await;
    assert_framing_refused(&answer);
    let failed = app.jobs_in(JobState::Failed).await;
    assert_eq!(failed.len(), 1, "the file's job is failed");
    assert_eq!(
        app.list_jobs("").await.jobs.len(),
        1,
        "and there is no other"
    );
    assert!(app.temp_files().is_empty());
}

#[tokio::test]
async fn a_short_preamble_and_ordinary_headers_are_still_accepted() {
    let app = spawn_app().await;
    // RFC 2046 lets a preamble precede the first boundary; mail-style clients write one.
    let mut body = b"This is a message in MIME format.\r\n".to_vec();
    body.extend(b"--XYZ\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{\"a\":1}\r\n");
    body.extend(file_part_head(&format!("{}.bin", "n".repeat(200))).as_bytes());
    let file = random_bytes(600 * 1024);
    body.extend(&file);
    body.extend(b"\r\n--XYZ--\r\n");
    let id = accepted_id(app.ingest_body(Some(MULTIPART), body).await).await;
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.status, JobState::Completed);
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
    assert_eq!(done.metadata["a"], 1);
}

#[tokio::test]
async fn a_large_upload_over_http2_is_not_mistaken_for_oversized_framing() {
    // HTTP/2 lets a client send a window of data frames at once, which multer may pull in
    // one go while it reads the first part's headers.
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let file = random_bytes(3 << 20);
    let form = reqwest::multipart::Form::new().text("metadata", "{}").part(
        "file",
        reqwest::multipart::Part::bytes(file.clone()).file_name("h2.bin"),
    );
    let response = client
        .post(app.url("/api/ingest"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let id = accepted_id(response).await;
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
}

#[tokio::test]
async fn a_64_mib_preamble_or_header_block_costs_the_server_almost_no_memory() {
    let server = BinaryServer::start(&[]).await;
    // Warm up: an ordinary upload and a refused one, so the baseline has the buffers and
    // threads any request needs.
    let warm_up = post_raw(
        server.address,
        file_part_head("warm.bin").as_bytes(),
        b'w',
        256 * 1024,
        b"\r\n--XYZ--\r\n",
    )
    .await;
    assert_eq!(warm_up.status, 202, "{}", warm_up.body);
    assert_framing_refused(&post_raw(server.address, b"", b'.', 1 << 20, b"").await);
    let peak_before = server.peak_rss() / 1024;

    let preamble = post_raw(
        server.address,
        b"",
        b'.',
        64 << 20,
        file_part_head("late.bin").as_bytes(),
    )
    .await;
    assert_framing_refused(&preamble);
    let mut headers = b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"\r\n".to_vec();
    headers.extend(header_padding(1 << 20));
    let header_block = post_raw(server.address, &headers, b'p', 63 << 20, b"\r\n\r\n").await;
    assert_framing_refused(&header_block);

    let growth_kib = (server.peak_rss() / 1024).saturating_sub(peak_before);
    eprintln!(
        "peak RSS before {peak_before} KiB, grew by {growth_kib} KiB over a 64 MiB preamble \
         and a 64 MiB header block; RSS now {} KiB",
        server.rss() / 1024
    );
    assert!(
        growth_kib < 4 * 1024,
        "peak RSS grew by {growth_kib} KiB for 64 MiB of framing"
    );
}
