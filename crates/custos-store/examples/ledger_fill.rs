//! Fills a ledger with gateway-shaped events in the gateway writer's batch size and reports
//! the durable append rate: `cargo run --release -p custos-store --example ledger_fill --
//! sqlite://ledger.db 1000000 1024`. Used by `bench/ledger/run.sh`.

use custos_store::Store;
use std::time::Instant;

fn event(i: u64) -> String {
    // The shape and size of a gateway `model.invoke` event (about 600 bytes).
    serde_json::json!({
        "schema": 1,
        "time": custos_core::time::format_rfc3339(custos_core::time::now_ms()),
        "activity": "model.invoke",
        "actor": {"type": "api_key", "id": format!("key_0193a1b2c3d4{:08x}", i % 50), "tenant": "acme", "team": "ml", "app": "bot", "auth": "api_key"},
        "resources": [{"type": "model", "id": "gpt-4o-mini", "provider": "mock"}],
        "outcome": "allowed",
        "reason": null,
        "request_id": format!("0193a1b2-c3d4-7e5f-8a9b-{i:012x}"),
        "http": {"method": "POST", "path": "/v1/chat/completions", "status": 200},
        "request_sha256": format!("{:064x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        "response_sha256": format!("{:064x}", i.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)),
        "usage": {"prompt_tokens": 12, "completion_tokens": 40},
        "latency_ms": 21,
    })
    .to_string()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: ledger_fill DATABASE_URL COUNT [BATCH]")?;
    let count: u64 = args.next().ok_or("COUNT is missing")?.parse()?;
    let batch: u64 = args.next().map_or(Ok(1024), |b| b.parse())?;
    let store = Store::open(&url).await?;
    let start_size = store.ledger_size().await?;
    // Only the appends are timed: the gateway builds each event on its request path, and
    // what is measured here is the writer's durable commit of a batch.
    let mut appending = std::time::Duration::ZERO;
    let mut done = 0;
    while done < count {
        let n = batch.min(count - done);
        let events: Vec<String> = (start_size + done..start_size + done + n)
            .map(event)
            .collect();
        let started = Instant::now();
        store.ledger_append(&events).await?;
        appending += started.elapsed();
        done += n;
    }
    let secs = appending.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"events": count, "batch": batch, "seconds": secs, "events_per_second": count as f64 / secs})
    );
    Ok(())
}
