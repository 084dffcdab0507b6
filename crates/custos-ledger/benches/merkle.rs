//! Ledger math at scale: appending leaves, and roots and proofs over a million entries,
//! which must cost O(log n) node reads however large the log grows.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use custos_ledger::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_inclusion, MemoryTree,
};

fn merkle(c: &mut Criterion) {
    let event = br#"{"schema":1,"activity":"model.invoke","actor":{"id":"key_0193","tenant":"acme"},"outcome":"allowed"}"#;
    let mut g = c.benchmark_group("ledger");
    g.throughput(Throughput::Elements(1));
    g.bench_function("leaf_hash_event", |b| b.iter(|| leaf_hash(event)));
    let mut t = MemoryTree::new();
    g.bench_function("append", |b| b.iter(|| t.append(event).len()));
    g.finish();

    let n = 1u64 << 20;
    let mut big = MemoryTree::new();
    for i in 0..n {
        big.append(&i.to_le_bytes());
    }
    let size = n - 12_345;
    let r = root(&big, size).unwrap();
    c.bench_function("ledger/root_of_1M", |b| {
        b.iter(|| root(&big, size).unwrap())
    });
    c.bench_function("ledger/inclusion_proof_1M", |b| {
        b.iter(|| inclusion_proof(&big, 777_777, size).unwrap().len())
    });
    let proof = inclusion_proof(&big, 777_777, size).unwrap();
    let leaf = leaf_hash(&777_777u64.to_le_bytes());
    c.bench_function("ledger/verify_inclusion_1M", |b| {
        b.iter(|| verify_inclusion(777_777, size, &leaf, &proof, &r).is_ok())
    });
    c.bench_function("ledger/consistency_proof_1M", |b| {
        b.iter(|| consistency_proof(&big, 500_001, size).unwrap().len())
    });
}

criterion_group!(benches, merkle);
criterion_main!(benches);
