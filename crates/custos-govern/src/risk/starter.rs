//! The starter register `custos risk init` writes: the risks every AI system behind a gateway
//! carries (the OWASP Top 10 for LLM applications, 2025, and the data, access, supply-chain
//! and cost risks around them), linked to the controls of the running configuration.

use std::collections::BTreeMap;
use std::fmt::Write;

struct Seed {
    id: &'static str,
    title: &'static str,
    surface: &'static str,
    threat: &'static str,
    owasp: Option<&'static str>,
    likelihood: u8,
    impact: u8,
    frequency: (f64, f64, f64),
    magnitude: (f64, f64, f64),
    mitigation: &'static str,
    /// Controls to link when the running configuration has them, in order of preference.
    controls: &'static [&'static str],
}

const SEEDS: &[Seed] = &[
    Seed { id: "R01", title: "Prompt injection makes the model ignore its instructions or leak data", surface: "prompt", threat: "prompt-injection", owasp: Some("LLM01"), likelihood: 4, impact: 4, frequency: (1.0, 6.0, 24.0), magnitude: (2_000.0, 25_000.0, 400_000.0), mitigation: "Treat model output as untrusted; least-privilege tools; PII guard redacts on the way in and out", controls: &["guard:pii-prompt", "guard:pii-response", "gate:evidence:eval"] },
    Seed { id: "R02", title: "Personal data in prompts reaches a provider or a log", surface: "data", threat: "information-disclosure", owasp: Some("LLM02"), likelihood: 4, impact: 4, frequency: (2.0, 10.0, 50.0), magnitude: (1_000.0, 15_000.0, 1_000_000.0), mitigation: "PII guard on prompts and responses; identifiers sealed in the ledger; DPIA for new flows", controls: &["guard:pii-prompt", "guard:pii-response", "check:erasure-sla", "check:dpia-approved"] },
    Seed { id: "R03", title: "A dependency, image or model from the supply chain is compromised or vulnerable", surface: "supply-chain", threat: "supply-chain-compromise", owasp: Some("LLM03"), likelihood: 3, impact: 5, frequency: (0.1, 0.5, 3.0), magnitude: (50_000.0, 250_000.0, 5_000_000.0), mitigation: "SBOM and OSV scan per release; signed models only; critical CVEs block promotion", controls: &["check:release-vulns", "gate:model-signature", "check:models-signed"] },
    Seed { id: "R04", title: "Training or retrieval data is poisoned", surface: "data", threat: "poisoning", owasp: Some("LLM04"), likelihood: 2, impact: 4, frequency: (0.05, 0.2, 1.0), magnitude: (20_000.0, 150_000.0, 2_000_000.0), mitigation: "Datasets pinned by digest with datasheets; lineage recorded; eval before promotion", controls: &["gate:evidence:eval", "gate:release-approvals"] },
    Seed { id: "R05", title: "Model output is used unchecked downstream (injection into HTML, SQL, shells)", surface: "model", threat: "improper-output-handling", owasp: Some("LLM05"), likelihood: 3, impact: 4, frequency: (0.5, 2.0, 10.0), magnitude: (5_000.0, 40_000.0, 500_000.0), mitigation: "Encode and validate output in the app; tests in the release evidence", controls: &["gate:evidence:tests"] },
    Seed { id: "R06", title: "An agent's tools and permissions exceed what the task needs", surface: "access", threat: "excessive-agency", owasp: Some("LLM06"), likelihood: 3, impact: 4, frequency: (0.2, 1.0, 6.0), magnitude: (10_000.0, 80_000.0, 1_000_000.0), mitigation: "Cedar policies deny by default; time-bound grants; quarterly access review", controls: &["check:access-review", "check:key-rotation"] },
    Seed { id: "R07", title: "The system prompt, with secrets or rules in it, leaks", surface: "prompt", threat: "system-prompt-leakage", owasp: Some("LLM07"), likelihood: 4, impact: 2, frequency: (1.0, 4.0, 20.0), magnitude: (500.0, 5_000.0, 50_000.0), mitigation: "No credentials in prompts (secrets scan); prompts versioned and reviewed in releases", controls: &["gate:release-approvals"] },
    Seed { id: "R08", title: "Embeddings or a vector store leak or mix tenants' data", surface: "data", threat: "embedding-weakness", owasp: Some("LLM08"), likelihood: 2, impact: 4, frequency: (0.1, 0.5, 2.0), magnitude: (10_000.0, 100_000.0, 1_000_000.0), mitigation: "Per-tenant isolation in the store; access to embeddings through the gateway only", controls: &["check:access-review"] },
    Seed { id: "R09", title: "Hallucinated content reaches a regulated output (advice, a decision, a record)", surface: "model", threat: "hallucination", owasp: Some("LLM09"), likelihood: 4, impact: 4, frequency: (2.0, 12.0, 52.0), magnitude: (1_000.0, 10_000.0, 250_000.0), mitigation: "Evals per release with a human in the loop for regulated answers; model cards state limits", controls: &["gate:evidence:eval", "check:models-carded"] },
    Seed { id: "R10", title: "Unbounded consumption: a loop, abuse or a leaked key runs up cost", surface: "cost", threat: "unbounded-consumption", owasp: Some("LLM10"), likelihood: 4, impact: 3, frequency: (1.0, 4.0, 12.0), magnitude: (500.0, 8_000.0, 120_000.0), mitigation: "Budgets with alerts and blocking per team; rate limits per key; anomaly alerts", controls: &["check:team-budgets", "check:key-rotation"] },
    Seed { id: "R11", title: "An attacker inverts the model or infers training membership", surface: "model", threat: "membership-inference", owasp: None, likelihood: 2, impact: 4, frequency: (0.05, 0.2, 1.0), magnitude: (20_000.0, 200_000.0, 3_000_000.0), mitigation: "No personal data in fine-tuning sets without a DPIA; rate limits; output filtering", controls: &["check:dpia-approved"] },
    Seed { id: "R12", title: "A stolen or over-privileged credential reaches another tenant", surface: "access", threat: "elevation-of-privilege", owasp: None, likelihood: 2, impact: 5, frequency: (0.05, 0.3, 2.0), magnitude: (50_000.0, 400_000.0, 10_000_000.0), mitigation: "Keys hashed and rotated; OIDC issuers bound to tenants; tenant isolation tested", controls: &["check:key-rotation", "check:access-review"] },
    Seed { id: "R13", title: "Audit evidence is altered or erased", surface: "access", threat: "repudiation", owasp: None, likelihood: 2, impact: 5, frequency: (0.02, 0.1, 0.5), magnitude: (50_000.0, 500_000.0, 5_000_000.0), mitigation: "Tamper-evident ledger with signed checkpoints anchored outside the database", controls: &["check:ledger-anchored"] },
    Seed { id: "R14", title: "Model quality drifts after release", surface: "model", threat: "drift", owasp: None, likelihood: 3, impact: 3, frequency: (0.5, 2.0, 6.0), magnitude: (2_000.0, 20_000.0, 200_000.0), mitigation: "Post-promotion checks and SLO freezes; rollback to the last good release", controls: &["gate:slo", "gate:release-approvals"] },
];

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The register's text. `owner` fills every risk's owner (else left blank, for the lint to
/// ask for); `due` is the mitigation date given to each; only controls in `known` are linked.
pub fn register(
    system: &str,
    owner: Option<&str>,
    due: &str,
    known: &BTreeMap<String, String>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Risk register of {system}, written by `custos risk init`. Edit it; `custos risk lint`\n\
         # checks it, `custos risk report` draws it. Each risk: surface (data, prompt, model,\n\
         # supply-chain, access, cost), threat (STRIDE or AI-specific), likelihood and impact\n\
         # (1-5 or by name), an optional FAIR estimate (loss events a year and loss per event as\n\
         # min/likely/max), owner, mitigation, due date, status (open, mitigating, mitigated,\n\
         # accepted, closed), acceptance (by, until) and the ids of the controls that mitigate\n\
         # it (`custos risk controls` lists those of the running configuration)."
    );
    let _ = writeln!(s, "system: {}", quote(system));
    let _ = writeln!(s, "currency: USD");
    let _ = writeln!(s, "thresholds:");
    let _ = writeln!(
        s,
        "  accept_max_score: 9     # likelihood x impact above which a risk cannot be accepted"
    );
    let _ = writeln!(
        s,
        "  accept_max_ale: 100000  # mean annual loss above which a risk cannot be accepted"
    );
    let _ = writeln!(s, "risks:");
    for r in SEEDS {
        let controls: Vec<&str> = r
            .controls
            .iter()
            .copied()
            .filter(|c| known.contains_key(*c))
            .collect();
        let _ = writeln!(s, "  - id: {}", r.id);
        let _ = writeln!(s, "    title: {}", quote(r.title));
        let _ = writeln!(s, "    surface: {}", r.surface);
        let _ = writeln!(s, "    threat: {}", r.threat);
        if let Some(o) = r.owasp {
            let _ = writeln!(s, "    owasp: {o}");
        }
        let _ = writeln!(s, "    likelihood: {}", r.likelihood);
        let _ = writeln!(s, "    impact: {}", r.impact);
        let _ = writeln!(s, "    fair:");
        let (a, b, c) = r.frequency;
        let _ = writeln!(s, "      frequency: {{min: {a}, likely: {b}, max: {c}}}");
        let (a, b, c) = r.magnitude;
        let _ = writeln!(s, "      magnitude: {{min: {a}, likely: {b}, max: {c}}}");
        let _ = writeln!(s, "    owner: {}", quote(owner.unwrap_or("")));
        let _ = writeln!(s, "    mitigation: {}", quote(r.mitigation));
        let _ = writeln!(s, "    due: {due}");
        let _ = writeln!(s, "    status: open");
        let _ = writeln!(s, "    controls: [{}]", controls.join(", "));
    }
    s
}
