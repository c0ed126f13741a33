//! The footer (chunk index) and the fixed trailer.
//!
//! Footer: entry count (u32) followed by that many [`FOOTER_ENTRY_LEN`]-byte
//! entries. Trailer ([`TRAILER_LEN`] bytes, the end of the object):
//!
//! | offset | size | field                                  |
//! |-------:|-----:|----------------------------------------|
//! | 0      | 4    | trailer CRC-32C of bytes 4..32         |
//! | 4      | 4    | footer CRC-32C                         |
//! | 8      | 8    | footer offset (= total chunk bytes)    |
//! | 16     | 4    | footer length                          |
//! | 20     | 4    | entry count                            |
//! | 24     | 1    | flags, must be 0                       |
//! | 25     | 1    | format version                         |
//! | 26     | 6    | magic `"STRSEG"`                       |

use std::collections::HashSet;
use std::ops::Range;

use crate::codec::{
    check_raw_len, expect_crc, expect_len, expect_version, expect_zero, FieldReader,
};
use crate::{
    ChunkEntry, Compression, SegmentError, CHUNK_HEADER_LEN, FOOTER_ENTRY_LEN, FOOTER_HEADER_LEN,
    FORMAT_VERSION, SEGMENT_MAGIC, TRAILER_LEN,
};

/// Most entries one footer can hold: its length must fit in a u32.
pub(crate) const MAX_ENTRIES: usize = (u32::MAX as usize - FOOTER_HEADER_LEN) / FOOTER_ENTRY_LEN;

/// The parsed, verified trailer of a segment object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Offset of the footer in the object, which is also the total length of
    /// all chunks.
    pub footer_offset: u64,
    /// Length of the footer in bytes.
    pub footer_len: u32,
    /// Number of chunk entries in the footer.
    pub entry_count: u32,
    /// CRC-32C of the footer bytes.
    pub footer_crc: u32,
}

impl Trailer {
    /// The length of the object this trailer ends: chunks, footer and trailer.
    pub fn object_len(&self) -> u64 {
        self.footer_offset
            .saturating_add(u64::from(self.footer_len))
            .saturating_add(TRAILER_LEN as u64)
    }

    /// The footer's byte range within an object of `object_len` bytes: the
    /// second ranged GET a reader issues, after the trailer.
    ///
    /// # Errors
    /// [`SegmentError::LengthMismatch`] if `object_len` is not the length
    /// this trailer describes (the object was truncated, extended, or the
    /// trailer came from another object).
    pub fn footer_range(&self, object_len: u64) -> Result<Range<u64>, SegmentError> {
        expect_len("segment object length", self.object_len(), object_len)?;
        let end = self
            .footer_offset
            .saturating_add(u64::from(self.footer_len));
        Ok(self.footer_offset..end)
    }
}

/// Appends the footer for `entries` and the trailer to `object`, whose
/// current content must be exactly the chunks the entries describe.
pub(crate) fn write_footer_and_trailer(entries: &[ChunkEntry], object: &mut Vec<u8>) {
    let footer_offset = object.len() as u64;
    // The writer refuses more than MAX_ENTRIES chunks, so these fit in u32.
    let entry_count = entries.len() as u32;
    let footer_len = (FOOTER_HEADER_LEN + FOOTER_ENTRY_LEN * entries.len()) as u32;
    object.reserve(footer_len as usize + TRAILER_LEN);

    object.extend_from_slice(&entry_count.to_le_bytes());
    for entry in entries {
        object.extend_from_slice(&entry.key.topic_id);
        object.extend_from_slice(&entry.key.partition.to_le_bytes());
        object.extend_from_slice(&entry.offset.to_le_bytes());
        object.extend_from_slice(&entry.len.to_le_bytes());
        object.extend_from_slice(&entry.raw_len.to_le_bytes());
        object.push(entry.compression.code());
        object.extend_from_slice(&[0; 3]);
        object.extend_from_slice(&entry.batch_count.to_le_bytes());
        object.extend_from_slice(&entry.record_count.to_le_bytes());
        object.extend_from_slice(&entry.max_timestamp.to_le_bytes());
    }
    let footer_crc = crc32c::crc32c(&object[footer_offset as usize..]);

    let mut covered = Vec::with_capacity(TRAILER_LEN - 4);
    covered.extend_from_slice(&footer_crc.to_le_bytes());
    covered.extend_from_slice(&footer_offset.to_le_bytes());
    covered.extend_from_slice(&footer_len.to_le_bytes());
    covered.extend_from_slice(&entry_count.to_le_bytes());
    covered.push(0); // flags
    covered.push(FORMAT_VERSION);
    covered.extend_from_slice(&SEGMENT_MAGIC);
    object.extend_from_slice(&crc32c::crc32c(&covered).to_le_bytes());
    object.extend_from_slice(&covered);
}

