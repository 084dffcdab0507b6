//! Identifiers for stored objects: a short type prefix and a UUIDv7, so ids sort by creation
//! time and say what they name (`ten_…`, `team_…`, `app_…`, `key_…`).

/// A new identifier with the given type prefix, e.g. `new_id("key")` → `key_0193…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", crate::random::uuid_v7().simple())
}

/// True when `name` is acceptable as the human name of a tenant, team or app:
/// 1 to 64 characters of `[A-Za-z0-9._-]`, not starting with a dot or dash.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_unique() {
        let a = new_id("key");
        let b = new_id("key");
        assert!(a.starts_with("key_"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 32);
    }

    #[test]
    fn names() {
        assert!(is_valid_name("ml-platform"));
        assert!(is_valid_name("team_1.eu"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("-x"));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("ü"));
        assert!(!is_valid_name(&"a".repeat(65)));
    }
}
