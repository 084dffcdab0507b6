//! Anonymization operators applied to analyzer findings: replace, redact,
//! mask, hash, encrypt/decrypt (AES-256-SIV: deterministic, so equal values
//! stay joinable), keep, and pseudonymize with consistent tokens and an
//! optional encrypted vault that lets an authorized role reverse them.

use std::collections::{BTreeMap, HashMap};

use aes_siv::aead::KeyInit;
use aes_siv::siv::Aes256Siv;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::finding::Finding;

/// Bytes of an AES-256-SIV key.
pub const KEY_LEN: usize = 64;
/// Prefix of encrypted values, so `decrypt` and `deanonymize` can find them.
pub const ENCRYPTED_PREFIX: &str = "enc:";

/// One operator, with Presidio's parameter names.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operator {
    /// Replace with `new_value`, default `<ENTITY_TYPE>`.
    Replace {
        #[serde(default)]
        new_value: Option<String>,
    },
    /// Remove the value.
    Redact {},
    /// Overwrite `chars_to_mask` chars with `masking_char`, from the start or end.
    Mask {
        #[serde(default = "default_mask_char")]
        masking_char: String,
        #[serde(default = "default_mask_count")]
        chars_to_mask: usize,
        #[serde(default)]
        from_end: bool,
    },
    /// SHA-256 or SHA-512 (hex) of salt ‖ value.
    Hash {
        #[serde(default)]
        hash_type: HashType,
    },
    /// AES-256-SIV, base64url, prefixed `enc:`.
    Encrypt {},
    /// Reverses `encrypt`.
    Decrypt {},
    /// Leave the value as it is (but report it).
    Keep {},
    /// `<PERSON_1>`, `<PERSON_2>`…: the same value gets the same token in one scope.
    Pseudonymize {},
}

fn default_mask_char() -> String {
    "*".into()
}

