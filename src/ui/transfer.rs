//! The arithmetic of transfers, shared by every card and the overall bar: rates over a
//! sliding window, time left, percentages, the metadata text a file from a folder carries, and
//! what this browser remembers of an unfinished upload (the file's fingerprint, its job and the
//! SHA-256 of each chunk sent, so a resume can tell the same file from another).
//! Pure functions, so they are tested here rather than in a browser.
// Much of this is driven by the browser half only; the server renders an empty queue.
#![cfg_attr(not(feature = "hydrate"), allow(dead_code))]

use crate::domain::JobId;

/// Bytes over time, from samples of a growing byte count: the rate over the last few seconds
/// (steadier than the last sample, quicker than the average since the start).
#[derive(Clone, Debug, Default)]
pub struct RateMeter {
    samples: std::collections::VecDeque<(f64, u64)>,
}

/// How far back the rate looks.
const WINDOW_MS: f64 = 4000.0;

impl RateMeter {
    /// Records that `bytes` were done at `now_ms`. A count that goes back (a resumed upload
    /// restarts from the server's offset) starts over.
    pub fn record(&mut self, now_ms: f64, bytes: u64) {
        if self.samples.back().is_some_and(|&(_, last)| bytes < last) {
            self.samples.clear();
        }
        self.samples.push_back((now_ms, bytes));
        while self
            .samples
            .front()
            .is_some_and(|&(at, _)| now_ms - at > WINDOW_MS)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
    }

    /// Bytes per second, once there is half a second to go by.
    pub fn bytes_per_second(&self) -> Option<u64> {
        let (&(first_at, first), &(last_at, last)) = (self.samples.front()?, self.samples.back()?);
        let span = last_at - first_at;
        (span >= 500.0).then(|| ((last - first) as f64 * 1000.0 / span) as u64)
    }

    pub fn reset(&mut self) {
        self.samples.clear();
    }
}

/// Milliseconds until `remaining` bytes are sent at `rate` bytes per second.
pub fn time_left_ms(remaining: u64, rate: u64) -> Option<i64> {
    (rate > 0).then(|| (remaining as f64 * 1000.0 / rate as f64) as i64)
}

/// 0–100, rounded down, so 100 means all of it.
pub fn percent(done: u64, total: u64) -> u8 {
    if total == 0 {
        return 100;
    }
    (u128::from(done.min(total)) * 100 / u128::from(total)) as u8
}

/// The metadata text (already checked to be an object, or empty) with the file's place in its
/// folder added as `"path"`. Spliced as text: the browser never builds JSON values (wasm size).
/// A `"path"` the person typed comes later in the object, so it wins.
pub fn metadata_with_path(metadata: &str, path: Option<&str>) -> String {
    let trimmed = metadata.trim();
    let Some(path) = path else {
        return trimmed.to_owned();
    };
    let field = format!(
        "\"path\":{}",
        serde_json::to_string(path).unwrap_or_else(|_| "\"\"".to_owned())
    );
    match trimmed.strip_prefix('{') {
        Some(rest) if rest.trim_start().starts_with('}') => format!("{{{field}}}"),
        Some(rest) => format!("{{{field},{rest}"),
        None => format!("{{{field}}}"),
    }
}

/// The fingerprint of a file the browser knows: size, modification time and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub size: u64,
    pub last_modified: u64,
    pub name: String,
}

/// `localStorage` keys of unfinished uploads start with this.
pub const UPLOAD_KEY_PREFIX: &str = "ingest-upload:";

impl Fingerprint {
    pub fn key(&self) -> String {
        format!(
            "{UPLOAD_KEY_PREFIX}{}:{}:{}",
            self.size, self.last_modified, self.name
        )
    }

    /// Reads a key written by `key` (the name, last, may hold colons).
    pub fn parse_key(key: &str) -> Option<Self> {
        let mut parts = key.strip_prefix(UPLOAD_KEY_PREFIX)?.splitn(3, ':');
        Some(Self {
            size: parts.next()?.parse().ok()?,
            last_modified: parts.next()?.parse().ok()?,
            name: parts.next()?.to_owned(),
        })
    }
}

/// One chunk of an upload as it was sent: bytes `start..end` of the file and their SHA-256
/// (lower-case hex), the `Upload-Checksum` its PATCH carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentChunk {
    pub start: u64,
    pub end: u64,
    pub sha256: String,
}

/// What this browser keeps (in `localStorage`, under the file's `Fingerprint::key`) about an
/// unfinished upload: its job, and each chunk hashed for sending. A file picked to resume it
/// must hash to the same digests over the same ranges: the fingerprint alone (name, size,
/// modification time) is easily shared by another file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRecord {
    pub id: JobId,
    /// In file order, no two with the same start.
    pub chunks: Vec<SentChunk>,
}

