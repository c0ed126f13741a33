//! The storage conformance suite: what Strata relies on from a bucket, checked the same
//! way on every backend (local directory, in-memory, S3 emulators, AWS S3).
//!
//! Each check is an `async fn(&Bucket)` that panics on a violation. It works under a fresh
//! key prefix (`<bucket prefix>/conformance/<uuid>/`) and deletes what it wrote, so it can
//! run against a shared bucket. [`conformance_tests!`](crate::conformance_tests) expands to
//! one `#[tokio::test]` per check for a backend.
//!
//! | check | why Strata needs it |
//! | --- | --- |
//! | [`put_if_absent`] | segment keys are never reused: `PutMode::Create` on an existing key fails with `AlreadyExists` and leaves the object alone |
//! | [`concurrent_creates`] | two racing writers of one key: exactly one wins, the object is the winner's |
//! | [`ranged_reads`] | the fetch path reads single chunks of a segment by byte range |
//! | [`range_past_the_end`] | the read tier reads aligned blocks; the last block's range ends past the object and must come back cut at its end |
//! | [`missing_is_not_found`] | readers and the GC tell "gone" from "failed" |
//! | [`list_with_prefix`] | GC and recovery list segments under a prefix |
//! | [`delete`] | retention and GC delete objects; deleting twice is harmless |
//! | [`large_object`] | a segment of 16 MiB or more goes up in one PUT and reads back intact |

use std::collections::BTreeSet;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{Error, ObjectStore, PutMode, PutOptions, PutPayload};

use crate::Bucket;

/// Size of the object [`large_object`] writes: 16 MiB and a bit, so it is not a round size.
pub const LARGE_OBJECT_BYTES: usize = 16 * 1024 * 1024 + 4099;

/// Writers racing in [`concurrent_creates`].
pub const RACERS: usize = 8;

/// A fresh key prefix inside the bucket, removed by [`Scratch::cleanup`].
struct Scratch<'a> {
    bucket: &'a Bucket,
    root: String,
}

impl<'a> Scratch<'a> {
    fn new(bucket: &'a Bucket, check: &str) -> Self {
        let root = format!("conformance/{}-{check}", uuid::Uuid::new_v4().simple());
        Self { bucket, root }
    }

    fn path(&self, key: &str) -> Path {
        self.bucket.path(&format!("{}/{key}", self.root))
    }

    fn store(&self) -> &dyn ObjectStore {
        self.bucket.store.as_ref()
    }

    async fn keys_under(&self, key: &str) -> BTreeSet<String> {
        let prefix = self.path(key);
        let metas: Vec<_> = self
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("list {prefix}: {e}"));
        metas.into_iter().map(|m| m.location.to_string()).collect()
    }

    async fn cleanup(&self) {
        let root = self.path("");
        let keys: Vec<Path> = self
            .store()
            .list(Some(&root))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .unwrap_or_default();
        for key in keys {
            let _ = self.store().delete(&key).await;
        }
    }
}

fn create() -> PutOptions {
    PutOptions::from(PutMode::Create)
}

/// Deterministic bytes that differ at every offset of interest.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

async fn read_all(store: &dyn ObjectStore, path: &Path) -> Vec<u8> {
    store
        .get(path)
        .await
        .unwrap_or_else(|e| panic!("get {path}: {e}"))
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("read body of {path}: {e}"))
        .to_vec()
}

/// `PutMode::Create` writes a new key, and on an existing key fails with `AlreadyExists`
/// without touching the stored object.
pub async fn put_if_absent(bucket: &Bucket) {
    let s = Scratch::new(bucket, "put-if-absent");
    let key = s.path("segments/0001.seg");
    let first = s
        .store()
        .put_opts(&key, PutPayload::from_static(b"first"), create())
        .await;
    assert!(first.is_ok(), "create of a new key failed: {first:?}");
    let again = s
        .store()
        .put_opts(&key, PutPayload::from_static(b"second"), create())
        .await;
    assert!(
        matches!(again, Err(Error::AlreadyExists { .. })),
        "create of an existing key must fail with AlreadyExists, got {again:?}"
    );
    assert_eq!(read_all(s.store(), &key).await, b"first");
    s.cleanup().await;
}

