//! Names of segment objects in the bucket.
//!
//! `segments/<13-digit epoch millis>-<node id>-<32 hex digits>.seg`: never reused (a random
//! part), sortable by creation time, and carrying that time so the metadata service can
//! refuse to commit an object the orphan collector may already consider abandoned.

/// Prefix under which every segment object lives.
pub const SEGMENTS_PREFIX: &str = "segments";

/// A fresh segment key written at `now_ms` by agent `node_id`; `unique` is 16 random bytes.
pub fn segment_key(now_ms: i64, node_id: i32, unique: [u8; 16]) -> String {
    let hex: String = unique.iter().map(|b| format!("{b:02x}")).collect();
    format!("{SEGMENTS_PREFIX}/{now_ms:013}-{node_id}-{hex}.seg")
}

/// The creation time a segment key carries, if it is one.
pub fn segment_key_time(key: &str) -> Option<i64> {
    let name = key.strip_prefix(SEGMENTS_PREFIX)?.strip_prefix('/')?;
    let (millis, _) = name.split_once('-')?;
    millis.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_creation_time() {
        let key = segment_key(1_700_000_000_123, 4, [0xab; 16]);
        assert_eq!(
            key,
            format!("segments/1700000000123-4-{}.seg", "ab".repeat(16))
        );
        assert_eq!(segment_key_time(&key), Some(1_700_000_000_123));
        assert_eq!(segment_key_time("other/123-1-x.seg"), None);
        assert_eq!(segment_key_time("segments/notime.seg"), None);
    }
}
