//! Readiness: whether the database takes durable writes, the blob store answers, the upload
//! directory takes files, and free disk is above the floor, and the API keys are fresh (a server that cannot see
//! revocations refuses keys, and says so here). Checked at most once a second whatever the request rate, so
//! `/readyz` is cheap to call and cannot be used to load the disk; logged only when it changes.
use super::{jobs::Jobs, keys::KeyRing, uploads::Uploads};
use crate::api::{Check, Readiness, ReadinessChecks};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::Mutex;

/// How long one set of checks answers every caller.
const FRESH_FOR: Duration = Duration::from_secs(1);

pub struct ReadinessProbe {
    jobs: Arc<Jobs>,
    uploads: Arc<Uploads>,
    keys: Arc<KeyRing>,
    /// The last result and when it was taken; the lock also makes concurrent callers wait for
    /// one run of the checks instead of each running them.
    last: Mutex<Option<(Instant, Readiness)>>,
}

impl ReadinessProbe {
    pub fn new(jobs: Arc<Jobs>, uploads: Arc<Uploads>, keys: Arc<KeyRing>) -> Self {
        Self {
            jobs,
            uploads,
            keys,
            last: Mutex::new(None),
        }
    }

    /// The current readiness, from a check made within the last second.
    pub async fn check(&self) -> Readiness {
        let mut last = self.last.lock().await;
        if let Some((at, readiness)) = last.as_ref() {
            if at.elapsed() < FRESH_FOR {
                return readiness.clone();
            }
        }
        let readiness = self.run_checks().await;
        let was_ready = last.as_ref().is_none_or(|(_, before)| is_ready(before));
        if was_ready != is_ready(&readiness) {
            if is_ready(&readiness) {
                tracing::info!("ready again");
            } else {
                tracing::warn!(checks = ?readiness.checks, "not ready");
            }
        }
        *last = Some((Instant::now(), readiness.clone()));
        readiness
    }

    async fn run_checks(&self) -> Readiness {
        let database = match self.jobs.probe_database().await {
            Ok(()) => passed(),
            Err(error) => {
                tracing::debug!(error = ?error, "database write probe failed");
                failed("the database does not take writes")
            }
        };
        let blob_store = match self.jobs.probe_blobs().await {
            Ok(()) => passed(),
            Err(error) => {
                tracing::debug!(error = %error, "blob store probe failed");
                failed("the blob store does not answer")
            }
        };
        let storage = self.uploads.check_storage().await;
        let as_check = |result: Result<(), String>| match result {
            Ok(()) => passed(),
            Err(reason) => failed(&reason),
        };
        let data_dir = as_check(storage.writable);
        let disk = as_check(storage.free);
        let keys = if self.keys.is_fresh() {
            passed()
        } else {
            failed(&format!(
                "the API keys have not been refreshed for {} s, so revocations may be missed; \
                 API keys are refused until the database can be read",
                self.keys.since_refresh().as_secs()
            ))
        };
        let ready = database.ok && blob_store.ok && data_dir.ok && disk.ok && keys.ok;
        Readiness {
            status: if ready { "ready" } else { "unready" }.to_owned(),
            checks: ReadinessChecks {
                database,
                blob_store,
                data_dir,
                disk,
                keys,
            },
        }
    }
}

pub fn is_ready(readiness: &Readiness) -> bool {
    readiness.status == "ready"
}

fn passed() -> Check {
    Check {
        ok: true,
        error: None,
    }
}

fn failed(reason: &str) -> Check {
    Check {
        ok: false,
        error: Some(reason.to_owned()),
    }
}
