//! A minimal upstream for benchmarks: answers `POST /v1/chat/completions` with a fixed chat
//! completion (or a fixed SSE stream when the body asks to stream), as fast as it can.
//!
//! Usage: bench-upstream [ADDR] [WORKER_THREADS]   (default 127.0.0.1:9100, 1 thread)

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use axum::Router;

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Rate limits protect shared capacity and keep costs predictable."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":11,"total_tokens":42}}"#;

const EVENTS: &[&str] = &[
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Rate limits help.\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":31,\"completion_tokens\":4,\"total_tokens\":35}}\n\n",
    "data: [DONE]\n\n",
];

async fn chat(body: Bytes) -> Response {
    let stream = body.windows(13).any(|w| w == b"\"stream\":true");
    if stream {
        let chunks = futures_util::stream::iter(
            EVENTS
                .iter()
                .map(|e| Ok::<_, std::io::Error>(Bytes::from_static(e.as_bytes()))),
        );
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(chunks))
            .unwrap_or_default()
    } else {
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(COMPLETION))
            .unwrap_or_default()
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9100".into());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let app = Router::new().route("/v1/chat/completions", post(chat));
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("bench-upstream listening on http://{addr}");
        axum::serve(listener, app).await
    })
}
