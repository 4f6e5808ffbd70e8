//! Prometheus metrics through the `metrics` facade: the one recorder, every metric name, the
//! functions that record them (the HTTP latency middleware among them) and the rendering of a
//! scrape. A leaf: the `/metrics` route lives with the other operations routes.
use crate::domain::{JobState, JobStatus};
use axum::{
    extract::{MatchedPath, Request},
    http::{Method, StatusCode},
    middleware::Next,
    response::Response,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::{sync::OnceLock, time::Instant};

pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const JOBS: &str = "ingest_jobs";
pub const JOBS_CREATED: &str = "ingest_jobs_created_total";
pub const JOBS_FINISHED: &str = "ingest_jobs_finished_total";
pub const BYTES_INGESTED: &str = "ingest_bytes_ingested_total";
pub const UPLOAD_DURATION: &str = "ingest_upload_duration_seconds";
pub const UPLOAD_SIZE: &str = "ingest_upload_size_bytes";
pub const QUEUE_DEPTH: &str = "ingest_queue_depth";
pub const QUEUE_WAIT: &str = "ingest_queue_wait_seconds";
pub const WEBSOCKETS_OPEN: &str = "ingest_websockets_open";

const SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
const BYTES: &[f64] = &[
    1024.0,
    16384.0,
    262144.0,
    1048576.0,
    16777216.0,
    134217728.0,
    1073741824.0,
    8589934592.0,
];

/// The process-wide recorder (the `metrics` facade has one), installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES));
        match builder {
            Ok(builder) => builder.install_recorder().unwrap_or_else(|error| {
                tracing::error!(%error, "metrics recorder not installed; /metrics stays empty");
                PrometheusBuilder::new().build_recorder().handle()
            }),
            Err(error) => {
                tracing::error!(%error, "invalid metric buckets");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    })
}

/// Records every request's latency by method, route template and status. Every label comes
/// from a small fixed set, whatever the client sends: a label per made-up method or raw path
/// would be a new series (memory, scrape size) per request.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        HTTP_DURATION,
        "method" => method,
        "route" => route,
        "status" => status_label(response.status()),
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// The standard methods by name; anything else is `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The status code the server chose (100–599, so bounded already).
fn status_label(status: StatusCode) -> String {
    status.as_u16().to_string()
}

/// A job was created (`file` or `metadata`).
pub fn job_created(kind: &'static str) {
    metrics::counter!(JOBS_CREATED, "kind" => kind).increment(1);
}

/// A job reached a final state.
pub fn job_finished(job: &JobStatus) {
    metrics::counter!(JOBS_FINISHED, "state" => job.status.as_str()).increment(1);
}

/// A file was received and stored.
pub fn upload_stored(job: &JobStatus, size: u64) {
    metrics::counter!(BYTES_INGESTED).increment(size);
    metrics::histogram!(UPLOAD_SIZE).record(size as f64);
    let took = time::OffsetDateTime::now_utc() - job.created_at;
    metrics::histogram!(UPLOAD_DURATION).record(took.as_seconds_f64().max(0.0));
}

/// A queued job was claimed after waiting `waited` seconds.
pub fn job_claimed(waited: f64) {
    metrics::histogram!(QUEUE_WAIT).record(waited.max(0.0));
}

/// How many jobs are in `state` now (read at scrape time: gauges describe the present).
pub fn jobs_in_state(state: JobState, count: u64) {
    metrics::gauge!(JOBS, "state" => state.as_str()).set(count as f64);
    if state == JobState::Queued {
        metrics::gauge!(QUEUE_DEPTH).set(count as f64);
    }
}

/// How many WebSockets are open now.
pub fn open_websockets(count: usize) {
    metrics::gauge!(WEBSOCKETS_OPEN).set(count as f64);
}

/// Everything recorded so far, in the Prometheus text format.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}
