//! The floor for any proxy on this machine: a forwarder that does nothing but pass each
//! request to the upstream and the answer back (axum server, hyper-util pooled client, the
//! same stack custos uses). Measuring it beside custos separates the cost of the extra hop
//! from the cost of custos' controls.
//!
//! Usage: bench-forwarder [LISTEN] [UPSTREAM]   (default 127.0.0.1:9300 → 127.0.0.1:9100)

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use std::sync::Arc;

struct Forward {
    client: Client<HttpConnector, Body>,
    upstream: String,
}

async fn forward(State(f): State<Arc<Forward>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 4 << 20).await else {
        return http::StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let uri = format!("http://{}{}", f.upstream, parts.uri.path());
    let mut up = http::Request::post(uri);
    if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
        up = up.header(http::header::CONTENT_TYPE, ct);
    }
    let Ok(up) = up.body(Body::from(bytes)) else {
        return http::StatusCode::BAD_REQUEST.into_response();
    };
    match f.client.request(up).await {
        Ok(r) => {
            let (parts, body) = r.into_parts();
            match body.collect().await {
                Ok(b) => Response::from_parts(parts, Body::from(b.to_bytes())),
                Err(_) => http::StatusCode::BAD_GATEWAY.into_response(),
            }
        }
        Err(_) => http::StatusCode::BAD_GATEWAY.into_response(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:9300".into());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:9100".into());
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(http);
    let app = Router::new()
        .fallback(forward)
        .with_state(Arc::new(Forward { client, upstream }));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("bench-forwarder listening on http://{listen}");
    axum::serve(listener, app).await
}
