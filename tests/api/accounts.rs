//! Accounts and API keys over HTTP: who `/api/me` says a caller is, the admin routes and their
//! refusals, keys that expire or are revoked (their sessions end, their sockets close), and
//! `INGEST_TOKEN` as the built-in admin.
use crate::helpers::*;
use futures::StreamExt;
use ingest::domain::{AccountName, KeyId, Role};
use serde_json::{json, Value};
use std::time::Duration;
use time::OffsetDateTime;
use tokio_tungstenite::{
    connect_async,
    tungstenite::{protocol::frame::coding::CloseCode, Message},
};

/// How long a change may take to reach every check (the ring refreshes every 500 ms; a change
/// through this server's own routes counts at once).
const PROPAGATION: Duration = Duration::from_secs(5);
/// The lifetime of the key that must work first and then stop.
const EXPIRING_IN: Duration = Duration::from_secs(4);

/// Creates `name` with `role` through the service and returns a new key for it.
async fn account_with_key(app: &TestApp, name: &str, role: Role) -> (String, String) {
    let name = AccountName::parse(name).unwrap();
    app.state
        .accounts
        .add_account(name.clone(), role)
        .await
        .unwrap();
    let created = app.state.accounts.add_key(&name, None).await.unwrap();
    let key = secrecy::ExposeSecret::expose_secret(&created.key).to_owned();
    // The poller picks the key up within its interval; do not wait for it.
    app.state.keys.refresh().await.unwrap();
    (created.key_id.to_string(), key)
}

/// `GET path` with the token: the status and the JSON body.
async fn admin_get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

async fn me(app: &TestApp, credential: &str) -> reqwest::Response {
    app.client
        .get(app.url("/api/me"))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_token_acts_as_the_built_in_admin_account() {
    let app = spawn_app().await;
    let response = me(&app, TOKEN).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, me_with_nothing_stored("admin", "admin", Value::Null));
    // The name is reserved, in any case: no account can take it.
    for name in ["admin", "Admin", "ADMIN"] {
        let taken = app
            .client
            .post(app.url("/api/accounts"))
            .bearer_auth(TOKEN)
            .json(&json!({"name": name, "role": "member"}))
            .send()
            .await
            .unwrap();
        assert_error(taken, 409, "conflict").await;
    }
}

