//! Settings: command-line flags over `INGEST_*`/`LEPTOS_*` environment variables over
//! `Leptos.toml` over defaults, resolved once at start-up into a validated `Settings`.
use super::{
    blobs::{S3Endpoint, S3Location, S3Settings},
    commands::{AccountsCommand, KeysCommand},
    store::DatabaseUrl,
    token::ApiToken,
};
use clap::Parser;
use serde::Deserialize;
use std::{
    convert::Infallible,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

/// `ingest [serve]`: every setting can be given as a flag, an environment variable or in the
/// `[server]` table of the settings file.
#[derive(Debug, Parser)]
#[command(name = "ingest", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub args: SettingsArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage accounts in the configured database (works while the server runs).
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Manage API keys in the configured database (works while the server runs).
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// Every setting, once: clap fills it from flags and the environment, serde from the
/// `[server]` table of the settings file, and `layered` puts the first over the second.
#[derive(Debug, Default, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettingsArgs {
    /// Settings file; its `[server]` table fills in what flags and environment leave unset.
    #[arg(
        long,
        env = "INGEST_CONFIG",
        default_value = "Leptos.toml",
        global = true
    )]
    #[serde(skip)]
    pub config: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "LEPTOS_SITE_ADDR", global = true)]
    pub site_addr: Option<SocketAddr>,
    /// Directory with the built site (`pkg/`, assets).
    #[arg(long, env = "LEPTOS_SITE_ROOT", global = true)]
    pub site_root: Option<PathBuf>,
    /// Where the database, blobs and temporary uploads live [default: ./data].
    #[arg(long, env = "INGEST_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// `postgres://user:password@host:port/database`: jobs, sessions and accounts live in
    /// this PostgreSQL database instead of the data dir's SQLite file [default: none].
    #[arg(long, env = "INGEST_DATABASE_URL", global = true)]
    pub database_url: Option<UrlText>,
    /// `s3://bucket[/prefix]`: stored files live in this S3-compatible bucket instead of the
    /// data dir's `blobs/` folder; credentials and region come from the standard `AWS_*`
    /// variables [default: none].
    #[arg(long, env = "INGEST_BLOB_STORE", global = true)]
    pub blob_store: Option<UrlText>,
    /// `http(s)://host[:port]` of a non-AWS S3-compatible server for `blob_store`
    /// [default: AWS].
    #[arg(long, env = "INGEST_S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<UrlText>,
    /// File holding the API token (first line). The token itself is read only from the
    /// INGEST_TOKEN environment variable, never from a flag, so it stays out of `ps`.
    #[arg(long, env = "INGEST_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Largest accepted upload, in bytes [default: 10 GiB].
    #[arg(long, env = "INGEST_MAX_UPLOAD_BYTES", global = true)]
    pub max_upload_bytes: Option<u64>,
    /// Largest accepted metadata document, in bytes [default: 64 KiB].
    #[arg(long, env = "INGEST_MAX_METADATA_BYTES", global = true)]
    pub max_metadata_bytes: Option<usize>,
    /// Jobs processed at the same time [default: 4].
    #[arg(long, env = "INGEST_WORKERS", global = true)]
    pub workers: Option<usize>,
    /// Pause between processing steps, in milliseconds, so progress can be watched in demos
    /// and tests [default: 0].
    #[arg(long, env = "INGEST_PROCESSING_DELAY_MS", global = true)]
    pub processing_delay_ms: Option<u64>,
    /// Log format: `text` or `json` [default: text].
    #[arg(long, env = "INGEST_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    /// Requests per second allowed per client address, and each account's default rate quota
    /// (all its keys and sessions together); 0 turns rate limiting off [default: 200].
    #[arg(long, env = "INGEST_RATE_LIMIT_PER_SECOND", global = true)]
    pub rate_limit_per_second: Option<u64>,
    /// Requests a client may make at once above the steady rate [default: 400].
    #[arg(long, env = "INGEST_RATE_LIMIT_BURST", global = true)]
    pub rate_limit_burst: Option<u32>,
    /// Seconds an ordinary request may take [default: 30].
    #[arg(long, env = "INGEST_REQUEST_TIMEOUT_SECS", global = true)]
    pub request_timeout_secs: Option<u64>,
    /// Seconds an upload may go without sending a byte before it is cut [default: 60].
    #[arg(long, env = "INGEST_UPLOAD_IDLE_TIMEOUT_SECS", global = true)]
    pub upload_idle_timeout_secs: Option<u64>,
    /// Seconds a resumable upload may go without a byte before it expires: its bytes are
    /// removed and its job fails as "expired" [default: 86400, one day].
    #[arg(long, env = "INGEST_UPLOAD_EXPIRY_SECS", global = true)]
    pub upload_expiry_secs: Option<u64>,
    /// Uploads received at the same time; more get 503 with Retry-After [default: 256].
    #[arg(long, env = "INGEST_MAX_CONCURRENT_UPLOADS", global = true)]
    pub max_concurrent_uploads: Option<usize>,
    /// Days finished jobs (and their files) are kept; 0 keeps them forever [default: 30].
    #[arg(long, env = "INGEST_RETENTION_DAYS", global = true)]
    pub retention_days: Option<u64>,
    /// Seconds between retention sweeps [default: 3600].
    #[arg(long, env = "INGEST_RETENTION_SWEEP_SECS", global = true)]
    pub retention_sweep_secs: Option<u64>,
    /// Seconds a node's hold on a job lasts without renewal (renewed every third of it): a
    /// node that stops for this long has its jobs processed by another node, and its one-shot
    /// uploads fail [default: 30].
    #[arg(long, env = "INGEST_LEASE_SECONDS", global = true)]
    pub lease_seconds: Option<u64>,
    /// Seconds a browser session lasts after sign-in [default: 43200, 12 hours].
    #[arg(long, env = "INGEST_SESSION_TTL_SECS", global = true)]
    pub session_ttl_secs: Option<u64>,
    /// Seconds that requests in flight (one-shot uploads among them) get to finish after
    /// SIGTERM/SIGINT [default: 30].
    #[arg(long, env = "INGEST_SHUTDOWN_GRACE_SECS", global = true)]
    pub shutdown_grace_secs: Option<u64>,
    /// Uploads are refused (507) and `/readyz` fails when the data dir's file system has less
    /// free space, in bytes [default: 1 GiB].
    #[arg(long, env = "INGEST_MIN_FREE_DISK_BYTES", global = true)]
    pub min_free_disk_bytes: Option<u64>,
    /// Open connections the server keeps at once; more wait in the kernel's backlog
    /// [default: 4096].
    #[arg(long, env = "INGEST_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<usize>,
    /// Open connections one client address may hold [default: 256].
    #[arg(long, env = "INGEST_MAX_CONNECTIONS_PER_ADDRESS", global = true)]
    pub max_connections_per_address: Option<usize>,
    /// Seconds a client gets to send a request's headers (and to finish a TLS handshake)
    /// [default: 10].
    #[arg(long, env = "INGEST_HEADER_READ_TIMEOUT_SECS", global = true)]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a keep-alive connection may sit idle between requests [default: 30].
    #[arg(long, env = "INGEST_IDLE_TIMEOUT_SECS", global = true)]
    pub idle_timeout_secs: Option<u64>,
    /// WebSockets open at once; more get 503 with Retry-After. Below max_connections
    /// [default: 2048].
    #[arg(long, env = "INGEST_MAX_WEBSOCKETS", global = true)]
    pub max_websockets: Option<usize>,
    /// Unfinished resumable uploads one credential may have open; more get 429 [default: 100].
    #[arg(long, env = "INGEST_MAX_PENDING_UPLOADS", global = true)]
    pub max_pending_uploads: Option<u64>,
    /// Default quota of every account: bytes its jobs' files and unfinished uploads may take;
    /// more gets 413. 0 = no limit [default: 0]. An account's own quota overrides it.
    #[arg(long, env = "INGEST_QUOTA_STORED_BYTES", global = true)]
    pub quota_stored_bytes: Option<u64>,
    /// Default quota of every account: uploads in progress at once; more gets 429. 0 = no
    /// limit beyond max_concurrent_uploads and max_pending_uploads [default: 0]. An account's
    /// own quota overrides it.
    #[arg(long, env = "INGEST_QUOTA_UPLOADS", global = true)]
    pub quota_uploads: Option<u64>,
    /// Failed sign-ins allowed per client address per minute; more get 429 [default: 10].
    #[arg(long, env = "INGEST_SIGN_IN_FAILURES_PER_MINUTE", global = true)]
    pub sign_in_failures_per_minute: Option<u32>,
    /// Addresses (or CIDR ranges) of reverse proxies whose X-Forwarded-For and
    /// X-Forwarded-Proto are believed, comma-separated [default: none].
    #[arg(
        long,
        env = "INGEST_TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Option<Vec<String>>,
    /// The URL clients reach this server at (`https://ingest.example.com`); absolute URLs in
    /// answers and the origin check use it instead of the request's Host [default: none].
    #[arg(long, env = "INGEST_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// PEM certificate chain; with `tls_key`, the server speaks HTTPS (HTTP/1.1 and HTTP/2)
    /// and reloads both files on SIGHUP or when they change [default: none].
    #[arg(long, env = "INGEST_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert` [default: none].
    #[arg(long, env = "INGEST_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Milliseconds before a failed webhook delivery's first retry; each later one waits
    /// twice as long (with jitter), up to an hour [default: 5000].
    #[arg(long, env = "INGEST_WEBHOOK_RETRY_BASE_MS", global = true)]
    pub webhook_retry_base_ms: Option<u64>,
    /// Let webhooks go to loopback, private and link-local addresses (tests, closed
    /// networks) [default: false].
    #[arg(long, env = "INGEST_WEBHOOK_ALLOW_PRIVATE", global = true)]
    pub webhook_allow_private: Option<bool>,
    /// Failed webhook attempts in a row after which an endpoint is disabled [default: 100].
    #[arg(long, env = "INGEST_WEBHOOK_DISABLE_AFTER_FAILURES", global = true)]
    pub webhook_disable_after_failures: Option<u64>,
    /// `http(s)://…` asked before every job is accepted (see README "Webhooks")
    /// [default: none].
    #[arg(long, env = "INGEST_ADMISSION_URL", global = true)]
    pub admission_url: Option<String>,
    /// The admission hook's signing secret, `whsec_<base64>`; required with admission_url.
    /// Environment or settings file only.
    #[arg(skip)]
    pub admission_secret: Option<UrlText>,
    /// Milliseconds the admission hook has to answer [default: 2000].
    #[arg(long, env = "INGEST_ADMISSION_TIMEOUT_MS", global = true)]
    pub admission_timeout_ms: Option<u64>,
    /// When the admission hook does not answer usably: `reject` (503) or `admit`
    /// [default: reject].
    #[arg(long, env = "INGEST_ADMISSION_ON_ERROR", global = true)]
    pub admission_on_error: Option<OnError>,
}

