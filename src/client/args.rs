//! The client's command line as parsed: `ingest upload …`, `status`, `watch`, `ls`, `download`,
//! `cancel`, `rm` and `completions`, each with its examples in `--help`.
use crate::domain::{JobId, JobState};
use http_client::Url;
use std::path::PathBuf;

/// Where the server is when neither `--server` nor `INGEST_SERVER` says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:3000";

/// The client's commands, parsed on their own so that each one's `--help` lists only its own
/// options (the server's settings are global to the server's commands).
#[derive(Debug, clap::Parser)]
#[command(name = "ingest", version)]
pub struct ClientCli {
    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Upload files as ingest jobs over the server's resumable (tus) uploads.
    #[command(after_help = UPLOAD_EXAMPLES)]
    Upload(UploadArgs),
    /// Show a job's status.
    #[command(
        after_help = "Examples:\n  ingest status 0193a7c2-5f1e-7cc2-9d7e-2b6f0e9d1a44\n  ingest status --json 0193a7c2-5f1e-7cc2-9d7e-2b6f0e9d1a44 | jq .sha256"
    )]
    Status(JobArgs),
    /// Follow a job live until it is finished (exit 0 completed, 1 failed or cancelled).
    #[command(
        after_help = "Examples:\n  ingest watch 0193a7c2-5f1e-7cc2-9d7e-2b6f0e9d1a44 && echo stored"
    )]
    Watch(JobArgs),
    /// List jobs, newest first.
    #[command(
        after_help = "Examples:\n  ingest ls\n  ingest ls --status failed --limit 5\n  ingest ls --json | jq -r .job_id"
    )]
    Ls(ListArgs),
    /// Download a job's stored file; an interrupted download continues where it stopped.
    #[command(
        after_help = "Examples:\n  ingest download 0193a7c2-5f1e-7cc2-9d7e-2b6f0e9d1a44\n  ingest download 0193a7c2-5f1e-7cc2-9d7e-2b6f0e9d1a44 -o report.pdf\n  ingest download 0193a7c2-5f1e-7cc2-9d7e-2b6f0e9d1a44 -o - | tar x"
    )]
    Download(DownloadArgs),
    /// Cancel an unfinished job.
    #[command(after_help = "Examples:\n  ingest cancel 0193a7c2-5f1e-7cc2-9d7e-2b6f0e9d1a44")]
    Cancel(JobArgs),
    /// Remove a finished job (its file goes when no other job has the same content).
    #[command(after_help = "Examples:\n  ingest rm 0193a7c2-5f1e-7cc2-9d7e-2b6f0e9d1a44")]
    Rm(JobArgs),
    /// Print a shell completion script for the whole `ingest` command.
    #[command(
        after_help = "Examples:\n  ingest completions bash > ~/.local/share/bash-completion/completions/ingest\n  ingest completions zsh > ~/.zfunc/_ingest\n  ingest completions fish > ~/.config/fish/completions/ingest.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

const UPLOAD_EXAMPLES: &str = "\
Examples:
  ingest upload report.pdf
  ingest upload --follow --metadata '{\"source\":\"ci\"}' build/*.tar.gz
  ingest upload --parallel 4 --chunk-size 8MiB photos/*.jpg
  pg_dump db | ingest upload --follow -            (standard input: not resumable across runs)
  ingest upload --json --quiet data.csv | jq -r .job_id

The key comes from INGEST_TOKEN, or the file named by INGEST_TOKEN_FILE; never from a flag.
An interrupted upload (Ctrl-C, kill -9, a cut network, a server restart) continues where the
server's offset says when the same command is run again; what to continue is remembered in the
user's cache directory under the file's path, size and modification time.

Exit codes: 0 every job completed (or uploaded, without --follow), 1 a job failed or was
cancelled, or the server refused a request, 2 usage or configuration error, 3 the key was
refused, 4 the server could not be reached after retries.";

/// What every command needs to reach the server.
#[derive(Debug, clap::Args)]
pub struct Connection {
    /// The server's URL.
    #[arg(long, env = "INGEST_SERVER", default_value = DEFAULT_SERVER)]
    pub server: Url,
    /// Retries of a request that got no answer, 408, 429 or 5xx, with backoff (0.25 s
    /// doubling up to 10 s; a Retry-After is honoured).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: u32,
}

/// How results are shown.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct Output {
    /// One JSON object per job (the status as the API gives it) on standard output, nothing else.
    #[arg(long)]
    pub json: bool,
    /// No progress on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Files to upload; `-` reads standard input (sent in chunks held in memory, retried within
    /// the run, but not resumable by running the command again).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The job's metadata, a JSON object.
    #[arg(long, default_value = "{}", value_parser = json_object)]
    pub metadata: String,
    /// Wait until each job is finished (over the WebSocket, polling when it is unavailable),
    /// showing its processing progress.
    #[arg(long)]
    pub follow: bool,
    /// Files uploaded at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Bytes per PATCH request: `64MiB`, `512KiB`, `8MB` or a number of bytes. Each is made
    /// durable by the server before it answers, so fewer, larger chunks are faster; a cut
    /// chunk keeps what arrived.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, clap::Args)]
pub struct JobArgs {
    #[arg(value_parser = JobId::parse, value_name = "JOB_ID")]
    pub id: JobId,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only jobs in this state: queued, receiving, processing, completed, failed, cancelled.
    #[arg(long)]
    pub status: Option<JobState>,
    /// At most this many jobs.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: u32,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    #[arg(value_parser = JobId::parse, value_name = "JOB_ID")]
    pub id: JobId,
    /// Where to write the file (`-`: standard output, not resumable) [default: the job's file
    /// name, reduced to safe characters, in the current directory].
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// No progress on standard error.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// The smallest and largest `--chunk-size`.
const CHUNK_SIZES: std::ops::RangeInclusive<u64> = 1024..=(4 << 30);

/// `8MiB`, `64MiB`, `512KiB`, `1GiB`, `8MB` (decimal) or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{text:?}: units are B, KiB, MiB, GiB, KB, MB or GB"
            ))
        }
    };
    let size = number
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is not a size like 8MiB or 1048576"))?;
    if !CHUNK_SIZES.contains(&size) {
        return Err(format!("{text:?}: between 1KiB and 4GiB"));
    }
    Ok(size)
}

/// The metadata as given, once it is known to be a JSON object (the server says the same, but
/// only after the file is hashed).
fn json_object(text: &str) -> Result<String, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(text.to_owned()),
        Ok(_) => Err("the metadata is a JSON object, like '{\"source\":\"ci\"}'".to_owned()),
        Err(error) => Err(format!("the metadata is not JSON: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_and_decimal_units_and_plain_bytes() {
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("64mib"), Ok(64 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("8MB"), Ok(8_000_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    }

    #[test]
    fn sizes_out_of_range_or_malformed_are_refused() {
        for text in [
            "",
            "MiB",
            "8 parsecs",
            "-1",
            "1",
            "5GiB",
            "99999999999999999999GiB",
        ] {
            assert!(parse_size(text).is_err(), "{text:?}");
        }
    }
}
