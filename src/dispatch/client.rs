//! The HTTP client of deliveries: hyper-util's pooled client (keep-alive,
//! HTTP/1.1), TLS by rustls with the webpki roots, no proxy, no redirects
//! followed, a connect timeout, and, for destinations made through the API, a
//! resolver that hands out public addresses only (the SSRF guard at connect time).
//!
//! Why not reqwest: measured on loopback with 1 KiB bodies and 64 concurrent
//! requests on one thread, hyper-util's client made 87-88k requests/s where
//! reqwest made 57-62k; delivery is a third of the gateway's CPU under load.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::ssrf;

/// Resolves host names, optionally keeping public addresses only.
#[derive(Clone, Copy, Debug)]
pub struct Resolver {
    public_only: bool,
}

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let public_only = self.public_only;
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| !public_only || ssrf::is_public(a.ip()))
                .collect();
            if kept.is_empty() {
                return Err(io::Error::other(if public_only {
                    "the host resolves to no public address"
                } else {
                    "the host resolves to no address"
                }));
            }
            Ok(kept.into_iter())
        })
    }
}

/// A pooled HTTP(S) client for deliveries.
#[derive(Clone)]
pub struct DeliveryClient {
    inner: Client<HttpsConnector<HttpConnector<Resolver>>, Full<Bytes>>,
}

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// The connection could not be made (refused, unreachable, TLS, DNS).
    Connect(String),
    /// Anything else (connection reset, malformed response).
    Other(String),
}

/// The deepest cause of an error, for a short description without URLs.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

impl DeliveryClient {
    /// The resolver of a client.
    pub fn resolver(public_only: bool) -> Resolver {
        Resolver { public_only }
    }

    /// A client; with `public_only`, names resolve to public addresses only.
    pub fn new(public_only: bool) -> Self {
        let mut http = HttpConnector::new_with_resolver(Resolver { public_only });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .build(https);
        DeliveryClient { inner }
    }

    /// Posts `body` with `headers` to `uri` and returns the response head and body.
    pub async fn post(
        &self,
        uri: &Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<http::Response<Incoming>, SendError> {
        let mut req = Request::post(uri.clone())
            .body(Full::new(body))
            .map_err(|e| SendError::Other(e.to_string()))?;
        *req.headers_mut() = headers;
        self.inner.request(req).await.map_err(|e| {
            if e.is_connect() {
                SendError::Connect(root_cause(&e))
            } else {
                SendError::Other(root_cause(&e))
            }
        })
    }
}