impl SettingsArgs {
    /// Flags and environment (`self`) over the settings file (`file`), field by field.
    fn layered(self, file: SettingsArgs) -> SettingsArgs {
        macro_rules! first_set {
            ($($field:ident),* $(,)?) => {
                SettingsArgs { config: self.config, $($field: self.$field.or(file.$field)),* }
            };
        }
        first_set!(
            site_addr,
            site_root,
            data_dir,
            database_url,
            blob_store,
            s3_endpoint,
            token_file,
            max_upload_bytes,
            max_metadata_bytes,
            workers,
            processing_delay_ms,
            log_format,
            rate_limit_per_second,
            rate_limit_burst,
            request_timeout_secs,
            upload_idle_timeout_secs,
            upload_expiry_secs,
            max_concurrent_uploads,
            retention_days,
            retention_sweep_secs,
            lease_seconds,
            session_ttl_secs,
            shutdown_grace_secs,
            min_free_disk_bytes,
            max_connections,
            max_connections_per_address,
            header_read_timeout_secs,
            idle_timeout_secs,
            max_websockets,
            max_pending_uploads,
            quota_stored_bytes,
            quota_uploads,
            sign_in_failures_per_minute,
            trusted_proxies,
            public_url,
            tls_cert,
            tls_key,
            webhook_retry_base_ms,
            webhook_allow_private,
            webhook_disable_after_failures,
            admission_url,
            admission_secret,
            admission_timeout_ms,
            admission_on_error,
        )
    }
}

