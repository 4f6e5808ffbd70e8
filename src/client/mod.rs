//! The command-line client (`ingest upload`, `status`, `watch`, `ls`, `download`, `cancel`,
//! `rm`): a client of the HTTP API like any other, sharing the job types with the server and
//! the browser, never the server's code.
mod api;
pub mod args;
mod download;
mod error;
mod follow;
mod progress;
mod resume;
mod upload;

use crate::domain::{JobState, JobStatus};
pub use args::{ClientCli, ClientCommand};
use args::{JobArgs, ListArgs};
use error::ClientError;
use http_client::Method;
use std::process::ExitCode;

/// Whether the command line names one of the client's commands (then `ClientCli` parses it).
pub fn is_client_command(first_argument: &str) -> bool {
    use clap::CommandFactory;
    first_argument != "help"
        && ClientCli::command()
            .find_subcommand(first_argument)
            .is_some()
}

/// Runs a client command. `whole_command` is the binary's full command line, server commands
/// included, for the completion scripts.
pub async fn run(cli: ClientCli, whole_command: impl FnOnce() -> clap::Command) -> ExitCode {
    let outcome = match cli.command {
        ClientCommand::Upload(args) => return upload::run(args).await,
        ClientCommand::Status(args) => status(args).await,
        ClientCommand::Watch(args) => watch(args).await,
        ClientCommand::Ls(args) => list(args).await,
        ClientCommand::Download(args) => download::run(args).await,
        ClientCommand::Cancel(args) => cancel(args).await,
        ClientCommand::Rm(args) => remove(args).await,
        ClientCommand::Completions { shell } => {
            let mut command = whole_command();
            clap_complete::generate(shell, &mut command, "ingest", &mut std::io::stdout());
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => stop(error),
    }
}

/// One line on standard error and the error's exit code.
fn stop(error: ClientError) -> ExitCode {
    eprintln!("ingest: {error}");
    ExitCode::from(error.exit_code())
}

/// A job on standard output: its status as the API gives it (`--json`), or one line of
/// tab-separated fields for people and `cut`.
fn show_job(job: &JobStatus, json: bool) {
    if json {
        match serde_json::to_string(job) {
            Ok(line) => println!("{line}"),
            Err(error) => eprintln!("ingest: job {}: {error}", job.job_id),
        }
        return;
    }
    let size = job.size.map_or("-".to_owned(), |size| size.to_string());
    let digest = job.sha256.map_or("-".to_owned(), |digest| digest.to_hex());
    let name = job
        .filename
        .as_deref()
        .map_or("-".to_owned(), error::one_line);
    let mut line = format!(
        "{}\t{}\t{}%\t{size}\t{digest}\t{name}",
        job.job_id, job.status, job.progress
    );
    if let Some(why) = &job.error {
        line.push('\t');
        line.push_str(&error::one_line(why));
    }
    println!("{line}");
}

/// A finished job's exit: 0 completed (or still running), 1 failed or cancelled.
fn job_outcome(job: &JobStatus) -> Result<(), ClientError> {
    match job.status {
        JobState::Failed => Err(ClientError::Failed(format!(
            "job {} failed: {}",
            job.job_id,
            job.error.as_deref().map_or(String::new(), error::one_line)
        ))),
        JobState::Cancelled => Err(ClientError::Failed(format!(
            "job {} was cancelled",
            job.job_id
        ))),
        _ => Ok(()),
    }
}

async fn status(args: JobArgs) -> Result<(), ClientError> {
    let api = api::Api::new(&args.connection)?;
    let job = api.status(args.id).await?;
    show_job(&job, args.output.json);
    Ok(())
}

async fn watch(args: JobArgs) -> Result<(), ClientError> {
    let api = api::Api::new(&args.connection)?;
    let display = progress::Display::new(args.output.quiet);
    let item = display.item(&args.id.to_string());
    let job = follow::until_finished(&api, args.id, &item).await?;
    item.finish(job.status.as_str());
    display.beside(|| show_job(&job, args.output.json));
    job_outcome(&job)
}

async fn list(args: ListArgs) -> Result<(), ClientError> {
    let api = api::Api::new(&args.connection)?;
    let page = api.list(args.status, args.limit).await?;
    for job in &page.jobs {
        show_job(job, args.output.json);
    }
    Ok(())
}

async fn cancel(args: JobArgs) -> Result<(), ClientError> {
    let api = api::Api::new(&args.connection)?;
    let url = api.url(&format!("/api/jobs/{}/cancel", args.id));
    api.send(|| api.request(Method::POST, url.clone())).await?;
    let job = api.status(args.id).await?;
    show_job(&job, args.output.json);
    Ok(())
}

async fn remove(args: JobArgs) -> Result<(), ClientError> {
    let api = api::Api::new(&args.connection)?;
    let url = api.url(&format!("/api/jobs/{}", args.id));
    api.send(|| api.request(Method::DELETE, url.clone()))
        .await?;
    if args.output.json {
        println!(
            "{}",
            serde_json::json!({ "job_id": args.id, "removed": true })
        );
    } else if !args.output.quiet {
        eprintln!("ingest: job {} removed", args.id);
    }
    Ok(())
}
