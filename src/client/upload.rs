//! `ingest upload`: each file hashed, declared to the server's tus endpoint with its SHA-256,
//! and sent in PATCHes streamed from disk; an interrupted upload is continued from the server's
//! offset, and the server's digest of the stored file is compared with the client's.
//!
//! Why hash first: the server checks the whole file against the `sha256` declared when the
//! upload is created (a mismatch is refused with 460 and fails the job), so the digest must be
//! known before the first byte goes. A per-PATCH `Upload-Checksum` would need each chunk read
//! twice or held in memory, and the server would hash every byte twice; one read ahead of the
//! upload costs less, and the file comes back from the page cache for the upload itself.
use super::{
    api::{is_transient, no_answer, Api, Transient},
    args::UploadArgs,
    error::{combined_exit, ClientError},
    follow,
    progress::{Display, Item},
    resume::{FileIdentity, ResumeRecords, Unfinished},
    show_job,
};
use crate::{
    api::IngestAccepted,
    domain::{JobId, JobState, JobStatus, Sha256Digest},
};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use futures::{StreamExt, TryStreamExt};
use http_client::{header, Body, Method, StatusCode};
use sha2::{Digest, Sha256};
use std::{
    io::Read,
    path::{Path, PathBuf},
    process::ExitCode,
    time::UNIX_EPOCH,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

const TUS_RESUMABLE: &str = "1.0.0";
const OFFSET_TYPE: &str = "application/offset+octet-stream";
/// Bytes read from disk at a time, for hashing and for a PATCH's body.
const READ_BUFFER: usize = 256 * 1024;
/// Standard input cannot be read again, so each chunk is held in memory until the server has
/// it; this bounds that memory whatever `--chunk-size` says.
const MAX_STDIN_CHUNK: u64 = 16 << 20;
/// A PATCH answered 409 (another sender, or an offset that moved) is resynchronised this many
/// times in a row before the upload is given up.
const MAX_CONFLICTS: u32 = 5;

/// What `ingest upload` was asked, for each file.
struct Plan<'a> {
    api: &'a Api,
    display: &'a Display,
    records: &'a ResumeRecords,
    metadata: &'a str,
    chunk_size: u64,
    follow: bool,
}

pub async fn run(args: UploadArgs) -> ExitCode {
    let api = match Api::new(&args.connection) {
        Ok(api) => api,
        Err(error) => return super::stop(error),
    };
    if args.files.iter().filter(|file| is_stdin(file)).count() > 1 {
        return super::stop(ClientError::Usage(
            "standard input (`-`) can be uploaded once per run".to_owned(),
        ));
    }
    let display = Display::new(args.output.quiet);
    let records = ResumeRecords::in_cache_dir();
    if !records.is_available() {
        display.note("ingest: no cache directory (HOME or XDG_CACHE_HOME unset): interrupted uploads cannot be continued by running again");
    }
    let plan = Plan {
        api: &api,
        display: &display,
        records: &records,
        metadata: &args.metadata,
        chunk_size: args.chunk_size,
        follow: args.follow,
    };
    let json = args.output.json;
    let plan = &plan;
    let outcomes: Vec<Result<JobStatus, ClientError>> = futures::stream::iter(&args.files)
        .map(|file| async move {
            let outcome = upload_one(plan, file).await;
            if let Ok(job) | Err(Failure { job: Some(job), .. }) = &outcome {
                plan.display.beside(|| show_job(job, json));
            }
            outcome.map_err(|failure| {
                plan.display
                    .note(&format!("ingest: {}: {}", file.display(), failure.error));
                failure.error
            })
        })
        .buffer_unordered(usize::from(args.parallel))
        .collect()
        .await;
    let errors: Vec<ClientError> = outcomes.into_iter().filter_map(Result::err).collect();
    combined_exit(&errors)
}

/// Why a file's upload did not end in a good job, with the job when there is one to show.
struct Failure {
    error: ClientError,
    job: Option<JobStatus>,
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Failure { error, job: None }
    }
}

async fn upload_one(plan: &Plan<'_>, file: &Path) -> Result<JobStatus, Failure> {
    let item = plan.display.item(&file.display().to_string());
    let (id, ours) = if is_stdin(file) {
        send_stdin(plan, &item).await?
    } else {
        send_file(plan, file, &item).await?
    };
    let mut job = plan.api.status(id).await?;
    if plan.follow && !job.is_terminal() {
        job = follow::until_finished(plan.api, id, &item).await?;
    }
    item.finish(job.status.as_str());
    let failed = |message: String, job: JobStatus| Failure {
        error: ClientError::Failed(message),
        job: Some(job),
    };
    if let Some(theirs) = job.sha256 {
        if theirs != ours {
            return Err(failed(
                format!(
                    "the server stored SHA-256 {theirs} for job {id}, but the file's is {ours}"
                ),
                job,
            ));
        }
    }
    match job.status {
        JobState::Failed => {
            let why = job.error.clone().unwrap_or_default();
            Err(failed(format!("job {id} failed: {why}"), job))
        }
        JobState::Cancelled => Err(failed(format!("job {id} was cancelled"), job)),
        _ => Ok(job),
    }
}

