//! Request ids: the client's `X-Request-ID` when it is safe to echo and log, else a new UUIDv7.

use std::fmt;

/// Longest client-supplied request id custos accepts.
pub const MAX_LEN: usize = 128;

/// A validated request id: 1 to 128 characters of `[A-Za-z0-9._-]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// Accepts the client's value when valid; otherwise `None` (the caller mints a new one).
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.is_empty() || value.len() > MAX_LEN {
            return None;
        }
        if value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            // All bytes are ASCII, so this conversion cannot fail.
            std::str::from_utf8(value).ok().map(|s| Self(s.to_owned()))
        } else {
            None
        }
    }

    /// A fresh, time-ordered id (UUIDv7, hyphenated).
    pub fn generate() -> Self {
        Self(crate::random::uuid_v7().hyphenated().to_string())
    }

    /// The client's value if valid, else a new one.
    pub fn from_client(value: Option<&[u8]>) -> Self {
        value.and_then(Self::parse).unwrap_or_else(Self::generate)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_valid_and_refuses_invalid() {
        assert_eq!(
            RequestId::parse(b"abc-123_x.y").unwrap().as_str(),
            "abc-123_x.y"
        );
        assert!(RequestId::parse(b"").is_none());
        assert!(RequestId::parse(b"has space").is_none());
        assert!(RequestId::parse(b"new\nline").is_none());
        assert!(RequestId::parse("é".as_bytes()).is_none());
        assert!(RequestId::parse(&[b'a'; 128]).is_some());
        assert!(RequestId::parse(&[b'a'; 129]).is_none());
    }

    #[test]
    fn generated_ids_are_uuid_v7() {
        let id = RequestId::generate();
        let parsed = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert!(RequestId::parse(id.as_str().as_bytes()).is_some());
    }

    proptest! {
        #[test]
        fn from_client_is_always_valid(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let id = RequestId::from_client(Some(&bytes));
            prop_assert!(RequestId::parse(id.as_str().as_bytes()).is_some());
            if RequestId::parse(&bytes).is_some() {
                prop_assert_eq!(id.as_str().as_bytes(), &bytes[..]);
            }
        }
    }
}
