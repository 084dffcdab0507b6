//! Signed checkpoints: the ledger's tree head (origin, size, root) in the C2SP
//! `tlog-checkpoint` format, signed as a C2SP `signed-note` with Ed25519.
//!
//! A verifier needs only the public key string (`<name>+<key id>+<base64 key>`), the same
//! format Go's `golang.org/x/mod/sumdb/note` and the transparency-log ecosystem use, so a
//! checkpoint can be checked with tools other than custos.

use crate::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature algorithm byte for Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;
/// Signature lines start with an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// The extension line that makes a signed tree head a prune record, never a checkpoint.
const PRUNE_LINE: &str = "custos-prune ";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("malformed key: {0}")]
    BadKey(&'static str),
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("no signature by key {0:?} on this note")]
    NotSigned(String),
    #[error(
        "the signature by {0:?} does not verify: the note was altered or signed by another key"
    )]
    BadSignature(String),
    #[error("the operating system's random number generator failed")]
    Random,
}

/// A tree head: which log, how many entries, and the root over them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: origin, size and base64 root, one per line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body; a prune record's body is refused, so a prune record can never
    /// stand in for a checkpoint (nor, see `PruneRecord`, the other way round).
    fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        if text
            .split('\n')
            .nth(3)
            .is_some_and(|l| l.starts_with(PRUNE_LINE))
        {
            return Err(CheckpointError::Malformed(
                "this is a prune record, not a checkpoint",
            ));
        }
        Self::parse_head(text)
    }

    fn parse_head(text: &str) -> Result<Self, CheckpointError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(CheckpointError::Malformed("the origin line is empty"))?;
        let size = lines
            .next()
            .filter(|s| {
                !s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s.len() == 1 || !s.starts_with('0'))
            })
            .and_then(|s| s.parse().ok())
            .ok_or(CheckpointError::Malformed(
                "the size line is not a decimal number",
            ))?;
        let root = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| <Hash>::try_from(r.as_slice()).ok())
            .ok_or(CheckpointError::Malformed(
                "the root line is not a base64 SHA-256 hash",
            ))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// The signed record of a prune: the tree head at the prune point, the digest of the exports
/// that hold the removed entries, and the ledger entry (index and leaf hash) of the
/// `audit.prune` event that authorized it. Its note carries an extension line that no
/// checkpoint has, so neither can be passed off as the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneRecord {
    pub head: Checkpoint,
    pub exports_sha256: Hash,
    pub event_index: u64,
    pub event_leaf: Hash,
}

pub(crate) fn hex32(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(text: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    crate::verify::hex_decode(text, &mut out).then_some(out)
}

impl PruneRecord {
    pub fn body(&self) -> String {
        format!(
            "{}{PRUNE_LINE}exports={} event={} leaf={}\n",
            self.head.body(),
            hex32(&self.exports_sha256),
            self.event_index,
            hex32(&self.event_leaf)
        )
    }

    fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let head = Checkpoint::parse_head(text)?;
        let line = text
            .split('\n')
            .nth(3)
            .and_then(|l| l.strip_prefix(PRUNE_LINE))
            .ok_or(CheckpointError::Malformed(
                "not a prune record (a checkpoint cannot stand in for one)",
            ))?;
        let mut exports = None;
        let mut event = None;
        let mut leaf = None;
        for part in line.split(' ') {
            match part.split_once('=') {
                Some(("exports", v)) => exports = unhex32(v),
                Some(("event", v)) => event = v.parse::<u64>().ok(),
                Some(("leaf", v)) => leaf = unhex32(v),
                _ => {
                    return Err(CheckpointError::Malformed(
                        "unknown field in the prune line",
                    ))
                }
            }
        }
        match (exports, event, leaf) {
            (Some(exports_sha256), Some(event_index), Some(event_leaf)) => Ok(Self {
                head,
                exports_sha256,
                event_index,
                event_leaf,
            }),
            _ => Err(CheckpointError::Malformed(
                "the prune line needs exports=HEX event=INDEX leaf=HEX",
            )),
        }
    }
}

/// The key-type byte of a C2SP `cosignature/v1` key (Ed25519 with a timestamp).
const ALG_COSIGNATURE_V1: u8 = 0x04;

fn cosignature_message(checkpoint_text: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{checkpoint_text}")
}

