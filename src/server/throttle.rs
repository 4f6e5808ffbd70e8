//! The throttle on failed sign-ins: a count per client address in one-minute windows, asked
//! before every token check. A leaf beside the state that holds it.
use super::client;
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Failed sign-ins per client address, in fixed one-minute windows. Only failures count, so a
/// person who knows the token is never slowed down, and each address has its own count, so
/// one client's guessing never locks out another.
pub struct SignInThrottle {
    failures_per_window: u32,
    failures: Mutex<HashMap<IpAddr, Window>>,
}

struct Window {
    started: Instant,
    failures: u32,
}

const SIGN_IN_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; beyond this (after forgetting finished windows) new addresses
/// are not tracked rather than memory growing without end.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

impl SignInThrottle {
    pub fn new(failures_per_window: u32) -> Self {
        Self {
            failures_per_window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when `client` has failed too often in the current window.
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        let client = client::address_key(client);
        let failures = self.failures.lock().expect("sign-in throttle lock");
        match failures.get(&client) {
            Some(window)
                if window.started.elapsed() < SIGN_IN_WINDOW
                    && window.failures >= self.failures_per_window =>
            {
                let left = SIGN_IN_WINDOW.saturating_sub(window.started.elapsed());
                Err(left.as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in from `client`.
    pub fn failed(&self, client: IpAddr) {
        let client = client::address_key(client);
        let mut failures = self.failures.lock().expect("sign-in throttle lock");
        if failures.len() >= MAX_TRACKED_ADDRESSES && !failures.contains_key(&client) {
            failures.retain(|_, window| window.started.elapsed() < SIGN_IN_WINDOW);
            if failures.len() >= MAX_TRACKED_ADDRESSES {
                return;
            }
        }
        let window = failures.entry(client).or_insert(Window {
            started: Instant::now(),
            failures: 0,
        });
        if window.started.elapsed() >= SIGN_IN_WINDOW {
            *window = Window {
                started: Instant::now(),
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_sign_ins_are_counted_per_address() {
        let throttle = SignInThrottle::new(3);
        let guesser: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.check(guesser).is_ok());
            throttle.failed(guesser);
        }
        assert!(throttle.check(guesser).unwrap_err() >= 1);
        assert!(throttle.check(other).is_ok());
    }
}
