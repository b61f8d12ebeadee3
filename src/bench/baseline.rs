//! The baseline: a bare hyper HTTP/1.1 server that reads each request's body and
//! answers 200 with an empty body. It is the ceiling the gateway is compared
//! with, measured in the same run under the same load.
//!
//! Also the accept loop the sink shares ([`serve`]).

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves HTTP/1.1 keep-alive connections with `handle` until the task is
/// aborted. Accept errors (out of file descriptors) pause briefly instead of
/// ending the server.
pub async fn serve<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let fut = handle(req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Reads the body (as any real server must) and answers 200.
pub async fn answer(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let _ = req.into_body().collect().await;
    Response::new(Full::new(Bytes::new()))
}

/// Runs the baseline server on `listener` until the task is aborted.
pub async fn run(listener: TcpListener) {
    serve(listener, answer).await
}
