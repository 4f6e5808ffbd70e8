//! Types shared by the server and the browser: job identity, lifecycle, metadata rules, digests
//! and progress math.
mod account;
mod digest;
#[cfg(test)]
pub(crate) mod fuzzing;
mod job;
mod metadata;
mod progress;
mod upload_name;

pub use account::{
    AccountId, AccountName, InvalidAccountName, InvalidKeyId, KeyId, Owner, Role, Scope,
    UnknownRole, BUILT_IN_ADMIN, KEY_ID_LEN,
};
pub use digest::{InvalidDigest, Sha256Digest};
pub use job::{InvalidJobId, JobId, JobState, JobStatus, Metadata, Timestamp, UnknownJobState};
pub use metadata::{
    check_metadata, empty_metadata, metadata_problem, parse_metadata, MetadataError,
};
pub use progress::Progress;
pub use upload_name::UploadName;
