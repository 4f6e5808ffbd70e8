//! Property tests through the real server (docs/FUZZING.md): arbitrary multipart bodies, Range
//! headers and tus creation headers get a 2xx or a documented JSON 4xx, never a 5xx, a panic or
//! half-done state; arbitrary settings resolve or are refused, never panic.
use crate::helpers::*;
use ingest::{
    domain::{JobId, JobState, UploadName},
    server::{
        config::{ConfigError, Settings, SettingsArgs},
        store::ListFilter,
    },
};
use proptest::{
    prelude::*,
    test_runner::{TestCaseError, TestRunner},
};
use serde_json::Value;

/// The settings the unit property tests use too: one definition, compiled into both (proptest
/// is a dev-dependency, so the library cannot export it).
#[path = "../../src/domain/fuzzing.rs"]
mod fuzzing;
use fuzzing::fuzz_config;

/// A runtime for one property test: its server is started once and serves every case.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `check` on `cases` inputs from `strategy`, on `runtime`.
fn run_async<S, F>(
    runtime: &tokio::runtime::Runtime,
    cases: u32,
    strategy: S,
    check: impl Fn(S::Value) -> F,
) where
    S: Strategy,
    S::Value: std::fmt::Debug,
    F: std::future::Future<Output = Result<(), TestCaseError>>,
{
    let mut runner = TestRunner::new(fuzz_config(cases));
    let outcome = runner.run(&strategy, |input| runtime.block_on(check(input)));
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// A JSON error body with a code, as every refusal has.
async fn json_error(response: reqwest::Response) -> Result<String, TestCaseError> {
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|error| TestCaseError::fail(format!("{status}: not JSON: {error}")))?;
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    prop_assert!(!code.is_empty(), "{} {}", status, body);
    Ok(code)
}

// ---- multipart -------------------------------------------------------------------------

/// One part of a generated form.
#[derive(Clone, Debug)]
struct Part {
    name: Option<&'static str>,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

fn part() -> impl Strategy<Value = Part> {
    let name = prop::sample::select(vec![
        Some("file"),
        Some("metadata"),
        Some("other"),
        Some(""),
        None,
    ]);
    let filename = prop::option::of(prop_oneof![
        "[a-z]{1,8}\\.[a-z]{1,3}",
        any::<String>(),
        Just("../../up.txt".to_owned()),
        Just("invoice\u{202E}gnp.exe".to_owned()),
    ]);
    let data = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..3000),
        Just(b"{\"k\": [1, 2]}".to_vec()),
        Just(b"[]".to_vec()),
        "[ -~]{0,40}".prop_map(String::into_bytes),
    ];
    let content_type = prop::option::of(prop_oneof![
        Just("application/octet-stream".to_owned()),
        Just("text/plain; charset=utf-8".to_owned()),
        "[ -~]{0,20}",
    ]);
    (name, filename, content_type, data).prop_map(|(name, filename, content_type, data)| Part {
        name,
        filename,
        content_type,
        data,
    })
}

fn metadata_part() -> impl Strategy<Value = Part> {
    let text = prop_oneof![
        Just("{}".to_owned()),
        "\\{\"[a-z]{1,5}\": ?[1-9][0-9]{0,4}\\}",
        "\\{\"[a-z]{1,5}\": \"[ -~&&[^\"\\\\]]{0,60}\"\\}",
    ];
    text.prop_map(|text| Part {
        name: Some("metadata"),
        filename: None,
        content_type: None,
        data: text.into_bytes(),
    })
}

fn file_part() -> impl Strategy<Value = Part> {
    (
        // Browsers send names as raw UTF-8.
        "[a-zA-Z0-9 ._\u{e9}\u{65e5}\u{202e}-]{1,12}",
        prop::collection::vec(any::<u8>(), 0..MAX_UPLOAD + 50),
    )
        .prop_map(|(filename, data)| Part {
            name: Some("file"),
            filename: Some(filename),
            content_type: Some("application/octet-stream".to_owned()),
            data,
        })
}