/// Parses and verifies the fixed trailer: exactly the last [`TRAILER_LEN`]
/// bytes of a segment object.
///
/// Checks, in order: length, magic, version, trailer CRC, flags, and that
/// the footer length matches the entry count. The magic is always the last
/// 6 bytes and the version the byte before them, in every format version, so
/// a newer object is reported as [`SegmentError::UnsupportedVersion`].
///
/// # Errors
/// [`SegmentError::Truncated`] / [`SegmentError::LengthMismatch`] for a
/// slice of the wrong size, [`SegmentError::BadMagic`],
/// [`SegmentError::UnsupportedVersion`], [`SegmentError::ChecksumMismatch`],
/// [`SegmentError::ReservedNonZero`], [`SegmentError::BadLayout`].
pub fn parse_trailer(trailer: &[u8]) -> Result<Trailer, SegmentError> {
    const WHAT: &str = "trailer";
    if trailer.len() < TRAILER_LEN {
        return Err(SegmentError::Truncated {
            what: WHAT,
            needed: TRAILER_LEN as u64,
            available: trailer.len() as u64,
        });
    }
    expect_len(WHAT, trailer.len() as u64, TRAILER_LEN as u64)?;
    let mut fields = FieldReader::new(trailer, WHAT);
    let stored_crc = fields.u32()?;
    let footer_crc = fields.u32()?;
    let footer_offset = fields.u64()?;
    let footer_len = fields.u32()?;
    let entry_count = fields.u32()?;
    let flags = fields.u8()?;
    let version = fields.u8()?;
    if fields.array::<6>()? != SEGMENT_MAGIC {
        return Err(SegmentError::BadMagic { what: WHAT });
    }
    expect_version(WHAT, version)?;
    let covered = trailer.get(4..).unwrap_or_default();
    expect_crc(WHAT, stored_crc, crc32c::crc32c(covered))?;
    expect_zero("trailer flags", u64::from(flags))?;
    let trailer = Trailer {
        footer_offset,
        footer_len,
        entry_count,
        footer_crc,
    };
    check_footer_len(&trailer)?;
    if footer_offset
        .checked_add(u64::from(footer_len) + TRAILER_LEN as u64)
        .is_none()
    {
        return Err(SegmentError::BadLayout {
            reason: format!("footer offset {footer_offset} overflows"),
        });
    }
    Ok(trailer)
}

/// Checks that the trailer's footer length is the one its entry count implies.
fn check_footer_len(trailer: &Trailer) -> Result<(), SegmentError> {
    let implied =
        FOOTER_HEADER_LEN as u64 + FOOTER_ENTRY_LEN as u64 * u64::from(trailer.entry_count);
    if implied != u64::from(trailer.footer_len) {
        return Err(SegmentError::BadLayout {
            reason: format!(
                "footer length {} does not fit {} entries (expected {implied})",
                trailer.footer_len, trailer.entry_count
            ),
        });
    }
    Ok(())
}

