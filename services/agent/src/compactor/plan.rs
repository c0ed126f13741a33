//! Which index rows a compaction pass rewrites: pure decisions over a partition's rows.
//!
//! A group is a run of at least two back-to-back rows, each "small" (raw length under half
//! the target), whose objects were written at least `min_age` ago, and whose records carry
//! timestamps (retention.ms falls back on the object's commit time for rows without, and a
//! compacted object's commit time is later than the rows': merging them would extend their
//! life). A group's raw bytes stay within the target, so it becomes one chunk of one new
//! object and one index row. A run at the end of what is old enough, which later rows may
//! still extend, waits until it fills half the target, so a partition's slowly growing
//! tail is not rewritten at every pass.
//!
//! A plan also says where the next pass may start ([`Plan::resume_from`]): rows before it
//! are settled (compacted, or never to be grouped: large, untimed, or closed in by such
//! rows), so a partition's long compacted history is not listed again at every pass.

use strata_proto::metadata::v1::IndexedChunk;
use strata_segment::naming::segment_key_time;

/// What makes rows worth compacting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Most raw (decompressed) bytes of batches in one compacted object; rows of at least
    /// half of it are left alone.
    pub target_bytes: u64,
    /// Rows whose object was written after this time (ms) are left alone.
    pub written_before_ms: i64,
}

/// True when `row` may join a group.
fn eligible(row: &IndexedChunk, limits: &PlanLimits) -> bool {
    small(row, limits) && row.max_timestamp >= 0 && old_enough(row, limits)
}

fn small(row: &IndexedChunk, limits: &PlanLimits) -> bool {
    u64::from(row.raw_length).saturating_mul(2) < limits.target_bytes
}

fn old_enough(row: &IndexedChunk, limits: &PlanLimits) -> bool {
    segment_key_time(&row.object_key).is_some_and(|t| t <= limits.written_before_ms)
}

/// A run of eligible rows being gathered.
#[derive(Default)]
struct Run {
    rows: Vec<IndexedChunk>,
    bytes: u64,
}

impl Run {
    /// Ends the run. A run that later rows may still extend (`open`: it ends at a row too
    /// young, or at the end of the log) becomes a group only once it fills half an object,
    /// so a slowly growing tail is not rewritten again at every pass; a run ended for good
    /// (by a large row, a gap, an untimed row, or a full object) needs two rows.
    /// Returns true when the run became a group.
    fn close(
        &mut self,
        open: bool,
        limits: &PlanLimits,
        groups: &mut Vec<Vec<IndexedChunk>>,
    ) -> bool {
        let worth = !open || self.bytes.saturating_mul(2) >= limits.target_bytes;
        let grouped = self.rows.len() >= 2 && worth;
        if grouped {
            groups.push(std::mem::take(&mut self.rows));
        }
        self.rows.clear();
        self.bytes = 0;
        grouped
    }

    fn first_offset(&self) -> Option<i64> {
        self.rows.first().map(|r| r.base_offset)
    }
}

/// What a pass does with one partition's rows.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Groups to compact, in offset order.
    pub groups: Vec<Vec<IndexedChunk>>,
    /// The offset the next pass should list the partition's rows from: the first row that
    /// may still join a group later (a run that may grow, or a row not old enough yet), or
    /// the end of the rows when all are settled; `None` for no rows. Groups the caller
    /// fails to swap must also be looked at again.
    pub resume_from: Option<i64>,
}

/// Splits `rows` (one partition's, in offset order) into groups to compact, in order.
///
/// Every byte is rewritten about once: groups are at most `target_bytes`, rows of half of
/// it are never regrouped, and a run that may still grow waits until it is half full.
pub fn plan_groups(rows: &[IndexedChunk], limits: &PlanLimits) -> Vec<Vec<IndexedChunk>> {
    plan(rows, limits).groups
}

