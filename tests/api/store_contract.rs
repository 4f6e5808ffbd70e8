//! The store contract: the same scenarios against `SqliteStore` (a temp dir) and `PgStore` (a
//! fresh database on a real PostgreSQL), through the `JobStore`, `SessionStore` and
//! `AccountStore` traits only, so both keep every promise the traits' documentation makes.
//! Where a promise is about concurrent writers (admissions, claims), PostgreSQL gets two
//! stores over one database, as two nodes of a cluster would have.
use crate::postgres::TestDatabase;
use ingest::{
    api::{QuotaOverrides, Usage},
    domain::{
        AccountId, AccountName, JobId, JobState, JobStatus, KeyId, Owner, Role, Scope, Sha256Digest,
    },
    server::store::{
        now, AccountRecord, AccountStore, Admission, Admitted, JobStore, KeyRecord, Lease,
        ListFilter, NodeId, PgStore, Recovery, Resumable, SessionStore, SqliteStore, StagedPart,
        StagedParts, StagedState, StoredSession, CANCELLED_BY_REQUEST, INTERRUPTED_BY_NODE_LOSS,
        INTERRUPTED_BY_RESTART,
    },
};
use std::{collections::HashSet, sync::Arc};
use time::{Duration, OffsetDateTime};

/// All three stores in one, as both implementations are.
trait Store: JobStore + SessionStore + AccountStore {}
impl<S: JobStore + SessionStore + AccountStore> Store for S {}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Stores open over one fresh database, and what keeps that database alive.
struct Opened {
    nodes: Vec<Arc<dyn Store>>,
    _database: Database,
}

enum Database {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] Box<TestDatabase>),
}

impl Backend {
    /// `nodes` stores over one fresh database (SQLite: one file, as the server and the CLI
    /// share it).
    async fn open(self, nodes: usize) -> Opened {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let mut stores: Vec<Arc<dyn Store>> = Vec::new();
                for _ in 0..nodes {
                    let store = SqliteStore::open(&dir.path().join("ingest.db")).await;
                    stores.push(Arc::new(store.unwrap()));
                }
                Opened {
                    nodes: stores,
                    _database: Database::Sqlite(dir),
                }
            }
            Backend::Postgres => {
                let database = TestDatabase::create().await;
                let mut stores: Vec<Arc<dyn Store>> = Vec::new();
                for _ in 0..nodes {
                    stores.push(Arc::new(PgStore::open(&database.url).await.unwrap()));
                }
                Opened {
                    nodes: stores,
                    _database: Database::Postgres(Box::new(database)),
                }
            }
        }
    }

    /// One store over a fresh database.
    async fn store(self) -> (Arc<dyn Store>, Opened) {
        let opened = self.open(1).await;
        (opened.nodes[0].clone(), opened)
    }
}

/// Each scenario runs as `sqlite::<name>` and `postgres::<name>`.
macro_rules! contract {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Backend::Postgres).await
                }
            )*
        }
    };
}

contract!(
    jobs_read_back_exactly_as_written,
    lists_are_newest_first_within_scope_owner_and_state,
    a_before_cursor_the_scope_does_not_see_yields_an_empty_page,
    save_replaces_an_unfinished_job_and_never_revives_a_finished_one,
    cancel_finishes_an_unfinished_job_once,
    delete_removes_a_job_and_its_upload_record,
    admit_refuses_over_the_upload_quota_and_records_nothing,
    admit_refuses_over_the_stored_bytes_quota_and_counts_exactly,
    admit_caps_a_credentials_unfinished_resumable_uploads,
    concurrent_admissions_cannot_pass_a_quota_together,
    save_received_records_the_offset_only_while_receiving,
    claim_takes_the_oldest_queued_jobs_first,
    held_saves_sent_at_once_each_get_their_own_answer,
    concurrent_claimers_never_take_the_same_job,
    recover_interrupted_ends_only_earlier_processes_jobs_and_only_on_sqlite,
    a_claimed_job_is_claimable_again_only_once_its_lease_runs_out,
    renew_extends_only_the_nodes_own_leases,
    an_expired_one_shot_upload_fails_and_expired_processing_is_queued_again,
    a_periodic_task_has_one_holder_at_a_time,
    finished_jobs_before_a_cutoff_and_blob_references_are_counted,
    finished_jobs_are_deleted_at_once_and_no_others,
    the_write_probe_succeeds,
    sessions_live_until_deleted_revoked_or_expired,
    account_names_are_unique_without_case,
    keys_belong_to_their_account_by_number,
    removing_an_account_revokes_its_keys_and_a_new_namesake_gets_none,
    the_accounts_version_moves_on_every_change_but_key_use,
);

fn owner(id: i64, name: &str) -> Owner {
    Owner {
        id: AccountId::new(id),
        name: AccountName::parse(name).unwrap(),
    }
}

fn admin() -> Owner {
    Owner::built_in_admin()
}

fn job(owner: &Owner, state: JobState) -> JobStatus {
    JobStatus::new(
        JobId::new(),
        owner,
        state,
        serde_json::json!({ "source": "contract" }),
        now(),
    )
}

/// A receiving upload of `owner` that declared `total` bytes.
fn upload(owner: &Owner, total: Option<u64>) -> JobStatus {
    let mut job = job(owner, JobState::Receiving);
    job.bytes_total = total;
    job
}

fn digest(byte: u8) -> Sha256Digest {
    Sha256Digest::from_bytes([byte; 32])
}

/// A finished job holding a file of `size` bytes with this digest.
fn stored(owner: &Owner, size: u64, byte: u8) -> JobStatus {
    let mut job = job(owner, JobState::Completed);
    job.size = Some(size);
    job.bytes_total = Some(size);
    job.bytes_done = size;
    job.progress = 100;
    job.sha256 = Some(digest(byte));
    job.content_type = Some("application/octet-stream".into());
    job.filename = Some("f.bin".into());
    job
}

fn resumable(credential: &str, max_pending: u64) -> Resumable {
    Resumable {
        credential: credential.to_owned(),
        expected_sha256: Some(digest(9)),
        max_pending,
    }
}

fn no_limits() -> Admission {
    Admission::default()
}

/// A lease of a node of its own, lasting longer than any scenario.
fn lease() -> Lease {
    Lease {
        node: NodeId::random(),
        duration: std::time::Duration::from_secs(60),
    }
}

fn ids(jobs: &[JobStatus]) -> Vec<JobId> {
    jobs.iter().map(|job| job.job_id).collect()
}

async fn jobs_read_back_exactly_as_written(backend: Backend) {
    let (store, _db) = backend.store().await;
    let mut full = stored(&owner(7, "Alice"), 12_345, 3);
    full.metadata = serde_json::json!({
        "float": 0.1, "big": 18_446_744_073_709_551_615u64, "neg": -1.5e300,
        "nested": { "z": [1, "two", null, true] }, "text": "ünïcode \u{1F600}",
    });
    full.error = Some("an error, kept".into());
    // Microseconds are what the store keeps; any such time, long ago or far ahead, returns.
    full.created_at = OffsetDateTime::from_unix_timestamp_nanos(-1_234_567_000).unwrap();
    full.updated_at = OffsetDateTime::from_unix_timestamp_nanos(4_102_444_800_123_456_000).unwrap();
    store.insert(&full).await.unwrap();
    let bare = job(&admin(), JobState::Queued);
    store.insert(&bare).await.unwrap();

    assert_eq!(store.get(full.job_id).await.unwrap(), Some(full));
    assert_eq!(store.get(bare.job_id).await.unwrap(), Some(bare));
    assert_eq!(store.get(JobId::new()).await.unwrap(), None);
}

