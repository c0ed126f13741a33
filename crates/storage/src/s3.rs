//! `s3://` buckets: client settings, credentials, retries, and bucket creation for emulators.
//!
//! Everything here goes through object_store's Amazon S3 client. Settings not given in
//! [`S3Options`] come from the standard AWS environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT`, ...), and
//! without static keys the client falls back to object_store's credential chain: web
//! identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, as on EKS), the ECS task role
//! (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`), then the EC2 instance role (IMDSv2).
//!
//! Retries: object_store retries 5xx answers (SlowDown and InternalError included), 429,
//! 408 and connection failures with exponential backoff and decorrelated jitter, up to
//! `max_retries` times and `retry_timeout` in total. A request that timed out is retried
//! only when it is safe to repeat (GET, HEAD, overwriting PUT); a conditional create
//! (`PutMode::Create`) that timed out is not, because its outcome is unknown: the caller
//! gets the error, and the object, if it was written, is garbage for the GC.
//!
//! Creating a bucket is the one operation object_store lacks. [`create_bucket`] sends a
//! single `PUT /bucket` signed by object_store's own SigV4 signer ([`AwsAuthorizer`]) with
//! the credentials of the configured client, over object_store's HTTP client, so it adds
//! no dependency and no signing code of Strata's own.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{
    AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer, AwsCredential,
};
use object_store::client::{HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::{
    BackoffConfig, ClientConfigKey, ClientOptions, RetryConfig, StaticCredentialProvider,
};

use crate::StorageError;

/// Settings that only apply to `s3://` URLs; unset fields fall back to the AWS environment.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Custom endpoint, e.g. `http://127.0.0.1:8333` for a local emulator.
    pub endpoint: Option<String>,
    /// Region; defaults to `us-east-1` when an endpoint is set.
    pub region: Option<String>,
    /// Static access key id (used only together with `secret_access_key`).
    pub access_key_id: Option<String>,
    /// Static secret key.
    pub secret_access_key: Option<String>,
    /// Session token that goes with static keys.
    pub session_token: Option<String>,
    /// Use path-style addressing (needed by most emulators).
    pub path_style: bool,
    /// Allow plain HTTP endpoints.
    pub allow_http: bool,
    /// Longest time one HTTP request may take, body included.
    pub request_timeout: Duration,
    /// Longest time to open a connection.
    pub connect_timeout: Duration,
    /// Retries of one request after a 5xx, throttling or connection error; 0 disables.
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt.
    pub retry_timeout: Duration,
    /// First backoff between retries; later ones grow (with jitter) up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest backoff between retries.
    pub backoff_max: Duration,
    /// Writes (uploads, deletes, copies) in flight at once; more wait for a slot.
    pub max_inflight_writes: usize,
    /// Reads (ranged GETs, HEADs, lists) in flight at once; more wait for a slot.
    pub max_inflight_reads: usize,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            path_style: false,
            allow_http: false,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 10,
            retry_timeout: Duration::from_secs(60),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_inflight_writes: 16,
            max_inflight_reads: 64,
        }
    }
}

impl S3Options {
    /// The region requests are signed for.
    fn signing_region(&self, builder: &AmazonS3Builder) -> String {
        self.region
            .clone()
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Region))
            .unwrap_or_else(|| "us-east-1".to_string())
    }
}

/// What [`create_bucket`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketCreation {
    /// The server created the bucket. S3 in us-east-1 (and LocalStack) also answers this
    /// way when the caller already owns the bucket.
    Created,
    /// The bucket already existed.
    AlreadyExisted,
    /// The URL is not `s3://`; nothing to create (local directories are created on open).
    NotS3,
}

/// A configured S3 client for `bucket`, without Strata's wrappers.
pub(crate) fn build(bucket: &str, s3: &S3Options) -> Result<AmazonS3, StorageError> {
    Ok(builder(bucket, s3)?.build()?)
}

fn builder(bucket: &str, s3: &S3Options) -> Result<AmazonS3Builder, StorageError> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(endpoint) = &s3.endpoint {
        builder = builder.with_endpoint(endpoint);
        if s3.region.is_none()
            && builder
                .get_config_value(&AmazonS3ConfigKey::Region)
                .is_none()
        {
            builder = builder.with_region("us-east-1");
        }
    }
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    }
    match (&s3.access_key_id, &s3.secret_access_key) {
        (Some(id), Some(secret)) => {
            // an explicit provider, so that a session token in the environment is not
            // paired with keys it does not belong to
            let credential = AwsCredential {
                key_id: id.clone(),
                secret_key: secret.clone(),
                token: s3.session_token.clone(),
            };
            builder = builder.with_credentials(Arc::new(StaticCredentialProvider::new(credential)));
        }
        (None, None) => {}
        _ => {
            return Err(StorageError::S3Config(
                "an S3 access key id needs its secret access key, and the other way round".into(),
            ))
        }
    }
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: s3.backoff_initial,
            max_backoff: s3.backoff_max.max(s3.backoff_initial),
            base: 2.0,
        },
        max_retries: s3.max_retries,
        retry_timeout: s3.retry_timeout,
    };
    let millis = |d: Duration| format!("{}ms", d.as_millis().max(1));
    builder = builder
        .with_virtual_hosted_style_request(!s3.path_style)
        .with_retry(retry)
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
            millis(s3.request_timeout),
        )
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            millis(s3.connect_timeout),
        );
    if s3.allow_http {
        builder = builder.with_allow_http(true);
    }
    Ok(builder)
}

