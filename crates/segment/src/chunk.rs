//! Chunk header encoding and chunk decoding.
//!
//! Header layout (all little-endian), [`CHUNK_HEADER_LEN`] = 40 bytes:
//!
//! | offset | size | field                                   |
//! |-------:|-----:|-----------------------------------------|
//! | 0      | 2    | magic `"SC"`                            |
//! | 2      | 1    | format version                          |
//! | 3      | 1    | compression code                        |
//! | 4      | 4    | flags, must be 0                        |
//! | 8      | 16   | topic id                                |
//! | 24     | 4    | partition (i32)                         |
//! | 28     | 4    | stored payload length                   |
//! | 32     | 4    | raw (uncompressed) length               |
//! | 36     | 4    | CRC-32C of bytes 0..36 then the payload |

use bytes::Bytes;

use crate::codec::{
    check_raw_len, expect_crc, expect_len, expect_version, expect_zero, FieldReader,
};
use crate::{
    ChunkEntry, Compression, PartitionKey, SegmentError, CHUNK_HEADER_LEN, CHUNK_MAGIC,
    FORMAT_VERSION,
};

/// Offset of the CRC field in the chunk header; the CRC covers the bytes
/// before it and then the payload.
const CRC_OFFSET: usize = 36;

/// The decoded fields of a chunk header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    pub(crate) key: PartitionKey,
    pub(crate) compression: Compression,
    pub(crate) stored_len: u32,
    pub(crate) raw_len: u32,
}

impl ChunkHeader {
    /// Appends the header (with its CRC) followed by `payload` to `out`.
    ///
    /// `payload.len()` must equal `self.stored_len`.
    pub(crate) fn write_with_payload(&self, payload: &[u8], out: &mut Vec<u8>) {
        debug_assert_eq!(payload.len(), self.stored_len as usize);
        let start = out.len();
        out.reserve(CHUNK_HEADER_LEN + payload.len());
        out.extend_from_slice(&CHUNK_MAGIC);
        out.push(FORMAT_VERSION);
        out.push(self.compression.code());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.key.topic_id);
        out.extend_from_slice(&self.key.partition.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..]), payload);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(payload);
    }
}

/// Verifies a whole chunk (header and payload) and returns its header and
/// payload. Checks, in order: magic, version, CRC, then field consistency.
fn verify_chunk(chunk: &[u8]) -> Result<(ChunkHeader, &[u8]), SegmentError> {
    const WHAT: &str = "chunk header";
    let mut fields = FieldReader::new(chunk, WHAT);
    if fields.array::<2>()? != CHUNK_MAGIC {
        return Err(SegmentError::BadMagic { what: WHAT });
    }
    expect_version(WHAT, fields.u8()?)?;
    let Some((covered_header, rest)) = chunk.split_at_checked(CRC_OFFSET) else {
        return Err(SegmentError::Truncated {
            what: WHAT,
            needed: CHUNK_HEADER_LEN as u64,
            available: chunk.len() as u64,
        });
    };
    let compression_code = fields.u8()?;
    let flags = fields.u32()?;
    let key = PartitionKey {
        topic_id: fields.array()?,
        partition: fields.i32()?,
    };
    let stored_len = fields.u32()?;
    let raw_len = fields.u32()?;
    let stored_crc = fields.u32()?;
    // `fields` consumed exactly CHUNK_HEADER_LEN bytes, so `rest` holds at
    // least the 4 CRC bytes.
    let payload = rest
        .get(CHUNK_HEADER_LEN - CRC_OFFSET..)
        .unwrap_or_default();

    let computed = crc32c::crc32c_append(crc32c::crc32c(covered_header), payload);
    expect_crc("chunk", stored_crc, computed)?;

    expect_zero("chunk header flags", u64::from(flags))?;
    let compression = Compression::from_code(compression_code)?;
    expect_len(
        "chunk payload length",
        u64::from(stored_len),
        payload.len() as u64,
    )?;
    check_raw_len("chunk raw length", u64::from(raw_len))?;
    if raw_len == 0 || stored_len == 0 {
        return Err(SegmentError::EmptyChunk { key });
    }
    if compression == Compression::None {
        expect_len(
            "uncompressed chunk raw length",
            u64::from(raw_len),
            u64::from(stored_len),
        )?;
    }
    let header = ChunkHeader {
        key,
        compression,
        stored_len,
        raw_len,
    };
    Ok((header, payload))
}

