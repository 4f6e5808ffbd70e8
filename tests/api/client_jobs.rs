//! The client's other commands as real processes against a real server: `status`, `ls`,
//! `watch`, `cancel`, `rm`, `download` (continued and verified), help and completions; and the
//! client's boundary (it never imports the server's code).
use crate::{client_harness::*, helpers::*};
use ingest::domain::JobState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_ls_watch_cancel_and_rm_work_on_the_servers_jobs() {
    let app = spawn_app().await;
    let user = ClientUser::new();
    let base = app.url("");
    let stored = accepted_id(app.ingest_file("kept.txt", b"hello".to_vec(), "{}").await).await;
    app.wait_until_finished(stored).await;
    let receiving = app.tus().created(1000, "{}").await;
    let stored_id = stored.to_string();
    let receiving_id = receiving.to_string();

    let status = user.run(&base, &["status", "--json", &stored_id]).await;
    assert_eq!(exit_code(&status), 0, "{}", stderr(&status));
    let job = &json_jobs(&status)[0];
    assert_eq!((job.job_id, job.status), (stored, JobState::Completed));

    let plain = user.run(&base, &["status", &stored_id]).await;
    let line = stdout(&plain);
    assert!(
        line.starts_with(&format!("{stored_id}\tcompleted\t100%\t5\t")),
        "{line}"
    );

    let listed = user
        .run(&base, &["ls", "--json", "--status", "receiving"])
        .await;
    let jobs = json_jobs(&listed);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job_id, receiving);
    let limited = user.run(&base, &["ls", "--limit", "1"]).await;
    assert_eq!(stdout(&limited).lines().count(), 1, "{}", stdout(&limited));

    let watched = user.run(&base, &["watch", "--quiet", &stored_id]).await;
    assert_eq!(
        exit_code(&watched),
        0,
        "a completed job: {}",
        stderr(&watched)
    );

    let cancelled = user.run(&base, &["cancel", "--json", &receiving_id]).await;
    assert_eq!(exit_code(&cancelled), 0, "{}", stderr(&cancelled));
    assert_eq!(json_jobs(&cancelled)[0].status, JobState::Cancelled);
    let watched = user.run(&base, &["watch", "--quiet", &receiving_id]).await;
    assert_eq!(
        exit_code(&watched),
        1,
        "a cancelled job: {}",
        stderr(&watched)
    );
    let again = user.run(&base, &["cancel", &receiving_id]).await;
    assert_eq!(exit_code(&again), 1, "finished: the server's 409");
    assert!(stderr(&again).contains("409"), "{}", stderr(&again));

    let removed = user.run(&base, &["rm", &receiving_id]).await;
    assert_eq!(exit_code(&removed), 0, "{}", stderr(&removed));
    let gone = user.run(&base, &["status", &receiving_id]).await;
    assert_eq!(exit_code(&gone), 1);
    assert!(stderr(&gone).contains("404"), "{}", stderr(&gone));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_an_upload_to_its_end_over_the_websocket() {
    let app = spawn_app().await;
    let user = ClientUser::new();
    let id = app.tus().created(4, "{}").await;
    let free_slots = app.state.socket_slots.available_permits();
    let mut watching = user.command(&app.url(""), &["watch", "--json", &id.to_string()]);
    watching.stderr(std::process::Stdio::piped());
    let watching = tokio::task::spawn_blocking(move || watching.output().unwrap());

    // The watcher is connected before the bytes come (one open socket is its).
    eventually(
        "the watcher's socket is open",
        std::time::Duration::from_secs(10),
        async || (app.state.socket_slots.available_permits() == free_slots - 1).then_some(()),
    )
    .await;
    let patched = app.tus().patch(id, 0).body("abcd").send().await.unwrap();
    assert_eq!(patched.status(), 204);

    let output = watching.await.unwrap();
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let job = &json_jobs(&output)[0];
    assert_eq!(job.status, JobState::Completed);
    assert_eq!(job.sha256.unwrap().to_hex(), sha256_hex(b"abcd"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_continues_a_partial_file_and_verifies_it() {
    let app = spawn_app().await;
    let user = ClientUser::new();
    let bytes = random_bytes(2 * 1024 * 1024);
    let id = accepted_id(app.ingest_file("photo.jpg", bytes.clone(), "{}").await).await;
    app.wait_until_finished(id).await;
    let proxy = Proxy::start(app.address, None).await;
    let half = bytes.len() / 2;

    // An earlier run left the first half (the partial file is named after the job too).
    let partial = |name: &str| user.path(&format!("{name}.{id}.part"));
    // A file of the user's that only shares the old naming is never touched.
    std::fs::write(user.path("copy.bin.part"), b"the user's own").unwrap();
    std::fs::write(partial("copy.bin"), &bytes[..half]).unwrap();
    let output = user
        .run(&proxy.url, &["download", &id.to_string(), "-o", "copy.bin"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(std::fs::read(user.path("copy.bin")).unwrap(), bytes);
    assert!(!partial("copy.bin").exists());
    assert_eq!(
        std::fs::read(user.path("copy.bin.part")).unwrap(),
        b"the user's own"
    );
    // Only the rest came over the wire (with the status and headers).
    assert!(
        proxy.received() < (bytes.len() - half) as u64 + 16 * 1024,
        "{}",
        proxy.received()
    );

    // A partial file that is not the start of this one: caught, nothing kept.
    std::fs::write(partial("bad.bin"), random_bytes(half)).unwrap();
    let output = user
        .run(
            &app.url(""),
            &["download", &id.to_string(), "-o", "bad.bin"],
        )
        .await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    assert!(stderr(&output).contains("SHA-256"), "{}", stderr(&output));
    assert!(!user.path("bad.bin").exists() && !partial("bad.bin").exists());

    // Without -o: the job's file name, made safe, in the current directory.
    let output = user.run(&app.url(""), &["download", &id.to_string()]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(std::fs::read(user.path("photo.jpg")).unwrap(), bytes);
    // And never over a file that is there.
    let output = user.run(&app.url(""), &["download", &id.to_string()]).await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
}

#[tokio::test]
async fn help_shows_examples_and_completions_cover_every_command() {
    let user = ClientUser::new();
    let server = "http://127.0.0.1:9";
    for command in [
        "upload",
        "status",
        "watch",
        "ls",
        "download",
        "cancel",
        "rm",
        "completions",
    ] {
        let help = user.run(server, &[command, "--help"]).await;
        assert_eq!(exit_code(&help), 0);
        let text = stdout(&help);
        assert!(text.contains("Examples:"), "{command}: {text}");
        assert!(
            !text.contains("INGEST_DATA_DIR"),
            "{command} lists server settings: {text}"
        );
    }
    let same = user.run(server, &["help", "upload"]).await;
    assert!(stdout(&same).contains("--chunk-size"), "{}", stdout(&same));
    let top = user.run(server, &["--help"]).await;
    let text = stdout(&top);
    for command in [
        "serve",
        "accounts",
        "keys",
        "upload",
        "download",
        "completions",
        "Examples:",
    ] {
        assert!(
            text.contains(command),
            "ingest --help lacks {command}: {text}"
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = user.run(server, &["completions", shell]).await;
        assert_eq!(exit_code(&script), 0, "{}", stderr(&script));
        let text = stdout(&script);
        for word in ["upload", "chunk-size", "accounts", "data-dir"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
    }
}

#[test]
fn the_client_never_imports_the_servers_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/client");
    let mut checked = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        checked += 1;
        for (number, line) in text.lines().enumerate() {
            assert!(
                !line.contains("crate::server") && !line.contains("ingest::server"),
                "{}:{}: the client is a client of the HTTP API only: {line}",
                path.display(),
                number + 1
            );
        }
    }
    assert!(checked >= 5, "the client's modules were read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_client_uploads_follows_over_wss_and_downloads() {
    let user = ClientUser::new();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (user.path("cert.pem"), user.path("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let files = ingest::server::config::TlsFiles {
        cert: cert.clone(),
        key,
    };
    // Processing takes a while, so the follower's socket can be seen open.
    let app = spawn_app_with(|s| {
        s.tls = Some(files);
        s.processing_delay = std::time::Duration::from_millis(1500);
    })
    .await;
    let server = format!("https://localhost:{}", app.address.port());
    let (file, bytes) = user.file("secure.bin", 300_000);
    let free_slots = app.state.socket_slots.available_permits();
    // The client trusts the system's roots; here the system's roots are this certificate.
    let mut upload = user.command(
        &server,
        &["upload", "--follow", "--json", file.to_str().unwrap()],
    );
    upload.env("SSL_CERT_FILE", &cert);
    let uploading = tokio::task::spawn_blocking(move || upload.output().unwrap());

    eventually(
        "the follower's wss:// socket is open",
        std::time::Duration::from_secs(20),
        async || (app.state.socket_slots.available_permits() == free_slots - 1).then_some(()),
    )
    .await;
    let output = uploading.await.unwrap();
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let job = &json_jobs(&output)[0];
    assert_eq!(job.status, JobState::Completed);
    assert_eq!(job.sha256.unwrap().to_hex(), sha256_hex(&bytes));

    let mut download = user.command(
        &server,
        &["download", &job.job_id.to_string(), "-o", "back.bin"],
    );
    download.env("SSL_CERT_FILE", &cert);
    let output = output_of(download).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(std::fs::read(user.path("back.bin")).unwrap(), bytes);
}
