//! The listener: accepts connections (plain or TLS; HTTP/1.1 and HTTP/2 on one port) and keeps
//! any one client from holding the server. Every connection has a deadline for its headers
//! (hyper's header-read timeout, which also ends idle keep-alives), a deadline for its first
//! byte and for silence between requests, and counts against a global and a per-address cap.
//! When the server nears its cap, connections that are not in the middle of a request get a
//! second, not the usual timeouts, so slow or idle sockets cannot crowd out working clients.
use super::client::Transport;
use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    response::Response,
    Router,
};
use futures::future::BoxFuture;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use std::{
    collections::HashMap,
    convert::Infallible,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    time::{sleep, sleep_until, timeout, Instant},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// What bounds each connection; from the settings.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time to send a request's headers, to finish a TLS handshake, and to send a first byte.
    pub header_read: Duration,
    /// Silence allowed between requests on a keep-alive connection.
    pub idle: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// How long requests in flight may finish after shutdown begins.
    pub grace: Duration,
}

/// Under pressure, a connection between requests (or still before its first) gets this long.
const PRESSURED_IDLE: Duration = Duration::from_secs(1);
/// How often the share of open connections is checked.
const PRESSURE_CHECK_EVERY: Duration = Duration::from_millis(200);
/// The largest request head hyper buffers. Our own (JSON) refusals come well before it
/// (`limits::MAX_HEADER_BYTES`); hyper's default would be ~400 KiB per connection.
const MAX_HEAD_BUFFER: usize = 128 * 1024;

