//! Property tests: validators against generated valid and corrupted numbers,
//! analyzer invariants on arbitrary text, overlap resolution, operators.

use custos_pii::analyzer::resolve_overlaps;
use custos_pii::{validate, Analyzer, Anonymizer, CharOffsets, Finding, Operator, Pseudonyms};
use proptest::prelude::*;

fn luhn_digit(body: &[u8]) -> u8 {
    (0..10)
        .find(|&c| validate::luhn(&[body, &[c]].concat()))
        .unwrap_or(0)
}

proptest! {
    #[test]
    fn luhn_catches_every_single_digit_error(body in proptest::collection::vec(0u8..10, 12..18), pos in 0usize..18, delta in 1u8..10) {
        let mut d = body.clone();
        d.push(luhn_digit(&body));
        prop_assert!(validate::luhn(&d));
        let pos = pos % d.len();
        d[pos] = (d[pos] + delta) % 10;
        prop_assert!(!validate::luhn(&d));
    }

    #[test]
    fn iban_check_digits_catch_changes(body in "[0-9]{18}", pos in 0usize..18, delta in 1u8..10) {
        let iban = format!("DE{:02}{body}", validate::iban_check_digits("DE", &body));
        prop_assert_eq!(validate::iban_prefix(&iban), Some(22));
        let mut bytes = iban.into_bytes();
        let i = 4 + pos;
        bytes[i] = b'0' + (bytes[i] - b'0' + delta) % 10;
        prop_assert_eq!(validate::iban_prefix(std::str::from_utf8(&bytes).unwrap()), None);
    }

    #[test]
    fn analyzer_output_is_sound_on_any_text(text in "\\PC{0,300}") {
        let found = Analyzer::default().analyze(&text);
        let mut prev = 0;
        for f in &found {
            prop_assert!(f.start >= prev && f.start < f.end && f.end <= text.len());
            prop_assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
            prev = f.end;
        }
        let r = Anonymizer::default().apply(&text, &found, &mut Pseudonyms::default()).unwrap();
        for i in &r.items {
            prop_assert_eq!(&r.text[i.start..i.end], i.text.as_str());
        }
    }

    #[test]
    fn overlaps_are_resolved_to_a_disjoint_best_set(spans in proptest::collection::vec((0usize..60, 1usize..15, 0u8..10), 0..40)) {
        let all: Vec<Finding> = spans.iter().map(|&(s, l, sc)| Finding::new("X", s, s + l, f32::from(sc) / 10.0, "t")).collect();
        let kept = resolve_overlaps(all.clone());
        for w in kept.windows(2) {
            prop_assert!(w[0].end <= w[1].start);
        }
        // Every dropped finding overlaps a kept one at least as good.
        for f in &all {
            if !kept.contains(f) {
                prop_assert!(kept.iter().any(|k| k.overlaps(f) && (k.score > f.score || k.score == f.score && k.len() >= f.len())));
            }
        }
    }

    #[test]
    fn mask_keeps_length_in_chars(value in "\\PC{1,30}", n in 0usize..40, from_end: bool) {
        let op = Operator::Mask { masking_char: "#".into(), chars_to_mask: n, from_end };
        let a = Anonymizer { default: op, ..Anonymizer::default() };
        let f = Finding::new("X", 0, value.len(), 1.0, "t");
        let r = a.apply(&value, &[f], &mut Pseudonyms::default()).unwrap();
        prop_assert_eq!(r.text.chars().count(), value.chars().count());
        prop_assert!(r.text.chars().filter(|&c| c == '#').count() >= n.min(value.chars().count()));
    }

    #[test]
    fn char_offsets_match_char_indices(text in "\\PC{0,80}") {
        let mut c = CharOffsets::new(&text);
        for (ci, (bi, _)) in text.char_indices().enumerate() {
            prop_assert_eq!(c.char_at(bi), ci);
        }
    }
}

/// Found by `cargo fuzz run pii_text`: an address right after multi-byte chars
/// made the "version" look-behind slice inside a char.
#[test]
fn fuzz_regression_lookbehind_on_char_boundary() {
    let text = String::from_utf8_lossy(b"\xff@\xff\xff\t1.0.0.0").into_owned();
    let found = Analyzer::default().analyze(&text);
    assert!(found.iter().any(|f| f.entity_type == "IP_ADDRESS"));
}

/// Long texts are analyzed in segments; findings keep whole-text offsets.
#[test]
fn segments_keep_offsets() {
    let sentence = "Yesterday John Smith flew from Berlin to Paris with 2 bags. ";
    let text = sentence.repeat(3000);
    let found = Analyzer::default().analyze(&text);
    let people: Vec<_> = found.iter().filter(|f| f.entity_type == "PERSON").collect();
    assert_eq!(people.len(), 3000);
    assert!(people.iter().all(|f| &text[f.start..f.end] == "John Smith"));
}

#[test]
fn years_places_with_states_and_firms() {
    let text = "Born in 1987 in Springfield, IL; works at Miller-Hayes; Smith, Jones and Brown LLP sued. Port 2020 is open.";
    let found = Analyzer::default().analyze(text);
    let got: Vec<(&str, &str)> = found
        .iter()
        .map(|f| (f.entity_type.as_ref(), &text[f.start..f.end]))
        .collect();
    assert!(got.contains(&("DATE_TIME", "1987")), "{got:?}");
    assert!(got.contains(&("LOCATION", "Springfield, IL")), "{got:?}");
    assert!(got.contains(&("ORGANIZATION", "Miller-Hayes")), "{got:?}");
    assert!(
        got.contains(&("ORGANIZATION", "Smith, Jones and Brown LLP")),
        "{got:?}"
    );
    assert!(
        !got.iter().any(|(_, v)| *v == "2020"),
        "a port number is not a year: {got:?}"
    );
}

#[test]
fn nationalities_religions_and_parties() {
    let text =
        "She is a French citizen and a devout Catholic; he votes Republican. The Green light.";
    let found = Analyzer::default().analyze(text);
    let nrp: Vec<&str> = found
        .iter()
        .filter(|f| f.entity_type == "NRP")
        .map(|f| &text[f.start..f.end])
        .collect();
    assert_eq!(nrp, ["French", "Catholic", "Republican"]);
}
