//! Any text through every lockfile and package-database cataloger: an error or components
//! with purls, never a panic, a hang or unbounded recursion.
#![no_main]
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "Cargo.lock", "package-lock.json", "poetry.lock", "uv.lock", "Pipfile.lock", "go.mod", "go.sum", "yarn.lock",
    "pnpm-lock.yaml", "gradle.lockfile", "pom.xml", "status", "installed", "METADATA", "requirements.txt",
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let name = NAMES[usize::from(which) % NAMES.len()];
    if let Some(Ok(components)) = custos_scan::sbom::catalog_text(name, text) {
        for c in components {
            assert!(c.purl.starts_with("pkg:"));
        }
    }
});
