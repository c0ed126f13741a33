//! Round trips through the writer and the readers.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{build, chunk_of, segment_strategy, PartitionData};
use proptest::prelude::*;
use strata_segment::{
    decode_chunk, decode_chunk_for, parse_footer, parse_trailer, read_index, ChunkInput,
    Compression, PartitionKey, SegmentError, SegmentWriter, CHUNK_HEADER_LEN, MAX_CHUNK_RAW_LEN,
    TRAILER_LEN,
};

proptest! {
    #[test]
    fn every_chunk_decodes_to_its_input(parts in segment_strategy(12)) {
        let (object, entries) = build(&parts);
        prop_assert_eq!(entries.len(), parts.len());
        let mut next_offset = 0;
        for (part, entry) in parts.iter().zip(&entries) {
            prop_assert_eq!(entry.key, part.key);
            prop_assert_eq!(entry.offset, next_offset);
            next_offset = entry.range().end;
            prop_assert_eq!(entry.raw_len as usize, part.batches.len());
            prop_assert_eq!(entry.batch_count, part.batch_count);
            prop_assert_eq!(entry.record_count, part.record_count);
            prop_assert_eq!(entry.max_timestamp, part.max_timestamp);
            if !part.compress {
                prop_assert_eq!(entry.compression, Compression::None);
            }
            if entry.compression == Compression::Zstd {
                prop_assert!((entry.len as usize) < CHUNK_HEADER_LEN + part.batches.len());
            }
            let chunk = chunk_of(&object, entry);
            prop_assert_eq!(&decode_chunk(chunk).unwrap()[..], &part.batches[..]);
            let fetched = object.slice(entry.range().start as usize..entry.range().end as usize);
            prop_assert_eq!(&decode_chunk_for(entry, fetched).unwrap()[..], &part.batches[..]);
        }
    }

    #[test]
    fn read_index_returns_the_entries_finish_returned(parts in segment_strategy(12)) {
        let (object, entries) = build(&parts);
        prop_assert_eq!(read_index(&object).unwrap(), entries.clone());

        // The two-GET path gives the same answer.
        let trailer = parse_trailer(&object[object.len() - TRAILER_LEN..]).unwrap();
        let range = trailer.footer_range(object.len() as u64).unwrap();
        let footer = &object[range.start as usize..range.end as usize];
        prop_assert_eq!(parse_footer(footer, &trailer).unwrap(), entries);
    }
}

fn part(partition: i32, batches: &[u8], compress: bool) -> PartitionData {
    PartitionData {
        key: PartitionKey {
            topic_id: *b"0123456789abcdef",
            partition,
        },
        batches: batches.to_vec(),
        batch_count: 1,
        record_count: 1,
        max_timestamp: -1,
        compress,
    }
}

#[test]
fn empty_segment_round_trips() {
    let writer = SegmentWriter::new(3);
    assert!(writer.is_empty());
    let (object, entries) = writer.finish();
    assert!(entries.is_empty());
    assert_eq!(read_index(&object).unwrap(), entries);
}

#[test]
fn compressible_input_is_compressed_and_noise_is_not() {
    let text = b"key=user-42 value={\"clicks\":17} ".repeat(200);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    let (object, entries) = build(&[part(0, &text, true), part(1, &noise, true)]);
    assert_eq!(entries[0].compression, Compression::Zstd);
    assert!((entries[0].len as usize) < text.len() / 10);
    assert_eq!(entries[1].compression, Compression::None);
    assert_eq!(entries[1].len as usize, CHUNK_HEADER_LEN + noise.len());
    assert_eq!(
        &decode_chunk(chunk_of(&object, &entries[1])).unwrap()[..],
        &noise[..]
    );
}

#[test]
fn uncompressed_decode_chunk_for_is_zero_copy() {
    let (object, entries) = build(&[part(5, b"already compressed by the producer", false)]);
    let fetched = object.slice(entries[0].range().start as usize..entries[0].range().end as usize);
    let raw = decode_chunk_for(&entries[0], fetched.clone()).unwrap();
    assert_eq!(raw.as_ptr(), fetched[CHUNK_HEADER_LEN..].as_ptr());
}

#[test]
fn writer_rejects_bad_input_and_stays_unchanged() {
    let mut writer = SegmentWriter::new(3);
    let first = part(0, b"abc", true);
    writer.push_chunk(first.input()).unwrap();
    let before = writer.encoded_len();

    let err = writer.push_chunk(first.input()).unwrap_err();
    assert!(matches!(err, SegmentError::DuplicatePartition { .. }));
    assert!(
        err.to_string()
            .contains("30313233-3435-3637-3839-616263646566/0"),
        "{err}"
    );

    let empty = part(1, b"", true);
    assert!(matches!(
        writer.push_chunk(empty.input()),
        Err(SegmentError::EmptyChunk { .. })
    ));
    let other = part(2, b"abc", true);
    let no_batches = ChunkInput {
        batch_count: 0,
        ..other.input()
    };
    assert!(matches!(
        writer.push_chunk(no_batches),
        Err(SegmentError::EmptyChunk { .. })
    ));

    // calloc'd, so cheap; rejected before any compression.
    let huge = vec![0u8; MAX_CHUNK_RAW_LEN as usize + 1];
    let third = part(3, b"x", true);
    let too_large = ChunkInput {
        batches: &huge,
        ..third.input()
    };
    assert!(matches!(
        writer.push_chunk(too_large),
        Err(SegmentError::TooLarge { .. })
    ));

    assert_eq!(writer.len(), 1);
    assert_eq!(writer.encoded_len(), before);
    let (object, entries) = writer.finish();
    assert_eq!(read_index(&object).unwrap(), entries);
}

#[test]
fn out_of_range_levels_are_clamped() {
    for level in [i32::MIN, -1, 0, 22, i32::MAX] {
        let mut writer = SegmentWriter::new(level);
        let input = part(0, &b"abcabcabc".repeat(50), true);
        writer.push_chunk(input.input()).unwrap();
        let (object, entries) = writer.finish();
        let raw = decode_chunk(chunk_of(&object, &entries[0])).unwrap();
        assert_eq!(raw, Bytes::from(input.batches));
    }
}

#[test]
fn partition_key_display_is_uuid_and_partition() {
    let key = PartitionKey {
        topic_id: [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ],
        partition: -3,
    };
    assert_eq!(key.to_string(), "12345678-9abc-def0-0123-456789abcdef/-3");
}
