//! Bearer tokens and key sets from the network: parsing, signature checks and claim mapping
//! must refuse every malformed input with an error, never a panic.
#![no_main]

use custos_authz::jwt::{Jwks, Unverified, Validator};
use custos_core::config::{ClaimNames, JwtIssuerConfig};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// A fixed Ed25519 and P-256 key set (public keys only).
const JWKS: &str = r#"{"keys":[
 {"kty":"OKP","crv":"Ed25519","kid":"ed-1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
 {"kty":"EC","crv":"P-256","kid":"ec-1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

fn validator() -> &'static (Validator, Jwks) {
    static V: OnceLock<(Validator, Jwks)> = OnceLock::new();
    V.get_or_init(|| {
        let mut config = JwtIssuerConfig::new("https://idp", "custos");
        config.claims = ClaimNames {
            roles: "realm_access.roles".into(),
            ..ClaimNames::default()
        };
        (
            Validator::new(&config).expect("validator"),
            Jwks::parse(JWKS.as_bytes()).expect("jwks"),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (validator, jwks) = validator();
    let _ = Jwks::parse(data);
    if let Ok(token) = std::str::from_utf8(data) {
        if let Ok(u) = Unverified::parse(token) {
            let _ = u.issuer();
            let _ = validator.validate(&u, jwks, 1_800_000_000);
        }
    }
});