/// [`RACERS`] concurrent creates of one key: exactly one succeeds, the others fail (with
/// `AlreadyExists`, or a conflict error where S3 reports the race itself), and the object
/// holds the winner's bytes.
pub async fn concurrent_creates(bucket: &Bucket) {
    let s = Scratch::new(bucket, "concurrent-creates");
    let key = s.path("segments/raced.seg");
    let payloads: Vec<Vec<u8>> = (0..RACERS).map(|i| pattern(4096, i as u8)).collect();
    let attempts = payloads.iter().map(|p| {
        let store = bucket.store.clone();
        let key = key.clone();
        let payload = PutPayload::from(p.clone());
        tokio::spawn(async move { store.put_opts(&key, payload, create()).await })
    });
    let results = futures::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result.unwrap_or_else(|e| panic!("racer {i} panicked: {e}")) {
            Ok(_) => winners.push(i),
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) if e.to_string().contains("409") || e.to_string().contains("Conflict") => {}
            Err(e) => panic!("racer {i} failed with an unexpected error: {e}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one create must win, winners: {winners:?}"
    );
    assert_eq!(read_all(s.store(), &key).await, payloads[winners[0]]);
    s.cleanup().await;
}

/// Byte-range reads: inside the object, at its end, several at once, and a whole small object.
pub async fn ranged_reads(bucket: &Bucket) {
    let s = Scratch::new(bucket, "ranged-reads");
    let key = s.path("segments/ranges.seg");
    let data = pattern(100_000, 7);
    s.store()
        .put_opts(&key, PutPayload::from(data.clone()), create())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
    for range in [
        0..1,
        10..20_010,
        99_999..100_000,
        0..100_000,
        65_536..65_537,
    ] {
        let got = s
            .store()
            .get_range(&key, range.start as u64..range.end as u64)
            .await
            .unwrap_or_else(|e| panic!("get_range {range:?}: {e}"));
        assert_eq!(got.as_ref(), &data[range.clone()], "range {range:?}");
    }
    let ranges = [5u64..9, 50_000..50_100, 99_000..100_000];
    let got = s
        .store()
        .get_ranges(&key, &ranges)
        .await
        .unwrap_or_else(|e| panic!("get_ranges: {e}"));
    for (range, bytes) in ranges.iter().zip(got) {
        assert_eq!(
            bytes.as_ref(),
            &data[range.start as usize..range.end as usize]
        );
    }
    let meta = s
        .store()
        .head(&key)
        .await
        .unwrap_or_else(|e| panic!("head: {e}"));
    assert_eq!(meta.size, data.len() as u64);
    s.cleanup().await;
}

/// A ranged read whose end lies past the object returns the bytes up to the end (HTTP
/// `Range` semantics), so a reader of fixed-size blocks needs no object size first.
pub async fn range_past_the_end(bucket: &Bucket) {
    let s = Scratch::new(bucket, "range-past-the-end");
    let key = s.path("segments/short.seg");
    let data = pattern(10_000, 3);
    s.store()
        .put_opts(&key, PutPayload::from(data.clone()), create())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
    for range in [0..4_194_304u64, 8_192..16_384, 9_999..10_000_000] {
        let got = s
            .store()
            .get_range(&key, range.clone())
            .await
            .unwrap_or_else(|e| panic!("get_range {range:?}: {e}"));
        let start = range.start as usize;
        let end = (range.end as usize).min(data.len());
        assert_eq!(got.as_ref(), &data[start..end], "range {range:?}");
    }
    s.cleanup().await;
}

/// Reading, ranging or heading a key that was never written fails with `NotFound`.
pub async fn missing_is_not_found(bucket: &Bucket) {
    let s = Scratch::new(bucket, "missing");
    let key = s.path("segments/never-written.seg");
    let get = s.store().get(&key).await.map(|_| ());
    assert!(matches!(get, Err(Error::NotFound { .. })), "get: {get:?}");
    let range = s.store().get_range(&key, 0..10).await.map(|_| ());
    assert!(
        matches!(range, Err(Error::NotFound { .. })),
        "get_range: {range:?}"
    );
    let head = s.store().head(&key).await.map(|_| ());
    assert!(
        matches!(head, Err(Error::NotFound { .. })),
        "head: {head:?}"
    );
}