/// A URL setting as given, which may carry a password: kept whole for parsing, never shown
/// (`Debug` hides it, and a refusal to parse it does not quote it).
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct UrlText(String);

impl FromStr for UrlText {
    type Err = Infallible;

    fn from_str(text: &str) -> Result<Self, Infallible> {
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Debug for UrlText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UrlText(..)")
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    #[serde(default)]
    server: SettingsArgs,
}

/// Validated settings the whole server runs on.
#[derive(Debug)]
pub struct Settings {
    pub site_addr: SocketAddr,
    pub site_root: PathBuf,
    pub data_dir: PathBuf,
    /// The PostgreSQL database jobs, sessions and accounts live in; `None`: the SQLite file
    /// `ingest.db` in the data dir.
    pub database_url: Option<DatabaseUrl>,
    /// The S3-compatible bucket stored files live in; `None`: the data dir's `blobs/` folder.
    pub blob_store: Option<S3Settings>,
    pub token: ApiToken,
    /// True when no token was configured and one was made up at start-up (it is logged once).
    pub token_generated: bool,
    pub max_upload_bytes: u64,
    pub max_metadata_bytes: usize,
    pub workers: usize,
    pub processing_delay: Duration,
    /// How often an idle WebSocket is pinged.
    pub ws_ping_interval: Duration,
    /// The fewest milliseconds between two status messages on one WebSocket.
    pub ws_min_interval: Duration,
    pub log_format: LogFormat,
    /// Requests per second per client address, and each account's default rate quota; 0 = no
    /// rate limiting.
    pub rate_limit_per_second: u64,
    pub rate_limit_burst: u32,
    /// The most an ordinary (non-upload, non-WebSocket) request may take, body included.
    pub request_timeout: Duration,
    /// The longest an upload may send nothing.
    pub upload_idle_timeout: Duration,
    /// How long a resumable upload may wait for its next byte before it expires.
    pub upload_expiry: Duration,
    pub max_concurrent_uploads: usize,
    /// How long finished jobs are kept; `None` keeps them forever.
    pub retention: Option<Duration>,
    pub retention_sweep_every: Duration,
    /// How long a node's lease on a job (processing, or a one-shot upload) lasts unrenewed.
    pub lease: Duration,
    /// How long a browser session lasts.
    pub session_ttl: Duration,
    /// How long requests in flight may run on after shutdown begins.
    pub shutdown_grace: Duration,
    /// Free disk below this refuses uploads and makes `/readyz` fail.
    pub min_free_disk_bytes: u64,
    /// Open connections at once, in all and per client address.
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// Time to send a request's headers (and to finish a TLS handshake).
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    pub max_websockets: usize,
    /// Unfinished resumable uploads per credential.
    pub max_pending_uploads: u64,
    /// Default account quotas (0: no limit); the rate quota is `rate_limit_per_second`.
    pub quota_stored_bytes: u64,
    pub quota_uploads: u64,
    pub sign_in_failures_per_minute: u32,
    /// Peers whose forwarded headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where clients reach this server, when it is not what they send as Host.
    pub public_url: Option<PublicUrl>,
    /// Certificate chain and key files: HTTPS when set.
    pub tls: Option<TlsFiles>,
    /// Whether the background worker runs; tests that drive jobs by hand turn it off.
    pub run_worker: bool,
    /// The first retry's delay of a failed webhook delivery.
    pub webhook_retry_base: Duration,
    /// Webhooks may go to non-public addresses.
    pub webhook_allow_private: bool,
    /// Failed webhook attempts in a row that disable an endpoint.
    pub webhook_disable_after_failures: u64,
    /// The admission hook, when one is configured.
    pub admission: Option<AdmissionSettings>,
}

/// What to do when the admission hook gives no usable answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse the job (503): nothing gets in unchecked.
    #[default]
    Reject,
    /// Accept the job as it is.
    Admit,
}

