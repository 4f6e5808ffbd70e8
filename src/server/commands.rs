//! The `ingest accounts …` and `ingest keys …` commands as parsed, a leaf the configuration
//! names; `cli` runs them.
use crate::domain::{AccountName, KeyId, Role};

/// Longest key lifetime that can be asked for, in days (100 years), over HTTP and in the CLI.
pub const MAX_EXPIRES_IN_DAYS: u32 = 36_500;

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
    /// Set an account's own quotas; each left out stays as it is, `default` takes the
    /// server's default, 0 means no limit.
    Quota {
        #[arg(value_parser = AccountName::parse)]
        name: AccountName,
        /// Bytes its jobs' files and unfinished uploads may take.
        #[arg(long, value_parser = quota_value)]
        stored_bytes: Option<QuotaValue>,
        /// Uploads in progress at once.
        #[arg(long, value_parser = quota_value)]
        uploads: Option<QuotaValue>,
        /// Requests per second.
        #[arg(long, value_parser = quota_value)]
        rps: Option<QuotaValue>,
    },
}

/// A quota as given on the command line: a number, or `default` (the server's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaValue {
    Default,
    Limit(u64),
}

impl QuotaValue {
    /// What the account's own quota becomes (`None`: the server's default).
    pub fn own(self) -> Option<u64> {
        match self {
            QuotaValue::Default => None,
            QuotaValue::Limit(limit) => Some(limit),
        }
    }
}

fn quota_value(text: &str) -> Result<QuotaValue, String> {
    if text == "default" {
        return Ok(QuotaValue::Default);
    }
    text.parse::<u64>()
        .ok()
        .filter(|&n| i64::try_from(n).is_ok())
        .map(QuotaValue::Limit)
        .ok_or_else(|| format!("{text:?} is not a whole number or `default`"))
}

/// `ingest keys …`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key for an account; the key is printed once, alone on the last line.
    Add {
        #[arg(value_parser = AccountName::parse)]
        name: AccountName,
        /// Days until the key stops working [default: never].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_EXPIRES_IN_DAYS)))]
        expires_in_days: Option<u32>,
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