fn is_stdin(file: &Path) -> bool {
    file.as_os_str() == "-"
}

/// Uploads a file from disk, continuing an interrupted upload of the same file.
async fn send_file(
    plan: &Plan<'_>,
    file: &Path,
    item: &Item,
) -> Result<(JobId, Sha256Digest), ClientError> {
    let unreadable =
        |error: std::io::Error| ClientError::Usage(format!("{}: {error}", file.display()));
    let path = tokio::fs::canonicalize(file).await.map_err(unreadable)?;
    let metadata = tokio::fs::metadata(&path).await.map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(ClientError::Usage(format!(
            "{}: not a file",
            file.display()
        )));
    }
    let size = metadata.len();
    let modified_ns = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    item.phase("hashing", Some(size), 0);
    let sha256 = hash_file(path.clone(), size, item.clone())
        .await
        .map_err(unreadable)?;
    let identity = FileIdentity {
        size,
        modified_ns,
        sha256,
    };
    let server = plan.api.base().to_string();

    let (id, mut offset) = match resumable(plan, &server, &path, &identity, file).await? {
        Some(continued) => continued,
        None => {
            let name = file
                .file_name()
                .map(|name| name.to_string_lossy().into_owned());
            let (id, offset) = create(plan, name.as_deref(), Some(size), Some(sha256)).await?;
            let record = Unfinished {
                server: server.clone(),
                path: path.clone(),
                file: identity,
                job_id: id,
            };
            if let Err(error) = plan.records.remember(&record) {
                plan.display.note(&format!(
                    "ingest: {}: cannot remember the upload for a later run: {error}",
                    file.display()
                ));
            }
            (id, offset)
        }
    };

    item.phase("uploading", Some(size), offset);
    let mut backoff = plan.api.backoff();
    let mut conflicts = 0;
    while offset < size {
        let end = offset.saturating_add(plan.chunk_size).min(size);
        let body = file_body(&path, offset, end, size, item.clone())
            .await
            .map_err(unreadable)?;
        match patch(plan.api, id, offset, Some(end - offset), None, body).await {
            Ok(new_offset) => {
                offset = new_offset;
                backoff.reset();
                conflicts = 0;
                continue;
            }
            Err(Patch::Again(transient)) => backoff.wait(transient).await?,
            Err(Patch::Conflict(why)) => {
                conflicts += 1;
                if conflicts > MAX_CONFLICTS {
                    return Err(ClientError::Failed(why));
                }
            }
            Err(Patch::Refused { status, error }) => {
                if matches!(status, 404 | 410 | 413 | 460) {
                    // The upload cannot go on: a later run starts afresh.
                    plan.records.forget(&server, &path);
                }
                return Err(error);
            }
        }
        // Where the server is now: a cut PATCH keeps what arrived.
        offset = match server_offset(plan.api, id).await? {
            Some(offset) => offset,
            None => {
                plan.records.forget(&server, &path);
                return Err(ClientError::Failed(format!(
                    "the upload of job {id} is gone from the server (failed, cancelled or expired)"
                )));
            }
        };
        item.position("uploading", offset, Some(size));
    }
    plan.records.forget(&server, &path);
    Ok((id, sha256))
}

/// The job to continue for this file, and the server's offset in it, if there is one.
async fn resumable(
    plan: &Plan<'_>,
    server: &str,
    path: &Path,
    identity: &FileIdentity,
    file: &Path,
) -> Result<Option<(JobId, u64)>, ClientError> {
    let Some(record) = plan.records.find(server, path) else {
        return Ok(None);
    };
    let id = record.job_id;
    if record.file == *identity {
        return match server_offset(plan.api, id).await? {
            Some(offset) => {
                plan.display.note(&format!(
                    "ingest: {}: continuing job {id} from byte {offset}",
                    file.display()
                ));
                Ok(Some((id, offset)))
            }
            None => {
                plan.records.forget(server, path);
                Ok(None)
            }
        };
    }
    // The file changed since its upload began: never mix the two. Its old upload goes.
    terminate(plan.api, id).await;
    plan.records.forget(server, path);
    let same_look =
        record.file.size == identity.size && record.file.modified_ns == identity.modified_ns;
    if same_look {
        // Same size and time, other bytes: something rewrote it behind our back. Refuse, so
        // that a person looks, rather than guess which content is meant.
        return Err(ClientError::Failed(format!(
            "{} changed since the upload of job {id} began (same size and modification time, \
             different SHA-256); that upload was ended; run again to upload the file as it is now",
            file.display()
        )));
    }
    plan.display.note(&format!(
        "ingest: {}: changed since the upload of job {id} began; that upload was ended and the file starts again as a new job",
        file.display()
    ));
    Ok(None)
}

