#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

/// Builds a syntactically valid batch with `payload` as its record bytes.
fn batch(last_offset_delta: i32, max_timestamp: i64, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    buf.extend_from_slice(&0i64.to_be_bytes());
    let length = (HEADER_LEN - LOG_OVERHEAD + payload.len()) as i32;
    buf.extend_from_slice(&length.to_be_bytes());
    buf.extend_from_slice(&(-1i32).to_be_bytes());
    buf.push(2);
    buf.extend_from_slice(&0u32.to_be_bytes());
    buf.extend_from_slice(&0i16.to_be_bytes());
    buf.extend_from_slice(&last_offset_delta.to_be_bytes());
    buf.extend_from_slice(&(max_timestamp - 5).to_be_bytes());
    buf.extend_from_slice(&max_timestamp.to_be_bytes());
    buf.extend_from_slice(&(-1i64).to_be_bytes());
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    buf.extend_from_slice(&(-1i32).to_be_bytes());
    buf.extend_from_slice(&(last_offset_delta + 1).to_be_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    buf
}

#[test]
fn validates_a_well_formed_batch() {
    let b = batch(4, 1_700_000_000_000, b"records");
    let header = validate(&b).unwrap();
    assert_eq!(header.offset_count(), 5);
    assert_eq!(header.record_count, 5);
    assert_eq!(header.max_timestamp, 1_700_000_000_000);
    assert_eq!(header.total_len(), b.len());
}

#[test]
fn rejects_wrong_magic() {
    let mut b = batch(0, 1, b"x");
    b[16] = 1;
    assert_eq!(validate(&b), Err(BatchError::UnsupportedMagic(1)));
}

#[test]
fn rejects_length_mismatch() {
    let mut b = batch(0, 1, b"xyz");
    b.pop();
    assert!(matches!(validate(&b), Err(BatchError::InvalidLength(_))));
}

#[test]
fn base_offset_rewrite_keeps_crc_valid() {
    let mut b = batch(2, 7, b"abc");
    set_base_offset(&mut b, 42);
    let header = validate(&b).unwrap();
    assert_eq!(header.base_offset, 42);
}

#[test]
fn log_append_time_rewrite_keeps_the_batch_valid() {
    let mut b = batch(3, 100, b"abc");
    set_log_append_time(&mut b, 5_000).unwrap();
    let header = validate(&b).unwrap();
    assert!(header.is_log_append_time());
    assert_eq!(header.max_timestamp, 5_000);
}

#[test]
fn iterates_back_to_back_batches() {
    let mut buf = batch(0, 1, b"a");
    buf.extend(batch(9, 2, b"bb"));
    let deltas: Vec<i32> = BatchIter::new(&buf)
        .map(|r| r.unwrap().0.last_offset_delta)
        .collect();
    assert_eq!(deltas, vec![0, 9]);
}

#[test]
fn iterator_reports_truncation() {
    let mut buf = batch(0, 1, b"abc");
    buf.truncate(buf.len() - 1);
    let first = BatchIter::new(&buf).next().unwrap();
    assert!(matches!(first, Err(BatchError::Truncated { .. })));
}

proptest! {
    #[test]
    fn any_flipped_covered_byte_is_detected(
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        pos in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut b = batch(0, 1, &payload);
        // bytes 0..12 (offset, length) and 12..16 (leader epoch) are outside the CRC by design
        let covered = 16..b.len();
        let at = covered.start + pos.index(covered.len());
        b[at] ^= 1 << bit;
        prop_assert!(validate(&b).is_err());
    }

    #[test]
    fn iterator_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for item in BatchIter::new(&bytes) {
            let _ = item;
        }
    }
}
