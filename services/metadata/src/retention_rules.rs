//! The rules for moving a partition's log start, shared by every store.
//!
//! Stores read the inputs (the partition's offsets, its oldest index rows) inside their own
//! transaction and apply what these functions decide, so SQLite and PostgreSQL cannot
//! disagree on what DeleteRecords or retention do. Every decision here keeps two promises:
//! the log start never moves backwards, and it never passes the high watermark.

use std::collections::BTreeMap;

use crate::store::{LogStartTarget, PartitionOffsets, RetentionPolicy};
use crate::topic_rules::TOPIC_CONFIGS;

/// Most index rows one [`crate::store::MetadataStore::apply_retention`] call reads (and so
/// drops); a partition with more expired rows is trimmed further by the next call.
pub const MAX_ROWS_PER_PASS: u32 = 10_000;

/// What moving the log start to a DeleteRecords target means for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetDecision {
    /// Move the log start to this offset (above the current one, at most the high watermark).
    Move(i64),
    /// The target is at or below the log start: nothing to do.
    Stay,
    /// The target is negative or above the high watermark: refuse.
    OutOfRange,
}

/// Decides what a DeleteRecords `target` does to a partition with `offsets`.
pub fn decide_target(target: LogStartTarget, offsets: PartitionOffsets) -> TargetDecision {
    let offset = match target {
        LogStartTarget::HighWatermark => offsets.high_watermark,
        LogStartTarget::Offset(offset) => offset,
    };
    if offset < 0 || offset > offsets.high_watermark {
        return TargetDecision::OutOfRange;
    }
    if offset <= offsets.log_start_offset {
        return TargetDecision::Stay;
    }
    TargetDecision::Move(offset)
}

/// One index row as retention sees it, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRow {
    /// One past the row's last offset.
    pub end_offset: i64,
    /// The row's record batches in bytes, as produced (before Strata compressed them).
    pub bytes: i64,
    /// The row's newest record timestamp; see [`row_time`].
    pub timestamp_ms: i64,
}

/// The time retention.ms measures a row by: its newest record timestamp, or, when its
/// records carry none (-1), the time its object was committed (Kafka falls back on the
/// segment file's modification time the same way).
pub fn row_time(max_timestamp: i64, committed_at_ms: Option<i64>) -> i64 {
    if max_timestamp >= 0 {
        return max_timestamp;
    }
    committed_at_ms.unwrap_or(max_timestamp)
}

/// The new log start that `policy` asks for, given a partition's oldest rows (in offset
/// order, starting with the one holding the log start) and the bytes of all its rows; or
/// `None` when no row is to go.
///
/// Only whole rows go, oldest first, and the first row that breaks no limit stops the
/// walk: a row goes when its newest record is older than `now - max_age_ms`, or when the
/// partition still holds more than `max_bytes` before dropping it. The result is at most
/// `high_watermark`.
pub fn retention_cut(
    rows: &[RetentionRow],
    stored_bytes: i64,
    policy: RetentionPolicy,
    now_ms: i64,
    high_watermark: i64,
) -> Option<i64> {
    let oldest_kept = policy.max_age_ms.map(|age| now_ms.saturating_sub(age));
    let mut remaining = stored_bytes;
    let mut cut = None;
    for row in rows {
        let expired = oldest_kept.is_some_and(|oldest| row.timestamp_ms < oldest);
        let too_big = policy.max_bytes.is_some_and(|max| remaining > max);
        if !expired && !too_big {
            break;
        }
        remaining -= row.bytes;
        cut = Some(row.end_offset.min(high_watermark));
    }
    cut
}

