//! The HTTP ceiling for `scripts/bench`: a bare axum handler that parses the same JSON body as
//! a metadata-only `POST /api/ingest` and answers 202 with a new UUIDv7 and a body of the same
//! shape, storing nothing. Ingest's durable ingest rate is reported as a ratio to this one,
//! measured with the same `wrk` settings in the same run.
//! Usage: `cargo run --release --features ssr --example http_ceiling -- 127.0.0.1:3198`
use axum::{http::StatusCode, routing::post, Json, Router};
use ingest::{
    api::IngestAccepted,
    domain::{JobId, JobState},
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    metadata: Option<Value>,
}

async fn ingest(Json(body): Json<Body>) -> (StatusCode, Json<IngestAccepted>) {
    // Parse the metadata text as Ingest does, so the ceiling does the same JSON work.
    if let Some(Value::String(text)) = &body.metadata {
        let _: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    }
    let job_id = JobId::new();
    let accepted = IngestAccepted {
        job_id,
        status: JobState::Queued,
        status_url: format!("/api/status/{job_id}"),
        ws_url: format!("/ws/status/{job_id}"),
    };
    (StatusCode::ACCEPTED, Json(accepted))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3198".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let app = Router::new().route("/api/ingest", post(ingest));
    axum::serve(listener, app).await?;
    Ok(())
}
