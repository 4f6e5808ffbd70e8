//! Job ownership and isolation between accounts: every job belongs to the account that created
//! it; a member sees only its own (another account's job answers exactly as an unknown id on
//! every route, and is left untouched); an admin sees and manages every job but cannot write
//! into another account's upload; identical bytes from two accounts are stored once without
//! either being able to tell; a removed account's name taken again starts with nothing.
use crate::helpers::*;
use ingest::domain::{JobId, JobStatus};
use reqwest::Method;
use serde_json::{json, Value};
use std::{collections::BTreeMap, time::Duration};

/// What bob's jobs carry, to look for in answers alice gets.
const BOB_FILENAME: &str = "bobs-private-report.bin";
const BOB_MARKER: &str = "bobs-metadata-marker-5e1f";
/// Bob's pending upload: declared, half of its bytes in.
const PENDING_LENGTH: u64 = 10;
const PENDING_FIRST_HALF: &[u8] = b"01234";
const PENDING_SECOND_HALF: &[u8] = b"56789";

/// Two members, and bob's jobs: one completed with a file, one tus upload half received.
struct TwoMembers {
    /// The server, running as long as this lives.
    _app: TestApp,
    alice: ApiClient,
    bob: ApiClient,
    bob_done: JobId,
    bob_pending: JobId,
    bob_bytes: Vec<u8>,
}

/// What bob can observe of his jobs, to compare before and after alice's attempts.
#[derive(Debug, PartialEq)]
struct BobsView {
    done: Value,
    pending: Value,
    pending_offset: u64,
    content: Vec<u8>,
}

impl TwoMembers {
    async fn new() -> TwoMembers {
        let app = spawn_app().await;
        let alice = app.member("alice").await;
        let bob = app.member("bob").await;
        let bob_bytes = random_bytes(4096);
        let metadata = json!({"secret": BOB_MARKER}).to_string();
        let done = bob
            .stored_file(BOB_FILENAME, bob_bytes.clone(), &metadata)
            .await;
        let bob_done = job_id_of(&done);
        let tus = bob.tus();
        let bob_pending = tus.created(PENDING_LENGTH, &metadata).await;
        let first = tus
            .patch(bob_pending, 0)
            .body(PENDING_FIRST_HALF)
            .send()
            .await
            .unwrap();
        assert_eq!(first.status(), 204, "bob's first half");
        TwoMembers {
            _app: app,
            alice,
            bob,
            bob_done,
            bob_pending,
            bob_bytes,
        }
    }

    async fn bobs_view(&self) -> BobsView {
        let content = self.bob.content(self.bob_done).await;
        assert_eq!(content.status(), 200, "bob downloads his file");
        BobsView {
            done: self.bob.job(self.bob_done).await,
            pending: self.bob.job(self.bob_pending).await,
            pending_offset: self.bob.tus().offset(self.bob_pending).await,
            content: content.bytes().await.unwrap().to_vec(),
        }
    }

    /// Bob's jobs are as they were, and his upload still takes its remaining bytes.
    async fn assert_bob_untouched(&self, before: BobsView) {
        let after = self.bobs_view().await;
        assert_eq!(after, before, "alice's attempts changed bob's jobs");
        assert_eq!(after.content, self.bob_bytes);
        let rest = self
            .bob
            .tus()
            .patch(self.bob_pending, PENDING_FIRST_HALF.len() as u64)
            .body(PENDING_SECOND_HALF)
            .send()
            .await
            .unwrap();
        assert_eq!(rest.status(), 204, "bob finishes his upload");
    }
}

/// The data a rendered page hands to the browser for hydration: each
/// `__RESOLVED_RESOURCES[n] = …;` assignment, in order.
fn resolved_resources(html: &str) -> String {
    // The distinct values, without their slot numbers: the server renders a page's Suspense
    // more than once, so how many slots resolve, and in which order, varies between renders
    // of the same page; what they resolve to does not.
    let values: std::collections::BTreeSet<&str> = html
        .split("__RESOLVED_RESOURCES[")
        .skip(1)
        .map(|assignment| assignment.split("</script>").next().unwrap_or_default())
        .map(|assignment| {
            assignment
                .split_once("] = ")
                .map_or(assignment, |(_, value)| value)
        })
        .collect();
    values.into_iter().collect::<Vec<_>>().join("\n")
}

