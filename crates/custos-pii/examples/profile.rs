//! A steady-state workload for instruction-level profiles of the analyzer: callgrind's counts
//! do not depend on noise, but a criterion run is dominated by building the regexes once.
//! Run it twice and subtract, so only the extra analyses count:
//!
//! ```text
//! cargo build --release -p custos-pii --example profile
//! for n in 0 50; do valgrind --tool=callgrind --toggle-collect='custos_pii::names::analyze' \
//!   target/release/examples/profile $n; done   # (Ir(50) - Ir(0)) / 50 = one 4 KB prompt
//! ```
use custos_pii::{synth, Analyzer};

fn main() {
    let analyzer = Analyzer::default();
    // The criterion bench's typical prompt: 4 KB of mostly clean prose, a name, an e-mail, a phone.
    let clean: String = synth::generate(9, 2_000, 1)
        .into_iter()
        .map(|s| s.full_text + " ")
        .collect();
    let mut cut = 4096;
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    let typical = format!(
        "{} Contact Jane Roe at jane.roe@example.com or (212) 555-0147.",
        &clean[..cut - 70]
    );
    let short: Vec<String> = synth::generate(11, 1000, 5)
        .into_iter()
        .map(|s| s.full_text)
        .collect();
    let extra: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let mut found = analyzer.analyze(&typical).len();
    for _ in 0..extra {
        found += analyzer.analyze(&typical).len();
    }
    for t in &short {
        found += analyzer.analyze(t).len();
    }
    println!("{found} findings");
}
