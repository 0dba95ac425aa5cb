//! Waits between tries of something that keeps failing: the first wait, doubled per failure
//! in a row, up to a cap. One rule for registration, polls, applies, reports and logs.

use std::time::Duration;

/// The wait after `failures` failures in a row (1 → `first`), at most `cap` (or `first`
/// when that is longer).
pub fn doubling(first: Duration, cap: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    (first * factor).min(cap.max(first))
}

/// A failure count with its waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub const fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            failures: 0,
        }
    }

    /// Counts a failure; the wait before the next try.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        doubling(self.first, self.cap, self.failures)
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let s = Duration::from_secs;
        let waits: Vec<u64> = (1..=7)
            .map(|n| doubling(s(15), s(600), n).as_secs())
            .collect();
        assert_eq!(waits, [15, 30, 60, 120, 240, 480, 600]);
        assert_eq!(doubling(s(15), s(600), u32::MAX), s(600));
        assert_eq!(
            doubling(s(20), s(10), 3),
            s(20),
            "a cap below the first wait"
        );
        let mut b = Backoff::new(s(10), s(300));
        assert_eq!([b.failed(), b.failed(), b.failed()], [s(10), s(20), s(40)]);
        b.succeeded();
        assert_eq!(b.failed(), s(10));
    }
}
