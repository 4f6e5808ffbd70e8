//! Per-account quotas: bytes stored (413), uploads at once (429) and requests per second (429),
//! with the server's defaults and an admin's overrides; usage in `/api/me`, recomputed from the
//! jobs so it is exact after a crash; and the audit lines that key changes and refusals leave.
use crate::helpers::*;
use ingest::domain::JobId;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// How long an admin's change may take to reach every check.
const PROPAGATION: Duration = Duration::from_secs(3);

/// Asserts a quota refusal: `status`, code `code`, `quota` naming the quota, a message; hands
/// back the headers.
async fn assert_refused(
    response: reqwest::Response,
    status: u16,
    code: &str,
    quota: &str,
) -> reqwest::header::HeaderMap {
    let headers = response.headers().clone();
    let url = response.url().clone();
    assert_eq!(response.status(), status, "status of {url}");
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["quota"], quota, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "{body}"
    );
    headers
}

/// The `Retry-After` seconds of a refusal; at least 1.
fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    let seconds: u64 = headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seconds >= 1, "Retry-After: {seconds}");
    seconds
}

/// Every job id on the server, as the token sees them.
async fn all_jobs(app: &TestApp) -> Vec<String> {
    let mut ids = app.admin().job_ids("limit=500").await;
    ids.sort();
    ids
}

fn usage(me: &Value) -> (u64, u64) {
    let usage = &me["usage"];
    (
        usage["stored_bytes"].as_u64().expect("usage.stored_bytes"),
        usage["uploads"].as_u64().expect("usage.uploads"),
    )
}

/// Files in the blob store.
fn blob_count(app: &TestApp) -> usize {
    let Ok(fanouts) = std::fs::read_dir(app.data_dir.path().join("blobs")) else {
        return 0;
    };
    fanouts
        .map(|fanout| match std::fs::read_dir(fanout.unwrap().path()) {
            Ok(blobs) => blobs.count(),
            Err(_) => 1,
        })
        .sum()
}

fn job_id_of(job: &Value) -> JobId {
    JobId::parse(job["job_id"].as_str().expect("a job_id")).unwrap()
}

#[tokio::test]
async fn an_upload_declared_over_the_stored_bytes_quota_gets_413_before_any_job_exists() {
    let app = spawn_app_with(|s| s.quota_stored_bytes = 10_000).await;
    let alice = app.member("alice").await;
    let bob = app.member("bob").await;
    alice.stored_upload(random_bytes(6_000)).await;
    assert_eq!(usage(&alice.me().await), (6_000, 0));
    let jobs = all_jobs(&app).await;

    // A tus declaration and a one-shot upload whose Content-Length would pass the limit.
    let declared = alice.tus().create(5_000, "{}").send().await.unwrap();
    assert_refused(declared, 413, "quota_exceeded", "stored_bytes").await;
    let one_shot = alice.ingest_file("b.bin", random_bytes(5_000), "{}").await;
    assert_refused(one_shot, 413, "quota_exceeded", "stored_bytes").await;
    assert_eq!(all_jobs(&app).await, jobs, "no job was created");
    assert!(app.temp_files().is_empty());

    // What fits is taken, and counts as soon as it is declared.
    let fitting = alice.tus().created(3_000, "{}").await;
    assert_eq!(usage(&alice.me().await), (9_000, 1));
    let over = alice.tus().create(1_500, "{}").send().await.unwrap();
    assert_refused(over, 413, "quota_exceeded", "stored_bytes").await;
    // A job without a file stores nothing.
    accepted_id(alice.ingest_json(json!({"metadata": {"n": 1}})).await).await;
    // Another account has its own allowance.
    bob.tus().created(9_000, "{}").await;
    // Ending the declared upload gives its bytes back.
    let ended = alice.tus().terminate(fitting).send().await.unwrap();
    assert_eq!(ended.status(), 204);
    assert_eq!(usage(&alice.me().await), (6_000, 0));
    alice.tus().created(4_000, "{}").await;
}

