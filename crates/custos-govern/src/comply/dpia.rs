//! The DPIA document: a Markdown template under the headings GDPR Art. 35(7) asks for (with
//! the DPO's advice, Art. 35(2), data subjects' views, Art. 35(9), and prior consultation,
//! Art. 36), prefilled with what the trigger saw; and the check that each heading is answered.

/// The sections a DPIA must answer, in order, with what each asks.
pub const SECTIONS: &[(&str, &str)] = &[
    ("Description of the processing", "Art. 35(7)(a): the nature, scope, context and purposes of the processing; the personal data, data subjects, recipients (providers and their regions), retention."),
    ("Necessity and proportionality", "Art. 35(7)(b): why the processing is needed for the purpose, the lawful basis, data minimisation, how data subjects are informed and exercise their rights."),
    ("Risks to the rights and freedoms of data subjects", "Art. 35(7)(c): the likelihood and severity of each risk (disclosure to a provider, re-identification, inaccurate output about a person, transfer outside the EEA, …)."),
    ("Measures to address the risks", "Art. 35(7)(d): safeguards, security measures and mechanisms (PII guard, sealed identifiers, erasure, retention, access control) and the residual risk after them."),
    ("Advice of the data protection officer", "Art. 35(2): the DPO's advice and whether it was followed."),
    ("Views of data subjects", "Art. 35(9): the views of data subjects or their representatives, or why they were not sought."),
    ("Residual risk and prior consultation", "Art. 36: whether a high residual risk remains, and if so the supervisory authority's prior consultation."),
];

/// A placeholder left in the template for the author to replace.
pub const TODO: &str = "TODO";

/// The template for `subject`, with the trigger's facts as the description's first lines.
pub fn template(subject: &str, trigger: &str, facts: &[String]) -> String {
    let mut s = format!(
        "# Data protection impact assessment: {subject}\n\n\
         Required by: {trigger}\n\n\
         Replace every {TODO} with the assessment; `custos dpia new --file` refuses a section left\n\
         empty or still {TODO}.\n"
    );
    for (i, (title, asks)) in SECTIONS.iter().enumerate() {
        s.push_str(&format!("\n## {}. {title}\n\n<!-- {asks} -->\n\n", i + 1));
        if i == 0 && !facts.is_empty() {
            for f in facts {
                s.push_str(&format!("- {f}\n"));
            }
            s.push('\n');
        }
        s.push_str(TODO);
        s.push('\n');
    }
    s
}

/// What is missing from a DPIA's text: each section absent, empty or still a placeholder.
pub fn missing(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (title, _) in SECTIONS {
        let at = lines.iter().position(|l| {
            l.strip_prefix("## ")
                .map(|h| h.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' '))
                .is_some_and(|h| h.trim().eq_ignore_ascii_case(title))
        });
        let Some(at) = at else {
            out.push(format!("section \"{title}\" is missing"));
            continue;
        };
        let body: String = lines[at + 1..]
            .iter()
            .take_while(|l| !l.starts_with("## "))
            .map(|l| strip_comments(l))
            .collect::<Vec<_>>()
            .join("\n");
        let body = body.trim();
        if body.is_empty() {
            out.push(format!("section \"{title}\" is empty"));
        } else if body.contains(TODO) {
            out.push(format!("section \"{title}\" still says {TODO}"));
        }
    }
    out
}

fn strip_comments(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("<!--") {
        out.push_str(&rest[..i]);
        match rest[i..].find("-->") {
            Some(j) => rest = &rest[i + j + 3..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_asks_for_every_section_until_answered() {
        let t = template(
            "dataset support@2026-11",
            "a dataset with personal data",
            &["EMAIL_ADDRESS in 120 of 4,000 records".into()],
        );
        assert!(t.contains("EMAIL_ADDRESS in 120"));
        assert_eq!(missing(&t).len(), SECTIONS.len());
        let filled = t.replace(TODO, "Answered.");
        assert!(missing(&filled).is_empty(), "{:?}", missing(&filled));
        let one_empty = filled.replacen("\nAnswered.\n", "\n\n", 2);
        assert_eq!(
            missing(&one_empty),
            ["section \"Necessity and proportionality\" is empty"]
        );
        let without = filled.replace(
            "## 7. Residual risk and prior consultation",
            "## 7. Something else",
        );
        assert_eq!(
            missing(&without),
            ["section \"Residual risk and prior consultation\" is missing"]
        );
    }
}