/// The retention policy of a topic from the configs set on it (Kafka's defaults for the
/// others: `retention.ms` 7 days, `retention.bytes` -1). A negative limit is no limit; a
/// value that does not parse (never stored: configs are validated) keeps data forever.
pub fn policy_of(configs: &BTreeMap<String, String>) -> RetentionPolicy {
    let limit = |name: &str| {
        let value = configs.get(name).map(String::as_str).or_else(|| {
            TOPIC_CONFIGS
                .iter()
                .find(|def| def.name == name)
                .map(|def| def.default)
        })?;
        value.parse::<i64>().ok().filter(|v| *v >= 0)
    };
    RetentionPolicy {
        max_age_ms: limit("retention.ms"),
        max_bytes: limit("retention.bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(log_start_offset: i64, high_watermark: i64) -> PartitionOffsets {
        PartitionOffsets {
            log_start_offset,
            high_watermark,
        }
    }

    fn rows(spec: &[(i64, i64, i64)]) -> Vec<RetentionRow> {
        spec.iter()
            .map(|&(end_offset, bytes, timestamp_ms)| RetentionRow {
                end_offset,
                bytes,
                timestamp_ms,
            })
            .collect()
    }

    #[test]
    fn targets_stay_within_the_log() {
        let o = offsets(10, 30);
        let at = |offset| decide_target(LogStartTarget::Offset(offset), o);
        assert_eq!(at(20), TargetDecision::Move(20));
        assert_eq!(at(30), TargetDecision::Move(30));
        assert_eq!(at(10), TargetDecision::Stay);
        assert_eq!(at(3), TargetDecision::Stay, "never backwards");
        assert_eq!(at(31), TargetDecision::OutOfRange);
        assert_eq!(at(-2), TargetDecision::OutOfRange);
        assert_eq!(
            decide_target(LogStartTarget::HighWatermark, o),
            TargetDecision::Move(30)
        );
        assert_eq!(
            decide_target(LogStartTarget::HighWatermark, offsets(30, 30)),
            TargetDecision::Stay
        );
    }

    #[test]
    fn time_retention_drops_an_expired_prefix() {
        let r = rows(&[(10, 1, 100), (20, 1, 200), (30, 1, 50), (40, 1, 900)]);
        let policy = RetentionPolicy {
            max_age_ms: Some(700),
            max_bytes: None,
        };
        // the oldest time kept is 1000 - 700 = 300: the first three rows are older
        assert_eq!(retention_cut(&r, 4, policy, 1_000, 40), Some(30));
        let recent = RetentionPolicy {
            max_age_ms: Some(950),
            max_bytes: None,
        };
        assert_eq!(retention_cut(&r, 4, recent, 1_000, 40), None);
        let first_new = rows(&[(10, 1, 900), (20, 1, 100)]);
        assert_eq!(
            retention_cut(&first_new, 2, policy, 1_000, 20),
            None,
            "a newer row stops the walk"
        );
    }

    #[test]
    fn byte_retention_drops_until_the_rest_fits() {
        let r = rows(&[(10, 100, 0), (20, 100, 0), (30, 100, 0)]);
        let cap = |max| RetentionPolicy {
            max_age_ms: None,
            max_bytes: Some(max),
        };
        assert_eq!(retention_cut(&r, 300, cap(300), 0, 30), None);
        assert_eq!(retention_cut(&r, 300, cap(250), 0, 30), Some(10));
        assert_eq!(retention_cut(&r, 300, cap(150), 0, 30), Some(20));
        assert_eq!(retention_cut(&r, 300, cap(100), 0, 30), Some(20));
        assert_eq!(retention_cut(&r, 300, cap(0), 0, 30), Some(30));
    }

    #[test]
    fn cuts_never_pass_the_high_watermark() {
        let r = rows(&[(10, 1, 0)]);
        let policy = RetentionPolicy {
            max_age_ms: Some(0),
            max_bytes: None,
        };
        assert_eq!(retention_cut(&r, 1, policy, 10, 8), Some(8));
        assert_eq!(retention_cut(&[], 0, policy, 10, 8), None);
    }

    #[test]
    fn rows_without_timestamps_age_from_their_commit() {
        assert_eq!(row_time(5, Some(9)), 5);
        assert_eq!(row_time(-1, Some(9)), 9);
        assert_eq!(row_time(-1, None), -1);
    }

    #[test]
    fn policies_come_from_configs_with_kafka_defaults() {
        let set = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            policy_of(&set(&[])),
            RetentionPolicy {
                max_age_ms: Some(604_800_000),
                max_bytes: None
            }
        );
        assert_eq!(
            policy_of(&set(&[("retention.ms", "-1"), ("retention.bytes", "1000")])),
            RetentionPolicy {
                max_age_ms: None,
                max_bytes: Some(1000)
            }
        );
        assert_eq!(
            policy_of(&set(&[("retention.ms", "soon")])),
            RetentionPolicy::default()
        );
    }
}