impl NoteSigner {
    /// A C2SP `cosignature/v1` line over a checkpoint's text (the note before its blank
    /// line), as a witness adds it: `— name base64(key id ‖ time ‖ signature)`.
    pub fn cosign(&self, checkpoint_text: &str, time: u64) -> String {
        let public = self.key.verifying_key();
        let sig = self
            .key
            .sign(cosignature_message(checkpoint_text, time).as_bytes());
        let mut blob = cosigner_key_id(&self.name, &public).to_vec();
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

impl NoteVerifier {
    /// Checks this key's `cosignature/v1` among a note's signature lines and returns its
    /// time; the note's text is what was cosigned.
    pub fn open_cosignature(&self, note: &str) -> Result<u64, CheckpointError> {
        let text = note_body(note)?;
        let id = cosigner_key_id(&self.name, &self.key);
        for line in note[text.len()..].lines().filter(|l| !l.is_empty()) {
            let Some((name, b64)) = line
                .strip_prefix(SIG_PREFIX)
                .and_then(|r| r.split_once(' '))
            else {
                continue;
            };
            let Ok(blob) = B64.decode(b64) else { continue };
            if name != self.name || blob.len() != 76 || blob[..4] != id {
                continue;
            }
            let mut t = [0u8; 8];
            t.copy_from_slice(&blob[4..12]);
            let time = u64::from_be_bytes(t);
            let sig = ed25519_dalek::Signature::from_slice(&blob[12..])
                .map_err(|_| CheckpointError::Malformed("bad cosignature bytes"))?;
            self.key
                .verify_strict(cosignature_message(text, time).as_bytes(), &sig)
                .map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
            return Ok(time);
        }
        Err(CheckpointError::NotSigned(self.name.clone()))
    }
}

fn cosigner_key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    typed_key_id(name, ALG_COSIGNATURE_V1, public)
}

/// The signed text of a note (everything before its blank line), unverified.
pub fn note_body(note: &str) -> Result<&str, CheckpointError> {
    let split = note.rfind("\n\n").ok_or(CheckpointError::Malformed(
        "no blank line before the signatures",
    ))?;
    Ok(&note[..split + 1])
}

/// A checkpoint note's content without checking any signature: what a verifier without the
/// public key can still compare against the recomputed tree.
pub fn read_checkpoint_unverified(note: &str) -> Result<Checkpoint, CheckpointError> {
    Checkpoint::parse_body(note_body(note)?)
}

/// A prune record's content without checking its signature.
pub fn read_prune_unverified(note: &str) -> Result<PruneRecord, CheckpointError> {
    PruneRecord::parse_body(note_body(note)?)
}

fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    typed_key_id(name, ALG_ED25519, public)
}

/// A signed-note key id: the first 4 bytes of SHA-256(name ‖ \n ‖ key type ‖ public key).
fn typed_key_id(name: &str, alg: u8, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('+')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A checkpoint signer: the private key and its name.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A checkpoint verifier: a public key and its name.
#[derive(Clone, Debug)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

/// Makes a new key pair named `name`: (private key string, public key string).
pub fn generate_key(name: &str) -> Result<(String, String), CheckpointError> {
    if !valid_name(name) {
        return Err(CheckpointError::BadKey(
            "the name must be non-empty, without '+', spaces or control characters",
        ));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|_| CheckpointError::Random)?;
    let key = SigningKey::from_bytes(&seed);
    let public = key.verifying_key();
    let id = hex_id(&key_id(name, &public));
    let mut private_blob = vec![ALG_ED25519];
    private_blob.extend_from_slice(&seed);
    let mut public_blob = vec![ALG_ED25519];
    public_blob.extend_from_slice(public.as_bytes());
    Ok((
        format!("PRIVATE+KEY+{name}+{id}+{}", B64.encode(private_blob)),
        format!("{name}+{id}+{}", B64.encode(public_blob)),
    ))
}

fn statement_text(kind: &str, lines: &[String]) -> Result<String, CheckpointError> {
    let bad = |l: &str| l.is_empty() || l.contains('\n') || l.chars().any(char::is_control);
    if bad(kind) || kind.trim().parse::<u64>().is_ok() || lines.iter().any(|l| bad(l)) {
        return Err(CheckpointError::Malformed(
            "a statement's kind and lines are non-empty single lines and the kind is not a number",
        ));
    }
    let mut text = format!("{kind}\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    Ok(text)
}

fn hex_id(id: &[u8; 4]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits `name+hexid+base64` and checks the algorithm byte and the key id.
fn parse_key_parts(s: &str) -> Result<(String, [u8; 4], Vec<u8>), CheckpointError> {
    // Split from the left: names never contain '+', base64 key material may.
    let mut parts = s.trim().splitn(3, '+');
    let name = parts
        .next()
        .ok_or(CheckpointError::BadKey("missing key name"))?;
    let id = parts
        .next()
        .ok_or(CheckpointError::BadKey("missing key id"))?;
    let blob = parts
        .next()
        .ok_or(CheckpointError::BadKey("missing key material"))?;
    if !valid_name(name) {
        return Err(CheckpointError::BadKey("invalid key name"));
    }
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CheckpointError::BadKey("the key id must be 8 hex digits"));
    }
    let mut id_bytes = [0u8; 4];
    for (i, b) in id_bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&id[2 * i..2 * i + 2], 16)
            .map_err(|_| CheckpointError::BadKey("bad key id"))?;
    }
    let blob = B64
        .decode(blob)
        .map_err(|_| CheckpointError::BadKey("the key material is not base64"))?;
    match blob.split_first() {
        Some((&ALG_ED25519, rest)) if rest.len() == 32 => {
            Ok((name.to_owned(), id_bytes, rest.to_vec()))
        }
        Some((&ALG_ED25519, _)) => Err(CheckpointError::BadKey("an Ed25519 key has 32 bytes")),
        _ => Err(CheckpointError::BadKey(
            "only Ed25519 keys (algorithm 1) are supported",
        )),
    }
}

