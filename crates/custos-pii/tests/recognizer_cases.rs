//! Whole-analyzer cases for recognizers whose score depends on context words: the phone
//! number with a label joined by a hyphen, 12-digit Maestro cards, a line of two numbers
//! after an address.

use custos_pii::Analyzer;

fn found(t: &str) -> Vec<(String, &str)> {
    Analyzer::default()
        .analyze(t)
        .iter()
        .map(|f| (f.entity_type.to_string(), &t[f.start..f.end]))
        .collect()
}

#[test]
fn phone_numbers_with_labels_and_desk_lines() {
    for (t, want) in [
        (
            "(08) 8219 9791-Office, +41 86 432 72 50-Fax",
            "(08) 8219 9791",
        ),
        ("Mobile: 722 778 902\nDesk: 07289025797\n", "07289025797"),
        (
            "any message on my registered 9822 3749. Could you",
            "9822 3749",
        ),
        ("Office: (07700) 154728 mobile", "(07700) 154728"),
    ] {
        let f = found(t);
        assert!(f.contains(&("PHONE_NUMBER".into(), want)), "{t}: {f:?}");
    }
    // A hyphenated figure is no labelled phone number.
    assert!(found("Build 20240115-release shipped").is_empty());
}

#[test]
fn twelve_digit_maestro_cards_beside_a_card_word() {
    // 12 digits, prefix 50, Luhn-valid.
    let f = found("card number 503807764264 is lost");
    assert_eq!(f, [("CREDIT_CARD".to_string(), "503807764264")]);
    // Without a card word, or failing Luhn, a 12-digit number is nothing of the kind.
    assert!(found("order 503807764264 shipped").is_empty());
    assert!(found("card number 503807764265 is lost").is_empty());
    // JCB's 15-digit numbers under 2131.
    let f = found("I have lost my card 213158253605181.");
    assert_eq!(f, [("CREDIT_CARD".to_string(), "213158253605181")]);
}

#[test]
fn a_line_of_two_numbers_after_an_address_is_not_its_postcode() {
    let t = "0189 Rue des Buissons 386\n Suite 559\n Runkelen\n Belgium 65601\n9380 6377 office";
    let f = found(t);
    assert!(f.contains(&("PHONE_NUMBER".into(), "9380 6377")), "{f:?}");
    assert!(
        f.iter()
            .any(|(e, v)| e == "STREET_ADDRESS" && v.ends_with("Belgium 65601")),
        "{f:?}"
    );
}
