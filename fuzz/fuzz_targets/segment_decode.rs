//! Fuzzes the segment readers.
//!
//! The first input byte picks a mode:
//! * 0: the rest is an arbitrary "object": `read_index`, then every chunk of
//!   an index that parses; also `decode_chunk` and `parse_trailer` on it.
//! * 1: the rest is a chunk whose magic, version and CRC are patched to be
//!   valid, so the checks behind the CRC and zstd see hostile input.
//! * 2: the rest is a chunk area and a footer; a valid trailer (and footer
//!   count) is appended, so `parse_footer`'s layout checks see hostile input.
//! * 3: the rest describes partitions; they are written, read back and must
//!   round-trip, then one byte is flipped and reading must fail somewhere
//!   without returning wrong data.
//!
//! Readers must never panic; in mode 3 any wrong result is a panic (a find).
//!
//! Run with cargo-fuzz (nightly, or `RUSTC_BOOTSTRAP=1`), from `fuzz/`:
//! `cargo fuzz run segment_decode -- -max_total_time=60`.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strata_segment::{
    decode_chunk, decode_chunk_for, parse_trailer, read_index, ChunkEntry, ChunkInput,
    PartitionKey, SegmentWriter, CHUNK_HEADER_LEN, CHUNK_MAGIC, FOOTER_ENTRY_LEN,
    FOOTER_HEADER_LEN, FORMAT_VERSION, SEGMENT_MAGIC, TRAILER_LEN,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => arbitrary_object(rest),
        1 => chunk_with_valid_crc(rest),
        2 => footer_with_valid_trailer(rest),
        _ => round_trip_then_flip(rest),
    }
});

fn chunk_bytes<'a>(object: &'a [u8], entry: &ChunkEntry) -> &'a [u8] {
    let range = entry.range();
    &object[range.start as usize..range.end as usize]
}

/// Reads the index, then decodes every chunk it lists. Returns the entries
/// and the result of each chunk decode.
fn read_everything(object: &[u8]) -> Option<(Vec<ChunkEntry>, Vec<Option<Bytes>>)> {
    let entries = read_index(object).ok()?;
    let decoded = entries
        .iter()
        .map(|entry| {
            let chunk = chunk_bytes(object, entry);
            let plain = decode_chunk(chunk).ok();
            let checked = decode_chunk_for(entry, Bytes::copy_from_slice(chunk)).ok();
            assert_eq!(plain.is_some(), checked.is_some());
            if let (Some(plain), Some(checked)) = (&plain, &checked) {
                assert_eq!(plain, checked);
                assert_eq!(plain.len(), entry.raw_len as usize);
            }
            plain
        })
        .collect();
    Some((entries, decoded))
}

fn arbitrary_object(data: &[u8]) {
    let _ = read_everything(data);
    let _ = decode_chunk(data);
    let _ = parse_trailer(&data[data.len().saturating_sub(TRAILER_LEN)..]);
}

fn chunk_with_valid_crc(data: &[u8]) {
    if data.len() < CHUNK_HEADER_LEN {
        let _ = decode_chunk(data);
        return;
    }
    let mut chunk = data.to_vec();
    chunk[..2].copy_from_slice(&CHUNK_MAGIC);
    chunk[2] = FORMAT_VERSION;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&chunk[..36]), &chunk[CHUNK_HEADER_LEN..]);
    chunk[36..40].copy_from_slice(&crc.to_le_bytes());
    if let Ok(raw) = decode_chunk(&chunk) {
        let declared = u32::from_le_bytes([chunk[32], chunk[33], chunk[34], chunk[35]]);
        assert_eq!(raw.len(), declared as usize);
    }
}

fn footer_with_valid_trailer(data: &[u8]) {
    let Some((split, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes(*split)).min(body.len());
    let mut object = body.to_vec();
    let footer_len = object.len() - split;
    if footer_len < FOOTER_HEADER_LEN {
        object.resize(split + FOOTER_HEADER_LEN, 0);
    }
    let entry_count = (object.len() - split - FOOTER_HEADER_LEN) / FOOTER_ENTRY_LEN;
    object.truncate(split + FOOTER_HEADER_LEN + entry_count * FOOTER_ENTRY_LEN);
    object[split..split + 4].copy_from_slice(&(entry_count as u32).to_le_bytes());
    let footer_crc = crc32c::crc32c(&object[split..]);

    let mut trailer = Vec::with_capacity(TRAILER_LEN);
    trailer.extend_from_slice(&footer_crc.to_le_bytes());
    trailer.extend_from_slice(&(split as u64).to_le_bytes());
    trailer.extend_from_slice(&((object.len() - split) as u32).to_le_bytes());
    trailer.extend_from_slice(&(entry_count as u32).to_le_bytes());
    trailer.push(0);
    trailer.push(FORMAT_VERSION);
    trailer.extend_from_slice(&SEGMENT_MAGIC);
    object.extend_from_slice(&crc32c::crc32c(&trailer).to_le_bytes());
    object.extend_from_slice(&trailer);
    assert!(parse_trailer(&object[object.len() - TRAILER_LEN..]).is_ok());

    if let Some((entries, _)) = read_everything(&object) {
        let mut next = 0;
        for entry in &entries {
            assert_eq!(entry.offset, next);
            next = entry.range().end;
        }
        assert_eq!(next, split as u64);
    }
}

fn round_trip_then_flip(data: &[u8]) {
    let Some((flip, mut rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let mut parts = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (batches, tail) = tail.split_at(len);
        rest = tail;
        if !batches.is_empty() {
            parts.push(batches);
        }
    }
    let mut writer = SegmentWriter::new(1);
    for (i, batches) in parts.iter().enumerate() {
        writer
            .push_chunk(ChunkInput {
                key: PartitionKey {
                    topic_id: [i as u8; 16],
                    partition: i as i32,
                },
                batches,
                batch_count: 1,
                record_count: batches.len() as u32,
                max_timestamp: i as i64,
                compress: batches[0] % 2 == 0,
            })
            .expect("valid input");
    }
    let (object, entries) = writer.finish();
    let (read, decoded) = read_everything(&object).expect("a fresh segment reads back");
    assert_eq!(read, entries);
    for (raw, batches) in decoded.iter().zip(&parts) {
        assert_eq!(raw.as_deref(), Some(*batches));
    }

    let mut corrupt = object.to_vec();
    let position = usize::from(u16::from_le_bytes([flip[0], flip[1]])) % corrupt.len();
    corrupt[position] ^= flip[2].max(1);
    if let Some((read, decoded)) = read_everything(&corrupt) {
        assert_eq!(read, entries);
        let mut failures = 0;
        for (raw, batches) in decoded.iter().zip(&parts) {
            match raw {
                Some(raw) => assert_eq!(&raw[..], *batches),
                None => failures += 1,
            }
        }
        assert_eq!(
            failures, 1,
            "a flipped chunk byte must fail exactly that chunk"
        );
    }
}
