//! The listener: accepts connections (plain or TLS; HTTP/1.1 and HTTP/2 on one port) and keeps
//! any one client from holding the server. Every connection has a deadline for its headers
//! (hyper's header-read timeout, which also ends idle keep-alives), a deadline for its first
//! byte and for silence between requests, and counts against a global and a per-address cap.
//! At the global cap a new connection is not left waiting behind slow ones: the connection that
//! has gone longest without a request in flight (a slowloris socket, an idle keep-alive) is
//! closed to make room. Connections in the middle of a request are never closed for that.
use super::client::{self, Transport};
use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    http::{header, HeaderValue},
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
    sync::{OwnedSemaphorePermit, Semaphore},
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
    /// Peers the per-address cap does not apply to (trusted proxies carry many clients).
    pub exempt: Vec<ipnet::IpNet>,
    /// How long requests in flight may finish after shutdown begins.
    pub grace: Duration,
}

/// How long to wait for an evicted connection's slot before evicting another.
const EVICTION_RETRY: Duration = Duration::from_millis(50);
/// At most one warning about evictions per this long.
const EVICTION_WARNING_EVERY: Duration = Duration::from_secs(10);
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
    let idle = Arc::new(IdleConnections::default());
    let graceful = GracefulShutdown::new();
    let hard_stop = CancellationToken::new();
    let mut next_id = 0u64;
    let mut last_warning: Option<Instant> = None;
    loop {
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
        let cap = if limits.exempt.iter().any(|net| net.contains(&peer.ip())) {
            usize::MAX
        } else {
            limits.max_connections_per_address
        };
        let Some(address) = per_address.admit(client::address_key(peer.ip()), cap) else {
            tracing::debug!(%peer, "connection refused: too many from this address");
            continue;
        };
        // At the cap, make room by closing the connection idle the longest; only when every
        // connection is busy does the new one wait (and the kernel's backlog fill).
        let slot = loop {
            if let Ok(slot) = slots.clone().try_acquire_owned() {
                break Some(slot);
            }
            if idle.evict_oldest()
                && last_warning.is_none_or(|at| at.elapsed() > EVICTION_WARNING_EVERY)
            {
                last_warning = Some(Instant::now());
                tracing::warn!(
                    max = limits.max_connections,
                    "at the connection cap; closing idle connections to make room"
                );
            }
            // An evicted connection lets go within moments; if none did, evict another.
            tokio::select! {
                _ = shutdown.cancelled() => break None,
                slot = slots.clone().acquire_owned() => break slot.ok(),
                _ = sleep(EVICTION_RETRY) => {}
            }
        };
        let Some(slot) = slot else {
            break;
        };
        next_id += 1;
        let _ = tcp.set_nodelay(true);
        let held = Held {
            _slot: slot,
            _address: address,
        };
        let connection = Connection {
            router: router.clone(),
            builder: builder.clone(),
            limits: limits.clone(),
            hard_stop: hard_stop.clone(),
            peer,
            activity: Arc::new(Activity::new(next_id, idle.clone())),
        };
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.run(tcp, held, false, watcher).await,
                Some(acceptor) => {
                    // A handshake that stalls can be evicted like any idle connection.
                    let evicted = connection.activity.evicted.clone();
                    let handshake = timeout(connection.limits.header_read, acceptor.accept(tcp));
                    tokio::select! {
                        shaken = handshake => match shaken {
                            Ok(Ok(stream)) => connection.run(stream, held, true, watcher).await,
                            Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        },
                        _ = evicted.cancelled() => {
                            tracing::debug!(%peer, "closing a TLS handshake to make room");
                        }
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
    hard_stop: CancellationToken,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl Connection {
    async fn run<T>(
        self,
        io: T,
        held: Held,
        tls: bool,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = self.activity.clone();
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
            _ = activity.silent_too_long(&self.limits) => {
                tracing::debug!(peer = %self.peer, "closing a silent connection");
            }
            _ = activity.evicted.cancelled() => {
                tracing::debug!(peer = %self.peer, "closing an idle connection to make room");
            }
            _ = self.hard_stop.cancelled() => {}
        }
        // An upgraded WebSocket lives on without this task: evicting it would free nothing.
        activity.idle.remove(activity.id);
    }
}

/// When a connection last moved bytes and whether a request is in flight, in milliseconds since
/// it opened (0 = never).
struct Activity {
    id: u64,
    opened: Instant,
    last_io_ms: AtomicU64,
    /// Requests whose answer has not been sent in full.
    busy: AtomicUsize,
    /// When the connection last had no request in flight (its opening, or the end of the
    /// latest answer).
    idle_since_ms: AtomicU64,
    /// Fired to close the connection when room is needed for a new one.
    evicted: CancellationToken,
    idle: Arc<IdleConnections>,
}

impl Activity {
    fn new(id: u64, idle: Arc<IdleConnections>) -> Self {
        let activity = Self {
            id,
            opened: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            evicted: CancellationToken::new(),
            idle,
        };
        activity
            .idle
            .insert(activity.opened, id, activity.evicted.clone());
        activity
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
    /// within `header_read`, or silence for `idle` since its last bytes. Requests in flight are
    /// never cut here (they have deadlines of their own).
    async fn silent_too_long(&self, limits: &Limits) {
        loop {
            let deadline = if self.busy.load(Relaxed) > 0 {
                Instant::now() + limits.idle
            } else {
                let idle_since = self.at(self.idle_since_ms.load(Relaxed));
                match self.last_io_ms.load(Relaxed) {
                    0 => self.opened + limits.header_read,
                    last => self.at(last).max(idle_since) + limits.idle,
                }
            };
            if self.busy.load(Relaxed) == 0 && Instant::now() >= deadline {
                return;
            }
            sleep_until(deadline).await;
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.idle.remove(self.id);
    }
}

/// Connections with no request in flight, oldest first: the ones to close when room is needed.
#[derive(Default)]
struct IdleConnections(Mutex<IdleSet>);

#[derive(Default)]
struct IdleSet {
    by_age: std::collections::BTreeMap<(Instant, u64), CancellationToken>,
    since: HashMap<u64, Instant>,
}

impl IdleConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleSet> {
        self.0.lock().expect("idle connections lock")
    }

    fn insert(&self, since: Instant, id: u64, evict: CancellationToken) {
        self.lock().insert(since, id, evict);
    }

    fn remove(&self, id: u64) {
        self.lock().remove(id);
    }

    /// Closes the connection idle the longest; false if every connection is busy.
    fn evict_oldest(&self) -> bool {
        let mut set = self.lock();
        let Some(((_, id), evict)) = set.by_age.pop_first() else {
            return false;
        };
        set.since.remove(&id);
        evict.cancel();
        true
    }
}

impl IdleSet {
    fn insert(&mut self, since: Instant, id: u64, evict: CancellationToken) {
        self.remove(id);
        self.by_age.insert((since, id), evict);
        self.since.insert(id, since);
    }

    fn remove(&mut self, id: u64) {
        if let Some(since) = self.since.remove(&id) {
            self.by_age.remove(&(since, id));
        }
    }
}

/// Counts a request in flight until its answer's body has been sent (or dropped); meanwhile
/// the connection cannot be evicted.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        // Counted under the idle set's lock, so "not busy" and "in the idle set" change together
        // even when HTTP/2 streams start and end on different threads.
        let mut set = activity.idle.lock();
        if activity.busy.fetch_add(1, Relaxed) == 0 {
            set.remove(activity.id);
        }
        drop(set);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let mut set = activity.idle.lock();
        if activity.busy.fetch_sub(1, Relaxed) == 1 {
            activity.idle_since_ms.store(activity.now_ms(), Relaxed);
            set.insert(Instant::now(), activity.id, activity.evicted.clone());
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
        // HTTP/2 carries the host in `:authority` (the URI), not a Host header; give every
        // request a Host so origin checks and absolute URLs work alike on both protocols.
        if !request.headers().contains_key(header::HOST) {
            let authority = request
                .uri()
                .authority()
                .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok());
            if let Some(host) = authority {
                request.headers_mut().insert(header::HOST, host);
            }
        }
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
