//! Semantic Versioning 2.0.0: parsing, precedence, and what kind of bump one version is over
//! another (a release's risk tier depends on it).

use std::cmp::Ordering;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<String>,
    pub build: String,
}

/// How a new version moves from an old one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bump {
    Patch,
    Minor,
    Major,
}

fn number(s: &str, what: &str) -> Result<u64, String> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "the {what} version {s:?} is not a number without leading zeros"
        ));
    }
    s.parse()
        .map_err(|_| format!("the {what} version {s:?} is too large"))
}

impl Version {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 2.3.0)");
        let (rest, build) = match s.split_once('+') {
            Some((r, b)) => (r, b),
            None => (s, ""),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((c, p)) => (c, p),
            None => (rest, ""),
        };
        let parts: Vec<&str> = core.split('.').collect();
        let [ma, mi, pa] = parts.as_slice() else {
            return Err(bad());
        };
        let ident_ok =
            |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let pre: Vec<String> = if pre.is_empty() && !rest.contains('-') {
            Vec::new()
        } else {
            let ids: Vec<String> = pre.split('.').map(str::to_owned).collect();
            if ids.iter().any(|i| {
                !ident_ok(i)
                    || (i.len() > 1 && i.starts_with('0') && i.bytes().all(|b| b.is_ascii_digit()))
            }) {
                return Err(bad());
            }
            ids
        };
        if s.contains('+') && (build.is_empty() || !build.split('.').all(ident_ok)) {
            return Err(bad());
        }
        Ok(Version {
            major: number(ma, "major").map_err(|_| bad())?,
            minor: number(mi, "minor").map_err(|_| bad())?,
            patch: number(pa, "patch").map_err(|_| bad())?,
            pre,
            build: build.to_owned(),
        })
    }

    /// The kind of bump from `old` to `self`, or `None` when `self` is not newer.
    pub fn bump_from(&self, old: &Version) -> Option<Bump> {
        if self.cmp_precedence(old) != Ordering::Greater {
            return None;
        }
        Some(if self.major != old.major {
            Bump::Major
        } else if self.minor != old.minor {
            Bump::Minor
        } else {
            Bump::Patch
        })
    }

    /// SemVer precedence (build metadata ignored).
    pub fn cmp_precedence(&self, o: &Version) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(o.major, o.minor, o.patch))
            .then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&o.pre) {
                        let c = match (a.parse::<u64>(), b.parse::<u64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            (Err(_), Err(_)) => a.cmp(b),
                        };
                        if c != Ordering::Equal {
                            return c;
                        }
                    }
                    self.pre.len().cmp(&o.pre.len())
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn precedence_follows_the_spec_example() {
        // semver.org §11: 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta <
        // 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0.
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for w in order.windows(2) {
            let (a, b) = (Version::parse(w[0]).unwrap(), Version::parse(w[1]).unwrap());
            assert_eq!(a.cmp_precedence(&b), Ordering::Less, "{} < {}", w[0], w[1]);
        }
        assert_eq!(
            Version::parse("1.0.0+b1")
                .unwrap()
                .cmp_precedence(&Version::parse("1.0.0+b2").unwrap()),
            Ordering::Equal
        );
    }

    #[test]
    fn bad_versions_are_refused() {
        for s in [
            "1.0",
            "01.0.0",
            "1.0.0-",
            "1.0.0+",
            "1.0.0-01",
            "a.b.c",
            "1.0.0-al_pha",
            "",
        ] {
            assert!(Version::parse(s).is_err(), "{s}");
        }
        let v = Version::parse("2.3.0").unwrap();
        assert_eq!(
            Version::parse("3.0.0").unwrap().bump_from(&v),
            Some(Bump::Major)
        );
        assert_eq!(
            Version::parse("2.4.1").unwrap().bump_from(&v),
            Some(Bump::Minor)
        );
        assert_eq!(
            Version::parse("2.3.1").unwrap().bump_from(&v),
            Some(Bump::Patch)
        );
        assert_eq!(Version::parse("2.3.0").unwrap().bump_from(&v), None);
    }

    proptest! {
        #[test]
        fn precedence_is_a_total_order_consistent_with_parsing(
            a in (0u64..5, 0u64..5, 0u64..5, proptest::option::of("[a-z]{1,3}(\\.(0|[1-9][0-9]?))?")),
            b in (0u64..5, 0u64..5, 0u64..5, proptest::option::of("[a-z]{1,3}(\\.(0|[1-9][0-9]?))?")),
        ) {
            let fmt = |(x, y, z, p): &(u64, u64, u64, Option<String>)| match p {
                Some(p) => format!("{x}.{y}.{z}-{p}"),
                None => format!("{x}.{y}.{z}"),
            };
            let (va, vb) = (Version::parse(&fmt(&a)).unwrap(), Version::parse(&fmt(&b)).unwrap());
            prop_assert_eq!(va.cmp_precedence(&vb), vb.cmp_precedence(&va).reverse());
            prop_assert_eq!(va.cmp_precedence(&va), Ordering::Equal);
            prop_assert_eq!(va.bump_from(&vb).is_some(), va.cmp_precedence(&vb) == Ordering::Greater);
        }
    }
}
