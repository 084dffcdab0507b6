//! The threat model of a deployment as configured: its data flows (clients, the gateway,
//! providers and their regions, datasets, stores, webhooks) inside their trust boundaries,
//! drawn as Mermaid and SVG; each attack surface with the controls that cover it and those
//! that are off; and the register's risks placed on their surfaces.

use crate::html::escape;
use crate::risk::Register;
use serde::Serialize;
use std::fmt::Write;

/// A party data flows between.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    pub id: String,
    pub label: String,
    /// `client`, `gateway`, `provider`, `store`, `dataset`, `webhook`, `witness`, `identity`.
    pub kind: &'static str,
    /// The trust boundary it sits in.
    pub boundary: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Flow {
    pub from: String,
    pub to: String,
    pub label: String,
    /// Personal data may ride on it.
    pub personal_data: bool,
}

/// A control's state on a surface.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ControlState {
    /// The id a risk links to (`guard:pii-prompt`), or a name when custos has none.
    pub id: String,
    pub on: bool,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Surface {
    /// `data`, `prompt`, `model`, `supply-chain`, `access`, `cost` (the register's surfaces).
    pub name: &'static str,
    pub what: &'static str,
    pub controls: Vec<ControlState>,
    /// Risks of the register on this surface: id, title, and which of their linked controls
    /// are off or missing here.
    #[serde(default)]
    pub risks: Vec<LinkedRisk>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkedRisk {
    pub id: String,
    pub title: String,
    pub status: String,
    /// Linked controls that are off on this surface.
    pub off: Vec<String>,
}

/// The system as configured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Model {
    pub nodes: Vec<Node>,
    pub flows: Vec<Flow>,
    pub surfaces: Vec<Surface>,
}

impl Model {
    /// Places each open risk of the register on its surface, naming its linked controls that
    /// are off there.
    pub fn link(&mut self, reg: &Register) {
        for s in &mut self.surfaces {
            s.risks = reg
                .risks
                .iter()
                .filter(|r| {
                    r.status() != "closed" && r.surface.as_deref().map(str::trim) == Some(s.name)
                })
                .map(|r| LinkedRisk {
                    id: r.id.clone(),
                    title: r.title.clone().unwrap_or_default(),
                    status: r.status().to_owned(),
                    off: r
                        .controls
                        .iter()
                        .filter(|c| s.controls.iter().any(|x| &x.id == *c && !x.on))
                        .cloned()
                        .collect(),
                })
                .collect();
        }
    }

    /// Controls that are off, with their surface.
    pub fn gaps(&self) -> Vec<(&'static str, &ControlState)> {
        self.surfaces
            .iter()
            .flat_map(|s| {
                s.controls
                    .iter()
                    .filter(|c| !c.on)
                    .map(move |c| (s.name, c))
            })
            .collect()
    }
}

fn mermaid_id(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;").replace(['\n', '\r'], " ")
}

/// A Mermaid flowchart: one subgraph per trust boundary, flows carrying personal data thick.
pub fn mermaid(m: &Model) -> String {
    let mut s = String::from("flowchart LR\n");
    let mut boundaries: Vec<&str> = m.nodes.iter().map(|n| n.boundary.as_str()).collect();
    boundaries.dedup();
    let mut seen = std::collections::BTreeSet::new();
    for b in boundaries {
        if !seen.insert(b) {
            continue;
        }
        let _ = writeln!(
            s,
            "  subgraph {}[\"{}\"]",
            mermaid_id(&format!("tb_{b}")),
            mermaid_text(b)
        );
        for n in m.nodes.iter().filter(|n| n.boundary == b) {
            let (open, close) = match n.kind {
                "store" | "dataset" => ("[(", ")]"),
                "client" => ("([", "])"),
                "provider" | "webhook" | "witness" => ("[/", "/]"),
                _ => ("[", "]"),
            };
            let _ = writeln!(
                s,
                "    {}{open}\"{}\"{close}",
                mermaid_id(&n.id),
                mermaid_text(&n.label)
            );
        }
        s.push_str("  end\n");
    }
    for f in &m.flows {
        let arrow = if f.personal_data { "==>" } else { "-->" };
        let _ = writeln!(
            s,
            "  {} {arrow}|\"{}\"| {}",
            mermaid_id(&f.from),
            mermaid_text(&f.label),
            mermaid_id(&f.to)
        );
    }
    s
}