/// Listing returns every key under a prefix and nothing outside it, whole path segments
/// only (`a` does not match `ab`), and a delimited listing names the sub-prefixes.
pub async fn list_with_prefix(bucket: &Bucket) {
    let s = Scratch::new(bucket, "list");
    let keys = ["a/1.seg", "a/2.seg", "a/deep/3.seg", "ab/4.seg", "b/5.seg"];
    for key in keys {
        s.store()
            .put_opts(&s.path(key), PutPayload::from_static(b"x"), create())
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
    let expected: BTreeSet<String> = ["a/1.seg", "a/2.seg", "a/deep/3.seg"]
        .iter()
        .map(|k| s.path(k).to_string())
        .collect();
    assert_eq!(s.keys_under("a").await, expected);
    assert_eq!(s.keys_under("").await.len(), keys.len());
    let listed = s
        .store()
        .list_with_delimiter(Some(&s.path("a")))
        .await
        .unwrap_or_else(|e| panic!("list_with_delimiter: {e}"));
    let objects: BTreeSet<String> = listed
        .objects
        .iter()
        .map(|m| m.location.to_string())
        .collect();
    let dirs: Vec<String> = listed
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(objects.len(), 2, "objects directly under a/: {objects:?}");
    assert_eq!(dirs, vec![s.path("a/deep").to_string()]);
    s.cleanup().await;
    assert!(
        s.keys_under("").await.is_empty(),
        "cleanup left keys behind"
    );
}

/// A deleted object is gone from reads and listings; deleting it again (or deleting a key
/// that never existed) succeeds or reports `NotFound`, never another error.
pub async fn delete(bucket: &Bucket) {
    let s = Scratch::new(bucket, "delete");
    let key = s.path("segments/doomed.seg");
    let kept = s.path("segments/kept.seg");
    for k in [&key, &kept] {
        s.store()
            .put_opts(k, PutPayload::from_static(b"x"), create())
            .await
            .unwrap_or_else(|e| panic!("put {k}: {e}"));
    }
    s.store()
        .delete(&key)
        .await
        .unwrap_or_else(|e| panic!("delete {key}: {e}"));
    let head = s.store().head(&key).await.map(|_| ());
    assert!(
        matches!(head, Err(Error::NotFound { .. })),
        "head after delete: {head:?}"
    );
    assert_eq!(
        s.keys_under("segments").await,
        BTreeSet::from([kept.to_string()])
    );
    for k in [&key, &s.path("segments/never.seg")] {
        match s.store().delete(k).await {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => panic!("deleting a missing key {k}: {e}"),
        }
    }
    // a deleted key can be created again (segment keys are unique, but GC'd prefixes are not)
    s.store()
        .put_opts(&key, PutPayload::from_static(b"y"), create())
        .await
        .unwrap_or_else(|e| panic!("create after delete: {e}"));
    s.cleanup().await;
}

/// An object of [`LARGE_OBJECT_BYTES`] goes up in one conditional PUT and reads back whole
/// and by ranges at its start, middle and end.
pub async fn large_object(bucket: &Bucket) {
    let s = Scratch::new(bucket, "large");
    let key = s.path("segments/large.seg");
    let data = pattern(LARGE_OBJECT_BYTES, 42);
    s.store()
        .put_opts(&key, PutPayload::from(data.clone()), create())
        .await
        .unwrap_or_else(|e| panic!("put of {LARGE_OBJECT_BYTES} bytes: {e}"));
    let meta = s
        .store()
        .head(&key)
        .await
        .unwrap_or_else(|e| panic!("head: {e}"));
    assert_eq!(meta.size, LARGE_OBJECT_BYTES as u64);
    let n = LARGE_OBJECT_BYTES;
    for range in [0..4096, n / 2 - 10..n / 2 + 1_000_000, n - 5000..n] {
        let got = s
            .store()
            .get_range(&key, range.start as u64..range.end as u64)
            .await
            .unwrap_or_else(|e| panic!("get_range {range:?}: {e}"));
        assert!(
            got.as_ref() == &data[range.clone()],
            "range {range:?} differs"
        );
    }
    let whole = read_all(s.store(), &key).await;
    assert!(
        whole == data,
        "the whole object differs ({} bytes read)",
        whole.len()
    );
    s.cleanup().await;
}

/// One `#[tokio::test]` per conformance check for one backend.
///
/// `$open` is an async expression giving `Option<Bucket>`; `None` means the backend is not
/// configured here, and the tests pass without running (the opener says so loudly).
///
/// ```ignore
/// strata_storage::conformance_tests!(memory, async {
///     Some(strata_storage::open("memory://", &Default::default()).unwrap())
/// });
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($backend:ident, $open:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;

            async fn bucket() -> Option<$crate::Bucket> {
                $open.await
            }

            $crate::conformance_tests!(@check put_if_absent);
            $crate::conformance_tests!(@check concurrent_creates);
            $crate::conformance_tests!(@check ranged_reads);
            $crate::conformance_tests!(@check range_past_the_end);
            $crate::conformance_tests!(@check missing_is_not_found);
            $crate::conformance_tests!(@check list_with_prefix);
            $crate::conformance_tests!(@check delete);
            $crate::conformance_tests!(@check large_object);
        }
    };
    (@check $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            if let Some(bucket) = bucket().await {
                $crate::conformance::$check(&bucket).await;
            }
        }
    };
}
