//! Version ordering per ecosystem, as each defines it: SemVer 2.0 (crates.io, npm, Go),
//! PEP 440 (PyPI: epochs, pre/post/dev releases, local versions), dpkg (Debian, Ubuntu:
//! epochs, revisions, `~`), and a numeric-aware fallback for the rest. Comparison never
//! panics; a version a scheme cannot parse compares by the fallback.

use std::cmp::Ordering;

/// Which ordering an OSV ecosystem uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    SemVer,
    Pep440,
    Dpkg,
    Apk,
    Maven,
    Generic,
}

impl Scheme {
    pub fn for_ecosystem(ecosystem: &str) -> Scheme {
        let base = ecosystem.split(':').next().unwrap_or(ecosystem);
        match base {
            "crates.io" | "npm" | "Go" | "Hex" | "Pub" | "SwiftURL" => Scheme::SemVer,
            "PyPI" => Scheme::Pep440,
            "Debian" | "Ubuntu" => Scheme::Dpkg,
            "Alpine" | "Wolfi" | "Chainguard" => Scheme::Apk,
            "Maven" => Scheme::Maven,
            _ => Scheme::Generic,
        }
    }

    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            Scheme::SemVer => match (SemVer::parse(a), SemVer::parse(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => generic(a, b),
            },
            Scheme::Pep440 => match (Pep440::parse(a), Pep440::parse(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => generic(a, b),
            },
            Scheme::Dpkg => dpkg(a, b),
            Scheme::Apk => apk(a, b),
            Scheme::Maven => maven(a, b),
            Scheme::Generic => generic(a, b),
        }
    }
}

// ------------------------------------------------------------------ SemVer

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ident {
    Num(u64),
    Alpha(String),
}

impl Ord for Ident {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Ident::Num(a), Ident::Num(b)) => a.cmp(b),
            (Ident::Num(_), Ident::Alpha(_)) => Ordering::Less,
            (Ident::Alpha(_), Ident::Num(_)) => Ordering::Greater,
            (Ident::Alpha(a), Ident::Alpha(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Ident {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemVer {
    core: [u64; 3],
    pre: Vec<Ident>,
}

impl SemVer {
    /// Lenient: a leading `v` (Go) and missing minor/patch are accepted; build metadata ignored.
    pub fn parse(s: &str) -> Option<SemVer> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let s = s.split('+').next()?;
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let mut nums = [0u64; 3];
        let mut parts = core.split('.');
        for (i, slot) in nums.iter_mut().enumerate() {
            match parts.next() {
                Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                    *slot = p.parse().ok()?
                }
                None if i > 0 => break,
                _ => return None,
            }
        }
        if parts.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => Vec::new(),
            Some("") => return None,
            Some(p) => p
                .split('.')
                .map(|id| match id.parse::<u64>() {
                    Ok(n) if id.bytes().all(|b| b.is_ascii_digit()) => Ident::Num(n),
                    _ => Ident::Alpha(id.to_string()),
                })
                .collect(),
        };
        Some(SemVer { core: nums, pre })
    }
}

impl Ord for SemVer {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core
            .cmp(&other.core)
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for SemVer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// ------------------------------------------------------------------ PEP 440

/// A PEP 440 version as a sort key, in the order `packaging` defines.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pep440 {
    epoch: u64,
    release: Vec<u64>,
    /// (phase, n): dev-only releases sort first (phase 0), then a/b/rc (1–3), then final (4).
    pre: (u8, u64),
    /// None sorts before any post release.
    post: Option<u64>,
    /// Releases without .dev sort after those with.
    dev: (u8, u64),
    /// Local segments: text sorts before numbers, numbers numerically.
    local: Vec<(u8, u64, String)>,
}