fn job_id_of(job: &Value) -> JobId {
    JobId::parse(job["job_id"].as_str().expect("a job_id")).unwrap()
}

/// Asks `probe` about `foreign` and about a fresh unknown id; the answers must be the same
/// apart from the id, and the unknown id's must be `expected` (so the probe reached the job
/// lookup: a request refused earlier would be the same for both ids and prove nothing).
async fn assert_answers_like_an_unknown_id(
    what: &str,
    foreign: JobId,
    expected: u16,
    probe: impl AsyncFn(JobId) -> reqwest::Response,
) {
    let unknown = JobId::new();
    let foreign_answer = Answer::of(probe(foreign).await, &[foreign]).await;
    let unknown_answer = Answer::of(probe(unknown).await, &[unknown]).await;
    assert_eq!(
        unknown_answer.status, expected,
        "{what}: the unknown id's answer {unknown_answer:?}"
    );
    assert_eq!(
        foreign_answer, unknown_answer,
        "{what}: another account's job answers unlike an unknown id"
    );
}

#[tokio::test]
async fn each_member_lists_only_its_own_jobs_and_the_admin_lists_every_job_with_its_owner() {
    let app = spawn_app().await;
    let alice = app.member("alice").await;
    let bob = app.member("bob").await;
    let ops = app.account("ops", "admin").await;
    let admin = app.admin();
    let mut owners = BTreeMap::new();
    // Alice's jobs first, then more of bob's than a page of two holds: a member's page is
    // filtered before it is cut.
    for (caller, name, count) in [(&alice, "alice", 2), (&bob, "bob", 3), (&admin, "admin", 1)] {
        for n in 0..count {
            let id = accepted_id(caller.ingest_json(json!({"metadata": {"n": n}})).await).await;
            owners.insert(id.to_string(), name);
            app.wait_until_finished(id).await;
        }
    }
    let ids_of = |name: &str| -> Vec<String> {
        let mut ids: Vec<String> = owners
            .iter()
            .filter(|(_, owner)| **owner == name)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    };
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };

    for (caller, name) in [(&alice, "alice"), (&bob, "bob")] {
        let page = caller.jobs("").await;
        for job in page["jobs"].as_array().unwrap() {
            assert_eq!(job["owner"], name, "{job}");
        }
        assert_eq!(
            sorted(caller.job_ids("").await),
            ids_of(name),
            "{name}'s list"
        );
        // The filter applies within the member's own jobs: its own name changes nothing,
        // another account's name gives an empty page rather than an error.
        assert_eq!(
            sorted(caller.job_ids(&format!("owner={name}")).await),
            ids_of(name)
        );
        let other = if name == "alice" { "bob" } else { "alice" };
        assert_eq!(
            caller.job_ids(&format!("owner={other}")).await,
            Vec::<String>::new()
        );
        assert_eq!(caller.job_ids("owner=admin").await, Vec::<String>::new());
    }
    assert_eq!(sorted(alice.job_ids("limit=2").await), ids_of("alice"));
    assert_eq!(
        sorted(alice.job_ids("status=completed").await),
        ids_of("alice")
    );

    // The token and an admin account's key see every job, each with its owner, and can
    // filter by owner.
    for caller in [&admin, &ops] {
        let page = caller.jobs("limit=100").await;
        let seen: BTreeMap<String, String> = page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|job| {
                let owner = job["owner"].as_str().expect("an owner").to_owned();
                (job["job_id"].as_str().unwrap().to_owned(), owner)
            })
            .collect();
        let expected: BTreeMap<String, String> = owners
            .iter()
            .map(|(id, owner)| (id.clone(), (*owner).to_owned()))
            .collect();
        assert_eq!(seen, expected);
        for name in ["alice", "bob", "admin"] {
            let filtered = caller.job_ids(&format!("owner={name}")).await;
            assert_eq!(sorted(filtered), ids_of(name), "owner={name}");
        }
    }

    // The page's server function lists the same way, for sessions opened with each credential.
    for (caller, expected) in [
        (&alice, ids_of("alice")),
        (&bob, ids_of("bob")),
        (&admin, sorted(owners.keys().cloned().collect())),
    ] {
        let session = caller.signed_in().await;
        let listed = session.rpc("list_jobs", &[("limit", "100")]).await;
        assert_eq!(listed.status(), 200);
        let page: Value = listed.json().await.unwrap();
        let ids: Vec<String> = page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|job| job["job_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(sorted(ids), expected, "/rpc/list_jobs");
    }
}

