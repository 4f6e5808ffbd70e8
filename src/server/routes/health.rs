//! Health for load balancers and orchestrators: `/healthz` (the process answers) and `/readyz`
//! (the database answers, the data dir takes writes, free disk is above the floor). Neither
//! needs the token, and neither reveals more than pass or fail.
use crate::{
    api::{Check, DiskCheck, Readiness, ReadinessChecks},
    server::startup::AppState,
};
use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};
use std::{io::Write, path::Path};

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers, the data dir takes writes and free disk is above the floor.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready; the failing checks say why", body = Readiness),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let database = check(state.jobs.store().ping().await);
    let tmp = state.jobs.blobs().tmp_dir().to_owned();
    let data_dir = check(
        tokio::task::spawn_blocking(move || probe_write(&tmp))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|written| written.map_err(anyhow::Error::from)),
    );
    let floor_bytes = state.settings.min_free_disk_bytes;
    let disk = match fs4::available_space(&state.settings.data_dir) {
        Ok(free) => DiskCheck {
            ok: free >= floor_bytes,
            free_bytes: Some(free),
            floor_bytes,
            error: (free < floor_bytes).then(|| "free disk space is below the floor".to_owned()),
        },
        Err(error) => DiskCheck {
            ok: false,
            free_bytes: None,
            floor_bytes,
            error: Some(format!("cannot read free disk space: {error}")),
        },
    };
    let ready = database.ok && data_dir.ok && disk.ok;
    let report = Readiness {
        status: if ready { "ready" } else { "unready" }.to_owned(),
        checks: ReadinessChecks {
            database,
            data_dir,
            disk,
        },
    };
    if !ready {
        tracing::warn!(?report, "not ready");
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}

fn check(outcome: anyhow::Result<()>) -> Check {
    match outcome {
        Ok(()) => Check {
            ok: true,
            error: None,
        },
        Err(error) => Check {
            ok: false,
            error: Some(format!("{error:#}")),
        },
    }
}

/// Creates, writes and removes a small file where uploads land.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(format!(".readyz-{}", uuid::Uuid::new_v4()));
    let written = std::fs::File::create_new(&path).and_then(|mut file| file.write_all(b"ok"));
    let removed = std::fs::remove_file(&path);
    written.and(removed)
}
