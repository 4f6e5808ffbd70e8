//! `ingest accounts …` and `ingest keys …` against the real binary, on the data dir of a real
//! server that is running meanwhile.
use crate::helpers::*;
use serde_json::{json, Value};
use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

/// The server polls for key changes every 500 ms; this bounds the wait generously.
const PROPAGATION: Duration = Duration::from_secs(5);

/// Runs the binary with `args` on `data_dir`, the way an operator would on the server's host.
fn ingest(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ingest"))
        .args(args)
        .env("INGEST_CONFIG", "/nonexistent/Leptos.toml")
        .env("INGEST_DATA_DIR", data_dir)
        .env_remove("INGEST_TOKEN")
        .output()
        .unwrap()
}

fn succeeded(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn refused_with_one_line(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

async fn me(client: &reqwest::Client, base: &str, key: &str) -> reqwest::Response {
    client
        .get(format!("{base}/api/me"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn accounts_and_keys_made_with_the_cli_work_on_the_running_server_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Lift the rate limit so the polls measure propagation only. (Polling with a key the
    // server has not loaded yet is no failed sign-in: keys never feed the address throttle.)
    let settings = [("RUST_LOG", "info"), ("INGEST_RATE_LIMIT_PER_SECOND", "0")];
    let server = Server::start_with(&data, "server.log", &settings).await;
    let client = reqwest::Client::new();

    let added = succeeded(&ingest(&data, &["accounts", "add", "alice"]));
    assert!(added.contains("alice (member)"), "{added}");
    succeeded(&ingest(
        &data,
        &["accounts", "add", "ops", "--role", "admin"],
    ));
    let listed = succeeded(&ingest(&data, &["accounts", "list"]));
    assert!(listed.contains("alice\tmember"), "{listed}");
    assert!(listed.contains("ops\tadmin"), "{listed}");

    let issued = succeeded(&ingest(
        &data,
        &["keys", "add", "alice", "--expires-in-days", "7"],
    ));
    let key = issued.lines().last().unwrap().to_owned();
    assert!(
        key.starts_with("ingest_"),
        "the key alone on the last line: {issued}"
    );
    let key_id = key["ingest_".len().."ingest_".len() + 12].to_owned();

    let answer: Value = eventually("the server accepts the new key", PROPAGATION, async || {
        let response = me(&client, &server.base, &key).await;
        if response.status() == 200 {
            response.json().await.ok()
        } else {
            None
        }
    })
    .await;
    assert_eq!(
        answer,
        me_with_nothing_stored("alice", "member", json!(key_id))
    );
    let ingested = client
        .post(format!("{}/api/ingest", server.base))
        .bearer_auth(&key)
        .json(&json!({"metadata": "{\"from\":\"cli\"}"}))
        .send()
        .await
        .unwrap();
    accepted_id(ingested).await;

    let keys = succeeded(&ingest(&data, &["keys", "list", "alice"]));
    assert!(keys.contains(&key_id), "{keys}");
    assert!(!keys.contains(&key[20..]), "no key in the list: {keys}");
    let all_keys = succeeded(&ingest(&data, &["keys", "list"]));
    assert!(all_keys.contains(&key_id), "{all_keys}");

    let revoked = succeeded(&ingest(&data, &["keys", "revoke", &key_id]));
    assert!(revoked.contains("revoked"), "{revoked}");
    eventually(
        "the server refuses the revoked key",
        PROPAGATION,
        async || (me(&client, &server.base, &key).await.status() == 401).then_some(()),
    )
    .await;
    let keys = succeeded(&ingest(&data, &["keys", "list", "alice"]));
    let line = keys.lines().find(|line| line.starts_with(&key_id)).unwrap();
    assert_ne!(line.split('\t').nth(4), Some("-"), "revoked: {line}");

    // Refusals: one line on stderr, exit code 2.
    let duplicate = refused_with_one_line(&ingest(&data, &["accounts", "add", "alice"]));
    assert!(duplicate.contains("already exists"), "{duplicate}");
    let reserved = refused_with_one_line(&ingest(&data, &["accounts", "add", "admin"]));
    assert!(reserved.contains("built-in"), "{reserved}");
    let unknown = refused_with_one_line(&ingest(&data, &["keys", "add", "nobody"]));
    assert!(unknown.contains("no account named nobody"), "{unknown}");
    refused_with_one_line(&ingest(&data, &["accounts", "add", "bad name"]));
    refused_with_one_line(&ingest(
        &data,
        &["accounts", "add", "bob", "--role", "root"],
    ));
    refused_with_one_line(&ingest(&data, &["keys", "revoke", "0123456789ab"]));
    refused_with_one_line(&ingest(&data, &["keys", "revoke", "not-an-id"]));
    refused_with_one_line(&ingest(&data, &["accounts", "remove", "nobody"]));
    refused_with_one_line(&ingest(&data, &["keys", "list", "nobody"]));

    // Removing an account revokes its keys.
    let second = succeeded(&ingest(&data, &["keys", "add", "alice"]));
    let second = second.lines().last().unwrap().to_owned();
    eventually(
        "the server accepts the second key",
        PROPAGATION,
        async || (me(&client, &server.base, &second).await.status() == 200).then_some(()),
    )
    .await;
    succeeded(&ingest(&data, &["accounts", "remove", "alice"]));
    eventually(
        "the removed account's key is refused",
        PROPAGATION,
        async || (me(&client, &server.base, &second).await.status() == 401).then_some(()),
    )
    .await;

    // The token still works, and no key was ever written to the log.
    assert_eq!(me(&client, &server.base, TOKEN).await.status(), 200);
    let log = server.log();
    assert!(log.contains(&key_id), "the log names the key id");
    for secret in [&key, &second] {
        assert!(!log.contains(&secret[20..]), "a key in the log");
    }
}

#[test]
fn the_cli_refuses_a_data_dir_without_a_database_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let refused = refused_with_one_line(&ingest(dir.path(), &["accounts", "list"]));
    assert!(refused.contains("no database"), "{refused}");
}

#[tokio::test]
async fn the_cli_takes_the_http_expiry_range_and_exits_1_when_the_database_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_with(&data, "server.log", &[]).await;
    succeeded(&ingest(&data, &["accounts", "add", "olga"]));
    let longest = ["keys", "add", "olga", "--expires-in-days", "36500"];
    let added = succeeded(&ingest(&data, &longest));
    assert!(added.contains("expires: 2"), "{added}");
    for bad in ["0", "36501"] {
        refused_with_one_line(&ingest(
            &data,
            &["keys", "add", "olga", "--expires-in-days", bad],
        ));
    }
    server.terminate().await;

    // Not a refusal of what was asked but a failure of the machinery: exit 1, one line.
    std::fs::write(
        data.join("ingest.db"),
        b"this is not a database, not at all",
    )
    .unwrap();
    for leftover in ["ingest.db-wal", "ingest.db-shm"] {
        let _ = std::fs::remove_file(data.join(leftover));
    }
    let failed = ingest(&data, &["accounts", "list"]);
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
}

#[tokio::test]
async fn a_quota_set_with_the_cli_applies_on_the_running_server_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let settings = [("RUST_LOG", "info"), ("INGEST_RATE_LIMIT_PER_SECOND", "0")];
    let server = Server::start_with(&data, "server.log", &settings).await;
    let client = reqwest::Client::new();
    succeeded(&ingest(&data, &["accounts", "add", "carol"]));
    let issued = ingest(&data, &["keys", "add", "carol"]);
    let key = succeeded(&issued).lines().last().unwrap().to_owned();
    let key_id = key.split('_').nth(1).unwrap().to_owned();
    // The audit line of the change goes to standard error, with the key id and never the key.
    let audit = String::from_utf8_lossy(&issued.stderr).into_owned();
    assert!(
        audit.contains("key created") && audit.contains(&key_id),
        "{audit}"
    );
    assert!(!audit.contains(&key), "no key in the audit line: {audit}");

    let set = ingest(
        &data,
        &[
            "accounts",
            "quota",
            "carol",
            "--stored-bytes",
            "1000",
            "--uploads",
            "2",
        ],
    );
    let shown = succeeded(&set);
    assert!(
        shown.contains("stored bytes 1000, uploads at once 2, requests per second default"),
        "{shown}"
    );
    assert!(String::from_utf8_lossy(&set.stderr).contains("quotas set"));
    let quotas = eventually("the server applies the quota", PROPAGATION, async || {
        let answer = me(&client, &server.base, &key).await;
        let body: Value = answer.json().await.ok()?;
        (body["quotas"]["max_stored_bytes"] == 1000).then_some(body["quotas"].clone())
    })
    .await;
    assert_eq!(
        quotas,
        json!({"max_stored_bytes": 1000, "max_uploads": 2, "max_requests_per_second": null})
    );

    // Over it: 413, which quota, and no job.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![7u8; 2000]).file_name("big.bin"),
    );
    let refused = client
        .post(format!("{}/api/ingest", server.base))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 413);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    assert_eq!(body["error"]["quota"], "stored_bytes", "{body}");
    let listed: Value = client
        .get(format!("{}/api/jobs", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["jobs"], json!([]), "a refused upload leaves no job");

    // Back to the default; only what is named changes.
    let reset = succeeded(&ingest(
        &data,
        &["accounts", "quota", "carol", "--stored-bytes", "default"],
    ));
    assert!(
        reset.contains("stored bytes default, uploads at once 2"),
        "{reset}"
    );
    eventually("the default applies again", PROPAGATION, async || {
        let body: Value = me(&client, &server.base, &key).await.json().await.ok()?;
        body["quotas"]["max_stored_bytes"].is_null().then_some(())
    })
    .await;

    refused_with_one_line(&ingest(
        &data,
        &["accounts", "quota", "carol", "--rps", "fast"],
    ));
    let unknown = refused_with_one_line(&ingest(
        &data,
        &["accounts", "quota", "nobody", "--uploads", "1"],
    ));
    assert!(unknown.contains("no account named nobody"), "{unknown}");
}
