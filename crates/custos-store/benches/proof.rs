//! An inclusion proof as `custos audit prove` builds it, from the stored tree: the O(log n)
//! node reads from a real SQLite ledger of 262,144 entries, plus assembling the proof. `cargo bench -p custos-store --bench proof`.

use criterion::{criterion_group, criterion_main, Criterion};
use custos_ledger::{inclusion_positions, inclusion_proof};
use custos_store::Store;

const SIZE: u64 = 1 << 18;

fn proofs(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = rt.block_on(async {
        let store = Store::open(&format!("sqlite://{}", dir.path().join("l.db").display()))
            .await
            .expect("store");
        let mut next = 0u64;
        while next < SIZE {
            let batch: Vec<String> = (next..(next + 1024).min(SIZE))
                .map(|i| {
                    format!(r#"{{"schema":1,"activity":"model.invoke","request_id":"r-{i}"}}"#)
                })
                .collect();
            next += batch.len() as u64;
            store.ledger_append(&batch).await.expect("append");
        }
        store
    });
    let mut i = 7u64;
    c.bench_function("inclusion_proof_from_sqlite_262144_entries", |b| {
        b.iter(|| {
            // A different entry each time, so no page stays hot by accident.
            i = (i * 48_271) % SIZE;
            let positions = inclusion_positions(i, SIZE);
            let nodes = rt
                .block_on(store.ledger_nodes_at(&positions))
                .expect("nodes");
            inclusion_proof(&nodes, i, SIZE).expect("proof")
        })
    });
    // A complete tree of 2^18 leaves: every proof has 18 steps.
    let nodes = rt
        .block_on(store.ledger_nodes_at(&inclusion_positions(12_345, SIZE)))
        .expect("nodes");
    assert_eq!(
        inclusion_proof(&nodes, 12_345, SIZE).expect("proof").len(),
        18
    );
}

criterion_group!(benches, proofs);
criterion_main!(benches);
