//! The hand-written evaluation set (`tests/data/pii_handwritten.txt`, converted to Presidio's
//! evaluator JSON beside it): text nobody generated, scored token by token as `custos pii eval`
//! scores it. The floors sit a little under today's figures so a regression fails.

use custos_pii::{evaluate, Analyzer, Sample};

#[test]
fn the_hand_written_set_scores_above_its_floor() {
    let text = include_str!("data/pii_handwritten.json");
    let samples: Vec<Sample> = serde_json::from_str(text).expect("the set parses");
    assert!(samples.len() >= 50, "{} samples", samples.len());
    let r = evaluate(&Analyzer::default(), &samples);
    for (entity, c) in &r.per_entity {
        eprintln!(
            "{entity:<16} tp {:>3} fp {:>3} fn {:>3}  P {:.3} R {:.3} F1 {:.3}",
            c.tp,
            c.fp,
            c.fn_,
            c.precision(),
            c.recall(),
            c.f1()
        );
    }
    let o = r.overall;
    eprintln!(
        "overall          tp {:>3} fp {:>3} fn {:>3}  P {:.3} R {:.3} F1 {:.3}; ignored {:?}",
        o.tp,
        o.fp,
        o.fn_,
        o.precision(),
        o.recall(),
        o.f1(),
        r.ignored_gold
    );
    assert!(o.f1() >= FLOOR, "overall F1 {:.3} under {FLOOR}", o.f1());
}

const FLOOR: f64 = 0.88;
