//! Progress math: one 0–100 figure over receiving the bytes and then processing them.

/// Share of the bar that receiving a file covers; processing covers the rest.
const RECEIVE_SHARE: u64 = 90;

/// Computes the job-wide percentage shown by every client.
pub struct Progress;

impl Progress {
    /// While bytes arrive: `done` of `total` (if the client announced one) maps onto 0–90.
    pub fn receiving(done: u64, total: Option<u64>) -> u8 {
        match total {
            Some(total) if total > 0 => (done.min(total) * RECEIVE_SHARE / total) as u8,
            _ => 0,
        }
    }

    /// After `step` of `steps` processing steps. Jobs with a file start at the receive share;
    /// metadata-only jobs have nothing to receive, so processing spans the whole bar.
    pub fn processing(step: u32, steps: u32, has_file: bool) -> u8 {
        let base = if has_file { RECEIVE_SHARE } else { 0 };
        let steps = u64::from(steps.max(1));
        let step = u64::from(step).min(steps);
        (base + (100 - base) * step / steps) as u8
    }

    /// A queued job: everything received, nothing processed.
    pub fn queued(has_file: bool) -> u8 {
        Self::processing(0, 1, has_file)
    }

    pub const DONE: u8 = 100;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiving_maps_onto_the_receive_share_and_never_overshoots() {
        assert_eq!(Progress::receiving(0, Some(100)), 0);
        assert_eq!(Progress::receiving(50, Some(100)), 45);
        assert_eq!(Progress::receiving(500, Some(100)), 90);
        assert_eq!(Progress::receiving(10, None), 0);
        assert_eq!(Progress::receiving(10, Some(0)), 0);
    }

    #[test]
    fn processing_continues_where_receiving_stopped() {
        assert_eq!(Progress::processing(0, 2, true), 90);
        assert_eq!(Progress::processing(1, 2, true), 95);
        assert_eq!(Progress::processing(2, 2, true), 100);
        assert_eq!(Progress::processing(1, 2, false), 50);
        assert_eq!(Progress::queued(false), 0);
    }
}