/// How a well-formed body is then broken, if at all.
#[derive(Clone, Debug)]
enum Damage {
    None,
    Truncate(prop::sample::Index),
    Insert(prop::sample::Index, Vec<u8>),
    Overwrite(prop::sample::Index, u8),
    Remove(prop::sample::Index, usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => Just(Damage::None),
        1 => any::<prop::sample::Index>().prop_map(Damage::Truncate),
        1 => (any::<prop::sample::Index>(), prop_oneof![
            prop::collection::vec(any::<u8>(), 1..8),
            Just(b"\r\n".to_vec()),
            Just(b"--B".to_vec()),
            Just(b"\r\n\r\n".to_vec()),
        ]).prop_map(|(at, bytes)| Damage::Insert(at, bytes)),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, byte)| Damage::Overwrite(at, byte)),
        1 => (any::<prop::sample::Index>(), 1usize..64).prop_map(|(at, len)| Damage::Remove(at, len)),
    ]
}

/// What a well-formed, undamaged form must come to.
#[derive(Clone, Debug)]
struct Expected {
    filename: Option<String>,
    metadata: Value,
    too_large: bool,
}

/// A multipart request: its Content-Type and body, and what it must come to if it is valid.
#[derive(Clone)]
struct Form {
    content_type: String,
    body: Vec<u8>,
    expected: Option<Expected>,
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Form")
            .field("content_type", &self.content_type)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("expected", &self.expected)
            .finish()
    }
}

/// Limits of the server these forms are sent to.
const MAX_UPLOAD: usize = 2048;
const MAX_METADATA: usize = 64;

fn form() -> impl Strategy<Value = Form> {
    let boundary = prop_oneof![
        4 => Just("B".to_owned()),
        2 => "[a-zA-Z0-9_-]{1,70}",
        // RFC 2046 allows these only quoted in the header.
        1 => "[a-zA-Z0-9'()+_,./:=?-]{1,70}",
        1 => "[ -~]{0,10}",
    ];
    let header_style = prop_oneof![
        6 => Just("plain"),
        2 => Just("quoted"),
        1 => Just("missing"),
        1 => Just("other"),
    ];
    let preamble = prop_oneof![
        4 => Just(Vec::new()),
        1 => "[ -~\r\n]{0,60}".prop_map(String::into_bytes),
    ];
    let parts = prop_oneof![
        // What clients send: metadata, a file, or both, in either order.
        3 => (prop::option::of(metadata_part()), prop::option::of(file_part()), any::<bool>())
            .prop_map(|(metadata, file, file_first)| {
                let mut parts: Vec<Part> = metadata.into_iter().chain(file).collect();
                if file_first {
                    parts.reverse();
                }
                (parts, true)
            }),
        2 => prop::collection::vec(part(), 0..4).prop_map(|parts| (parts, false)),
    ];
    (
        boundary,
        header_style,
        preamble,
        parts,
        prop::bool::weighted(0.9),
        damage(),
    )
        .prop_map(
            |(boundary, style, preamble, (parts, well_formed), closed, damage)| {
                let content_type = match style {
                    "plain" => format!("multipart/form-data; boundary={boundary}"),
                    "quoted" => format!("multipart/form-data; boundary=\"{boundary}\""),
                    "missing" => "multipart/form-data".to_owned(),
                    _ => "multipart/form-data; boundary=not-the-one".to_owned(),
                };
                let delimiter = format!("--{boundary}");
                let token = |c: char| c.is_ascii_alphanumeric() || "_-".contains(c);
                let bchar = |c: char| token(c) || "'()+,./:=?".contains(c);
                let valid_header = match style {
                    "plain" => !boundary.is_empty() && boundary.chars().all(token),
                    "quoted" => !boundary.is_empty() && boundary.chars().all(bchar),
                    _ => false,
                };
                let contains = |haystack: &[u8]| {
                    haystack
                        .windows(delimiter.len())
                        .any(|window| window == delimiter.as_bytes())
                };
                let valid = well_formed
                    && closed
                    && matches!(damage, Damage::None)
                    && valid_header
                    && !contains(&preamble)
                    && !parts.iter().any(|part| contains(&part.data));
                let expected = valid.then(|| {
                    let metadata = parts.iter().find(|part| part.name == Some("metadata"));
                    let file = parts.iter().find(|part| part.name == Some("file"));
                    Expected {
                        filename: file.and_then(|file| file.filename.clone()),
                        metadata: metadata.map_or(serde_json::json!({}), |part| {
                            serde_json::from_slice(&part.data).unwrap()
                        }),
                        too_large: metadata.is_some_and(|part| part.data.len() > MAX_METADATA)
                            || file.is_some_and(|part| part.data.len() > MAX_UPLOAD),
                    }
                });
                let mut body = preamble;
                for part in &parts {
                    body.extend(format!("{delimiter}\r\nContent-Disposition: form-data").bytes());
                    if let Some(name) = part.name {
                        body.extend(format!("; name=\"{name}\"").bytes());
                    }
                    if let Some(filename) = &part.filename {
                        body.extend(format!("; filename=\"{filename}\"").bytes());
                    }
                    body.extend(b"\r\n");
                    if let Some(content_type) = &part.content_type {
                        body.extend(format!("Content-Type: {content_type}\r\n").bytes());
                    }
                    body.extend(b"\r\n");
                    body.extend(&part.data);
                    body.extend(b"\r\n");
                }
                if closed {
                    body.extend(format!("{delimiter}--\r\n").bytes());
                }
                match damage {
                    Damage::None => {}
                    Damage::Truncate(at) => body.truncate(at.index(body.len() + 1)),
                    Damage::Insert(at, bytes) => {
                        let at = at.index(body.len() + 1);
                        body.splice(at..at, bytes);
                    }
                    Damage::Overwrite(at, byte) if !body.is_empty() => {
                        let at = at.index(body.len());
                        body[at] = byte;
                    }
                    Damage::Overwrite(..) => {}
                    Damage::Remove(at, len) => {
                        let at = at.index(body.len() + 1);
                        body.drain(at..(at + len).min(body.len()));
                    }
                }
                Form {
                    content_type,
                    body,
                    expected,
                }
            },
        )
}

