//! The HTTP endpoint of a service: `/metrics`, `/healthz`, `/readyz`.
//!
//! Read-only and unauthenticated, so it only needs to be safe: few connections, short
//! header timeouts and a bounded connection life keep a hostile client from holding it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;

/// Says whether a service can do its work right now (e.g. its metadata service answers).
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
struct Endpoint {
    registry: Arc<Registry>,
    ready: Readiness,
}

async fn metrics(State(endpoint): State<Endpoint>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &endpoint.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot encode metrics: {error}\n"),
        ),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(endpoint): State<Endpoint>) -> (StatusCode, &'static str) {
    if (endpoint.ready)() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Limits of the HTTP endpoint.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Most connections served at once; more are closed as they arrive (scrapers and health
    /// checks need a handful).
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// Longest life of one connection, however busy: slow or idle clients are cut off.
    pub connection_lifetime: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(60),
        }
    }
}

/// Binds `addr` and serves the three endpoints until `shutdown` resolves. Returns the bound
/// address once listening, and the server task.
///
/// The endpoint keeps to [`HttpLimits::default`]; refusals and cut-offs are counted in
/// `strata_http_connections_limited_total{limit}` of `registry`.
pub async fn serve_http(
    addr: SocketAddr,
    registry: Registry,
    ready: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_http_within(addr, registry, ready, HttpLimits::default(), shutdown).await
}

/// [`serve_http`] with other limits.
pub async fn serve_http_within(
    addr: SocketAddr,
    mut registry: Registry,
    ready: Readiness,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let limited = Family::<HttpLimit, Counter>::default();
    registry.register(
        "strata_http_connections_limited",
        "HTTP connections refused or cut off by a limit, by limit",
        limited.clone(),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Endpoint {
            registry: Arc::new(registry),
            ready,
        });
    let task = tokio::spawn(accept(listener, app, limits, limited, shutdown));
    Ok((bound, task))
}

/// Label of the HTTP limit counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLimit {
    /// `max_connections` or `lifetime`.
    limit: &'static str,
}

async fn accept(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    limited: Family<HttpLimit, Counter>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = tokio_util::task::TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(%error, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            limited
                .get_or_create(&HttpLimit {
                    limit: "max_connections",
                })
                .inc();
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let limited = limited.clone();
        connections.spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if tokio::time::timeout(limits.connection_lifetime, connection)
                .await
                .is_err()
            {
                limited
                    .get_or_create(&HttpLimit { limit: "lifetime" })
                    .inc();
            }
            drop(slot);
        });
    }
    connections.close();
    // a scrape in progress may finish; nothing waits longer than a connection may live
    let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: HttpLimits) -> SocketAddr {
        let ready: Readiness = Arc::new(|| true);
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let (bound, _task) = serve_http_within(
            addr,
            Registry::default(),
            ready,
            limits,
            std::future::pending(),
        )
        .await
        .unwrap();
        bound
    }

    async fn closed(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 256];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_and_places_come_back() {
        let addr = start(HttpLimits {
            max_connections: 3,
            ..HttpLimits::default()
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        // let the server take the three before the fourth arrives
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut extra = TcpStream::connect(addr).await.unwrap();
        assert!(closed(&mut extra).await, "a fourth connection was served");
        held.clear();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(
            metrics.contains("strata_http_connections_limited_total{limit=\"max_connections\"} 1"),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn silent_and_long_lived_connections_are_cut_off() {
        let addr = start(HttpLimits {
            max_connections: 8,
            header_timeout: Duration::from_millis(200),
            connection_lifetime: Duration::from_millis(600),
        })
        .await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        silent
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        assert!(closed(&mut silent).await, "half a header was waited for");
        assert!(get(addr, "/healthz").await.contains("ok"));
    }
}
