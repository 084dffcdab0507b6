//! Criterion benchmarks of the gateway's hot path: each control's core in isolation, and a
//! whole request through the layer stack in process (mock provider, no sockets), which is the
//! time custos itself adds to a call.

use axum::body::Body;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use custos_authz::api_key::mint_from;
use custos_authz::{KeyIndex, KeyRecord};
use custos_core::principal::{AuthMethod, ModelScope, Principal};
use custos_gateway::call::{parse_body, Endpoint};
use custos_gateway::quota::Quotas;
use custos_gateway::sse::UsageScanner;
use http::Request;
use std::sync::Arc;

mod common;
use common::{build, build_with, send, CHAT};

fn principal(rpm: Option<u32>, tpm: Option<u32>) -> Arc<Principal> {
    Arc::new(Principal {
        id: "key_bench".into(),
        method: AuthMethod::ApiKey,
        tenant_id: "ten".into(),
        tenant: "acme".into(),
        team_id: "team".into(),
        team: "ml".into(),
        app_id: "app".into(),
        app: "bot".into(),
        env: "prod".into(),
        models: ModelScope::Any,
        rpm,
        tpm,
        team_rpm: None,
        team_tpm: None,
        ..Principal::default()
    })
}

fn controls(c: &mut Criterion) {
    let keys: Vec<_> = (0..10_000u32)
        .map(|i| {
            let mut r = [0u8; 32];
            r[..4].copy_from_slice(&i.to_le_bytes());
            mint_from(r)
        })
        .collect();
    let index = KeyIndex::new(keys.iter().map(|k| KeyRecord {
        id: "key".into(),
        digest: k.digest,
        principal: principal(None, None),
        expires_at_ms: None,
        revoked_at_ms: None,
    }));
    let presented = keys[5_000].secret.clone();
    c.bench_function("authn/check_key_10k_index", |b| {
        b.iter(|| index.check(&presented, 0))
    });

    c.bench_function("call/parse_chat_body", |b| {
        b.iter(|| parse_body(Endpoint::ChatCompletions, CHAT.as_bytes()).map(|r| r.1.len()))
    });
    custos_gateway::tokens::warm_up(["gpt-4o-mini"]);
    let (body, ..) = parse_body(Endpoint::ChatCompletions, CHAT.as_bytes()).unwrap();
    c.bench_function("call/count_prompt_tokens", |b| {
        b.iter(|| custos_gateway::tokens::chat_prompt(&body).count("gpt-4o-mini"))
    });

    let quotas = Arc::new(Quotas::default());
    let p = principal(Some(u32::MAX), Some(u32::MAX));
    c.bench_function("quota/admit_rpm_and_tpm", |b| {
        b.iter(|| {
            quotas
                .admit(&p, 30)
                .ok()
                .flatten()
                .map(|g| g.standings.len())
        })
    });

    let event = b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" word\"},\"finish_reason\":null}],\"usage\":null}\n\n";
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(event.len() as u64));
    g.bench_function("scan_chunk", |b| {
        let mut s = UsageScanner::new(true);
        b.iter(|| s.feed(event).len())
    });
    g.finish();
}

fn whole_request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The gateways stay alive for the whole run: their refreshers feed the routers.
    let (gateway, key) = rt.block_on(build(dir.path(), false));
    let router = gateway.router();
    let priced_dir = tempfile::tempdir().unwrap();
    let (priced_gateway, priced_key) = rt.block_on(build(priced_dir.path(), true));
    let priced_router = priced_gateway.router();
    let request = |key: &str, idem: Option<String>| {
        let mut b = Request::post("/v1/chat/completions")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json");
        if let Some(i) = idem {
            b = b.header("idempotency-key", i);
        }
        b.body(Body::from(CHAT)).unwrap()
    };
    let mut g = c.benchmark_group("pipeline");
    g.bench_function("chat_completion_mock_all_layers", |b| {
        b.to_async_tokio(&rt, || request(&key, None), |req| send(router.clone(), req))
    });
    // The same call priced and charged to three budgets (tenant, team, tag): the difference
    // is what the budget layer and pricing in the meter add.
    g.bench_function("chat_completion_mock_priced_three_budgets", |b| {
        b.to_async_tokio(
            &rt,
            || {
                let mut r = request(&priced_key, None);
                r.headers_mut().insert(
                    "x-custos-tags",
                    http::HeaderValue::from_static("Project=atlas"),
                );
                r
            },
            |req| send(priced_router.clone(), req),
        )
    });
    let mut n = 0u64;
    g.bench_function("chat_completion_mock_with_idempotency_key", |b| {
        b.to_async_tokio(
            &rt,
            || {
                n += 1;
                request(&key, Some(format!("bench-{n}")))
            },
            |req| send(router.clone(), req),
        )
    });
    // Last, because once a tracer runs every gateway in the process looks for a trace: the
    // same call with its trace (15 spans) exported to an OTLP receiver on loopback, which
    // takes each batch and answers 200. The difference is what tracing every call costs.
    let spans = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = spans.clone();
    let receiver = rt.block_on(async move {
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    seen.fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    http::StatusCode::OK
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        addr
    });
    let traced_dir = tempfile::tempdir().unwrap();
    let (traced_gateway, traced_key) = rt.block_on(build_with(
        traced_dir.path(),
        false,
        Some(format!("http://{receiver}")),
    ));
    let traced_router = traced_gateway.router();
    g.bench_function("chat_completion_mock_traced_otlp", |b| {
        b.to_async_tokio(
            &rt,
            || request(&traced_key, None),
            |req| send(traced_router.clone(), req),
        )
    });
    g.finish();
    // The receiver got the spans: the measurement included exporting them.
    rt.block_on(async { tokio::time::sleep(std::time::Duration::from_secs(1)).await });
    assert!(spans.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

/// `iter_batched` over a runtime, without criterion's async feature.
trait AsyncBench {
    fn to_async_tokio<I, S, F, Fut>(&mut self, rt: &tokio::runtime::Runtime, setup: S, f: F)
    where
        S: FnMut() -> I,
        F: FnMut(I) -> Fut,
        Fut: std::future::Future<Output = usize>;
}

impl AsyncBench for criterion::Bencher<'_> {
    fn to_async_tokio<I, S, F, Fut>(&mut self, rt: &tokio::runtime::Runtime, setup: S, mut f: F)
    where
        S: FnMut() -> I,
        F: FnMut(I) -> Fut,
        Fut: std::future::Future<Output = usize>,
    {
        self.iter_batched(setup, |input| rt.block_on(f(input)), BatchSize::SmallInput)
    }
}

criterion_group!(benches, controls, whole_request);
criterion_main!(benches);