/// The newest jobs, newest first, down to (not including) `since`.
async fn jobs_since(app: &TestApp, since: Option<JobId>) -> Vec<ingest::domain::JobStatus> {
    let newest = app
        .state
        .jobs
        .list(&ListFilter::every_job(None), None, 10)
        .await
        .unwrap();
    newest
        .into_iter()
        .take_while(|job| Some(job.job_id) != since)
        .collect()
}

#[test]
fn fuzz_multipart_bodies_get_a_2xx_or_a_json_4xx_and_leave_nothing_half_done() {
    let runtime = runtime();
    let app = runtime.block_on(spawn_app_with(|settings| {
        settings.run_worker = false;
        settings.max_upload_bytes = MAX_UPLOAD as u64;
        settings.max_metadata_bytes = MAX_METADATA;
    }));
    let app = &app;
    run_async(&runtime, 48, form(), |form: Form| async move {
        let before = app
            .state
            .jobs
            .list(&ListFilter::every_job(None), None, 1)
            .await
            .unwrap();
        let since = before.first().map(|job| job.job_id);
        let response = app
            .client
            .post(app.url("/api/ingest"))
            .bearer_auth(TOKEN)
            .header("content-type", form.content_type.as_bytes())
            .body(form.body.clone())
            .send()
            .await
            .map_err(|error| TestCaseError::fail(format!("no answer: {error}")))?;
        let status = response.status().as_u16();
        let new_jobs = jobs_since(app, since).await;
        if let Some(expected) = &form.expected {
            let wanted = if expected.too_large { 413 } else { 202 };
            prop_assert_eq!(status, wanted, "a valid form");
            if let (202, [job]) = (status, new_jobs.as_slice()) {
                let filename = expected.filename.as_deref().and_then(UploadName::sanitize);
                prop_assert_eq!(
                    job.filename.as_deref(),
                    filename.as_ref().map(UploadName::as_str)
                );
                prop_assert_eq!(&job.metadata, &expected.metadata);
            }
        }
        match status {
            202 => {
                let body: Value = response.json().await.unwrap();
                prop_assert_eq!(new_jobs.len(), 1);
                let job = &new_jobs[0];
                let id = job.job_id.to_string();
                prop_assert_eq!(body["job_id"].as_str(), Some(id.as_str()));
                prop_assert_eq!(job.status, JobState::Queued);
                if let Some(name) = &job.filename {
                    let again = UploadName::sanitize(name).map(UploadName::into_string);
                    prop_assert_eq!(again.as_deref(), Some(name.as_str()));
                }
            }
            400 | 413 | 415 => {
                let code = json_error(response).await?;
                let documented = [
                    "invalid_multipart",
                    "invalid_metadata",
                    "upload_interrupted",
                    "payload_too_large",
                    "unsupported_media_type",
                ];
                prop_assert!(documented.contains(&code.as_str()), "{} {}", status, code);
                // A job exists only if a file part had started, and then it has failed.
                prop_assert!(
                    new_jobs.len() <= 1,
                    "{} jobs after {}",
                    new_jobs.len(),
                    code
                );
                for job in &new_jobs {
                    prop_assert_eq!(job.status, JobState::Failed, "{}", code);
                }
            }
            other => prop_assert!(false, "status {other}: {}", response.text().await.unwrap()),
        }
        prop_assert!(app.temp_files().is_empty(), "a temp file is left");
        Ok(())
    });
}

