//! Sealed identifiers in ledger events read back from a database someone else could have
//! written: any JSON as an event to seal, open and reveal, any text as a `why`. Never a
//! panic; what is sealed opens to what it was; nothing opens under the wrong key.
#![no_main]

use custos_govern::lifecycle::seal::{self, SubjectKey, KEY_LEN};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for r in seal::emails(text) {
        assert!(text[r].contains('@'));
    }
    let _ = seal::mask_emails(text);
    let mut event = serde_json::from_str::<serde_json::Value>(text)
        .unwrap_or_else(|_| serde_json::json!({"why": text, "actor": {"type": "user", "id": text}}));
    // Revealing whatever is there, with no keys, never panics.
    let mut shown = event.clone();
    seal::reveal(&mut shown, &HashMap::new());
    let plan = seal::plan(&event);
    let keys: HashMap<String, SubjectKey> = plan
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                l.clone(),
                SubjectKey {
                    id: format!("k{i}"),
                    secret: [i as u8; KEY_LEN],
                },
            )
        })
        .collect();
    let before = event.clone();
    seal::apply(&mut event, &keys);
    let mut ids = std::collections::BTreeSet::new();
    seal::sealed_ids(&event, &mut ids);
    let by_id: HashMap<String, [u8; KEY_LEN]> =
        keys.values().map(|k| (k.id.clone(), k.secret)).collect();
    let mut opened = event.clone();
    seal::reveal(&mut opened, &by_id);
    // Text that already held sealed-looking tokens may not round-trip; fresh text does.
    if !before.to_string().contains(seal::PREFIX) {
        assert_eq!(opened, before, "sealing then opening changed the event");
    }
});