/// Parses and verifies the footer (the bytes of
/// [`Trailer::footer_range`]) and returns the chunk entries in object order.
///
/// Besides the CRC, checks that every entry is well-formed (known
/// compression, zero reserved bytes, non-empty, raw length within
/// [`crate::MAX_CHUNK_RAW_LEN`]), that no partition appears twice, and that
/// the chunks are packed back to back from offset 0 up to
/// [`Trailer::footer_offset`], so they lie inside the object and do not
/// overlap.
///
/// # Errors
/// [`SegmentError::LengthMismatch`], [`SegmentError::ChecksumMismatch`],
/// [`SegmentError::BadLayout`], [`SegmentError::DuplicatePartition`] and the
/// variants describing malformed entries.
pub fn parse_footer(footer: &[u8], trailer: &Trailer) -> Result<Vec<ChunkEntry>, SegmentError> {
    const WHAT: &str = "footer";
    expect_len(WHAT, u64::from(trailer.footer_len), footer.len() as u64)?;
    expect_crc(WHAT, trailer.footer_crc, crc32c::crc32c(footer))?;
    check_footer_len(trailer)?;

    let mut fields = FieldReader::new(footer, WHAT);
    expect_len(
        "footer entry count",
        u64::from(fields.u32()?),
        u64::from(trailer.entry_count),
    )?;
    // The footer length was checked against the count, so this allocation is
    // bounded by the bytes actually supplied.
    let mut entries = Vec::with_capacity(trailer.entry_count as usize);
    let mut seen = HashSet::with_capacity(trailer.entry_count as usize);
    let mut next_offset = 0u64;
    for _ in 0..trailer.entry_count {
        let entry = parse_entry(&mut fields)?;
        if entry.offset != next_offset {
            return Err(SegmentError::BadLayout {
                reason: format!(
                    "chunk of {} starts at {} but the previous chunk ends at {next_offset}",
                    entry.key, entry.offset
                ),
            });
        }
        next_offset += u64::from(entry.len);
        if !seen.insert(entry.key) {
            return Err(SegmentError::DuplicatePartition { key: entry.key });
        }
        entries.push(entry);
    }
    if next_offset != trailer.footer_offset {
        return Err(SegmentError::BadLayout {
            reason: format!(
                "chunks end at {next_offset} but the footer starts at {}",
                trailer.footer_offset
            ),
        });
    }
    Ok(entries)
}

/// Parses and validates one footer entry.
fn parse_entry(fields: &mut FieldReader<'_>) -> Result<ChunkEntry, SegmentError> {
    let key = crate::PartitionKey {
        topic_id: fields.array()?,
        partition: fields.i32()?,
    };
    let offset = fields.u64()?;
    let len = fields.u32()?;
    let raw_len = fields.u32()?;
    let compression = Compression::from_code(fields.u8()?)?;
    let reserved = fields.array::<3>()?;
    expect_zero(
        "footer entry reserved bytes",
        u64::from(reserved.iter().fold(0, |acc, b| acc | b)),
    )?;
    let entry = ChunkEntry {
        key,
        offset,
        len,
        raw_len,
        compression,
        batch_count: fields.u32()?,
        record_count: fields.u32()?,
        max_timestamp: fields.i64()?,
    };
    check_raw_len("footer entry raw length", u64::from(raw_len))?;
    if raw_len == 0 || entry.batch_count == 0 || len as usize <= CHUNK_HEADER_LEN {
        return Err(SegmentError::EmptyChunk { key });
    }
    if compression == Compression::None {
        expect_len(
            "uncompressed footer entry length",
            u64::from(len),
            CHUNK_HEADER_LEN as u64 + u64::from(raw_len),
        )?;
    }
    Ok(entry)
}