#[tokio::test]
async fn an_admin_manages_accounts_and_keys_over_http_and_a_new_key_works_at_once() {
    let app = spawn_app().await;
    let post = |path: &str, body: Value| {
        app.client
            .post(app.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
    };
    let created = post("/api/accounts", json!({"name": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["name"], "alice");
    assert_eq!(created["role"], "member", "member by default");

    for same in ["alice", "Alice", "ALICE"] {
        let duplicate = post("/api/accounts", json!({"name": same, "role": "admin"}));
        assert_error(duplicate.send().await.unwrap(), 409, "conflict").await;
    }
    let bad_name = post("/api/accounts", json!({"name": "al ice"}));
    assert_error(bad_name.send().await.unwrap(), 400, "invalid_body").await;
    let bad_role = post("/api/accounts", json!({"name": "bob", "role": "root"}));
    assert_error(bad_role.send().await.unwrap(), 400, "invalid_body").await;

    let (status, accounts) = admin_get(&app, "/api/accounts").await;
    assert_eq!(status, 200);
    assert_eq!(accounts.as_array().unwrap().len(), 1);
    assert_eq!(accounts[0]["name"], "alice");

    let issued = post("/api/accounts/alice/keys", json!({"expires_in_days": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), 201);
    let issued: Value = issued.json().await.unwrap();
    let key = issued["key"].as_str().unwrap().to_owned();
    let key_id = issued["key_id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("ingest_{key_id}_")), "{key}");
    assert!(issued["expires_at"].is_string());

    // Usable on the very next request, with the same forms as the token.
    let answer: Value = me(&app, &key).await.json().await.unwrap();
    assert_eq!(
        answer,
        me_with_nothing_stored("alice", "member", json!(key_id))
    );
    let ingested = app
        .client
        .post(app.url("/api/ingest"))
        .bearer_auth(&key)
        .json(&json!({"metadata": "{\"by\":\"alice\"}"}))
        .send()
        .await
        .unwrap();
    accepted_id(ingested).await;

    let (status, keys) = admin_get(&app, "/api/accounts/alice/keys").await;
    assert_eq!(status, 200);
    assert_eq!(keys[0]["key_id"], key_id.as_str());
    assert!(keys[0]["revoked_at"].is_null());
    assert!(
        !keys.to_string().contains(&key[key.len() - 64..]),
        "no secret in lists"
    );

    let unknown = post("/api/accounts/nobody/keys", json!({}));
    assert_error(unknown.send().await.unwrap(), 404, "not_found").await;
    let too_long = post("/api/accounts/alice/keys", json!({"expires_in_days": 0}));
    assert_error(too_long.send().await.unwrap(), 400, "invalid_body").await;
    let (status, _) = admin_get(&app, "/api/accounts/nobody/keys").await;
    assert_eq!(status, 404);
    let (status, _) = admin_get(&app, "/api/accounts/no%20body/keys").await;
    assert_eq!(status, 400);

    let delete = |path: &str| app.client.delete(app.url(path)).bearer_auth(TOKEN).send();
    assert_eq!(
        delete(&format!("/api/keys/{key_id}"))
            .await
            .unwrap()
            .status(),
        204
    );
    assert_error(me(&app, &key).await, 401, "unauthorized").await;
    let (_, keys) = admin_get(&app, "/api/accounts/alice/keys").await;
    assert!(keys[0]["revoked_at"].is_string());
    assert_error(
        delete("/api/keys/0123456789ab").await.unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_error(
        delete("/api/keys/nope").await.unwrap(),
        400,
        "invalid_key_id",
    )
    .await;

    assert_eq!(delete("/api/accounts/alice").await.unwrap().status(), 204);
    assert_error(
        delete("/api/accounts/alice").await.unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_error(
        delete("/api/accounts/admin").await.unwrap(),
        409,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn a_member_key_gets_403_on_every_admin_route_and_200_on_me() {
    let app = spawn_app().await;
    let (key_id, key) = account_with_key(&app, "bob", Role::Member).await;
    let (status, me_body) = {
        let response = me(&app, &key).await;
        (response.status(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(me_body["role"], "member");
    let routes = [
        (reqwest::Method::POST, "/api/accounts".to_owned()),
        (reqwest::Method::GET, "/api/accounts".to_owned()),
        (reqwest::Method::DELETE, "/api/accounts/bob".to_owned()),
        (reqwest::Method::POST, "/api/accounts/bob/keys".to_owned()),
        (reqwest::Method::GET, "/api/accounts/bob/keys".to_owned()),
        (reqwest::Method::DELETE, format!("/api/keys/{key_id}")),
    ];
    for (method, path) in routes {
        let response = app
            .client
            .request(method, app.url(&path))
            .bearer_auth(&key)
            .json(&json!({"name": "mallory", "role": "admin"}))
            .send()
            .await
            .unwrap();
        assert_error(response, 403, "forbidden").await;
    }
    // Nothing changed.
    assert_eq!(me(&app, &key).await.status(), 200);
    let (_, accounts) = admin_get(&app, "/api/accounts").await;
    assert_eq!(accounts.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_admin_account_key_manages_accounts_like_the_token() {
    let app = spawn_app().await;
    let (_, key) = account_with_key(&app, "ops", Role::Admin).await;
    let created = app
        .client
        .post(app.url("/api/accounts"))
        .bearer_auth(&key)
        .json(&json!({"name": "carol"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

#[tokio::test]
async fn an_expired_key_is_refused_and_one_that_expires_stops_working() {
    let app = spawn_app().await;
    let name = AccountName::parse("dave").unwrap();
    let accounts = &app.state.accounts;
    accounts
        .add_account(name.clone(), Role::Member)
        .await
        .unwrap();
    let past = OffsetDateTime::now_utc() - time::Duration::days(1);
    let expired = accounts.add_key(&name, Some(past)).await.unwrap();
    // Long enough that a busy machine still makes the first request in time; the expiry
    // rule itself is pinned by the key ring's unit tests.
    let soon = OffsetDateTime::now_utc() + time::Duration::seconds(EXPIRING_IN.as_secs() as i64);
    let expiring = accounts.add_key(&name, Some(soon)).await.unwrap();
    app.state.keys.refresh().await.unwrap();
    let expose = |key: &secrecy::SecretString| secrecy::ExposeSecret::expose_secret(key).to_owned();

    let refused = me(&app, &expose(&expired.key)).await;
    let message = assert_error(refused, 401, "unauthorized").await;
    assert_eq!(message, "invalid token", "the same answer as any bad key");
    let expiring = expose(&expiring.key);
    assert_eq!(me(&app, &expiring).await.status(), 200);
    eventually(
        "the key has expired",
        EXPIRING_IN + PROPAGATION,
        async || (me(&app, &expiring).await.status() == 401).then_some(()),
    )
    .await;
}

#[tokio::test]
async fn a_bad_key_gets_the_same_401_as_a_bad_token() {
    let app = spawn_app().await;
    let (key_id, key) = account_with_key(&app, "erin", Role::Member).await;
    let wrong_secret = format!("ingest_{key_id}_{}", "0".repeat(64));
    let unknown_id = format!("ingest_000000000000_{}", &key[key.len() - 64..]);
    let mut messages = Vec::new();
    for credential in ["not-the-token-at-all", &wrong_secret, &unknown_id] {
        messages.push(assert_error(me(&app, credential).await, 401, "unauthorized").await);
    }
    assert!(messages.iter().all(|m| m == &messages[0]), "{messages:?}");
}

#[tokio::test]
async fn revoking_a_key_ends_its_session_and_closes_its_websocket() {
    let app = spawn_app().await;
    let (key_id, key) = account_with_key(&app, "frank", Role::Member).await;

    // A browser signs in with the key.
    let cookie = app.sign_in_with(&key).await;
    let with_cookie = async || {
        app.client
            .get(app.url("/api/me"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap()
    };
    let me_by_cookie: Value = with_cookie().await.json().await.unwrap();
    assert_eq!(me_by_cookie["account"], "frank");
    assert_eq!(me_by_cookie["key_id"], key_id.as_str());

    // A script follows a job of its account that stays live (an upload waiting for its bytes).
    let job = Tus::with_cookie(&app.client, &app.url(""), cookie.clone())
        .created(10, "{}")
        .await;
    let url = app.ws_url(&format!("/ws/status/{job}?token={key}"));
    let (mut socket, _) = connect_async(url).await.expect("WebSocket connects");
    let first = socket.next().await.unwrap().unwrap();
    assert!(matches!(first, Message::Text(_)), "{first:?}");

    let revoked = app
        .client
        .delete(app.url(&format!("/api/keys/{key_id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);

    let close = tokio::time::timeout(PROPAGATION, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| (f.code, f.reason)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the socket closes once its key is revoked");
    let (code, reason) = close.expect("a close frame");
    assert_eq!(code, CloseCode::Policy);
    // One neutral reason: nothing tells a revoked key from an expired one.
    assert_eq!(reason.as_str(), "credential no longer valid");
    assert_error(with_cookie().await, 401, "unauthorized").await;
    assert_error(me(&app, &key).await, 401, "unauthorized").await;
    // The token's own sessions are untouched.
    let token_cookie = app.sign_in().await;
    let by_token = app
        .client
        .get(app.url("/api/me"))
        .header("Cookie", &token_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(by_token.status(), 200);
}

#[tokio::test]
async fn removing_an_account_revokes_its_keys() {
    let app = spawn_app().await;
    let (_, key) = account_with_key(&app, "gina", Role::Member).await;
    assert_eq!(me(&app, &key).await.status(), 200);
    let removed = app
        .client
        .delete(app.url("/api/accounts/gina"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_error(me(&app, &key).await, 401, "unauthorized").await;
    let listed = app.state.accounts.keys(None).await.unwrap();
    assert!(
        listed[0].revoked_at.is_some(),
        "kept, revoked, for the record"
    );
}

#[tokio::test]
async fn a_keys_last_use_is_recorded_coarsely_and_listed() {
    let app = spawn_app().await;
    let (key_id, key) = account_with_key(&app, "hank", Role::Member).await;
    let (_, keys) = admin_get(&app, "/api/accounts/hank/keys").await;
    assert!(keys[0]["last_used_at"].is_null(), "never used yet");
    assert_eq!(me(&app, &key).await.status(), 200);
    // Kept in memory; written once a minute and at shutdown. Flush now instead of waiting.
    app.state.keys.flush_use().await.unwrap();
    let (_, keys) = admin_get(&app, "/api/accounts/hank/keys").await;
    assert_eq!(keys[0]["key_id"], key_id.as_str());
    assert!(keys[0]["last_used_at"].is_string(), "{keys}");
}

#[tokio::test]
async fn wrong_keys_do_not_lock_the_address_out_but_token_guesses_still_do() {
    let app = spawn_app_with(|s| s.sign_in_failures_per_minute = 2).await;
    let (key_id, key) = account_with_key(&app, "ivan", Role::Member).await;
    let wrong = format!("ingest_{key_id}_{}", "0".repeat(64));
    let revoked = account_with_key(&app, "ivy", Role::Member).await;
    app.state
        .accounts
        .revoke_key(&KeyId::parse(&revoked.0).unwrap())
        .await
        .unwrap();
    // A CI job retrying a revoked or wrong key behind a shared address: no lockout.
    for _ in 0..5 {
        assert_error(me(&app, &wrong).await, 401, "unauthorized").await;
        assert_error(me(&app, &revoked.1).await, 401, "unauthorized").await;
    }
    assert_eq!(me(&app, &key).await.status(), 200);
    assert_eq!(me(&app, TOKEN).await.status(), 200);
    // Guesses at the token are throttled as before.
    for _ in 0..2 {
        assert_error(me(&app, "not-the-token").await, 401, "unauthorized").await;
    }
    assert_error(me(&app, TOKEN).await, 429, "too_many_requests").await;
    // A key (256 random bits) is not throttled: guessing the token does not lock keys out.
    assert_eq!(me(&app, &key).await.status(), 200);
}

#[tokio::test]
async fn a_session_opened_with_a_key_keeps_its_account_across_a_restart() {
    let app = spawn_app().await;
    let (key_id, key) = account_with_key(&app, "judy", Role::Member).await;
    let cookie = app.sign_in_with(&key).await;

    let app = spawn_app_in(app.stop().await, |_| {}).await;
    let response = app
        .client
        .get(app.url("/api/me"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["account"], "judy");
    assert_eq!(body["key_id"], key_id.as_str());
}

#[tokio::test]
async fn a_key_expiry_must_come_as_json_and_no_body_means_no_expiry() {
    let app = spawn_app().await;
    account_with_key(&app, "kim", Role::Member).await;
    let url = app.url("/api/accounts/kim/keys");
    let as_text = app
        .client
        .post(&url)
        .bearer_auth(TOKEN)
        .header("Content-Type", "text/plain")
        .body(r#"{"expires_in_days": 1}"#)
        .send()
        .await
        .unwrap();
    assert_error(as_text, 415, "unsupported_media_type").await;
    let broken = app
        .client
        .post(&url)
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/json")
        .body(r#"{"expires_in_days": -1}"#)
        .send()
        .await
        .unwrap();
    assert_error(broken, 400, "invalid_body").await;
    let bare = app
        .client
        .post(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 201);
    let bare: Value = bare.json().await.unwrap();
    assert!(bare["expires_at"].is_null(), "{bare}");
}

#[tokio::test]
async fn a_server_that_cannot_refresh_its_keys_refuses_them_and_is_not_ready_until_it_can() {
    let app = spawn_app().await;
    let (_, key) = account_with_key(&app, "lena", Role::Member).await;
    assert_eq!(me(&app, &key).await.status(), 200);
    let path = app.data_dir.path().join("ingest.db");
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    // The change counter the ring polls disappears: refreshes fail from now on.
    sqlx::query("DROP TABLE accounts_version")
        .execute(&mut db)
        .await
        .unwrap();
    eventually(
        "the stale ring refuses the key",
        PROPAGATION + Duration::from_secs(3),
        async || (me(&app, &key).await.status() == 401).then_some(()),
    )
    .await;
    assert_eq!(
        me(&app, TOKEN).await.status(),
        200,
        "the token keeps working"
    );
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["keys"]["ok"], false, "{body}");
    let reason = body["checks"]["keys"]["error"].as_str().unwrap();
    assert!(reason.contains("API keys"), "{reason}");

    sqlx::query(
        "CREATE TABLE accounts_version (only INTEGER PRIMARY KEY CHECK (only = 1), \
         version INTEGER NOT NULL) STRICT",
    )
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO accounts_version (only, version) VALUES (1, 1000)")
        .execute(&mut db)
        .await
        .unwrap();
    eventually("the key works again", PROPAGATION, async || {
        (me(&app, &key).await.status() == 200).then_some(())
    })
    .await;
    eventually("ready again", PROPAGATION, async || {
        (app.get_json("/readyz").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sessions_opened_with_one_key_share_its_pending_upload_cap() {
    let app = spawn_app_with(|s| s.max_pending_uploads = 1).await;
    let (_, key) = account_with_key(&app, "mia", Role::Member).await;
    let mut cookies = Vec::new();
    for _ in 0..2 {
        cookies.push(app.sign_in_with(&key).await);
    }
    let declare = async |cookie: &str| {
        app.client
            .post(app.url("/api/uploads"))
            .header("Cookie", cookie)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", "10")
            .header("Upload-Metadata", "filename Zi5iaW4=,metadata e30=")
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(declare(&cookies[0]).await, 201);
    // Another sign-in with the same key is the same credential: no second allowance.
    assert_eq!(declare(&cookies[1]).await, 429);
}

#[tokio::test]
async fn a_declared_upload_waits_for_another_writer_instead_of_failing() {
    let app = spawn_app().await;
    let path = app.data_dir.path().join("ingest.db");
    let mut other = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    // Another process (the CLI) holds the write lock while the server declares an upload,
    // and commits meanwhile: a deferred transaction would have read before that commit and
    // failed at its write (SQLITE_BUSY_SNAPSHOT); an immediate one waits its turn.
    let mut held = sqlx::Connection::begin_with(&mut other, "BEGIN IMMEDIATE")
        .await
        .unwrap();
    sqlx::query("INSERT INTO accounts (name, role, created_us) VALUES ('nora', 'member', 0)")
        .execute(&mut *held)
        .await
        .unwrap();
    let declared = tokio::spawn({
        let request = app.tus().create(10, "{}");
        async move { request.send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.commit().await.unwrap();
    assert_eq!(declared.await.unwrap(), 201);
}