/// The operator's admission hook.
#[derive(Clone, Debug)]
pub struct AdmissionSettings {
    pub url: http_client::Url,
    /// `whsec_<base64>`.
    pub secret: secrecy::SecretString,
    pub timeout: Duration,
    pub on_error: OnError,
}

/// The PEM files the server's certificate and key are read (and re-read) from.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The configured public URL, reduced to what is used: `scheme://authority`, both ways.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl {
    /// `https://host[:port]`: the base of absolute URLs and the only accepted `Origin`.
    pub origin: String,
    /// `wss://host[:port]` (or `ws://`).
    pub ws_base: String,
}

impl PublicUrl {
    /// `http(s)://host[:port]`, optionally with a trailing `/`; no path, query or user info.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        const SHAPE: &str = "must be http(s)://host[:port] with no path";
        let uri: axum::http::Uri = text.parse().map_err(|_| SHAPE)?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(SHAPE);
        };
        let plain_path = matches!(uri.path(), "" | "/") && uri.query().is_none();
        if !plain_path || authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(SHAPE);
        }
        let ws_scheme = match scheme {
            "https" => "wss",
            "http" => "ws",
            _ => return Err(SHAPE),
        };
        // Browsers leave a scheme's default port out of `Origin`.
        let authority = match (scheme, authority.port_u16()) {
            ("https", Some(443)) | ("http", Some(80)) => authority.host().to_ascii_lowercase(),
            _ => authority.as_str().to_ascii_lowercase(),
        };
        Ok(Self {
            origin: format!("{scheme}://{authority}"),
            ws_base: format!("{ws_scheme}://{authority}"),
        })
    }
}

