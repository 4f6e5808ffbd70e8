//! A resumable upload's bytes staged in the bucket, as tusd's S3 store keeps them: whole parts
//! of `PART_SIZE` in a multipart upload, and the durable bytes short of a part (the tail) as an
//! object of their own, which the next request (on whichever node) reads back and sends on
//! ahead of its own bytes. A request holds one part in memory; what it made durable is
//! recorded by the caller, after every byte of it is in the bucket.
use crate::{
    domain::JobId,
    server::{
        blobs::ObjectBlobs,
        receive::{Bounds, ChunkHasher, Incoming, Partial, ReceiveError, Stopped},
        store::{StagedPart, StagedParts},
    },
};
use bytes::{Bytes, BytesMut};
use futures::Stream;
use sha2_state::Digest as _;
use std::io;

/// Every part but the last: above S3's 5 MiB minimum, the size `ObjectBlobs` puts files in.
/// With 10,000 parts at most, a staged upload can reach 78 GiB.
pub const PART_SIZE: usize = crate::server::blobs::object::PART_SIZE;

/// Where the file ends.
#[derive(Clone, Copy, Debug)]
pub enum FileEnd {
    /// At this length, when it is known (a resumable upload: its requests add up to it).
    AtLength(Option<u64>),
    /// With this request's body (a one-shot upload: nothing of it is kept if it is cut).
    WithTheBody,
}

/// Appends `body` to upload `job`, staged in `bucket` with `from.offset` bytes durable (its
/// parts in `from.parts`, the rest in the tail object). Takes at most `bounds.limit` bytes.
/// When the bytes end the file (`end`), the last part goes up and the multipart upload is
/// completed: the file is then staged whole. Otherwise the bytes past the last whole part
/// become the new tail. A cut keeps what arrived (unless a checksum was given, or the body was
/// the whole file); a refusal, a cancel or a checksum mismatch keeps nothing of this request.
/// The result's offset, hash and parts are for the caller to record; the tail `from` pointed
/// at stays until then. One part is sent while the next fills: two in memory at most.
pub async fn append<S, E>(
    bucket: &ObjectBlobs,
    job: JobId,
    body: S,
    from: Partial,
    end: FileEnd,
    bounds: Bounds<'_>,
    on_progress: impl FnMut(u64),
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
    let mut incoming = Incoming::new(body, &bounds, on_progress);
    let Bounds {
        cancelled,
        checksum,
        ..
    } = bounds;
    let mut chunk_hasher = checksum
        .as_ref()
        .map(|checksum| ChunkHasher::new(checksum.algorithm));
    let mut hasher = from.hasher.clone();
    let mut parts = Sending::new(bucket, job, recorded.clone());
    let outcome = loop {
        let chunk = match incoming.next().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        };
        // Chunks are what hyper hands over (≤ 64 KiB or so): hashing one is brief.
        hasher.update(&chunk);
        if let Some(chunk_hasher) = &mut chunk_hasher {
            chunk_hasher.update(&chunk);
        }
        // The buffer is filled to exactly a part and replaced, never grown: a request holds
        // the part filling and the part in flight.
        let mut rest = &chunk[..];
        let mut sent = Ok(());
        while !rest.is_empty() && sent.is_ok() {
            let taken = rest.len().min(PART_SIZE - buffer.len());
            buffer.extend_from_slice(&rest[..taken]);
            rest = &rest[taken..];
            if buffer.len() == PART_SIZE {
                let part = std::mem::replace(&mut buffer, BytesMut::with_capacity(PART_SIZE));
                // A slow bucket must not keep a cancel waiting for the part before this one
                // (only that wait is cut short: a multipart upload being begun is not lost).
                sent = tokio::select! {
                    settled = parts.settle() => settled.map_err(ReceiveError::Io),
                    _ = cancelled.cancelled() => Err(ReceiveError::Cancelled),
                };
                if sent.is_ok() {
                    sent = parts.send(part.freeze()).await.map_err(ReceiveError::Io);
                }
            }
        }
        if let Err(error) = sent {
            break Err(error);
        }
        incoming.handled();
    };
    let received = incoming.received();
    let keeps = |outcome: &Result<(), ReceiveError>| match (outcome, end) {
        (Ok(()), _) => true,
        (Err(ReceiveError::Interrupted { .. }), FileEnd::AtLength(_)) => checksum.is_none(),
        (Err(_), _) => false,
    };
    // A part that did not go in leaves a gap: nothing of this request can be kept. When
    // nothing is kept anyway, the part in flight is dropped rather than waited for, so that
    // a cancel or a refusal is answered at once however slow the bucket.
    let (outcome, mut parts) = if keeps(&outcome) {
        match parts.sent().await {
            Ok(parts) => (outcome, parts),
            Err((error, parts)) => (Err(ReceiveError::Io(error)), parts),
        }
    } else {
        (outcome, parts.abandoned())
    };
    let keep = keeps(&outcome);
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
        drop_unrecorded(bucket, job, &recorded, &parts).await;
        return Err(stop(error));
    }
    let offset = from.offset + received;
    let finished = match end {
        FileEnd::AtLength(length) => length == Some(offset),
        FileEnd::WithTheBody => true,
    };
    let kept = if finished {
        finish(bucket, job, &mut parts, buffer.freeze()).await
    } else if buffer.is_empty() {
        Ok(())
    } else {
        bucket.put_tail(job, offset, buffer.freeze()).await
    };
    if let Err(error) = kept {
        drop_unrecorded(bucket, job, &recorded, &parts).await;
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

/// Parts sent for nothing: past the recorded ones, they are replaced by the next request's or
/// left out of the completed upload; a multipart upload this request began is dropped.
async fn drop_unrecorded(
    bucket: &ObjectBlobs,
    job: JobId,
    recorded: &StagedParts,
    parts: &StagedParts,
) {
    if recorded.upload_id.is_some() {
        return;
    }
    if let Some(upload_id) = &parts.upload_id {
        if let Err(error) = bucket.abort_parts(job, upload_id).await {
            tracing::warn!(%error, job_id = %job, "dropping an unused multipart upload failed");
        }
    }
}

/// Parts on their way: one is sent while the next fills.
struct Sending<'a> {
    bucket: &'a ObjectBlobs,
    job: JobId,
    /// The parts sent so far (with their ETags), the one in flight not among them.
    parts: StagedParts,
    in_flight: Option<tokio::task::JoinHandle<io::Result<StagedPart>>>,
}

