//! Any bytes as an OSV record: parsed or refused; matching arbitrary versions under every
//! ordering scheme and scoring any severity vector never panics.
#![no_main]
use custos_scan::vuln::cvss;
use custos_scan::vuln::osv::{severity, Record};
use custos_scan::vuln::version::Scheme;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<Record>(data) {
        for a in &r.affected {
            if let Some(p) = &a.package {
                for v in ["0", "1.0.0", "1!2.0rc1.post3.dev4+x", "1:2.3-4~5", "v0.0.0-2020", ""] {
                    let hits = r.affects(&p.ecosystem, &p.name, v);
                    let _ = severity(&r, &hits);
                }
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        for head in ["", "CVSS:4.0/", "CVSS:3.1/", "AV:N/Au:N/"] {
            if let Ok((_, score)) = cvss::score(&format!("{head}{s}")) {
                assert!((0.0..=10.0).contains(&score), "{score}");
            }
        }
        let mut mid = s.len() / 2;
        while !s.is_char_boundary(mid) {
            mid -= 1;
        }
        let (a, b) = s.split_at(mid);
        for scheme in [Scheme::SemVer, Scheme::Pep440, Scheme::Dpkg, Scheme::Generic] {
            let _ = scheme.compare(a, b);
        }
    }
});
