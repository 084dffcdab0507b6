//! SBOM documents: CycloneDX 1.6 JSON and SPDX 2.3 JSON, from the same component list.
//! The caller supplies the time and the document's unique id, so output is reproducible
//! in tests.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{Component, Sbom};

/// What the document describes and when it was made.
pub struct DocumentInfo<'a> {
    /// Name of the scanned project (the folder name, say).
    pub name: &'a str,
    /// RFC 3339 UTC time, e.g. `2026-11-26T01:00:00Z`.
    pub created: &'a str,
    /// A UUID, for CycloneDX's serialNumber and SPDX's namespace.
    pub uuid: &'a str,
    pub tool_version: &'a str,
}

/// Components deduplicated by purl (the same package can appear in several
/// lockfiles), merging their edges and keeping "direct" when any says so.
fn unique(sbom: &Sbom) -> Vec<Component> {
    let mut by_purl: BTreeMap<&str, Component> = BTreeMap::new();
    for c in &sbom.components {
        match by_purl.get_mut(c.purl.as_str()) {
            Some(seen) => {
                let mut deps: BTreeSet<String> = seen.depends_on.drain(..).collect();
                deps.extend(c.depends_on.iter().cloned());
                seen.depends_on = deps.into_iter().collect();
                seen.direct = match (seen.direct, c.direct) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    _ => None,
                };
                seen.is_root &= c.is_root;
                // Dev-only only if every lockfile that lists it says so.
                seen.dev &= c.dev;
            }
            None => {
                by_purl.insert(&c.purl, c.clone());
            }
        }
    }
    by_purl.into_values().collect()
}

/// CycloneDX 1.6 JSON.
pub fn cyclonedx(sbom: &Sbom, info: &DocumentInfo) -> Value {
    let comps = unique(sbom);
    let known: BTreeSet<&str> = comps.iter().map(|c| c.purl.as_str()).collect();
    let components: Vec<Value> = comps
        .iter()
        .map(|c| {
            let mut v = json!({
                "type": "library",
                "bom-ref": c.purl,
                "name": c.name,
                "version": c.version,
                "purl": c.purl,
                "properties": [{"name": "custos:source", "value": c.source}],
            });
            if let Some(range) = &c.version_range {
                // Not pinned: no version to state, the requirement's constraint instead.
                if let Some(o) = v.as_object_mut() {
                    o.remove("version");
                }
                if let Some(props) = v["properties"].as_array_mut() {
                    props.push(json!({"name": "custos:version_range", "value": range}));
                }
            }
            if let (Some(d), Some(props)) = (c.direct, v["properties"].as_array_mut()) {
                props.push(json!({"name": "custos:direct", "value": d.to_string()}));
            }
            if let (Some(l), Some(props)) = (&c.layer, v["properties"].as_array_mut()) {
                props.push(json!({"name": "custos:layer:index", "value": l.index.to_string()}));
                props.push(json!({"name": "custos:layer:digest", "value": l.digest}));
                if let Some(by) = &l.created_by {
                    props.push(json!({"name": "custos:layer:created_by", "value": by}));
                }
            }
            if c.is_root {
                v["type"] = json!("application");
            }
            if c.dev {
                // CycloneDX: "excluded" documents test and other non-runtime use.
                v["scope"] = json!("excluded");
            }
            if let Some(a) = &c.artifact {
                v["type"] = json!(a.kind);
                v["hashes"] = json!([{"alg": "SHA-256", "content": a.sha256}]);
                if let Some(props) = v["properties"].as_array_mut() {
                    props.extend(
                        a.properties
                            .iter()
                            .map(|(k, val)| json!({"name": k, "value": val})),
                    );
                    props.push(json!({"name": "custos:bytes", "value": a.bytes.to_string()}));
                }
                if let Some(card) = &a.model_card {
                    v["modelCard"] = card.clone();
                }
            }
            v
        })
        .collect();
    let dependencies: Vec<Value> = comps
        .iter()
        .map(|c| {
            let on: Vec<&str> = c
                .depends_on
                .iter()
                .map(String::as_str)
                .filter(|d| known.contains(d) && *d != c.purl)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            json!({"ref": c.purl, "dependsOn": on})
        })
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", info.uuid),
        "version": 1,
        "metadata": {
            "timestamp": info.created,
            "tools": {"components": [{"type": "application", "name": "custos", "version": info.tool_version}]},
            "component": {"type": "application", "bom-ref": format!("custos:root:{}", info.name), "name": info.name},
        },
        "components": components,
        "dependencies": dependencies,
    })
}

fn spdx_id(purl: &str) -> String {
    // SPDX ids allow letters, digits, '.' and '-'.
    let body: String = purl
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-Package-{body}")
}

/// SPDX 2.3 JSON.
pub fn spdx(sbom: &Sbom, info: &DocumentInfo) -> Value {
    let comps = unique(sbom);
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for c in &comps {
        // Distinct purls can map to one id after character folding: number the repeats.
        let base = spdx_id(&c.purl);
        let mut id = base.clone();
        let mut n = 2;
        while !used.insert(id.clone()) {
            id = format!("{base}-{n}");
            n += 1;
        }
        ids.insert(&c.purl, id);
    }
    let packages: Vec<Value> = comps
        .iter()
        .map(|c| {
            let mut p = json!({
                "name": c.name,
                "SPDXID": ids[c.purl.as_str()],
                "versionInfo": c.version,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false,
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "NOASSERTION",
                "copyrightText": "NOASSERTION",
                "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": c.purl}],
                "primaryPackagePurpose": if c.artifact.is_some() { "OTHER" } else { "LIBRARY" },
                "comment": format!("found in {}", c.source),
            });
            if let Some(a) = &c.artifact {
                p["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": a.sha256}]);
            }
            if let Some(range) = &c.version_range {
                if let Some(o) = p.as_object_mut() {
                    o.remove("versionInfo");
                }
                p["comment"] = json!(format!("found in {}; not pinned: {range}", c.source));
            }
            p
        })
        .collect();
    let mut relationships = Vec::new();
    for c in &comps {
        if c.is_root || c.direct != Some(false) {
            relationships.push(json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": ids[c.purl.as_str()]}));
        }
        for d in c.depends_on.iter().collect::<BTreeSet<_>>() {
            if let Some(to) = ids.get(d.as_str()).filter(|_| d != &c.purl) {
                relationships.push(json!({"spdxElementId": ids[c.purl.as_str()], "relationshipType": "DEPENDS_ON", "relatedSpdxElement": to}));
            }
        }
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": info.name,
        "documentNamespace": format!("https://spdx.org/spdxdocs/custos-{}-{}", info.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-"), info.uuid),
        "creationInfo": {"created": info.created, "creators": [format!("Tool: custos-{}", info.tool_version)]},
        "packages": packages,
        "relationships": relationships,
    })
}
