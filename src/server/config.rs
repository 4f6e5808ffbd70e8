//! Settings: command-line flags over `INGEST_*`/`LEPTOS_*` environment variables over
//! `Leptos.toml` over defaults, resolved once at start-up into a validated `Settings`.
use super::auth::ApiToken;
use clap::Parser;
use serde::Deserialize;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
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
}

#[derive(Debug, Default, clap::Args)]
pub struct SettingsArgs {
    /// Settings file; its `[server]` table fills in what flags and environment leave unset.
    #[arg(
        long,
        env = "INGEST_CONFIG",
        default_value = "Leptos.toml",
        global = true
    )]
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
    /// Requests per second allowed per client address and per token; 0 turns rate limiting
    /// off [default: 200].
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
    /// Seconds a browser session lasts after sign-in [default: 43200, 12 hours].
    #[arg(long, env = "INGEST_SESSION_TTL_SECS", global = true)]
    pub session_ttl_secs: Option<u64>,
    /// Seconds that requests in flight (one-shot uploads among them) get to finish after
    /// SIGTERM/SIGINT [default: 30].
    #[arg(long, env = "INGEST_SHUTDOWN_GRACE_SECS", global = true)]
    pub shutdown_grace_secs: Option<u64>,
    /// `/readyz` fails when the data dir's file system has less free space, in bytes
    /// [default: 1 GiB].
    #[arg(long, env = "INGEST_MIN_FREE_DISK_BYTES", global = true)]
    pub min_free_disk_bytes: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The `[server]` table of the settings file; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    site_addr: Option<SocketAddr>,
    site_root: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    token_file: Option<PathBuf>,
    max_upload_bytes: Option<u64>,
    max_metadata_bytes: Option<usize>,
    workers: Option<usize>,
    processing_delay_ms: Option<u64>,
    log_format: Option<LogFormat>,
    min_free_disk_bytes: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    rate_limit_per_second: Option<u64>,
    rate_limit_burst: Option<u32>,
    request_timeout_secs: Option<u64>,
    upload_idle_timeout_secs: Option<u64>,
    upload_expiry_secs: Option<u64>,
    max_concurrent_uploads: Option<usize>,
    retention_days: Option<u64>,
    retention_sweep_secs: Option<u64>,
    session_ttl_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    #[serde(default)]
    server: FileSettings,
}

/// Validated settings the whole server runs on.
#[derive(Debug)]
pub struct Settings {
    pub site_addr: SocketAddr,
    pub site_root: PathBuf,
    pub data_dir: PathBuf,
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
    /// Requests per second per client address and per token; 0 = no rate limiting.
    pub rate_limit_per_second: u64,
    pub rate_limit_burst: u32,
    /// The most an ordinary (non-upload, non-WebSocket) request may take.
    pub request_timeout: Duration,
    /// The longest an upload may send nothing.
    pub upload_idle_timeout: Duration,
    /// How long a resumable upload may wait for its next byte before it expires.
    pub upload_expiry: Duration,
    pub max_concurrent_uploads: usize,
    /// How long finished jobs are kept; `None` keeps them forever.
    pub retention: Option<Duration>,
    pub retention_sweep_every: Duration,
    /// How long a browser session lasts.
    pub session_ttl: Duration,
    /// How long requests in flight may run on after shutdown begins.
    pub shutdown_grace: Duration,
    /// Free disk below this makes `/readyz` fail.
    pub min_free_disk_bytes: u64,
    /// Whether the background worker runs; tests that drive jobs by hand turn it off.
    pub run_worker: bool,
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
    Invalid {
        name: &'static str,
        reason: &'static str,
    },
}