async fn lists_are_newest_first_within_scope_owner_and_state(backend: Backend) {
    let (store, _db) = backend.store().await;
    let (alice, bob) = (owner(1, "alice"), owner(2, "bob"));
    let mut written = Vec::new();
    for (who, state) in [
        (&alice, JobState::Queued),
        (&bob, JobState::Queued),
        (&alice, JobState::Completed),
        (&admin(), JobState::Queued),
        (&alice, JobState::Queued),
    ] {
        let job = job(who, state);
        store.insert(&job).await.unwrap();
        written.push(job);
    }
    let newest_first = |picked: &[usize]| -> Vec<JobId> {
        picked.iter().rev().map(|&i| written[i].job_id).collect()
    };
    let list = async |filter: ListFilter, before: Option<JobId>, limit: u32| {
        ids(&store.list(&filter, before, limit).await.unwrap())
    };

    let everything = ListFilter::every_job(None);
    assert_eq!(
        list(everything.clone(), None, 10).await,
        newest_first(&[0, 1, 2, 3, 4])
    );
    let alices = ListFilter {
        scope: Scope::Account(alice.id),
        owner: None,
        state: None,
        text: None,
    };
    assert_eq!(
        list(alices.clone(), None, 10).await,
        newest_first(&[0, 2, 4])
    );
    let queued_of_alice = ListFilter {
        state: Some(JobState::Queued),
        ..alices.clone()
    };
    assert_eq!(list(queued_of_alice, None, 10).await, newest_first(&[0, 4]));
    // The owner filter compares the name shown, without case.
    let named = ListFilter {
        owner: Some(AccountName::parse("ALICE").unwrap()),
        ..everything.clone()
    };
    assert_eq!(list(named, None, 10).await, newest_first(&[0, 2, 4]));
    let only_queued = ListFilter::every_job(Some(JobState::Queued));
    assert_eq!(
        list(only_queued, None, 10).await,
        newest_first(&[0, 1, 3, 4])
    );

    // Pages: `before` continues after that job, `limit` cuts.
    let first = list(everything.clone(), None, 2).await;
    assert_eq!(first, newest_first(&[3, 4]));
    let second = list(everything.clone(), first.last().copied(), 2).await;
    assert_eq!(second, newest_first(&[1, 2]));
    let third = list(everything.clone(), second.last().copied(), 2).await;
    assert_eq!(third, newest_first(&[0]));
    let page = list(alices, Some(written[4].job_id), 10).await;
    assert_eq!(page, newest_first(&[0, 2]));
}