// ---- Range -----------------------------------------------------------------------------

fn range_header() -> impl Strategy<Value = String> {
    prop_oneof![
        "bytes=[0-9]{0,3}-[0-9]{0,3}",
        "bytes=([0-9]{0,3}-[0-9]{0,3}, ?){1,3}",
        "[bB][yY][tT][eE][sS] ?= ?-?[0-9]{0,25}-?[0-9]{0,3}",
        "[a-z]{1,6}=[ -~]{0,12}",
        "[ -~]{0,30}",
    ]
}

#[test]
fn fuzz_range_headers_get_200_206_or_a_json_416_with_the_right_bytes() {
    let runtime = runtime();
    let (app, files) = runtime.block_on(async {
        let app = spawn_app().await;
        let mut files = Vec::new();
        for bytes in [random_bytes(200), Vec::new()] {
            let id = accepted_id(app.ingest_file("r.bin", bytes.clone(), "{}").await).await;
            app.wait_until_finished(id).await;
            files.push((id, bytes));
        }
        (app, files)
    });
    let (app, files) = (&app, &files);
    let strategy = (
        range_header(),
        prop::option::of("\"[a-z0-9]{0,8}\""),
        0..files.len(),
    );
    run_async(
        &runtime,
        96,
        strategy,
        |(range, if_range, which)| async move {
            let (id, bytes) = &files[which];
            let mut request = app
                .client
                .get(app.url(&format!("/api/jobs/{id}/content")))
                .bearer_auth(TOKEN)
                .header("range", &range);
            if let Some(tag) = &if_range {
                request = request.header("if-range", tag);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_range = response
                .headers()
                .get("content-range")
                .map(|value| value.to_str().unwrap().to_owned());
            let length = bytes.len();
            match status {
                200 => {
                    prop_assert_eq!(content_range, None);
                    prop_assert_eq!(&response.bytes().await.unwrap()[..], &bytes[..]);
                }
                206 => {
                    prop_assert!(if_range.is_none(), "a 206 despite If-Range {:?}", if_range);
                    let content_range = content_range.unwrap();
                    let (span, total) = content_range
                        .strip_prefix("bytes ")
                        .and_then(|rest| rest.split_once('/'))
                        .unwrap();
                    prop_assert_eq!(total.parse::<usize>().unwrap(), length);
                    let (first, last) = span.split_once('-').unwrap();
                    let (first, last): (usize, usize) =
                        (first.parse().unwrap(), last.parse().unwrap());
                    prop_assert!(first <= last && last < length);
                    prop_assert_eq!(&response.bytes().await.unwrap()[..], &bytes[first..=last]);
                }
                416 => {
                    let expected = format!("bytes */{length}");
                    prop_assert_eq!(content_range.as_deref(), Some(expected.as_str()));
                    prop_assert_eq!(json_error(response).await?, "range_not_satisfiable");
                }
                other => prop_assert!(false, "status {other} for {range:?}"),
            }
            Ok(())
        },
    );
}

// ---- tus creation ------------------------------------------------------------------------

fn tus_headers() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let value = |known: Vec<&'static str>| {
        prop_oneof![
            prop::sample::select(known).prop_map(str::to_owned),
            "[0-9]{0,22}",
            "[ -~]{0,24}",
        ]
    };
    let metadata = prop_oneof![
        Just("filename YS50eHQ=,metadata eyJrIjoxfQ==".to_owned()),
        "([a-z]{1,8}( [A-Za-z0-9+/=]{0,12})?,?){0,4}",
        "[ -~]{0,40}",
    ];
    (
        prop::option::of(value(vec!["1.0.0", "0.2.2"])),
        prop::option::of(value(vec!["0", "10", "2048", "2049"])),
        prop::option::of(value(vec!["1"])),
        prop::option::of(metadata),
    )
        .prop_map(|(version, length, defer, metadata)| {
            [
                ("tus-resumable", version),
                ("upload-length", length),
                ("upload-defer-length", defer),
                ("upload-metadata", metadata),
            ]
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .collect()
        })
}

