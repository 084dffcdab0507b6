//! What an erasure reads from someone else: any bytes as a CSV, JSON Lines or Parquet
//! dataset to rewrite without a subject, any text as a subject, any JSON as an erasure receipt. A result
//! or a clear error, never a panic; a rewritten file never names the subject again; nothing
//! verifies against a key that never signed it.
#![no_main]

use custos_govern::lifecycle::erase::{rewrite, Format, Mode, Subject};
use custos_govern::lifecycle::parquet::{find_parquet, rewrite_parquet};
use custos_govern::lifecycle::receipt;
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
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(s) = Subject::parse(text) {
            let _ = s.matches(text);
            assert!(s.label().contains(':'));
        }
    }
    let subjects = [
        Subject::parse("email:jane@example.com").expect("subject"),
        Subject::parse("id:42").expect("subject"),
    ];
    for format in [Format::Csv, Format::Jsonl] {
        let mut out = Vec::new();
        if rewrite(&mut &data[..], &mut out, format, &subjects, &Mode::Delete).is_ok() {
            // What is left names no subject: a second pass finds nothing.
            let mut again = Vec::new();
            if let Ok(o) = rewrite(&mut &out[..], &mut again, format, &subjects, &Mode::Delete) {
                assert_eq!(o.matched, 0, "{format:?} kept a record naming the subject");
            }
        }
    }
    // Parquet is read from files: one pair of scratch files per fuzzing process.
    let dir = std::env::temp_dir();
    let (src, dst) = (
        dir.join(format!("custos-fuzz-{}.parquet", std::process::id())),
        dir.join(format!("custos-fuzz-{}-out.parquet", std::process::id())),
    );
    if std::fs::write(&src, data).is_ok() {
        let _ = std::fs::remove_file(&dst);
        if let Ok(o) = rewrite_parquet(&src, &dst, &subjects, &Mode::Delete) {
            if o.matched > 0 {
                let again = dir.join(format!("custos-fuzz-{}-again.parquet", std::process::id()));
                let _ = std::fs::remove_file(&again);
                if let Ok(o2) = rewrite_parquet(&dst, &again, &subjects, &Mode::Delete) {
                    assert_eq!(o2.matched, 0, "Parquet kept a row naming the subject");
                }
                let _ = std::fs::remove_file(&again);
            }
        }
        let _ = find_parquet(&src, &subjects, 10);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        assert!(receipt::verify(&v, verifier(), &subjects).is_err());
    }
});