/// Why start-up was refused; printed as one line before exiting with code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read settings file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid settings file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid token: {0}")]
    Token(&'static str),
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

const DAY: u64 = 24 * 3600;
const YEAR: u64 = 365 * DAY;
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024 * 1024;
pub const DEFAULT_MAX_METADATA_BYTES: usize = 64 * 1024;
pub const DEFAULT_MIN_FREE_DISK_BYTES: u64 = 1024 * 1024 * 1024;

impl Settings {
    /// Defaults for everything but where data lives and which token is accepted; used by
    /// tests and as the base that configuration layers override.
    pub fn with_defaults(data_dir: PathBuf, token: ApiToken) -> Self {
        Self {
            site_addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            site_root: PathBuf::from("target/site"),
            data_dir,
            database_url: None,
            blob_store: None,
            token,
            token_generated: false,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            max_metadata_bytes: DEFAULT_MAX_METADATA_BYTES,
            workers: 32,
            processing_delay: Duration::ZERO,
            ws_ping_interval: Duration::from_secs(20),
            ws_min_interval: Duration::from_millis(100),
            log_format: LogFormat::Text,
            min_free_disk_bytes: DEFAULT_MIN_FREE_DISK_BYTES,
            shutdown_grace: Duration::from_secs(30),
            retention: Some(Duration::from_secs(30 * DAY)),
            retention_sweep_every: Duration::from_secs(3600),
            lease: Duration::from_secs(30),
            session_ttl: Duration::from_secs(12 * 3600),
            rate_limit_per_second: 200,
            rate_limit_burst: 400,
            request_timeout: Duration::from_secs(30),
            upload_idle_timeout: Duration::from_secs(60),
            upload_expiry: Duration::from_secs(DAY),
            max_concurrent_uploads: 256,
            max_connections: 4096,
            max_connections_per_address: 256,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_websockets: 2048,
            max_pending_uploads: 100,
            quota_stored_bytes: 0,
            quota_uploads: 0,
            sign_in_failures_per_minute: 10,
            trusted_proxies: Vec::new(),
            public_url: None,
            tls: None,
            run_worker: true,
            webhook_retry_base: Duration::from_secs(5),
            webhook_allow_private: false,
            webhook_disable_after_failures: 100,
            admission: None,
        }
    }

    /// Layers flags/environment (already merged by clap), then the file, then defaults, and
    /// refuses any value outside its range. `token_env` is the value of `INGEST_TOKEN`, passed
    /// in so tests need not touch the process environment.
    pub fn resolve(args: SettingsArgs, token_env: Option<String>) -> Result<Self, ConfigError> {
        let file = read_settings_file(&args.config)?;
        let args = args.layered(file);
        let (token, token_generated) = match (token_env, &args.token_file) {
            (Some(token), _) => (ApiToken::parse(&token).map_err(ConfigError::Token)?, false),
            (None, Some(path)) => (read_token_file(path)?, false),
            (None, None) => (ApiToken::generate(), true),
        };
        let mut settings = Settings::with_defaults(
            args.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            token,
        );
        let s = &mut settings;
        s.token_generated = token_generated;
        set(&mut s.site_addr, args.site_addr);
        set(&mut s.site_root, args.site_root);
        set(&mut s.log_format, args.log_format);
        if let Some(UrlText(text)) = args.database_url.filter(|url| !url.0.trim().is_empty()) {
            let url =
                DatabaseUrl::parse(text.trim()).map_err(|why| invalid("database_url", why))?;
            s.database_url = Some(url);
        }
        // Empty means unset, as for database_url.
        let given = |url: Option<UrlText>| {
            url.map(|url| url.0.trim().to_owned())
                .filter(|text| !text.is_empty())
        };
        let endpoint = given(args.s3_endpoint)
            .map(|text| S3Endpoint::parse(&text).map_err(|why| invalid("s3_endpoint", why)))
            .transpose()?;
        match given(args.blob_store) {
            Some(text) => {
                let location =
                    S3Location::parse(&text).map_err(|why| invalid("blob_store", why))?;
                s.blob_store = Some(S3Settings {
                    location,
                    endpoint,
                    credentials: None,
                });
            }
            None if endpoint.is_some() => {
                return Err(invalid(
                    "s3_endpoint",
                    "is only used with blob_store = \"s3://bucket\"",
                ))
            }
            None => {}
        }
        let max_upload = within("max_upload_bytes", args.max_upload_bytes, 1..=1 << 50)?;
        set(&mut s.max_upload_bytes, max_upload);
        let max_metadata = within("max_metadata_bytes", args.max_metadata_bytes, 2..=16 << 20)?;
        set(&mut s.max_metadata_bytes, max_metadata);
        set(&mut s.workers, within("workers", args.workers, 1..=256)?);
        let delay = within(
            "processing_delay_ms",
            args.processing_delay_ms,
            0..=3_600_000,
        )?;
        set(&mut s.processing_delay, delay.map(Duration::from_millis));
        let rate = within(
            "rate_limit_per_second",
            args.rate_limit_per_second,
            0..=1_000_000,
        )?;
        set(&mut s.rate_limit_per_second, rate);
        let burst = within("rate_limit_burst", args.rate_limit_burst, 1..=1_000_000)?;
        set(&mut s.rate_limit_burst, burst);
        set(
            &mut s.request_timeout,
            seconds("request_timeout_secs", args.request_timeout_secs, DAY)?,
        );
        set(
            &mut s.upload_idle_timeout,
            seconds(
                "upload_idle_timeout_secs",
                args.upload_idle_timeout_secs,
                DAY,
            )?,
        );
        set(
            &mut s.upload_expiry,
            seconds("upload_expiry_secs", args.upload_expiry_secs, YEAR)?,
        );
        let uploads = within(
            "max_concurrent_uploads",
            args.max_concurrent_uploads,
            1..=65_536,
        )?;
        set(&mut s.max_concurrent_uploads, uploads);
        if let Some(days) = within("retention_days", args.retention_days, 0..=36_500)? {
            s.retention = (days > 0).then(|| Duration::from_secs(days * DAY));
        }
        set(
            &mut s.retention_sweep_every,
            seconds("retention_sweep_secs", args.retention_sweep_secs, 30 * DAY)?,
        );
        set(
            &mut s.lease,
            seconds("lease_seconds", args.lease_seconds, 3600)?,
        );
        set(
            &mut s.session_ttl,
            seconds("session_ttl_secs", args.session_ttl_secs, YEAR)?,
        );
        let grace = within("shutdown_grace_secs", args.shutdown_grace_secs, 0..=3600)?;
        set(&mut s.shutdown_grace, grace.map(Duration::from_secs));
        set(&mut s.min_free_disk_bytes, args.min_free_disk_bytes);
        let connections = within("max_connections", args.max_connections, 1..=1_000_000)?;
        set(&mut s.max_connections, connections);
        let per_address = within(
            "max_connections_per_address",
            args.max_connections_per_address,
            1..=1_000_000,
        )?;
        set(&mut s.max_connections_per_address, per_address);
        set(
            &mut s.header_read_timeout,
            seconds(
                "header_read_timeout_secs",
                args.header_read_timeout_secs,
                300,
            )?,
        );
        set(
            &mut s.idle_timeout,
            seconds("idle_timeout_secs", args.idle_timeout_secs, 3600)?,
        );
        let sockets = within("max_websockets", args.max_websockets, 1..=1_000_000)?;
        set(&mut s.max_websockets, sockets);
        // Upgraded sockets cannot be evicted: they must leave room for ordinary requests. Left
        // unset, the default shrinks to half the connections; set, it must fit.
        if sockets.is_none() {
            s.max_websockets = s.max_websockets.min(s.max_connections / 2).max(1);
        }
        if s.max_websockets >= s.max_connections && s.max_connections > 1 {
            return Err(invalid(
                "max_websockets",
                "must be less than max_connections (WebSockets hold a connection each)",
            ));
        }
        let pending = within(
            "max_pending_uploads",
            args.max_pending_uploads,
            1..=1_000_000,
        )?;
        set(&mut s.max_pending_uploads, pending);
        set(&mut s.quota_stored_bytes, args.quota_stored_bytes);
        let uploads = within("quota_uploads", args.quota_uploads, 0..=1_000_000)?;
        set(&mut s.quota_uploads, uploads);
        let failures = within(
            "sign_in_failures_per_minute",
            args.sign_in_failures_per_minute,
            1..=10_000,
        )?;
        set(&mut s.sign_in_failures_per_minute, failures);
        if let Some(proxies) = args.trusted_proxies {
            s.trusted_proxies = proxies
                .iter()
                .filter(|text| !text.trim().is_empty())
                .map(|text| parse_network(text.trim()))
                .collect::<Result<_, _>>()?;
        }
        if let Some(url) = args.public_url {
            let url = PublicUrl::parse(&url).map_err(|reason| invalid("public_url", reason))?;
            s.public_url = Some(url);
        }
        s.tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(invalid("tls_cert", "tls_cert and tls_key go together")),
        };
        let retry_base = within(
            "webhook_retry_base_ms",
            args.webhook_retry_base_ms,
            1..=3_600_000,
        )?;
        set(
            &mut s.webhook_retry_base,
            retry_base.map(Duration::from_millis),
        );
        set(&mut s.webhook_allow_private, args.webhook_allow_private);
        let disable_after = within(
            "webhook_disable_after_failures",
            args.webhook_disable_after_failures,
            1..=1_000_000,
        )?;
        set(&mut s.webhook_disable_after_failures, disable_after);
        s.admission = admission_settings(
            given(args.admission_url.map(UrlText)),
            args.admission_secret
                .or_else(|| std::env::var("INGEST_ADMISSION_SECRET").ok().map(UrlText)),
            args.admission_timeout_ms,
            args.admission_on_error,
        )?;
        Ok(settings)
    }
}

