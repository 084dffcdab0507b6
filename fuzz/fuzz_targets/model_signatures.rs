//! What custos reads of someone else's model signature or card: any bytes as a Sigstore
//! bundle, its in-toto statement, a DSSE envelope of SLSA provenance, a PEM key, and a model
//! card (front matter, sections, links, HTML rendering). A verdict or a clear error, never a
//! panic; a forged bundle never verifies with the fixed key.
#![no_main]

use custos_govern::models::bundle::Bundle;
use custos_govern::models::card::{self, Card};
use custos_govern::models::keys::{PublicKey, SigningKey};
use custos_govern::models::manifest::Manifest;
use custos_govern::models::provenance::Provenance;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(custos_govern::models::keys::Curve::P256).expect("key").0)
}

fuzz_target!(|data: &[u8]| {
    let public = key().public_key();
    if let Ok(b) = Bundle::parse(data) {
        // Random bytes are never signed by the fixed key.
        assert!(b.open(&public).is_err());
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(m) = Manifest::from_statement(&v) {
            assert_eq!(Manifest::from_statement(&m.statement()).map(|x| x.digest()).ok(), Some(m.digest()));
            let _ = m.diff(&m);
        }
        let _ = Provenance::from_statement(&v);
        if let Ok(env) = serde_json::from_value::<custos_govern::models::dsse::Envelope>(v) {
            assert!(Provenance::open(&env, &public).is_err());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PublicKey::from_pem(text);
        let _ = SigningKey::from_pem(text);
        if let Ok(c) = Card::parse(text) {
            let problems = card::lint(&c, card::Kind::Model, None, None);
            assert!(problems.iter().all(|p| p.line <= text.lines().count() + 1));
            let html = card::render_html(&c, "t");
            assert!(!html.contains("<script"));
        }
    }
});
