//! Client certificates: after rustls verifies a chain, custos reads the leaf's names with
//! its own DER walk; any bytes give names or an error, never a panic.
#![no_main]

use custos_authz::x509::{is_spiffe_id, peer_names};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(names) = peer_names(data) {
        let _ = names.spiffe_id();
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = is_spiffe_id(s);
    }
});
