//! Add-checkpoint requests from the network, as `custos witness serve` reads them, and the
//! witness's decision on whatever they carry: an error for every malformed request, never a
//! panic.
#![no_main]

use custos_ledger::{read_checkpoint_unverified, witness_accepts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((old, proof, note)) = custos_gateway::witness::parse_add(body) {
        assert!(proof.len() <= 63);
        if let Ok(cp) = read_checkpoint_unverified(note) {
            let recorded = (old > 0).then_some((old, [0u8; 32]));
            let _ = witness_accepts(recorded, old, &proof, &cp);
            let _ = witness_accepts(None, old, &proof, &cp);
        }
    }
});
