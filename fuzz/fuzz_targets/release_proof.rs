//! What `custos release verify-proof` reads from someone else: any bytes as a release proof
//! artifact (checksum, checkpoint note, events with inclusion paths, statements) and any JSON
//! array as the ledger events a proof is derived from. A verdict or a clear error, never a
//! panic; nothing verifies against a key that never signed it.
#![no_main]

use custos_govern::release::proof;
use custos_ledger::{generate_key, NoteVerifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn verifier() -> &'static NoteVerifier {
    static KEY: OnceLock<NoteVerifier> = OnceLock::new();
    KEY.get_or_init(|| {
        let (_, public) = generate_key("fuzz.example/ledger").expect("key");
        NoteVerifier::from_key(&public).expect("verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    // The private half is thrown away: no input is signed by it.
    assert!(proof::verify(&v, verifier()).is_err());
    if let Some(events) = v.as_array() {
        let indexed: Vec<(u64, serde_json::Value)> =
            events.iter().cloned().enumerate().map(|(i, e)| (i as u64, e)).collect();
        if let Ok(d) = proof::derive("rel_1", &indexed) {
            assert!(d["record"]["event"].is_string());
        }
        for e in events {
            let _ = proof::concerns(e, "rel_1");
        }
    }
});
