//! Checkpoint notes and prune records read back from anchors, `--checkpoint` files and the
//! database: every malformed note is an error, never a panic, and a note parsed as a prune
//! record is never also a checkpoint.
#![no_main]

use custos_ledger::{read_checkpoint_unverified, read_prune_unverified, NoteVerifier};
use libfuzzer_sys::fuzz_target;

const PUBLIC: &str = "custos/ledger+8c33d9d3+AdOZSBF6L6kqU+pwyk1A3b33QY4SsUlIKXMZoJg/p8Ym";

fuzz_target!(|data: &[u8]| {
    let Ok(note) = std::str::from_utf8(data) else {
        return;
    };
    let checkpoint = read_checkpoint_unverified(note);
    let prune = read_prune_unverified(note);
    assert!(!(checkpoint.is_ok() && prune.is_ok()), "{note:?} is both");
    if let Ok(v) = NoteVerifier::from_key(PUBLIC) {
        let _ = v.open(note);
        let _ = v.open_prune(note);
    }
});
