//! A resumable upload's bytes staged in the bucket, as tusd's S3 store keeps them: whole parts
//! of `PART_SIZE` in a multipart upload, and the durable bytes short of a part (the tail) as an
//! object of their own, which the next request (on whichever node) reads back and sends on
//! ahead of its own bytes. A request holds one part in memory; what it made durable is
//! recorded by the caller, after every byte of it is in the bucket.
use crate::{
    domain::JobId,
    server::{
        blobs::ObjectBlobs,
        receive::{Bounds, ChunkHasher, Partial, ReceiveError, Stopped},
        store::{StagedPart, StagedParts},
    },
};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sha2_state::Digest as _;
use std::io;

/// Every part but the last: above S3's 5 MiB minimum, the size `ObjectBlobs` puts files in.
/// With 10,000 parts at most, a staged upload can reach 78 GiB.
pub const PART_SIZE: usize = crate::server::blobs::object::PART_SIZE;

/// Appends `body` to upload `job`, staged in `bucket` with `from.offset` bytes durable (its
/// parts in `from.parts`, the rest in the tail object). Takes at most `bounds.limit` bytes.
/// When the bytes end the file (`length`), the last part goes up and the multipart upload is
/// completed: the file is then staged whole. Otherwise the bytes past the last whole part
/// become the new tail. A cut keeps what arrived (unless a checksum was given); a refusal, a
/// cancel or a checksum mismatch keeps nothing of this request. The result's offset, hash and
/// parts are for the caller to record; the tail `from` pointed at stays until then.
pub async fn append<S, E>(
    bucket: &ObjectBlobs,
    job: JobId,
    mut body: S,
    from: Partial,
    length: Option<u64>,
    bounds: Bounds<'_>,
    mut on_progress: impl FnMut(u64),
) -> Result<Partial, Stopped>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let stop = |error: ReceiveError| Stopped {
        error,
        partial: from.clone(),
    };
    let recorded = from.parts.clone().unwrap_or_default();
    let tail_length = from.offset - recorded.in_parts().min(from.offset);
    let mut buffer = BytesMut::with_capacity(PART_SIZE);
    if tail_length > 0 {
        let tail = bucket
            .read_tail(job, from.offset)
            .await
            .map_err(|error| stop(ReceiveError::Io(error)))?;
        if tail.len() as u64 != tail_length {
            return Err(stop(ReceiveError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the staged tail holds {} of {tail_length} bytes",
                    tail.len()
                ),
            ))));
        }
        buffer.extend_from_slice(&tail);
    }
    let Bounds {
        limit,
        idle,
        cancelled,
        checksum,
    } = bounds;
    let mut chunk_hasher = checksum
        .as_ref()
        .map(|checksum| ChunkHasher::new(checksum.algorithm));
    let mut hasher = from.hasher.clone();
    let mut parts = recorded.clone();
    let mut received = 0u64;
    let outcome = loop {
        let next = tokio::select! {
            next = tokio::time::timeout(idle, body.next()) => next,
            _ = cancelled.cancelled() => break Err(ReceiveError::Cancelled),
        };
        let chunk = match next {
            Err(_) => {
                break Err(ReceiveError::Interrupted {
                    received,
                    reason: format!("no data for {} s", idle.as_secs_f64()),
                })
            }
            Ok(None) => break Ok(()),
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(error))) => {
                break Err(ReceiveError::Interrupted {
                    received,
                    reason: error.to_string(),
                })
            }
        };
        received += chunk.len() as u64;
        if received > limit {
            break Err(ReceiveError::TooLarge { limit });
        }
        // Chunks are what hyper hands over (≤ 64 KiB or so): hashing one is brief.
        hasher.update(&chunk);
        if let Some(chunk_hasher) = &mut chunk_hasher {
            chunk_hasher.update(&chunk);
        }
        buffer.extend_from_slice(&chunk);
        if buffer.len() >= PART_SIZE {
            let part = buffer.split_to(PART_SIZE).freeze();
            if let Err(error) = send_part(bucket, job, &mut parts, part).await {
                break Err(ReceiveError::Io(error));
            }
        }
        on_progress(received);
    };
    let keep = match &outcome {
        Ok(()) => true,
        Err(ReceiveError::Interrupted { .. }) => checksum.is_none(),
        Err(_) => false,
    };
    let matches = match (&checksum, chunk_hasher) {
        (Some(expected), Some(actual)) if keep => expected.expected == actual.finish(),
        _ => true,
    };
    let (outcome, dropped) = match (outcome, matches) {
        (Err(error), _) if !keep => (Ok(()), Some(error)),
        (_, false) => (Ok(()), Some(ReceiveError::ChecksumMismatch)),
        (outcome, true) => (outcome, None),
    };
    if let Some(error) = dropped {
        // Parts sent for nothing: past the recorded ones, they are replaced by the next
        // request's or left out of the completed upload; a multipart upload this request
        // began is dropped.
        if recorded.upload_id.is_none() {
            if let Some(upload_id) = &parts.upload_id {
                if let Err(abort) = bucket.abort_parts(job, upload_id).await {
                    tracing::warn!(error = %abort, job_id = %job, "dropping an unused multipart upload failed");
                }
            }
        }
        return Err(stop(error));
    }
    let offset = from.offset + received;
    let finished = length == Some(offset);
    let kept = if finished {
        finish(bucket, job, &mut parts, buffer.freeze()).await
    } else if buffer.is_empty() {
        Ok(())
    } else {
        bucket.put_tail(job, offset, buffer.freeze()).await
    };
    if let Err(error) = kept {
        return Err(stop(ReceiveError::Io(error)));
    }
    let partial = Partial {
        offset,
        hasher,
        parts: Some(parts),
    };
    match outcome {
        Ok(()) => Ok(partial),
        Err(error) => Err(Stopped { error, partial }),
    }
}

/// Sends one whole part, beginning the multipart upload at the first.
async fn send_part(
    bucket: &ObjectBlobs,
    job: JobId,
    parts: &mut StagedParts,
    part: Bytes,
) -> io::Result<()> {
    let upload_id = match &parts.upload_id {
        Some(upload_id) => upload_id.clone(),
        None => {
            let upload_id = bucket.begin_parts(job).await?;
            parts.upload_id = Some(upload_id.clone());
            upload_id
        }
    };
    let size = part.len() as u64;
    let etag = bucket
        .put_part(job, &upload_id, parts.parts.len(), part)
        .await?;
    parts.parts.push(StagedPart { etag, size });
    Ok(())
}

/// Stages the whole file: the last bytes as the last part and the multipart upload completed,
/// or, for a file shorter than a part, one object.
async fn finish(
    bucket: &ObjectBlobs,
    job: JobId,
    parts: &mut StagedParts,
    last: Bytes,
) -> io::Result<()> {
    let Some(upload_id) = parts.upload_id.clone() else {
        bucket.put_whole(job, last).await?;
        return Ok(());
    };
    if !last.is_empty() {
        send_part(bucket, job, parts, last).await?;
    }
    let etags = parts.parts.iter().map(|part| part.etag.clone()).collect();
    bucket.complete_parts(job, &upload_id, etags).await?;
    Ok(())
}
