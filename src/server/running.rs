//! Cancelling a job wherever it runs. Whoever runs a job (a request receiving its bytes, the
//! worker processing it) registers here and watches the token it gets; a cancel fires it. The
//! `Cancellations` trait is the seam a cluster fills (a cancel on one node must reach the node
//! that runs the job); `LocalCancellations` is the one-process implementation.
use crate::domain::JobId;
use async_trait::async_trait;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};
use tokio_util::sync::CancellationToken;

/// "Cancel job X wherever it is running".
#[async_trait]
pub trait Cancellations: Send + Sync + 'static {
    /// Registers a new runner of `id` on this node (an earlier runner's registration, if any is
    /// left, no longer hears cancels). The registration ends when dropped.
    fn register(&self, id: JobId) -> Registration;
    /// Joins the runner of `id` registered already (both see the same token; this one ends
    /// nothing when dropped), or registers one if there is none.
    fn join(&self, id: JobId) -> Registration;
    /// Fires the token of whoever runs `id`, on any node; nothing if nobody runs it.
    async fn cancel(&self, id: JobId) -> anyhow::Result<()>;
}

/// A runner's hold on a job: `cancelled()` fires if the job is cancelled while it is held.
pub struct Registration {
    token: CancellationToken,
    /// Unregisters when dropped (if this registration made the entry).
    _release: Option<Box<dyn Send + Sync>>,
}

impl Registration {
    pub fn cancelled(&self) -> &CancellationToken {
        &self.token
    }
}

/// Runners of this process, by job.
#[derive(Default)]
pub struct LocalCancellations {
    running: Arc<Mutex<HashMap<JobId, Entry>>>,
    /// Tells registrations apart, so a runner only ever removes its own.
    registrations: AtomicU64,
}

struct Entry {
    registration: u64,
    token: CancellationToken,
}

struct Release {
    running: Arc<Mutex<HashMap<JobId, Entry>>>,
    id: JobId,
    registration: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        let mut running = self.running.lock().expect("running lock");
        if running
            .get(&self.id)
            .is_some_and(|entry| entry.registration == self.registration)
        {
            running.remove(&self.id);
        }
    }
}

#[async_trait]
impl Cancellations for LocalCancellations {
    fn register(&self, id: JobId) -> Registration {
        let mut running = self.running.lock().expect("running lock");
        self.insert(&mut running, id)
    }

    fn join(&self, id: JobId) -> Registration {
        let mut running = self.running.lock().expect("running lock");
        match running.get(&id) {
            Some(existing) => Registration {
                token: existing.token.clone(),
                _release: None,
            },
            None => self.insert(&mut running, id),
        }
    }

    async fn cancel(&self, id: JobId) -> anyhow::Result<()> {
        if let Some(entry) = self.running.lock().expect("running lock").remove(&id) {
            entry.token.cancel();
        }
        Ok(())
    }
}

impl LocalCancellations {
    /// The jobs a runner of this process holds now.
    pub fn running_ids(&self) -> Vec<JobId> {
        let running = self.running.lock().expect("running lock");
        running.keys().copied().collect()
    }

    fn insert(&self, running: &mut HashMap<JobId, Entry>, id: JobId) -> Registration {
        let registration = self.registrations.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        running.insert(
            id,
            Entry {
                registration,
                token: token.clone(),
            },
        );
        Registration {
            token,
            _release: Some(Box::new(Release {
                running: self.running.clone(),
                id,
                registration,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_reaches_every_runner_of_the_job_and_ends_the_entry() {
        let local = LocalCancellations::default();
        let id = JobId::new();
        let first = local.register(id);
        let joined = local.join(id);
        local.cancel(id).await.unwrap();
        assert!(first.cancelled().is_cancelled());
        assert!(joined.cancelled().is_cancelled());
        // A later runner starts afresh.
        assert!(!local.register(id).cancelled().is_cancelled());
    }

    #[tokio::test]
    async fn a_dropped_registration_removes_only_its_own_entry() {
        let local = LocalCancellations::default();
        let id = JobId::new();
        let first = local.register(id);
        local.cancel(id).await.unwrap();
        let second = local.register(id);
        drop(first);
        local.cancel(id).await.unwrap();
        assert!(second.cancelled().is_cancelled());
    }
}
