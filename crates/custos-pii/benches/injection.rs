//! Prompt-injection screening cost: one ordinary chat prompt, a 4 KB document (the size of
//! a tool result), and 64 KB of prose, each read as the gateway reads a tool result.
//! Run: cargo bench -p custos-pii --bench injection
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use custos_pii::injection::{Builtin, Detector, Position};

const PROSE: &str = "The committee met on Tuesday to review the quarterly figures. Revenue rose \
four percent on the year, driven by the services division, while hardware sales were flat. \
The chair asked the finance team to prepare a forecast for the next two quarters and to \
explain the rise in travel costs. ";

fn text(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + PROSE.len());
    while s.len() < bytes {
        s.push_str(PROSE);
    }
    s.truncate(bytes);
    s
}

fn bench(c: &mut Criterion) {
    let d = Builtin::new(&["docs.example.com".to_owned()]);
    let mut g = c.benchmark_group("injection");
    let chat = "Can you summarize the attached report in three bullet points for my manager?";
    g.throughput(Throughput::Bytes(chat.len() as u64));
    g.bench_function("chat_prompt", |b| {
        b.iter(|| d.detect(chat, Position::Direct))
    });
    for (name, size) in [("document_4k", 4096), ("prose_64k", 65536)] {
        let t = text(size);
        g.throughput(Throughput::Bytes(t.len() as u64));
        g.bench_function(name, |b| b.iter(|| d.detect(&t, Position::Indirect)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
