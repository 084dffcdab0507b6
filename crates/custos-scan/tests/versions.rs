//! Property tests for version ordering: every scheme is a total order on what it parses
//! (reflexive, antisymmetric, transitive), and the orderings agree with the components
//! they are built from.

use custos_scan::vuln::version::Scheme;
use proptest::prelude::*;
use std::cmp::Ordering;

fn semver() -> impl Strategy<Value = String> {
    (
        0u32..20,
        0u32..20,
        0u32..20,
        proptest::option::of("(alpha|beta|rc)(\\.[0-9]{1,2})?"),
    )
        .prop_map(|(a, b, c, pre)| match pre {
            Some(p) => format!("{a}.{b}.{c}-{p}"),
            None => format!("{a}.{b}.{c}"),
        })
}

fn pep440() -> impl Strategy<Value = String> {
    (
        0u32..2,
        proptest::collection::vec(0u32..12, 1..4),
        proptest::option::of(("a|b|rc", 0u32..5)),
        proptest::option::of(0u32..5),
        proptest::option::of(0u32..5),
    )
        .prop_map(|(epoch, rel, pre, post, dev)| {
            let mut s = if epoch > 0 {
                format!("{epoch}!")
            } else {
                String::new()
            };
            s += &rel.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
            if let Some((l, n)) = pre {
                s += &format!("{l}{n}");
            }
            if let Some(p) = post {
                s += &format!(".post{p}");
            }
            if let Some(d) = dev {
                s += &format!(".dev{d}");
            }
            s
        })
}

fn dpkg() -> impl Strategy<Value = String> {
    (
        0u32..2,
        "[0-9]{1,2}(\\.[0-9]{1,2}){0,2}(~rc[0-9])?",
        proptest::option::of("[0-9]{1,2}(ubuntu[0-9])?"),
    )
        .prop_map(|(e, up, rev)| {
            let mut s = if e > 0 { format!("{e}:{up}") } else { up };
            if let Some(r) = rev {
                s += &format!("-{r}");
            }
            s
        })
}

const APK: &str = "[0-9]{1,2}(\\.[0-9]{1,2}){0,2}[a-c]?(_(alpha|rc|p)[0-9]?)?(-r[0-9])?";
const MAVEN: &str = "[0-9]{1,2}(\\.[0-9]{1,2}){0,2}(-(alpha|beta|rc|SNAPSHOT|sp|jre)[0-9]?)?";

fn total_order(scheme: Scheme, a: &str, b: &str, c: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(scheme.compare(a, a), Ordering::Equal);
    prop_assert_eq!(scheme.compare(a, b), scheme.compare(b, a).reverse());
    if scheme.compare(a, b) != Ordering::Greater && scheme.compare(b, c) != Ordering::Greater {
        prop_assert_ne!(
            scheme.compare(a, c),
            Ordering::Greater,
            "{} <= {} <= {}",
            a,
            b,
            c
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn semver_is_a_total_order(a in semver(), b in semver(), c in semver()) {
        total_order(Scheme::SemVer, &a, &b, &c)?;
    }

    #[test]
    fn pep440_is_a_total_order(a in pep440(), b in pep440(), c in pep440()) {
        total_order(Scheme::Pep440, &a, &b, &c)?;
    }

    #[test]
    fn dpkg_is_a_total_order(a in dpkg(), b in dpkg(), c in dpkg()) {
        total_order(Scheme::Dpkg, &a, &b, &c)?;
    }

    #[test]
    fn apk_is_a_total_order(a in APK, b in APK, c in APK) {
        total_order(Scheme::Apk, &a, &b, &c)?;
    }

    #[test]
    fn maven_is_a_total_order(a in MAVEN, b in MAVEN, c in MAVEN) {
        total_order(Scheme::Maven, &a, &b, &c)?;
    }

    #[test]
    fn generic_is_a_total_order(a in "[0-9a-z.\\-]{0,12}", b in "[0-9a-z.\\-]{0,12}", c in "[0-9a-z.\\-]{0,12}") {
        total_order(Scheme::Generic, &a, &b, &c)?;
    }

    #[test]
    fn release_numbers_order_numerically(x in 0u32..1000, y in 0u32..1000) {
        for scheme in [Scheme::SemVer, Scheme::Pep440, Scheme::Dpkg, Scheme::Generic] {
            prop_assert_eq!(scheme.compare(&format!("1.{x}.0"), &format!("1.{y}.0")), x.cmp(&y));
        }
    }

    #[test]
    fn prereleases_sort_before_their_release(x in 0u32..50, n in 0u32..9) {
        prop_assert_eq!(Scheme::SemVer.compare(&format!("2.{x}.0-rc.{n}"), &format!("2.{x}.0")), Ordering::Less);
        prop_assert_eq!(Scheme::Pep440.compare(&format!("2.{x}rc{n}"), &format!("2.{x}")), Ordering::Less);
        prop_assert_eq!(Scheme::Pep440.compare(&format!("2.{x}.dev{n}"), &format!("2.{x}a0")), Ordering::Less);
        prop_assert_eq!(Scheme::Dpkg.compare(&format!("2.{x}~rc{n}"), &format!("2.{x}")), Ordering::Less);
    }
}
