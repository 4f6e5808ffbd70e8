//! The webhook outbox at the store level, the same scenarios on SQLite and PostgreSQL: the
//! triggers record an event with the job as it was, in the job's own write, only for
//! subscribed endpoints of its account; a claim fans out only what it has room to send, each
//! event once; a claim holds until recorded; a job's snapshot
//! reads back exactly; old finished deliveries are pruned; a stale endpoint change, a retry of
//! a delivery being sent and a flood of pings are refused.
use super::postgres::TestDatabase;
use ingest::{
    domain::{AccountId, AccountName, JobId, JobState, JobStatus, Owner},
    server::store::{
        now, Attempt, DeliveryState, EndpointRecord, JobStore, Lease, NodeId, PgStore, PingOutcome,
        RetryOutcome, SqliteStore, WebhookStore,
    },
};
use std::{sync::Arc, time::Duration};

trait Store: JobStore + WebhookStore {}
impl<S: JobStore + WebhookStore> Store for S {}

/// A store over a fresh database, and what keeps it alive.
async fn open(postgres: bool) -> (Arc<dyn Store>, Box<dyn std::any::Any>) {
    if postgres {
        let database = TestDatabase::create().await;
        let store = PgStore::open(&database.url).await.unwrap();
        (Arc::new(store), Box::new(database))
    } else {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ingest.db"))
            .await
            .unwrap();
        (Arc::new(store), Box::new(dir))
    }
}

