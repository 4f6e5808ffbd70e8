//! This node's leases: its random id, the lease it claims jobs and holds one-shot uploads
//! under, the renewal that extends all of them in one store write, the stop signal of a job
//! whose lease was lost, and claims on periodic work, so each task runs once per cluster.
use super::store::{JobStore, Lease, NodeId};
use crate::domain::JobId;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;

/// Jobs this node is processing, each with its hold's number (so a hold only ever removes its
/// own entry) and the token that stops its worker.
type HeldJobs = Arc<Mutex<HashMap<JobId, (u64, CancellationToken)>>>;

pub struct Leases {
    store: Arc<dyn JobStore>,
    lease: Lease,
    held: HeldJobs,
    holds: AtomicU64,
    /// When the last renewal that succeeded began: every lease lasts at least `lease`
    /// beyond it.
    renewed: Mutex<Instant>,
}

impl Leases {
    /// A new node (a fresh random id) whose leases last `duration`.
    pub fn new(store: Arc<dyn JobStore>, duration: Duration) -> Self {
        Self {
            store,
            lease: Lease {
                node: NodeId::random(),
                duration,
            },
            held: HeldJobs::default(),
            holds: AtomicU64::new(0),
            renewed: Mutex::new(Instant::now()),
        }
    }

    /// The lease this node takes jobs under.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    pub fn node(&self) -> &NodeId {
        &self.lease.node
    }

    /// How often leases are renewed: a third of their length, so two renewals in a row may
    /// fail before any lease runs out.
    pub fn renew_every(&self) -> Duration {
        self.lease.duration / 3
    }

    /// Registers a job just claimed under this node's lease; the returned hold's `lost`
    /// fires if a renewal finds the job no longer this node's. It ends when dropped.
    pub fn hold(&self, id: JobId) -> HeldLease {
        let lost = CancellationToken::new();
        let number = self.holds.fetch_add(1, Ordering::Relaxed);
        self.held
            .lock()
            .expect("leases lock poisoned")
            .insert(id, (number, lost.clone()));
        HeldLease {
            id,
            number,
            node: self.lease.node.clone(),
            lost,
            held: self.held.clone(),
        }
    }

    /// Renews every lease of this node in one store write; the jobs it turns out no longer to
    /// hold (a stall let their lease run out and another node took them) are told to stop.
    /// When renewals have failed for two thirds of a lease, every job is told to stop: its
    /// lease may run out before the next attempt, and another node may take it over.
    pub async fn renew(&self) -> anyhow::Result<()> {
        let began = Instant::now();
        // Only jobs held before the renewal began: one claimed meanwhile may be missing from
        // its answer without being lost.
        let before: Vec<(JobId, CancellationToken)> = self
            .held
            .lock()
            .expect("leases lock poisoned")
            .iter()
            .map(|(id, (_, lost))| (*id, lost.clone()))
            .collect();
        match self.store.renew_leases(&self.lease).await {
            Ok(still) => {
                *self.renewed.lock().expect("leases lock poisoned") = began;
                let still: HashSet<JobId> = still.into_iter().collect();
                for (id, lost) in before {
                    if !still.contains(&id) && !lost.is_cancelled() {
                        tracing::warn!(job_id = %id, "lease lost: the job finished elsewhere or another node has it");
                        lost.cancel();
                    }
                }
                Ok(())
            }
            Err(error) => {
                let since = self.renewed.lock().expect("leases lock poisoned").elapsed();
                if since >= self.lease.duration - self.renew_every() {
                    for (id, lost) in before {
                        if !lost.is_cancelled() {
                            tracing::warn!(job_id = %id, "leases not renewed in time: stopping the job");
                            lost.cancel();
                        }
                    }
                }
                Err(error)
            }
        }
    }

    /// Claims periodic task `task` for one run: true if this node runs it now. A claim lasts
    /// `every`, so the task runs at most once per `every` across the cluster; the node that
    /// ran it last may claim it again at once (its own timer may tick a little early).
    pub async fn claim_periodic(&self, task: &str, every: Duration) -> anyhow::Result<bool> {
        let claim = Lease {
            node: self.lease.node.clone(),
            duration: every,
        };
        self.store.claim_periodic(task, &claim).await
    }
}

/// A processing job's hold on its lease; ends when dropped.
pub struct HeldLease {
    id: JobId,
    number: u64,
    node: NodeId,
    lost: CancellationToken,
    held: HeldJobs,
}

impl HeldLease {
    /// Fires if the lease was lost: the job must stop without writing anything.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// The node holding it: what every write of the job is conditioned on.
    pub fn node(&self) -> &NodeId {
        &self.node
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        let mut held = self.held.lock().expect("leases lock poisoned");
        // A later hold of the same job (claimed again) keeps its own entry.
        if held
            .get(&self.id)
            .is_some_and(|(number, _)| *number == self.number)
        {
            held.remove(&self.id);
        }
    }
}
