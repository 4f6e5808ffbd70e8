//! Attacks on the server as a whole, each bounded in count and time, run against the real
//! binary so memory and sockets are its own: made-up methods (metric labels), slowloris from one
//! address and from many, idle keep-alives, slow bodies, oversized and idle WebSockets.
use crate::{binary::*, helpers::TOKEN};
use futures::{SinkExt, StreamExt};
use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// A TCP connection from a chosen loopback address (the whole 127/8 range is ours), so one
/// test can play several clients.
async fn connect_from(source: [u8; 4], server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::from(source), 0))?;
    socket.connect(server).await
}

/// Enough open files for the attacking side too.
fn allow_many_sockets() {
    ingest::server::listener::raise_open_file_limit().expect("raising the open-file limit");
}

/// Reads until the peer closes or `within` passes; true if it closed.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A healthy client: `/healthz` and an authenticated list, each timed.
async fn healthy_round_trip(client: &reqwest::Client, server: &BinaryServer) -> Duration {
    let started = Instant::now();
    let health = client.get(server.url("/healthz")).send().await;
    assert_eq!(health.expect("healthz answered").status(), 200);
    let jobs = client
        .get(server.url("/api/jobs"))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert_eq!(jobs.expect("jobs answered").status(), 200);
    started.elapsed()
}

#[tokio::test]
async fn made_up_methods_are_one_metric_label_and_memory_stays_flat() {
    let server = BinaryServer::start(&[]).await;
    // Warm up the code paths once so first-use allocations are not counted as growth.
    let warm_up = send_made_up_methods(server.address, 0, 200).await;
    assert_eq!(warm_up, 200);
    let before = server.rss();
    let answered = send_made_up_methods(server.address, 1_000, 20_000).await;
    assert_eq!(answered, 20_000);
    let grown = server.rss().saturating_sub(before) as f64 / MIB;
    let metrics = reqwest::Client::new()
        .get(server.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("M0"), "a made-up method became a label");
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    println!("RSS growth after 20,000 made-up methods: {grown:.1} MiB");
    assert!(grown < 4.0, "RSS grew by {grown:.1} MiB");
}

/// Sends `count` requests with distinct made-up methods over 4 keep-alive connections;
/// returns how many were answered.
async fn send_made_up_methods(server: SocketAddr, first: usize, count: usize) -> usize {
    let per_connection = count / 4;
    let tasks: Vec<_> = (0..4)
        .map(|connection| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(server).await.unwrap();
                let mut answered = 0;
                let mut pending = Vec::new();
                for i in 0..per_connection {
                    let method = format!("M{:06}", first + connection * per_connection + i);
                    pending.extend_from_slice(
                        format!("{method} /healthz HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
                    );
                    // Pipelined in batches; each answer is a 405 with a JSON body.
                    if pending.len() > 16 * 1024 || i + 1 == per_connection {
                        stream.write_all(&pending).await.unwrap();
                        pending.clear();
                    }
                }
                let mut text = Vec::new();
                let mut buffer = vec![0u8; 64 * 1024];
                while answered < per_connection {
                    let read =
                        tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer))
                            .await
                            .expect("answers keep coming")
                            .unwrap();
                    assert!(read > 0, "the server closed after {answered} answers");
                    text.extend_from_slice(&buffer[..read]);
                    let lines = text.windows(12).filter(|w| w == b"HTTP/1.1 405").count();
                    answered = lines;
                }
                answered
            })
        })
        .collect();
    let mut answered = 0;
    for task in tasks {
        answered += task.await.unwrap();
    }
    answered
}

