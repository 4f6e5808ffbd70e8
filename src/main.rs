//! The `ingest` binary: read settings, set up logging, serve until SIGINT/SIGTERM; or manage
//! accounts and keys (`ingest accounts …`, `ingest keys …`) in the configured database.
use clap::Parser;
use ingest::server::{
    blobs::object::BlobStoreUnavailable,
    cli::{self, Manage},
    config::{Cli, Command, Settings},
    startup::{Application, DataDirInUse},
    store::DatabaseUnavailable,
    telemetry,
};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help and --version.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // One line, like every other refusal to start.
            let reason = error.to_string();
            let reason = reason.lines().next().unwrap_or("invalid arguments");
            eprintln!("ingest: {}", reason.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
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
