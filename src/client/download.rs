//! `ingest download`: a job's stored file to disk through `FILE.<job id>.part`, continued with `Range`
//! after an interruption (in this run or a later one), renamed into place only once its SHA-256
//! is the one the server recorded.
use super::{
    api::{is_transient, no_answer, Api, Transient},
    args::DownloadArgs,
    error::ClientError,
    progress::{Display, Item},
};
use crate::domain::{JobId, JobState, Sha256Digest};
use http_client::{header, Method, StatusCode};
use sha2::{Digest, Sha256};
use std::{
    io::Read,
    path::{Path, PathBuf},
};
use tokio::io::AsyncWriteExt;

/// Where to write, and the state of a partial file.
enum Target {
    Stdout,
    File { path: PathBuf, partial: PathBuf },
}

pub async fn run(args: DownloadArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.connection)?;
    let job = api.status(args.id).await?;
    let (Some(expected), Some(size), JobState::Completed) = (job.sha256, job.size, job.status)
    else {
        return Err(ClientError::Failed(format!(
            "job {} has no stored file to download (it is {})",
            args.id, job.status
        )));
    };
    let target = match args.output.as_deref() {
        Some(path) if path.as_os_str() == "-" => Target::Stdout,
        chosen => {
            let path = chosen.map_or_else(
                || PathBuf::from(safe_file_name(job.filename.as_deref(), args.id)),
                Path::to_path_buf,
            );
            if path.exists() {
                return Err(ClientError::Usage(format!(
                    "{} exists; remove it or choose another name with -o",
                    path.display()
                )));
            }
            // Named after the job as well: a file of the user's that merely has the same name
            // plus `.part` is never appended to or removed, nor another job's partial copy.
            let mut partial = path.clone().into_os_string();
            partial.push(format!(".{}.part", args.id));
            if std::fs::symlink_metadata(&partial).is_ok_and(|meta| !meta.is_file()) {
                return Err(ClientError::Usage(format!(
                    "{} is not a regular file; remove it",
                    PathBuf::from(partial).display()
                )));
            }
            Target::File {
                path,
                partial: PathBuf::from(partial),
            }
        }
    };
    let display = Display::new(args.quiet);
    let item = display.item(&args.id.to_string());
    let got = match &target {
        Target::Stdout => {
            fetch(
                &api,
                args.id,
                0,
                Sha256::new(),
                size,
                &mut tokio::io::stdout(),
                &item,
            )
            .await?
        }
        Target::File { partial, .. } => {
            let (have, hasher) = hash_partial(partial.clone(), size).await?;
            if have > 0 {
                display.note(&format!(
                    "ingest: continuing {} from byte {have}",
                    partial.display()
                ));
            }
            let mut out = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(partial)
                .await
                .map_err(|error| ClientError::Usage(format!("{}: {error}", partial.display())))?;
            let digest = fetch(&api, args.id, have, hasher, size, &mut out, &item).await?;
            out.sync_all()
                .await
                .map_err(|error| ClientError::Failed(format!("{}: {error}", partial.display())))?;
            digest
        }
    };
    if got != expected {
        if let Target::File { partial, .. } = &target {
            let _ = std::fs::remove_file(partial);
        }
        item.finish("SHA-256 mismatch");
        return Err(ClientError::Failed(format!(
            "the downloaded file's SHA-256 is {got}, but the server recorded {expected}; nothing was kept"
        )));
    }
    if let Target::File { path, partial } = &target {
        std::fs::rename(partial, path)
            .map_err(|error| ClientError::Failed(format!("{}: {error}", path.display())))?;
        item.finish(&format!("saved as {}", path.display()));
    } else {
        item.finish("done");
    }
    Ok(())
}