#[tokio::test]
async fn every_job_answer_names_its_owner_on_rest_websocket_and_server_functions() {
    let app = spawn_app().await;
    let alice = app.member("alice").await;
    let id = alice.tus().created(10, "{}").await;
    assert_eq!(alice.job(id).await["owner"], "alice");
    assert_eq!(app.admin().job(id).await["owner"], "alice");

    let mut socket = alice.ws(id).await.expect("alice follows her own job");
    let first = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut socket),
    )
    .await
    .expect("a first message")
    .unwrap()
    .unwrap();
    let first: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(first["owner"], "alice", "{first}");

    let session = alice.signed_in().await;
    let by_rpc: Value = session
        .rpc("job_status", &[("id", &id.to_string())])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_rpc["owner"], "alice", "{by_rpc}");

    let token_job = accepted_id(app.admin().ingest_json(json!({})).await).await;
    assert_eq!(app.admin().job(token_job).await["owner"], "admin");
}

#[tokio::test]
async fn for_a_member_a_foreign_job_answers_like_an_unknown_id_on_the_rest_routes() {
    let world = TwoMembers::new().await;
    let before = world.bobs_view().await;
    let alice = &world.alice;
    for foreign in [world.bob_done, world.bob_pending] {
        assert_answers_like_an_unknown_id("GET /api/status", foreign, 404, async |id| {
            alice.status(id).await
        })
        .await;
        assert_answers_like_an_unknown_id("GET content", foreign, 404, async |id| {
            alice.content(id).await
        })
        .await;
        assert_answers_like_an_unknown_id("HEAD content", foreign, 404, async |id| {
            alice
                .send(Method::HEAD, &format!("/api/jobs/{id}/content"))
                .await
        })
        .await;
        assert_answers_like_an_unknown_id("POST cancel", foreign, 404, async |id| {
            alice.cancel(id).await
        })
        .await;
        assert_answers_like_an_unknown_id("DELETE job", foreign, 404, async |id| {
            alice.delete(id).await
        })
        .await;
    }
    // The same through a session opened with alice's key.
    let session = alice.signed_in().await;
    assert_answers_like_an_unknown_id("status by session", world.bob_done, 404, async |id| {
        session.status(id).await
    })
    .await;
    assert_answers_like_an_unknown_id("delete by session", world.bob_done, 404, async |id| {
        session.delete(id).await
    })
    .await;
    world.assert_bob_untouched(before).await;
}

#[tokio::test]
async fn for_a_member_a_foreign_job_answers_like_an_unknown_id_on_the_websocket_in_every_form() {
    let world = TwoMembers::new().await;
    let before = world.bobs_view().await;
    let alice = &world.alice;
    let session = alice.signed_in().await;
    for foreign in [world.bob_done, world.bob_pending] {
        // The handshake's answer, whole: the credential in a header (Authorization, or the
        // session's cookie), or as `?token=`.
        for (form, caller, in_query) in [
            ("Authorization header", alice, false),
            ("?token=", alice, true),
            ("session cookie", &session, false),
        ] {
            let what = format!("WebSocket with the {form}");
            assert_answers_like_an_unknown_id(&what, foreign, 404, async |id| {
                caller.ws_handshake(id, in_query).await
            })
            .await;
        }
        // And as a WebSocket client sees it.
        for opened in [
            alice.ws(foreign).await,
            alice.ws_with_query_token(foreign).await,
        ] {
            match opened {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status(), 404)
                }
                Ok(_) => panic!("alice opened a WebSocket on bob's job"),
                Err(other) => panic!("the handshake failed without an answer: {other}"),
            }
        }
    }
    // Bob follows his own job the same ways (the forms themselves work).
    assert!(world.bob.ws(world.bob_pending).await.is_ok());
    assert!(world
        .bob
        .ws_with_query_token(world.bob_pending)
        .await
        .is_ok());
    assert_eq!(
        world
            .bob
            .ws_handshake(world.bob_pending, true)
            .await
            .status(),
        101
    );
    world.assert_bob_untouched(before).await;
}

