//! Untrusted labeled samples for `custos secrets eval`: a parse error names its line, any
//! parsed set is scored by the default rules, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static SCANNER: OnceLock<custos_scan::secrets::Scanner> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match custos_scan::secrets::eval::parse(text, "fuzz.jsonl") {
        Ok(samples) => {
            let scanner = SCANNER.get_or_init(|| {
                custos_scan::secrets::Scanner::new(
                    custos_scan::secrets::RuleSet::default_rules().expect("default rules"),
                )
            });
            let e = custos_scan::secrets::eval::evaluate(scanner, &samples);
            assert_eq!(e.overall.positives + e.overall.negatives, samples.len());
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.jsonl")),
    }
});