/// Uploads standard input: chunks held in memory until the server has them (retried within
/// the run), the length declared with the last one.
async fn send_stdin(plan: &Plan<'_>, item: &Item) -> Result<(JobId, Sha256Digest), ClientError> {
    let (id, _) = create(plan, Some("stdin"), None, None).await?;
    plan.display.note(&format!(
        "ingest: standard input goes to job {id}; it cannot be continued by running again"
    ));
    item.phase("uploading", None, 0);
    let chunk_size = plan.chunk_size.min(MAX_STDIN_CHUNK);
    let mut stdin = tokio::io::stdin();
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    loop {
        let mut chunk = Vec::with_capacity(chunk_size as usize);
        (&mut stdin)
            .take(chunk_size)
            .read_to_end(&mut chunk)
            .await
            .map_err(|error| ClientError::Usage(format!("standard input: {error}")))?;
        hasher.update(&chunk);
        let last = (chunk.len() as u64) < chunk_size;
        let chunk = bytes::Bytes::from(chunk);
        let chunk_start = offset;
        let end = chunk_start + chunk.len() as u64;
        // The last chunk declares the length, even when it is empty.
        let length = last.then_some(end);
        let mut backoff = plan.api.backoff();
        let mut conflicts = 0;
        loop {
            let rest = chunk.slice((offset - chunk_start) as usize..);
            let sent = rest.len() as u64;
            match patch(plan.api, id, offset, Some(sent), length, Body::from(rest)).await {
                Ok(new_offset) => {
                    // The held chunk is all there is of standard input: an offset outside it
                    // cannot be continued from (and must not be sliced with).
                    if !(chunk_start..=end).contains(&new_offset) {
                        return Err(ClientError::Failed(format!(
                            "the server's offset {new_offset} for job {id} is outside the chunk \
                             still held"
                        )));
                    }
                    offset = new_offset;
                    item.position("uploading", offset, length);
                    if offset >= end {
                        break;
                    }
                    backoff.reset();
                    continue;
                }
                Err(Patch::Again(transient)) => backoff.wait(transient).await?,
                Err(Patch::Conflict(why)) => {
                    conflicts += 1;
                    if conflicts > MAX_CONFLICTS {
                        return Err(ClientError::Failed(why));
                    }
                }
                Err(Patch::Refused { error, .. }) => return Err(error),
            }
            offset = server_offset(plan.api, id).await?.ok_or_else(|| {
                ClientError::Failed(format!("the upload of job {id} is gone from the server"))
            })?;
            if !(chunk_start..=end).contains(&offset) {
                return Err(ClientError::Failed(format!(
                    "the server's offset {offset} for job {id} is outside the chunk still held"
                )));
            }
            if offset == end && !last {
                break;
            }
        }
        if last {
            break;
        }
    }
    Ok((id, Sha256Digest::from_bytes(hasher.finalize().into())))
}

/// `POST /api/uploads`: the job for a file of `size` bytes (unknown: `None`) with `sha256`
/// declared, and the server's offset in it.
async fn create(
    plan: &Plan<'_>,
    filename: Option<&str>,
    size: Option<u64>,
    sha256: Option<Sha256Digest>,
) -> Result<(JobId, u64), ClientError> {
    let mut pairs = vec![format!("metadata {}", BASE64.encode(plan.metadata))];
    if let Some(name) = filename {
        pairs.push(format!("filename {}", BASE64.encode(name)));
    }
    if let Some(digest) = sha256 {
        pairs.push(format!("sha256 {}", BASE64.encode(digest.to_hex())));
    }
    let upload_metadata = pairs.join(",");
    let url = plan.api.url("/api/uploads");
    let response = plan
        .api
        .send(|| {
            let request = plan
                .api
                .request(Method::POST, url.clone())
                .header("tus-resumable", TUS_RESUMABLE)
                .header("upload-metadata", &upload_metadata);
            match size {
                Some(size) => request.header("upload-length", size),
                None => request.header("upload-defer-length", "1"),
            }
        })
        .await?;
    let offset = upload_offset(&response).unwrap_or(0);
    let accepted: IngestAccepted = super::api::json_answer(response).await?;
    Ok((accepted.job_id, offset))
}