#[tokio::test]
async fn for_a_member_a_foreign_upload_answers_like_an_unknown_id_on_the_tus_routes() {
    let world = TwoMembers::new().await;
    let before = world.bobs_view().await;
    let alice = &world.alice;
    let offset = PENDING_FIRST_HALF.len() as u64;
    for foreign in [world.bob_pending, world.bob_done] {
        assert_answers_like_an_unknown_id("tus HEAD", foreign, 404, async |id| {
            alice.tus().head(id).send().await.unwrap()
        })
        .await;
        // The right offset and exactly the missing bytes: were the upload alice's, this
        // would complete it.
        assert_answers_like_an_unknown_id("tus PATCH", foreign, 404, async |id| {
            alice
                .tus()
                .patch(id, offset)
                .body(PENDING_SECOND_HALF)
                .send()
                .await
                .unwrap()
        })
        .await;
        assert_answers_like_an_unknown_id("tus DELETE", foreign, 404, async |id| {
            alice.tus().terminate(id).send().await.unwrap()
        })
        .await;
    }
    let session = alice.signed_in().await;
    assert_answers_like_an_unknown_id("tus PATCH by session", world.bob_pending, 404, async |id| {
        session
            .tus()
            .patch(id, offset)
            .body(PENDING_SECOND_HALF)
            .send()
            .await
            .unwrap()
    })
    .await;
    world.assert_bob_untouched(before).await;
}

#[tokio::test]
async fn for_a_member_a_foreign_job_answers_like_an_unknown_id_in_server_functions_and_the_page() {
    let world = TwoMembers::new().await;
    let before = world.bobs_view().await;
    let session = world.alice.signed_in().await;
    // As the page calls them (the session cookie), and with the key in a header.
    for caller in [&session, &world.alice] {
        for foreign in [world.bob_done, world.bob_pending] {
            assert_answers_like_an_unknown_id("/rpc/job_status", foreign, 404, async |id| {
                caller.rpc("job_status", &[("id", &id.to_string())]).await
            })
            .await;
            assert_answers_like_an_unknown_id("/rpc/cancel_job", foreign, 404, async |id| {
                caller.rpc("cancel_job", &[("id", &id.to_string())]).await
            })
            .await;
        }
    }

    // The job page. Its HTML varies from one render to the next for the same id (a fresh
    // nonce; the job lookup's result inline or streamed after the page's head, and with it
    // the status: an unknown id gets 404 or 200 from one request to the next). So: the data
    // the page was rendered with (the resources it hands to the browser) is the same as for
    // an unknown id, nothing of bob's job is in it, and its status is one an unknown id gets.
    let page = async |caller: &ApiClient, id: JobId| {
        let response = caller.get(&format!("/jobs/{id}")).await;
        let status = response.status().as_u16();
        let html = response.text().await.unwrap();
        (status, html.replace(&id.to_string(), "{id}"))
    };
    let bob_session = world.bob.signed_in().await;
    let (status, own) = page(&bob_session, world.bob_done).await;
    assert_eq!(status, 200);
    assert!(
        own.contains(BOB_FILENAME) && resolved_resources(&own).contains(BOB_MARKER),
        "bob's own page shows his job (so its absence below means something)"
    );
    for foreign in [world.bob_done, world.bob_pending] {
        let (foreign_status, foreign_page) = page(&session, foreign).await;
        let (_, unknown_page) = page(&session, JobId::new()).await;
        assert_eq!(
            resolved_resources(&foreign_page),
            resolved_resources(&unknown_page),
            "/jobs/{{id}} of bob's job is rendered with other data than an unknown id's"
        );
        for secret in [BOB_FILENAME, BOB_MARKER] {
            assert!(
                !foreign_page.contains(secret),
                "alice's page of bob's job shows {secret}"
            );
        }
        let seen = within(Duration::from_secs(10), async || {
            let (status, _) = page(&session, JobId::new()).await;
            (status == foreign_status).then_some(())
        })
        .await;
        assert!(
            seen.is_some(),
            "/jobs/{{id}} of bob's job answers {foreign_status}, which no unknown id got"
        );
    }
    world.assert_bob_untouched(before).await;
}

