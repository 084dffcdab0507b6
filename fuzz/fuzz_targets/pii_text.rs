//! Any text through the PII analyzer and the anonymizer: findings inside the
//! text on char boundaries, never overlapping; anonymization never fails on
//! the analyzer's own output; char offsets stay monotonic. Never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let analyzer = custos_pii::Analyzer::default();
    let found = analyzer.analyze(&text);
    let mut prev_end = 0;
    let mut chars = custos_pii::CharOffsets::new(&text);
    for f in &found {
        assert!(f.start <= f.end && f.end <= text.len());
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        assert!(f.start >= prev_end, "overlap");
        assert!((0.0..=1.0).contains(&f.score));
        assert!(chars.char_at(f.start) <= chars.char_at(f.end));
        prev_end = f.end;
    }
    let r = custos_pii::Anonymizer::default()
        .apply(&text, &found, &mut custos_pii::Pseudonyms::default())
        .expect("analyzer output anonymizes");
    assert_eq!(r.items.len(), found.len());
});