#[tokio::test]
async fn an_upload_of_unknown_length_is_cut_when_it_passes_the_quota_and_leaves_nothing() {
    const QUOTA: u64 = 64 * 1024;
    let app = spawn_app_with(|s| s.quota_stored_bytes = QUOTA).await;
    let alice = app.member("alice").await;
    let mut upload = alice.streaming_ingest("big.bin").await;
    let mut sent = 0;
    while sent < 4 * QUOTA {
        if !upload.send(vec![b'q'; 16 * 1024]).await {
            break;
        }
        sent += 16 * 1024;
    }
    let answer = upload.finish().await;
    assert_refused(answer, 413, "quota_exceeded", "stored_bytes").await;

    let jobs = alice.jobs("").await;
    let jobs = jobs["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["status"], "failed", "{jobs:?}");
    assert!(app.temp_files().is_empty(), "{:?}", app.temp_files());
    assert_eq!(blob_count(&app), 0);
    assert_eq!(usage(&alice.me().await), (0, 0));
    // Nothing of it counts: a file that fits is taken.
    alice
        .stored_file("small.bin", random_bytes(1024), "{}")
        .await;
}

#[tokio::test]
async fn two_parallel_uploads_that_fit_alone_but_not_together_are_not_both_stored() {
    const QUOTA: u64 = 100 * 1024;
    const EACH: usize = 60 * 1024;
    const CHUNK: usize = 10 * 1024;
    let app = spawn_app_with(|s| s.quota_stored_bytes = QUOTA).await;
    let alice = app.member("alice").await;
    let mut first = alice.streaming_ingest("first.bin").await;
    let mut second = alice.streaming_ingest("second.bin").await;
    // Both are under way before either ends: the check at storing time must see the other.
    for _ in 0..EACH / CHUNK {
        first.send(random_bytes(CHUNK)).await;
        second.send(random_bytes(CHUNK)).await;
    }
    let (first, second) = tokio::join!(first.finish(), second.finish());

    let mut stored = 0;
    for answer in [first, second] {
        if answer.status() == 202 {
            stored += 1;
        } else {
            assert_refused(answer, 413, "quota_exceeded", "stored_bytes").await;
        }
    }
    assert!(stored <= 1, "both uploads were stored");
    let page = alice.jobs("").await;
    let jobs = page["jobs"].as_array().unwrap();
    for job in jobs {
        let id = job_id_of(job);
        let job = app.wait_until_finished(id).await;
        assert!(
            job.sha256.is_none() || job.status == ingest::domain::JobState::Completed,
            "{job:?}"
        );
    }
    let (bytes, uploads) = usage(&alice.me().await);
    assert!(bytes <= QUOTA, "usage {bytes} passed the quota {QUOTA}");
    assert_eq!(bytes, stored * EACH as u64);
    assert_eq!(uploads, 0);
    assert!(app.temp_files().is_empty(), "{:?}", app.temp_files());
    assert_eq!(blob_count(&app), stored as usize);
}

#[tokio::test]
async fn deleting_a_job_frees_its_bytes_for_the_next_upload() {
    let app = spawn_app_with(|s| s.quota_stored_bytes = 10_000).await;
    let alice = app.member("alice").await;
    let first = alice.stored_upload(random_bytes(7_000)).await;
    let refused = alice.tus().create(7_000, "{}").send().await.unwrap();
    assert_refused(refused, 413, "quota_exceeded", "stored_bytes").await;

    assert_eq!(alice.delete(job_id_of(&first)).await.status(), 204);
    assert_eq!(usage(&alice.me().await), (0, 0));
    let second = alice.stored_upload(random_bytes(7_000)).await;
    assert_eq!(second["size"], 7_000);
    assert_eq!(usage(&alice.me().await), (7_000, 0));
}

#[tokio::test]
async fn usage_is_the_sum_of_stored_sizes_and_declared_uploads_and_is_exact_after_kill_9() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let env = [
        ("INGEST_QUOTA_STORED_BYTES", "1000000"),
        ("INGEST_QUOTA_UPLOADS", "5"),
        ("INGEST_RATE_LIMIT_PER_SECOND", "0"),
    ];
    let mut server = Server::start_with(&data_dir, "first.log", &env).await;
    let admin = ApiClient::at(server.address(), Credential::Bearer(TOKEN.to_owned()));
    admin.create_account("alice", "member").await;
    admin.create_account("bob", "member").await;
    let alice = admin.with_key(admin.issue_key("alice").await);
    let bob = admin.with_key(admin.issue_key("bob").await);

    for size in [1_000, 2_000, 3_000] {
        alice.stored_upload(random_bytes(size)).await;
    }
    let one_shot = alice
        .stored_file("one-shot.bin", random_bytes(4_000), "{}")
        .await;
    assert_eq!(one_shot["size"], 4_000);
    accepted_id(alice.ingest_json(json!({"metadata": {"no": "file"}})).await).await;
    // Declared, a part sent: its whole declared length counts.
    let pending = alice.tus().created(500, "{}").await;
    let part = alice
        .tus()
        .patch(pending, 0)
        .body(vec![7u8; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 204);
    // Cancelled: its bytes are gone and count no more.
    let cancelled = alice.tus().created(700, "{}").await;
    assert_eq!(
        alice
            .tus()
            .terminate(cancelled)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    bob.stored_upload(random_bytes(50)).await;

    let me = alice.me().await;
    assert_eq!(me["account"], "alice");
    assert_eq!(usage(&me), (10_500, 1), "{me}");
    assert_eq!(
        me["quotas"],
        json!({"max_stored_bytes": 1_000_000, "max_uploads": 5, "max_requests_per_second": null}),
        "{me}"
    );
    assert_eq!(usage(&bob.me().await), (50, 0));
    let token = admin.me().await;
    assert!(
        token["usage"].is_object() && token["quotas"].is_object(),
        "{token}"
    );

    server.kill_9();
    let server = Server::start_with(&data_dir, "second.log", &env).await;
    let alice = ApiClient {
        address: server.address(),
        ..alice
    };
    let bob = ApiClient {
        address: server.address(),
        ..bob
    };
    assert_eq!(usage(&alice.me().await), (10_500, 1));
    assert_eq!(usage(&bob.me().await), (50, 0));
    // And it is still enforced from there.
    let over = alice
        .tus()
        .create(1_000_000 - 10_500 + 1, "{}")
        .send()
        .await
        .unwrap();
    assert_refused(over, 413, "quota_exceeded", "stored_bytes").await;
}

#[tokio::test]
async fn one_upload_more_than_the_quota_gets_429_and_a_finished_or_ended_one_frees_a_place() {
    let app = spawn_app_with(|s| s.quota_uploads = 2).await;
    let alice = app.member("alice").await;
    let bob = app.member("bob").await;
    let tus = alice.tus();
    let first = tus.created(10, "{}").await;
    let second = tus.created(10, "{}").await;
    assert_eq!(usage(&alice.me().await).1, 2);
    let jobs = all_jobs(&app).await;

    let refused = tus.create(10, "{}").send().await.unwrap();
    let headers = assert_refused(refused, 429, "quota_exceeded", "uploads").await;
    retry_after(&headers);
    let one_shot = alice.ingest_file("c.bin", random_bytes(100), "{}").await;
    let headers = assert_refused(one_shot, 429, "quota_exceeded", "uploads").await;
    retry_after(&headers);
    assert_eq!(all_jobs(&app).await, jobs, "no job was created");
    // A job without a file is no upload; another account has its own places.
    accepted_id(alice.ingest_json(json!({})).await).await;
    bob.tus().created(10, "{}").await;

    // Finishing an upload frees its place.
    let done = tus
        .patch(first, 0)
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 204);
    let third = tus.created(10, "{}").await;
    assert_refused(
        tus.create(10, "{}").send().await.unwrap(),
        429,
        "quota_exceeded",
        "uploads",
    )
    .await;
    // So does ending one.
    assert_eq!(tus.terminate(second).send().await.unwrap().status(), 204);
    let fourth = tus.created(10, "{}").await;

    // A one-shot upload in flight holds a place too.
    assert_eq!(tus.terminate(third).send().await.unwrap().status(), 204);
    let in_flight = start_partial_upload_with(app.address, alice.bearer(), 100_000, 1_000).await;
    eventually(
        "the one-shot upload is receiving",
        Duration::from_secs(10),
        async || (usage(&alice.me().await).1 == 2).then_some(()),
    )
    .await;
    assert_refused(
        tus.create(10, "{}").send().await.unwrap(),
        429,
        "quota_exceeded",
        "uploads",
    )
    .await;
    drop(in_flight);
    eventually(
        "the cut upload's place is free",
        Duration::from_secs(10),
        async || (tus.create(10, "{}").send().await.unwrap().status() == 201).then_some(()),
    )
    .await;
    assert_eq!(app.admin().job(fourth).await["status"], "receiving");
}

/// Settings for the rate tests: slow enough that a test outruns it, and addresses taken from
/// `X-Forwarded-For` so that each client can come from its own address (the per-address limit
/// then plays no part).
fn rate_limited(settings: &mut ingest::server::config::Settings, per_second: u64, burst: u32) {
    settings.rate_limit_per_second = per_second;
    settings.rate_limit_burst = burst;
    settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

/// A client address not used before (in this test binary): requests that come each from a
/// fresh address are refused by their account's bucket alone, never by an address's.
fn fresh_address() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("10.{}.{}.{}", 100 + (n >> 16), (n >> 8) & 0xff, n & 0xff)
}

/// Requests `GET /api/me`, each from a fresh address, until one is refused (`limit` requests
/// at most).
async fn until_refused(caller: &ApiClient, limit: usize) -> Option<reqwest::Response> {
    for _ in 0..limit {
        let response = caller
            .behind_proxy_as(&fresh_address())
            .get("/api/me")
            .await;
        if response.status() == 429 {
            return Some(response);
        }
    }
    None
}

/// Of three requests made by `request` (each from a fresh address), those refused with 429.
async fn refused_of_three(
    request: impl AsyncFn(String) -> reqwest::Response,
) -> Vec<reqwest::Response> {
    let mut refused = Vec::new();
    for _ in 0..3 {
        let response = request(fresh_address()).await;
        if response.status() == 429 {
            refused.push(response);
        }
    }
    refused
}

#[tokio::test]
async fn requests_per_second_are_counted_per_account_across_its_keys_and_spare_other_accounts() {
    let app = spawn_app_with(|s| rate_limited(s, 1, 10)).await;
    let admin = app.admin().behind_proxy_as("10.0.0.100");
    admin.create_account("alice", "member").await;
    admin.create_account("bob", "member").await;
    let first_key = admin.with_key(admin.issue_key("alice").await);
    let second_key = admin.with_key(admin.issue_key("alice").await);
    let bob = admin.with_key(admin.issue_key("bob").await);

    let refused = until_refused(&first_key, 40)
        .await
        .expect("the account's rate was never enforced");
    let headers = assert_refused(refused, 429, "too_many_requests", "requests_per_second").await;
    retry_after(&headers);
    // The second key draws from the same bucket: nearly nothing is left (one request may
    // have been refilled meanwhile), where a bucket of its own would take ten.
    let refused =
        refused_of_three(async |address| second_key.behind_proxy_as(&address).get("/api/me").await)
            .await;
    assert!(refused.len() >= 2, "the second key had its own allowance");
    for response in refused {
        assert_refused(response, 429, "too_many_requests", "requests_per_second").await;
    }
    // Another account is untouched.
    for _ in 0..5 {
        let answer = bob.behind_proxy_as(&fresh_address()).get("/api/me").await;
        assert_eq!(answer.status(), 200);
    }
}

#[tokio::test]
async fn a_session_opened_with_a_key_shares_the_accounts_api_bucket_and_the_page_has_its_own() {
    let app = spawn_app_with(|s| rate_limited(s, 1, 10)).await;
    let admin = app.admin().behind_proxy_as("10.0.0.100");
    admin.create_account("alice", "member").await;
    let key = admin.with_key(admin.issue_key("alice").await);
    let session = key.signed_in().await;

    until_refused(&key, 40)
        .await
        .expect("the account's rate was never enforced");
    // The browser's requests come from the same account: its REST calls draw on the same
    // bucket…
    let refused =
        refused_of_three(async |address| session.behind_proxy_as(&address).get("/api/jobs").await)
            .await;
    assert!(
        refused.len() >= 2,
        "the session's API calls had their own allowance"
    );
    // …while the page's server functions have a bucket of their own, at the same rate (as the
    // per-address limit does), so a script that uses up its account's API rate does not lock
    // its people out of the page.
    let list = async |address: String| {
        session
            .behind_proxy_as(&address)
            .rpc("list_jobs", &[("limit", "10")])
            .await
    };
    assert_eq!(list(fresh_address()).await.status(), 200);
    let mut refused = None;
    for _ in 0..40 {
        let response = list(fresh_address()).await;
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("the page's calls were never held to the account's rate");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["quota"], "requests_per_second", "{body}");
}

#[tokio::test]
async fn an_accounts_own_rate_applies_even_where_the_server_sets_no_default_rate() {
    // The test server's default: no rate limit.
    let app = spawn_app().await;
    let alice = app.member("alice").await;
    let bob = app.member("bob").await;
    assert_eq!(
        alice.me().await["quotas"]["max_requests_per_second"],
        Value::Null
    );
    let set = app
        .admin()
        .set_quotas("alice", json!({"max_requests_per_second": 1}))
        .await;
    assert_eq!(set.status(), 200);
    assert_eq!(alice.me().await["quotas"]["max_requests_per_second"], 1);
    let refused = eventually("alice's own rate applies", PROPAGATION, async || {
        until_refused(&alice, 20).await
    })
    .await;
    assert_refused(refused, 429, "too_many_requests", "requests_per_second").await;
    for _ in 0..20 {
        assert_eq!(bob.get("/api/me").await.status(), 200);
    }
}

#[tokio::test]
async fn by_default_an_account_has_no_storage_or_upload_quota_of_its_own() {
    // The defaults keep INGEST_TOKEN's behaviour (and every existing test) as before; the
    // server-wide caps still bound uploads.
    let app = spawn_app().await;
    let alice = app.member("alice").await;
    let me = alice.me().await;
    assert_eq!(me["quotas"]["max_stored_bytes"], Value::Null, "{me}");
    assert_eq!(me["quotas"]["max_uploads"], Value::Null, "{me}");
    assert_eq!(usage(&me), (0, 0));
}

#[tokio::test]
async fn an_admin_sets_an_accounts_quotas_and_they_apply_from_the_next_requests() {
    let app = spawn_app_with(|s| {
        s.quota_stored_bytes = 5_000;
        s.quota_uploads = 10;
    })
    .await;
    let alice = app.member("alice").await;
    let bob = app.member("bob").await;
    let admin = app.admin();
    for member in [&alice, &bob] {
        member.tus().created(4_000, "{}").await;
        assert_eq!(
            member.me().await["quotas"],
            json!({"max_stored_bytes": 5_000, "max_uploads": 10, "max_requests_per_second": null})
        );
    }

    // A lower limit for alice alone.
    let set = admin
        .set_quotas("alice", json!({"max_stored_bytes": 3_000, "max_uploads": null, "max_requests_per_second": null}))
        .await;
    assert_eq!(set.status(), 200);
    let info: Value = set.json().await.unwrap();
    assert_eq!(info["name"], "alice");
    assert_eq!(
        info["quotas"],
        json!({"max_stored_bytes": 3_000, "max_uploads": null, "max_requests_per_second": null})
    );
    eventually("alice's lower limit applies", PROPAGATION, async || {
        let answer = alice.tus().create(10, "{}").send().await.unwrap();
        (answer.status() == 413).then_some(())
    })
    .await;
    assert_refused(
        alice.tus().create(10, "{}").send().await.unwrap(),
        413,
        "quota_exceeded",
        "stored_bytes",
    )
    .await;
    assert_eq!(alice.me().await["quotas"]["max_stored_bytes"], 3_000);
    bob.tus().created(10, "{}").await;

    // 0: no limit on bytes; and one upload at once.
    let set = admin
        .set_quotas(
            "alice",
            json!({"max_stored_bytes": 0, "max_uploads": 1, "max_requests_per_second": null}),
        )
        .await;
    assert_eq!(set.status(), 200);
    eventually("alice's upload limit applies", PROPAGATION, async || {
        let answer = alice.tus().create(1_000_000, "{}").send().await.unwrap();
        (answer.status() == 429).then_some(())
    })
    .await;
    assert_refused(
        alice.tus().create(1_000_000, "{}").send().await.unwrap(),
        429,
        "quota_exceeded",
        "uploads",
    )
    .await;
    assert_eq!(
        alice.me().await["quotas"],
        json!({"max_stored_bytes": null, "max_uploads": 1, "max_requests_per_second": null})
    );

    // null: back to the server's defaults.
    let set = admin
        .set_quotas(
            "alice",
            json!({"max_stored_bytes": null, "max_uploads": null, "max_requests_per_second": null}),
        )
        .await;
    assert_eq!(set.status(), 200);
    eventually("alice's defaults apply again", PROPAGATION, async || {
        let quotas = alice.me().await["quotas"].clone();
        (quotas["max_uploads"] == 10).then_some(())
    })
    .await;
    alice.tus().created(500, "{}").await;
    let listed = admin.get_json("/api/accounts").await;
    let listed_alice = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|account| account["name"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(
        listed_alice["quotas"],
        json!({"max_stored_bytes": null, "max_uploads": null, "max_requests_per_second": null})
    );

    // Only an admin sets quotas, only on an account that exists, only with numbers.
    let by_member = alice
        .request(Method::PUT, "/api/accounts/alice/quotas")
        .json(&json!({"max_stored_bytes": 0}))
        .send()
        .await
        .unwrap();
    assert_error(by_member, 403, "forbidden").await;
    assert_error(
        admin.set_quotas("nobody", json!({"max_uploads": 1})).await,
        404,
        "not_found",
    )
    .await;
    let bad = admin.set_quotas("alice", json!({"max_uploads": -1})).await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn an_accounts_requests_per_second_override_applies_within_seconds_and_spares_others() {
    let app = spawn_app_with(|s| rate_limited(s, 100, 50)).await;
    let admin = app.admin().behind_proxy_as("10.0.0.100");
    admin.create_account("alice", "member").await;
    admin.create_account("bob", "member").await;
    let alice = admin
        .with_key(admin.issue_key("alice").await)
        .behind_proxy_as("10.0.0.1");
    let bob = admin
        .with_key(admin.issue_key("bob").await)
        .behind_proxy_as("10.0.0.2");
    assert_eq!(alice.me().await["quotas"]["max_requests_per_second"], 100);

    let set = admin
        .set_quotas(
            "alice",
            json!({"max_stored_bytes": null, "max_uploads": null, "max_requests_per_second": 1}),
        )
        .await;
    assert_eq!(set.status(), 200);
    // Rounds of 20 requests twice a second: 40 a second is well within the default of 100
    // (and its burst of 50), far beyond alice's 1.
    let round = async |caller: &ApiClient| {
        let mut refused = None;
        for _ in 0..20 {
            let response = caller.get("/api/me").await;
            if response.status() == 429 {
                refused = Some(response);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        refused
    };
    let refused = eventually(
        "alice's lower rate applies",
        Duration::from_secs(8),
        async || {
            assert!(
                round(&bob).await.is_none(),
                "bob was limited at alice's rate"
            );
            round(&alice).await
        },
    )
    .await;
    let headers = assert_refused(refused, 429, "too_many_requests", "requests_per_second").await;
    retry_after(&headers);
    assert!(
        round(&bob).await.is_none(),
        "bob was limited at alice's rate"
    );
    let me = eventually("alice may ask again", Duration::from_secs(5), async || {
        let response = alice.get("/api/me").await;
        if response.status() == 200 {
            Some(response.json::<Value>().await.unwrap())
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            None
        }
    })
    .await;
    assert_eq!(me["quotas"]["max_requests_per_second"], 1);
}

#[tokio::test]
async fn key_changes_a_quota_refusal_and_a_failed_sign_in_are_audited_by_key_id_never_the_key() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let env = [
        ("INGEST_QUOTA_STORED_BYTES", "1000"),
        ("INGEST_LOG_FORMAT", "json"),
    ];
    let server = Server::start_with(&data_dir, "server.log", &env).await;
    let admin = ApiClient::at(server.address(), Credential::Bearer(TOKEN.to_owned()));
    admin.create_account("alice", "member").await;
    let issued = admin.issue_key("alice").await;
    let key_id = issued.key_id.clone();
    let key = issued.key.clone();
    let alice = admin.with_key(issued);

    // The audit lines (target `audit`) that name the key id.
    let audited = || -> Vec<Value> {
        server
            .log()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["target"] == "audit" && line.to_string().contains(&key_id))
            .collect()
    };
    let created = eventually(
        "the key's creation is audited",
        Duration::from_secs(5),
        async || {
            let lines = audited();
            (!lines.is_empty()).then_some(lines.len())
        },
    )
    .await;

    let refused = alice.tus().create(5_000, "{}").send().await.unwrap();
    assert_refused(refused, 413, "quota_exceeded", "stored_bytes").await;
    let refusal = eventually(
        "the refusal is audited",
        Duration::from_secs(5),
        async || {
            let lines = audited();
            (lines.len() > created).then(|| lines[created..].to_vec())
        },
    )
    .await;
    assert!(
        refusal
            .iter()
            .any(|line| line.to_string().contains("stored_bytes")),
        "the refusal's audit line names the quota: {refusal:?}"
    );
    let before_revoking = audited().len();

    let revoked = admin
        .send(Method::DELETE, &format!("/api/keys/{key_id}"))
        .await;
    assert_eq!(revoked.status(), 204);
    eventually(
        "the revocation is audited",
        Duration::from_secs(5),
        async || (audited().len() > before_revoking).then_some(()),
    )
    .await;
    let before_signing_in = audited().len();

    // A sign-in with the revoked key fails, and is audited by its key id too.
    let failed = admin
        .client
        .post(admin.url("/api/session"))
        .json(&json!({"token": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    eventually(
        "the failed sign-in is audited",
        Duration::from_secs(5),
        async || (audited().len() > before_signing_in).then_some(()),
    )
    .await;

    // The server knows whose key it created, revoked or refused (a sign-in may not).
    for line in &audited()[..before_signing_in] {
        assert!(
            line.to_string().contains("alice"),
            "an audit line without the account: {line}"
        );
    }
    let log = server.log();
    let secret = &key[key.len() - 64..];
    assert!(!log.contains(secret), "the key is in the log");
    assert!(!log.contains(TOKEN), "the token is in the log");
}

#[tokio::test]
async fn an_upload_of_deferred_length_is_held_to_the_quota_as_its_bytes_arrive() {
    let app = spawn_app_with(|s| s.quota_stored_bytes = 1_000).await;
    let alice = app.member("alice").await;
    let created = alice
        .request(reqwest::Method::POST, "/api/uploads")
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Defer-Length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = JobId::parse(
        created.headers()["location"]
            .to_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap(),
    )
    .unwrap();
    // More bytes than the quota, with the length still unstated: refused as they arrive.
    let sent = alice
        .tus()
        .patch(id, 0)
        .body(vec![1u8; 2_000])
        .send()
        .await
        .unwrap();
    assert_refused(sent, 413, "quota_exceeded", "stored_bytes").await;
    assert_eq!(
        alice.tus().offset(id).await,
        0,
        "nothing of the refused bytes counts"
    );
    // Stating a length over the quota is refused too; one that fits goes through.
    let stated = alice
        .tus()
        .patch(id, 0)
        .header("Upload-Length", "5000")
        .send()
        .await
        .unwrap();
    assert_refused(stated, 413, "quota_exceeded", "stored_bytes").await;
    let fits = alice
        .tus()
        .patch(id, 0)
        .header("Upload-Length", "600")
        .body(vec![2u8; 600])
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 204);
    assert_eq!(alice.tus().offset(id).await, 600);
    assert!(app.temp_files().is_empty(), "{:?}", app.temp_files());
}

#[tokio::test]
async fn a_token_in_the_query_does_not_move_a_request_to_another_bucket() {
    let app = spawn_app().await;
    let alice = app.member("alice").await;
    let set = app
        .admin()
        .set_quotas("alice", json!({"max_requests_per_second": 1}))
        .await;
    assert_eq!(set.status(), 200);
    // `?token=` counts only on the WebSocket route; elsewhere alice's header decides, so her
    // rate holds whatever the query says.
    let refused = eventually(
        "alice's rate holds with a token in the query",
        PROPAGATION,
        async || {
            for _ in 0..20 {
                let response = alice.get("/api/jobs?token=not-a-key").await;
                if response.status() == 429 {
                    return Some(response);
                }
            }
            None
        },
    )
    .await;
    assert_refused(refused, 429, "too_many_requests", "requests_per_second").await;
}

#[tokio::test]
async fn metrics_are_for_admins_only() {
    let app = spawn_app().await;
    let alice = app.member("alice").await;
    assert_eq!(alice.get("/metrics").await.status(), 403);
    assert_eq!(app.admin().get("/metrics").await.status(), 200);
}
