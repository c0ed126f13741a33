//! The storage conformance suite on every backend.
//!
//! Local ones always run. S3 emulators run when their settings are in the environment
//! (`scripts/seaweedfs.sh start DIR` and `scripts/localstack.sh start DIR` print them):
//!
//! | variable | meaning |
//! | --- | --- |
//! | `STRATA_TEST_S3_<NAME>_ENDPOINT` | e.g. `http://127.0.0.1:8333`; unset = backend not configured |
//! | `STRATA_TEST_S3_<NAME>_BUCKET` | an existing bucket (default `strata-test`) |
//! | `STRATA_TEST_S3_<NAME>_ACCESS_KEY_ID`, `..._SECRET_ACCESS_KEY` | static keys |
//! | `STRATA_TEST_S3_<NAME>_REGION` | default `us-east-1` |
//!
//! with `<NAME>` = `SEAWEEDFS` or `LOCALSTACK`. An unconfigured backend is skipped with a
//! loud note on stderr, unless `STRATA_REQUIRE_S3=1`, which turns the skip into a failure.

use std::io::Write;
use std::sync::{Arc, Once};

use strata_storage::{
    create_bucket, open, Bucket, BucketCreation, FaultyStore, LimitedStore, S3Options,
};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The bucket of an S3 emulator named by `STRATA_TEST_S3_<name>_*`, or `None` (skip).
async fn s3_backend(name: &str, once: &'static Once) -> Option<Bucket> {
    let (url, opts) = s3_settings(name, once)?;
    Some(open(&url, &opts).unwrap_or_else(|e| panic!("open {url}: {e}")))
}

/// The bucket URL and options of an S3 emulator, or `None` (skip).
fn s3_settings(name: &str, once: &'static Once) -> Option<(String, S3Options)> {
    let var = |suffix: &str| env(&format!("STRATA_TEST_S3_{name}_{suffix}"));
    let Some(endpoint) = var("ENDPOINT") else {
        let required = env("STRATA_REQUIRE_S3").is_some_and(|v| v == "1");
        assert!(
            !required,
            "STRATA_REQUIRE_S3=1 but STRATA_TEST_S3_{name}_ENDPOINT is not set"
        );
        once.call_once(|| {
            // straight to stderr, past the test harness's capture, so the skip is seen
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: storage conformance on {name}: STRATA_TEST_S3_{name}_ENDPOINT \
                 is not set (see scripts/{}.sh) ***",
                name.to_ascii_lowercase()
            );
        });
        return None;
    };
    let bucket = var("BUCKET").unwrap_or_else(|| "strata-test".into());
    let opts = S3Options {
        allow_http: endpoint.starts_with("http://"),
        endpoint: Some(endpoint),
        region: var("REGION"),
        access_key_id: var("ACCESS_KEY_ID"),
        secret_access_key: var("SECRET_ACCESS_KEY"),
        path_style: true,
        ..S3Options::default()
    };
    Some((format!("s3://{bucket}/strata-conformance"), opts))
}

/// `create_bucket` makes a new bucket, and a second call succeeds too.
async fn create_bucket_twice(name: &str, once: &'static Once) {
    let Some((_, opts)) = s3_settings(name, once) else {
        return;
    };
    let url = format!("s3://strata-create-{}/x", uuid::Uuid::new_v4().simple());
    let first = create_bucket(&url, &opts).await;
    assert_eq!(
        first.unwrap_or_else(|e| panic!("{e}")),
        BucketCreation::Created
    );
    // S3 in us-east-1 (and LocalStack) answers 200 again to the owner; others say 409
    let again = create_bucket(&url, &opts).await;
    assert_ne!(
        again.unwrap_or_else(|e| panic!("{e}")),
        BucketCreation::NotS3
    );
    // the new bucket takes conditional writes like the test bucket
    let bucket = open(&url, &opts).unwrap_or_else(|e| panic!("open {url}: {e}"));
    strata_storage::conformance::put_if_absent(&bucket).await;
}

fn local_dir() -> Bucket {
    // the checks delete what they write, and the store removes emptied directories
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("conformance-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("file://{}", dir.display());
    open(&url, &S3Options::default()).expect("open local bucket")
}

strata_storage::conformance_tests!(local_directory, async { Some(local_dir()) });

strata_storage::conformance_tests!(memory, async {
    Some(open("memory://", &S3Options::default()).expect("memory bucket"))
});

// the wrappers Strata puts around S3 must not change what a store does
strata_storage::conformance_tests!(wrapped_local_directory, async {
    let bucket = local_dir();
    let faulty = Arc::new(FaultyStore::new(bucket.store));
    Some(Bucket {
        store: Arc::new(LimitedStore::new(faulty, 2, 3)),
        prefix: "wrapped".into(),
    })
});

static SEAWEEDFS: Once = Once::new();
strata_storage::conformance_tests!(seaweedfs, s3_backend("SEAWEEDFS", &SEAWEEDFS));

#[tokio::test]
async fn seaweedfs_create_bucket() {
    create_bucket_twice("SEAWEEDFS", &SEAWEEDFS).await;
}

static LOCALSTACK: Once = Once::new();
strata_storage::conformance_tests!(localstack, s3_backend("LOCALSTACK", &LOCALSTACK));

#[tokio::test]
async fn localstack_create_bucket() {
    create_bucket_twice("LOCALSTACK", &LOCALSTACK).await;
}
