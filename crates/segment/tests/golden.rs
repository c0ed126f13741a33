//! Pins the exact bytes of a small segment, so the on-disk format cannot
//! change by accident. The same bytes appear in `docs/segment-format.md`;
//! changing them requires a new `FORMAT_VERSION`.

#![allow(clippy::unwrap_used)]

use strata_segment::{read_index, ChunkInput, PartitionKey, SegmentWriter};

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const GOLDEN: &str = "\
53 43 01 00 00 00 00 00 00 01 02 03 04 05 06 07
08 09 0a 0b 0c 0d 0e 0f 01 00 00 00 05 00 00 00
05 00 00 00 e2 32 34 7e 68 65 6c 6c 6f 01 00 00
00 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e
0f 01 00 00 00 00 00 00 00 00 00 00 00 2d 00 00
00 05 00 00 00 00 00 00 00 01 00 00 00 02 00 00
00 e8 03 00 00 00 00 00 00 3e 1b 94 f8 ea 2b 98
17 2d 00 00 00 00 00 00 00 3c 00 00 00 01 00 00
00 00 01 53 54 52 53 45 47";

#[test]
fn small_segment_has_the_documented_bytes() {
    let mut writer = SegmentWriter::new(3);
    writer
        .push_chunk(ChunkInput {
            key: PartitionKey {
                topic_id: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
                partition: 1,
            },
            batches: b"hello",
            batch_count: 1,
            record_count: 2,
            max_timestamp: 1000,
            compress: false,
        })
        .unwrap();
    let (object, entries) = writer.finish();
    assert_eq!(read_index(&object).unwrap(), entries);
    assert_eq!(object.len(), 137);
    assert_eq!(hex(&object), GOLDEN);
}
