//! When each record of a rate-limited producer is due.
//!
//! A producer at a fixed rate does not send "as soon as the previous send finished": record
//! `i` is due at `start + i / rate`, whatever happened before. Latency is measured from that
//! due time, so a stalled broker shows up as the queueing delay every waiting record
//! accumulates, instead of being hidden by sending fewer records (coordinated omission).

use std::time::Duration;

use tokio::time::Instant;

/// A fixed-rate timetable of one producer's records.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    interval_secs: f64,
}

impl Schedule {
    /// `records_per_sec` records per second, the first one due at `start`.
    /// Rates below one record per hour are treated as one per hour.
    pub fn new(start: Instant, records_per_sec: f64) -> Self {
        let rate = records_per_sec.max(1.0 / 3600.0);
        Self {
            start,
            interval_secs: 1.0 / rate,
        }
    }

    /// When record `index` is due.
    pub fn due(&self, index: u64) -> Instant {
        self.start + Duration::from_secs_f64(self.interval_secs * index as f64)
    }

    /// How many records (from index 0) are due at `now`.
    pub fn due_count(&self, now: Instant) -> u64 {
        if now < self.start {
            return 0;
        }
        let elapsed = now.duration_since(self.start).as_secs_f64();
        (elapsed / self.interval_secs).floor() as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_due_at_even_intervals() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 1000.0);
        assert_eq!(schedule.due(0), start);
        assert_eq!(schedule.due(1000), start + Duration::from_secs(1));
        assert_eq!(schedule.due_count(start), 1);
        assert_eq!(
            schedule.due_count(start + Duration::from_micros(999_500)),
            1000
        );
        assert_eq!(schedule.due_count(start + Duration::from_secs(1)), 1001);
    }

    #[test]
    fn nothing_is_due_before_the_start() {
        let start = Instant::now() + Duration::from_secs(5);
        let schedule = Schedule::new(start, 10.0);
        assert_eq!(schedule.due_count(Instant::now()), 0);
    }
}