async fn a_before_cursor_the_scope_does_not_see_yields_an_empty_page(backend: Backend) {
    let (store, _db) = backend.store().await;
    let (alice, bob) = (owner(1, "alice"), owner(2, "bob"));
    let older = job(&alice, JobState::Queued);
    let bobs = job(&bob, JobState::Queued);
    store.insert(&older).await.unwrap();
    store.insert(&bobs).await.unwrap();
    let alices = ListFilter {
        scope: Scope::Account(alice.id),
        owner: None,
        state: None,
        text: None,
    };
    // Bob's job is newer than Alice's, yet continuing after it shows Alice nothing: a page
    // would tell her that the id exists.
    assert!(store
        .list(&alices, Some(bobs.job_id), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list(&alices, Some(JobId::new()), 10)
        .await
        .unwrap()
        .is_empty());
    // An admin sees past it.
    let page = store
        .list(&ListFilter::every_job(None), Some(bobs.job_id), 10)
        .await
        .unwrap();
    assert_eq!(ids(&page), vec![older.job_id]);
}

async fn save_replaces_an_unfinished_job_and_never_revives_a_finished_one(backend: Backend) {
    let (store, _db) = backend.store().await;
    let mut job = job(&owner(1, "alice"), JobState::Queued);
    store.insert(&job).await.unwrap();

    job.status = JobState::Processing;
    job.progress = 40;
    job.content_type = Some("text/plain".into());
    job.updated_at = now();
    assert!(store.save(&job).await.unwrap());
    assert_eq!(store.get(job.job_id).await.unwrap().as_ref(), Some(&job));

    let mut finished = job.clone();
    finished.status = JobState::Completed;
    finished.progress = 100;
    assert!(store.save(&finished).await.unwrap());

    // A late writer with an unfinished state changes nothing.
    let mut late = job.clone();
    late.progress = 90;
    assert!(!store.save(&late).await.unwrap());
    assert_eq!(store.get(job.job_id).await.unwrap(), Some(finished.clone()));
    // Nor does one that would finish it again differently.
    let mut failed = finished.clone();
    failed.status = JobState::Failed;
    assert!(!store.save(&failed).await.unwrap());
    assert_eq!(store.get(job.job_id).await.unwrap(), Some(finished));

    let unknown = self::job(&admin(), JobState::Queued);
    assert!(!store.save(&unknown).await.unwrap());
    assert_eq!(store.get(unknown.job_id).await.unwrap(), None);
}

async fn cancel_finishes_an_unfinished_job_once(backend: Backend) {
    let (store, _db) = backend.store().await;
    for state in [JobState::Queued, JobState::Receiving, JobState::Processing] {
        let job = job(&admin(), state);
        store.insert(&job).await.unwrap();
        let cancelled = store.cancel(job.job_id).await.unwrap().expect("cancelled");
        assert_eq!(cancelled.status, JobState::Cancelled);
        assert_eq!(cancelled.error.as_deref(), Some(CANCELLED_BY_REQUEST));
        assert!(cancelled.updated_at >= job.updated_at);
        assert_eq!(store.get(job.job_id).await.unwrap(), Some(cancelled));
        assert_eq!(store.cancel(job.job_id).await.unwrap(), None);
    }
    let done = stored(&admin(), 10, 1);
    store.insert(&done).await.unwrap();
    assert_eq!(store.cancel(done.job_id).await.unwrap(), None);
    assert_eq!(store.get(done.job_id).await.unwrap(), Some(done));
    assert_eq!(store.cancel(JobId::new()).await.unwrap(), None);
}

async fn delete_removes_a_job_and_its_upload_record(backend: Backend) {
    let (store, _db) = backend.store().await;
    let job = upload(&admin(), Some(100));
    let admitted = store
        .admit(&job, no_limits(), Some(resumable("token", 10)), &lease())
        .await
        .unwrap();
    assert_eq!(admitted, Admitted::Yes { bytes_left: None });
    let record = store.upload(job.job_id).await.unwrap().expect("a record");
    assert_eq!(record.offset, 0);
    assert_eq!(record.expected_sha256, Some(digest(9)));

    assert!(store.delete(job.job_id).await.unwrap());
    assert_eq!(store.get(job.job_id).await.unwrap(), None);
    assert_eq!(store.upload(job.job_id).await.unwrap(), None);
    assert!(!store.delete(job.job_id).await.unwrap());
    // A one-shot job has no upload record.
    let one_shot = upload(&admin(), None);
    store.insert(&one_shot).await.unwrap();
    assert_eq!(store.upload(one_shot.job_id).await.unwrap(), None);
}

async fn admit_refuses_over_the_upload_quota_and_records_nothing(backend: Backend) {
    let (store, _db) = backend.store().await;
    let alice = owner(1, "alice");
    let two = Admission {
        max_uploads: Some(2),
        max_stored_bytes: None,
    };
    for _ in 0..2 {
        let admitted = store
            .admit(&upload(&alice, None), two, None, &lease())
            .await;
        assert_eq!(admitted.unwrap(), Admitted::Yes { bytes_left: None });
    }
    let refused = upload(&alice, None);
    assert_eq!(
        store.admit(&refused, two, None, &lease()).await.unwrap(),
        Admitted::TooManyUploads { in_progress: 2 }
    );
    assert_eq!(store.get(refused.job_id).await.unwrap(), None);
    assert_eq!(store.count_in_state(JobState::Receiving).await.unwrap(), 2);
    // Another account's quota is its own.
    let bob = owner(2, "bob");
    let admitted = store
        .admit(&upload(&bob, None), two, None, &lease())
        .await
        .unwrap();
    assert_eq!(admitted, Admitted::Yes { bytes_left: None });
    assert_eq!(
        store.usage(alice.id).await.unwrap(),
        Usage {
            stored_bytes: 0,
            uploads: 2
        }
    );
    // An upload that finishes receiving frees its place.
    let mut first = store
        .list(&ListFilter::every_job(Some(JobState::Receiving)), None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|job| job.owner_id == alice.id)
        .unwrap();
    first.status = JobState::Queued;
    assert!(store.save(&first).await.unwrap());
    let admitted = store.admit(&refused, two, None, &lease()).await.unwrap();
    assert_eq!(admitted, Admitted::Yes { bytes_left: None });
}

async fn admit_refuses_over_the_stored_bytes_quota_and_counts_exactly(backend: Backend) {
    let (store, _db) = backend.store().await;
    let alice = owner(1, "alice");
    store.insert(&stored(&alice, 300, 1)).await.unwrap();
    // Another account's files and a job without a file count for nothing.
    store
        .insert(&stored(&owner(2, "bob"), 5_000, 2))
        .await
        .unwrap();
    store.insert(&job(&alice, JobState::Queued)).await.unwrap();
    let quota = Admission {
        max_uploads: None,
        max_stored_bytes: Some(1_000),
    };
    assert_eq!(
        store.usage(alice.id).await.unwrap(),
        Usage {
            stored_bytes: 300,
            uploads: 0
        }
    );

    let big = upload(&alice, Some(600));
    let admitted = store.admit(&big, quota, None, &lease()).await.unwrap();
    assert_eq!(
        admitted,
        Admitted::Yes {
            bytes_left: Some(100)
        }
    );
    let too_big = upload(&alice, Some(200));
    assert_eq!(
        store.admit(&too_big, quota, None, &lease()).await.unwrap(),
        Admitted::OverStorage { used: 900 }
    );
    assert_eq!(store.get(too_big.job_id).await.unwrap(), None);
    let exact = upload(&alice, Some(100));
    assert_eq!(
        store.admit(&exact, quota, None, &lease()).await.unwrap(),
        Admitted::Yes {
            bytes_left: Some(0)
        }
    );
    // An undeclared upload reserves what it has received so far.
    let mut undeclared = upload(&alice, None);
    undeclared.bytes_done = 50;
    store.insert(&undeclared).await.unwrap();
    // A declared one that received more than it said counts what it received.
    let mut overrun = upload(&alice, Some(10));
    overrun.bytes_done = 70;
    store.insert(&overrun).await.unwrap();
    assert_eq!(
        store.usage(alice.id).await.unwrap(),
        Usage {
            stored_bytes: 300 + 600 + 100 + 50 + 70,
            uploads: 4
        }
    );
    assert_eq!(
        store
            .stored_bytes_besides(alice.id, big.job_id)
            .await
            .unwrap(),
        300 + 100 + 50 + 70
    );
    assert_eq!(
        store
            .stored_bytes_besides(alice.id, JobId::new())
            .await
            .unwrap(),
        300 + 600 + 100 + 50 + 70
    );
    assert_eq!(
        store.usage(AccountId::new(99)).await.unwrap(),
        Usage::default()
    );
}

async fn admit_caps_a_credentials_unfinished_resumable_uploads(backend: Backend) {
    let (store, _db) = backend.store().await;
    let alice = owner(1, "alice");
    let mut pending = Vec::new();
    for _ in 0..2 {
        let job = upload(&alice, Some(10));
        let admitted = store
            .admit(
                &job,
                no_limits(),
                Some(resumable("key:0123456789ab", 2)),
                &lease(),
            )
            .await
            .unwrap();
        assert_eq!(admitted, Admitted::Yes { bytes_left: None });
        pending.push(job);
    }
    let refused = upload(&alice, Some(10));
    assert_eq!(
        store
            .admit(
                &refused,
                no_limits(),
                Some(resumable("key:0123456789ab", 2)),
                &lease()
            )
            .await
            .unwrap(),
        Admitted::TooManyPending
    );
    assert_eq!(store.get(refused.job_id).await.unwrap(), None);
    assert_eq!(store.upload(refused.job_id).await.unwrap(), None);
    // The cap is per credential; one-shot uploads do not count towards it.
    let other = upload(&alice, Some(10));
    let admitted = store
        .admit(
            &other,
            no_limits(),
            Some(resumable("session:00112233", 2)),
            &lease(),
        )
        .await
        .unwrap();
    assert_eq!(admitted, Admitted::Yes { bytes_left: None });
    store
        .admit(&upload(&alice, None), no_limits(), None, &lease())
        .await
        .unwrap();
    let mut resumable_ids = store.resumable_uploads().await.unwrap();
    resumable_ids.sort();
    let mut expected = vec![pending[0].job_id, pending[1].job_id, other.job_id];
    expected.sort();
    assert_eq!(resumable_ids, expected);
    // One that is no longer receiving is no longer pending.
    assert!(store.cancel(pending[0].job_id).await.unwrap().is_some());
    let admitted = store
        .admit(
            &refused,
            no_limits(),
            Some(resumable("key:0123456789ab", 2)),
            &lease(),
        )
        .await
        .unwrap();
    assert_eq!(admitted, Admitted::Yes { bytes_left: None });
}

async fn concurrent_admissions_cannot_pass_a_quota_together(backend: Backend) {
    let opened = backend.open(2).await;
    let alice = owner(1, "alice");
    let quota = Admission {
        max_uploads: Some(5),
        max_stored_bytes: Some(1_000),
    };
    // 40 uploads at once through two stores (nodes): five fit the upload quota, and of
    // 300-byte uploads only three fit the bytes; pending resumable uploads cap at 4.
    let attempts = (0..40).map(|i| {
        let store = opened.nodes[i % 2].clone();
        let alice = alice.clone();
        tokio::spawn(async move {
            let job = upload(&alice, Some(if i % 4 == 0 { 300 } else { 0 }));
            let credential = (i % 3 == 0).then(|| resumable("token", 4));
            store
                .admit(&job, quota, credential, &lease())
                .await
                .unwrap()
        })
    });
    let outcomes: Vec<Admitted> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let admitted = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Admitted::Yes { .. }))
        .count();
    let store = &opened.nodes[0];
    let usage = store.usage(alice.id).await.unwrap();
    assert_eq!(usage.uploads, admitted as u64, "{outcomes:?}");
    // Plenty of the attempts fit every quota on their own, so the upload quota fills exactly.
    assert_eq!(admitted, 5, "{outcomes:?}");
    assert!(usage.stored_bytes <= 1_000, "{usage:?}");
    let pending = store.resumable_uploads().await.unwrap().len();
    assert!(pending <= 4, "{pending} pending");
    assert_eq!(
        store.count_in_state(JobState::Receiving).await.unwrap(),
        admitted as u64
    );
}

