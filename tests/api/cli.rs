//! The binary's command line: help, version, one-line refusals with exit code 2, JSON logs.
use crate::helpers::{eventually, TOKEN};
use std::process::{Command, Output};

fn ingest(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ingest"));
    command
        .args(args)
        .env("INGEST_CONFIG", "/nonexistent/Leptos.toml")
        .env("INGEST_TOKEN", TOKEN)
        .env_remove("INGEST_DATA_DIR");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn refused_with_one_line(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn version_and_help_describe_every_setting() {
    let version = ingest(&["--version"], &[]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("ingest 0.1.0"));
    let help = ingest(&["--help"], &[]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for variable in [
        "INGEST_DATA_DIR",
        "LEPTOS_SITE_ADDR",
        "INGEST_TOKEN_FILE",
        "INGEST_MAX_UPLOAD_BYTES",
        "INGEST_WORKERS",
        "INGEST_RATE_LIMIT_PER_SECOND",
        "INGEST_SHUTDOWN_GRACE_SECS",
        "INGEST_LOG_FORMAT",
    ] {
        assert!(help.contains(variable), "--help lacks {variable}");
    }
    assert!(!help.contains(TOKEN), "the token's value is never shown");
}

#[test]
fn invalid_settings_stop_start_up_with_one_line_and_exit_code_2() {
    let zero_workers = ingest(&[], &[("INGEST_WORKERS", "0")]);
    assert!(refused_with_one_line(&zero_workers).contains("workers"));
    let not_a_number = ingest(&["--max-upload-bytes", "lots"], &[]);
    assert!(refused_with_one_line(&not_a_number).contains("lots"));
    let unknown_flag = ingest(&["--frobnicate"], &[]);
    refused_with_one_line(&unknown_flag);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("Leptos.toml");
    std::fs::write(&config, "[server]\nworkers = \"many\"\n").unwrap();
    let bad_file = ingest(&[], &[("INGEST_CONFIG", config.to_str().unwrap())]);
    assert!(refused_with_one_line(&bad_file).contains("Leptos.toml"));
}

#[tokio::test]
async fn json_logs_carry_request_ids_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ingest"))
        .env("INGEST_CONFIG", "/nonexistent/Leptos.toml")
        .env("INGEST_TOKEN", TOKEN)
        .env("INGEST_DATA_DIR", dir.path().join("data"))
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("INGEST_LOG_FORMAT", "json")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let limit = std::time::Duration::from_secs(10);
    let response = eventually("the server answered", limit, async || {
        client
            .post(format!("http://127.0.0.1:{port}/api/ingest?token={TOKEN}"))
            .bearer_auth(TOKEN)
            .header("x-request-id", "req-from-the-test")
            .json(&serde_json::json!({}))
            .send()
            .await
            .ok()
    })
    .await;
    assert_eq!(response.headers()["x-request-id"], "req-from-the-test");
    assert_eq!(response.status(), 202);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(TOKEN), "the token reached the log:\n{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line.to_string().contains("req-from-the-test")),
        "no log line carries the request id:\n{text}"
    );
}

#[test]
fn settings_out_of_range_stop_start_up_instead_of_panicking_later() {
    for (variable, value) in [
        ("INGEST_SESSION_TTL_SECS", "99999999999999"),
        ("INGEST_UPLOAD_EXPIRY_SECS", "99999999999999"),
        ("INGEST_RETENTION_SWEEP_SECS", "18446744073709551615"),
        ("INGEST_RETENTION_DAYS", "9999999999"),
        ("INGEST_MAX_CONNECTIONS", "0"),
        ("INGEST_TRUSTED_PROXIES", "10.0.0.0/8,not-an-address"),
        ("INGEST_PUBLIC_URL", "https://example.com/path"),
    ] {
        let refused = ingest(&[], &[(variable, value)]);
        let line = refused_with_one_line(&refused);
        let name = variable.trim_start_matches("INGEST_").to_ascii_lowercase();
        assert!(line.contains(&name), "{variable}: {line}");
    }
}

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_is_refused_and_the_first_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let first = crate::helpers::Server::start_with(&data, "first.log", &[]).await;
    let data_dir = data.to_str().unwrap();
    let second = ingest(
        &[],
        &[
            ("INGEST_DATA_DIR", data_dir),
            ("LEPTOS_SITE_ADDR", "127.0.0.1:0"),
        ],
    );
    let stderr = refused_with_one_line(&second);
    assert!(
        stderr.contains("in use by another ingest process"),
        "{stderr}"
    );
    let answer = reqwest::Client::new()
        .get(format!("{}/readyz", first.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", first.log());
}
