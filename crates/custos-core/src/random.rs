//! Fast per-thread randomness for identifiers that must be unique and unpredictable enough
//! to not collide (request ids, trace and span ids), but are not secrets. Secrets (API keys)
//! use the operating system's CSPRNG instead. One system call per thread, not per request.

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    // A v4 UUID draws from the operating system's CSPRNG.
    let b = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) | 1
}

/// The next 64 random bits (SplitMix64).
pub fn next_u64() -> u64 {
    STATE.with(|s| {
        let next = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// `n` bytes from the operating system's CSPRNG (through v4 UUIDs), for keys.
pub fn secret(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        out.extend_from_slice(&uuid::Uuid::new_v4().into_bytes());
    }
    out.truncate(n);
    out
}

/// Fills `out` with random bytes.
pub fn fill(out: &mut [u8]) {
    for chunk in out.chunks_mut(8) {
        let r = next_u64().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
}

/// `n` random bytes as lowercase hex.
pub fn hex(n: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = vec![0u8; n];
    fill(&mut bytes);
    let mut s = String::with_capacity(n * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// A UUIDv7 for the current time with per-thread random bits.
pub fn uuid_v7() -> uuid::Uuid {
    let mut rand = [0u8; 10];
    fill(&mut rand);
    let ms = u64::try_from(crate::time::now_ms()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(ms, &rand).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_differ_and_have_the_right_shape() {
        let a: Vec<u64> = (0..1000).map(|_| next_u64()).collect();
        let unique: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(unique.len(), a.len());
        let h = hex(8);
        assert_eq!(h.len(), 16);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        let u = uuid_v7();
        assert_eq!(u.get_version_num(), 7);
        assert_ne!(uuid_v7(), u);
    }

    #[test]
    fn threads_get_distinct_streams() {
        let a = std::thread::spawn(next_u64).join().unwrap();
        let b = std::thread::spawn(next_u64).join().unwrap();
        assert_ne!(a, b);
    }
}