/// The admission hook's settings: none without a URL; with one, an http(s) URL and a
/// `whsec_` secret are required (a hook that cannot be verified is no check at all).
fn admission_settings(
    url: Option<String>,
    secret: Option<UrlText>,
    timeout_ms: Option<u64>,
    on_error: Option<OnError>,
) -> Result<Option<AdmissionSettings>, ConfigError> {
    let timeout = within("admission_timeout_ms", timeout_ms, 1..=60_000)?.unwrap_or(2000);
    let Some(url) = url else {
        return Ok(None);
    };
    let url = http_client::Url::parse(&url)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
        .ok_or_else(|| invalid("admission_url", "must be an http:// or https:// URL"))?;
    let secret = secret
        .map(|UrlText(text)| text.trim().to_owned())
        .filter(|text| !text.is_empty())
        .ok_or_else(|| {
            invalid(
                "admission_secret",
                "INGEST_ADMISSION_SECRET (whsec_<base64 of 24 to 64 bytes>) is required with admission_url",
            )
        })?;
    use base64::Engine;
    let key_length = secret
        .strip_prefix("whsec_")
        .and_then(|key| base64::engine::general_purpose::STANDARD.decode(key).ok())
        .map(|key| key.len());
    if !key_length.is_some_and(|length| (24..=64).contains(&length)) {
        return Err(invalid(
            "admission_secret",
            "must be whsec_ followed by the base64 of 24 to 64 bytes",
        ));
    }
    Ok(Some(AdmissionSettings {
        url,
        secret: secret.into(),
        timeout: Duration::from_millis(timeout),
        on_error: on_error.unwrap_or_default(),
    }))
}