impl Pep440 {
    pub fn parse(s: &str) -> Option<Pep440> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_prefix('v').unwrap_or(&s);
        let (public, local) = match s.split_once('+') {
            Some((p, l)) => (p, Some(l)),
            None => (s, None),
        };
        let (epoch, rest) = match public.split_once('!') {
            Some((e, r)) => (e.parse().ok()?, r),
            None => (0, public),
        };
        let b = rest.as_bytes();
        let mut i = 0;
        let number = |i: &mut usize| -> Option<u64> {
            let start = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            if *i == start {
                None
            } else {
                rest[start..*i].parse().ok()
            }
        };
        let mut release = vec![number(&mut i)?];
        while i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
            release.push(number(&mut i)?);
        }
        while release.len() > 1 && release.last() == Some(&0) {
            release.pop();
        }
        let skip_sep = |i: &mut usize| {
            if *i < b.len() && matches!(b[*i], b'.' | b'-' | b'_') {
                *i += 1;
            }
        };
        let word = |i: &mut usize, words: &[&str]| -> Option<usize> {
            for (k, w) in words.iter().enumerate() {
                if rest[*i..].starts_with(w) {
                    *i += w.len();
                    return Some(k);
                }
            }
            None
        };
        let mut pre = None;
        let mut j = i;
        skip_sep(&mut j);
        // Longest spellings first: "preview" before "pre", "alpha" before "a".
        if let Some(k) = word(
            &mut j,
            &["alpha", "beta", "preview", "pre", "rc", "a", "b", "c"],
        ) {
            let phase = match k {
                0 | 5 => 1,
                1 | 6 => 2,
                _ => 3,
            };
            skip_sep(&mut j);
            let n = number(&mut j).unwrap_or(0);
            pre = Some((phase, n));
            i = j;
        }
        let mut post = None;
        let mut j = i;
        if j < b.len() && b[j] == b'-' && j + 1 < b.len() && b[j + 1].is_ascii_digit() {
            j += 1;
            post = number(&mut j);
            i = j;
        } else {
            skip_sep(&mut j);
            if word(&mut j, &["post", "rev", "r"]).is_some() {
                skip_sep(&mut j);
                post = Some(number(&mut j).unwrap_or(0));
                i = j;
            }
        }
        let mut dev = None;
        let mut j = i;
        skip_sep(&mut j);
        if word(&mut j, &["dev"]).is_some() {
            skip_sep(&mut j);
            dev = Some(number(&mut j).unwrap_or(0));
            i = j;
        }
        if i != b.len() {
            return None;
        }
        let pre_key = match (pre, post, dev) {
            (None, None, Some(_)) => (0, 0),
            (None, _, _) => (4, 0),
            (Some(p), _, _) => p,
        };
        let local = local
            .map(|l| {
                l.split(['.', '-', '_'])
                    .map(|p| match p.parse::<u64>() {
                        Ok(n) => (1, n, String::new()),
                        Err(_) => (0, 0, p.to_string()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Pep440 {
            epoch,
            release,
            pre: pre_key,
            post,
            dev: match dev {
                Some(n) => (0, n),
                None => (1, 0),
            },
            local,
        })
    }
}

// ------------------------------------------------------------------ dpkg

fn dpkg_order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternate non-digit runs (letters before others, `~` before all,
/// even the end) and numeric runs.
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let mut first_diff = 0;
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = dpkg_order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let bc = dpkg_order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == 0 {
                first_diff = i32::from(a[i]) - i32::from(b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    Ordering::Equal
}

/// Debian version comparison: `[epoch:]upstream[-revision]`.
pub fn dpkg(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) => (e.parse().unwrap_or(0), r),
            None => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    let (ea, ua, ra) = split(a.trim());
    let (eb, ub, rb) = split(b.trim());
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| verrevcmp(ra.as_bytes(), rb.as_bytes()))
}

/// Alpine (apk) versions: `1.2.3[letter][_suffix[N]]…[-rN]`. Suffixes `_alpha`, `_beta`,
/// `_pre`, `_rc` sort before the plain version; `_cvs`, `_svn`, `_git`, `_hg`, `_p` after.
pub fn apk(a: &str, b: &str) -> Ordering {
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    struct Key {
        nums: Vec<u64>,
        letter: u8,
        suffixes: Vec<(i8, u64)>,
        revision: u64,
    }
    fn key(v: &str) -> Key {
        let (main, rev) = match v.rsplit_once("-r") {
            Some((m, r)) if r.bytes().all(|b| b.is_ascii_digit()) && !r.is_empty() => {
                (m, r.parse().unwrap_or(0))
            }
            _ => (v, 0),
        };
        let mut parts = main.split('_');
        let head = parts.next().unwrap_or("");
        let letter = head
            .bytes()
            .last()
            .filter(u8::is_ascii_alphabetic)
            .unwrap_or(0);
        let digits = if letter != 0 {
            &head[..head.len() - 1]
        } else {
            head
        };
        let nums = digits.split('.').map(|n| n.parse().unwrap_or(0)).collect();
        let suffixes = parts
            .map(|p| {
                let name: String = p.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
                let n = p[name.len()..].parse().unwrap_or(0);
                let rank = match name.as_str() {
                    "alpha" => -4,
                    "beta" => -3,
                    "pre" => -2,
                    "rc" => -1,
                    "cvs" => 1,
                    "svn" => 2,
                    "git" => 3,
                    "hg" => 4,
                    "p" => 5,
                    _ => 0,
                };
                (rank, n)
            })
            .collect();
        Key {
            nums,
            letter,
            suffixes,
            revision: rev,
        }
    }
    let (ka, kb) = (key(a.trim()), key(b.trim()));
    // Compare release numbers, then letters, then suffixes where a missing suffix is
    // "the release itself" (rank 0), then the package revision.
    ka.nums
        .cmp(&kb.nums)
        .then(ka.letter.cmp(&kb.letter))
        .then_with(|| {
            let n = ka.suffixes.len().max(kb.suffixes.len());
            for i in 0..n {
                let x = ka.suffixes.get(i).copied().unwrap_or((0, 0));
                let y = kb.suffixes.get(i).copied().unwrap_or((0, 0));
                if x != y {
                    return x.cmp(&y);
                }
            }
            Ordering::Equal
        })
        .then(ka.revision.cmp(&kb.revision))
}

/// Maven versions, after `ComparableVersion`: numeric and qualifier items split on `.`, `-`
/// and digit/letter changes; qualifiers alpha < beta < milestone < rc < snapshot < release
/// (`ga`, `final`, `release`, empty) < sp < anything else (alphabetical); trailing zeros and
/// release qualifiers do not count.
pub fn maven(a: &str, b: &str) -> Ordering {
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    enum Item {
        // Variant order is the comparison order between kinds.
        Qualifier(u8, String),
        Number(u64),
    }
    fn qualifier(q: &str) -> Item {
        let q = q.to_ascii_lowercase();
        let (rank, rest) = match q.as_str() {
            "alpha" | "a" => (0, String::new()),
            "beta" | "b" => (1, String::new()),
            "milestone" | "m" => (2, String::new()),
            "rc" | "cr" => (3, String::new()),
            "snapshot" => (4, String::new()),
            "" | "ga" | "final" | "release" => (5, String::new()),
            "sp" => (6, String::new()),
            _ => (7, q),
        };
        Item::Qualifier(rank, rest)
    }
    fn items(v: &str) -> Vec<Item> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut digit: Option<bool> = None;
        let flush = |cur: &mut String, out: &mut Vec<Item>| {
            if !cur.is_empty() {
                out.push(match cur.parse::<u64>() {
                    Ok(n) if cur.bytes().all(|b| b.is_ascii_digit()) => Item::Number(n),
                    _ => qualifier(cur),
                });
                cur.clear();
            }
        };
        for c in v.trim().chars() {
            if c == '.' || c == '-' || c == '_' {
                flush(&mut cur, &mut out);
                digit = None;
                continue;
            }
            let d = c.is_ascii_digit();
            if digit.is_some_and(|x| x != d) {
                flush(&mut cur, &mut out);
            }
            digit = Some(d);
            cur.push(c);
        }
        flush(&mut cur, &mut out);
        // "1.0.0" = "1" = "1-ga": drop trailing zeros and release qualifiers.
        while matches!(
            out.last(),
            Some(Item::Number(0)) | Some(Item::Qualifier(5, _))
        ) && out.len() > 1
        {
            out.pop();
        }
        out
    }
    let (x, y) = (items(a), items(b));
    let n = x.len().max(y.len());
    for i in 0..n {
        // A missing item compares as the neutral element of the other's kind.
        let pad = |other: &Item| match other {
            Item::Number(_) => Item::Number(0),
            Item::Qualifier(..) => Item::Qualifier(5, String::new()),
        };
        let (p, q) = match (x.get(i), y.get(i)) {
            (Some(p), Some(q)) => (p.clone(), q.clone()),
            (Some(p), None) => (p.clone(), pad(p)),
            (None, Some(q)) => (pad(q), q.clone()),
            (None, None) => break,
        };
        if p != q {
            return p.cmp(&q);
        }
    }
    Ordering::Equal
}

/// Numeric-aware comparison for schemes custos does not model exactly:
/// runs of digits compare as numbers, other runs as text.
pub fn generic(a: &str, b: &str) -> Ordering {
    fn tokens(s: &str) -> Vec<Ident> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut digit = None;
        for c in s.chars() {
            if !c.is_alphanumeric() {
                if !cur.is_empty() {
                    out.push(tok(&cur));
                    cur.clear();
                }
                digit = None;
                continue;
            }
            let d = c.is_ascii_digit();
            if digit.is_some_and(|x| x != d) && !cur.is_empty() {
                out.push(tok(&cur));
                cur.clear();
            }
            digit = Some(d);
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(tok(&cur));
        }
        out
    }
    fn tok(s: &str) -> Ident {
        match s.parse::<u64>() {
            Ok(n) => Ident::Num(n),
            Err(_) => Ident::Alpha(s.to_ascii_lowercase()),
        }
    }
    tokens(a).cmp(&tokens(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    fn sorted(scheme: Scheme, vs: &[&str]) {
        for w in vs.windows(2) {
            assert_eq!(scheme.compare(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
            assert_eq!(scheme.compare(w[1], w[0]), Greater, "{} > {}", w[1], w[0]);
        }
    }

    #[test]
    fn semver_order() {
        sorted(
            Scheme::SemVer,
            &[
                "1.0.0-alpha",
                "1.0.0-alpha.1",
                "1.0.0-alpha.beta",
                "1.0.0-beta",
                "1.0.0-beta.2",
                "1.0.0-beta.11",
                "1.0.0-rc.1",
                "1.0.0",
                "1.0.1",
                "1.2",
                "v1.10.0",
            ],
        );
        assert_eq!(Scheme::SemVer.compare("1.0.0+build.1", "1.0.0"), Equal);
    }

    #[test]
    fn pep440_order() {
        sorted(
            Scheme::Pep440,
            &[
                "1.0.dev456",
                "1.0a1",
                "1.0a2.dev456",
                "1.0a12.dev456",
                "1.0a12",
                "1.0b1.dev456",
                "1.0b2",
                "1.0b2.post345.dev456",
                "1.0b2.post345",
                "1.0rc1.dev456",
                "1.0rc1",
                "1.0",
                "1.0+abc.5",
                "1.0+abc.7",
                "1.0+5",
                "1.0.post456.dev34",
                "1.0.post456",
                "1.1.dev1",
                "1!0.1",
            ],
        );
        assert_eq!(Scheme::Pep440.compare("1.0", "1.0.0"), Equal);
        assert_eq!(Scheme::Pep440.compare("1.0-1", "1.0.post1"), Equal);
        assert_eq!(Scheme::Pep440.compare("1.0alpha1", "1.0a1"), Equal);
        assert_eq!(Scheme::Pep440.compare("1.0c1", "1.0rc1"), Equal);
    }

    #[test]
    fn apk_order() {
        sorted(
            Scheme::Apk,
            &[
                "1.2.3_alpha",
                "1.2.3_rc1",
                "1.2.3",
                "1.2.3-r1",
                "1.2.3-r10",
                "1.2.3_p1",
                "1.2.3a",
                "1.2.4",
                "1.10",
            ],
        );
    }

    #[test]
    fn maven_order() {
        sorted(
            Scheme::Maven,
            &[
                "1.0-alpha-1",
                "1.0-beta",
                "1.0-M1",
                "1.0-RC1",
                "1.0-SNAPSHOT",
                "1.0",
                "1.0-sp1",
                "1.0.1",
                "1.1",
                "2.0-jre",
            ],
        );
        assert_eq!(maven("1.0.0", "1"), Equal);
        assert_eq!(maven("1.0-ga", "1.0"), Equal);
        assert_eq!(maven("32.1.2-jre", "32.1.2-jre"), Equal);
    }

    #[test]
    fn dpkg_order() {
        sorted(
            Scheme::Dpkg,
            &[
                "1.0~rc1",
                "1.0",
                "1.0-1",
                "1.0-1ubuntu1",
                "1.0a",
                "1.0.1",
                "1.10",
                "1:0.9",
            ],
        );
        assert_eq!(dpkg("1.0-01", "1.0-1"), Equal);
    }
}
