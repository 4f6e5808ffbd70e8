//! `ingest accounts …` and `ingest keys …`: managing accounts and API keys on the server's host,
//! against the configured data dir's database (SQLite in WAL mode, so it works while the server
//! runs; the server sees each change within a second). Output is for people and scripts: a new
//! key alone on the last line of standard output, never a key in lists. A refusal is one line
//! on standard error and exit code 2.
use super::{
    accounts::{AccountError, Accounts},
    store::{KeyRecord, SqliteStore},
};
use crate::domain::{AccountName, KeyId, Role};
use secrecy::ExposeSecret;
use std::{path::Path, process::ExitCode, sync::Arc};
use time::{format_description::well_known::Rfc3339, Duration, OffsetDateTime};

/// `ingest accounts …`
#[derive(Debug, clap::Subcommand)]
pub enum AccountsCommand {
    /// Create an account.
    Add {
        #[arg(value_parser = AccountName::parse)]
        name: AccountName,
        /// admin (manages accounts and keys) or member.
        #[arg(long, default_value = "member")]
        role: Role,
    },
    /// List the accounts.
    List,
    /// Remove an account and revoke its keys (its jobs are kept).
    Remove {
        #[arg(value_parser = AccountName::parse)]
        name: AccountName,
    },
}

/// `ingest keys …`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key for an account; the key is printed once, alone on the last line.
    Add {
        #[arg(value_parser = AccountName::parse)]
        name: AccountName,
        /// Days until the key stops working [default: never].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        expires_in_days: Option<u16>,
    },
    /// List keys (never the keys themselves), of one account or all.
    List {
        #[arg(value_parser = AccountName::parse)]
        name: Option<AccountName>,
    },
    /// Revoke a key by its id.
    Revoke {
        #[arg(value_parser = KeyId::parse)]
        key_id: KeyId,
    },
}

/// A management command.
#[derive(Debug)]
pub enum Manage {
    Accounts(AccountsCommand),
    Keys(KeysCommand),
}

/// Runs a command against the database in `data_dir`.
pub async fn run(command: Manage, data_dir: &Path) -> ExitCode {
    match execute(command, data_dir).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let line = format!("{error:#}");
            eprintln!("ingest: {}", line.lines().next().unwrap_or("failed"));
            ExitCode::from(2)
        }
    }
}

async fn execute(command: Manage, data_dir: &Path) -> anyhow::Result<()> {
    let database = data_dir.join("ingest.db");
    if !database.exists() {
        anyhow::bail!(
            "no database at {}; start the server once, or set --data-dir",
            database.display()
        );
    }
    let accounts = Accounts::new(Arc::new(SqliteStore::open(&database).await?));
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
        Manage::Keys(KeysCommand::Add {
            name,
            expires_in_days,
        }) => {
            let expires_at = expires_in_days
                .map(|days| OffsetDateTime::now_utc() + Duration::days(i64::from(days)));
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

fn refusal(error: AccountError) -> anyhow::Error {
    match error {
        AccountError::Store(cause) => cause,
        refused => anyhow::anyhow!("{refused}"),
    }
}

fn key_line(key: &KeyRecord) -> String {
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