#[tokio::test]
async fn an_admin_sees_downloads_cancels_and_deletes_a_members_jobs() {
    let app = spawn_app().await;
    let alice = app.member("alice").await;
    let ops = app.account("ops", "admin").await;
    let bytes = random_bytes(2048);
    let done = job_id_of(&alice.stored_file("a.bin", bytes.clone(), "{}").await);
    let pending = alice.tus().created(10, "{}").await;
    let another = alice.tus().created(10, "{}").await;

    for admin in [app.admin(), ops] {
        let job = admin.job(done).await;
        assert_eq!(job["owner"], "alice");
        let content = admin.content(done).await;
        assert_eq!(content.status(), 200);
        assert_eq!(content.bytes().await.unwrap().to_vec(), bytes);
        assert_eq!(admin.tus().offset(pending).await, 0);
        let mut socket = admin
            .ws(pending)
            .await
            .expect("the admin follows alice's job");
        let first = tokio::time::timeout(
            Duration::from_secs(10),
            futures::StreamExt::next(&mut socket),
        )
        .await
        .expect("a first message");
        assert!(first.is_some());
    }
    let admin = app.admin();
    let cancelled = admin.cancel(pending).await;
    assert_eq!(cancelled.status(), 200);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["owner"], "alice");
    assert_eq!(alice.job(pending).await["status"], "cancelled");
    assert_eq!(
        admin
            .tus()
            .terminate(another)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(alice.job(another).await["status"], "cancelled");
    assert_eq!(admin.delete(done).await.status(), 204);
    assert_error(alice.status(done).await, 404, "not_found").await;
}

#[tokio::test]
async fn only_the_owner_sends_bytes_to_an_upload_an_admin_gets_403() {
    let app = spawn_app().await;
    let alice = app.member("alice").await;
    let ops = app.account("ops", "admin").await;
    let bytes = b"0123456789";
    let id = alice.tus().created(bytes.len() as u64, "{}").await;
    for admin in [app.admin(), ops] {
        let refused = admin
            .tus()
            .patch(id, 0)
            .body(&bytes[..])
            .send()
            .await
            .unwrap();
        assert_error(refused, 403, "forbidden").await;
        assert_eq!(alice.tus().offset(id).await, 0, "nothing was written");
    }
    let sent = alice
        .tus()
        .patch(id, 0)
        .body(&bytes[..])
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 204);
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(bytes));
}

/// An accepted upload's answer, comparable with another's: the id replaced.
async fn accepted_answer(response: reqwest::Response) -> (JobId, Answer) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    assert_eq!(status, 202, "{body}");
    let id = job_id_of(&serde_json::from_str(&body).unwrap());
    let answer = Answer::from_parts(status, &headers, &body, &[id]);
    (id, answer)
}

/// A completed job's fields that do not depend on which job or which bytes it is.
fn shape(job: &Value) -> Value {
    let mut job = job.clone();
    for varying in ["job_id", "sha256", "created_at", "updated_at"] {
        job.as_object_mut().unwrap().remove(varying);
    }
    job
}

