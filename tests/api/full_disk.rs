//! Disk space: uploads are refused with 507 below the free-disk floor (jobs without a file still
//! go through), and a disk that really fills up (a small tmpfs) answers 507 too: a resumable
//! upload keeps what it wrote and completes once space is freed, a one-shot upload fails
//! cleanly, and `/readyz` says unready while it is full.
use crate::helpers::*;
use ingest::domain::{JobId, JobState};
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

fn one_shot_form(bytes: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().text("metadata", "{}").part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name("f.bin"),
    )
}

#[tokio::test]
async fn uploads_below_the_free_disk_floor_get_507_and_jobs_without_a_file_go_through() {
    // A resumable upload begun while there was room.
    let app = spawn_app().await;
    let id = app.tus().created(1000, "{}").await;
    let sent = app
        .tus()
        .patch(id, 0)
        .body(vec![1u8; 300])
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 204);
    let data_dir = app.stop().await;

    // Now the floor is above whatever the disk has free.
    let app = spawn_app_in(data_dir, |s| s.min_free_disk_bytes = u64::MAX).await;
    let tus = app.tus();
    let jobs_before = app.list_jobs("").await.jobs.len();
    let message = assert_error(
        tus.create(10, "{}").send().await.unwrap(),
        507,
        "insufficient_storage",
    )
    .await;
    assert!(message.contains("floor"), "{message}");
    let with_bytes = tus
        .create(3, "{}")
        .header("Content-Type", "application/offset+octet-stream")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_error(with_bytes, 507, "insufficient_storage").await;
    assert_error(
        app.ingest_form(one_shot_form(vec![7u8; 1000])).await,
        507,
        "insufficient_storage",
    )
    .await;
    assert_eq!(
        app.list_jobs("").await.jobs.len(),
        jobs_before,
        "refused uploads create no job"
    );
    let more = tus
        .patch(id, 300)
        .body(vec![1u8; 700])
        .send()
        .await
        .unwrap();
    assert_eq!(more.headers()["tus-resumable"], "1.0.0");
    assert_error(more, 507, "insufficient_storage").await;
    assert_eq!(tus.offset(id).await, 300, "the upload is intact");
    assert_eq!(tus.status(id).await.status, JobState::Receiving);

    // Jobs without a file take no disk to speak of.
    accepted_id(app.ingest_json(r#"{"metadata": {"a": 1}}"#).await).await;
    let metadata_only = reqwest::multipart::Form::new().text("metadata", "{}");
    accepted_id(app.ingest_form(metadata_only).await).await;
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["disk"]["ok"], false, "{body}");
}

/// A tmpfs of `size` mounted over a fresh directory, unmounted when dropped (also when a test
/// fails). Mounting needs root, which the tests have here.
struct Tmpfs {
    root: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let root = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(root.path())
            .status()
            .expect("mount runs");
        assert!(
            mounted.success(),
            "mounting a tmpfs failed (the full-disk tests need root)"
        );
        Tmpfs { root }
    }

    fn path(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the server's database may still be open in a task that has not ended yet.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.root.path())
            .status();
    }
}

/// Fills the disk holding `path` with a file there, until a write fails for lack of space.
fn fill(path: &Path) -> std::fs::File {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0xAAu8; 64 * KIB as usize];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::StorageFull => break,
            Err(error) => panic!("filling the disk: {error}"),
        }
    }
    file
}

/// Gives back `bytes` of a filler file (tmpfs frees the pages at once).
fn give_back(filler: &std::fs::File, bytes: u64) {
    let length = filler.metadata().unwrap().len();
    filler.set_len(length.saturating_sub(bytes)).unwrap();
}

async fn wait_until_ready(app: &TestApp) {
    // Readiness is checked at most once a second.
    let mut body = serde_json::Value::Null;
    let ready = within(Duration::from_secs(10), async || {
        let status;
        (status, body) = app.get_json("/readyz").await;
        (status == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "still unready: {body}");
}

fn temp_len(app: &TestApp, id: JobId) -> Option<u64> {
    let path: PathBuf = app.tmp_dir().join(format!("{id}.part"));
    std::fs::metadata(path).ok().map(|meta| meta.len())
}

#[tokio::test]
async fn a_full_disk_answers_507_and_a_resumable_upload_keeps_its_part_and_completes_later() {
    let disk = Tmpfs::mount("8m");
    let floor = 64 * KIB;
    let app = spawn_app_in(tempfile::tempdir_in(disk.path()).unwrap(), |s| {
        s.min_free_disk_bytes = floor
    })
    .await;
    let tus = app.tus();
    let file = random_bytes(3 * MIB as usize);
    let id = tus.created(file.len() as u64, "{}").await;
    let first = tus
        .patch(id, 0)
        .body(file[..MIB as usize].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 204);

    // The disk fills up part-way through the next PATCH.
    let filler = fill(&disk.path().join("filler"));
    give_back(&filler, 768 * KIB);
    let cut = tus
        .patch(id, MIB)
        .body(file[MIB as usize..].to_vec())
        .send()
        .await
        .unwrap();
    let message = assert_error(cut, 507, "insufficient_storage").await;
    let kept = tus.offset(id).await;
    assert!(
        kept > MIB && kept < 2 * MIB,
        "the part written before the disk filled up is kept: {kept} ({message})"
    );
    assert!(message.contains(&kept.to_string()), "{message}");
    let waiting = tus.status(id).await;
    assert_eq!(
        (waiting.status, waiting.bytes_done),
        (JobState::Receiving, kept)
    );
    assert_eq!(
        temp_len(&app, id),
        Some(kept),
        "nothing beyond the kept part"
    );

    // Full to the last page: every upload is refused, the server is not ready.
    let second_filler = fill(&disk.path().join("filler-2"));
    let refused = tus
        .patch(id, kept)
        .body(file[kept as usize..].to_vec())
        .send()
        .await
        .unwrap();
    assert_error(refused, 507, "insufficient_storage").await;
    assert_error(
        tus.create(10, "{}").send().await.unwrap(),
        507,
        "insufficient_storage",
    )
    .await;
    assert_error(
        app.ingest_form(one_shot_form(vec![1u8; 1000])).await,
        507,
        "insufficient_storage",
    )
    .await;
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["disk"]["ok"], false, "{body}");
    // A job without a file may or may not fit in the database's last pages; never a 500.
    let metadata_only = app.ingest_json("{}").await.status().as_u16();
    assert!(matches!(metadata_only, 202 | 507), "{metadata_only}");
    assert_eq!(tus.offset(id).await, kept);

    // Room above the floor but not for the file: a one-shot upload that hits the full disk
    // fails its job and leaves no bytes (it cannot resume), with 507.
    drop(second_filler);
    std::fs::remove_file(disk.path().join("filler-2")).unwrap();
    let one_shot = app
        .ingest_form(one_shot_form(random_bytes(MIB as usize)))
        .await;
    assert_error(one_shot, 507, "insufficient_storage").await;
    let failed = app.list_jobs("status=failed").await.jobs;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].error.as_deref().unwrap().contains("disk is full"),
        "{failed:?}"
    );
    let temp_files = app.temp_files();
    assert_eq!(
        temp_files.len(),
        1,
        "only the resumable upload's: {temp_files:?}"
    );

    // Space freed: the server is ready again and the upload completes from where it stopped.
    drop(filler);
    std::fs::remove_file(disk.path().join("filler")).unwrap();
    wait_until_ready(&app).await;
    let rest = tus
        .patch(id, kept)
        .body(file[kept as usize..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 204);
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.status, JobState::Completed, "{done:?}");
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
    assert!(app.temp_files().is_empty());
}
