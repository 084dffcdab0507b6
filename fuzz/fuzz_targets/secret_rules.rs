//! Any text as a Gitleaks-format rules file: rules or an error naming where, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match custos_scan::secrets::RuleSet::parse("fuzz.toml", text, None) {
            Ok(rules) => {
                let _ = custos_scan::secrets::Scanner::new(rules).scan("f", text.as_bytes());
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
