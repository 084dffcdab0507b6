//! Untrusted evaluation data (Presidio's sample JSON) and operator strings:
//! parse errors are errors, offsets past the text are clamped, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(samples) = serde_json::from_slice::<Vec<custos_pii::Sample>>(data) {
        let _ = custos_pii::evaluate(&custos_pii::Analyzer::default(), &samples);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = custos_pii::Operator::parse(s);
        let _ = custos_pii::Key::parse(s);
    }
});
