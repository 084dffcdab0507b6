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

#[test]
fn an_address_beats_the_name_reading_of_its_street() {
    let a = Analyzer::default();
    for (t, want) in [
        (
            "Send the documents to 221B Baker Street, London NW1 6XE.",
            "221B Baker Street, London NW1 6XE",
        ),
        (
            "Our office is at 1600 Amphitheatre Parkway, Mountain View, CA 94043.",
            "1600 Amphitheatre Parkway, Mountain View, CA 94043",
        ),
    ] {
        let found: Vec<(String, &str)> = a
            .analyze(t)
            .iter()
            .map(|f| (f.entity_type.to_string(), &t[f.start..f.end]))
            .collect();
        assert_eq!(found, [("STREET_ADDRESS".to_string(), want)], "{t}");
    }
}

#[test]
fn escaped_line_breaks_read_as_breaks() {
    let a = Analyzer::default();
    // As text copied out of a JSON string keeps them: a backslash and an n.
    let t = r"Name: Eduard Kvarda\nPhone: 961 52 200\nOffice: 9380 6377 office\nPath C:\\new";
    let found: Vec<(String, &str)> = a
        .analyze(t)
        .iter()
        .map(|f| (f.entity_type.to_string(), &t[f.start..f.end]))
        .collect();
    for want in [
        ("PERSON", "Eduard Kvarda"),
        ("PHONE_NUMBER", "961 52 200"),
        ("PHONE_NUMBER", "9380 6377"),
    ] {
        assert!(
            found.contains(&(want.0.to_string(), want.1)),
            "{want:?} in {found:?}"
        );
    }
}
