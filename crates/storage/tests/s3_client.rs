//! The S3 client settings in action, against a scripted HTTP server on 127.0.0.1: retries
//! of 5xx/SlowDown with backoff, the retry limit, timeouts of hung requests (retried for
//! reads, not for conditional creates), and the signed CreateBucket request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use strata_storage::{create_bucket, open, BucketCreation, S3Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake server does with one request.
#[derive(Debug, Clone)]
enum Reply {
    /// Answer with this status and XML body.
    Status(u16, &'static str),
    /// Read the request and never answer.
    Hang,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted S3 stand-in: each request takes the next [`Reply`]; with none left it
/// succeeds (PUT: 200 with an ETag; GET: 206 with the bytes `data`).
struct FakeS3 {
    endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeS3 {
    async fn start(script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, log.clone(), script.clone()));
            }
        });
        Self { endpoint, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint.clone()),
            access_key_id: Some("test-key".into()),
            secret_access_key: Some("test-secret".into()),
            path_style: true,
            allow_http: true,
            max_retries: 3,
            backoff_initial: Duration::from_millis(5),
            backoff_max: Duration::from_millis(20),
            request_timeout: Duration::from_millis(500),
            ..S3Options::default()
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
) {
    loop {
        let Some(request) = read_request(&mut stream).await else {
            return;
        };
        let reply = script.lock().expect("lock").pop_front();
        let method = request.method.clone();
        seen.lock().expect("lock").push(request);
        let response = match reply {
            Some(Reply::Hang) => {
                // keep the connection open and silent until the client gives up
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            Some(Reply::Status(status, body)) => format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            None if method == "GET" => "HTTP/1.1 206 Partial Content\r\nContent-Length: 4\r\n\
                 Content-Range: bytes 0-3/4\r\nETag: \"e1\"\r\n\
                 Last-Modified: Thu, 26 Nov 2026 10:00:00 GMT\r\n\r\ndata"
                .to_string(),
            None => "HTTP/1.1 200 OK\r\nETag: \"e1\"\r\nContent-Length: 0\r\n\r\n".to_string(),
        };
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads one HTTP/1.1 request (headers and a Content-Length body); `None` at EOF.
async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(Seen {
        method,
        path,
        headers,
    })
}

const SLOW_DOWN: &str =
    "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";

fn create() -> PutOptions {
    PutOptions::from(PutMode::Create)
}

#[tokio::test]
async fn slow_down_answers_are_retried_until_the_put_succeeds() {
    let server = FakeS3::start(vec![
        Reply::Status(503, SLOW_DOWN),
        Reply::Status(503, SLOW_DOWN),
    ])
    .await;
    let bucket = open("s3://data/p", &server.options()).expect("open");
    let put = bucket
        .store
        .put_opts(
            &bucket.path("segments/a"),
            PutPayload::from_static(b"abc"),
            create(),
        )
        .await;
    assert!(put.is_ok(), "{put:?}");
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "two 503s and the success: {seen:?}");
    assert!(seen
        .iter()
        .all(|s| s.method == "PUT" && s.path == "/data/p/segments/a"));
    assert!(seen.iter().all(|s| s.header("if-none-match") == Some("*")));
}

#[tokio::test]
async fn retries_stop_at_the_limit() {
    let server = FakeS3::start(vec![
        Reply::Status(
            500,
            "<Error><Code>InternalError</Code></Error>"
        );
        10
    ])
    .await;
    let bucket = open("s3://data", &server.options()).expect("open");
    let put = bucket
        .store
        .put_opts(&Path::from("k"), PutPayload::from_static(b"abc"), create())
        .await;
    assert!(put.is_err());
    assert_eq!(
        server.seen().len(),
        4,
        "the first try and max_retries = 3 retries"
    );
}

#[tokio::test]
async fn a_hung_read_times_out_and_is_retried() {
    let server = FakeS3::start(vec![Reply::Hang]).await;
    let bucket = open("s3://data", &server.options()).expect("open");
    let started = std::time::Instant::now();
    let got = bucket
        .store
        .get_range(&Path::from("k"), 0..4)
        .await
        .expect("get_range");
    assert_eq!(got.as_ref(), b"data");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the request timeout was not waited for"
    );
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_hung_conditional_create_is_not_retried() {
    // its outcome is unknown: a retry could meet its own object and report AlreadyExists
    let server = FakeS3::start(vec![Reply::Hang]).await;
    let bucket = open("s3://data", &server.options()).expect("open");
    let put = bucket
        .store
        .put_opts(&Path::from("k"), PutPayload::from_static(b"abc"), create())
        .await;
    assert!(put.is_err());
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn create_bucket_sends_one_signed_put() {
    let server = FakeS3::start(vec![
        Reply::Status(200, ""),
        Reply::Status(409, "<Error><Code>BucketAlreadyOwnedByYou</Code></Error>"),
        Reply::Status(403, "<Error><Code>AccessDenied</Code></Error>"),
    ])
    .await;
    let opts = server.options();
    let created = create_bucket("s3://fresh/prefix", &opts)
        .await
        .expect("create");
    assert_eq!(created, BucketCreation::Created);
    let again = create_bucket("s3://fresh/prefix", &opts)
        .await
        .expect("again");
    assert_eq!(again, BucketCreation::AlreadyExisted);
    let denied = create_bucket("s3://fresh", &opts)
        .await
        .expect_err("denied");
    assert!(denied.to_string().contains("AccessDenied"), "{denied}");

    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    let first = &seen[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("PUT", "/fresh")
    );
    let auth = first.header("authorization").unwrap_or_default();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=test-key/")
            && auth.contains("/us-east-1/s3/aws4_request"),
        "{auth}"
    );
    assert!(first.header("x-amz-date").is_some());
    assert!(first.header("x-amz-content-sha256").is_some());
}
