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

/// The last UUIDv7 time issued in this process, in milliseconds, times 4096, plus a
/// counter for ids issued within the same millisecond.
static LAST_V7: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A UUIDv7 for the current time: ids from one process sort in the order they were made
/// (a 12-bit counter within each millisecond, as RFC 9562 method 1 allows), and the rest
/// is per-thread random bits. `uuid::Uuid::now_v7` gives the same order but asks the
/// operating system for randomness on every id, a system call per request.
pub fn uuid_v7() -> uuid::Uuid {
    use std::sync::atomic::Ordering;
    let now = u64::try_from(crate::time::now_ms()).unwrap_or(0) << 12;
    let mut last = LAST_V7.load(Ordering::Relaxed);
    let issued = loop {
        // A clock that steps back, or more than 4,096 ids in a millisecond, borrow from
        // the next millisecond rather than break the order.
        let next = now.max(last + 1);
        match LAST_V7.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(seen) => last = seen,
        }
    };
    let ms = issued >> 12;
    let counter = (issued & 0xfff) as u16;
    let mut rand = [0u8; 10];
    fill(&mut rand[2..]);
    // The builder overwrites the top four bits of the first byte with the version.
    rand[..2].copy_from_slice(&counter.to_be_bytes());
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
    fn v7_ids_sort_in_the_order_they_were_made_across_threads() {
        let ids: Vec<Vec<uuid::Uuid>> = (0..4)
            .map(|_| std::thread::spawn(|| (0..5000).map(|_| uuid_v7()).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        for one in &ids {
            assert!(
                one.windows(2).all(|w| w[0] < w[1]),
                "a thread's ids are ordered"
            );
        }
        let all: std::collections::HashSet<_> = ids.iter().flatten().collect();
        assert_eq!(all.len(), 20_000);
        let u = ids[0][0];
        assert_eq!(u.get_version_num(), 7);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        let (secs, _) = u.get_timestamp().unwrap().to_unix();
        let now = u64::try_from(crate::time::now_ms()).unwrap() / 1000;
        assert!(secs.abs_diff(now) < 60, "the id carries the current time");
    }

    #[test]
    fn threads_get_distinct_streams() {
        let a = std::thread::spawn(next_u64).join().unwrap();
        let b = std::thread::spawn(next_u64).join().unwrap();
        assert_ne!(a, b);
    }
}
