//! Any bytes (invalid UTF-8, huge lines, NULs) through the default rules: findings whose
//! positions lie inside the input, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static SCANNER: OnceLock<custos_scan::secrets::Scanner> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let scanner = SCANNER.get_or_init(|| {
        custos_scan::secrets::Scanner::new(
            custos_scan::secrets::RuleSet::default_rules().expect("default rules compile"),
        )
    });
    for f in scanner.scan("fuzz.txt", data) {
        assert!(f.line >= 1 && f.end_line >= f.line);
        assert!(!f.secret.is_empty());
    }
});