impl UploadRecord {
    pub fn new(id: JobId) -> Self {
        Self {
            id,
            chunks: Vec::new(),
        }
    }

    /// `<job id> <start>-<end>:<sha256> …`; a bare job id (what earlier versions kept) is a
    /// record without chunks.
    pub fn to_text(&self) -> String {
        let mut text = self.id.to_string();
        for chunk in &self.chunks {
            text.push_str(&format!(" {}-{}:{}", chunk.start, chunk.end, chunk.sha256));
        }
        text
    }

    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split(' ');
        let id = JobId::parse(words.next()?).ok()?;
        let mut record = Self::new(id);
        for word in words {
            let (range, sha256) = word.split_once(':')?;
            let (start, end) = range.split_once('-')?;
            let is_digest = sha256.len() == 64
                && sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !is_digest {
                return None;
            }
            record.add(SentChunk {
                start: start.parse().ok()?,
                end: end.parse().ok()?,
                sha256: sha256.to_owned(),
            });
        }
        Some(record)
    }

    /// Notes a chunk hashed for sending. The same range again (a retry) replaces the earlier
    /// one; chunks stay in file order.
    pub fn add(&mut self, chunk: SentChunk) {
        self.chunks.retain(|kept| kept.start != chunk.start);
        let at = self.chunks.partition_point(|kept| kept.start < chunk.start);
        self.chunks.insert(at, chunk);
    }
}

/// Why a file picked again to resume an upload was not taken: its bytes are not the ones sent,
/// or they could not be compared (the page is then to ask again, not to blame the file).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    Differs(String),
    Unchecked(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_follows_the_last_seconds_and_restarts_after_a_jump_back() {
        let mut meter = RateMeter::default();
        meter.record(0.0, 0);
        assert_eq!(meter.bytes_per_second(), None);
        meter.record(1000.0, 1_000_000);
        assert_eq!(meter.bytes_per_second(), Some(1_000_000));
        for second in 2..10 {
            meter.record(second as f64 * 1000.0, 1_000_000 + 2_000_000 * (second - 1));
        }
        assert_eq!(meter.bytes_per_second(), Some(2_000_000));
        meter.record(10_000.0, 5);
        assert_eq!(meter.bytes_per_second(), None);
    }

    #[test]
    fn time_left_and_percent() {
        assert_eq!(time_left_ms(10_000_000, 2_000_000), Some(5000));
        assert_eq!(time_left_ms(1, 0), None);
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(5, 5), 100);
        assert_eq!(percent(0, 0), 100);
    }

    #[test]
    fn a_folder_path_joins_the_metadata() {
        assert_eq!(metadata_with_path("", None), "");
        assert_eq!(
            metadata_with_path("", Some("dir/a \"b\".txt")),
            r#"{"path":"dir/a \"b\".txt"}"#
        );
        assert_eq!(
            metadata_with_path(" { } ", Some("d/x")),
            r#"{"path":"d/x"}"#
        );
        assert_eq!(
            metadata_with_path(r#"{"k": 1}"#, Some("d/x")),
            r#"{"path":"d/x","k": 1}"#
        );
    }

    #[test]
    fn fingerprints_round_trip_through_their_key() {
        let print = Fingerprint {
            size: 42,
            last_modified: 1_700_000_000_000,
            name: "a:b.txt".to_owned(),
        };
        assert_eq!(print.key(), "ingest-upload:42:1700000000000:a:b.txt");
        assert_eq!(Fingerprint::parse_key(&print.key()), Some(print));
        assert_eq!(Fingerprint::parse_key("other:1:2:x"), None);
    }

    #[test]
    fn an_upload_record_keeps_its_chunks_in_order_and_reads_back_from_its_text() {
        let id = JobId::new();
        let digest = |n: u8| format!("{n:02x}").repeat(32);
        let mut record = UploadRecord::new(id);
        assert_eq!(record.to_text(), id.to_string());
        assert_eq!(UploadRecord::parse(&id.to_string()), Some(record.clone()));
        for (start, end, n) in [(4, 8, 2), (0, 4, 1), (4, 8, 3)] {
            record.add(SentChunk {
                start,
                end,
                sha256: digest(n),
            });
        }
        assert_eq!(
            record.to_text(),
            format!("{id} 0-4:{} 4-8:{}", digest(1), digest(3))
        );
        assert_eq!(UploadRecord::parse(&record.to_text()), Some(record));
        assert_eq!(UploadRecord::parse(&format!("{id} 0-4:xyz")), None);
        assert_eq!(UploadRecord::parse("not-an-id"), None);
    }
}
