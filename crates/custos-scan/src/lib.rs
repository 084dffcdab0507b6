//! custos' offline scanners. `secrets` finds credentials in files with Gitleaks-compatible
//! rules (one keyword pass, then only the rules whose keywords occur), and `report` renders
//! findings as a table, JSON or SARIF 2.1.0 for code scanning; `sbom` catalogs lockfiles
//! into CycloneDX 1.6 and SPDX 2.3 documents.

pub mod iac;
pub mod image;
pub mod report;
pub mod sbom;
pub mod secrets;
pub mod vuln;
