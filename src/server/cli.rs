//! `ingest accounts …` and `ingest keys …`: managing accounts and API keys against the
//! configured database (the data dir's SQLite file, in WAL mode, or PostgreSQL), which works
//! while servers run: they see each change within a second. Output is for people and scripts:
//! a new key alone on the last line of standard output, never a key in lists. A refusal
//! (including a database that cannot be reached) is one line on standard error and exit code 2;
//! an internal failure (database busy, I/O) exits 1.
use super::commands::QuotaValue;
pub use super::commands::{AccountsCommand, KeysCommand};
use super::{
    accounts::{self, AccountError, Accounts},
    config::Settings,
    store::{DatabaseUnavailable, Stores},
};
use crate::api::KeyInfo;
use secrecy::ExposeSecret;
use std::process::ExitCode;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// A management command.
#[derive(Debug)]
pub enum Manage {
    Accounts(AccountsCommand),
    Keys(KeysCommand),
}

/// Runs a command against the configured database.
pub async fn run(command: Manage, settings: &Settings) -> ExitCode {
    match execute(command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (error, code) = match failure {
                Failure::Refused(error) => (error, 2),
                Failure::Internal(error) => (error, 1),
            };
            let line = format!("{error:#}");
            eprintln!("ingest: {}", line.lines().next().unwrap_or("failed"));
            ExitCode::from(code)
        }
    }
}

/// Why a command did not do its work: a refusal of what was asked (exit 2), or a failure of
/// the machinery (exit 1).
enum Failure {
    Refused(anyhow::Error),
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Internal(error)
    }
}

async fn execute(command: Manage, settings: &Settings) -> Result<(), Failure> {
    let database = settings.data_dir.join("ingest.db");
    // A PostgreSQL database is migrated by whoever opens it first; a SQLite file that is
    // missing means the data dir is not the server's.
    if settings.database_url.is_none() && !database.exists() {
        return Err(Failure::Refused(anyhow::anyhow!(
            "no database at {}; start the server once, or set --data-dir",
            database.display()
        )));
    }
    let stores = Stores::open(settings.database_url.as_ref(), &database)
        .await
        .map_err(|error| {
            if error.chain().any(|cause| cause.is::<DatabaseUnavailable>()) {
                Failure::Refused(error)
            } else {
                Failure::Internal(error)
            }
        })?;
    let accounts = Accounts::new(stores.accounts);
    match command {
        Manage::Accounts(AccountsCommand::Add { name, role }) => {
            let account = accounts.add_account(name, role).await.map_err(refusal)?;
            println!("account {} ({}) created", account.name, account.role);
        }
        Manage::Accounts(AccountsCommand::List) => {
            println!("NAME\tROLE\tCREATED");
            for account in accounts.accounts().await.map_err(refusal)? {
                let created = when(Some(account.created_at));
                println!("{}\t{}\t{created}", account.name, account.role);
            }
        }
        Manage::Accounts(AccountsCommand::Remove { name }) => {
            accounts.remove_account(&name).await.map_err(refusal)?;
            println!("account {name} removed; its keys are revoked and its jobs kept");
        }
        Manage::Accounts(AccountsCommand::Quota {
            name,
            stored_bytes,
            uploads,
            rps,
        }) => {
            let mut quotas = accounts.quotas(&name).await.map_err(refusal)?;
            let change = |own: &mut Option<u64>, given: Option<QuotaValue>| {
                if let Some(given) = given {
                    *own = given.own();
                }
            };
            change(&mut quotas.max_stored_bytes, stored_bytes);
            change(&mut quotas.max_uploads, uploads);
            change(&mut quotas.max_requests_per_second, rps);
            let account = accounts.set_quotas(&name, quotas).await.map_err(refusal)?;
            let shown =
                |own: Option<u64>| own.map_or_else(|| "default".to_owned(), |n| n.to_string());
            println!(
                "account {}: stored bytes {}, uploads at once {}, requests per second {}",
                account.name,
                shown(account.quotas.max_stored_bytes),
                shown(account.quotas.max_uploads),
                shown(account.quotas.max_requests_per_second)
            );
        }
        Manage::Keys(KeysCommand::Add {
            name,
            expires_in_days,
        }) => {
            let expires_at = accounts::key_expiry(expires_in_days).map_err(refusal)?;
            let created = accounts.add_key(&name, expires_at).await.map_err(refusal)?;
            println!(
                "key {} for {} (expires: {}); it is shown only now:",
                created.key_id,
                created.account,
                when(created.expires_at)
            );
            println!("{}", created.key.expose_secret());
        }
        Manage::Keys(KeysCommand::List { name }) => {
            println!("KEY_ID\tACCOUNT\tCREATED\tEXPIRES\tREVOKED\tLAST_USED");
            for key in accounts.keys(name.as_ref()).await.map_err(refusal)? {
                println!("{}", key_line(&key));
            }
        }
        Manage::Keys(KeysCommand::Revoke { key_id }) => {
            let account = accounts.revoke_key(&key_id).await.map_err(refusal)?;
            println!("key {key_id} of {account} revoked");
        }
    }
    Ok(())
}

fn refusal(error: AccountError) -> Failure {
    match error {
        AccountError::Store(cause) => Failure::Internal(cause),
        refused => Failure::Refused(anyhow::anyhow!("{refused}")),
    }
}

fn key_line(key: &KeyInfo) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        key.key_id,
        key.account,
        when(Some(key.created_at)),
        when(key.expires_at),
        when(key.revoked_at),
        when(key.last_used_at)
    )
}

fn when(at: Option<OffsetDateTime>) -> String {
    at.and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}