/// Overrides a default with a configured value.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// The value if it lies in `range`; out of range stops start-up (never a panic later).
fn within<T>(
    name: &'static str,
    value: Option<T>,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>, ConfigError>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    match value {
        Some(value) if !range.contains(&value) => Err(invalid(
            name,
            format!("must be between {} and {}", range.start(), range.end()),
        )),
        value => Ok(value),
    }
}

/// A number of seconds from 1 to `most`.
fn seconds(
    name: &'static str,
    value: Option<u64>,
    most: u64,
) -> Result<Option<Duration>, ConfigError> {
    Ok(within(name, value, 1..=most)?.map(Duration::from_secs))
}

/// An address (`10.0.0.1`) or a range (`10.0.0.0/8`).
fn parse_network(text: &str) -> Result<ipnet::IpNet, ConfigError> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            invalid(
                "trusted_proxies",
                format!("{text:?} is not an IP address or CIDR range"),
            )
        })
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

/// A missing file is fine (all keys have defaults); an unreadable or malformed one is not.
fn read_settings_file(path: &Path) -> Result<SettingsArgs, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SettingsArgs::default())
        }
        Err(source) => {
            return Err(ConfigError::ReadFile {
                path: path.to_owned(),
                source,
            })
        }
    };
    toml::from_str::<SettingsFile>(&text)
        .map(|file| file.server)
        .map_err(|error| ConfigError::ParseFile {
            path: path.to_owned(),
            message: error.message().to_owned(),
        })
}