fn default_mask_count() -> usize {
    usize::MAX
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HashType {
    #[default]
    Sha256,
    Sha512,
}

impl Operator {
    /// Parses the CLI's short form: `replace`, `replace:TEXT`, `redact`,
    /// `mask`, `mask:CHAR:COUNT[:end]`, `hash`, `hash:sha512`, `encrypt`,
    /// `decrypt`, `keep`, `pseudonymize`.
    pub fn parse(s: &str) -> Result<Operator, AnonymizeError> {
        let mut parts = s.splitn(2, ':');
        let name = parts.next().unwrap_or("");
        let rest = parts.next();
        let bad = || AnonymizeError::Operator(s.to_string());
        Ok(match name {
            "replace" => Operator::Replace {
                new_value: rest.map(str::to_string),
            },
            "redact" => Operator::Redact {},
            "mask" => {
                let mut p = rest.unwrap_or("").split(':');
                let masking_char = p
                    .next()
                    .filter(|c| !c.is_empty())
                    .unwrap_or("*")
                    .to_string();
                let chars_to_mask = match p.next() {
                    Some(n) if !n.is_empty() => n.parse().map_err(|_| bad())?,
                    _ => usize::MAX,
                };
                let from_end = match p.next() {
                    None | Some("start") => false,
                    Some("end") => true,
                    Some(_) => return Err(bad()),
                };
                if masking_char.chars().count() != 1 {
                    return Err(bad());
                }
                Operator::Mask {
                    masking_char,
                    chars_to_mask,
                    from_end,
                }
            }
            "hash" => Operator::Hash {
                hash_type: match rest {
                    None | Some("sha256") => HashType::Sha256,
                    Some("sha512") => HashType::Sha512,
                    Some(_) => return Err(bad()),
                },
            },
            "encrypt" => Operator::Encrypt {},
            "decrypt" => Operator::Decrypt {},
            "keep" => Operator::Keep {},
            "pseudonymize" => Operator::Pseudonymize {},
            _ => return Err(bad()),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Operator::Replace { .. } => "replace",
            Operator::Redact {} => "redact",
            Operator::Mask { .. } => "mask",
            Operator::Hash { .. } => "hash",
            Operator::Encrypt {} => "encrypt",
            Operator::Decrypt {} => "decrypt",
            Operator::Keep {} => "keep",
            Operator::Pseudonymize {} => "pseudonymize",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnonymizeError {
    #[error("unknown operator `{0}`: expected replace[:TEXT], redact, mask[:CHAR[:COUNT[:end]]], hash[:sha256|sha512], encrypt, decrypt, keep or pseudonymize")]
    Operator(String),
    #[error("the {0} operator needs a key: set CUSTOS_PII_KEY to {KEY_LEN} bytes, hex or base64 (`custos pii keygen` makes one)")]
    NoKey(&'static str),
    #[error("the key must be {KEY_LEN} bytes (hex or base64); got {0} bytes")]
    KeyLength(usize),
    #[error("the key is neither hex nor base64")]
    KeyEncoding,
    #[error("value at bytes {start}..{end} is not a custos-encrypted value or was encrypted with another key")]
    Decrypt { start: usize, end: usize },
    #[error("the vault entry {0} does not decrypt with this key (was the vault written with another CUSTOS_PII_KEY?)")]
    VaultEntry(String),
    #[error("finding {start}..{end} is outside the text or splits a character")]
    Span { start: usize, end: usize },
}

/// A 64-byte AES-256-SIV key.
#[derive(Clone)]
pub struct Key([u8; KEY_LEN]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Parses hex or base64 (standard or URL-safe) key material.
    pub fn parse(s: &str) -> Result<Key, AnonymizeError> {
        let s = s.trim();
        let bytes = hex::decode(s)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .or_else(|| B64.decode(s.trim_end_matches('=')).ok())
            .ok_or(AnonymizeError::KeyEncoding)?;
        let arr: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| AnonymizeError::KeyLength(bytes.len()))?;
        Ok(Key(arr))
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }

    fn cipher(&self) -> Aes256Siv {
        Aes256Siv::new((&self.0).into())
    }

    /// Deterministic encryption of `value`, with the entity type bound in as
    /// associated data (a PERSON ciphertext does not decrypt as an EMAIL).
    pub fn encrypt(&self, entity: &str, value: &str) -> String {
        let ct = self
            .cipher()
            .encrypt([entity.as_bytes()], value.as_bytes())
            .unwrap_or_default();
        format!("{ENCRYPTED_PREFIX}{}", B64.encode(ct))
    }

    pub fn decrypt(&self, entity: &str, token: &str) -> Option<String> {
        let raw = B64.decode(token.strip_prefix(ENCRYPTED_PREFIX)?).ok()?;
        let pt = self.cipher().decrypt([entity.as_bytes()], &raw).ok()?;
        String::from_utf8(pt).ok()
    }
}

/// Pseudonym state shared across the calls of one scope (a request, a
/// dataset, a conversation): the same value always maps to the same token.
#[derive(Debug, Default)]
pub struct Pseudonyms {
    by_value: HashMap<(String, String), String>,
    counters: HashMap<String, usize>,
    /// token → encrypted value, when a key is set (the vault's content).
    pub vault: BTreeMap<String, String>,
}

impl Pseudonyms {
    /// Registers a token issued earlier (read back from a vault), so new
    /// tokens continue its numbering and the same value keeps its token.
    pub fn remember(&mut self, entity: &str, value: &str, token: &str) {
        let n = token
            .trim_end_matches('>')
            .rsplit_once('_')
            .and_then(|(_, n)| n.parse::<usize>().ok())
            .unwrap_or(0);
        let c = self.counters.entry(entity.to_string()).or_insert(0);
        *c = (*c).max(n);
        self.by_value
            .insert((entity.to_string(), value.to_string()), token.to_string());
    }

    fn token(&mut self, entity: &str, value: &str, key: Option<&Key>) -> String {
        if let Some(t) = self.by_value.get(&(entity.to_string(), value.to_string())) {
            return t.clone();
        }
        let n = self.counters.entry(entity.to_string()).or_insert(0);
        *n += 1;
        let token = format!("<{entity}_{n}>");
        self.by_value
            .insert((entity.to_string(), value.to_string()), token.clone());
        if let Some(k) = key {
            self.vault.insert(token.clone(), k.encrypt(entity, value));
        }
        token
    }
}

/// The vault file: tokens and their encrypted values (never plaintext).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Vault {
    pub version: u32,
    pub entries: BTreeMap<String, String>,
}

impl Vault {
    /// Removes the entries whose decrypted value `matches` (a data subject's erasure);
    /// returns the tokens removed. An entry that does not decrypt with `key` is an error, not
    /// a silent keep.
    pub fn erase(
        &mut self,
        key: &Key,
        matches: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, AnonymizeError> {
        let mut gone = Vec::new();
        for (token, enc) in &self.entries {
            let entity = token
                .trim_start_matches('<')
                .trim_end_matches('>')
                .rsplit_once('_')
                .map_or("", |(ent, _)| ent);
            let value = key
                .decrypt(entity, enc)
                .ok_or_else(|| AnonymizeError::VaultEntry(token.clone()))?;
            if matches(&value) {
                gone.push(token.clone());
            }
        }
        for t in &gone {
            self.entries.remove(t);
        }
        Ok(gone)
    }

    /// Replaces every vault token in `text` with its decrypted value.
    pub fn reverse(&self, text: &str, key: &Key) -> Result<String, AnonymizeError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut offset = 0;
        while let Some(i) = rest.find('<') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            let end = tail.find('>').map(|e| e + 1);
            match end.and_then(|e| self.entries.get(&tail[..e]).map(|enc| (e, enc))) {
                Some((e, enc)) => {
                    let token = &tail[..e];
                    let entity = token
                        .trim_start_matches('<')
                        .rsplit_once('_')
                        .map_or("", |(ent, _)| ent);
                    let value = key.decrypt(entity, enc).ok_or(AnonymizeError::Decrypt {
                        start: offset + i,
                        end: offset + i + e,
                    })?;
                    out.push_str(&value);
                    rest = &tail[e..];
                    offset += i + e;
                }
                None => {
                    out.push('<');
                    rest = &tail[1..];
                    offset += i + 1;
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// What one anonymization did to one finding (positions in the output text).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub start: usize,
    pub end: usize,
    pub entity_type: String,
    pub text: String,
    pub operator: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anonymized {
    pub text: String,
    /// Byte offsets into `text`, sorted.
    pub items: Vec<Item>,
}

/// Operators per entity type, with a default, a hash salt and an optional key.
#[derive(Debug, Clone)]
pub struct Anonymizer {
    pub operators: HashMap<String, Operator>,
    pub default: Operator,
    pub salt: Vec<u8>,
    pub key: Option<Key>,
}

impl Default for Anonymizer {
    fn default() -> Self {
        Anonymizer {
            operators: HashMap::new(),
            default: Operator::Replace { new_value: None },
            salt: Vec::new(),
            key: None,
        }
    }
}

impl Anonymizer {
    fn operator_for(&self, entity: &str) -> &Operator {
        self.operators.get(entity).unwrap_or(&self.default)
    }

    /// Applies the operators to `findings` (byte offsets into `text`; they
    /// must not overlap — use the analyzer's output or `resolve_overlaps`).
    /// Whether `decrypt` is the operator of some entity type or the default.
    pub fn decrypts(&self) -> bool {
        matches!(self.default, Operator::Decrypt {})
            || self
                .operators
                .values()
                .any(|o| matches!(o, Operator::Decrypt {}))
    }

    /// What `decrypt` acts on: the analyzer sees no personal data in ciphertext, so these
    /// are the `enc:` tokens of `text` that open with the key as one of the types decrypt is
    /// set for (`entities` when it is the default), each as a finding of the type it opened
    /// as — the type is bound into the ciphertext, so only the right one opens. Tokens that
    /// open as none are counted in the second value and left alone.
    pub fn encrypted_findings(&self, text: &str, entities: &[String]) -> (Vec<Finding>, usize) {
        let Some(key) = &self.key else {
            return (Vec::new(), 0);
        };
        let mut types: Vec<&str> = self
            .operators
            .iter()
            .filter(|(_, o)| matches!(o, Operator::Decrypt {}))
            .map(|(e, _)| e.as_str())
            .collect();
        if matches!(self.default, Operator::Decrypt {}) {
            types.extend(
                entities
                    .iter()
                    .map(String::as_str)
                    .filter(|e| !self.operators.contains_key(*e)),
            );
        }
        let mut out = Vec::new();
        let mut unopened = 0;
        let mut from = 0;
        while let Some(at) = text[from..].find(ENCRYPTED_PREFIX) {
            let start = from + at;
            let body = start + ENCRYPTED_PREFIX.len();
            let end = body
                + text[body..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                    .unwrap_or(text.len() - body);
            from = end.max(start + 1);
            if end == body {
                continue;
            }
            let token = &text[start..end];
            match types.iter().find(|e| key.decrypt(e, token).is_some()) {
                Some(e) => out.push(Finding {
                    entity_type: std::borrow::Cow::Owned((*e).to_owned()),
                    start,
                    end,
                    score: 1.0,
                    recognizer: std::borrow::Cow::Borrowed("encrypted"),
                }),
                None => unopened += 1,
            }
        }
        (out, unopened)
    }

    pub fn apply(
        &self,
        text: &str,
        findings: &[Finding],
        pseudo: &mut Pseudonyms,
    ) -> Result<Anonymized, AnonymizeError> {
        let mut sorted: Vec<&Finding> = findings.iter().collect();
        sorted.sort_by_key(|f| (f.start, f.end));
        let mut out = String::with_capacity(text.len());
        let mut items = Vec::with_capacity(sorted.len());
        let mut pos = 0;
        for f in sorted {
            if f.start < pos
                || f.end > text.len()
                || f.start > f.end
                || !text.is_char_boundary(f.start)
                || !text.is_char_boundary(f.end)
            {
                return Err(AnonymizeError::Span {
                    start: f.start,
                    end: f.end,
                });
            }
            out.push_str(&text[pos..f.start]);
            let value = &text[f.start..f.end];
            let op = self.operator_for(&f.entity_type);
            let new = self
                .transform(op, &f.entity_type, value, pseudo)
                .map_err(|e| match e {
                    AnonymizeError::Decrypt { .. } => AnonymizeError::Decrypt {
                        start: f.start,
                        end: f.end,
                    },
                    e => e,
                })?;
            let start = out.len();
            out.push_str(&new);
            items.push(Item {
                start,
                end: out.len(),
                entity_type: f.entity_type.to_string(),
                text: new,
                operator: op.name(),
            });
            pos = f.end;
        }
        out.push_str(&text[pos..]);
        Ok(Anonymized { text: out, items })
    }

    fn transform(
        &self,
        op: &Operator,
        entity: &str,
        value: &str,
        pseudo: &mut Pseudonyms,
    ) -> Result<String, AnonymizeError> {
        Ok(match op {
            Operator::Replace { new_value } => {
                new_value.clone().unwrap_or_else(|| format!("<{entity}>"))
            }
            Operator::Redact {} => String::new(),
            Operator::Keep {} => value.to_string(),
            Operator::Mask {
                masking_char,
                chars_to_mask,
                from_end,
            } => {
                let n = value.chars().count();
                let k = (*chars_to_mask).min(n);
                let (keep_head, keep_tail) = if *from_end { (n - k, 0) } else { (0, n - k) };
                value
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if i < keep_head || i >= n - keep_tail {
                            c.to_string()
                        } else {
                            masking_char.clone()
                        }
                    })
                    .collect()
            }
            Operator::Hash { hash_type } => match hash_type {
                HashType::Sha256 => hex::encode(
                    Sha256::new()
                        .chain_update(&self.salt)
                        .chain_update(value)
                        .finalize(),
                ),
                HashType::Sha512 => hex::encode(
                    Sha512::new()
                        .chain_update(&self.salt)
                        .chain_update(value)
                        .finalize(),
                ),
            },
            Operator::Encrypt {} => self
                .key
                .as_ref()
                .ok_or(AnonymizeError::NoKey("encrypt"))?
                .encrypt(entity, value),
            Operator::Decrypt {} => {
                let key = self.key.as_ref().ok_or(AnonymizeError::NoKey("decrypt"))?;
                key.decrypt(entity, value)
                    .ok_or(AnonymizeError::Decrypt { start: 0, end: 0 })?
            }
            Operator::Pseudonymize {} => pseudo.token(entity, value, self.key.as_ref()),
        })
    }
}

#[cfg(test)]
mod tests {
    /// Issue 26: `decrypt` reverses `encrypt` — the analyzer sees nothing in ciphertext, so
    /// the tokens are found by their prefix and opened as the type they were sealed as.
    #[test]
    fn decrypt_reverses_encrypt() {
        let key = Key::from_bytes([3; KEY_LEN]);
        let text = "Call Jane Roe on 555-0100, mail jane@example.com.";
        let findings = vec![
            Finding {
                entity_type: "PERSON".into(),
                start: 5,
                end: 13,
                score: 0.9,
                recognizer: "t".into(),
            },
            Finding {
                entity_type: "EMAIL_ADDRESS".into(),
                start: 32,
                end: 48,
                score: 0.9,
                recognizer: "t".into(),
            },
        ];
        let enc = Anonymizer {
            default: Operator::Encrypt {},
            key: Some(key.clone()),
            ..Anonymizer::default()
        };
        let sealed = enc
            .apply(text, &findings, &mut Pseudonyms::default())
            .unwrap()
            .text;
        assert!(
            !sealed.contains("Jane Roe") && sealed.contains("enc:"),
            "{sealed}"
        );
        let dec = Anonymizer {
            default: Operator::Decrypt {},
            key: Some(key.clone()),
            ..Anonymizer::default()
        };
        assert!(dec.decrypts());
        let all = vec!["EMAIL_ADDRESS".to_string(), "PERSON".to_string()];
        let (found, unopened) = dec.encrypted_findings(&sealed, &all);
        assert_eq!((found.len(), unopened), (2, 0));
        let back = dec
            .apply(&sealed, &found, &mut Pseudonyms::default())
            .unwrap()
            .text;
        assert_eq!(back, text);
        // Another key opens nothing and says so.
        let other = Anonymizer {
            key: Some(Key::from_bytes([4; KEY_LEN])),
            ..dec
        };
        assert_eq!(other.encrypted_findings(&sealed, &all).1, 2);
        // Decrypt set for EMAIL_ADDRESS only: the PERSON token stays sealed.
        let mut only = Anonymizer {
            key: Some(key),
            ..Anonymizer::default()
        };
        only.operators
            .insert("EMAIL_ADDRESS".into(), Operator::Decrypt {});
        let (found, unopened) = only.encrypted_findings(&sealed, &all);
        assert_eq!((found.len(), unopened), (1, 1));
    }

    #[test]
    fn a_vault_forgets_a_subject_and_refuses_another_key() {
        let key = Key::from_bytes([7; KEY_LEN]);
        let mut v = Vault::default();
        v.entries.insert(
            "<EMAIL_ADDRESS_1>".into(),
            key.encrypt("EMAIL_ADDRESS", "jane@example.com"),
        );
        v.entries
            .insert("<PERSON_1>".into(), key.encrypt("PERSON", "Bob Stone"));
        let gone = v.erase(&key, |x| x.contains("jane@")).unwrap();
        assert_eq!(gone, ["<EMAIL_ADDRESS_1>"]);
        assert_eq!(v.entries.len(), 1);
        assert_eq!(
            v.reverse("hi <PERSON_1>", &key).unwrap(),
            "hi Bob Stone",
            "the others stay readable"
        );
        let e = v
            .erase(&Key::from_bytes([8; KEY_LEN]), |_| true)
            .unwrap_err();
        assert!(e.to_string().contains("<PERSON_1>"), "{e}");
        assert_eq!(v.entries.len(), 1, "nothing removed on error");
    }

    use super::*;

    fn f(e: &'static str, s: usize, t: usize) -> Finding {
        Finding::new(e, s, t, 1.0, "test")
    }

    #[test]
    fn operators() {
        let text = "Call John at 555-123-4567 or mail john@x.org; John again.";
        let fs = [
            f("PERSON", 5, 9),
            f("PHONE_NUMBER", 13, 25),
            f("EMAIL_ADDRESS", 34, 44),
            f("PERSON", 46, 50),
        ];
        let mut a = Anonymizer::default();
        let r = a.apply(text, &fs, &mut Pseudonyms::default()).unwrap();
        assert_eq!(
            r.text,
            "Call <PERSON> at <PHONE_NUMBER> or mail <EMAIL_ADDRESS>; <PERSON> again."
        );
        assert_eq!(&r.text[r.items[1].start..r.items[1].end], "<PHONE_NUMBER>");
        a.operators.insert(
            "PHONE_NUMBER".into(),
            Operator::parse("mask:#:4:end").unwrap(),
        );
        a.operators
            .insert("PERSON".into(), Operator::parse("pseudonymize").unwrap());
        a.operators
            .insert("EMAIL_ADDRESS".into(), Operator::parse("redact").unwrap());
        let r = a.apply(text, &fs, &mut Pseudonyms::default()).unwrap();
        assert_eq!(
            r.text,
            "Call <PERSON_1> at 555-123-#### or mail ; <PERSON_1> again."
        );
        assert!(Operator::parse("mask:ab").is_err());
        assert!(Operator::parse("shred").is_err());
    }

    #[test]
    fn encryption_round_trips_and_vault_reverses() {
        let key = Key::from_bytes([7; KEY_LEN]);
        let enc = key.encrypt("PERSON", "Jane Doe");
        assert_eq!(enc, key.encrypt("PERSON", "Jane Doe"), "deterministic");
        assert_eq!(key.decrypt("PERSON", &enc).as_deref(), Some("Jane Doe"));
        assert_eq!(key.decrypt("EMAIL_ADDRESS", &enc), None, "entity is bound");
        let mut a = Anonymizer {
            key: Some(key.clone()),
            ..Anonymizer::default()
        };
        a.operators
            .insert("PERSON".into(), Operator::Pseudonymize {});
        let mut p = Pseudonyms::default();
        let r = a
            .apply(
                "Jane Doe met Ann.",
                &[f("PERSON", 0, 8), f("PERSON", 13, 16)],
                &mut p,
            )
            .unwrap();
        assert_eq!(r.text, "<PERSON_1> met <PERSON_2>.");
        let vault = Vault {
            version: 1,
            entries: p.vault,
        };
        assert!(!serde_json::to_string(&vault).unwrap().contains("Jane"));
        assert_eq!(vault.reverse(&r.text, &key).unwrap(), "Jane Doe met Ann.");
        assert!(vault
            .reverse(&r.text, &Key::from_bytes([8; KEY_LEN]))
            .is_err());
    }

    #[test]
    fn bad_spans_are_errors() {
        let a = Anonymizer::default();
        assert!(a
            .apply("héllo", &[f("X", 1, 2)], &mut Pseudonyms::default())
            .is_err());
        assert!(a
            .apply("abc", &[f("X", 1, 9)], &mut Pseudonyms::default())
            .is_err());
        assert!(a
            .apply(
                "abcdef",
                &[f("X", 0, 3), f("X", 2, 4)],
                &mut Pseudonyms::default()
            )
            .is_err());
    }
}
