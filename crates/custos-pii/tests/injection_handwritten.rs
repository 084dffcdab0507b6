//! Prompt-injection detectors on a hand-written set (tests/data/injection_handwritten.jsonl):
//! 26 injections in phrasings the rules were not written from, across every category and
//! both positions, and 30 ordinary prompts chosen to look like injections (questions about
//! system prompts, "ignore" and "forget" in everyday requests, base64 and rot13 questions,
//! transcripts with speaker labels, role-play for practice). The floors are below today's
//! figures (recall 0.73, no false positive) so a change that loses ground fails.

use custos_pii::injection::{summarize, Builtin, Detector, Position};
use serde_json::Value;

#[test]
fn handwritten_set_keeps_its_recall_without_false_positives() {
    let d = Builtin::new(&[]);
    let text = include_str!("data/injection_handwritten.jsonl");
    let (mut pos, mut caught, mut neg, mut fp) = (0, 0, 0, 0);
    let mut missed = Vec::new();
    let mut wrong = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        let t = v["text"].as_str().expect("text");
        let position = match v["position"].as_str() {
            Some("indirect") => Position::Indirect,
            _ => Position::Direct,
        };
        let hit = summarize(&d.detect(t, position))
            .first()
            .is_some_and(|(_, s)| *s >= 0.7);
        if v["label"] == "none" {
            neg += 1;
            if hit {
                fp += 1;
                wrong.push(t.to_owned());
            }
        } else {
            pos += 1;
            if hit {
                caught += 1;
            } else {
                missed.push(t.to_owned());
            }
        }
    }
    assert_eq!((pos, neg), (26, 30));
    let recall = caught as f64 / pos as f64;
    assert!(recall >= 0.65, "recall {recall:.3}; missed {missed:#?}");
    assert!(fp <= 1, "{fp} ordinary prompts flagged: {wrong:#?}");
}
