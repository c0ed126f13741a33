//! Corrupted and hostile input is reported as an error, never as wrong data
//! and never as a panic.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{build, chunk_of, nonempty_segment_strategy, segment_strategy};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use strata_segment::{
    decode_chunk, decode_chunk_for, parse_trailer, read_index, CHUNK_MAGIC, FORMAT_VERSION,
    MAX_CHUNK_RAW_LEN, TRAILER_LEN,
};

fn flipped(bytes: &[u8], position: usize, mask: u8) -> Vec<u8> {
    let mut copy = bytes.to_vec();
    copy[position] ^= mask;
    copy
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_flipped_byte_in_a_chunk_is_detected(
        parts in nonempty_segment_strategy(6),
        which in any::<Index>(),
        position in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let (object, entries) = build(&parts);
        let entry = which.get(&entries);
        let chunk = chunk_of(&object, entry);
        let corrupt = flipped(chunk, position.index(chunk.len()), mask);
        prop_assert!(decode_chunk(&corrupt).is_err());
        prop_assert!(decode_chunk_for(entry, Bytes::from(corrupt)).is_err());
    }

    #[test]
    fn any_flipped_byte_in_footer_or_trailer_is_detected(
        parts in segment_strategy(6),
        position in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let (object, entries) = build(&parts);
        let index_start = entries.last().map_or(0, |e| e.range().end as usize);
        let tail_len = object.len() - index_start;
        let corrupt = flipped(&object, index_start + position.index(tail_len), mask);
        prop_assert!(read_index(&corrupt).is_err());
    }

    /// Flip any byte of the object, then read it the way a broker would:
    /// the index, then every chunk. Something must fail, and whatever
    /// succeeds must be the original data.
    #[test]
    fn a_flipped_byte_anywhere_never_yields_wrong_data(
        parts in nonempty_segment_strategy(6),
        position in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let (object, entries) = build(&parts);
        let corrupt = Bytes::from(flipped(&object, position.index(object.len()), mask));
        let Ok(read_entries) = read_index(&corrupt) else { return Ok(()) };
        prop_assert_eq!(&read_entries, &entries);
        let mut failures = 0;
        for (entry, part) in read_entries.iter().zip(&parts) {
            let range = entry.range();
            match decode_chunk_for(entry, corrupt.slice(range.start as usize..range.end as usize)) {
                Ok(raw) => prop_assert_eq!(&raw[..], &part.batches[..]),
                Err(_) => failures += 1,
            }
        }
        prop_assert_eq!(failures, 1);
    }

    #[test]
    fn truncated_or_extended_objects_are_rejected(
        parts in segment_strategy(4),
        cut in any::<Index>(),
        extra in 1usize..8,
    ) {
        let (object, _) = build(&parts);
        prop_assert!(read_index(&object[..cut.index(object.len())]).is_err());
        let mut longer = object.to_vec();
        longer.extend(std::iter::repeat_n(0, extra));
        prop_assert!(read_index(&longer).is_err());
        let mut prefixed = vec![0; extra];
        prefixed.extend_from_slice(&object);
        prop_assert!(read_index(&prefixed).is_err());
    }

    #[test]
    fn truncated_or_extended_chunks_are_rejected(
        parts in nonempty_segment_strategy(4),
        which in any::<Index>(),
        cut in any::<Index>(),
        extra in any::<u8>(),
    ) {
        let (object, entries) = build(&parts);
        let chunk = chunk_of(&object, which.get(&entries));
        prop_assert!(decode_chunk(&chunk[..cut.index(chunk.len())]).is_err());
        let mut longer = chunk.to_vec();
        longer.push(extra);
        prop_assert!(decode_chunk(&longer).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
        let _ = read_index(&bytes);
        let _ = decode_chunk(&bytes);
        let _ = parse_trailer(&bytes);
        let _ = parse_trailer(&bytes[bytes.len().saturating_sub(TRAILER_LEN)..]);
    }

    /// Chunks whose CRC is right but whose fields are arbitrary exercise the
    /// checks behind the CRC, including zstd on hostile frames.
    #[test]
    fn forged_chunks_with_valid_crc_never_panic_or_overallocate(
        compression in 0u8..3,
        flags in prop_oneof![Just(0u32), any::<u32>()],
        stored_len in any::<u32>(),
        raw_len in prop_oneof![0u32..4096, any::<u32>()],
        payload in prop_oneof![
            vec(any::<u8>(), 0..200),
            vec(any::<u8>(), 1..2000).prop_map(|raw| zstd::bulk::compress(&raw, 1).unwrap()),
        ],
        use_real_stored_len in any::<bool>(),
    ) {
        let stored_len = if use_real_stored_len { payload.len() as u32 } else { stored_len };
        let mut chunk = Vec::new();
        chunk.extend_from_slice(&CHUNK_MAGIC);
        chunk.extend_from_slice(&[FORMAT_VERSION, compression]);
        chunk.extend_from_slice(&flags.to_le_bytes());
        chunk.extend_from_slice(&[9; 20]);
        chunk.extend_from_slice(&stored_len.to_le_bytes());
        chunk.extend_from_slice(&raw_len.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&chunk), &payload);
        chunk.extend_from_slice(&crc.to_le_bytes());
        chunk.extend_from_slice(&payload);
        if let Ok(raw) = decode_chunk(&chunk) {
            prop_assert_eq!(raw.len(), raw_len as usize);
            prop_assert!(raw_len <= MAX_CHUNK_RAW_LEN);
        }
    }
}