/// Decompresses a zstd payload that must expand to exactly `raw_len` bytes.
///
/// Never allocates more than `raw_len` bytes of output, which the caller has
/// already checked against [`crate::MAX_CHUNK_RAW_LEN`].
fn decompress_exact(payload: &[u8], raw_len: u32) -> Result<Vec<u8>, SegmentError> {
    if let Ok(Some(content_size)) = zstd::zstd_safe::get_frame_content_size(payload) {
        expect_len("zstd frame content size", content_size, u64::from(raw_len))?;
    }
    let mut out = Vec::with_capacity(raw_len as usize);
    let mut decompressor = zstd::bulk::Decompressor::new().map_err(SegmentError::Decompress)?;
    decompressor
        .decompress_to_buffer(payload, &mut out)
        .map_err(SegmentError::Decompress)?;
    expect_len(
        "decompressed chunk length",
        u64::from(raw_len),
        out.len() as u64,
    )?;
    Ok(out)
}

/// Verifies and decodes one chunk: exactly the bytes of
/// [`ChunkEntry::range`] within the segment object.
///
/// Returns the raw concatenated batches, byte-for-byte as given to
/// [`crate::SegmentWriter::push_chunk`].
///
/// Guarantees: any corruption of the chunk (including any single flipped
/// byte, truncation or extension) is reported as an error; it never panics,
/// and never allocates more than the declared raw length, itself capped at
/// [`crate::MAX_CHUNK_RAW_LEN`].
///
/// This does not check *which* partition the chunk belongs to; use
/// [`decode_chunk_for`] when the index entry is at hand.
///
/// # Errors
/// [`SegmentError::BadMagic`], [`SegmentError::UnsupportedVersion`],
/// [`SegmentError::ChecksumMismatch`], [`SegmentError::Truncated`],
/// [`SegmentError::LengthMismatch`], [`SegmentError::Decompress`] and the
/// other variants describing inconsistent header fields.
pub fn decode_chunk(chunk: &[u8]) -> Result<Bytes, SegmentError> {
    let (header, payload) = verify_chunk(chunk)?;
    match header.compression {
        Compression::None => Ok(Bytes::copy_from_slice(payload)),
        Compression::Zstd => decompress_exact(payload, header.raw_len).map(Bytes::from),
    }
}