#[tokio::test]
async fn slowloris_from_one_address_cannot_keep_others_out() {
    allow_many_sockets();
    let server = BinaryServer::start(&[
        ("INGEST_MAX_CONNECTIONS", "1024"),
        ("INGEST_MAX_CONNECTIONS_PER_ADDRESS", "64"),
        ("INGEST_HEADER_READ_TIMEOUT_SECS", "5"),
    ])
    .await;
    let before = server.rss();
    // 3,000 sockets from 127.0.0.2, each sending a header line now and then.
    let attack = slowloris(
        &[[127, 0, 0, 2]],
        3_000,
        server.address,
        Duration::from_secs(6),
    );
    let client = reqwest::Client::new();
    let healthy = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            slowest = slowest.max(healthy_round_trip(&client, &server).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        slowest
    };
    let (held, slowest) = tokio::join!(attack, healthy);
    let grown = server.rss().saturating_sub(before) as f64 / MIB;
    println!(
        "one attacking address: {held} of 3000 sockets were kept open; slowest healthy round trip {slowest:?}; RSS growth {grown:.1} MiB"
    );
    assert!(held <= 64, "{held} sockets from one address were kept");
    assert!(
        slowest < Duration::from_secs(2),
        "healthy client waited {slowest:?}"
    );
    assert!(grown < 16.0, "RSS grew by {grown:.1} MiB");
}

#[tokio::test]
async fn slowloris_from_many_addresses_cannot_keep_others_out() {
    allow_many_sockets();
    let server = BinaryServer::start(&[
        ("INGEST_MAX_CONNECTIONS", "256"),
        ("INGEST_MAX_CONNECTIONS_PER_ADDRESS", "64"),
        ("INGEST_HEADER_READ_TIMEOUT_SECS", "10"),
    ])
    .await;
    // 30 addresses × 40 sockets: more than four times the server's connection cap.
    let sources: Vec<[u8; 4]> = (10..40).map(|last| [127, 0, 1, last]).collect();
    let attack = slowloris(&sources, 1_200, server.address, Duration::from_secs(8));
    let client = reqwest::Client::new();
    let healthy = async {
        // Let the attack fill the server first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut slowest = Duration::ZERO;
        for _ in 0..15 {
            slowest = slowest.max(healthy_round_trip(&client, &server).await);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        slowest
    };
    let (held, slowest) = tokio::join!(attack, healthy);
    println!("many attacking addresses: {held} sockets still open at the end; slowest healthy round trip {slowest:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "healthy client waited {slowest:?}"
    );
    assert!(server
        .log()
        .contains("closing idle connections to make room"));
}

/// Opens `count` connections spread over `sources`, each sending a partial request and then a
/// header line every second, for `lasting`. Returns how many the server still held at the end.
async fn slowloris(
    sources: &[[u8; 4]],
    count: usize,
    server: SocketAddr,
    lasting: Duration,
) -> usize {
    let started = Instant::now();
    let mut sockets = Vec::new();
    for i in 0..count {
        if started.elapsed() > lasting / 2 {
            break;
        }
        let source = sources[i % sources.len()];
        // A full backlog drops the handshake; do not wait for the kernel's retries.
        let connected =
            tokio::time::timeout(Duration::from_millis(300), connect_from(source, server)).await;
        if let Ok(Ok(mut stream)) = connected {
            if stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .is_ok()
            {
                sockets.push(stream);
            }
        }
    }
    let mut round = 0;
    while started.elapsed() < lasting {
        tokio::time::sleep(Duration::from_secs(1)).await;
        round += 1;
        let line = format!("X-Slow-{round}: {round}\r\n");
        let mut still_open = Vec::new();
        for mut stream in sockets {
            if stream.write_all(line.as_bytes()).await.is_ok() {
                still_open.push(stream);
            }
        }
        sockets = still_open;
    }
    // A write can succeed into a socket the server already closed; a read tells for sure.
    let mut held = 0;
    for mut stream in sockets {
        if !closed_within(&mut stream, Duration::from_millis(1)).await {
            held += 1;
        }
    }
    held
}

#[tokio::test]
async fn idle_keep_alives_and_silent_connections_are_closed() {
    let server = BinaryServer::start(&[
        ("INGEST_IDLE_TIMEOUT_SECS", "2"),
        ("INGEST_HEADER_READ_TIMEOUT_SECS", "2"),
    ])
    .await;
    // A keep-alive connection that goes quiet after one request.
    let mut kept = TcpStream::connect(server.address).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 1024];
    let read = kept.read(&mut answer).await.unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    // A connection that never says anything.
    let mut silent = TcpStream::connect(server.address).await.unwrap();
    assert!(
        closed_within(&mut kept, Duration::from_secs(6)).await,
        "idle keep-alive kept"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(6)).await,
        "silent socket kept"
    );
}