async fn save_received_records_the_offset_only_while_receiving(backend: Backend) {
    let (store, _db) = backend.store().await;
    let mut job = upload(&admin(), Some(100));
    store
        .admit(&job, no_limits(), Some(resumable("token", 10)), &lease())
        .await
        .unwrap();
    let declared = store.upload(job.job_id).await.unwrap().unwrap();
    assert_eq!(
        declared.staged,
        StagedState::default(),
        "nothing staged yet"
    );
    job.bytes_done = 40;
    job.progress = 36;
    job.updated_at = now();
    // The hash state and the bucket's parts are written with the offset and read back as is.
    let staged = StagedState {
        hash_state: Some((0..=255).collect()),
        parts: Some(StagedParts {
            upload_id: Some("multipart-1".to_owned()),
            parts: vec![StagedPart {
                etag: "\"etag-1\"".to_owned(),
                size: 8 << 20,
            }],
        }),
    };
    assert!(store.save_received(&job, &staged).await.unwrap());
    let recorded = store.upload(job.job_id).await.unwrap().unwrap();
    assert_eq!((recorded.offset, &recorded.staged), (40, &staged));
    assert_eq!(store.get(job.job_id).await.unwrap(), Some(job.clone()));

    store.cancel(job.job_id).await.unwrap().unwrap();
    let mut late = job.clone();
    late.bytes_done = 80;
    let later = StagedState {
        hash_state: Some(vec![1]),
        parts: None,
    };
    assert!(!store.save_received(&late, &later).await.unwrap());
    let kept = store.upload(job.job_id).await.unwrap().unwrap();
    assert_eq!((kept.offset, &kept.staged), (40, &staged));
    assert_eq!(store.get(job.job_id).await.unwrap().unwrap().bytes_done, 40);
    let unknown = upload(&admin(), Some(1));
    assert!(!store.save_received(&unknown, &later).await.unwrap());
}

async fn claim_takes_the_oldest_queued_jobs_first(backend: Backend) {
    let (store, _db) = backend.store().await;
    let mut queued = Vec::new();
    for i in 0..5 {
        let mut job = job(&admin(), JobState::Queued);
        job.updated_at = OffsetDateTime::from_unix_timestamp(1_700_000_000 + i).unwrap();
        store.insert(&job).await.unwrap();
        queued.push(job);
        store
            .insert(&self::job(&admin(), JobState::Receiving))
            .await
            .unwrap();
    }
    let first = store.claim_queued(2, &lease()).await.unwrap();
    let claimed: Vec<JobId> = first.iter().map(|claimed| claimed.job.job_id).collect();
    assert_eq!(claimed, ids(&queued[..2]));
    for (claimed, queued) in first.iter().zip(&queued) {
        assert_eq!(claimed.job.status, JobState::Processing);
        assert_eq!(claimed.queued_at, queued.updated_at);
        assert_eq!(
            store.get(queued.job_id).await.unwrap().as_ref(),
            Some(&claimed.job)
        );
    }
    let rest = store.claim_queued(10, &lease()).await.unwrap();
    let claimed: Vec<JobId> = rest.iter().map(|claimed| claimed.job.job_id).collect();
    assert_eq!(claimed, ids(&queued[2..]));
    assert!(store.claim_queued(10, &lease()).await.unwrap().is_empty());
    assert_eq!(store.count_in_state(JobState::Processing).await.unwrap(), 5);
    assert_eq!(store.count_in_state(JobState::Queued).await.unwrap(), 0);
}

/// Saves of jobs a node processes, sent together (SQLite runs a batch's in one statement):
/// each is written, or refused, on its own terms.
async fn held_saves_sent_at_once_each_get_their_own_answer(backend: Backend) {
    let (store, _db) = backend.store().await;
    let (ours, theirs) = (lease(), lease());
    for _ in 0..40 {
        store
            .insert(&job(&admin(), JobState::Queued))
            .await
            .unwrap();
    }
    let mut claimed: Vec<JobStatus> = (store.claim_queued(30, &ours).await.unwrap())
        .into_iter()
        .map(|claimed| claimed.job)
        .collect();
    let other_node = store.claim_queued(10, &theirs).await.unwrap();
    // Every third of ours is cancelled meanwhile: its save must not revive it.
    for job in claimed.iter().step_by(3) {
        store.cancel(job.job_id).await.unwrap().unwrap();
    }
    for (i, job) in claimed.iter_mut().enumerate() {
        job.updated_at = now();
        if i % 2 == 0 {
            job.status = JobState::Completed;
            job.progress = 100;
        } else {
            job.progress = 60;
        }
    }
    // One of the other node's jobs, saved as if it were ours: refused.
    let mut not_ours = other_node[0].job.clone();
    not_ours.status = JobState::Completed;
    let saves = claimed
        .iter()
        .map(|job| store.save_held(job, &ours.node))
        .chain([store.save_held(&not_ours, &ours.node)]);
    let answers = futures::future::join_all(saves).await;
    for (i, (job, answer)) in claimed.iter().zip(&answers).enumerate() {
        let stored = store.get(job.job_id).await.unwrap().unwrap();
        if i % 3 == 0 {
            assert!(!answer.as_ref().unwrap(), "job {i} was cancelled");
            assert_eq!(stored.status, JobState::Cancelled);
        } else {
            assert!(answer.as_ref().unwrap(), "job {i}");
            assert_eq!(&stored, job);
        }
    }
    assert!(!answers.last().unwrap().as_ref().unwrap());
    assert_eq!(
        store.get(not_ours.job_id).await.unwrap().unwrap().status,
        JobState::Processing
    );
    // A job saved still processing keeps its lease: another claim cannot take it.
    assert!(store.claim_queued(40, &theirs).await.unwrap().is_empty());
}

async fn concurrent_claimers_never_take_the_same_job(backend: Backend) {
    // PostgreSQL: two stores (nodes) over one database, two claimers each. SQLite serves one
    // process: four claimers share its store.
    let nodes = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 2,
    };
    let opened = backend.open(nodes).await;
    let mut queued = HashSet::new();
    for _ in 0..200 {
        let job = job(&admin(), JobState::Queued);
        opened.nodes[0].insert(&job).await.unwrap();
        queued.insert(job.job_id);
    }
    let claimers = (0..4).map(|i| {
        let store = opened.nodes[i % nodes].clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_queued(3, &lease()).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|claimed| claimed.job.job_id));
                tokio::task::yield_now().await;
            }
        })
    });
    let mut claimed = Vec::new();
    for mine in futures::future::join_all(claimers).await {
        claimed.extend(mine.unwrap());
    }
    let distinct: HashSet<JobId> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 200, "a job was claimed twice or missed");
    assert_eq!(distinct, queued);
    let store = &opened.nodes[0];
    assert_eq!(
        store.count_in_state(JobState::Processing).await.unwrap(),
        200
    );
}