#[test]
fn fuzz_tus_creation_headers_get_a_201_or_a_json_4xx() {
    let runtime = runtime();
    let app = runtime.block_on(spawn_app_with(|settings| {
        settings.run_worker = false;
        settings.max_upload_bytes = 2048;
        settings.max_metadata_bytes = 64;
        settings.max_pending_uploads = 1_000_000;
    }));
    let app = &app;
    run_async(&runtime, 64, tus_headers(), |headers| async move {
        let mut request = app.client.post(app.url("/api/uploads")).bearer_auth(TOKEN);
        for (name, value) in &headers {
            request = request.header(*name, value.as_str());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        match status {
            201 => prop_assert!(response.headers().contains_key("location")),
            400 | 412 | 413 => {
                json_error(response).await?;
            }
            other => prop_assert!(false, "status {other} for {headers:?}"),
        }
        Ok(())
    });
}

// ---- settings ----------------------------------------------------------------------------

/// Every key of the `[server]` table.
const SETTINGS_KEYS: &[&str] = &[
    "site_addr",
    "site_root",
    "data_dir",
    "token_file",
    "max_upload_bytes",
    "max_metadata_bytes",
    "workers",
    "processing_delay_ms",
    "log_format",
    "rate_limit_per_second",
    "rate_limit_burst",
    "request_timeout_secs",
    "upload_idle_timeout_secs",
    "upload_expiry_secs",
    "max_concurrent_uploads",
    "retention_days",
    "retention_sweep_secs",
    "session_ttl_secs",
    "shutdown_grace_secs",
    "min_free_disk_bytes",
    "max_connections",
    "max_connections_per_address",
    "header_read_timeout_secs",
    "idle_timeout_secs",
    "max_websockets",
    "max_pending_uploads",
    "sign_in_failures_per_minute",
    "trusted_proxies",
    "public_url",
    "tls_cert",
    "tls_key",
];

fn toml_value() -> impl Strategy<Value = toml::Value> {
    let integer = prop_oneof![
        Just(0i64),
        Just(1),
        Just(-1),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(1 << 50),
        Just((1 << 50) + 1),
        Just(16 << 20),
        Just(86_400),
        Just(36_501),
        any::<i64>(),
        0i64..100_000,
    ];
    let text = prop_oneof![
        Just("127.0.0.1:0".to_owned()),
        Just("json".to_owned()),
        Just("https://ingest.example.com".to_owned()),
        Just("http://[::1]:99999".to_owned()),
        Just("10.0.0.0/8".to_owned()),
        any::<String>(),
        "[a-z:/.0-9\\[\\]]{0,30}",
    ];
    prop_oneof![
        4 => integer.prop_map(toml::Value::Integer),
        3 => text.clone().prop_map(toml::Value::String),
        1 => any::<f64>().prop_map(toml::Value::Float),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
        1 => prop::collection::vec(text, 0..3)
            .prop_map(|items| toml::Value::Array(items.into_iter().map(toml::Value::String).collect())),
    ]
}

/// A settings file: known keys (and an unknown one now and then) with any values, or text.
fn settings_file() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        20 => prop::sample::select(SETTINGS_KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
    ];
    prop_oneof![
        8 => prop::collection::btree_map(key, toml_value(), 0..6).prop_map(|table| {
            let server: toml::Table = table.into_iter().collect();
            let mut file = toml::Table::new();
            file.insert("server".to_owned(), toml::Value::Table(server));
            toml::to_string(&file).unwrap()
        }),
        1 => "(\\[server\\]\n)?([a-z_]{1,24} ?= ?[ -~]{0,24}\n){0,4}",
        1 => any::<String>(),
    ]
}

