//! Policy files: whatever text an operator (or an attacker with write access to a policy
//! directory) puts there, loading it gives policies or an error, never a panic.
#![no_main]

use custos_authz::policy::{schema, Policies};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static SCHEMA: OnceLock<cedar_policy::Schema> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let schema = SCHEMA.get_or_init(|| schema().expect("the shipped schema parses"));
    let _ = Policies::load(&[("fuzz.cedar".to_owned(), text.to_owned())], schema);
});