async fn recover_interrupted_ends_only_earlier_processes_jobs_and_only_on_sqlite(backend: Backend) {
    let (store, _db) = backend.store().await;
    let (earlier, current) = (lease(), lease());
    let one_shot = upload(&admin(), Some(10));
    store
        .admit(&one_shot, no_limits(), None, &earlier)
        .await
        .unwrap();
    let waiting = upload(&admin(), Some(10));
    store
        .admit(
            &waiting,
            no_limits(),
            Some(resumable("token", 10)),
            &earlier,
        )
        .await
        .unwrap();
    let mine = upload(&admin(), Some(10));
    store
        .admit(&mine, no_limits(), None, &current)
        .await
        .unwrap();
    for _ in 0..3 {
        store
            .insert(&job(&admin(), JobState::Queued))
            .await
            .unwrap();
    }
    let processing = store.claim_queued(1, &earlier).await.unwrap()[0]
        .job
        .clone();
    let processing_here = store.claim_queued(1, &current).await.unwrap()[0]
        .job
        .clone();
    let done = stored(&admin(), 1, 1);
    store.insert(&done).await.unwrap();

    let recovery = store.recover_interrupted(&current.node).await.unwrap();
    let state = async |id| store.get(id).await.unwrap().unwrap().status;
    match backend {
        // One process per data dir: the earlier process's jobs are recovered at once.
        Backend::Sqlite => {
            assert_eq!(
                recovery,
                Recovery {
                    failed_uploads: 1,
                    requeued: 1
                }
            );
            let failed = store.get(one_shot.job_id).await.unwrap().unwrap();
            assert_eq!(failed.status, JobState::Failed);
            assert_eq!(failed.error.as_deref(), Some(INTERRUPTED_BY_RESTART));
            assert_eq!(state(processing.job_id).await, JobState::Queued);
        }
        // Another node may be alive: only time ends its leases.
        Backend::Postgres => {
            assert_eq!(recovery, Recovery::default());
            assert_eq!(state(one_shot.job_id).await, JobState::Receiving);
            assert_eq!(state(processing.job_id).await, JobState::Processing);
        }
    }
    assert_eq!(state(waiting.job_id).await, JobState::Receiving);
    assert_eq!(state(mine.job_id).await, JobState::Receiving);
    assert_eq!(state(processing_here.job_id).await, JobState::Processing);
    assert_eq!(store.get(done.job_id).await.unwrap(), Some(done));
    assert_eq!(
        store.resumable_uploads().await.unwrap(),
        vec![waiting.job_id]
    );
    assert_eq!(
        store.recover_interrupted(&current.node).await.unwrap(),
        Recovery::default()
    );
}

/// Two nodes over one database: on PostgreSQL two stores, on SQLite one store serving two node
/// ids (one process at a time, as after a restart).
async fn two_nodes(backend: Backend) -> (Arc<dyn Store>, Arc<dyn Store>, Opened) {
    let opened = backend.open(2).await;
    (opened.nodes[0].clone(), opened.nodes[1].clone(), opened)
}

fn lease_of(node: &NodeId, duration: std::time::Duration) -> Lease {
    Lease {
        node: node.clone(),
        duration,
    }
}

/// Lets a lease of zero length run out: the clocks move on by at least a microsecond.
async fn run_out() {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
}

const LONG: std::time::Duration = std::time::Duration::from_secs(60);

async fn a_claimed_job_is_claimable_again_only_once_its_lease_runs_out(backend: Backend) {
    let (first, second, _db) = two_nodes(backend).await;
    let (a, b) = (NodeId::random(), NodeId::random());
    let lasting = job(&admin(), JobState::Queued);
    first.insert(&lasting).await.unwrap();
    let claimed = first.claim_queued(1, &lease_of(&a, LONG)).await.unwrap();
    assert_eq!(claimed[0].job.job_id, lasting.job_id);
    let lapsing = job(&admin(), JobState::Queued);
    first.insert(&lapsing).await.unwrap();
    let zero = std::time::Duration::ZERO;
    let claimed = first.claim_queued(1, &lease_of(&a, zero)).await.unwrap();
    assert_eq!(claimed[0].job.job_id, lapsing.job_id);
    run_out().await;

    // Only the job whose lease ran out is taken, and it is taken once.
    let taken = second.claim_queued(10, &lease_of(&b, LONG)).await.unwrap();
    assert_eq!(
        ids(&taken.iter().map(|c| c.job.clone()).collect::<Vec<_>>()),
        [lapsing.job_id]
    );
    assert_eq!(taken[0].job.status, JobState::Processing);
    assert!(second
        .claim_queued(10, &lease_of(&b, LONG))
        .await
        .unwrap()
        .is_empty());
    assert!(first
        .claim_queued(10, &lease_of(&a, LONG))
        .await
        .unwrap()
        .is_empty());

    // The node that lost it writes nothing; the one holding it finishes it, once.
    let mut done = taken[0].job.clone();
    done.status = JobState::Completed;
    done.progress = 100;
    done.updated_at = now();
    assert!(!first.save_held(&done, &a).await.unwrap());
    assert_eq!(
        first.get(lapsing.job_id).await.unwrap().unwrap().status,
        JobState::Processing
    );
    assert!(second.save_held(&done, &b).await.unwrap());
    assert_eq!(first.get(lapsing.job_id).await.unwrap(), Some(done.clone()));
    assert!(
        !second.save_held(&done, &b).await.unwrap(),
        "finished is final"
    );
    // A job whose lease lives is saved by its holder only.
    let mut other = claimed_copy(&*first, lasting.job_id).await;
    other.status = JobState::Queued;
    assert!(!second.save_held(&other, &b).await.unwrap());
    assert!(first.save_held(&other, &a).await.unwrap());
    // Back in the queue it holds no lease: anyone claims it.
    let again = second.claim_queued(10, &lease_of(&b, LONG)).await.unwrap();
    assert_eq!(again[0].job.job_id, lasting.job_id);
}

async fn claimed_copy(store: &dyn Store, id: JobId) -> JobStatus {
    let mut job = store.get(id).await.unwrap().unwrap();
    job.updated_at = now();
    job
}

