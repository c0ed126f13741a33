//! The rules of compaction's index swap ([`crate::store::MetadataStore::replace_chunks`]),
//! shared by every store.
//!
//! A store validates the request with [`validate`] before it opens a transaction, then, with
//! the partition locked, reads the rows that overlap the replaced range and lets
//! [`check_expected`] decide whether they are exactly the ones the compactor read. Only then
//! does it delete them and insert the new rows. Together these keep the promise readers
//! rely on: the offsets a partition's rows cover never change, only where they are stored.

use crate::store::{ChunkReplacement, ExpectedRow, StoreError};

/// The stored commit outcome of a compacted object: it has no runs of its own, and a
/// CommitSegment naming its key is refused (its chunk count does not match).
pub const REPLACED_OUTCOME: &str = "[]";

/// The offsets `[first base, last end)` a valid replacement covers.
pub fn replaced_range(replacement: &ChunkReplacement) -> Option<(i64, i64)> {
    let first = replacement.expected.first()?;
    let last = replacement.expected.last()?;
    Some((first.base_offset, last.end_offset))
}

/// Checks that a replacement is well formed: the expected rows are non-empty and back to
/// back, the new rows lie in the new object, are non-empty, back to back and cover exactly
/// the expected offsets, and the new object is not one of the replaced ones.
pub fn validate(replacement: &ChunkReplacement) -> Result<(), StoreError> {
    let invalid = |what: &str| {
        Err(StoreError::InvalidRequest(format!(
            "replace chunks: {what}"
        )))
    };
    let Some((start, end)) = replaced_range(replacement) else {
        return invalid("no rows to replace");
    };
    if !back_to_back(
        replacement
            .expected
            .iter()
            .map(|r| (r.base_offset, r.end_offset)),
    ) {
        return invalid("the expected rows are not back to back");
    }
    if replacement.rows.is_empty() {
        return invalid("no new rows");
    }
    if !back_to_back(
        replacement
            .rows
            .iter()
            .map(|r| (r.base_offset, r.end_offset)),
    ) {
        return invalid("the new rows are not back to back");
    }
    let new_start = replacement.rows.first().map(|r| r.base_offset);
    let new_end = replacement.rows.last().map(|r| r.end_offset);
    if new_start != Some(start) || new_end != Some(end) {
        return invalid("the new rows do not cover exactly the replaced offsets");
    }
    let key = &replacement.object.object_key;
    if key.is_empty() || replacement.rows.iter().any(|r| &r.object_key != key) {
        return invalid("every new row must point into the new object");
    }
    if replacement.expected.iter().any(|r| &r.object_key == key) {
        return invalid("the new object replaces itself");
    }
    if i64::try_from(replacement.object.object_size).is_err() {
        return invalid("object size exceeds i64");
    }
    Ok(())
}

/// True when each `(base, end)` range is non-empty and starts where the previous ended.
fn back_to_back(ranges: impl Iterator<Item = (i64, i64)>) -> bool {
    let mut previous_end: Option<i64> = None;
    for (base, end) in ranges {
        if base >= end || previous_end.is_some_and(|e| e != base) {
            return false;
        }
        previous_end = Some(end);
    }
    true
}

/// Decides whether the rows found overlapping the replaced range (in offset order) are
/// exactly the expected ones; `Err` says what differs.
pub fn check_expected(expected: &[ExpectedRow], found: &[ExpectedRow]) -> Result<(), String> {
    if found.len() != expected.len() {
        return Err(format!(
            "expected {} rows in the range, found {}",
            expected.len(),
            found.len()
        ));
    }
    for (want, got) in expected.iter().zip(found) {
        if want != got {
            return Err(format!(
                "expected row [{}, {}) in {}, found [{}, {}) in {}",
                want.base_offset,
                want.end_offset,
                want.object_key,
                got.base_offset,
                got.end_offset,
                got.object_key
            ));
        }
    }
    Ok(())
}

/// The distinct old objects of `expected`, sorted: the candidates for unreferenced.
pub fn replaced_objects(expected: &[ExpectedRow]) -> Vec<String> {
    let mut keys: Vec<String> = expected.iter().map(|r| r.object_key.clone()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ChunkRow, PartitionId, ReplacementObject};

    fn expected(base: i64, end: i64, key: &str) -> ExpectedRow {
        ExpectedRow {
            base_offset: base,
            end_offset: end,
            object_key: key.into(),
        }
    }

    fn row(base: i64, end: i64, key: &str) -> ChunkRow {
        ChunkRow {
            object_key: key.into(),
            byte_offset: 0,
            byte_length: 1,
            raw_offset: 0,
            raw_length: 1,
            base_offset: base,
            end_offset: end,
            max_timestamp: 0,
        }
    }

    fn replacement(old: Vec<ExpectedRow>, rows: Vec<ChunkRow>) -> ChunkReplacement {
        ChunkReplacement {
            partition: PartitionId {
                topic_id: [1; 16],
                partition: 0,
            },
            expected: old,
            object: ReplacementObject {
                object_key: "new".into(),
                object_size: 10,
                committed_at_ms: 0,
            },
            rows,
        }
    }

    #[test]
    fn well_formed_replacements_pass() {
        let r = replacement(
            vec![expected(0, 3, "a"), expected(3, 5, "b")],
            vec![row(0, 5, "new")],
        );
        assert!(validate(&r).is_ok());
        assert_eq!(replaced_range(&r), Some((0, 5)));
    }

    #[test]
    fn gaps_overlaps_and_wrong_objects_are_refused() {
        let bad = [
            replacement(vec![], vec![row(0, 5, "new")]),
            replacement(
                vec![expected(0, 3, "a"), expected(4, 5, "b")],
                vec![row(0, 5, "new")],
            ),
            replacement(
                vec![expected(0, 5, "a")],
                vec![row(0, 2, "new"), row(3, 5, "new")],
            ),
            replacement(vec![expected(0, 5, "a")], vec![row(0, 4, "new")]),
            replacement(vec![expected(0, 5, "a")], vec![row(0, 5, "other")]),
            replacement(vec![expected(0, 5, "new")], vec![row(0, 5, "new")]),
            replacement(vec![expected(0, 5, "a")], vec![]),
        ];
        for r in bad {
            assert!(
                matches!(validate(&r), Err(StoreError::InvalidRequest(_))),
                "{r:?}"
            );
        }
    }

    #[test]
    fn found_rows_must_match_exactly() {
        let want = vec![expected(0, 3, "a"), expected(3, 5, "b")];
        let e = expected;
        assert!(check_expected(&want, &[e(0, 3, "a"), e(3, 5, "b")]).is_ok());
        assert!(check_expected(&want, &[e(3, 5, "b")]).is_err());
        assert!(check_expected(&want, &[e(0, 3, "a"), e(3, 5, "c")]).is_err());
        assert!(check_expected(&want, &[e(0, 5, "c")]).is_err());
    }
}
