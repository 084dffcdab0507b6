//! What compliance reads from someone else: any bytes as a risk register (parsed, linted,
//! reported, its FAIR ranges simulated), as a framework mapping, as a DPIA, and as an evidence
//! bundle to verify. A result or a clear error, never a panic or a hang; nothing verifies
//! against a key that never signed it.
#![no_main]

use custos_govern::comply::{bundle, dpia, parse_framework};
use custos_govern::risk::{self, fair, report, LintContext};
use custos_ledger::{generate_key, NoteVerifier};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::OnceLock;

fn verifier() -> &'static NoteVerifier {
    static KEY: OnceLock<NoteVerifier> = OnceLock::new();
    KEY.get_or_init(|| {
        let (_, public) = generate_key("fuzz.example/ledger").expect("key");
        NoteVerifier::from_key(&public).expect("verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = risk::parse(text) {
            let controls = BTreeMap::from([("guard:pii-prompt".to_owned(), String::new())]);
            let exposure: BTreeMap<String, f64> = p
                .register
                .risks
                .iter()
                .filter_map(|r| {
                    let f = r.fair.as_ref()?;
                    let e = fair::simulate(f, 64, 1).ok()?;
                    assert!(e.ale.is_finite() && e.ale >= 0.0);
                    Some((r.id.clone(), e.ale))
                })
                .collect();
            let problems = risk::lint(
                &p,
                &LintContext {
                    today: (2026, 12, 3),
                    controls: Some(&controls),
                    exposure: &exposure,
                },
            );
            let lines = text.lines().count().max(1);
            assert!(problems.iter().all(|x| x.line >= 1 && x.line <= lines));
            let _ = report::heat_map(&p.register);
            let _ = report::markdown(&p.register, &BTreeMap::new());
        }
        let _ = parse_framework(text);
        let _ = dpia::missing(text);
    }
    assert!(
        bundle::verify(std::io::Cursor::new(data), verifier()).is_err(),
        "an archive no one signed verified"
    );
});