async fn renew_extends_only_the_nodes_own_leases(backend: Backend) {
    let (first, second, _db) = two_nodes(backend).await;
    let (a, b) = (NodeId::random(), NodeId::random());
    let zero = std::time::Duration::ZERO;
    for _ in 0..2 {
        first
            .insert(&job(&admin(), JobState::Queued))
            .await
            .unwrap();
    }
    let of_a = first.claim_queued(1, &lease_of(&a, zero)).await.unwrap()[0]
        .job
        .job_id;
    // Renewed at once, so B's claim does not take it over but the next queued job.
    assert_eq!(
        first.renew_leases(&lease_of(&a, LONG)).await.unwrap(),
        vec![of_a]
    );
    let of_b = second.claim_queued(1, &lease_of(&b, zero)).await.unwrap()[0]
        .job
        .job_id;
    assert_ne!(of_a, of_b);
    let upload_of_a = upload(&admin(), Some(10));
    first
        .admit(&upload_of_a, no_limits(), None, &lease_of(&a, zero))
        .await
        .unwrap();
    let resumable_upload = upload(&admin(), Some(10));
    first
        .admit(
            &resumable_upload,
            no_limits(),
            Some(resumable("token", 10)),
            &lease_of(&a, zero),
        )
        .await
        .unwrap();

    let mut renewed = first.renew_leases(&lease_of(&a, LONG)).await.unwrap();
    renewed.sort();
    let mut expected = vec![of_a, upload_of_a.job_id];
    expected.sort();
    assert_eq!(renewed, expected, "A's processing job and one-shot upload");
    run_out().await;
    // B's lease, not renewed, ran out: its job is anyone's; A's are not.
    let c = NodeId::random();
    let taken = second.claim_queued(10, &lease_of(&c, LONG)).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].job.job_id, of_b);
    assert!(second
        .renew_leases(&lease_of(&b, LONG))
        .await
        .unwrap()
        .is_empty());
    // Nor does the sweep take A's upload, whose lease lives; the resumable one has none.
    assert!(second.recover_expired().await.unwrap().is_empty());
    assert_eq!(
        first.get(upload_of_a.job_id).await.unwrap().unwrap().status,
        JobState::Receiving
    );
}

async fn an_expired_one_shot_upload_fails_and_expired_processing_is_queued_again(backend: Backend) {
    let (first, second, _db) = two_nodes(backend).await;
    let a = NodeId::random();
    let zero = std::time::Duration::ZERO;
    let cut = upload(&admin(), Some(10));
    first
        .admit(&cut, no_limits(), None, &lease_of(&a, zero))
        .await
        .unwrap();
    let waiting = upload(&admin(), Some(10));
    first
        .admit(
            &waiting,
            no_limits(),
            Some(resumable("token", 10)),
            &lease_of(&a, zero),
        )
        .await
        .unwrap();
    first
        .insert(&job(&admin(), JobState::Queued))
        .await
        .unwrap();
    let stalled = first.claim_queued(1, &lease_of(&a, zero)).await.unwrap()[0]
        .job
        .job_id;
    let live = upload(&admin(), Some(10));
    first
        .admit(&live, no_limits(), None, &lease_of(&a, LONG))
        .await
        .unwrap();
    run_out().await;

    let mut recovered = second.recover_expired().await.unwrap();
    recovered.sort_by_key(|job| job.job_id);
    let mut expected = vec![cut.job_id, stalled];
    expected.sort();
    assert_eq!(ids(&recovered), expected);
    let failed = second.get(cut.job_id).await.unwrap().unwrap();
    assert_eq!(failed.status, JobState::Failed);
    assert_eq!(failed.error.as_deref(), Some(INTERRUPTED_BY_NODE_LOSS));
    assert!(recovered.contains(&failed));
    assert_eq!(
        second.get(stalled).await.unwrap().unwrap().status,
        JobState::Queued
    );
    let state = async |id| second.get(id).await.unwrap().unwrap().status;
    assert_eq!(state(waiting.job_id).await, JobState::Receiving);
    assert_eq!(state(live.job_id).await, JobState::Receiving);
    assert!(second.recover_expired().await.unwrap().is_empty());
    // The holder's lease went with it: renewing finds nothing but the live upload.
    assert_eq!(
        first.renew_leases(&lease_of(&a, LONG)).await.unwrap(),
        vec![live.job_id]
    );
}

async fn a_periodic_task_has_one_holder_at_a_time(backend: Backend) {
    let (first, second, _db) = two_nodes(backend).await;
    let (a, b) = (NodeId::random(), NodeId::random());
    assert!(first
        .claim_periodic("sweep", &lease_of(&a, LONG))
        .await
        .unwrap());
    assert!(!second
        .claim_periodic("sweep", &lease_of(&b, LONG))
        .await
        .unwrap());
    // Its holder may claim it again (its timer may tick a little early); another task is free.
    assert!(first
        .claim_periodic("sweep", &lease_of(&a, LONG))
        .await
        .unwrap());
    assert!(second
        .claim_periodic("other", &lease_of(&b, LONG))
        .await
        .unwrap());
    // Once a claim runs out, another node takes the task, and then holds it.
    let zero = std::time::Duration::ZERO;
    assert!(first
        .claim_periodic("brief", &lease_of(&a, zero))
        .await
        .unwrap());
    run_out().await;
    assert!(second
        .claim_periodic("brief", &lease_of(&b, LONG))
        .await
        .unwrap());
    assert!(!first
        .claim_periodic("brief", &lease_of(&a, LONG))
        .await
        .unwrap());

    // Many claimers at once, on both stores: exactly one wins.
    let claims = (0..8).map(|i| {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tokio::spawn(async move {
            let node = NodeId::random();
            store
                .claim_periodic("raced", &lease_of(&node, LONG))
                .await
                .unwrap()
        })
    });
    let won = futures::future::join_all(claims)
        .await
        .into_iter()
        .filter(|claimed| *claimed.as_ref().unwrap())
        .count();
    assert_eq!(won, 1);
}

/// PostgreSQL's blob lock excludes across stores (nodes), per digest; SQLite's is the
/// process's own lock in `Jobs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_blob_locks_exclude_other_nodes_per_digest_and_owner() {
    let opened = Backend::Postgres.open(2).await;
    let (first, second) = (&opened.nodes[0], &opened.nodes[1]);
    let wait = std::time::Duration::from_millis(300);
    let held = first.lock_blob(digest(1), None).await.unwrap();
    let blocked = tokio::time::timeout(wait, second.lock_blob(digest(1), None)).await;
    assert!(blocked.is_err(), "the same digest waits");
    let other = tokio::time::timeout(wait, second.lock_blob(digest(2), None))
        .await
        .expect("another digest does not wait")
        .unwrap();
    other.release().await;
    held.release().await;
    let after = tokio::time::timeout(wait, second.lock_blob(digest(1), None))
        .await
        .expect("released: it is free")
        .unwrap();
    // Dropped without release: still let go (the transaction ends with its connection's
    // return to the pool).
    drop(after);
    let dropped = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        first.lock_blob(digest(1), None),
    )
    .await
    .expect("a dropped lock is let go")
    .unwrap();
    dropped.release().await;

    // With an owner, two nodes' final quota checks of one account exclude each other even
    // for different content.
    let alice = Some(AccountId::new(7));
    let held = first.lock_blob(digest(3), alice).await.unwrap();
    let blocked = tokio::time::timeout(wait, second.lock_blob(digest(4), alice)).await;
    assert!(blocked.is_err(), "the same account waits");
    held.release().await;
}

async fn finished_jobs_before_a_cutoff_and_blob_references_are_counted(backend: Backend) {
    let (store, _db) = backend.store().await;
    let at = |seconds| OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).unwrap();
    let mut old = Vec::new();
    for (i, state) in [JobState::Completed, JobState::Failed, JobState::Cancelled]
        .into_iter()
        .enumerate()
    {
        let mut job = job(&admin(), state);
        job.updated_at = at(i as i64);
        store.insert(&job).await.unwrap();
        old.push(job);
    }
    let mut unfinished = job(&admin(), JobState::Queued);
    unfinished.updated_at = at(0);
    store.insert(&unfinished).await.unwrap();
    let mut recent = stored(&admin(), 5, 4);
    recent.updated_at = at(100);
    store.insert(&recent).await.unwrap();

    let listed = store.list_finished_before(at(50), 10).await.unwrap();
    assert_eq!(listed, old);
    let listed = store.list_finished_before(at(50), 2).await.unwrap();
    assert_eq!(listed, old[..2]);
    // Strictly before.
    assert_eq!(store.list_finished_before(at(0), 10).await.unwrap(), []);

    store
        .insert(&stored(&owner(1, "alice"), 5, 4))
        .await
        .unwrap();
    assert_eq!(store.count_referencing(digest(4)).await.unwrap(), 2);
    assert_eq!(store.count_referencing(digest(5)).await.unwrap(), 0);
    assert!(store.delete(recent.job_id).await.unwrap());
    assert_eq!(store.count_referencing(digest(4)).await.unwrap(), 1);
}

