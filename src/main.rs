//! The `ingest` binary: read settings, set up logging, serve until SIGINT/SIGTERM; or manage
//! accounts and keys (`ingest accounts …`, `ingest keys …`) in the configured database; or act
//! as a client of a server (`ingest upload …`, `status`, `watch`, `ls`, `download`, `cancel`,
//! `rm`, `completions`).
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use ingest::{
    client::{self, ClientCli, ClientCommand},
    server::{
        blobs::object::BlobStoreUnavailable,
        cli::{self, Manage},
        config::{Cli, Command, Settings},
        startup::{Application, DataDirInUse},
        store::DatabaseUnavailable,
        telemetry,
    },
};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

const EXAMPLES: &str = "\
Examples:
  INGEST_TOKEN=… ingest                          serve on 127.0.0.1:3000 (same as `ingest serve`)
  ingest accounts add alice && ingest keys add alice
  INGEST_TOKEN=… ingest upload --follow big.iso  upload, resumably, and wait until stored
  ingest ls --status failed
  ingest completions bash > ~/.local/share/bash-completion/completions/ingest

`ingest COMMAND --help` shows each command's options and examples.";

#[tokio::main]
async fn main() -> ExitCode {
    let arguments: Vec<_> = std::env::args_os().collect();
    let named = |index: usize| arguments.get(index).and_then(|argument| argument.to_str());
    // The client's commands are parsed on their own: the server's settings are no options of
    // theirs. `ingest help upload` shows the same help as `ingest upload --help`.
    if named(1).is_some_and(client::is_client_command) {
        return match ClientCli::try_parse_from(&arguments) {
            Ok(cli) => client::run(cli, completion_command).await,
            Err(error) => refuse_arguments(error),
        };
    }
    if let Some(name) =
        named(2).filter(|name| named(1) == Some("help") && client::is_client_command(name))
    {
        return refuse_arguments(
            ClientCli::try_parse_from(["ingest", name, "--help"]).unwrap_err(),
        );
    }
    let matches = match whole_command().try_get_matches_from(&arguments) {
        Ok(matches) => matches,
        Err(error) => return refuse_arguments(error),
    };
    if let Some(name) = matches
        .subcommand_name()
        .filter(|name| client::is_client_command(name))
    {
        eprintln!("ingest: `{name}` comes first, its options after it: ingest {name} [OPTIONS] …");
        return ExitCode::from(2);
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => return refuse_arguments(error),
    };
    let token_env = std::env::var("INGEST_TOKEN")
        .ok()
        .filter(|token| !token.is_empty());
    let settings = match Settings::resolve(cli.args, token_env) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("ingest: {error}");
            return ExitCode::from(2);
        }
    };
    let manage = match cli.command {
        None | Some(Command::Serve) => None,
        Some(Command::Accounts(command)) => Some(Manage::Accounts(command)),
        Some(Command::Keys(command)) => Some(Manage::Keys(command)),
    };
    if let Some(command) = manage {
        telemetry::init_audit(settings.log_format);
        return cli::run(command, &settings).await;
    }
    telemetry::init(settings.log_format);
    if settings.token_generated {
        // Shown once, like Jupyter, on the console only (not through the log pipeline).
        eprintln!(
            "ingest: no INGEST_TOKEN or token file configured; this run accepts the token\n    {}",
            settings.token.reveal()
        );
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    // Served from a spawned task: the thread running `main` is not one of the runtime's
    // workers, and work driven from it would not be shared with them.
    let outcome = match Application::build(settings, shutdown).await {
        Ok(app) => tokio::spawn(app.run_until_stopped())
            .await
            .unwrap_or_else(|join| Err(anyhow::anyhow!("server task failed: {join}"))),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // A database or blob store that cannot be reached, or a data dir another process
        // serves, is a setting to fix, refused like a bad setting.
        Err(error)
            if error.chain().any(|cause| {
                cause.is::<DatabaseUnavailable>()
                    || cause.is::<BlobStoreUnavailable>()
                    || cause.is::<DataDirInUse>()
            }) =>
        {
            eprintln!("ingest: {error:#}");
            ExitCode::from(2)
        }
        Err(error) => {
            tracing::error!(error = ?error, "ingest stopped with an error");
            eprintln!("ingest: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The server's command line with the client's commands beside its own, for `ingest --help`.
fn whole_command() -> clap::Command {
    ClientCommand::augment_subcommands(Cli::command().after_help(EXAMPLES))
}

/// The same for completion scripts, where the server's settings complete at the top level only
/// (as global options they would be offered after every client command too).
fn completion_command() -> clap::Command {
    whole_command().mut_args(|argument| argument.global(false))
}

/// `--help` and `--version` print and exit 0; a bad command line is one line and exit code 2,
/// like every other refusal to start.
fn refuse_arguments(error: clap::Error) -> ExitCode {
    if !error.use_stderr() {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let reason = error.to_string();
    let reason = reason.lines().next().unwrap_or("invalid arguments");
    eprintln!("ingest: {}", reason.trim_start_matches("error: "));
    ExitCode::from(2)
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
