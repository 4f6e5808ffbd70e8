//! Types shared by the server and the browser: job identity, lifecycle, digests and progress math.
mod digest;
mod job;
mod progress;
mod upload_name;

pub use digest::{InvalidDigest, Sha256Digest};
pub use job::{InvalidJobId, JobId, JobState, JobStatus, UnknownJobState};
pub use progress::Progress;
pub use upload_name::UploadName;
