//! Two real nodes on one database and one bucket, and the work between them: a node holds the
//! jobs it processes and the one-shot uploads it receives under a lease it keeps renewing, so
//! no live node's work is taken; when a node is killed, its processing is taken over by
//! another once its lease runs out, and its one-shot uploads fail there with a clear error.
use crate::{cluster::Cluster, helpers::*};
use ingest::{domain::JobId, server::store::INTERRUPTED_BY_NODE_LOSS};
use std::time::Duration;

/// Tests' lease, short so that a killed node's lease runs out quickly.
const LEASE_SECONDS: &str = "2";
const LEASE: Duration = Duration::from_secs(2);

/// How many times node `index`'s log says it started processing job `id` (the worker's span
/// names the job on every line it logs).
fn processing_starts(cluster: &Cluster, index: usize, id: JobId) -> usize {
    let log = cluster.node(index).log();
    let id = id.to_string();
    log.lines()
        .filter(|line| line.contains("processing started") && line.contains(&id))
        .count()
}

/// A two-node cluster with only node 0 running, processing a metadata-only job slowly: 2 × 4 s,
/// longer than a lease, so only renewal keeps the job node 0's.
async fn a_job_processing_on_node_0() -> (Cluster, JobId) {
    let env = [
        ("INGEST_LEASE_SECONDS", LEASE_SECONDS),
        ("INGEST_PROCESSING_DELAY_MS", "4000"),
    ];
    let cluster = Cluster::start_some(2, 1, &env).await;
    let id = accepted_id(
        cluster
            .admin(0)
            .ingest_json(serde_json::json!({"metadata": {"n": 1}}))
            .await,
    )
    .await;
    eventually(
        "node 0 processes the job",
        Duration::from_secs(10),
        async || (cluster.admin(0).job(id).await["status"] == "processing").then_some(()),
    )
    .await;
    (cluster, id)
}

#[tokio::test]
async fn a_job_whose_node_is_killed_mid_processing_completes_on_the_other_node() {
    let (mut cluster, id) = a_job_processing_on_node_0().await;

    // A second node joins while the first works on the job: the job stays the first's for
    // longer than a lease.
    cluster.restart(1).await;
    tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
    assert_eq!(
        cluster.admin(1).job(id).await["status"],
        "processing",
        "{}",
        cluster.logs()
    );
    assert_eq!(processing_starts(&cluster, 1, id), 0, "{}", cluster.logs());

    cluster.kill_9(0);
    let done = cluster.admin(1).completed(id).await;
    assert_eq!(done["metadata"], serde_json::json!({"n": 1}));
    assert_eq!(processing_starts(&cluster, 1, id), 1, "{}", cluster.logs());
}

#[tokio::test]
async fn a_one_shot_upload_cut_by_kill_9_fails_on_the_other_node_once_its_lease_runs_out() {
    let mut cluster = Cluster::start_with(2, &[("INGEST_LEASE_SECONDS", LEASE_SECONDS)]).await;
    let mut upload = cluster.admin(0).streaming_ingest("cut.bin").await;
    assert!(upload.send(random_bytes(64 * 1024)).await);
    let other = cluster.admin(1);
    let id = eventually(
        "the other node lists the upload as receiving",
        Duration::from_secs(10),
        async || {
            let page = other.jobs("status=receiving").await;
            let id = page["jobs"].as_array()?.first()?["job_id"]
                .as_str()?
                .to_owned();
            Some(JobId::parse(&id).unwrap())
        },
    )
    .await;

    // While its node lives, the upload outlasts its lease (renewed) and keeps receiving.
    tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
    assert!(upload.send(random_bytes(64 * 1024)).await);
    assert_eq!(
        other.job(id).await["status"],
        "receiving",
        "{}",
        cluster.logs()
    );

    cluster.kill_9(0);
    drop(upload);
    let failed = eventually(
        "the upload fails on the surviving node",
        LEASE * 5,
        async || {
            let job = other.job(id).await;
            (job["status"] != "receiving").then_some(job)
        },
    )
    .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"], INTERRUPTED_BY_NODE_LOSS, "{failed}");
}

#[tokio::test]
async fn many_jobs_on_two_nodes_are_each_processed_exactly_once() {
    // Each job takes 2 × 2 s, longer than its 3 s lease: a node that did not renew would lose
    // its jobs to the other, which would process them a second time. (A lease a little longer
    // than the others' leaves room for a loaded machine's pauses.)
    let env = [
        ("INGEST_LEASE_SECONDS", "3"),
        ("INGEST_PROCESSING_DELAY_MS", "2000"),
    ];
    let cluster = Cluster::start_with(2, &env).await;
    let mut ids = Vec::new();
    for n in 0..16 {
        let node = cluster.admin(n % 2);
        let accepted = node.ingest_json(serde_json::json!({ "metadata": { "n": n } }));
        ids.push(accepted_id(accepted.await).await);
    }
    for id in &ids {
        cluster.admin(0).completed(*id).await;
    }
    let mut by_node = [0, 0];
    for id in &ids {
        let starts = [
            processing_starts(&cluster, 0, *id),
            processing_starts(&cluster, 1, *id),
        ];
        let completed = [completions(&cluster, 0, *id), completions(&cluster, 1, *id)];
        assert_eq!(
            (
                starts.iter().sum::<usize>(),
                completed.iter().sum::<usize>()
            ),
            (1, 1),
            "job {id} started {starts:?} and completed {completed:?} times on the nodes:\n{}",
            cluster.logs()
        );
        by_node[0] += starts[0];
        by_node[1] += starts[1];
    }
    assert!(
        by_node.iter().all(|&processed| processed > 0),
        "both nodes took jobs: {by_node:?}"
    );
}

/// How many times node `index`'s log says it completed job `id`.
fn completions(cluster: &Cluster, index: usize, id: JobId) -> usize {
    let log = cluster.node(index).log();
    let id = id.to_string();
    log.lines()
        .filter(|line| line.contains("job completed") && line.contains(&id))
        .count()
}

/// Sends `signal` (`-STOP`, `-CONT`) to node `index`'s process.
fn signal(cluster: &Cluster, index: usize, signal: &str) {
    let pid = cluster.node(index).child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

#[tokio::test]
async fn a_node_frozen_past_its_lease_loses_the_job_and_writes_nothing_when_it_wakes() {
    let (mut cluster, id) = a_job_processing_on_node_0().await;
    cluster.restart(1).await;

    // Node 0 freezes (no renewal, no step) until node 1 has taken the job over.
    signal(&cluster, 0, "-STOP");
    let taken = within(LEASE * 5, async || {
        (processing_starts(&cluster, 1, id) > 0).then_some(())
    })
    .await;
    signal(&cluster, 0, "-CONT");
    assert!(
        taken.is_some(),
        "node 1 never took the job:\n{}",
        cluster.logs()
    );

    cluster.admin(1).completed(id).await;
    // Awake again, node 0 learns at its next renewal (or its final write) that the job is no
    // longer its own, and stops it without writing.
    eventually(
        "node 0 let the job go",
        Duration::from_secs(15),
        async || {
            let log = cluster.node(0).log();
            let id = id.to_string();
            log.lines()
                .any(|line| {
                    line.contains(&id)
                        && (line.contains("stopped without writing")
                            || line.contains("passed to another node"))
                })
                .then_some(())
        },
    )
    .await;
    assert_eq!(completions(&cluster, 0, id), 0, "{}", cluster.logs());
    assert_eq!(completions(&cluster, 1, id), 1, "{}", cluster.logs());
    assert_eq!(processing_starts(&cluster, 1, id), 1, "{}", cluster.logs());
}
