//! `/ws/status/{id}`: snapshot on connect, every change (coalesced), the final state, close 1000.
use crate::helpers::*;
use futures::StreamExt;
use ingest::domain::{JobId, JobState, JobStatus};
use std::time::Duration;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{protocol::frame::coding::CloseCode, Error as WsError, Message},
    MaybeTlsStream, WebSocketStream,
};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp, id: JobId) -> Socket {
    // wscat -c "ws://localhost:8000/ws/status/JOB_ID?token=…"
    let url = app.ws_url(&format!("/ws/status/{id}?token={TOKEN}"));
    connect_async(url).await.expect("WebSocket connects").0
}

/// Reads status messages until the server closes; returns them with their arrival times and
/// the close code.
async fn read_until_close(socket: &mut Socket) -> (Vec<(Instant, JobStatus)>, Option<CloseCode>) {
    let mut statuses = Vec::new();
    loop {
        let message = timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("the server keeps talking or closes");
        match message {
            Some(Ok(Message::Text(text))) => statuses.push((
                Instant::now(),
                serde_json::from_str(&text).expect("a JobStatus"),
            )),
            Some(Ok(Message::Close(frame))) => return (statuses, frame.map(|f| f.code)),
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("socket error: {error}"),
            None => return (statuses, None),
        }
    }
}

#[tokio::test]
async fn wscat_example_sees_snapshot_progress_final_state_and_close_1000() {
    let app = spawn_app_with(|s| s.processing_delay = Duration::from_millis(150)).await;
    let id = accepted_id(
        app.ingest_json(r#"{"metadata": "{\"test\":\"data\"}"}"#)
            .await,
    )
    .await;
    let mut socket = connect(&app, id).await;
    let (statuses, close) = read_until_close(&mut socket).await;
    assert_eq!(close, Some(CloseCode::Normal));
    let states: Vec<_> = statuses.iter().map(|(_, s)| s.status).collect();
    assert!(
        matches!(states[0], JobState::Queued | JobState::Processing),
        "{states:?}"
    );
    assert!(states.contains(&JobState::Processing), "{states:?}");
    let last = &statuses.last().unwrap().1;
    assert_eq!(last.status, JobState::Completed);
    assert_eq!(last.progress, 100);
    let progress: Vec<_> = statuses.iter().map(|(_, s)| s.progress).collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {progress:?}"
    );
}

#[tokio::test]
async fn a_finished_job_gets_its_final_state_and_close_1000() {
    let app = spawn_app().await;
    let id = accepted_id(app.ingest_json("{}").await).await;
    app.wait_until_finished(id).await;
    let mut socket = connect(&app, id).await;
    let (statuses, close) = read_until_close(&mut socket).await;
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].1.status, JobState::Completed);
    assert_eq!(close, Some(CloseCode::Normal));
}

#[tokio::test]
async fn unknown_and_malformed_jobs_are_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let cases = [
        (format!("/ws/status/{}?token={TOKEN}", JobId::new()), 404),
        (format!("/ws/status/nope?token={TOKEN}"), 400),
    ];
    for (path, expected) in cases {
        match connect_async(app.ws_url(&path)).await {
            Err(WsError::Http(response)) => assert_eq!(response.status(), expected, "{path}"),
            other => panic!("{path}: expected HTTP {expected}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn fast_changes_are_coalesced_to_ten_messages_a_second_and_the_final_state_is_sent() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let mut upload = start_partial_upload(app.address, 50_000_000, 1024).await;
    let job = app.receiving_job().await;
    let mut socket = connect(&app, job.job_id).await;
    // Feed bytes much faster than 10 changes a second for about 1.5 s, then cut.
    let feeder = tokio::spawn(async move {
        for _ in 0..300 {
            upload.write_all(&[b'z'; 4096]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(upload);
    });
    let (statuses, close) = read_until_close(&mut socket).await;
    feeder.await.unwrap();
    assert_eq!(close, Some(CloseCode::Normal));
    assert!(
        statuses.len() >= 5,
        "progress was reported: {}",
        statuses.len()
    );
    let (_, last) = statuses.last().unwrap();
    assert_eq!(last.status, JobState::Failed);
    // The server spaces messages ≥ 100 ms apart; arrival times jitter, so count instead of
    // timing each gap: over the whole stream, at most 10 a second (plus the snapshot and the
    // final state, which is never held back).
    let span = statuses.last().unwrap().0 - statuses[0].0;
    let allowed = span.as_secs_f64() * 10.0 + 2.0;
    assert!(
        statuses.len() as f64 <= allowed,
        "{} messages in {span:?}",
        statuses.len()
    );
    let bytes: Vec<_> = statuses.iter().map(|(_, s)| s.bytes_done).collect();
    assert!(bytes.windows(2).all(|w| w[0] <= w[1]), "{bytes:?}");
}

#[tokio::test]
async fn idle_sockets_are_pinged() {
    let app = spawn_app_with(|s| {
        s.run_worker = false;
        s.ws_ping_interval = Duration::from_millis(100);
    })
    .await;
    let id = accepted_id(app.ingest_json("{}").await).await;
    let mut socket = connect(&app, id).await;
    let mut pings = 0;
    while pings < 2 {
        match timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a ping arrives")
        {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Text(_))) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_socket_that_never_reads_does_not_hold_up_the_others() {
    let app = spawn_app_with(|s| s.processing_delay = Duration::from_millis(50)).await;
    let id = accepted_id(app.ingest_json("{}").await).await;
    // Ten sockets that are never read from.
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(connect(&app, id).await);
    }
    let mut reader = connect(&app, id).await;
    let (statuses, close) = read_until_close(&mut reader).await;
    assert_eq!(statuses.last().unwrap().1.status, JobState::Completed);
    assert_eq!(close, Some(CloseCode::Normal));
    drop(idle);
}

#[tokio::test]
async fn shutdown_closes_open_sockets_with_1001() {
    let app = spawn_app_with(|s| s.run_worker = false).await;
    let id = accepted_id(app.ingest_json("{}").await).await;
    let mut socket = connect(&app, id).await;
    let first = timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap();
    assert!(matches!(first, Some(Ok(Message::Text(_)))));
    app.shut_down();
    let (_, close) = read_until_close(&mut socket).await;
    assert_eq!(close, Some(CloseCode::Away));
}

/// The server's side of the closing handshake: after the final state and its close frame, a
/// socket stays open for the client's answer, but only briefly: a client that never answers
/// still loses its socket (and the slot it held) within seconds.
#[tokio::test]
async fn a_finished_socket_waits_briefly_for_the_clients_close_answer() {
    let app = spawn_app().await;
    let id = accepted_id(app.ingest_json("{}").await).await;
    app.wait_until_finished(id).await;
    // The app's own count (the /metrics gauge is shared by every app of the test process).
    let open_sockets =
        || app.state.settings.max_websockets - app.state.socket_slots.available_permits();
    let mut socket = connect(&app, id).await;
    let first = timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap();
    assert!(matches!(first, Some(Ok(Message::Text(_)))));
    // Not answering the close frame yet: the server waits for it.
    assert_eq!(open_sockets(), 1);
    let started = Instant::now();
    let gone = within(Duration::from_secs(10), async || {
        (open_sockets() == 0).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the socket outlived its closing handshake");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The close frame was there all along, right behind the final state.
    let (_, close) = read_until_close(&mut socket).await;
    assert_eq!(close, Some(CloseCode::Normal));
}
