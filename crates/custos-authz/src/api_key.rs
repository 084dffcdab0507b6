//! API keys: `ck_live_` + 43 base62 characters (256 random bits) + a 6-character checksum.
//!
//! Only the SHA-256 digest of a key is ever stored. The checksum (CRC-32 of the random part)
//! lets custos refuse a mistyped key without a lookup and lets secret scanners recognize a
//! real custos key with near-zero false positives, as GitHub's token format does.

use sha2::{Digest, Sha256};
use std::fmt;

/// The readable prefix every custos API key starts with.
pub const PREFIX: &str = "ck_live_";
const BODY_LEN: usize = 43;
const CHECK_LEN: usize = 6;
/// Total length of a key in characters.
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN + CHECK_LEN;
/// Characters of a key shown in listings (`ck_live_` and 6 more): enough to recognize it.
pub const DISPLAY_PREFIX_LEN: usize = PREFIX.len() + 6;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiKeyError {
    #[error("the key does not start with `{PREFIX}`")]
    Prefix,
    #[error("the key has {0} characters; custos keys have {KEY_LEN}")]
    Length(usize),
    #[error("the key contains characters outside [0-9A-Za-z]")]
    Charset,
    #[error("the key's checksum does not match: it was mistyped or truncated")]
    Checksum,
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// SHA-256 digest of a full key: what the store keeps and the index is keyed by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({}…)", &self.to_hex()[..12])
    }
}

/// A freshly minted key. `secret` is shown to the user once and then dropped.
pub struct MintedKey {
    pub secret: String,
    pub digest: KeyDigest,
    pub display_prefix: String,
}

impl fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, not even in debug output.
        f.debug_struct("MintedKey")
            .field("display_prefix", &self.display_prefix)
            .finish_non_exhaustive()
    }
}

/// Mints a new key from the operating system's CSPRNG.
pub fn mint() -> Result<MintedKey, ApiKeyError> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| ApiKeyError::Random(e.to_string()))?;
    Ok(mint_from(random))
}

/// Deterministic minting from given randomness (tests and benchmarks).
pub fn mint_from(random: [u8; 32]) -> MintedKey {
    let body = base62_fixed(&random, BODY_LEN);
    let check = base62_fixed(&crc32(body.as_bytes()).to_be_bytes(), CHECK_LEN);
    let secret = format!("{PREFIX}{body}{check}");
    MintedKey {
        digest: KeyDigest::of(&secret),
        display_prefix: secret[..DISPLAY_PREFIX_LEN].to_owned(),
        secret,
    }
}

/// Checks a presented key's shape and checksum without any lookup.
pub fn check_format(key: &str) -> Result<(), ApiKeyError> {
    let rest = key.strip_prefix(PREFIX).ok_or(ApiKeyError::Prefix)?;
    if key.len() != KEY_LEN {
        return Err(ApiKeyError::Length(key.chars().count()));
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiKeyError::Charset);
    }
    let (body, check) = rest.split_at(BODY_LEN);
    if base62_fixed(&crc32(body.as_bytes()).to_be_bytes(), CHECK_LEN) != check {
        return Err(ApiKeyError::Checksum);
    }
    Ok(())
}

/// Big-endian base62 of `bytes`, left-padded with '0' to exactly `width` characters.
fn base62_fixed(bytes: &[u8], width: usize) -> String {
    let mut num: Vec<u8> = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while digits.len() < width {
        let mut rem: u32 = 0;
        for byte in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            rem = acc % 62;
        }
        digits.push(ALPHABET[rem as usize]);
    }
    digits.reverse();
    // ALPHABET is ASCII, so this is valid UTF-8.
    String::from_utf8(digits).unwrap_or_default()
}

/// CRC-32 (IEEE 802.3, reflected), bitwise: keys are short and minted rarely.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn minted_keys_have_the_documented_shape() {
        let k = mint().unwrap();
        assert_eq!(k.secret.len(), KEY_LEN);
        assert!(k.secret.starts_with(PREFIX));
        assert!(k.secret.starts_with(&k.display_prefix));
        assert_eq!(check_format(&k.secret), Ok(()));
        assert_eq!(k.digest, KeyDigest::of(&k.secret));
        assert!(!format!("{k:?}").contains(&k.secret));
        assert_ne!(mint().unwrap().secret, k.secret);
    }

    #[test]
    fn malformed_keys_are_refused() {
        let k = mint_from([7; 32]).secret;
        assert_eq!(check_format("sk-abc"), Err(ApiKeyError::Prefix));
        assert_eq!(
            check_format(&k[..KEY_LEN - 1]),
            Err(ApiKeyError::Length(KEY_LEN - 1))
        );
        let mut typo = k.clone().into_bytes();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            check_format(&String::from_utf8(typo).unwrap()),
            Err(ApiKeyError::Checksum)
        );
        let bad = format!("{}{}", &k[..20], "-".repeat(KEY_LEN - 20));
        assert_eq!(check_format(&bad), Err(ApiKeyError::Charset));
    }

    #[test]
    fn digest_hex_round_trips() {
        let d = KeyDigest::of("x");
        assert_eq!(KeyDigest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(KeyDigest::from_hex("zz"), None);
    }

    proptest! {
        #[test]
        fn every_minted_key_validates(random in any::<[u8; 32]>()) {
            let k = mint_from(random);
            prop_assert_eq!(check_format(&k.secret), Ok(()));
        }

        #[test]
        fn distinct_randomness_gives_distinct_keys(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            prop_assume!(a != b);
            prop_assert_ne!(mint_from(a).secret, mint_from(b).secret);
        }

        #[test]
        fn check_format_never_panics(s in ".{0,80}") {
            let _ = check_format(&s);
        }
    }
}