fn read_token_file(path: &Path) -> Result<ApiToken, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile {
        path: path.to_owned(),
        source,
    })?;
    ApiToken::parse(text.lines().next().unwrap_or_default()).map_err(ConfigError::Token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_with_config(dir: &Path, toml: &str) -> SettingsArgs {
        let path = dir.join("Leptos.toml");
        std::fs::write(&path, toml).unwrap();
        SettingsArgs {
            config: path,
            ..SettingsArgs::default()
        }
    }

    #[test]
    fn flags_and_environment_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = args_with_config(dir.path(), "[server]\nworkers = 3\ndata_dir = \"x\"\n");
        args.workers = Some(7);
        let settings = Settings::resolve(args, Some("a-long-enough-token".into())).unwrap();
        assert_eq!(settings.workers, 7);
        assert_eq!(settings.data_dir, PathBuf::from("x"));
        assert!(!settings.token_generated);
    }

    #[test]
    fn unknown_keys_and_bad_values_refuse_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let args = args_with_config(dir.path(), "[server]\nwokers = 3\n");
        let error = Settings::resolve(args, None).unwrap_err();
        assert!(error.to_string().contains("wokers"), "{error}");
        let mut args = args_with_config(dir.path(), "");
        args.workers = Some(0);
        assert!(Settings::resolve(args, None).is_err());
    }

    #[test]
    fn values_that_would_overflow_time_arithmetic_refuse_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let huge = u64::MAX / 2;
        type Apply = fn(&mut SettingsArgs, u64);
        let cases: [(&str, Apply); 8] = [
            ("session_ttl_secs", |a, v| a.session_ttl_secs = Some(v)),
            ("upload_expiry_secs", |a, v| a.upload_expiry_secs = Some(v)),
            ("retention_sweep_secs", |a, v| {
                a.retention_sweep_secs = Some(v)
            }),
            ("retention_days", |a, v| a.retention_days = Some(v)),
            ("request_timeout_secs", |a, v| {
                a.request_timeout_secs = Some(v)
            }),
            ("shutdown_grace_secs", |a, v| {
                a.shutdown_grace_secs = Some(v)
            }),
            ("max_upload_bytes", |a, v| a.max_upload_bytes = Some(v)),
            ("lease_seconds", |a, v| a.lease_seconds = Some(v)),
        ];
        for (name, apply) in cases {
            let mut args = args_with_config(dir.path(), "");
            apply(&mut args, huge);
            let error = Settings::resolve(args, None).unwrap_err();
            assert!(error.to_string().contains(name), "{name}: {error}");
        }
        // The same from the file.
        let args = args_with_config(dir.path(), "[server]\nsession_ttl_secs = 9000000000\n");
        assert!(Settings::resolve(args, None).is_err());
    }

    #[test]
    fn new_settings_come_from_the_file_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let args = args_with_config(
            dir.path(),
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\n\
             public_url = \"https://Ingest.example.com:443/\"\nmax_connections = 10\n\
             max_websockets = 5\n",
        );
        let settings = Settings::resolve(args, None).unwrap();
        assert_eq!(settings.trusted_proxies.len(), 2);
        assert_eq!(
            settings.public_url.unwrap().origin,
            "https://ingest.example.com"
        );
        assert_eq!(settings.max_connections, 10);
        for bad in [
            "[server]\ntrusted_proxies = [\"nope\"]\n",
            "[server]\npublic_url = \"https://x.example/path\"\n",
            "[server]\npublic_url = \"ftp://x.example\"\n",
            "[server]\ntls_cert = \"cert.pem\"\n",
            "[server]\nmax_connections = 0\n",
        ] {
            let args = args_with_config(dir.path(), bad);
            assert!(Settings::resolve(args, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_database_url_is_parsed_and_its_password_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = args_with_config(dir.path(), "");
        args.database_url = Some(
            "postgres://ingest:s3cret@db.internal:6432/jobs"
                .parse()
                .unwrap(),
        );
        assert!(!format!("{args:?}").contains("s3cret"));
        let settings = Settings::resolve(args, None).unwrap();
        let url = settings.database_url.as_ref().expect("a database URL");
        assert_eq!(url.to_string(), "postgres://ingest@db.internal:6432/jobs");
        assert!(!format!("{settings:?}").contains("s3cret"));
        // From the file too; empty means unset (SQLite).
        let args = args_with_config(dir.path(), "[server]\ndatabase_url = \"\"\n");
        assert!(Settings::resolve(args, None)
            .unwrap()
            .database_url
            .is_none());
        for bad in [
            "mysql://ingest:s3cret@db/jobs",
            "postgres://ingest:s3cret@db:port/jobs",
        ] {
            let mut args = args_with_config(dir.path(), "");
            args.database_url = Some(bad.parse().unwrap());
            let error = Settings::resolve(args, None).unwrap_err().to_string();
            assert!(error.contains("database_url"), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
    }

    #[test]
    fn a_blob_store_is_an_s3_url_with_an_optional_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::resolve(args_with_config(dir.path(), ""), None).unwrap();
        assert!(settings.blob_store.is_none(), "the local folder by default");
        let mut args = args_with_config(dir.path(), "");
        args.blob_store = Some("s3://ingest-blobs/node".parse().unwrap());
        args.s3_endpoint = Some("http://127.0.0.1:9000".parse().unwrap());
        let s3 = Settings::resolve(args, None).unwrap().blob_store.unwrap();
        assert_eq!(s3.location.to_string(), "s3://ingest-blobs/node");
        assert_eq!(s3.endpoint.unwrap().to_string(), "http://127.0.0.1:9000");
        let file = "[server]\nblob_store = \"s3://from-file\"\n";
        let from_file = Settings::resolve(args_with_config(dir.path(), file), None).unwrap();
        assert_eq!(from_file.blob_store.unwrap().location.bucket(), "from-file");
        for (store, endpoint, refused) in [
            (Some("/var/blobs"), None, "blob_store"),
            (Some("s3://key:s3cret@bucket"), None, "blob_store"),
            (
                Some("s3://bucket"),
                Some("http://key:s3cret@host"),
                "s3_endpoint",
            ),
            (None, Some("http://127.0.0.1:9000"), "s3_endpoint"),
        ] {
            let mut args = args_with_config(dir.path(), "");
            args.blob_store = store.map(|text| text.parse().unwrap());
            args.s3_endpoint = endpoint.map(|text| text.parse().unwrap());
            assert!(!format!("{args:?}").contains("s3cret"));
            let error = Settings::resolve(args, None).unwrap_err().to_string();
            assert!(error.contains(refused), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
    }

    #[test]
    fn the_lease_is_30_seconds_unless_set_and_never_zero() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::resolve(args_with_config(dir.path(), ""), None).unwrap();
        assert_eq!(settings.lease, Duration::from_secs(30));
        let file = "[server]\nlease_seconds = 2\n";
        let settings = Settings::resolve(args_with_config(dir.path(), file), None).unwrap();
        assert_eq!(settings.lease, Duration::from_secs(2));
        let mut args = args_with_config(dir.path(), "");
        args.lease_seconds = Some(0);
        let error = Settings::resolve(args, None).unwrap_err().to_string();
        assert!(error.contains("lease_seconds"), "{error}");
    }

    #[test]
    fn without_a_token_one_is_generated() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::resolve(args_with_config(dir.path(), ""), None).unwrap();
        assert!(settings.token_generated);
    }
}
