//! Idempotent-producer sequence rules, shared by every store.
//!
//! For each (producer, partition) a store keeps the producer's epoch, the last sequence
//! it accepted and the last [`RECENT_BATCHES`] batches with the offsets they got. A batch is
//! appended when its sequence follows the last one; answered with its original offset when
//! it repeats one of the recent batches (a retry); refused otherwise.

use serde::{Deserialize, Serialize};

use crate::store::{ProducerBatch, ProducerRejection};

/// How many batches per (producer, partition) are remembered for retries, as in Kafka.
pub const RECENT_BATCHES: usize = 5;

/// What a store remembers of one producer on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerPartitionState {
    /// Epoch of the last accepted batch.
    pub epoch: i16,
    /// Last accepted sequence.
    pub last_sequence: i32,
    /// Recent batches: (base sequence, last sequence, base offset), oldest first.
    pub recent: Vec<(i32, i32, i64)>,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Store it and give it offsets.
    Append,
    /// It was stored before at this base offset.
    Duplicate(i64),
    /// Refuse it.
    Reject(ProducerRejection),
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

/// Decides on `batch` given the producer's current epoch (None: never issued) and its
/// state on this partition.
pub fn decide(
    current_epoch: Option<i16>,
    state: Option<&ProducerPartitionState>,
    batch: &ProducerBatch,
) -> Decision {
    let Some(current_epoch) = current_epoch else {
        return Decision::Reject(ProducerRejection::UnknownProducer);
    };
    if batch.epoch != current_epoch {
        return Decision::Reject(ProducerRejection::FencedEpoch);
    }
    let Some(state) = state.filter(|s| s.epoch == batch.epoch) else {
        // first batch of this epoch on this partition
        return if batch.base_sequence == 0 {
            Decision::Append
        } else {
            Decision::Reject(ProducerRejection::UnknownProducer)
        };
    };
    let repeat = state
        .recent
        .iter()
        .find(|(base, last, _)| *base == batch.base_sequence && *last == batch.last_sequence);
    if let Some((_, _, offset)) = repeat {
        return Decision::Duplicate(*offset);
    }
    if batch.base_sequence == next_sequence(state.last_sequence) {
        Decision::Append
    } else {
        Decision::Reject(ProducerRejection::OutOfOrderSequence)
    }
}

/// The state after appending `batch` at `base_offset`.
pub fn after_append(
    state: Option<ProducerPartitionState>,
    batch: &ProducerBatch,
    base_offset: i64,
) -> ProducerPartitionState {
    let mut recent = match state {
        Some(s) if s.epoch == batch.epoch => s.recent,
        _ => Vec::new(),
    };
    recent.push((batch.base_sequence, batch.last_sequence, base_offset));
    if recent.len() > RECENT_BATCHES {
        recent.remove(0);
    }
    ProducerPartitionState {
        epoch: batch.epoch,
        last_sequence: batch.last_sequence,
        recent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, base: i32, last: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: 7,
            epoch,
            base_sequence: base,
            last_sequence: last,
        }
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        let first = batch(0, 0, 4);
        assert_eq!(decide(Some(0), None, &first), Decision::Append);
        let state = after_append(None, &first, 100);
        let second = batch(0, 5, 9);
        assert_eq!(decide(Some(0), Some(&state), &second), Decision::Append);
        let state = after_append(Some(state), &second, 105);
        assert_eq!(
            decide(Some(0), Some(&state), &first),
            Decision::Duplicate(100)
        );
        assert_eq!(
            decide(Some(0), Some(&state), &second),
            Decision::Duplicate(105)
        );
        assert_eq!(
            decide(Some(0), Some(&state), &batch(0, 12, 12)),
            Decision::Reject(ProducerRejection::OutOfOrderSequence)
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut state = None;
        for i in 0..6 {
            let b = batch(0, i, i);
            assert_eq!(decide(Some(0), state.as_ref(), &b), Decision::Append);
            state = Some(after_append(state, &b, i64::from(i)));
        }
        let state = state.expect("state");
        assert_eq!(state.recent.len(), RECENT_BATCHES);
        assert_eq!(
            decide(Some(0), Some(&state), &batch(0, 0, 0)),
            Decision::Reject(ProducerRejection::OutOfOrderSequence)
        );
        assert_eq!(
            decide(Some(0), Some(&state), &batch(0, 1, 1)),
            Decision::Duplicate(1)
        );
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let state = after_append(None, &batch(0, 0, 9), 0);
        assert_eq!(
            decide(Some(1), Some(&state), &batch(0, 10, 10)),
            Decision::Reject(ProducerRejection::FencedEpoch)
        );
        assert_eq!(
            decide(Some(1), Some(&state), &batch(1, 0, 0)),
            Decision::Append
        );
        assert_eq!(
            decide(Some(1), Some(&state), &batch(1, 3, 3)),
            Decision::Reject(ProducerRejection::UnknownProducer)
        );
        assert_eq!(
            decide(None, None, &batch(0, 0, 0)),
            Decision::Reject(ProducerRejection::UnknownProducer)
        );
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        let state = after_append(None, &batch(0, 0, i32::MAX), 0);
        assert_eq!(
            decide(Some(0), Some(&state), &batch(0, 0, 3)),
            Decision::Append
        );
    }
}