/// Appends the file's bytes from `have` on to `out`, retrying transient failures from where
/// the bytes stopped; the SHA-256 of the whole file.
async fn fetch(
    api: &Api,
    id: JobId,
    mut have: u64,
    mut hasher: Sha256,
    size: u64,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    item: &Item,
) -> Result<Sha256Digest, ClientError> {
    let url = api.url(&format!("/api/jobs/{id}/content"));
    let mut backoff = api.backoff();
    item.phase("downloading", Some(size), have);
    while have < size {
        let request = api
            .request(Method::GET, url.clone())
            .header(header::RANGE, format!("bytes={have}-"));
        let transient = match request.send().await {
            Err(error) => Transient {
                reason: no_answer(&error),
                retry_after: None,
            },
            Ok(response) if is_transient(response.status()) => Transient {
                reason: format!("the server answered {}", response.status()),
                retry_after: super::api::retry_after(&response),
            },
            Ok(response)
                if matches!(
                    response.status(),
                    StatusCode::OK | StatusCode::PARTIAL_CONTENT
                ) =>
            {
                if response.status() == StatusCode::OK && have > 0 {
                    // The whole file came instead of the rest: this copy must start over.
                    return Err(ClientError::Failed(
                        "the server ignored the Range request; remove the .part file and try again"
                            .to_owned(),
                    ));
                }
                let mut response = response;
                let mut cut = None;
                loop {
                    match response.chunk().await {
                        Ok(Some(bytes)) => {
                            let bytes = &bytes[..bytes.len().min((size - have) as usize)];
                            out.write_all(bytes).await.map_err(|error| {
                                ClientError::Failed(format!("cannot write the file: {error}"))
                            })?;
                            hasher.update(bytes);
                            have += bytes.len() as u64;
                            item.position("downloading", have, Some(size));
                        }
                        Ok(None) => break,
                        Err(error) => {
                            cut = Some(no_answer(&error));
                            break;
                        }
                    }
                }
                out.flush().await.map_err(|error| {
                    ClientError::Failed(format!("cannot write the file: {error}"))
                })?;
                match cut {
                    None if have >= size => break,
                    None => Transient {
                        reason: "the download ended early".to_owned(),
                        retry_after: None,
                    },
                    Some(reason) => Transient {
                        reason,
                        retry_after: None,
                    },
                }
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let body = super::api::capped_body(response).await.unwrap_or_default();
                return Err(ClientError::from_answer(status, &body));
            }
        };
        backoff.wait(transient).await?;
    }
    Ok(Sha256Digest::from_bytes(hasher.finalize().into()))
}

/// The bytes already in the partial file (none if it is longer than the file can be) and
/// their running hash.
async fn hash_partial(partial: PathBuf, size: u64) -> Result<(u64, Sha256), ClientError> {
    tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let mut file = match std::fs::File::open(&partial) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((0, hasher)),
            Err(error) => return Err(error),
        };
        if file.metadata()?.len() > size {
            drop(file);
            std::fs::remove_file(&partial)?;
            return Ok((0, hasher));
        }
        let mut buffer = vec![0; 1 << 20];
        let mut have = 0;
        loop {
            match file.read(&mut buffer)? {
                0 => return Ok((have, hasher)),
                read => {
                    hasher.update(&buffer[..read]);
                    have += read as u64;
                }
            }
        }
    })
    .await
    .map_err(|error| ClientError::Failed(error.to_string()))?
    .map_err(|error| ClientError::Failed(format!("the partial file: {error}")))
}

/// A name for the download from the job's file name, which came from whoever uploaded it: its
/// last component, letters, digits, `.`, `-` and `_` only, never hidden; else the job id.
fn safe_file_name(filename: Option<&str>, id: JobId) -> String {
    let last = filename
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let safe: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    let safe = safe.trim_start_matches('.');
    if safe.is_empty() {
        id.to_string()
    } else {
        safe.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_keep_only_a_safe_last_component() {
        let id = JobId::new();
        assert_eq!(safe_file_name(Some("report.pdf"), id), "report.pdf");
        assert_eq!(safe_file_name(Some("../../etc/passwd"), id), "passwd");
        assert_eq!(safe_file_name(Some("C:\\x\\a b.txt"), id), "a_b.txt");
        assert_eq!(safe_file_name(Some(".bashrc"), id), "bashrc");
        assert_eq!(safe_file_name(Some(".."), id), id.to_string());
        assert_eq!(safe_file_name(None, id), id.to_string());
    }
}