#[tokio::test]
async fn a_slow_body_on_an_ordinary_route_meets_the_deadline() {
    let server = BinaryServer::start(&[("INGEST_REQUEST_TIMEOUT_SECS", "2")]).await;
    for path in ["/rpc/sign_in", "/api/session"] {
        let mut stream = TcpStream::connect(server.address).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"to"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        // Keep trickling a byte a second; the deadline still applies.
        loop {
            tokio::select! {
                read = stream.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buffer[..n]),
                },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    let _ = stream.write_all(b"k").await;
                }
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n")
                && started.elapsed() > Duration::from_secs(1)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{path}: no answer"
            );
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        assert!(text.contains("request_timeout"), "{path}: {text}");
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn open_socket(
    server: &BinaryServer,
    job: &str,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let url = format!("ws://{}/ws/status/{job}?token={TOKEN}", server.address);
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(socket, _)| socket)
}

/// A job that stays unfinished (processing is slowed), so its sockets stay open.
async fn running_job(server: &BinaryServer) -> String {
    let answer = reqwest::Client::new()
        .post(server.url("/api/ingest"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let body: serde_json::Value = answer.json().await.unwrap();
    body["job_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn websocket_input_is_capped_and_open_sockets_are_counted() {
    let server = BinaryServer::start(&[
        ("INGEST_PROCESSING_DELAY_MS", "60000"),
        ("INGEST_MAX_WEBSOCKETS", "1010"),
        ("INGEST_MAX_CONNECTIONS_PER_ADDRESS", "2000"),
    ])
    .await;
    let job = running_job(&server).await;

    // Six sockets start 50 MiB fragmented messages: each is closed after a few KiB.
    let before = server.rss();
    for _ in 0..6 {
        let mut socket = open_socket(&server, &job).await.unwrap();
        let _first_status = socket.next().await;
        let frame = vec![b'a'; 64 * 1024];
        let mut sent = 0usize;
        let mut refused = false;
        while sent < 50 * 1024 * 1024 {
            use tokio_tungstenite::tungstenite::protocol::frame::{coding::*, Frame, FrameHeader};
            let header = FrameHeader {
                is_final: false,
                opcode: if sent == 0 {
                    OpCode::Data(Data::Text)
                } else {
                    OpCode::Data(Data::Continue)
                },
                ..FrameHeader::default()
            };
            let message = tokio_tungstenite::tungstenite::Message::Frame(Frame::from_payload(
                header,
                frame.clone().into(),
            ));
            if socket.send(message).await.is_err() {
                refused = true;
                break;
            }
            sent += frame.len();
        }
        assert!(refused, "a 50 MiB message was accepted");
        assert!(
            sent <= 8 * 1024 * 1024,
            "{sent} bytes went in before the server closed"
        );
    }
    let fragments_grown = server.rss().saturating_sub(before) as f64 / MIB;

    // 1,000 idle sockets: what each costs.
    let before = server.rss();
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let mut socket = open_socket(&server, &job).await.unwrap();
        let _first_status = socket.next().await;
        idle.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let per_socket = server.rss().saturating_sub(before) as f64 / 1000.0 / 1024.0;
    // The cap: 1,010 allowed, so after a few more the next is refused with 503.
    let mut refused = None;
    for _ in 0..20 {
        match open_socket(&server, &job).await {
            Ok(socket) => idle.push(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                refused = Some(response.status().as_u16());
                break;
            }
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    println!(
        "WebSocket: RSS growth after six 50 MiB fragmented messages {fragments_grown:.1} MiB; {per_socket:.1} KiB per idle socket"
    );
    assert_eq!(refused, Some(503), "the socket cap did not refuse");
    assert!(
        fragments_grown < 8.0,
        "RSS grew by {fragments_grown:.1} MiB"
    );
    assert!(per_socket < 48.0, "{per_socket:.1} KiB per idle socket");
}