/// An SVG of the same diagram: boundaries as dashed columns, left to right in the order
/// their nodes come, flows as arrows (personal data in red).
pub fn svg(m: &Model) -> String {
    let mut columns: Vec<(String, Vec<&Node>)> = Vec::new();
    for n in &m.nodes {
        match columns.iter_mut().find(|(b, _)| *b == n.boundary) {
            Some((_, v)) => v.push(n),
            None => columns.push((n.boundary.clone(), vec![n])),
        }
    }
    let (col_w, box_w, box_h, gap, top) = (260u32, 200u32, 44u32, 26u32, 60u32);
    let rows = columns.iter().map(|(_, v)| v.len()).max().unwrap_or(1) as u32;
    let width = 40 + col_w * columns.len().max(1) as u32;
    let height = top + rows * (box_h + gap) + 40;
    let mut at = std::collections::BTreeMap::new();
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12" role="img" aria-label="data flow diagram"><title>Data flows and trust boundaries</title><defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="context-stroke"/></marker></defs>"#
    );
    for (ci, (b, nodes)) in columns.iter().enumerate() {
        let x0 = 20 + ci as u32 * col_w;
        let _ = write!(
            s,
            r##"<rect x="{x0}" y="20" width="{}" height="{}" fill="none" stroke="#888" stroke-dasharray="6 4"/><text x="{}" y="40" font-weight="bold">{}</text>"##,
            col_w - 20,
            height - 40,
            x0 + 10,
            escape(b)
        );
        for (ri, n) in nodes.iter().enumerate() {
            let x = x0 + (col_w - 20 - box_w) / 2;
            let y = top + ri as u32 * (box_h + gap);
            let fill = match n.kind {
                "provider" => "#e3f2fd",
                "store" | "dataset" => "#f3e5f5",
                "gateway" => "#e8f5e9",
                "client" => "#fff8e1",
                _ => "#f5f5f5",
            };
            let label: String = n.label.chars().take(30).collect();
            let _ = write!(
                s,
                r##"<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="{fill}" stroke="#444"/><text x="{}" y="{}" text-anchor="middle"><title>{}</title>{}</text><text x="{}" y="{}" text-anchor="middle" font-size="10" fill="#555">{}</text>"##,
                x + box_w / 2,
                y + 20,
                escape(&n.label),
                escape(&label),
                x + box_w / 2,
                y + 35,
                n.kind
            );
            at.insert(n.id.clone(), (x, y));
        }
    }
    for f in &m.flows {
        let (Some(&(x1, y1)), Some(&(x2, y2))) = (at.get(&f.from), at.get(&f.to)) else {
            continue;
        };
        let (sx, ex) = if x2 >= x1 {
            (x1 + box_w, x2)
        } else {
            (x1, x2 + box_w)
        };
        let (sy, ey) = (y1 + box_h / 2, y2 + box_h / 2);
        let colour = if f.personal_data { "#c62828" } else { "#555" };
        let _ = write!(
            s,
            r#"<line x1="{sx}" y1="{sy}" x2="{ex}" y2="{ey}" stroke="{colour}" stroke-width="{}" marker-end="url(#a)"><title>{}</title></line>"#,
            if f.personal_data { 2 } else { 1 },
            escape(&f.label)
        );
    }
    s.push_str("</svg>");
    s
}