async fn finished_jobs_are_deleted_at_once_and_no_others(backend: Backend) {
    let (store, _db) = backend.store().await;
    let completed = job(&admin(), JobState::Completed);
    let failed = job(&owner(1, "alice"), JobState::Failed);
    let queued = job(&admin(), JobState::Queued);
    let with_file = stored(&admin(), 5, 4);
    for job in [&completed, &failed, &queued, &with_file] {
        store.insert(job).await.unwrap();
    }
    let ids = [
        completed.job_id,
        failed.job_id,
        queued.job_id,
        with_file.job_id,
    ];
    assert_eq!(store.delete_finished(&ids).await.unwrap(), 3);
    assert_eq!(store.get(completed.job_id).await.unwrap(), None);
    assert_eq!(store.get(failed.job_id).await.unwrap(), None);
    assert_eq!(store.get(with_file.job_id).await.unwrap(), None);
    assert_eq!(store.count_referencing(digest(4)).await.unwrap(), 0);
    assert_eq!(store.get(queued.job_id).await.unwrap(), Some(queued));
    assert_eq!(store.delete_finished(&ids).await.unwrap(), 0);
    assert_eq!(store.delete_finished(&[]).await.unwrap(), 0);
}

async fn the_write_probe_succeeds(backend: Backend) {
    let (store, _db) = backend.store().await;
    store.ping().await.unwrap();
    store.ping().await.unwrap();
}

fn session(byte: u8, key: Option<&str>, expires: OffsetDateTime) -> StoredSession {
    StoredSession {
        id_hash: [byte; 32],
        key_id: key.map(|key| KeyId::parse(key).unwrap()),
        created: now(),
        expires,
    }
}

async fn sessions_live_until_deleted_revoked_or_expired(backend: Backend) {
    let (store, _db) = backend.store().await;
    let t = now();
    let soon = t + Duration::minutes(5);
    let later = t + Duration::hours(5);
    let all = [
        session(1, None, soon),
        session(2, Some("0123456789ab"), later),
        session(3, Some("0123456789ab"), later),
        session(4, Some("ba9876543210"), later),
        session(5, None, later),
    ];
    for session in &all {
        store.insert_session(session).await.unwrap();
    }
    let live = async |at| {
        let mut live = store.live_sessions(at).await.unwrap();
        live.sort_by_key(|session| session.id_hash);
        live
    };
    assert_eq!(live(t).await, all);

    store.delete_session([5; 32]).await.unwrap();
    store.delete_session([6; 32]).await.unwrap();
    store
        .delete_sessions_of(&[KeyId::parse("0123456789ab").unwrap()])
        .await
        .unwrap();
    store.delete_sessions_of(&[]).await.unwrap();
    assert_eq!(live(t).await, [all[0].clone(), all[3].clone()]);

    // Expired at `now` means expires <= now.
    assert_eq!(live(soon).await, [all[3].clone()]);
    assert_eq!(store.prune_sessions(t).await.unwrap(), 0);
    assert_eq!(store.prune_sessions(soon).await.unwrap(), 1);
    assert_eq!(live(t).await, [all[3].clone()]);
}

fn account(name: &str, role: Role) -> AccountRecord {
    AccountRecord {
        id: AccountId::new(0),
        name: AccountName::parse(name).unwrap(),
        role,
        created_at: now(),
        quotas: QuotaOverrides::default(),
    }
}

fn key(id: &str, account: &AccountRecord, created_at: OffsetDateTime) -> KeyRecord {
    KeyRecord {
        key_id: KeyId::parse(id).unwrap(),
        account_id: Some(account.id),
        account: account.name.clone(),
        secret_sha256: [id.as_bytes()[0]; 32],
        created_at,
        expires_at: Some(created_at + Duration::days(30)),
        revoked_at: None,
        last_used_at: None,
    }
}

/// Adds the account and returns it as stored, with its number.
async fn added(store: &dyn Store, name: &str, role: Role) -> AccountRecord {
    let mut record = account(name, role);
    record.id = store.add_account(&record).await.unwrap().expect("added");
    record
}

async fn account_names_are_unique_without_case(backend: Backend) {
    let (store, _db) = backend.store().await;
    let alice = added(&*store, "alice", Role::Member).await;
    assert!(alice.id.get() > 0, "0 is the built-in admin's");
    assert_eq!(
        store
            .add_account(&account("ALICE", Role::Admin))
            .await
            .unwrap(),
        None
    );
    let bob = added(&*store, "Bob", Role::Admin).await;
    assert_ne!(bob.id, alice.id);
    let name = |text| AccountName::parse(text).unwrap();
    assert_eq!(
        store.account(&name("aLiCe")).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.account(&name("bob")).await.unwrap(),
        Some(bob.clone())
    );
    assert_eq!(store.account(&name("carol")).await.unwrap(), None);
    assert_eq!(
        store.accounts().await.unwrap(),
        [alice.clone(), bob.clone()]
    );

    let quotas = QuotaOverrides {
        max_stored_bytes: Some(1 << 40),
        max_uploads: Some(0),
        max_requests_per_second: None,
    };
    assert!(store.set_quotas(&name("ALICE"), quotas).await.unwrap());
    let stored = store.account(&name("alice")).await.unwrap().unwrap();
    assert_eq!(stored.quotas, quotas);
    assert!(!store.set_quotas(&name("carol"), quotas).await.unwrap());
}

