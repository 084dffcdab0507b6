//! The small parsers of untrusted header values: API keys, X-Request-ID, traceparent, and
//! human durations.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = custos_core::RequestId::parse(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = custos_authz::api_key::check_format(s);
        let _ = custos_gateway::request_id::parse_traceparent(s);
        let _ = custos_core::duration::parse_duration(s);
    }
});