#[derive(Debug)]
struct Flags {
    max_upload_bytes: Option<u64>,
    max_metadata_bytes: Option<usize>,
    workers: Option<usize>,
    session_ttl_secs: Option<u64>,
    retention_days: Option<u64>,
    rate_limit_per_second: Option<u64>,
    trusted_proxies: Option<Vec<String>>,
    public_url: Option<String>,
}

fn flags() -> impl Strategy<Value = Flags> {
    let number = || prop::option::weighted(0.2, prop_oneof![any::<u64>(), 0u64..100_000]);
    (
        number(),
        number(),
        number(),
        number(),
        number(),
        number(),
        prop::option::weighted(0.2, prop::collection::vec(any::<String>(), 0..3)),
        prop::option::weighted(0.2, any::<String>()),
    )
        .prop_map(
            |(upload, metadata, workers, ttl, days, rate, proxies, url)| Flags {
                max_upload_bytes: upload,
                max_metadata_bytes: metadata.map(|n| n as usize),
                workers: workers.map(|n| n as usize),
                session_ttl_secs: ttl,
                retention_days: days,
                rate_limit_per_second: rate,
                trusted_proxies: proxies,
                public_url: url,
            },
        )
}

#[test]
fn fuzz_settings_resolve_within_their_bounds_or_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Leptos.toml");
    let strategy = (settings_file(), flags(), prop::option::of(any::<String>()));
    let mut runner = TestRunner::new(fuzz_config(256));
    let outcome = runner.run(&strategy, |(file, flags, token)| {
        std::fs::write(&path, &file).unwrap();
        let args = SettingsArgs {
            config: path.clone(),
            max_upload_bytes: flags.max_upload_bytes,
            max_metadata_bytes: flags.max_metadata_bytes,
            workers: flags.workers,
            session_ttl_secs: flags.session_ttl_secs,
            retention_days: flags.retention_days,
            rate_limit_per_second: flags.rate_limit_per_second,
            trusted_proxies: flags.trusted_proxies,
            public_url: flags.public_url,
            ..SettingsArgs::default()
        };
        match Settings::resolve(args, token) {
            Ok(settings) => {
                prop_assert!((1..=1 << 50).contains(&settings.max_upload_bytes));
                prop_assert!((2..=16 << 20).contains(&settings.max_metadata_bytes));
                prop_assert!((1..=256).contains(&settings.workers));
                prop_assert!(!settings.request_timeout.is_zero());
                prop_assert!(!settings.upload_idle_timeout.is_zero());
                prop_assert!(settings.session_ttl.as_secs() <= 365 * 86_400);
                prop_assert!(settings.rate_limit_per_second <= 1_000_000);
                prop_assert!(settings.max_connections >= 1);
            }
            Err(
                ConfigError::ReadFile { .. }
                | ConfigError::ParseFile { .. }
                | ConfigError::TokenFile { .. }
                | ConfigError::Token(_)
                | ConfigError::Invalid { .. },
            ) => {}
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