/// Reads and verifies the index of a whole segment object held in memory:
/// the trailer, then the footer, then the chunk layout.
///
/// Guarantees: the returned entries equal those [`crate::SegmentWriter::finish`]
/// returned for this object; every entry's [`ChunkEntry::range`] lies inside
/// `object`, ranges do not overlap, and partitions are unique. Any corruption
/// of the footer or trailer is an error. Chunk contents are not read; verify
/// them with [`crate::decode_chunk`] or [`crate::decode_chunk_for`].
///
/// # Errors
/// Everything [`parse_trailer`], [`Trailer::footer_range`] and
/// [`parse_footer`] report.
pub fn read_index(object: &[u8]) -> Result<Vec<ChunkEntry>, SegmentError> {
    let Some(trailer_start) = object.len().checked_sub(TRAILER_LEN) else {
        return Err(SegmentError::Truncated {
            what: "segment object",
            needed: TRAILER_LEN as u64,
            available: object.len() as u64,
        });
    };
    let trailer = parse_trailer(object.get(trailer_start..).unwrap_or_default())?;
    let range = trailer.footer_range(object.len() as u64)?;
    // footer_range checked that the footer ends where the trailer starts.
    let footer_start = range.start as usize;
    let footer = object.get(footer_start..trailer_start).unwrap_or_default();
    parse_footer(footer, &trailer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::PartitionKey;

    fn empty_segment() -> Vec<u8> {
        let mut object = Vec::new();
        write_footer_and_trailer(&[], &mut object);
        object
    }

    /// Rewrites the trailer CRC so that checks after it are reached.
    fn fix_trailer_crc(object: &mut [u8]) {
        let start = object.len() - TRAILER_LEN;
        let crc = crc32c::crc32c(&object[start + 4..]);
        object[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn empty_segment_is_footer_and_trailer_only() {
        let object = empty_segment();
        assert_eq!(object.len(), FOOTER_HEADER_LEN + TRAILER_LEN);
        assert_eq!(read_index(&object).unwrap(), vec![]);
        assert_eq!(&object[object.len() - 6..], b"STRSEG");
        let trailer = parse_trailer(&object[FOOTER_HEADER_LEN..]).unwrap();
        assert_eq!(trailer.footer_range(object.len() as u64).unwrap(), 0..4);
        assert_eq!(trailer.object_len(), object.len() as u64);
    }

    #[test]
    fn newer_version_is_reported_as_unsupported() {
        let mut object = empty_segment();
        let version_at = object.len() - 7;
        object[version_at] = FORMAT_VERSION + 1;
        let err = read_index(&object).unwrap_err();
        assert!(
            matches!(err, SegmentError::UnsupportedVersion { found, .. } if found == FORMAT_VERSION + 1),
            "{err}"
        );
        assert!(err
            .to_string()
            .contains("unsupported segment format version 2"));
    }

    #[test]
    fn nonzero_flags_are_rejected() {
        let mut object = empty_segment();
        let flags_at = object.len() - 8;
        object[flags_at] = 1;
        fix_trailer_crc(&mut object);
        assert!(matches!(
            read_index(&object),
            Err(SegmentError::ReservedNonZero { .. })
        ));
    }

    #[test]
    fn trailer_with_wrong_slice_length_is_rejected() {
        let object = empty_segment();
        assert!(matches!(
            parse_trailer(&object[FOOTER_HEADER_LEN + 1..]),
            Err(SegmentError::Truncated { .. })
        ));
        let mut longer = object.clone();
        longer.insert(0, 0);
        assert!(matches!(
            parse_trailer(&longer),
            Err(SegmentError::LengthMismatch { .. })
        ));
        assert!(matches!(
            read_index(&longer),
            Err(SegmentError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn footer_checks_layout_against_hand_built_trailer() {
        let key = PartitionKey {
            topic_id: [1; 16],
            partition: 0,
        };
        let entry = ChunkEntry {
            key,
            offset: 0,
            len: CHUNK_HEADER_LEN as u32 + 3,
            raw_len: 3,
            compression: Compression::None,
            batch_count: 1,
            record_count: 1,
            max_timestamp: 5,
        };
        let mut object = vec![0; entry.len as usize];
        write_footer_and_trailer(&[entry.clone(), entry.clone()], &mut object);
        // Two entries at the same offset: a layout error, whatever the CRCs.
        let trailer = parse_trailer(&object[object.len() - TRAILER_LEN..]).unwrap();
        let range = trailer.footer_range(object.len() as u64).unwrap();
        let err =
            parse_footer(&object[range.start as usize..range.end as usize], &trailer).unwrap_err();
        assert!(matches!(err, SegmentError::BadLayout { .. }), "{err}");

        // A forged trailer claiming more entries than the footer holds must
        // not cause a large allocation or a panic.
        let forged = Trailer {
            entry_count: u32::MAX,
            ..trailer
        };
        assert!(parse_footer(&object[range.start as usize..range.end as usize], &forged).is_err());
    }
}
