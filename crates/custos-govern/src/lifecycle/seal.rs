//! Sealed identifiers: the personal identifiers an event names (a token's subject, an end
//! user's id, an e-mail address in `why`) are written into the ledger encrypted under a key of
//! their own subject, kept outside the Merkle leaves. Destroying that key (crypto-shredding)
//! leaves every leaf and proof intact while the identity becomes unlinkable.

use crate::lifecycle::erase::Subject;
use aes_siv::aead::KeyInit;
use aes_siv::siv::Aes256Siv;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};

/// What a sealed identifier starts with: `sealed:v1:KEYID:CIPHERTEXT`.
pub const PREFIX: &str = "sealed:v1:";
/// AES-256-SIV takes two 256-bit keys.
pub const KEY_LEN: usize = 64;

/// One subject's key: `id` is random (it says nothing about the subject), `secret` encrypts.
#[derive(Clone)]
pub struct SubjectKey {
    pub id: String,
    pub secret: [u8; KEY_LEN],
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Where a subject's key is found: `hex(sha256("custos-subject-key/v1\n" ‖ label))`. It is
/// stored beside the key and deleted with it, and never written into the ledger.
pub fn lookup(label: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"custos-subject-key/v1\n");
    h.update(label.as_bytes());
    hex::encode(h.finalize())
}

/// The subject label an identifier is sealed under: an address is `email:` (lower-cased),
/// anything else `id:` as written.
pub fn label_of(identifier: &str) -> String {
    if looks_like_email(identifier) {
        format!("email:{}", identifier.trim().to_lowercase())
    } else {
        format!("id:{}", identifier.trim())
    }
}

fn looks_like_email(s: &str) -> bool {
    let s = s.trim();
    match s.split_once('@') {
        Some((l, d)) => {
            !l.is_empty()
                && l.chars().all(email_local_char)
                && d.contains('.')
                && d.chars().all(domain_char)
                && !d.starts_with('.')
                && !d.ends_with('.')
        }
        None => false,
    }
}

/// Deterministic: the same identifier under the same key seals to the same text, so events of
/// one subject stay comparable (and searchable) while the key lives. The key id is bound in.
pub fn seal(key: &SubjectKey, plaintext: &str) -> String {
    let ct = Aes256Siv::new((&key.secret).into())
        .encrypt([key.id.as_bytes()], plaintext.as_bytes())
        .unwrap_or_default();
    format!("{PREFIX}{}:{}", key.id, hex::encode(ct))
}

/// The key id of a sealed identifier.
pub fn key_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, ct) = rest.split_once(':')?;
    (!id.is_empty() && !ct.is_empty()).then_some(id)
}

/// The identifier, if `secret` is its key.
pub fn open(secret: &[u8; KEY_LEN], token: &str) -> Option<String> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, ct) = rest.split_once(':')?;
    let raw = hex::decode(ct).ok()?;
    let pt = Aes256Siv::new(secret.into())
        .decrypt([id.as_bytes()], &raw)
        .ok()?;
    String::from_utf8(pt).ok()
}

fn email_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._%+-".contains(c)
}

fn domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.'
}

/// Byte ranges of the e-mail addresses in `text` (a local part, `@`, and a domain with a dot
/// and a final label of two or more letters).
pub fn emails(text: &str) -> Vec<std::ops::Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    let mut floor = 0;
    while let Some(i) = text[from..].find('@') {
        let at = from + i;
        let mut start = at;
        // Never back into the address found before (`a@b.co@c.de` is one address at most).
        while start > floor && email_local_char(b[start - 1] as char) {
            start -= 1;
        }
        // A local part does not start or end with a dot.
        while start < at && b[start] == b'.' {
            start += 1;
        }
        let mut end = at + 1;
        while end < b.len() && domain_char(b[end] as char) {
            end += 1;
        }
        while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &text[at + 1..end];
        let tld_ok = domain.rsplit_once('.').is_some_and(|(h, t)| {
            !h.is_empty() && t.len() >= 2 && t.bytes().all(|c| c.is_ascii_alphabetic())
        });
        if start < at && b[at - 1] != b'.' && tld_ok && !domain.contains("..") {
            out.push(start..end);
            from = end;
            floor = end;
        } else {
            from = at + 1;
        }
    }
    out
}

/// `text` with every e-mail address replaced by `[address]`: for reasons copied where no key
/// can seal them (a receipt handed to the requester).
pub fn mask_emails(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for r in emails(text) {
        out.push_str(&text[last..r.start]);
        out.push_str("[address]");
        last = r.end;
    }
    out.push_str(&text[last..]);
    out
}

