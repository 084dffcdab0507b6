//! Any text as custos.toml: an error with a position, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = custos_core::Config::from_toml(text, std::path::Path::new("fuzz.toml")) {
            let _ = e.to_string();
        }
    }
});