impl<'a> Sending<'a> {
    fn new(bucket: &'a ObjectBlobs, job: JobId, parts: StagedParts) -> Self {
        Self {
            bucket,
            job,
            parts,
            in_flight: None,
        }
    }

    /// Sends `part` once the one before it is in, beginning the multipart upload at the first.
    async fn send(&mut self, part: Bytes) -> io::Result<()> {
        self.settle().await?;
        let upload_id = match &self.parts.upload_id {
            Some(upload_id) => upload_id.clone(),
            None => {
                let upload_id = self.bucket.begin_parts(self.job).await?;
                self.parts.upload_id = Some(upload_id.clone());
                upload_id
            }
        };
        let (bucket, job, index) = (self.bucket.clone(), self.job, self.parts.parts.len());
        self.in_flight = Some(tokio::spawn(async move {
            let size = part.len() as u64;
            let etag = bucket.put_part(job, &upload_id, index, part).await?;
            Ok(StagedPart { etag, size })
        }));
        Ok(())
    }

    /// Waits for the part in flight. Stopped while waiting, the part stays in flight (for
    /// `abandoned` to drop).
    async fn settle(&mut self) -> io::Result<()> {
        if let Some(in_flight) = &mut self.in_flight {
            let part = in_flight.await;
            self.in_flight = None;
            self.parts.parts.push(part.map_err(io::Error::other)??);
        }
        Ok(())
    }

    /// The parts that went in, the one in flight stopped: nothing of this request is kept.
    fn abandoned(mut self) -> StagedParts {
        if let Some(in_flight) = self.in_flight.take() {
            in_flight.abort();
        }
        self.parts
    }

    /// Every part sent, once the last is in; on a failure, the parts that did go in.
    async fn sent(mut self) -> Result<StagedParts, (io::Error, StagedParts)> {
        match self.settle().await {
            Ok(()) => Ok(self.parts),
            Err(error) => Err((error, self.parts)),
        }
    }
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
        let mut sending = Sending::new(bucket, job, parts.clone());
        sending.send(last).await?;
        *parts = sending.sent().await.map_err(|(error, _)| error)?;
    }
    let etags = parts.parts.iter().map(|part| part.etag.clone()).collect();
    bucket.complete_parts(job, &upload_id, etags).await?;
    Ok(())
}