const DAY: u64 = 24 * 3600;
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
            token,
            token_generated: false,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            max_metadata_bytes: DEFAULT_MAX_METADATA_BYTES,
            workers: 4,
            processing_delay: Duration::ZERO,
            ws_ping_interval: Duration::from_secs(20),
            ws_min_interval: Duration::from_millis(100),
            log_format: LogFormat::Text,
            min_free_disk_bytes: DEFAULT_MIN_FREE_DISK_BYTES,
            shutdown_grace: Duration::from_secs(30),
            retention: Some(Duration::from_secs(30 * DAY)),
            retention_sweep_every: Duration::from_secs(3600),
            session_ttl: Duration::from_secs(12 * 3600),
            rate_limit_per_second: 200,
            rate_limit_burst: 400,
            request_timeout: Duration::from_secs(30),
            upload_idle_timeout: Duration::from_secs(60),
            upload_expiry: Duration::from_secs(DAY),
            max_concurrent_uploads: 256,
            run_worker: true,
        }
    }

    /// Layers flags/environment (already merged by clap), then the file, then defaults.
    /// `token_env` is the value of `INGEST_TOKEN`, passed in so tests need not touch the
    /// process environment.
    pub fn resolve(args: SettingsArgs, token_env: Option<String>) -> Result<Self, ConfigError> {
        let file = read_settings_file(&args.config)?;
        let token_file = args.token_file.or(file.token_file);
        let (token, token_generated) = match (token_env, token_file) {
            (Some(token), _) => (ApiToken::parse(&token).map_err(ConfigError::Token)?, false),
            (None, Some(path)) => (read_token_file(&path)?, false),
            (None, None) => (ApiToken::generate(), true),
        };
        let mut settings = Settings::with_defaults(
            args.data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("data")),
            token,
        );
        settings.token_generated = token_generated;
        if let Some(addr) = args.site_addr.or(file.site_addr) {
            settings.site_addr = addr;
        }
        if let Some(root) = args.site_root.or(file.site_root) {
            settings.site_root = root;
        }
        if let Some(max) = args.max_upload_bytes.or(file.max_upload_bytes) {
            if max == 0 {
                return Err(invalid("max_upload_bytes", "must be at least 1"));
            }
            settings.max_upload_bytes = max;
        }
        if let Some(max) = args.max_metadata_bytes.or(file.max_metadata_bytes) {
            if max < 2 {
                return Err(invalid("max_metadata_bytes", "must be at least 2 (\"{}\")"));
            }
            settings.max_metadata_bytes = max;
        }
        if let Some(workers) = args.workers.or(file.workers) {
            if !(1..=256).contains(&workers) {
                return Err(invalid("workers", "must be between 1 and 256"));
            }
            settings.workers = workers;
        }
        if let Some(ms) = args.processing_delay_ms.or(file.processing_delay_ms) {
            settings.processing_delay = Duration::from_millis(ms);
        }
        if let Some(format) = args.log_format.or(file.log_format) {
            settings.log_format = format;
        }
        if let Some(rate) = args.rate_limit_per_second.or(file.rate_limit_per_second) {
            settings.rate_limit_per_second = rate;
        }
        if let Some(burst) = args.rate_limit_burst.or(file.rate_limit_burst) {
            if burst == 0 {
                return Err(invalid("rate_limit_burst", "must be at least 1"));
            }
            settings.rate_limit_burst = burst;
        }
        if let Some(secs) = args.request_timeout_secs.or(file.request_timeout_secs) {
            settings.request_timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(secs) = args
            .upload_idle_timeout_secs
            .or(file.upload_idle_timeout_secs)
        {
            settings.upload_idle_timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(secs) = args.upload_expiry_secs.or(file.upload_expiry_secs) {
            settings.upload_expiry = Duration::from_secs(secs.max(1));
        }
        if let Some(uploads) = args.max_concurrent_uploads.or(file.max_concurrent_uploads) {
            if uploads == 0 {
                return Err(invalid("max_concurrent_uploads", "must be at least 1"));
            }
            settings.max_concurrent_uploads = uploads;
        }
        if let Some(days) = args.retention_days.or(file.retention_days) {
            settings.retention = (days > 0).then(|| Duration::from_secs(days.saturating_mul(DAY)));
        }
        if let Some(secs) = args.retention_sweep_secs.or(file.retention_sweep_secs) {
            settings.retention_sweep_every = Duration::from_secs(secs.max(1));
        }
        if let Some(secs) = args.session_ttl_secs.or(file.session_ttl_secs) {
            if secs == 0 {
                return Err(invalid("session_ttl_secs", "must be at least 1"));
            }
            settings.session_ttl = Duration::from_secs(secs);
        }
        if let Some(secs) = args.shutdown_grace_secs.or(file.shutdown_grace_secs) {
            settings.shutdown_grace = Duration::from_secs(secs);
        }
        if let Some(floor) = args.min_free_disk_bytes.or(file.min_free_disk_bytes) {
            settings.min_free_disk_bytes = floor;
        }
        Ok(settings)
    }
}

fn invalid(name: &'static str, reason: &'static str) -> ConfigError {
    ConfigError::Invalid { name, reason }
}

/// A missing file is fine (all keys have defaults); an unreadable or malformed one is not.
fn read_settings_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(FileSettings::default())
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
    fn without_a_token_one_is_generated() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::resolve(args_with_config(dir.path(), ""), None).unwrap();
        assert!(settings.token_generated);
    }
}
