//! Account quotas: the limits in force for an account (its own, else the server's defaults),
//! the refusal a quota answers with, and the per-account request rate. What an account uses is
//! counted from its jobs by the store, never kept as a counter that could drift.
use super::config::Settings;
use crate::{
    api::{Quota, QuotaOverrides, Quotas},
    domain::{AccountId, AccountName},
};
use governor::{
    clock::{Clock, DefaultClock},
    DefaultDirectRateLimiter, Quota as Rate,
};
use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

/// The limits in force for an account with `overrides`: each its own when set, else the
/// server's default; 0 in either means no limit.
pub fn in_force(settings: &Settings, overrides: &QuotaOverrides) -> Quotas {
    let limit = |own: Option<u64>, default: u64| Some(own.unwrap_or(default)).filter(|&n| n > 0);
    Quotas {
        max_stored_bytes: limit(overrides.max_stored_bytes, settings.quota_stored_bytes),
        max_uploads: limit(overrides.max_uploads, settings.quota_uploads),
        max_requests_per_second: limit(
            overrides.max_requests_per_second,
            settings.rate_limit_per_second,
        ),
    }
}

/// An account quota refused a request. Logged (with the account, never a key) where it is
/// turned into HTTP.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuotaExceeded {
    #[error(
        "account {account} may store {limit} bytes and already uses {used}; this upload does not \
         fit (delete jobs it no longer needs to free space)"
    )]
    StoredBytes {
        account: AccountName,
        limit: u64,
        used: u64,
    },
    #[error(
        "account {account} has {limit} uploads in progress, as many as it may have at once; \
         finish or end one first"
    )]
    Uploads { account: AccountName, limit: u64 },
    #[error("account {account} may make {limit} requests per second; retry after {retry_after} s")]
    Rate {
        account: AccountName,
        limit: u64,
        retry_after: u64,
    },
}

impl QuotaExceeded {
    pub fn quota(&self) -> Quota {
        match self {
            QuotaExceeded::StoredBytes { .. } => Quota::StoredBytes,
            QuotaExceeded::Uploads { .. } => Quota::Uploads,
            QuotaExceeded::Rate { .. } => Quota::RequestsPerSecond,
        }
    }

    pub fn account(&self) -> &AccountName {
        match self {
            QuotaExceeded::StoredBytes { account, .. }
            | QuotaExceeded::Uploads { account, .. }
            | QuotaExceeded::Rate { account, .. } => account,
        }
    }
}

/// How long a client refused for uploads at once is asked to wait: uploads take seconds or
/// more, so sooner would only be refused again.
pub const UPLOADS_RETRY_AFTER_SECS: u64 = 5;

/// One rate limiter per account, each at its account's quota: every key and session of an
/// account draws on the same bucket. Accounts are made by admins, so the map stays small; an
/// account whose quota changes gets a fresh bucket.
pub struct AccountRates {
    /// Bucket size for the server's default rate; an account's own rate gets twice its rate.
    default_burst: u32,
    default_rate: u64,
    limiters: Mutex<HashMap<AccountId, (u64, Arc<DefaultDirectRateLimiter>)>>,
}

impl AccountRates {
    pub fn new(settings: &Settings) -> Self {
        Self {
            default_burst: settings.rate_limit_burst.max(1),
            default_rate: settings.rate_limit_per_second,
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the account's bucket: `Err(seconds to wait)` when it is empty.
    /// `per_second` is the account's rate quota (`None`: not limited).
    pub fn check(&self, account: AccountId, per_second: Option<u64>) -> Result<(), u64> {
        let Some(per_second) = per_second else {
            return Ok(());
        };
        let limiter = {
            let mut limiters = self.limiters.lock().expect("account rates lock");
            let entry = limiters
                .entry(account)
                .or_insert_with(|| (per_second, self.limiter(per_second)));
            if entry.0 != per_second {
                *entry = (per_second, self.limiter(per_second));
            }
            entry.1.clone()
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs_f64().ceil().max(1.0) as u64
        })
    }

    fn limiter(&self, per_second: u64) -> Arc<DefaultDirectRateLimiter> {
        let burst = if per_second == self.default_rate {
            self.default_burst
        } else {
            u32::try_from(per_second.saturating_mul(2)).unwrap_or(u32::MAX)
        };
        // At least a nanosecond between requests: any rate above a billion a second is the
        // same as no limit, and the period is never zero (which the limiter refuses).
        let period = Duration::from_nanos((1_000_000_000 / per_second.max(1)).max(1));
        let rate = Rate::with_period(period)
            .unwrap_or_else(|| Rate::per_second(NonZeroU32::MAX))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Arc::new(DefaultDirectRateLimiter::direct(rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::token::ApiToken;

    #[test]
    fn an_accounts_own_quota_wins_and_zero_means_no_limit() {
        let mut settings = Settings::with_defaults(
            "/tmp".into(),
            ApiToken::parse("a-perfectly-fine-token").unwrap(),
        );
        settings.quota_stored_bytes = 1000;
        settings.quota_uploads = 0;
        settings.rate_limit_per_second = 50;
        let defaults = in_force(&settings, &QuotaOverrides::default());
        assert_eq!(defaults.max_stored_bytes, Some(1000));
        assert_eq!(defaults.max_uploads, None);
        assert_eq!(defaults.max_requests_per_second, Some(50));
        let own = in_force(
            &settings,
            &QuotaOverrides {
                max_stored_bytes: Some(0),
                max_uploads: Some(3),
                max_requests_per_second: Some(7),
            },
        );
        assert_eq!(own.max_stored_bytes, None);
        assert_eq!(own.max_uploads, Some(3));
        assert_eq!(own.max_requests_per_second, Some(7));
    }

    #[test]
    fn each_account_has_its_own_bucket_at_its_own_rate() {
        let mut settings = Settings::with_defaults(
            "/tmp".into(),
            ApiToken::parse("a-perfectly-fine-token").unwrap(),
        );
        settings.rate_limit_per_second = 1;
        settings.rate_limit_burst = 2;
        let rates = AccountRates::new(&settings);
        let (alice, bob) = (AccountId::new(1), AccountId::new(2));
        assert!(rates.check(alice, Some(1)).is_ok());
        assert!(rates.check(alice, Some(1)).is_ok());
        let wait = rates.check(alice, Some(1)).unwrap_err();
        assert!((1..=2).contains(&wait), "{wait}");
        assert!(rates.check(bob, Some(1)).is_ok(), "bob has his own bucket");
        // A raised quota takes effect at once, with a fresh bucket.
        for _ in 0..10 {
            assert!(rates.check(alice, Some(5)).is_ok());
        }
        assert!(rates.check(alice, None).is_ok());
        // Any rate a setting can hold makes a limiter (the CLI takes up to i64::MAX).
        assert!(rates.check(bob, Some(i64::MAX as u64)).is_ok());
        assert!(rates.check(bob, Some(u64::MAX)).is_ok());
    }
}
