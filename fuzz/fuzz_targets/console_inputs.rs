//! What a browser sends the console: session cookies (signed or forged), the Cookie header
//! they come in, CSRF tokens and form bodies. None may panic; no forged cookie may open.
#![no_main]
use custos_gateway::console::session::{cookie_value, Sessions, COOKIE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sessions = Sessions::new(Some(&"ab".repeat(32)), 3_600_000, false).expect("key");
    if let Ok(s) = std::str::from_utf8(data) {
        assert!(sessions.open(s, 0).is_err(), "a cookie nobody signed opened");
        let _ = cookie_value(s, COOKIE);
        let _ = sessions.csrf_ok("nonce", s);
    }
    let _ = custos_gateway::console::form(&bytes::Bytes::copy_from_slice(data));
});