#[tokio::test]
async fn identical_bytes_from_two_accounts_are_stored_once_and_neither_can_tell() {
    let app = spawn_app().await;
    let alice = app.member("alice").await;
    let bob = app.member("bob").await;
    let content_of = |bytes: Vec<u8>| [b"dedup-".to_vec(), bytes].concat();
    let shared = content_of(random_bytes(64 * 1024));
    let digest = sha256_hex(&shared);
    let metadata = r#"{"kind":"report"}"#;

    let alices = alice
        .stored_file("same.bin", shared.clone(), metadata)
        .await;
    assert_eq!(alices["sha256"], digest.as_str());
    // Bob comes later than a whole second, so a date taken from the blob would be visibly
    // older than his job.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let (bobs_id, bobs_answer) =
        accepted_answer(bob.ingest_file("same.bin", shared.clone(), metadata).await).await;
    let fresh = content_of(random_bytes(64 * 1024));
    let (fresh_id, fresh_answer) =
        accepted_answer(bob.ingest_file("same.bin", fresh.clone(), metadata).await).await;
    assert_eq!(
        bobs_answer, fresh_answer,
        "the upload's answer tells known content from new"
    );
    let bobs = app.wait_until_finished(bobs_id).await;
    let fresh_job = app.wait_until_finished(fresh_id).await;
    assert_eq!(bobs.sha256.unwrap().to_hex(), digest);
    assert_eq!(fresh_job.sha256.unwrap().to_hex(), sha256_hex(&fresh));
    assert_eq!(
        shape(&bob.job(bobs_id).await),
        shape(&bob.job(fresh_id).await),
        "bob's job tells known content from new"
    );
    assert_eq!(bob.job(bobs_id).await["status"], "completed");

    // Stored once: one blob for the shared bytes, one for the fresh ones, nothing else.
    assert!(app.blob_file(&digest).is_file());
    assert_eq!(blob_count(&app), 2);

    // The download's date is bob's job's, not the older blob's.
    let download = bob.content(bobs_id).await;
    assert_eq!(download.status(), 200);
    let last_modified = download.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_owned();
    let last_modified = httpdate::parse_http_date(&last_modified).unwrap();
    let created = bob_created_at(&bob.job(bobs_id).await);
    assert!(
        last_modified >= created,
        "Last-Modified {last_modified:?} is before bob's job was created ({created:?})"
    );
    assert_eq!(download.bytes().await.unwrap().to_vec(), shared);

    // Alice deleting her job leaves bob's file in place.
    assert_eq!(alice.delete(job_id_of(&alices)).await.status(), 204);
    assert!(app.blob_file(&digest).is_file());
    let again = bob.content(bobs_id).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.bytes().await.unwrap().to_vec(), shared);
    // Once no job holds it, it goes.
    assert_eq!(bob.delete(bobs_id).await.status(), 204);
    assert!(!app.blob_file(&digest).exists());
}

/// A job's `created_at`, rounded down to the second (HTTP dates have no fractions).
fn bob_created_at(job: &Value) -> std::time::SystemTime {
    let job: JobStatus = serde_json::from_value(job.clone()).unwrap();
    let seconds = job.created_at.unix_timestamp();
    std::time::UNIX_EPOCH + Duration::from_secs(seconds as u64)
}

fn blob_count(app: &TestApp) -> usize {
    let root = app.data_dir.path().join("blobs");
    std::fs::read_dir(root)
        .unwrap()
        .map(|fanout| {
            let fanout = fanout.unwrap().path();
            if fanout.is_dir() {
                std::fs::read_dir(fanout).unwrap().count()
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test]
async fn an_account_removed_and_created_again_sees_none_of_the_old_ones_jobs_or_keys() {
    let app = spawn_app().await;
    let old = app.member("alice").await;
    let file = job_id_of(&old.stored_file("old.bin", random_bytes(1024), "{}").await);
    let pending = old.tus().created(10, "{}").await;
    let removed = app
        .admin()
        .send(Method::DELETE, "/api/accounts/alice")
        .await;
    assert_eq!(removed.status(), 204);

    let new = app.member("alice").await;
    assert_eq!(new.me().await["account"], "alice");
    assert_eq!(new.job_ids("").await, Vec::<String>::new());
    assert_eq!(new.job_ids("owner=alice").await, Vec::<String>::new());
    for old_job in [file, pending] {
        assert_answers_like_an_unknown_id("status", old_job, 404, async |id| new.status(id).await)
            .await;
        assert_answers_like_an_unknown_id("content", old_job, 404, async |id| {
            new.content(id).await
        })
        .await;
        assert_answers_like_an_unknown_id("tus HEAD", old_job, 404, async |id| {
            new.tus().head(id).send().await.unwrap()
        })
        .await;
    }
    // The old jobs are still there for the admin.
    assert_eq!(app.admin().job(file).await["status"], "completed");

    let keys = app.admin().get_json("/api/accounts/alice/keys").await;
    let listed: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        vec![new.key_id.as_deref().unwrap()],
        "only the new alice's key"
    );
    assert_ne!(old.key_id, new.key_id);
}
