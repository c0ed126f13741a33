//! Wall-clock timestamps for records, with microsecond resolution.
//!
//! The wall clock is read once, from the injected [`strata_clock::Clock`], and then
//! advanced by the monotonic clock, so every timestamp taken in one process is consistent
//! with every other (end-to-end latency is a difference of two of them) and a wall-clock
//! step during a run cannot produce negative latencies.

use std::time::Duration;

use strata_clock::Clock;
use tokio::time::Instant;

/// Name of the record header that carries a record's creation time in `strata bench e2e`:
/// 8 bytes, big-endian microseconds since the Unix epoch.
pub const SENT_AT_HEADER: &str = "strata-bench-sent-us";

/// A wall clock anchored at one reading and advanced by the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    anchor_micros: i64,
    anchor: Instant,
}

impl WallClock {
    /// Anchors at `clock`'s current time.
    pub fn new(clock: &dyn Clock) -> Self {
        Self {
            anchor_micros: clock.now_millis().saturating_mul(1000),
            anchor: Instant::now(),
        }
    }

    /// Microseconds since the Unix epoch at the monotonic instant `at`.
    pub fn micros_at(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.anchor) {
            Some(after) => self.anchor_micros.saturating_add(micros(after)),
            None => self
                .anchor_micros
                .saturating_sub(micros(self.anchor.duration_since(at))),
        }
    }

    /// Milliseconds since the Unix epoch at `at` (Kafka's record timestamps).
    pub fn millis_at(&self, at: Instant) -> i64 {
        self.micros_at(at).div_euclid(1000)
    }

    /// Microseconds since the Unix epoch now.
    pub fn now_micros(&self) -> i64 {
        self.micros_at(Instant::now())
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_clock::ManualClock;

    #[test]
    fn timestamps_follow_the_monotonic_clock_from_the_anchor() {
        let manual = ManualClock::new(1_700_000_000_000);
        let clock = WallClock::new(manual.as_ref());
        let later = clock.anchor + Duration::from_micros(1500);
        assert_eq!(clock.micros_at(later), 1_700_000_000_001_500);
        assert_eq!(clock.millis_at(later), 1_700_000_000_001);
        // the manual clock does not move: the anchor reading is all that is used
        manual.advance(Duration::from_secs(60));
        assert_eq!(clock.micros_at(later), 1_700_000_000_001_500);
    }
}