async fn keys_belong_to_their_account_by_number(backend: Backend) {
    let (store, _db) = backend.store().await;
    let alice = added(&*store, "alice", Role::Member).await;
    let bob = added(&*store, "bob", Role::Admin).await;
    let t = now();
    let a1 = key("a00000000001", &alice, t);
    let a2 = key("a00000000002", &alice, t + Duration::seconds(1));
    let b1 = key("b00000000001", &bob, t - Duration::seconds(1));
    for key in [&a1, &a2, &b1] {
        assert!(store.add_key(key).await.unwrap());
    }
    let mut orphan = key("c00000000001", &alice, t);
    orphan.account_id = Some(AccountId::new(999));
    assert!(!store.add_key(&orphan).await.unwrap());

    assert_eq!(
        store.keys(Some(alice.id)).await.unwrap(),
        [a1.clone(), a2.clone()]
    );
    assert_eq!(
        store.keys(None).await.unwrap(),
        [b1.clone(), a1.clone(), a2.clone()]
    );
    let mut usable = store.usable_keys().await.unwrap();
    usable.sort_by(|x, y| x.0.key_id.cmp(&y.0.key_id));
    assert_eq!(
        usable,
        [
            (a1.clone(), alice.clone()),
            (a2.clone(), alice.clone()),
            (b1.clone(), bob.clone())
        ]
    );

    // Revoking keeps the first revocation time.
    let revoked_at = t + Duration::seconds(5);
    assert_eq!(
        store.revoke_key(&a1.key_id, revoked_at).await.unwrap(),
        Some(alice.name.clone())
    );
    assert_eq!(
        store
            .revoke_key(&a1.key_id, revoked_at + Duration::hours(1))
            .await
            .unwrap(),
        Some(alice.name.clone())
    );
    let unknown = KeyId::parse("ffffffffffff").unwrap();
    assert_eq!(store.revoke_key(&unknown, t).await.unwrap(), None);
    let keys = store.keys(Some(alice.id)).await.unwrap();
    assert_eq!(keys[0].revoked_at, Some(revoked_at));
    let usable: Vec<KeyId> = store
        .usable_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|(key, _)| key.key_id)
        .collect();
    assert!(!usable.contains(&a1.key_id) && usable.len() == 2);

    // Use is recorded (the latest of several), never moved back.
    let used = t + Duration::minutes(1);
    store
        .record_key_use(&[
            (a2.key_id.clone(), used - Duration::seconds(30)),
            (a2.key_id.clone(), used),
            (b1.key_id.clone(), used),
            (unknown.clone(), used),
        ])
        .await
        .unwrap();
    store
        .record_key_use(&[(a2.key_id.clone(), used - Duration::hours(1))])
        .await
        .unwrap();
    store.record_key_use(&[]).await.unwrap();
    let keys = store.keys(Some(alice.id)).await.unwrap();
    assert_eq!(keys[1].last_used_at, Some(used));
}

async fn removing_an_account_revokes_its_keys_and_a_new_namesake_gets_none(backend: Backend) {
    let (store, _db) = backend.store().await;
    let alice = added(&*store, "alice", Role::Member).await;
    let bob = added(&*store, "bob", Role::Member).await;
    let t = now();
    let a1 = key("a00000000001", &alice, t);
    let b1 = key("b00000000001", &bob, t);
    store.add_key(&a1).await.unwrap();
    store.add_key(&b1).await.unwrap();

    let at = t + Duration::seconds(3);
    assert!(store.remove_account(&alice.name, at).await.unwrap());
    assert!(!store.remove_account(&alice.name, at).await.unwrap());
    assert_eq!(store.account(&alice.name).await.unwrap(), None);
    // The key's row stays, revoked, for the record.
    let kept = store.keys(Some(alice.id)).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].revoked_at, Some(at));
    let usable = store.usable_keys().await.unwrap();
    assert_eq!(usable, [(b1.clone(), bob.clone())]);
    // A key for the removed account is not added.
    assert!(!store
        .add_key(&key("a00000000002", &alice, t))
        .await
        .unwrap());

    let again = added(&*store, "Alice", Role::Admin).await;
    assert_ne!(again.id, alice.id);
    assert!(again.id.get() > bob.id.get(), "numbers are never reused");
    assert!(store.keys(Some(again.id)).await.unwrap().is_empty());
    assert_eq!(store.usable_keys().await.unwrap(), [(b1, bob)]);
}

async fn the_accounts_version_moves_on_every_change_but_key_use(backend: Backend) {
    let opened = backend.open(2).await;
    let (store, other) = (&opened.nodes[0], &opened.nodes[1]);
    let mut version = store.accounts_version().await.unwrap();
    // Every node reads the same number.
    let mut moved = async |what: &str| {
        let now = other.accounts_version().await.unwrap();
        assert_ne!(now, version, "{what} moves the accounts version");
        version = now;
    };
    let alice = added(&**store, "alice", Role::Member).await;
    moved("adding an account").await;
    let quotas = QuotaOverrides {
        max_uploads: Some(3),
        ..QuotaOverrides::default()
    };
    store.set_quotas(&alice.name, quotas).await.unwrap();
    moved("setting quotas").await;
    let a1 = key("a00000000001", &alice, now());
    store.add_key(&a1).await.unwrap();
    moved("adding a key").await;
    store.revoke_key(&a1.key_id, now()).await.unwrap();
    moved("revoking a key").await;
    store
        .add_key(&key("a00000000002", &alice, now()))
        .await
        .unwrap();
    moved("adding another key").await;
    store.remove_account(&alice.name, now()).await.unwrap();
    moved("removing an account").await;

    let bob = added(&**store, "bob", Role::Member).await;
    moved("adding another account").await;
    let b1 = key("b00000000001", &bob, now());
    store.add_key(&b1).await.unwrap();
    moved("adding bob's key").await;
    store.record_key_use(&[(b1.key_id, now())]).await.unwrap();
    assert_eq!(
        other.accounts_version().await.unwrap(),
        version,
        "recording key use does not move the version"
    );
    store
        .insert_session(&session(1, Some("b00000000001"), now()))
        .await
        .unwrap();
    store
        .insert(&job(&admin(), JobState::Queued))
        .await
        .unwrap();
    assert_eq!(other.accounts_version().await.unwrap(), version);
}

/// SQLite's writer never checkpoints (a checkpoint inside a commit stalls every write behind
/// it); the checkpointer beside it copies the log back into the database file within moments,
/// so the log does not grow without bound. Seen from the main file alone, copied without its
/// log: with no checkpoint it would hold none of the jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_reach_the_database_file_by_checkpoint_without_a_commit_doing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let jobs: Vec<JobStatus> = (0..200)
        .map(|_| job(&admin(), JobState::Completed))
        .collect();
    for job in &jobs {
        store.insert(job).await.unwrap();
    }
    let mut attempt = 0;
    let copied = crate::helpers::within(std::time::Duration::from_secs(5), async || {
        attempt += 1;
        // A fresh name each time: no log of an earlier copy may be read with it.
        let copy = dir.path().join(format!("copy-{attempt}.db"));
        std::fs::copy(&path, &copy).ok()?;
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&copy);
        let mut conn = sqlx::ConnectOptions::connect(&options).await.ok()?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
            .fetch_one(&mut conn)
            .await
            .ok()?;
        (count == 200).then_some(())
    })
    .await;
    assert!(
        copied.is_some(),
        "the database file alone should hold every job within moments"
    );
}

/// SQLite's commits are made durable by one fsync of the log per group of batches, beside the
/// writer. When that fsync cannot be done (here: the log is gone from under the store), the
/// batch waiting for it is refused and so is every write after it: an answer must never claim
/// a write reached the disk when the store cannot know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stops_acknowledging_writes_once_its_log_cannot_be_synced() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("ingest.db");
    let store = SqliteStore::open(&database).await.unwrap();
    let before = job(&admin(), JobState::Queued);
    store.insert(&before).await.unwrap();

    std::fs::remove_file(dir.path().join("ingest.db-wal")).unwrap();
    let refused = store
        .insert(&job(&admin(), JobState::Queued))
        .await
        .unwrap_err();
    assert!(
        format!("{refused:#}").contains("could not be synced"),
        "{refused:#}"
    );
    assert!(store
        .insert(&job(&admin(), JobState::Queued))
        .await
        .is_err());
    assert!(store.ping().await.is_err());
    // What was acknowledged before is still there to read.
    assert_eq!(store.get(before.job_id).await.unwrap(), Some(before));
}
