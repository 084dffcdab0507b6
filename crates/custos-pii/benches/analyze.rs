//! Analyzer throughput: a 4 KB prompt dense with PII, and 1 MB of prose
//! with PII sprinkled in (one sample in five), and short texts one at a time.
//! Run: cargo bench -p custos-pii
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use custos_pii::{synth, Analyzer};

fn corpus(bytes: usize, clean_every: usize) -> String {
    let mut out = String::with_capacity(bytes + 256);
    let mut seed = 1;
    while out.len() < bytes {
        for s in synth::generate(seed, 200, clean_every) {
            out.push_str(&s.full_text);
            out.push(' ');
        }
        seed += 1;
    }
    let mut cut = bytes;
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(cut);
    out
}

fn bench(c: &mut Criterion) {
    let analyzer = Analyzer::default();
    // The rules alone (`[pii] tagger = false`), for the statistical tagger's cost beside them.
    let rules_only = Analyzer::new(&custos_pii::analyzer::PiiConfig {
        tagger: false,
        ..Default::default()
    })
    .expect("the default configuration is valid");
    let prompt = corpus(4096, 5);
    analyzer.analyze(&prompt); // load gazetteers outside the measurement
    let mut g = c.benchmark_group("pii");
    g.throughput(Throughput::Bytes(prompt.len() as u64));
    g.bench_function("prompt_4k_dense", |b| b.iter(|| analyzer.analyze(&prompt)));
    // Mostly clean prose: 4 of 5 sentences hold no PII.
    let prose = corpus(1 << 20, 1)
        .split(". ")
        .enumerate()
        .filter(|(i, _)| i % 5 == 0)
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(". ");
    let clean: String = synth::generate(9, 20_000, 1)
        .into_iter()
        .map(|s| s.full_text + " ")
        .collect();
    let mixed: String = clean.split_inclusive(' ').take(180_000).collect::<String>()
        + &prose[..prose.len().min(200_000)];
    // A typical prompt: 4 KB of prose with a handful of PII.
    let mut cut = 4096;
    while !mixed.is_char_boundary(cut) {
        cut -= 1;
    }
    let typical = format!(
        "{} Contact Jane Roe at jane.roe@example.com or (212) 555-0147.",
        &mixed[..cut - 70]
    );
    g.throughput(Throughput::Bytes(typical.len() as u64));
    g.bench_function("prompt_4k_typical", |b| {
        b.iter(|| analyzer.analyze(&typical))
    });
    g.bench_function("prompt_4k_typical_rules_only", |b| {
        b.iter(|| rules_only.analyze(&typical))
    });
    // Short texts one at a time, as a chat or a dataset column sends them: 1,000 per
    // iteration (texts per second = 1,000 / time).
    let short: Vec<String> = synth::generate(11, 1000, 5)
        .into_iter()
        .map(|s| s.full_text)
        .collect();
    g.throughput(Throughput::Elements(short.len() as u64));
    g.bench_function("short_texts_1000", |b| {
        b.iter(|| {
            short
                .iter()
                .map(|t| analyzer.analyze(t).len())
                .sum::<usize>()
        })
    });
    g.bench_function("short_texts_1000_rules_only", |b| {
        b.iter(|| {
            short
                .iter()
                .map(|t| rules_only.analyze(t).len())
                .sum::<usize>()
        })
    });
    g.throughput(Throughput::Bytes(mixed.len() as u64));
    g.sample_size(10);
    g.bench_function("prose_mixed", |b| b.iter(|| analyzer.analyze(&mixed)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
