//! What the audit layer adds to a call's latency, percentile by percentile: one gateway (a
//! fresh SQLite file, one key, the mock provider, no sockets) served through its normal
//! router and through the same stack without the audit layer, in alternating rounds so that
//! drift and the growing ledger weigh on both alike. Each latency is one request, sent and
//! its body read to the end (the event is handed to the writer when the body ends, waiting
//! for room in the writer's channel if it is full).
//!
//! `cargo bench -p custos-gateway --features bench-internals --bench audit_overhead`
//! Environment: `CUSTOS_BENCH_ROUNDS` (default 20) rounds of `CUSTOS_BENCH_PER_ROUND`
//! (default 1,000) requests per variant, stopping early after 180 s; `CUSTOS_BENCH_ONLY=on`
//! or `off` runs one variant alone, for a profiler.

mod common;

// The allocator the custos binary uses: glibc's malloc was a sixth of this benchmark's profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn main() {
    let rounds = env_or("CUSTOS_BENCH_ROUNDS", 20);
    let per_round = env_or("CUSTOS_BENCH_PER_ROUND", 1_000);
    let deadline = Instant::now() + Duration::from_secs(180);
    let only = match std::env::var("CUSTOS_BENCH_ONLY").as_deref() {
        Ok("on") => Some(0),
        Ok("off") => Some(1),
        _ => None,
    };
    // One worker, as in the pipeline benchmark: the ledger writer's blocking thread is the
    // second user of the machine's two cores, as it would be in production.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (gateway, key) = rt.block_on(common::build(dir.path(), false));
    let variants = [
        ("audit on", gateway.router()),
        ("audit off", gateway.router_without_audit()),
    ];
    let mut latencies: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let run = |router: &axum::Router, n: usize, out: Option<&mut Vec<Duration>>| {
        let mut out = out;
        for _ in 0..n {
            let req = common::chat_request(&key);
            let started = Instant::now();
            let bytes = rt.block_on(common::send(router.clone(), req));
            let took = started.elapsed();
            assert!(bytes > 0, "empty response");
            if let Some(o) = out.as_deref_mut() {
                o.push(took);
            }
        }
    };
    for (_, router) in &variants {
        run(router, 2_000, None); // warm-up: tokenizers, caches, the first ledger pages
    }
    let mut done = 0;
    // Each round's p99 difference (on − off): the two halves of a round run back to back, so
    // a noisy stretch of the machine weighs on both; the median over rounds is the typical
    // round's added tail.
    let mut round_p99_added = Vec::new();
    for round in 0..rounds {
        if Instant::now() > deadline {
            break;
        }
        // Alternate which variant goes first, so neither always follows the other's writes.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut p99 = [0.0; 2];
        for v in order.into_iter().filter(|v| only.is_none_or(|o| o == *v)) {
            let mut this_round = Vec::with_capacity(per_round);
            run(&variants[v].1, per_round, Some(&mut this_round));
            this_round.sort();
            p99[v] = percentile(&this_round, 0.99);
            latencies[v].extend(this_round);
        }
        round_p99_added.push(p99[0] - p99[1]);
        done += 1;
    }
    println!("audit_overhead: {done} rounds x {per_round} requests per variant");
    println!("| variant | p50 µs | p90 µs | p99 µs | p99.9 µs | mean µs |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut p = [[0.0; 4]; 2];
    for (v, lat) in latencies.iter_mut().enumerate() {
        if lat.is_empty() {
            continue;
        }
        lat.sort();
        let mean = lat.iter().map(Duration::as_secs_f64).sum::<f64>() / lat.len() as f64 * 1e6;
        for (k, q) in [0.5, 0.9, 0.99, 0.999].iter().enumerate() {
            p[v][k] = percentile(lat, *q);
        }
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {mean:.1} |",
            variants[v].0, p[v][0], p[v][1], p[v][2], p[v][3]
        );
    }
    println!(
        "| added by audit | {:+.1} | {:+.1} | {:+.1} | {:+.1} | |",
        p[0][0] - p[1][0],
        p[0][1] - p[1][1],
        p[0][2] - p[1][2],
        p[0][3] - p[1][3]
    );
    if only.is_none() && !round_p99_added.is_empty() {
        round_p99_added.sort_by(f64::total_cmp);
        let q = |p: f64| round_p99_added[((round_p99_added.len() - 1) as f64 * p).round() as usize];
        println!(
            "per-round p99 added by audit: median {:+.1} µs, quartiles {:+.1} / {:+.1} µs ({} rounds)",
            q(0.5),
            q(0.25),
            q(0.75),
            round_p99_added.len()
        );
    }
    drop(variants);
    drop(gateway);
}