/// What to seal in one event, and under which subjects' keys.
#[derive(Debug, Default)]
pub struct Plan {
    pub labels: BTreeSet<String>,
}

/// The actor of an event is a person when it authenticated with a token (`type: user` or
/// `auth: jwt`): its
/// `id` (the token's subject) and `uid` (which contains it) are sealed under the subject.
fn person_actor(event: &Value) -> Option<&str> {
    let a = event.get("actor")?;
    let person = a.get("type").and_then(Value::as_str) == Some("user")
        || a.get("auth").and_then(Value::as_str) == Some("jwt");
    person
        .then(|| a.get("id")?.as_str())
        .flatten()
        .filter(|id| !id.starts_with(PREFIX))
}

/// The subject labels an event needs keys for: a person actor, every e-mail address in any
/// string, every `subject` field that names a subject (`email:…`, `id:…`), and the value of
/// every `end_user` field.
pub fn plan(event: &Value) -> Plan {
    let mut p = Plan::default();
    if let Some(id) = person_actor(event) {
        p.labels.insert(label_of(id));
    }
    walk_plan(event, None, &mut p);
    p
}

fn subject_field(key: Option<&str>, s: &str) -> Option<String> {
    match key {
        Some("subject") if !s.starts_with(PREFIX) => Subject::parse(s).ok().map(|x| x.label()),
        Some("end_user") if !s.starts_with(PREFIX) && !s.trim().is_empty() => Some(label_of(s)),
        _ => None,
    }
}

