//! Built-in TLS: HTTPS with HTTP/2 and HTTP/1.1 on one port, HSTS and Secure cookies, and a
//! certificate replaced on disk is served without a restart.
use crate::helpers::*;
use ingest::server::config::TlsFiles;
use std::{path::Path, time::Duration};

/// A self-signed certificate for `localhost`, written as PEM files; returns the certificate.
fn write_certificate(dir: &Path) -> String {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate = generated.cert.pem();
    // Written whole and renamed, as a certificate manager would, so a reload never sees half.
    for (name, text) in [
        ("cert.pem", certificate.clone()),
        ("key.pem", generated.signing_key.serialize_pem()),
    ] {
        let partial = dir.join(format!("{name}.new"));
        std::fs::write(&partial, text).unwrap();
        std::fs::rename(&partial, dir.join(name)).unwrap();
    }
    certificate
}

fn client_trusting(certificate: &str, app: &TestApp, http1_only: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(certificate.as_bytes()).unwrap())
        .resolve("localhost", app.address);
    let builder = if http1_only {
        builder.http1_only()
    } else {
        builder
    };
    builder.build().unwrap()
}

#[tokio::test]
async fn https_serves_http2_and_http1_with_hsts_and_secure_cookies_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_certificate(dir.path());
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    let app = spawn_app_with(|s| s.tls = Some(files)).await;
    let url = |path: &str| format!("https://localhost:{}{path}", app.address.port());

    let h2 = client_trusting(&first, &app, false);
    let answer = h2
        .get(url("/api/jobs"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    assert!(answer.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .starts_with("max-age="));
    let h1 = client_trusting(&first, &app, true);
    let answer = h1.get(url("/healthz")).send().await.unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_11);
    let signed_in = h1
        .post(url("/api/session"))
        .json(&serde_json::json!({ "token": TOKEN }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 204);
    assert!(signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("; Secure"));
    let accepted = h2
        .post(url("/api/ingest"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = accepted.json().await.unwrap();
    assert!(
        body["ws_url"]
            .as_str()
            .unwrap()
            .starts_with("wss://localhost:"),
        "{body}"
    );
    // Plain HTTP to the TLS port gets nowhere.
    let plain = app.client.get(app.url("/healthz")).send().await;
    assert!(
        plain.as_ref().is_err() || plain.as_ref().unwrap().status() != 200,
        "{plain:?}"
    );

    // A new certificate on disk is picked up without a restart.
    let second = write_certificate(dir.path());
    eventually(
        "the new certificate is served",
        Duration::from_secs(10),
        async || {
            let fresh = client_trusting(&second, &app, false);
            fresh.get(url("/healthz")).send().await.ok().map(drop)
        },
    )
    .await;
    let stale = client_trusting(&first, &app, false);
    assert!(stale.get(url("/healthz")).send().await.is_err());
}
