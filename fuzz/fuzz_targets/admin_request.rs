//! What the admin API reads from a request before any handler: the `Accept` header it picks a
//! version from, and the `why`/`ticket` every change carries. An answer or a clear error for
//! any input, never a panic.
#![no_main]

use custos_gateway::admin::{negotiate_version, ApiVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (accept, rest) = text.split_once('\n').unwrap_or((text, ""));
    match negotiate_version(Some(accept)) {
        Ok(ApiVersion::V1 | ApiVersion::V2) => {}
        Err(detail) => assert!(detail.len() < 1024, "the 406 detail is bounded"),
    }
    let (why, ticket) = rest.split_once('\n').unwrap_or((rest, ""));
    if let Ok(r) = custos_core::Reason::new(Some(why), Some(ticket)) {
        assert!(r.why.as_deref().is_none_or(|w| !w.chars().any(|c| c.is_control() && c != '\n' && c != '\t')));
        assert!(r.ticket.as_deref().is_none_or(|t| t.chars().count() <= 128));
    }
});