impl NoteSigner {
    /// Reads a `PRIVATE+KEY+name+id+base64` string.
    pub fn from_key(s: &str) -> Result<Self, CheckpointError> {
        let rest = s
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(CheckpointError::BadKey(
                "a private key starts with PRIVATE+KEY+",
            ))?;
        let (name, id, seed) = parse_key_parts(rest)?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| CheckpointError::BadKey("an Ed25519 key has 32 bytes"))?;
        let key = SigningKey::from_bytes(&seed);
        if key_id(&name, &key.verifying_key()) != id {
            return Err(CheckpointError::BadKey("the key id does not match the key"));
        }
        Ok(Self { name, key })
    }

    pub fn verifier(&self) -> NoteVerifier {
        let key = self.key.verifying_key();
        NoteVerifier {
            id: key_id(&self.name, &key),
            name: self.name.clone(),
            key,
        }
    }

    /// The checkpoint as a signed note.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        self.sign_text(checkpoint.body())
    }

    /// The prune record as a signed note.
    pub fn sign_prune(&self, prune: &PruneRecord) -> String {
        self.sign_text(prune.body())
    }

    /// A signed statement other than a checkpoint (an evidence bundle's manifest digest):
    /// `kind` is its first line and must not be a number, so no statement ever reads as a
    /// checkpoint, whose second line is its size; `lines` follow, one per line.
    pub fn sign_statement(&self, kind: &str, lines: &[String]) -> Result<String, CheckpointError> {
        Ok(self.sign_text(statement_text(kind, lines)?))
    }

    fn sign_text(&self, text: String) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut blob = key_id(&self.name, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

impl NoteVerifier {
    /// Reads a `name+id+base64` public key string.
    pub fn from_key(s: &str) -> Result<Self, CheckpointError> {
        let (name, id, key) = parse_key_parts(s)?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| CheckpointError::BadKey("an Ed25519 key has 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| CheckpointError::BadKey("not a valid Ed25519 public key"))?;
        if key_id(&name, &key) != id {
            return Err(CheckpointError::BadKey("the key id does not match the key"));
        }
        Ok(Self { name, id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key as `name+id+base64` (what `from_key` reads and `custos audit keygen`
    /// writes to the `.pub` file).
    pub fn to_key_string(&self) -> String {
        let mut blob = vec![ALG_ED25519];
        blob.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex_id(&self.id), B64.encode(blob))
    }

    /// Verifies a signed checkpoint note and returns the checkpoint it carries.
    pub fn open(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::parse_body(self.verified_text(note)?)
    }

    /// The lines of a statement signed by this key whose first line is `kind`.
    pub fn open_statement(&self, note: &str, kind: &str) -> Result<Vec<String>, CheckpointError> {
        let text = self.verified_text(note)?;
        let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
        if lines.next() != Some(kind) {
            return Err(CheckpointError::Malformed(
                "the note is not a statement of this kind",
            ));
        }
        Ok(lines.map(str::to_owned).collect())
    }

    /// Verifies a signed prune record.
    pub fn open_prune(&self, note: &str) -> Result<PruneRecord, CheckpointError> {
        PruneRecord::parse_body(self.verified_text(note)?)
    }

    /// The signed text of a note whose signature by this key verifies.
    fn verified_text<'n>(&self, note: &'n str) -> Result<&'n str, CheckpointError> {
        let split = note.rfind("\n\n").ok_or(CheckpointError::Malformed(
            "no blank line before the signatures",
        ))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(CheckpointError::Malformed(
                "the signature block must end with a newline",
            ));
        }
        for line in sigs.lines() {
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(CheckpointError::Malformed(
                    "a signature line must start with an em dash",
                ))?;
            let (name, b64) = rest.split_once(' ').ok_or(CheckpointError::Malformed(
                "a signature line needs a name and a signature",
            ))?;
            let blob = B64
                .decode(b64)
                .map_err(|_| CheckpointError::Malformed("a signature is not base64"))?;
            if name != self.name || blob.len() != 68 || blob[..4] != self.id {
                continue; // Someone else's signature (witnesses may cosign): not ours to check.
            }
            let sig = ed25519_dalek::Signature::from_slice(&blob[4..])
                .map_err(|_| CheckpointError::Malformed("bad signature bytes"))?;
            self.key
                .verify_strict(text.as_bytes(), &sig)
                .map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
            return Ok(text);
        }
        Err(CheckpointError::NotSigned(self.name.clone()))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_verifier_writes_the_key_it_reads() {
        let (private, public) = generate_key("custos.test").unwrap();
        let v = NoteSigner::from_key(&private).unwrap().verifier();
        assert_eq!(v.to_key_string(), public);
        assert_eq!(
            NoteVerifier::from_key(&public).unwrap().to_key_string(),
            public
        );
    }

    #[test]
    fn statements_are_signed_and_never_read_as_checkpoints() {
        let (sk, pk) = generate_key("custos-test").unwrap();
        let signer = NoteSigner::from_key(&sk).unwrap();
        let verifier = NoteVerifier::from_key(&pk).unwrap();
        let lines = vec!["period 2026-Q4".to_owned(), "manifest sha256:ab".to_owned()];
        let note = signer.sign_statement("custos.test/v1", &lines).unwrap();
        assert_eq!(
            verifier.open_statement(&note, "custos.test/v1").unwrap(),
            lines
        );
        assert!(verifier.open_statement(&note, "custos.other/v1").is_err());
        assert!(verifier.open(&note).is_err());
        let forged = note.replace("2026-Q4", "2026-Q3");
        assert!(verifier.open_statement(&forged, "custos.test/v1").is_err());
        assert!(signer.sign_statement("12", &lines).is_err());
        assert!(signer.sign_statement("k", &["".to_owned()]).is_err());
    }

    use super::*;
    use proptest::prelude::*;

    fn pair() -> (NoteSigner, NoteVerifier) {
        let (private, public) = generate_key("custos.example/ledger").unwrap();
        (
            NoteSigner::from_key(&private).unwrap(),
            NoteVerifier::from_key(&public).unwrap(),
        )
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "custos.example/ledger".into(),
            size: 42,
            root: crate::leaf_hash(b"x"),
        }
    }

    #[test]
    fn sign_and_open() {
        let (signer, verifier) = pair();
        let note = signer.sign(&checkpoint());
        assert!(note.starts_with("custos.example/ledger\n42\n"));
        assert!(note.contains("\n\n\u{2014} custos.example/ledger "));
        assert_eq!(verifier.open(&note), Ok(checkpoint()));
        assert_eq!(signer.verifier().open(&note), Ok(checkpoint()));
    }

    #[test]
    fn tampering_and_wrong_keys_are_refused() {
        let (signer, verifier) = pair();
        let note = signer.sign(&checkpoint());
        let altered = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            verifier.open(&altered),
            Err(CheckpointError::BadSignature(
                "custos.example/ledger".into()
            ))
        );
        let (_, other) = pair();
        assert!(matches!(
            other.open(&note),
            Err(CheckpointError::NotSigned(_))
        ));
        assert!(matches!(
            verifier.open("no signatures"),
            Err(CheckpointError::Malformed(_))
        ));
        assert!(matches!(
            verifier.open(&note.replace('\u{2014}', "-")),
            Err(CheckpointError::Malformed(_))
        ));
    }

    /// The example from Go's golang.org/x/mod/sumdb/note package documentation: a note
    /// signed there verifies here.
    #[test]
    fn interoperates_with_go_sumdb_note() {
        let verifier = NoteVerifier::from_key(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        )
        .unwrap();
        let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
        let note = format!("{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n");
        // The text is not a checkpoint, so opening fails after the signature checks out.
        assert!(matches!(
            verifier.open(&note),
            Err(CheckpointError::Malformed(_))
        ));
        let tampered = note.replace("answer", "answers");
        assert!(matches!(
            verifier.open(&tampered),
            Err(CheckpointError::BadSignature(_))
        ));
    }

    #[test]
    fn keys_are_checked() {
        let (private, public) = generate_key("log").unwrap();
        assert!(NoteSigner::from_key(&public).is_err());
        // A private key is not a public key, even without its prefix.
        assert!(NoteVerifier::from_key(&private.replace("PRIVATE+KEY+", "")).is_err());
        assert_eq!(NoteVerifier::from_key(&public).unwrap().name(), "log");
        let id = public.split('+').nth(1).unwrap();
        let wrong_id = public.replacen(id, "00000000", 1);
        assert!(NoteVerifier::from_key(&wrong_id).is_err());
        assert!(NoteVerifier::from_key("log+00000000+AQ==").is_err());
        assert!(generate_key("has space").is_err());
        assert!(generate_key("a+b").is_err());
    }

    #[test]
    fn prune_records_and_checkpoints_never_stand_in_for_each_other() {
        let (signer, verifier) = pair();
        let prune = PruneRecord {
            head: checkpoint(),
            exports_sha256: crate::leaf_hash(b"exports"),
            event_index: 57,
            event_leaf: crate::leaf_hash(b"event"),
        };
        let note = signer.sign_prune(&prune);
        assert_eq!(verifier.open_prune(&note), Ok(prune.clone()));
        assert_eq!(read_prune_unverified(&note), Ok(prune));
        assert!(matches!(
            verifier.open(&note),
            Err(CheckpointError::Malformed(_))
        ));
        assert!(read_checkpoint_unverified(&note).is_err());
        let cp = signer.sign(&checkpoint());
        assert!(matches!(
            verifier.open_prune(&cp),
            Err(CheckpointError::Malformed(_))
        ));
        assert!(read_prune_unverified(&cp).is_err());
        assert_eq!(read_checkpoint_unverified(&cp), Ok(checkpoint()));
        // The prune line is signed: changing the event it names breaks the signature.
        let forged = note.replace("event=57", "event=58");
        assert!(matches!(
            verifier.open_prune(&forged),
            Err(CheckpointError::BadSignature(_))
        ));
    }

    #[test]
    fn cosignatures_verify_and_bind_the_checkpoint() {
        let (log, log_v) = pair();
        let (private, public) = generate_key("witness.example/w1").unwrap();
        let w = NoteSigner::from_key(&private).unwrap();
        let wv = NoteVerifier::from_key(&public).unwrap();
        let note = log.sign(&checkpoint());
        let cosigned = format!(
            "{note}{}",
            w.cosign(note_body(&note).unwrap(), 1_700_000_000)
        );
        assert_eq!(wv.open_cosignature(&cosigned), Ok(1_700_000_000));
        // The log's own signature still verifies; the log key is no cosigner.
        assert_eq!(log_v.open(&cosigned), Ok(checkpoint()));
        assert!(log_v.open_cosignature(&cosigned).is_err());
        let altered = cosigned.replacen("42", "43", 1);
        assert!(wv.open_cosignature(&altered).is_err());
    }

    proptest! {
        #[test]
        fn open_never_panics(note in ".{0,300}") {
            let (_, verifier) = pair();
            let _ = verifier.open(&note);
            let _ = verifier.open_prune(&note);
            let _ = read_prune_unverified(&note);
            let _ = read_checkpoint_unverified(&note);
        }

        #[test]
        fn round_trips(size in any::<u64>(), root in any::<[u8; 32]>()) {
            let (signer, verifier) = pair();
            let c = Checkpoint { origin: "o".into(), size, root };
            prop_assert_eq!(verifier.open(&signer.sign(&c)), Ok(c));
        }
    }
}