/// Creates the bucket of an `s3://` URL on an S3-compatible server, for local emulators
/// (LocalStack, MinIO, SeaweedFS). Idempotent: an existing bucket owned by these
/// credentials is fine. Needs `endpoint`; buckets on AWS are made with Terraform.
pub async fn create_bucket(url: &str, s3: &S3Options) -> Result<BucketCreation, StorageError> {
    let parsed = crate::parse_url(url)?;
    if parsed.scheme() != "s3" {
        return Ok(BucketCreation::NotS3);
    }
    let bucket = crate::s3_bucket_name(url, &parsed)?;
    let fail = |reason: String| StorageError::CreateBucket {
        bucket: bucket.to_string(),
        reason,
    };
    let builder = builder(bucket, s3)?;
    let Some(endpoint) = builder.get_config_value(&AmazonS3ConfigKey::Endpoint) else {
        return Err(fail(
            "creating buckets is for local emulators and needs an S3 endpoint; \
             on AWS create the bucket with Terraform"
                .into(),
        ));
    };
    let allow_http = builder
        .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
        .is_some_and(|v| v == "true");
    let region = s3.signing_region(&builder);
    let store = builder.build()?;
    let credential = store
        .credentials()
        .get_credential()
        .await
        .map_err(|e| fail(format!("no credentials: {e}")))?;
    // with virtual-hosted addressing, object_store expects the endpoint to name the bucket
    let bucket_url = if s3.path_style {
        format!("{}/{bucket}", endpoint.trim_end_matches('/'))
    } else {
        endpoint.trim_end_matches('/').to_string()
    };
    let body = if region == "us-east-1" {
        HttpRequestBody::empty()
    } else {
        HttpRequestBody::from(format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
        ))
    };
    let mut request = http::Request::builder()
        .method(http::Method::PUT)
        .uri(&bucket_url)
        .body(body)
        .map_err(|e| fail(format!("invalid endpoint {endpoint:?}: {e}")))?;
    AwsAuthorizer::new(&credential, "s3", &region).authorize(&mut request, None);
    let options = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_timeout(s3.request_timeout)
        .with_connect_timeout(s3.connect_timeout);
    let client = ReqwestConnector::default().connect(&options)?;
    let response = client
        .execute(request)
        .await
        .map_err(|e| fail(format!("PUT {bucket_url}: {e}")))?;
    let status = response.status();
    if status.is_success() {
        tracing::info!(%bucket, endpoint = %endpoint, "bucket created");
        return Ok(BucketCreation::Created);
    }
    let text = match response.into_body().bytes().await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("<unreadable body: {e}>"),
    };
    // MinIO and LocalStack say BucketAlreadyOwnedByYou; SeaweedFS says BucketAlreadyExists
    // even to the bucket's owner, so both count as "it is there"; a bucket that is really
    // someone else's then fails at the first write with an access error
    if status == http::StatusCode::CONFLICT
        && (text.contains("BucketAlreadyOwnedByYou") || text.contains("BucketAlreadyExists"))
    {
        tracing::info!(%bucket, endpoint = %endpoint, "bucket already exists");
        return Ok(BucketCreation::AlreadyExisted);
    }
    Err(fail(format!(
        "PUT {bucket_url} answered {status}: {}",
        text.trim()
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_bound_every_wait() {
        let o = S3Options::default();
        assert!(o.request_timeout > Duration::ZERO && o.connect_timeout > Duration::ZERO);
        assert!(o.retry_timeout >= o.request_timeout);
        assert!(o.backoff_max >= o.backoff_initial);
        assert!(o.max_inflight_writes > 0 && o.max_inflight_reads > 0);
    }

    #[test]
    fn settings_reach_the_builder() {
        let opts = S3Options {
            endpoint: Some("http://127.0.0.1:1".into()),
            path_style: true,
            allow_http: true,
            request_timeout: Duration::from_millis(1500),
            connect_timeout: Duration::from_secs(2),
            ..S3Options::default()
        };
        let b = builder("data", &opts).unwrap();
        let get = |k: AmazonS3ConfigKey| b.get_config_value(&k);
        assert_eq!(
            get(AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(
            get(AmazonS3ConfigKey::VirtualHostedStyleRequest).as_deref(),
            Some("false")
        );
        assert_eq!(
            get(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout)).as_deref(),
            Some("1500ms")
        );
        assert_eq!(
            get(AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout)).as_deref(),
            Some("2000ms")
        );
        assert_eq!(
            get(AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp)).as_deref(),
            Some("true")
        );
        assert_eq!(opts.signing_region(&b), "us-east-1");
    }

    #[test]
    fn half_a_key_pair_is_refused() {
        let opts = S3Options {
            access_key_id: Some("id".into()),
            ..S3Options::default()
        };
        assert!(matches!(
            builder("data", &opts),
            Err(StorageError::S3Config(_))
        ));
    }

    #[tokio::test]
    async fn creating_a_bucket_needs_an_endpoint() {
        let opts = S3Options {
            access_key_id: Some("id".into()),
            secret_access_key: Some("secret".into()),
            region: Some("eu-west-1".into()),
            ..S3Options::default()
        };
        let err = create_bucket("s3://data/x", &opts).await.unwrap_err();
        assert!(err.to_string().contains("needs an S3 endpoint"), "{err}");
        let none = create_bucket("memory://", &opts).await.unwrap();
        assert_eq!(none, BucketCreation::NotS3);
    }
}