fn endpoint(account: i64, events: &str) -> EndpointRecord {
    let at = now();
    EndpointRecord {
        id: uuid::Uuid::now_v7(),
        account_id: AccountId::new(account),
        all_accounts: false,
        url: "http://127.0.0.1:9/hook".to_owned(),
        description: String::new(),
        events: events.to_owned(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
        previous_secret: None,
        enabled: true,
        disabled_reason: None,
        consecutive_failures: 0,
        created_at: at,
        updated_at: at,
    }
}

fn job(account: i64) -> JobStatus {
    let owner = Owner {
        id: AccountId::new(account),
        name: AccountName::parse(&format!("account{account}")).unwrap(),
    };
    JobStatus::new(
        JobId::new(),
        &owner,
        JobState::Queued,
        serde_json::json!({"x": 1.5}),
        now(),
    )
}

fn lease() -> Lease {
    Lease {
        node: NodeId::random(),
        duration: Duration::from_secs(60),
    }
}

/// On PostgreSQL no other node takes what a sender holds (SQLite serves one process, so
/// another node id there is an earlier, dead one's, whose claims are taken at once).
async fn held_from_other_nodes(store: &dyn Store, postgres: bool) {
    if postgres {
        assert!(store
            .claim_deliveries(10, &lease())
            .await
            .unwrap()
            .is_empty());
    }
}

async fn the_outbox_on(postgres: bool) {
    let (store, _keep) = open(postgres).await;
    let mine = endpoint(1, "job.created job.cancelled");
    assert!(store.add_endpoint(&mine, 20).await.unwrap());
    assert!(store.add_endpoint(&endpoint(2, "*"), 20).await.unwrap());
    // A second endpoint of account 1, over a cap of 1.
    assert!(!store.add_endpoint(&endpoint(1, "*"), 1).await.unwrap());

    let first = job(1);
    store.insert(&first).await.unwrap();
    assert!(store.cancel(first.job_id).await.unwrap().is_some());
    // Completed is not subscribed to; account 3 has no endpoint.
    let mut second = job(1);
    store.insert(&second).await.unwrap();
    second.status = JobState::Completed;
    assert!(store.save(&second).await.unwrap());
    store.insert(&job(3)).await.unwrap();

    let sender = lease();
    let claimed = store.claim_deliveries(10, &sender).await.unwrap();
    let mut seen: Vec<(String, JobId)> = claimed
        .iter()
        .map(|d| (d.event_type.clone(), d.job.as_ref().unwrap().job_id))
        .collect();
    seen.sort();
    let mut expected = vec![
        ("job.created".to_owned(), first.job_id),
        ("job.cancelled".to_owned(), first.job_id),
        ("job.created".to_owned(), second.job_id),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    assert!(claimed.iter().all(|d| d.endpoint_id == mine.id));
    // The job as it was at its event: created as queued, exactly as written.
    let created = claimed
        .iter()
        .find(|d| d.event_type == "job.created" && d.job.as_ref().unwrap().job_id == first.job_id)
        .unwrap();
    assert_eq!(created.job.as_ref().unwrap(), &first);
    // Held: the sender does not take them twice, nor does another node.
    assert!(store
        .claim_deliveries(10, &sender)
        .await
        .unwrap()
        .is_empty());
    held_from_other_nodes(&*store, postgres).await;

    for delivery in &claimed {
        let attempt = Attempt {
            delivery_id: delivery.id.clone(),
            endpoint_id: delivery.endpoint_id,
            status: Some(204),
            error: None,
            delivered: true,
            next_attempt: None,
            disable_after: 100,
        };
        store.record_attempt(&attempt, &sender).await.unwrap();
    }
    let log = store.deliveries(mine.id, 50).await.unwrap();
    assert_eq!(log.len(), 3);
    assert!(log
        .iter()
        .all(|d| d.state == DeliveryState::Delivered && d.attempts == 1));
    assert!(store
        .claim_deliveries(10, &lease())
        .await
        .unwrap()
        .is_empty());

    // Finished deliveries older than the cutoff go; a new one stays.
    assert!(matches!(
        store.add_ping(mine.id, 5).await.unwrap(),
        PingOutcome::Queued(_)
    ));
    let cutoff = now() + time::Duration::seconds(1);
    assert_eq!(store.prune_deliveries(cutoff).await.unwrap(), 3);
    let left = store.deliveries(mine.id, 50).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event_type, "webhook.ping");
    assert!(store.delete_endpoint(mine.id).await.unwrap());
    assert!(store.endpoint(mine.id).await.unwrap().is_none());
}

#[tokio::test]
async fn the_outbox_on_sqlite() {
    the_outbox_on(false).await;
}

#[tokio::test]
async fn the_outbox_on_postgres() {
    the_outbox_on(true).await;
}

async fn the_guards_on(postgres: bool) {
    let (store, _keep) = open(postgres).await;
    let mine = endpoint(1, "*");
    assert!(store.add_endpoint(&mine, 20).await.unwrap());

    // A change made from a read the sender has since overtaken (it counted a failure and
    // disabled the endpoint) is refused, so it cannot undo that.
    let read = store.endpoint(mine.id).await.unwrap().unwrap();
    store.insert(&job(1)).await.unwrap();
    let sender = lease();
    let claimed = store.claim_deliveries(10, &sender).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let delivery = claimed[0].id.clone();

    // Held by the sender: asking for it again now would send it twice.
    assert_eq!(
        store.retry_delivery(mine.id, &delivery).await.unwrap(),
        RetryOutcome::InFlight
    );
    let failed = Attempt {
        delivery_id: delivery.clone(),
        endpoint_id: mine.id,
        status: Some(410),
        error: Some("HTTP 410 Gone".to_owned()),
        delivered: false,
        next_attempt: None,
        disable_after: 1,
    };
    store.record_attempt(&failed, &sender).await.unwrap();
    let disabled = store.endpoint(mine.id).await.unwrap().unwrap();
    assert!(!disabled.enabled);
    assert!(disabled.updated_at > read.updated_at);

    let mut stale = read.clone();
    stale.description = "renamed".to_owned();
    stale.updated_at = read.updated_at + Duration::from_micros(1);
    assert!(!store
        .update_endpoint(&stale, read.updated_at)
        .await
        .unwrap());
    let kept = store.endpoint(mine.id).await.unwrap().unwrap();
    assert!(!kept.enabled, "a stale change re-enabled the endpoint");
    assert_eq!(kept.description, "");
    // From a fresh read it goes through (and enables it again).
    let mut fresh = kept.clone();
    fresh.description = "renamed".to_owned();
    fresh.enabled = true;
    fresh.disabled_reason = None;
    fresh.consecutive_failures = 0;
    fresh.updated_at = kept.updated_at + Duration::from_micros(1);
    assert!(store
        .update_endpoint(&fresh, kept.updated_at)
        .await
        .unwrap());

    // Once recorded, it can be sent again; an unknown one is not found.
    assert_eq!(
        store.retry_delivery(mine.id, &delivery).await.unwrap(),
        RetryOutcome::Queued
    );
    assert_eq!(
        store.retry_delivery(mine.id, "msg_nonesuch").await.unwrap(),
        RetryOutcome::NotFound
    );

    // A sender that stops hands back what it holds: another node takes it at once, where it
    // would otherwise wait out the lease.
    store.insert(&job(1)).await.unwrap();
    let stopping = lease();
    assert_eq!(
        store.claim_deliveries(10, &stopping).await.unwrap().len(),
        2
    );
    held_from_other_nodes(&*store, postgres).await;
    assert_eq!(store.release_claims(&stopping.node).await.unwrap(), 2);
    let taken = store.claim_deliveries(10, &lease()).await.unwrap();
    assert_eq!(taken.len(), 2);

    // Pings waiting to go out are capped.
    for _ in 0..3 {
        assert!(matches!(
            store.add_ping(mine.id, 3).await.unwrap(),
            PingOutcome::Queued(_)
        ));
    }
    assert_eq!(
        store.add_ping(mine.id, 3).await.unwrap(),
        PingOutcome::TooMany
    );
    // An endpoint removed meanwhile is not pinged (nor is the store's key check an error).
    assert!(store.delete_endpoint(mine.id).await.unwrap());
    assert_eq!(
        store.add_ping(mine.id, 3).await.unwrap(),
        PingOutcome::NotFound
    );
}

#[tokio::test]
async fn the_guards_on_sqlite() {
    the_guards_on(false).await;
}

#[tokio::test]
async fn the_guards_on_postgres() {
    the_guards_on(true).await;
}

/// Events wait as they are until a sender has room for them: a claim fans out only as many as
/// it may take, each once (two senders at once included), to the endpoints that existed when
/// it happened; pruning never takes an event still waiting.
async fn the_fan_out_on(postgres: bool) {
    let (store, _keep) = open(postgres).await;
    let early = endpoint(1, "*");
    assert!(store.add_endpoint(&early, 20).await.unwrap());
    let mut jobs = Vec::new();
    for _ in 0..5 {
        let job = job(1);
        store.insert(&job).await.unwrap();
        jobs.push(job.job_id);
    }
    // Registered after those events: it gets none of them.
    let late = endpoint(1, "*");
    assert!(store.add_endpoint(&late, 20).await.unwrap());
    // Not fanned out yet, they are in the log already, pending, under the ids they will be
    // sent with.
    let waiting = store.deliveries(early.id, 50).await.unwrap();
    assert_eq!(waiting.len(), 5);
    assert!(waiting
        .iter()
        .all(|d| d.state == DeliveryState::Pending && d.attempts == 0));
    let mut waiting_ids: Vec<String> = waiting.into_iter().map(|d| d.id).collect();
    waiting_ids.sort();

    // Old enough to prune, were they fanned out: they are not, and stay waiting.
    let cutoff = now() + time::Duration::seconds(1);
    assert_eq!(store.prune_deliveries(cutoff).await.unwrap(), 0);
    assert_eq!(store.deliveries(early.id, 50).await.unwrap().len(), 5);

    let sender = lease();
    let first = store.claim_deliveries(2, &sender).await.unwrap();
    let ids = |claimed: &[ingest::server::store::OutgoingDelivery]| -> Vec<JobId> {
        let mut ids: Vec<JobId> = claimed
            .iter()
            .map(|d| d.job.as_ref().unwrap().job_id)
            .collect();
        ids.sort();
        ids
    };
    let sorted = |slice: &[JobId]| -> Vec<JobId> {
        let mut ids = slice.to_vec();
        ids.sort();
        ids
    };
    // The oldest events first, and only as many as there was room for.
    assert_eq!(ids(&first), sorted(&jobs[..2]));
    assert!(first.iter().all(|d| d.endpoint_id == early.id));
    assert_eq!(store.deliveries(early.id, 50).await.unwrap().len(), 5);

    let rest = store.claim_deliveries(10, &sender).await.unwrap();
    assert_eq!(ids(&rest), sorted(&jobs[2..]));
    assert!(store.deliveries(late.id, 50).await.unwrap().is_empty());
    let mut sent_ids: Vec<String> = first.iter().chain(&rest).map(|d| d.id.clone()).collect();
    sent_ids.sort();
    assert_eq!(sent_ids, waiting_ids);

    // Two senders at once: every event reaches both endpoints exactly once. (On SQLite, one
    // process, another node id is a dead predecessor's whose claims are taken back: the two
    // senders there are two claims of one node.)
    let other = || if postgres { lease() } else { sender.clone() };
    let mut more = Vec::new();
    for _ in 0..20 {
        let job = job(1);
        store.insert(&job).await.unwrap();
        more.push(job.job_id);
    }
    let (one, two) = (other(), other());
    let (a, b) = tokio::join!(
        store.claim_deliveries(25, &one),
        store.claim_deliveries(25, &two)
    );
    let mut taken: Vec<(uuid::Uuid, JobId)> = a
        .unwrap()
        .into_iter()
        .chain(b.unwrap())
        .map(|d| (d.endpoint_id, d.job.unwrap().job_id))
        .collect();
    // What neither took (each fans out at most its limit's worth of events) is still there.
    taken.extend(
        store
            .claim_deliveries(100, &other())
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.endpoint_id, d.job.unwrap().job_id)),
    );
    taken.sort();
    let mut expected: Vec<(uuid::Uuid, JobId)> = more
        .iter()
        .flat_map(|job| [(early.id, *job), (late.id, *job)])
        .collect();
    expected.sort();
    assert_eq!(taken, expected);
    assert_eq!(store.deliveries(late.id, 50).await.unwrap().len(), 20);

    // A ping is made with its delivery: an endpoint that takes every account's events does
    // not get it a second time from the fan-out.
    let mut everything = endpoint(0, "*");
    everything.all_accounts = true;
    assert!(store.add_endpoint(&everything, 20).await.unwrap());
    let PingOutcome::Queued(ping) = store.add_ping(everything.id, 5).await.unwrap() else {
        panic!("the ping was refused");
    };
    let sent: Vec<String> = store
        .claim_deliveries(100, &other())
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(sent, [ping]);
    assert_eq!(store.deliveries(everything.id, 50).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_fan_out_on_sqlite() {
    the_fan_out_on(false).await;
}

#[tokio::test]
async fn the_fan_out_on_postgres() {
    the_fan_out_on(true).await;
}