fn walk_plan(v: &Value, key: Option<&str>, p: &mut Plan) {
    match v {
        Value::String(s) => {
            if let Some(l) = subject_field(key, s) {
                p.labels.insert(l);
                return;
            }
            if s.starts_with(PREFIX) {
                return;
            }
            for r in emails(s) {
                p.labels.insert(format!("email:{}", s[r].to_lowercase()));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk_plan(x, None, p)),
        Value::Object(m) => m.iter().for_each(|(k, x)| walk_plan(x, Some(k), p)),
        _ => {}
    }
}

/// Seals what `plan` found, with `keys` by label (a label without a key is left as it is:
/// callers fetch every planned key first). Returns how many identifiers were sealed.
pub fn apply(event: &mut Value, keys: &HashMap<String, SubjectKey>) -> usize {
    apply_with(event, &mut |label, v| keys.get(label).map(|k| seal(k, v)))
}

/// Replaces every identifier `plan` finds with `redacted`: for an event that must be written
/// when its subjects' keys cannot be had.
pub fn redact(event: &mut Value) -> usize {
    apply_with(event, &mut |_, _| Some("redacted".to_owned()))
}

/// Replaces each identifier the planner finds with `f(label, identifier)` when that is `Some`.
pub fn apply_with(event: &mut Value, f: &mut dyn FnMut(&str, &str) -> Option<String>) -> usize {
    let mut n = 0;
    if let Some(id) = person_actor(event).map(str::to_owned) {
        let label = label_of(&id);
        let a = &mut event["actor"];
        for field in ["id", "uid"] {
            if let Some(s) = a.get(field).and_then(Value::as_str) {
                if let Some(sealed) = f(&label, s) {
                    a[field] = Value::String(sealed);
                    n += 1;
                }
            }
        }
    }
    walk_apply(event, None, f, &mut n);
    n
}

fn walk_apply(
    v: &mut Value,
    key: Option<&str>,
    f: &mut dyn FnMut(&str, &str) -> Option<String>,
    n: &mut usize,
) {
    match v {
        Value::String(s) => {
            if let Some(l) = subject_field(key, s) {
                if let Some(sealed) = f(&l, s) {
                    *s = sealed;
                    *n += 1;
                }
                return;
            }
            if s.starts_with(PREFIX) {
                return;
            }
            let found = emails(s);
            if found.is_empty() {
                return;
            }
            let mut out = String::with_capacity(s.len() * 2);
            let mut last = 0;
            for r in found {
                let addr = &s[r.clone()];
                match f(&format!("email:{}", addr.to_lowercase()), addr) {
                    Some(sealed) => {
                        out.push_str(&s[last..r.start]);
                        out.push_str(&sealed);
                        *n += 1;
                    }
                    None => out.push_str(&s[last..r.end]),
                }
                last = r.end;
            }
            out.push_str(&s[last..]);
            *s = out;
        }
        Value::Array(a) => a.iter_mut().for_each(|x| walk_apply(x, None, f, n)),
        Value::Object(m) => m
            .iter_mut()
            .for_each(|(k, x)| walk_apply(x, Some(k.as_str()), f, n)),
        _ => {}
    }
}

/// The key ids of every sealed identifier in an event.
pub fn sealed_ids(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            for r in tokens(s) {
                if let Some(id) = key_id(&s[r]) {
                    out.insert(id.to_owned());
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| sealed_ids(x, out)),
        Value::Object(m) => m.values().for_each(|x| sealed_ids(x, out)),
        _ => {}
    }
}

/// The byte ranges of the sealed identifiers within a string (a `why` may hold several
/// among its words): the prefix, a key id, `:`, and lower-case hex. Hex, because a sealed
/// address may be followed by `-` or `_` (which a base64url alphabet would swallow) but never
/// by a letter or digit (the address would have gone on).
fn tokens(s: &str) -> Vec<std::ops::Range<usize>> {
    let b = s.as_bytes();
    let id_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = s[from..].find(PREFIX) {
        let start = from + i;
        let mut j = start + PREFIX.len();
        while j < b.len() && id_char(b[j]) {
            j += 1;
        }
        if j > start + PREFIX.len() && j < b.len() && b[j] == b':' {
            let mut k = j + 1;
            while k < b.len() && matches!(b[k], b'0'..=b'9' | b'a'..=b'f') {
                k += 1;
            }
            if k > j + 1 {
                out.push(start..k);
                from = k;
                continue;
            }
        }
        from = start + PREFIX.len();
    }
    out
}

/// Replaces every sealed identifier with what it seals when its key is in `keys` (by key id),
/// and with `erased:KEYID` when not: the key was shredded, or is not this deployment's.
pub fn reveal(v: &mut Value, keys: &HashMap<String, [u8; KEY_LEN]>) {
    match v {
        Value::String(s) if s.contains(PREFIX) => {
            let mut out = String::with_capacity(s.len());
            let mut last = 0;
            for r in tokens(s) {
                let (a, b) = (r.start, r.end);
                let t = &s[a..b];
                out.push_str(&s[last..a]);
                match key_id(t) {
                    Some(id) => match keys.get(id).and_then(|k| open(k, t)) {
                        Some(pt) => out.push_str(&pt),
                        None => {
                            out.push_str("erased:");
                            out.push_str(id);
                        }
                    },
                    None => out.push_str(t),
                }
                last = b;
            }
            out.push_str(&s[last..]);
            *s = out;
        }
        Value::Array(a) => a.iter_mut().for_each(|x| reveal(x, keys)),
        Value::Object(m) => m.values_mut().for_each(|x| reveal(x, keys)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn key(id: &str, b: u8) -> SubjectKey {
        SubjectKey {
            id: id.into(),
            secret: [b; KEY_LEN],
        }
    }

    #[test]
    fn finds_addresses_at_their_boundaries() {
        let t = "per jane.doe@example.com, cc <bob@mail.example.org>. not a@b, x@y.z1, @nobody.com";
        let got: Vec<&str> = emails(t).into_iter().map(|r| &t[r]).collect();
        assert_eq!(got, ["jane.doe@example.com", "bob@mail.example.org"]);
        assert!(emails("end.@x.com").is_empty());
        assert_eq!(emails("dot.@x.com and .a@x.com").len(), 1);
        // Found by fuzzing: addresses sharing characters never overlap.
        let t = "hepai@h.hemail:.h@h.hhh@h.hh%%";
        let got: Vec<&str> = emails(t).into_iter().map(|r| &t[r]).collect();
        assert_eq!(got, ["hepai@h.hemail", "h@h.hhh"]);
        assert_eq!(mask_emails(t), "[address]:.[address]@h.hh%%");
    }

    #[test]
    fn seals_people_and_addresses_and_reveals_until_shredded() {
        let mut ev = json!({
            "actor": {"type": "user", "id": "Jane@Example.com", "uid": "t/jwt/iss/Jane@Example.com"},
            "why": "DSR from jane@example.com and bob@example.org",
            "resources": [{"type": "hold", "subject": "id:123", "end_user": "u-77"}],
            "request_id": "abc"
        });
        let p = plan(&ev);
        let want: BTreeSet<String> = [
            "email:jane@example.com",
            "email:bob@example.org",
            "id:123",
            "id:u-77",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(p.labels, want);
        let keys: HashMap<String, SubjectKey> = p
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), key(&format!("k{i}"), i as u8 + 1)))
            .collect();
        let original = ev.clone();
        assert_eq!(apply(&mut ev, &keys), 6);
        let text = ev.to_string();
        for s in ["jane", "Jane", "bob@", "123", "u-77"] {
            assert!(!text.contains(s), "{s} left in {text}");
        }
        // Sealing twice changes nothing.
        let again = ev.clone();
        assert_eq!(apply(&mut ev, &keys), 0);
        assert_eq!(ev, again);
        assert!(plan(&ev).labels.is_empty());
        let mut ids = BTreeSet::new();
        sealed_ids(&ev, &mut ids);
        assert_eq!(ids.len(), 4);
        let mut by_id: HashMap<String, [u8; KEY_LEN]> =
            keys.values().map(|k| (k.id.clone(), k.secret)).collect();
        let mut shown = ev.clone();
        reveal(&mut shown, &by_id);
        assert_eq!(shown, original);
        // Shred Jane's key: her identity is gone, Bob's remains.
        let jane = keys["email:jane@example.com"].id.clone();
        by_id.remove(&jane);
        let mut shown = ev.clone();
        reveal(&mut shown, &by_id);
        assert_eq!(shown["actor"]["id"], json!(format!("erased:{jane}")));
        assert_eq!(
            shown["why"],
            json!(format!("DSR from erased:{jane} and bob@example.org"))
        );
    }

    #[test]
    fn an_address_followed_by_a_dash_round_trips() {
        // Found by fuzzing: the dash after the address was read as part of the token.
        let text = "\u{0}91@9.of-";
        let mut ev = json!({"why": text, "actor": {"type": "user", "id": text}});
        let original = ev.clone();
        let keys: HashMap<String, SubjectKey> = plan(&ev)
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), key(&format!("k{i}"), i as u8)))
            .collect();
        apply(&mut ev, &keys);
        let by_id: HashMap<String, [u8; KEY_LEN]> =
            keys.values().map(|k| (k.id.clone(), k.secret)).collect();
        reveal(&mut ev, &by_id);
        assert_eq!(ev, original);
    }

    #[test]
    fn service_accounts_are_not_sealed() {
        let ev = json!({"actor": {"type": "service_account", "id": "key_1", "uid": "t/key/key_1"}});
        assert!(plan(&ev).labels.is_empty());
        let ev = json!({"resources": [{"subject": "sha256:abcd"}]});
        assert!(plan(&ev).labels.is_empty());
    }

    #[test]
    fn a_token_does_not_open_under_another_key_or_id() {
        let k = key("a", 1);
        let t = seal(&k, "jane");
        assert_eq!(open(&k.secret, &t).as_deref(), Some("jane"));
        assert_eq!(open(&[2; KEY_LEN], &t), None);
        let forged = t.replacen(":a:", ":b:", 1);
        assert_eq!(open(&k.secret, &forged), None);
        // A sealed address followed by punctuation reads back whole.
        for after in [": now", "-x", "_y", ".", ""] {
            let mut ev = json!({"why": format!("ask {t}{after}")});
            reveal(&mut ev, &HashMap::from([("a".to_owned(), k.secret)]));
            assert_eq!(ev["why"], json!(format!("ask jane{after}")));
        }
    }

    proptest! {
        #[test]
        fn any_text_round_trips(s in "\\PC{0,80}", local in "[a-z0-9._]{1,10}", dom in "[a-z]{1,8}\\.[a-z]{2,4}") {
            let text = format!("{s} {local}x@{dom} {s}");
            let mut ev = json!({"why": text});
            let p = plan(&ev);
            let keys: HashMap<String, SubjectKey> = p.labels.iter().enumerate()
                .map(|(i, l)| (l.clone(), key(&format!("k{i}"), i as u8))).collect();
            apply(&mut ev, &keys);
            let by_id: HashMap<String, [u8; KEY_LEN]> = keys.values().map(|k| (k.id.clone(), k.secret)).collect();
            reveal(&mut ev, &by_id);
            prop_assert_eq!(ev["why"].as_str().unwrap(), text.as_str());
        }

        #[test]
        fn emails_never_panics_and_ranges_hold_an_at(s in "[a-z.@:%-]{0,60}|\\PC{0,120}") {
            let mut last = 0;
            for r in emails(&s) {
                prop_assert!(r.start >= last, "overlapping addresses in {s:?}");
                last = r.end;
                prop_assert!(s[r].contains('@'));
            }
            let _ = mask_emails(&s);
        }
    }
}
