//! The bucket, chosen by URL.
//!
//! Every component reaches object storage through an `Arc<dyn ObjectStore>` built here, so
//! retries, concurrency limits and fault injection are wrapper stores, not `if`s in the core.
//!
//! | URL | store |
//! | --- | --- |
//! | `file:///abs/path` | a local directory (created if missing) |
//! | `memory://` | in-process memory, for tests |
//! | `s3://bucket/prefix` | S3 or an S3-compatible server; see [`S3Options`] and the [`s3`] module |
//!
//! An `s3://` bucket is object_store's S3 client (timeouts, retries with backoff and jitter)
//! inside a [`LimitedStore`] (separate in-flight budgets for writes and reads).
//! [`FaultyStore`] injects failures and stalls for tests, [`CountingStore`] counts the reads
//! a component makes, and [`conformance`] is the one suite every backend must pass.
//!
//! ```
//! let bucket = strata_storage::open("memory://", &strata_storage::S3Options::default()).unwrap();
//! assert_eq!(bucket.prefix.as_ref(), "");
//! ```

pub mod conformance;
pub mod counting;
pub mod faulty;
pub mod limit;
pub mod s3;

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;
use thiserror::Error;
use url::Url;

pub use counting::CountingStore;
pub use faulty::{FaultyStore, InjectedFault, Op};
pub use limit::LimitedStore;
pub use s3::{create_bucket, BucketCreation, S3Options};

/// Why a bucket could not be opened.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The URL does not parse or names an unknown scheme.
    #[error("invalid bucket URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A local directory could not be created.
    #[error("cannot use directory {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The object store rejected its configuration.
    #[error("object store configuration: {0}")]
    Config(#[from] object_store::Error),
    /// The S3 settings contradict each other.
    #[error("S3 configuration: {0}")]
    S3Config(String),
    /// `create_bucket` failed; nothing else was attempted.
    #[error("cannot create bucket {bucket:?}: {reason}")]
    CreateBucket {
        /// The bucket name.
        bucket: String,
        /// The server's answer or the transport error.
        reason: String,
    },
}

/// An opened bucket: the store and the key prefix under which Strata writes.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// The object store.
    pub store: Arc<dyn ObjectStore>,
    /// Prefix prepended to every key Strata writes.
    pub prefix: Path,
}

impl Bucket {
    /// The full path of `key` under the bucket's prefix.
    pub fn path(&self, key: &str) -> Path {
        if self.prefix.as_ref().is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{}", self.prefix, key))
        }
    }
}

pub(crate) fn parse_url(url: &str) -> Result<Url, StorageError> {
    Url::parse(url).map_err(|e| StorageError::InvalidUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn s3_bucket_name<'u>(url: &str, parsed: &'u Url) -> Result<&'u str, StorageError> {
    parsed
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| StorageError::InvalidUrl {
            url: url.to_string(),
            reason: "s3 URLs name a bucket: s3://bucket/prefix".into(),
        })
}

/// Opens the bucket named by `url`. It does not create an S3 bucket; see [`create_bucket`].
pub fn open(url: &str, s3: &S3Options) -> Result<Bucket, StorageError> {
    let invalid = |reason: String| StorageError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    let parsed = parse_url(url)?;
    match parsed.scheme() {
        "memory" => Ok(Bucket {
            store: Arc::new(InMemory::new()),
            prefix: Path::default(),
        }),
        "file" => {
            let dir = parsed
                .to_file_path()
                .map_err(|()| invalid("file URLs need an absolute path".into()))?;
            std::fs::create_dir_all(&dir).map_err(|source| StorageError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
            let store = LocalFileSystem::new_with_prefix(&dir)?.with_automatic_cleanup(true);
            Ok(Bucket {
                store: Arc::new(store),
                prefix: Path::default(),
            })
        }
        "s3" => {
            let bucket = s3_bucket_name(url, &parsed)?;
            let client: Arc<dyn ObjectStore> = Arc::new(s3::build(bucket, s3)?);
            let store = LimitedStore::new(client, s3.max_inflight_writes, s3.max_inflight_reads);
            Ok(Bucket {
                store: Arc::new(store),
                prefix: Path::from(parsed.path().trim_matches('/')),
            })
        }
        other => Err(invalid(format!(
            "unknown scheme {other:?}; use file://, memory:// or s3://"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use object_store::{PutMode, PutOptions, PutPayload};

    #[tokio::test]
    async fn file_bucket_refuses_to_overwrite_with_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("bucket").display());
        let bucket = open(&url, &S3Options::default()).unwrap();
        let key = bucket.path("segments/a");
        let create = PutOptions::from(PutMode::Create);
        bucket
            .store
            .put_opts(&key, PutPayload::from_static(b"one"), create.clone())
            .await
            .unwrap();
        let again = bucket
            .store
            .put_opts(&key, PutPayload::from_static(b"two"), create)
            .await;
        assert!(matches!(
            again,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        let range = bucket.store.get_range(&key, 1..3).await.unwrap();
        assert_eq!(range.as_ref(), b"ne");
    }

    #[test]
    fn rejects_unknown_schemes_and_relative_paths() {
        let opts = S3Options::default();
        assert!(matches!(
            open("ftp://x", &opts),
            Err(StorageError::InvalidUrl { .. })
        ));
        assert!(matches!(
            open("not a url", &opts),
            Err(StorageError::InvalidUrl { .. })
        ));
        assert!(matches!(
            open("s3:///prefix", &opts),
            Err(StorageError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn s3_prefix_is_taken_from_the_path() {
        let opts = S3Options {
            endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("a".into()),
            secret_access_key: Some("b".into()),
            path_style: true,
            allow_http: true,
            ..Default::default()
        };
        let bucket = open("s3://data/strata/dev", &opts).unwrap();
        assert_eq!(bucket.path("k").as_ref(), "strata/dev/k");
    }
}
