//! Exponential backoff with full jitter: how long to wait before retry number `attempt`.

/// Waits grow as `base · 2^attempt`, capped, and each wait is drawn uniformly from zero up to
/// that ceiling ("full jitter"), so many clients retrying at once spread out instead of
/// arriving together.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base_ms: u32,
    pub cap_ms: u32,
}

impl Backoff {
    /// WebSocket reconnects: quick at first, never more than 15 s apart.
    pub const SOCKET: Backoff = Backoff {
        base_ms: 250,
        cap_ms: 15_000,
    };
    /// Retries of a failed server call.
    pub const CALL: Backoff = Backoff {
        base_ms: 300,
        cap_ms: 5_000,
    };

    /// The ceiling for `attempt` (0 for the first retry).
    pub fn ceiling_ms(self, attempt: u32) -> u32 {
        let grown = u64::from(self.base_ms) << attempt.min(20);
        grown.min(u64::from(self.cap_ms)) as u32
    }

    /// The wait for `attempt`, given `random` drawn uniformly from [0, 1).
    pub fn delay_ms(self, attempt: u32, random: f64) -> u32 {
        (f64::from(self.ceiling_ms(attempt)) * random.clamp(0.0, 1.0)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;

    #[test]
    fn ceilings_double_until_the_cap() {
        let backoff = Backoff {
            base_ms: 100,
            cap_ms: 1000,
        };
        let ceilings: Vec<u32> = (0..6).map(|n| backoff.ceiling_ms(n)).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.ceiling_ms(u32::MAX), 1000);
    }

    #[test]
    fn delays_are_drawn_between_zero_and_the_ceiling() {
        let backoff = Backoff::SOCKET;
        assert_eq!(backoff.delay_ms(3, 0.0), 0);
        assert_eq!(backoff.delay_ms(3, 0.5), 1000);
        assert!(backoff.delay_ms(30, 0.999_999) < backoff.cap_ms);
        assert_eq!(backoff.delay_ms(2, 7.0), backoff.ceiling_ms(2));
    }
}