/// Raises this process's open-file limit to the hard limit, so the connection cap (not the
/// file-descriptor table) is what refuses connections. Returns the limit now in force.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// Serves `router` on `listener` until `shutdown` fires; then stops accepting, gives requests
/// in flight `limits.grace` to finish and closes what is left.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let limits = Arc::new(limits);
    let builder = Arc::new(http_builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(AddressCounts::default());
    let (pressure_tx, pressure) = watch::channel(false);
    let graceful = GracefulShutdown::new();
    let hard_stop = CancellationToken::new();
    tokio::spawn(watch_pressure(
        slots.clone(),
        limits.max_connections,
        pressure_tx,
        shutdown.clone(),
    ));
    loop {
        // A slot first: past the cap, connections wait in the kernel's backlog.
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        let Some(address) = per_address.admit(peer.ip(), limits.max_connections_per_address) else {
            tracing::debug!(%peer, "connection refused: too many from this address");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let held = Held {
            _slot: slot,
            _address: address,
        };
        let connection = Connection {
            router: router.clone(),
            builder: builder.clone(),
            limits: limits.clone(),
            pressure: pressure.clone(),
            hard_stop: hard_stop.clone(),
            peer,
        };
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.run(tcp, held, false, watcher).await,
                Some(acceptor) => {
                    match timeout(connection.limits.header_read, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection.run(stream, held, true, watcher).await,
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    // Refuse new connections rather than queue them.
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = sleep(limits.grace) => {
            tracing::warn!(grace = ?limits.grace, "requests still running after the grace period; cutting them off");
            hard_stop.cancel();
        }
    }
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Without a timer hyper silently applies no header timeout.
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(MAX_HEAD_BUFFER)
        .max_headers(100);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(64 * 1024)
        .max_pending_accept_reset_streams(Some(50))
        // Pings would count as activity and keep idle HTTP/2 clients open for ever.
        .keep_alive_interval(None);
    builder
}

/// Sets the pressure flag while three quarters of the connection slots are taken.
async fn watch_pressure(
    slots: Arc<Semaphore>,
    max: usize,
    pressure: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(PRESSURE_CHECK_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let open = max.saturating_sub(slots.available_permits());
        let pressed = open.saturating_mul(4) >= max.saturating_mul(3);
        pressure.send_if_modified(|current| {
            let changed = *current != pressed;
            if changed && pressed {
                tracing::warn!(open, max, "connections near the cap; idle ones get 1 s");
            }
            *current = pressed;
            changed
        });
    }
}

async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed");
    let out_of_files = matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
    sleep(Duration::from_millis(if out_of_files { 100 } else { 1000 })).await;
}

/// Open connections per client address.
#[derive(Default)]
struct AddressCounts(Mutex<HashMap<IpAddr, usize>>);

impl AddressCounts {
    fn admit(self: &Arc<Self>, address: IpAddr, most: usize) -> Option<AddressGuard> {
        let mut counts = self.0.lock().expect("address counts lock");
        let count = counts.entry(address).or_default();
        if *count >= most {
            return None;
        }
        *count += 1;
        Some(AddressGuard {
            counts: self.clone(),
            address,
        })
    }
}

struct AddressGuard {
    counts: Arc<AddressCounts>,
    address: IpAddr,
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().expect("address counts lock");
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

/// What a connection holds for as long as its socket is open (an upgraded WebSocket included).
struct Held {
    _slot: OwnedSemaphorePermit,
    _address: AddressGuard,
}

struct Connection {
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Arc<Limits>,
    pressure: watch::Receiver<bool>,
    hard_stop: CancellationToken,
    peer: SocketAddr,
}

impl Connection {
    async fn run<T>(
        mut self,
        io: T,
        held: Held,
        tls: bool,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let io = Tracked {
            inner: io,
            activity: activity.clone(),
            _held: held,
        };
        let service = PerConnection {
            router: self.router.clone(),
            activity: activity.clone(),
            transport: Transport {
                peer: self.peer,
                tls,
            },
        };
        let served =
            watcher.watch(self.builder.serve_connection_with_upgrades(
                TokioIo::new(io),
                TowerToHyperService::new(service),
            ));
        tokio::select! {
            ended = served => {
                if let Err(error) = ended {
                    tracing::debug!(peer = %self.peer, %error, "connection ended");
                }
            }
            _ = activity.silent_too_long(&self.limits, &mut self.pressure) => {
                tracing::debug!(peer = %self.peer, "closing a silent connection");
            }
            _ = self.hard_stop.cancelled() => {}
        }
    }
}

/// When a connection last moved bytes and whether a request is in flight, in milliseconds since
/// it opened (0 = never).
struct Activity {
    opened: Instant,
    last_io_ms: AtomicU64,
    /// Requests whose answer has not been sent in full.
    busy: AtomicUsize,
    /// When the connection last had no request in flight (its opening, or the end of the
    /// latest answer).
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64 + 1
    }

    fn moved_bytes(&self) {
        self.last_io_ms.store(self.now_ms(), Relaxed);
    }

    fn at(&self, ms: u64) -> Instant {
        self.opened + Duration::from_millis(ms)
    }

    /// Resolves when the connection has had no request in flight for too long: no first byte
    /// within `header_read`, silence for `idle` since its last bytes, or — while the server is
    /// near its connection cap — `PRESSURED_IDLE` since its last request ended (trickling bytes
    /// does not help then). Requests in flight are never cut here (they have deadlines of their
    /// own).
    async fn silent_too_long(&self, limits: &Limits, pressure: &mut watch::Receiver<bool>) {
        loop {
            let pressed = *pressure.borrow_and_update();
            let deadline = if self.busy.load(Relaxed) > 0 {
                Instant::now() + limits.idle
            } else {
                let idle_since = self.at(self.idle_since_ms.load(Relaxed));
                let usual = match self.last_io_ms.load(Relaxed) {
                    0 => self.opened + limits.header_read,
                    last => self.at(last).max(idle_since) + limits.idle,
                };
                if pressed {
                    usual.min(idle_since + PRESSURED_IDLE)
                } else {
                    usual
                }
            };
            if self.busy.load(Relaxed) == 0 && Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                _ = sleep_until(deadline) => {}
                changed = pressure.changed() => {
                    if changed.is_err() {
                        sleep_until(deadline).await;
                    }
                }
            }
        }
    }
}

/// Counts a request in flight until its answer's body has been sent (or dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Relaxed);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Relaxed) == 1 {
            self.0.idle_since_ms.store(self.0.now_ms(), Relaxed);
        }
    }
}

/// The router as one connection's service: each request learns its connection's facts and is
/// counted in flight until its answer is sent.
#[derive(Clone)]
struct PerConnection {
    router: Router,
    activity: Arc<Activity>,
    transport: Transport,
}

impl tower::Service<Request<Incoming>> for PerConnection {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        let extensions = request.extensions_mut();
        extensions.insert(self.transport);
        extensions.insert(ConnectInfo(self.transport.peer));
        let in_flight = InFlight::start(&self.activity);
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request.map(Body::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Body::new(CountedBody {
                inner: body,
                _in_flight: in_flight,
            });
            Ok(Response::from_parts(parts, body))
        })
    }
}

/// An answer's body that keeps its request counted until it is sent in full or dropped.
struct CountedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for CountedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's socket, noting when bytes move; it holds the connection's slots, so an
/// upgraded WebSocket keeps counting against the caps.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
    _held: Held,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.moved_bytes();
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, bytes);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved_bytes();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bytes);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved_bytes();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
