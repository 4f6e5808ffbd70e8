//! Many WebSockets following one job, for `scripts/bench`: opens N sockets on
//! `/ws/status/{id}` of a resumable upload that is waiting for bytes, reports how long they took
//! to connect, waits for a line on standard input (the bench reads the server's memory then),
//! cancels the job and reports when each socket saw `cancelled`, relative to the cancel request
//! being sent: first, p50, p99, last.
//! Usage: `ws_watchers BASE_URL TOKEN N`
use futures::{stream, StreamExt};
use std::{
    io::BufRead,
    time::{Duration, Instant},
};
use tokio::sync::watch;
use tokio_tungstenite::{
    connect_async_with_config,
    tungstenite::{protocol::WebSocketConfig, Message},
};

/// Sockets opening at once: a bound so the server's accept queue never overflows.
const CONNECTING_AT_ONCE: usize = 256;
/// Each socket's read buffer, small as the server's (a status message is under 1 KiB): tungstenite zeroes a read buffer's free room
/// before every read, and at its default (128 KiB) this client spent more of the two shared
/// cores zeroing memory while the change spread than the server spent sending it.
const READ_BUFFER: usize = 4096;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(base), Some(token), Some(count)) = (args.next(), args.next(), args.next()) else {
        anyhow::bail!("usage: ws_watchers BASE_URL TOKEN N");
    };
    let count: usize = count.parse()?;
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/api/uploads"))
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "1000")
        .send()
        .await?;
    anyhow::ensure!(
        created.status() == 201,
        "creating an upload: {}",
        created.status()
    );
    let location = created.headers()["location"].to_str()?.to_owned();
    let job_id = location.trim_start_matches("/api/uploads/").to_owned();
    let socket_url = format!(
        "{}/ws/status/{job_id}?token={token}",
        base.replacen("http", "ws", 1)
    );

    // Every socket task waits for this before it reads on: the cancel's send time.
    let (started, start) = watch::channel(None::<Instant>);
    let connecting = Instant::now();
    let sockets: Vec<_> = stream::iter(0..count)
        .map(|_| {
            let url = socket_url.clone();
            async move {
                let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
                let (mut socket, _) = connect_async_with_config(url, Some(config), false).await?;
                // The first message is the current status: the socket follows the job.
                socket.next().await.transpose()?;
                anyhow::Ok(socket)
            }
        })
        .buffer_unordered(CONNECTING_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let connect_time = connecting.elapsed();
    println!(
        "connected {count} sockets in {:.2} s ({:.0} per second)",
        connect_time.as_secs_f64(),
        count as f64 / connect_time.as_secs_f64()
    );
    let waiting: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            let mut start = start.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Text(text) = message {
                        if text.contains("\"status\":\"cancelled\"") {
                            let seen = Instant::now();
                            let sent = (*start.wait_for(Option::is_some).await.ok()?)?;
                            // The socket is handed back, not dropped: closing 10,000 sockets
                            // here would spend the cores the server still needs to reach the
                            // rest, and the bench measures the server.
                            return Some((seen.saturating_duration_since(sent), socket));
                        }
                    }
                }
                None
            })
        })
        .collect();
    println!("READY");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;

    started.send_replace(Some(Instant::now()));
    let cancelled = http
        .post(format!("{base}/api/jobs/{job_id}/cancel"))
        .bearer_auth(&token)
        .send()
        .await?;
    anyhow::ensure!(
        cancelled.status().is_success(),
        "cancel: {}",
        cancelled.status()
    );
    let mut delays = Vec::with_capacity(count);
    let mut finished_sockets = Vec::with_capacity(count);
    for task in waiting {
        if let Ok(Ok(Some((delay, socket)))) =
            tokio::time::timeout(Duration::from_secs(30), task).await
        {
            delays.push(delay);
            finished_sockets.push(socket);
        }
    }
    drop(finished_sockets);
    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q) as usize];
    anyhow::ensure!(!delays.is_empty(), "no socket saw the cancel");
    println!(
        "saw cancelled: {} of {count}; first {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, last {:.1} ms after the cancel was sent (last - first {:.1} ms)",
        delays.len(),
        ms(delays[0]),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(*delays.last().unwrap()),
        ms(*delays.last().unwrap() - delays[0]),
    );
    Ok(())
}