/// The surfaces and their controls as Markdown, gaps first on each.
pub fn markdown(m: &Model) -> String {
    let mut s = String::from("# Threat model\n\n## Data flows\n\n```mermaid\n");
    s.push_str(&mermaid(m));
    s.push_str("```\n");
    for surface in &m.surfaces {
        let _ = write!(s, "\n## {} — {}\n\n", surface.name, surface.what);
        let mut controls: Vec<&ControlState> = surface.controls.iter().collect();
        controls.sort_by_key(|c| c.on);
        for c in controls {
            let _ = writeln!(
                s,
                "- [{}] `{}`: {}",
                if c.on { "x" } else { " " },
                c.id,
                c.detail
            );
        }
        if !surface.risks.is_empty() {
            s.push_str("\nRisks:\n");
            for r in &surface.risks {
                let _ = writeln!(
                    s,
                    "- {} {} ({}){}",
                    r.id,
                    r.title,
                    r.status,
                    if r.off.is_empty() {
                        String::new()
                    } else {
                        format!(" — linked controls off: {}", r.off.join(", "))
                    }
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model {
            nodes: vec![
                Node {
                    id: "app:acme/ml/bot".into(),
                    label: "ml/bot".into(),
                    kind: "client",
                    boundary: "tenant acme".into(),
                },
                Node {
                    id: "gateway".into(),
                    label: "gateway \"main\"".into(),
                    kind: "gateway",
                    boundary: "custos".into(),
                },
                Node {
                    id: "provider:openai".into(),
                    label: "openai <us-east>".into(),
                    kind: "provider",
                    boundary: "provider openai (us-east)".into(),
                },
            ],
            flows: vec![
                Flow {
                    from: "app:acme/ml/bot".into(),
                    to: "gateway".into(),
                    label: "prompts".into(),
                    personal_data: true,
                },
                Flow {
                    from: "gateway".into(),
                    to: "provider:openai".into(),
                    label: "prompts (PII redacted)".into(),
                    personal_data: false,
                },
            ],
            surfaces: vec![Surface {
                name: "prompt",
                what: "model calls",
                controls: vec![
                    ControlState {
                        id: "guard:pii-prompt".into(),
                        on: false,
                        detail: "off".into(),
                    },
                    ControlState {
                        id: "authn".into(),
                        on: true,
                        detail: "keys".into(),
                    },
                ],
                risks: vec![],
            }],
        }
    }

    #[test]
    fn diagrams_name_every_node_and_flow_and_escape_text() {
        let m = model();
        let mm = mermaid(&m);
        assert!(mm.starts_with("flowchart LR\n"));
        assert!(mm.contains("app_acme_ml_bot ==>|\"prompts\"| gateway"));
        assert!(mm.contains("gateway[\"gateway #quot;main#quot;\"]"));
        assert_eq!(mm.matches("subgraph").count(), 3);
        let svg = svg(&m);
        assert!(svg.contains("openai &lt;us-east&gt;"));
        assert_eq!(svg.matches("<line").count(), 2);
    }

    #[test]
    fn risks_land_on_their_surface_with_their_controls_that_are_off() {
        let mut m = model();
        let reg = crate::risk::parse(
            "risks:\n  - {id: R1, surface: prompt, title: injection, controls: [guard:pii-prompt, authn]}\n  - {id: R2, surface: cost}\n  - {id: R3, surface: prompt, status: closed}\n",
        )
        .unwrap()
        .register;
        m.link(&reg);
        assert_eq!(m.surfaces[0].risks.len(), 1);
        assert_eq!(m.surfaces[0].risks[0].off, ["guard:pii-prompt"]);
        assert_eq!(m.gaps().len(), 1);
        let md = markdown(&m);
        assert!(
            md.contains("- [ ] `guard:pii-prompt`: off\n- [x] `authn`"),
            "{md}"
        );
        assert!(md.contains("R1 injection (open) — linked controls off: guard:pii-prompt"));
    }
}