/// How a PATCH failed.
enum Patch {
    /// No answer, or 408/429/5xx: try again from the server's offset.
    Again(Transient),
    /// 409: the offset moved or another request is sending; look again.
    Conflict(String),
    Refused {
        status: u16,
        error: ClientError,
    },
}

/// `PATCH` of `body` at `offset`; `length` declares the whole upload's size (standard input's
/// last chunk). The server's new offset.
async fn patch(
    api: &Api,
    id: JobId,
    offset: u64,
    content_length: Option<u64>,
    length: Option<u64>,
    body: Body,
) -> Result<u64, Patch> {
    let mut request = api
        .request(Method::PATCH, api.url(&format!("/api/uploads/{id}")))
        .header("tus-resumable", TUS_RESUMABLE)
        .header(header::CONTENT_TYPE, OFFSET_TYPE)
        .header("upload-offset", offset);
    if let Some(content_length) = content_length {
        request = request.header(header::CONTENT_LENGTH, content_length);
    }
    if let Some(length) = length {
        request = request.header("upload-length", length);
    }
    let response = request.body(body).send().await.map_err(|error| {
        Patch::Again(Transient {
            reason: no_answer(&error),
            retry_after: None,
        })
    })?;
    let status = response.status();
    if status == StatusCode::NO_CONTENT {
        return upload_offset(&response).ok_or_else(|| Patch::Refused {
            status: status.as_u16(),
            error: ClientError::Failed("the server's answer has no Upload-Offset".to_owned()),
        });
    }
    let retry_after = super::api::retry_after(&response);
    let body = super::api::capped_body(response).await.unwrap_or_default();
    let error = ClientError::from_answer(status.as_u16(), &body);
    Err(if is_transient(status) {
        Patch::Again(Transient {
            reason: error.to_string(),
            retry_after,
        })
    } else if status == StatusCode::CONFLICT {
        Patch::Conflict(error.to_string())
    } else {
        Patch::Refused {
            status: status.as_u16(),
            error,
        }
    })
}

/// `HEAD` of the upload: the bytes the server holds durably, or `None` when the upload is gone
/// (404, 410).
async fn server_offset(api: &Api, id: JobId) -> Result<Option<u64>, ClientError> {
    let url = api.url(&format!("/api/uploads/{id}"));
    let mut backoff = api.backoff();
    loop {
        let sent = api
            .request(Method::HEAD, url.clone())
            .header("tus-resumable", TUS_RESUMABLE)
            .send()
            .await;
        let transient = match sent {
            Ok(response) if response.status() == StatusCode::OK => {
                return upload_offset(&response).map(Some).ok_or_else(|| {
                    ClientError::Failed("the server's answer has no Upload-Offset".to_owned())
                });
            }
            Ok(response) if matches!(response.status().as_u16(), 404 | 410) => return Ok(None),
            Ok(response) if is_transient(response.status()) => Transient {
                reason: format!("the server answered {}", response.status()),
                retry_after: super::api::retry_after(&response),
            },
            Ok(response) => return Err(ClientError::from_answer(response.status().as_u16(), b"")),
            Err(error) => Transient {
                reason: no_answer(&error),
                retry_after: None,
            },
        };
        backoff.wait(transient).await?;
    }
}

/// Ends an upload that will not be continued (tus termination), if the server still has it.
async fn terminate(api: &Api, id: JobId) {
    let _ = api
        .request(Method::DELETE, api.url(&format!("/api/uploads/{id}")))
        .header("tus-resumable", TUS_RESUMABLE)
        .send()
        .await;
}

fn upload_offset(response: &http_client::Response) -> Option<u64> {
    response
        .headers()
        .get("upload-offset")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Bytes `start..end` of the file as a request body, read as it is sent, with progress.
async fn file_body(
    path: &Path,
    start: u64,
    end: u64,
    size: u64,
    item: Item,
) -> std::io::Result<Body> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let mut sent = start;
    let stream =
        ReaderStream::with_capacity(file.take(end - start), READ_BUFFER).inspect_ok(move |bytes| {
            sent += bytes.len() as u64;
            item.position("uploading", sent, Some(size));
        });
    Ok(Body::wrap_stream(stream))
}

/// The file's SHA-256, read on a blocking thread (hashing is CPU work).
async fn hash_file(path: PathBuf, size: u64, item: Item) -> std::io::Result<Sha256Digest> {
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 4 * READ_BUFFER];
        let mut done = 0u64;
        loop {
            let read = match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            hasher.update(&buffer[..read]);
            done += read as u64;
            item.position("hashing", done, Some(size));
        }
        Ok(Sha256Digest::from_bytes(hasher.finalize().into()))
    })
    .await
    .map_err(std::io::Error::other)?
}