/// Like [`decode_chunk`], and also checks that the chunk is the one `entry`
/// describes: same partition, length, raw length and compression.
///
/// Takes the fetched bytes by value so an uncompressed payload is returned
/// without copying (a slice of `chunk`).
///
/// # Errors
/// Everything [`decode_chunk`] reports, plus [`SegmentError::EntryMismatch`]
/// when the chunk is intact but is not the one `entry` describes (for example
/// a stale or wrong byte range).
pub fn decode_chunk_for(entry: &ChunkEntry, chunk: Bytes) -> Result<Bytes, SegmentError> {
    expect_len("fetched chunk", u64::from(entry.len), chunk.len() as u64)?;
    let (header, payload) = verify_chunk(&chunk)?;
    let expected = ChunkHeader {
        key: entry.key,
        compression: entry.compression,
        stored_len: entry.len.saturating_sub(CHUNK_HEADER_LEN as u32),
        raw_len: entry.raw_len,
    };
    if header != expected {
        return Err(SegmentError::EntryMismatch {
            reason: format!("chunk header says {header:?}, index entry says {expected:?}"),
        });
    }
    match header.compression {
        Compression::None => Ok(chunk.slice(CHUNK_HEADER_LEN..)),
        Compression::Zstd => decompress_exact(payload, header.raw_len).map(Bytes::from),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key() -> PartitionKey {
        PartitionKey {
            topic_id: [3; 16],
            partition: 9,
        }
    }

    /// Builds a chunk with arbitrary (possibly inconsistent) header fields but
    /// a correct CRC, to reach the checks that run after the CRC.
    fn forged_chunk(
        compression_code: u8,
        stored_len: u32,
        raw_len: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut chunk = Vec::new();
        chunk.extend_from_slice(&CHUNK_MAGIC);
        chunk.push(FORMAT_VERSION);
        chunk.push(compression_code);
        chunk.extend_from_slice(&0u32.to_le_bytes());
        chunk.extend_from_slice(&key().topic_id);
        chunk.extend_from_slice(&key().partition.to_le_bytes());
        chunk.extend_from_slice(&stored_len.to_le_bytes());
        chunk.extend_from_slice(&raw_len.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&chunk), payload);
        chunk.extend_from_slice(&crc.to_le_bytes());
        chunk.extend_from_slice(payload);
        chunk
    }

    #[test]
    fn header_is_forty_bytes_and_round_trips() {
        let header = ChunkHeader {
            key: key(),
            compression: Compression::None,
            stored_len: 5,
            raw_len: 5,
        };
        let mut out = vec![0xAA];
        header.write_with_payload(b"hello", &mut out);
        assert_eq!(out.len(), 1 + CHUNK_HEADER_LEN + 5);
        assert_eq!(out[1..], forged_chunk(0, 5, 5, b"hello")[..]);
        let (parsed, payload) = verify_chunk(&out[1..]).unwrap();
        assert_eq!(parsed, header);
        assert_eq!(payload, b"hello");
        assert_eq!(&decode_chunk(&out[1..]).unwrap()[..], b"hello");
    }

    #[test]
    fn rejects_declared_raw_len_above_limit() {
        let chunk = forged_chunk(1, 3, crate::MAX_CHUNK_RAW_LEN + 1, b"abc");
        assert!(matches!(
            decode_chunk(&chunk),
            Err(SegmentError::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_zstd_frame_larger_than_declared() {
        let raw = vec![b'x'; 10_000];
        let frame = zstd::bulk::compress(&raw, 3).unwrap();
        let chunk = forged_chunk(1, frame.len() as u32, 100, &frame);
        let err = decode_chunk(&chunk).unwrap_err();
        assert!(matches!(err, SegmentError::LengthMismatch { .. }), "{err}");
    }

    #[test]
    fn rejects_zstd_frame_without_size_that_overflows_declared() {
        // A streamed frame does not record its content size, so the cap on
        // the output buffer is what stops it.
        let raw = vec![b'y'; 10_000];
        let mut frame = Vec::new();
        {
            let mut encoder = zstd::stream::write::Encoder::new(&mut frame, 3).unwrap();
            std::io::Write::write_all(&mut encoder, &raw).unwrap();
            encoder.finish().unwrap();
        }
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&frame).ok(),
            Some(None)
        );
        let chunk = forged_chunk(1, frame.len() as u32, 100, &frame);
        assert!(matches!(
            decode_chunk(&chunk),
            Err(SegmentError::Decompress(_))
        ));
        let exact = forged_chunk(1, frame.len() as u32, 10_000, &frame);
        assert_eq!(decode_chunk(&exact).unwrap(), raw);
    }

    #[test]
    fn rejects_inconsistent_fields_after_crc() {
        let cases: [(Vec<u8>, &str); 5] = [
            (forged_chunk(2, 3, 3, b"abc"), "unknown compression"),
            (forged_chunk(0, 4, 3, b"abc"), "length mismatch"),
            (forged_chunk(0, 3, 4, b"abc"), "length mismatch"),
            (forged_chunk(0, 0, 0, b""), "empty chunk"),
            (forged_chunk(1, 3, 3, b"abc"), "zstd decompression failed"),
        ];
        for (chunk, expected) in cases {
            let err = decode_chunk(&chunk).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn reports_version_and_magic_before_checksum() {
        let mut chunk = forged_chunk(0, 3, 3, b"abc");
        chunk[2] = FORMAT_VERSION + 1;
        assert!(matches!(
            decode_chunk(&chunk),
            Err(SegmentError::UnsupportedVersion { found, .. }) if found == FORMAT_VERSION + 1
        ));
        chunk[0] = b'X';
        assert!(matches!(
            decode_chunk(&chunk),
            Err(SegmentError::BadMagic { .. })
        ));
    }

    #[test]
    fn short_inputs_are_truncated_errors() {
        let chunk = forged_chunk(0, 3, 3, b"abc");
        for len in 0..CHUNK_HEADER_LEN {
            let err = decode_chunk(&chunk[..len]).unwrap_err();
            assert!(
                matches!(err, SegmentError::Truncated { .. }),
                "len {len}: {err}"
            );
        }
    }

    #[test]
    fn decode_chunk_for_rejects_wrong_entry() {
        let chunk = Bytes::from(forged_chunk(0, 3, 3, b"abc"));
        let mut entry = ChunkEntry {
            key: key(),
            offset: 0,
            len: chunk.len() as u32,
            raw_len: 3,
            compression: Compression::None,
            batch_count: 1,
            record_count: 1,
            max_timestamp: 0,
        };
        assert_eq!(
            &decode_chunk_for(&entry, chunk.clone()).unwrap()[..],
            b"abc"
        );
        entry.key.partition += 1;
        assert!(matches!(
            decode_chunk_for(&entry, chunk.clone()),
            Err(SegmentError::EntryMismatch { .. })
        ));
        entry.key.partition -= 1;
        entry.len += 1;
        assert!(matches!(
            decode_chunk_for(&entry, chunk),
            Err(SegmentError::LengthMismatch { .. })
        ));
    }
}