/// The groups of [`plan_groups`], and where the next pass may start.
pub fn plan(rows: &[IndexedChunk], limits: &PlanLimits) -> Plan {
    let mut groups = Vec::new();
    let mut resume_from: Option<i64> = None;
    let mut run = Run::default();
    for row in rows {
        if !eligible(row, limits) {
            let open = small(row, limits) && row.max_timestamp >= 0 && !old_enough(row, limits);
            let start = run.first_offset();
            let grouped = run.close(open, limits, &mut groups);
            if open {
                // this row becomes eligible with age, and may join the run before it
                let unsettled = if grouped { None } else { start };
                resume_from.get_or_insert(unsettled.unwrap_or(row.base_offset));
            }
            continue;
        }
        let size = u64::from(row.raw_length);
        let follows = run
            .rows
            .last()
            .is_none_or(|last| last.end_offset == row.base_offset);
        if !follows || run.bytes + size > limits.target_bytes {
            run.close(false, limits, &mut groups);
        }
        run.bytes += size;
        run.rows.push(row.clone());
    }
    let start = run.first_offset();
    if !run.close(true, limits, &mut groups) {
        if let Some(start) = start {
            resume_from.get_or_insert(start);
        }
    }
    let end = rows.last().map(|r| r.end_offset);
    Plan {
        groups,
        resume_from: resume_from.or(end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(base: i64, end: i64, raw: u32, written: i64) -> IndexedChunk {
        IndexedChunk {
            object_key: strata_segment::naming::segment_key(written, 1, [base as u8; 16]),
            byte_offset: 0,
            byte_length: raw / 2,
            raw_length: raw,
            raw_offset: 0,
            base_offset: base,
            end_offset: end,
            max_timestamp: 5,
        }
    }

    fn bases(groups: &[Vec<IndexedChunk>]) -> Vec<Vec<i64>> {
        groups
            .iter()
            .map(|g| g.iter().map(|r| r.base_offset).collect())
            .collect()
    }

    const LIMITS: PlanLimits = PlanLimits {
        target_bytes: 100,
        written_before_ms: 1_000,
    };

    #[test]
    fn small_old_rows_are_grouped_up_to_the_target() {
        let rows: Vec<IndexedChunk> = (0..7).map(|i| row(i, i + 1, 30, 10)).collect();
        assert_eq!(
            bases(&plan_groups(&rows, &LIMITS)),
            [vec![0, 1, 2], vec![3, 4, 5]]
        );
    }

    #[test]
    fn large_young_and_untimed_rows_split_groups() {
        let mut untimed = row(4, 5, 10, 10);
        untimed.max_timestamp = -1;
        let rows = vec![
            row(0, 1, 10, 10),
            row(1, 2, 10, 10),
            row(2, 3, 50, 10), // not small
            row(3, 4, 10, 10),
            untimed,
            row(5, 6, 10, 10),
            row(6, 7, 10, 2_000), // too young
            row(7, 8, 10, 10),
            row(9, 10, 10, 10), // a gap (log start inside, or a row being replaced)
            row(10, 11, 10, 10),
            row(11, 12, 90, 10), // not small: the run before it is closed for good
        ];
        assert_eq!(
            bases(&plan_groups(&rows, &LIMITS)),
            [vec![0, 1], vec![9, 10]]
        );
    }

    #[test]
    fn a_run_that_may_still_grow_waits_until_half_full() {
        let tail: Vec<IndexedChunk> = (0..4).map(|i| row(i, i + 1, 10, 10)).collect();
        assert!(
            plan_groups(&tail, &LIMITS).is_empty(),
            "40 bytes at the end of the log"
        );
        let mut young = tail.clone();
        young.push(row(4, 5, 10, 2_000));
        assert!(
            plan_groups(&young, &LIMITS).is_empty(),
            "40 bytes before young rows"
        );
        let half: Vec<IndexedChunk> = (0..5).map(|i| row(i, i + 1, 10, 10)).collect();
        assert_eq!(bases(&plan_groups(&half, &LIMITS)), [vec![0, 1, 2, 3, 4]]);
    }

    #[test]
    fn the_next_pass_resumes_at_the_first_row_that_may_still_be_grouped() {
        let resume = |rows: &[IndexedChunk]| plan(rows, &LIMITS).resume_from;
        assert_eq!(resume(&[]), None);
        // all settled: compacted-size rows and a closed group
        let settled = vec![
            row(0, 5, 60, 10),
            row(5, 6, 10, 10),
            row(6, 7, 10, 10),
            row(7, 9, 70, 10),
        ];
        assert_eq!(resume(&settled), Some(9));
        // a run at the end that may still grow
        let mut tail = settled.clone();
        tail.extend([row(9, 10, 10, 10), row(10, 11, 10, 10)]);
        assert_eq!(resume(&tail), Some(9));
        // a young row after a run too small to group yet
        let mut young = tail.clone();
        young.push(row(11, 12, 10, 2_000));
        assert_eq!(resume(&young), Some(9));
        // a young row after a run grouped now: the young row is where to look again
        let mut full: Vec<IndexedChunk> = (0..5).map(|i| row(i, i + 1, 10, 10)).collect();
        full.push(row(5, 6, 10, 2_000));
        let p = plan(&full, &LIMITS);
        assert_eq!(bases(&p.groups), [vec![0, 1, 2, 3, 4]]);
        assert_eq!(p.resume_from, Some(5));
        // a lone small row closed in by large ones is settled for good
        let lone = vec![row(0, 1, 60, 10), row(1, 2, 10, 10), row(2, 3, 60, 10)];
        assert_eq!(resume(&lone), Some(3));
    }

    #[test]
    fn single_rows_are_left_alone() {
        let rows = vec![row(0, 1, 10, 10), row(1, 2, 60, 10), row(2, 3, 10, 10)];
        assert!(plan_groups(&rows, &LIMITS).is_empty());
    }
}
